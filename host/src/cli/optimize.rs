//! `host optimize` (and `host run --mode optimize`): a parameter search over
//! the config's `[optimize]` section; `host optimize merge`: shards' folders
//! into one study's outputs. docs/optimize.md has the details.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::run::{RunArgs, override_data_dir, override_slice, parse_range, parse_symbols};
use crate::config::LoadedConfig;
use crate::model::Symbol;
use crate::optimize::{self, Observer, Report, Shard, Span, StudyOptions, TrialRecord};
use crate::session::Session;

/// Exit code of a study stopped by Ctrl-C (or SIGTERM) before it finished.
pub const INTERRUPTED_EXIT: u8 = 130;

/// `host optimize`: a study, or `merge`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OptimizeCommand {
    #[command(subcommand)]
    pub action: Option<OptimizeAction>,
    #[command(flatten)]
    pub args: OptimizeArgs,
}

#[derive(Debug, Subcommand)]
pub enum OptimizeAction {
    /// Merge the folders of all shards of a study (`--shard i/N`) into the
    /// outputs of a single run: `host optimize merge runs/shard-* --out runs/merged`.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' folders, all N of them, in any order.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Folder for the merged outputs [default: a new folder under runs/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print the study's summary.json to stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct OptimizeArgs {
    /// Comma-separated symbols, for example BTC-USD,ETH-USD.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Run configuration with an [optimize] section [default: config/optimize.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// First day of bars to use, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day of bars to use, YYYY-MM-DD (UTC), included in full.
    #[arg(long)]
    pub to: Option<String>,
    /// Folder of <SYMBOL>.csv files, granted read-only to the data slice
    /// (overrides the config and $STRATA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder of the study [default: runs/optimize-<SYMBOLS>]. Running the
    /// same command again resumes the study there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use another component for one slice: `--slice strategy=my_strategy.wasm`. Repeatable.
    #[arg(long = "slice", value_name = "KIND=PATH")]
    pub slices: Vec<String>,
    /// Annual risk-free rate for Sharpe and Sortino, as a fraction (0.04 is 4%).
    #[arg(long, default_value_t = 0.0, value_parser = super::run::parse_rate)]
    pub risk_free_rate: f64,
    /// Print nothing but errors (no progress bar, no summary).
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print the study's summary.json to stdout.
    #[arg(long)]
    pub json: bool,
    /// Threads running trials [default: run.threads in the config, 0 = one
    /// per core]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run only shard I of N of the trials (counting from 0, as
    /// JOB_COMPLETION_INDEX does); `host optimize merge` joins the shards.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

impl OptimizeArgs {
    /// `host run --mode optimize` takes the same flags as `host optimize`.
    pub fn from_run(args: &RunArgs) -> Self {
        OptimizeArgs {
            symbols: args.symbols.clone(),
            config: args.config.clone(),
            from: args.from.clone(),
            to: args.to.clone(),
            data_dir: args.data_dir.clone(),
            out: args.out.clone(),
            slices: args.slices.clone(),
            risk_free_rate: args.risk_free_rate,
            quiet: args.quiet,
            json: args.json,
            threads: args.threads,
            shard: args.shard,
        }
    }
}

pub fn execute(cmd: OptimizeCommand) -> Result<ExitCode> {
    match cmd.action {
        Some(OptimizeAction::Merge(args)) => merge(args),
        None => study(cmd.args),
    }
}

pub fn study(args: OptimizeArgs) -> Result<ExitCode> {
    let symbols = parse_symbols(&args.symbols)?;
    let (start, end) = parse_range(args.from.as_deref(), args.to.as_deref())?;
    let config_path = super::resolve_config(args.config.clone(), "optimize.toml")?;
    let mut config = LoadedConfig::read(&config_path)?;
    let data_dir = args.data_dir.clone().or_else(|| std::env::var_os("STRATA_DATA_DIR").map(PathBuf::from));
    if let Some(dir) = data_dir {
        override_data_dir(&mut config, &dir)?;
    }
    for swap in &args.slices {
        override_slice(&mut config, swap)?;
    }
    config.validate()?;
    let threads = args.threads.unwrap_or(config.config.run.threads);
    let concurrent = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // A trial runs one chain per symbol.
    let session = Session::open_for_trials(config, concurrent.saturating_mul(symbols.len()))?;
    let out = args.out.clone().unwrap_or_else(|| default_out_dir(&symbols, args.shard));

    let stop = Arc::new(AtomicBool::new(false));
    register_signals(&stop)?;
    let show = std::io::stderr().is_terminal() && !args.quiet && !args.json;
    let mut observer = Bar { bar: None, show, started: Instant::now(), done: 0 };
    let options = StudyOptions {
        symbols,
        range: Span { from: start, to: end },
        from: args.from.clone(),
        to: args.to.clone(),
        risk_free: args.risk_free_rate,
        shard: args.shard,
    };
    let report = optimize::run_study(&session, options, &out, threads, &stop, &mut observer);
    if let Some(bar) = &observer.bar {
        bar.finish_and_clear();
    }
    let report = report?;
    print(&report, args.quiet, args.json)?;
    // The process is about to exit: the OS reclaims the compiled code at once.
    std::mem::forget(session);
    if report.complete {
        Ok(ExitCode::SUCCESS)
    } else {
        if !args.quiet {
            eprintln!(
                "interrupted: {} of this study's trials are in {}; run the same command again to finish it",
                report.written.counts.finished,
                report.dir.display()
            );
        }
        Ok(ExitCode::from(INTERRUPTED_EXIT))
    }
}

fn merge(args: MergeArgs) -> Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| {
        let stamp = super::run::timestamp_for_folder();
        PathBuf::from("runs").join(format!("{stamp}-optimize-merged"))
    });
    let report = optimize::merge(&args.dirs, &out)?;
    print(&report, args.quiet, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn default_out_dir(symbols: &[Symbol], shard: Option<Shard>) -> PathBuf {
    let mut names = symbols.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("_");
    if symbols.len() > 3 {
        names.push_str(&format!("_and_{}_more", symbols.len() - 3));
    }
    if let Some(s) = shard {
        names.push_str(&format!("-shard-{}-of-{}", s.index, s.count));
    }
    // No time stamp: the same command finds its folder again and resumes.
    PathBuf::from("runs").join(format!("optimize-{names}"))
}

/// SIGINT or SIGTERM: start no new trial, write the outputs, exit 130. A
/// second one exits at once; the finished trials are on disk either way.
fn register_signals(stop: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(INTERRUPTED_EXIT),
            Arc::clone(stop),
        )
        .context("cannot handle signals")?;
        signal_hook::flag::register(signal, Arc::clone(stop)).context("cannot handle signals")?;
    }
    Ok(())
}

/// The progress bar: trials done, trials per second, time left. Only on a terminal.
struct Bar {
    bar: Option<ProgressBar>,
    show: bool,
    started: Instant,
    done: u64,
}

impl Observer for Bar {
    fn start(&mut self, remaining: u64, resumed: u64) {
        if !self.show || remaining == 0 {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(remaining), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {wide_bar:.cyan/blue} {pos}/{len} trials {msg} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        if resumed > 0 {
            bar.println(format!("resuming: {resumed} finished trials kept"));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        self.started = Instant::now();
        self.bar = Some(bar);
    }

    fn trial(&mut self, _record: &TrialRecord) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("· {rate:.0} trials/s"));
            bar.inc(1);
        }
    }
}

fn print(report: &Report, quiet: bool, json: bool) -> Result<()> {
    if json {
        let text =
            std::fs::read_to_string(report.dir.join("summary.json")).context("cannot read summary.json")?;
        print!("{text}");
        return Ok(());
    }
    if quiet {
        return Ok(());
    }
    let plan = &report.plan;
    let c = &report.written.counts;
    let names: Vec<&str> = plan.parameters.iter().map(|p| p.name.as_str()).collect();
    let shard = report.shard.map_or(String::new(), |s| format!(", shard {s}"));
    println!(
        "Optimization of {}{}, {}: {} over {}; objective {}{shard}",
        plan.symbols.join(", "),
        if plan.synthetic_data { " (SYNTHETIC data)" } else { "" },
        plan.describe_range(),
        plan.sampler.as_str(),
        names.join(", "),
        plan.objective.describe()
    );
    if plan.walk_forward() {
        println!(
            "  windows       {} walk-forward windows, {} trials each",
            plan.windows.len(),
            plan.trials_per_window
        );
    }
    let how = match report.merged_shards {
        Some(n) => format!("merged from {n} shards"),
        None => format!("{} now, {} resumed", report.ran_now, report.resumed),
    };
    println!(
        "  trials        {} finished ({how}), {} failed, {} qualified, {} skipped by constraints",
        c.finished, c.failed, c.qualified, c.skipped_by_constraints
    );
    match &report.written.best {
        Some((trial, params, score)) => println!(
            "  best          trial {trial}: {} ({} {})",
            params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "),
            plan.objective.kind.as_str(),
            score.map_or("n/a".to_owned(), |s| format!("{s}"))
        ),
        None => println!("  best          none: no trial qualified"),
    }
    if let Some(o) = &report.written.out_of_sample {
        println!(
            "  out of sample return {:.2}%, Sharpe {}, max drawdown {:.2}% (the test windows, stitched)",
            o.total_return * 100.0,
            o.sharpe.map_or("n/a".to_owned(), |s| format!("{s:.2}")),
            o.max_drawdown * 100.0
        );
    }
    if report.ran_now > 0 {
        println!(
            "  speed         {:.0} trials/s on {} threads ({:.2} s)",
            optimize::trials_per_second(report),
            report.threads,
            report.seconds
        );
    }
    println!("  artifacts     {}", report.dir.display());
    Ok(())
}
