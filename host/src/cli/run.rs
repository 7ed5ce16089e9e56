//! `host run`: a backtest through the six slices of the config.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use rust_decimal::Decimal;

use super::progress::Progress;
use crate::barfile;
use crate::config::LoadedConfig;
use crate::model::{SliceKind, Symbol, Timestamp};
use crate::orchestrator::{Backtest, BacktestSettings, Recorder, RunError, guarded};
use crate::report::{self, ExecutionSummary, RunWriter, Series, SliceSummary, Summary, Tee, Timing};
use crate::runtime::INTERFACE_VERSION;
use crate::session::{Factory, Session};
use crate::time::{MS_PER_DAY, iso, parse_date};

/// Exit code of a run the risk kill switch stopped: it finished cleanly, but
/// not as planned, and scripts should notice.
pub const RISK_STOP_EXIT: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Historical bars, simulated fills.
    Backtest,
    /// A live feed with simulated fills, durable state and hot reload (docs/paper.md).
    Paper,
    /// A real venue: Coinbase Advanced Trade, spot (`[live]`; docs/live.md).
    Live,
    /// Many backtests over a parameter space: the config's [optimize]
    /// section (docs/optimize.md). The same as `host optimize`.
    Optimize,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long, value_enum, default_value_t = Mode::Backtest)]
    pub mode: Mode,
    /// Comma-separated symbols, for example BTC-USD,ETH-USD.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Run configuration [default: config/default.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// First day of bars to use, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day of bars to use, YYYY-MM-DD (UTC), included in full.
    #[arg(long)]
    pub to: Option<String>,
    /// Feed the slices bars from this day (YYYY-MM-DD, before --from) without
    /// trading, so indicators start warm at --from, where the account starts
    /// (as walk-forward test windows run).
    #[arg(long, value_name = "DAY", requires = "from")]
    pub warm_up_from: Option<String>,
    /// Folder of <SYMBOL>.csv files, granted read-only to the data slice
    /// (overrides the config and $STRATA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder for the run's files [default: a new folder under runs/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use another component for one slice, keeping its settings and grants
    /// from the config: `--slice strategy=my_strategy.wasm`. Repeatable.
    #[arg(long = "slice", value_name = "KIND=PATH")]
    pub slices: Vec<String>,
    /// Annual risk-free rate for Sharpe and Sortino, as a fraction (0.04 is 4%).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub risk_free_rate: f64,
    /// Also write report.png, a screenshot of report.html (needs Chromium).
    #[arg(long)]
    pub screenshot: bool,
    /// Print nothing but errors (no progress bar, no summary).
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Print summary.json to stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// Threads that run several symbols' slices at once [default: run.threads
    /// in the config, 0 = one per core]. Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Optimize mode: run only shard I of N of the trials (counting from 0).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::optimize::Shard>,
    #[command(flatten)]
    pub paper: super::paper::PaperArgs,
}

pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > -1.0 && rate < 10.0 => Ok(rate),
        _ => Err(format!("`{text}` is not an annual rate as a fraction, for example 0.04 for 4%")),
    }
}

pub fn execute(args: RunArgs) -> Result<ExitCode> {
    if args.shard.is_some() && args.mode != Mode::Optimize {
        bail!("--shard splits an optimisation's trials: it needs --mode optimize");
    }
    if args.mode == Mode::Paper || args.mode == Mode::Live {
        return super::paper::execute(args);
    }
    if args.mode == Mode::Optimize {
        return super::optimize::study(super::optimize::OptimizeArgs::from_run(&args));
    }
    let symbols = parse_symbols(&args.symbols)?;
    let (start, end) = parse_range(args.from.as_deref(), args.to.as_deref())?;
    let warm_up = args
        .warm_up_from
        .as_deref()
        .map(|day| parse_date(day).map_err(|e| anyhow::anyhow!("--warm-up-from: {e}")))
        .transpose()?;
    if let (Some(w), Some(s)) = (warm_up, start)
        && w > s
    {
        bail!(
            "--warm-up-from {} is after --from {}",
            args.warm_up_from.as_deref().unwrap_or_default(),
            args.from.as_deref().unwrap_or_default()
        );
    }
    // The slices read bars from the warm-up on; the account starts at --from.
    let data_start = warm_up.or(start);

    let config_path = super::resolve_config(args.config.clone(), "default.toml")?;
    let mut config = LoadedConfig::read(&config_path)?;
    let data_dir = args.data_dir.clone().or_else(|| std::env::var_os("STRATA_DATA_DIR").map(PathBuf::from));
    if let Some(dir) = data_dir {
        override_data_dir(&mut config, &dir)?;
    }
    for swap in &args.slices {
        override_slice(&mut config, swap)?;
    }
    config.validate()?;

    let started = Instant::now();
    let session = Session::open(config, &SliceKind::ALL)?;
    let instantiating = Instant::now();
    let threads = args.threads.unwrap_or(session.config.config.run.threads);
    let mut chains = session.chains(&symbols, data_start, end)?;
    let instantiate_ms = instantiating.elapsed().as_secs_f64() * 1e3;
    let fill_model = chains[0].0.slices.execution.fill_model()?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out_dir(&symbols),
    };
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("--out {} already holds files; choose an empty or new folder", out.display());
    }
    let mut writer =
        RunWriter::create(&out).with_context(|| format!("cannot create run folder {}", out.display()))?;

    let mut settings = BacktestSettings::from_config(&session.config.config, data_start, end);
    settings.threads = threads;
    settings.trade_from = warm_up.and(start);
    let setups = chains.into_iter().map(|(c, clock)| c.into_setup(clock)).collect();
    let factory = Factory::new(&session);
    let mut series = Series::new(settings.start_cash, &symbols, args.risk_free_rate);
    let mut backtest = Backtest::new(setups, settings, Some(&factory));
    // A progress bar only for a person watching: not in pipes, scripts or --quiet.
    let mut progress = (std::io::stdout().is_terminal() && !args.quiet && !args.json)
        .then(|| Progress::new(end.or_else(|| last_bar_in_files(&session, &symbols))));
    let run_started = Instant::now();
    let mut recorders: Vec<&mut dyn Recorder> = vec![&mut writer, &mut series];
    if let Some(progress) = progress.as_mut() {
        recorders.push(progress);
    }
    let result = guarded(|| backtest.run(&mut Tee(recorders)));
    let run_ms = run_started.elapsed().as_secs_f64() * 1e3;
    if let Some(progress) = &progress {
        progress.finish();
    }

    let metrics = report::metrics(&series, backtest.ledger().round_trips(), args.risk_free_rate);
    let run = RunFacts { fill_model, load_ms, instantiate_ms, run_ms, metrics };
    let summary = summarize(&session, &backtest, &args, &symbols, run, &result);
    let dir = writer.dir().to_owned();
    writer
        .finish(&summary, &series, backtest.ledger().round_trips())
        .with_context(|| format!("cannot write the run's files in {}", dir.display()))?;
    if args.json {
        println!("{}", report::summary_json(&summary)?);
    } else if !args.quiet {
        print_summary(&summary, &dir);
    }
    if args.screenshot && result.is_ok() {
        let png = dir.join("report.png");
        report::browser::screenshot(&dir.join("report.html"), &png)
            .with_context(|| format!("the run completed, but cannot write {}", png.display()))?;
        if !args.quiet && !args.json {
            println!("  screenshot    {}", png.display());
        }
    }
    // Everything the run leaves is written. Tearing down thousands of
    // instances (unmapping their memories) would take a user's time for
    // nothing: the process is about to exit, and the OS reclaims it at once.
    std::mem::forget(backtest);
    std::mem::forget(session);
    match result {
        Ok(()) if summary.risk_stop.is_some() => Ok(ExitCode::from(RISK_STOP_EXIT)),
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "the run stopped early; its records up to the failure are in {}",
            dir.display()
        ))),
    }
}

/// The latest last bar among the symbols' files in the data slice's granted
/// folder, for the progress bar; `None` when the data does not come from such
/// files (the bar then shows no percentage).
fn last_bar_in_files(session: &Session, symbols: &[Symbol]) -> Option<Timestamp> {
    let grants = &session.config.config.slices.data.grants.read_dirs;
    let dir = grants.values().next().filter(|_| grants.len() == 1)?;
    symbols.iter().filter_map(|s| barfile::last_timestamp(&dir.join(format!("{s}.csv"))).ok().flatten()).max()
}

pub(crate) fn parse_symbols(raw: &[String]) -> Result<Vec<Symbol>> {
    let mut symbols: Vec<Symbol> = Vec::new();
    for name in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let symbol = Symbol::new(name).map_err(anyhow::Error::msg)?;
        if symbols.contains(&symbol) {
            bail!("symbol {symbol} is listed twice in --symbols");
        }
        symbols.push(symbol);
    }
    if symbols.is_empty() {
        bail!("--symbols names no symbol");
    }
    Ok(symbols)
}

/// `--from` is the first day's midnight, `--to` the last millisecond of its day.
pub(crate) fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
    let start = from.map(parse_date).transpose().map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let end = to
        .map(|t| parse_date(t).map(|d| d + MS_PER_DAY - 1))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        bail!("--from {} is after --to {}", from.unwrap_or_default(), to.unwrap_or_default());
    }
    Ok((start, end))
}

/// Points the data slice's one directory grant at `dir`.
pub(crate) fn override_data_dir(config: &mut LoadedConfig, dir: &Path) -> Result<()> {
    let dir = crate::config::normalize(&std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()));
    let grants = &mut config.config.slices.data.grants.read_dirs;
    match grants.len() {
        1 => {
            *grants.values_mut().next().expect("one grant") = dir;
            Ok(())
        }
        0 => bail!(
            "--data-dir: the data slice in {} has no directory grant to point at {} (slices.data.grants.read-dirs)",
            config.path.display(),
            dir.display()
        ),
        _ => bail!(
            "--data-dir: the data slice in {} has several directory grants; set the one you mean in the config",
            config.path.display()
        ),
    }
}

/// `--slice KIND=PATH`: another component in one slot. The path is relative
/// to the working directory, as paths on the command line are.
pub(crate) fn override_slice(config: &mut LoadedConfig, swap: &str) -> Result<()> {
    let Some((kind, path)) = swap.split_once('=') else {
        bail!("--slice {swap}: expected KIND=PATH, for example --slice strategy=target/my_strategy.wasm");
    };
    let Some(kind) = SliceKind::from_name(kind.trim()) else {
        let kinds: Vec<&str> = SliceKind::ALL.iter().map(|k| k.as_str()).collect();
        bail!("--slice {swap}: `{kind}` is not a slice kind (one of {})", kinds.join(", "));
    };
    let path = Path::new(path.trim());
    let path = crate::config::normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_owned()));
    config.config.slices.get_mut(kind).plugin = path;
    Ok(())
}

/// The current UTC time as `20261121-190524`, for new run folders.
pub(crate) fn timestamp_for_folder() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    iso(ms - ms % 1000).replace(['-', ':'], "").trim_end_matches('Z').replace('T', "-")
}

fn default_out_dir(symbols: &[Symbol]) -> PathBuf {
    let stamp = timestamp_for_folder();
    let mut names = symbols.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("_");
    if symbols.len() > 3 {
        names.push_str(&format!("_and_{}_more", symbols.len() - 3));
    }
    let base = PathBuf::from("runs").join(format!("{stamp}-backtest-{names}"));
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}

/// What the run measured, besides the backtest's own state.
struct RunFacts {
    fill_model: String,
    load_ms: f64,
    instantiate_ms: f64,
    run_ms: f64,
    metrics: report::Metrics,
}

fn summarize(
    session: &Session,
    backtest: &Backtest,
    args: &RunArgs,
    symbols: &[Symbol],
    run: RunFacts,
    result: &Result<(), RunError>,
) -> Summary {
    let RunFacts { fill_model, load_ms, instantiate_ms, run_ms, metrics } = run;
    let ledger = backtest.ledger();
    let stats = backtest.stats().clone();
    let equity = ledger.equity();
    let start_cash = ledger.start_cash();
    // Checked: start-cash is validated positive, but a return too large for a
    // decimal must not take the summary down with it (it shows as 0).
    let total_return = equity
        .checked_sub(start_cash)
        .and_then(|gain| gain.checked_div(start_cash))
        .and_then(|ratio| ratio.checked_mul(Decimal::ONE_HUNDRED))
        .unwrap_or_default();
    let data: Vec<report::DataSummary> = backtest
        .symbol_reports()
        .into_iter()
        .map(|r| report::DataSummary {
            symbol: r.symbol,
            bars: r.bars,
            first_bar: r.first_ts.map(iso),
            last_bar: r.last_ts.map(iso),
            source: r.source,
            active: r.active,
        })
        .collect();
    let slices = SliceKind::ALL
        .into_iter()
        .map(|kind| {
            let plugin = session.plugin(kind);
            let section = session.config.config.slices.get(kind);
            let mut summary =
                slice_summary(plugin, &session.settings[&kind], &section.grants, section.limits);
            if let (Some(sim), Some(venue)) = (&plugin.venue, &section.venue) {
                summary.venue =
                    Some(Box::new(slice_summary(&sim.plugin, &sim.settings, &venue.grants, sim.limits)));
            }
            (kind.as_str(), summary)
        })
        .collect();
    let faults = backtest.faults().to_vec();
    Summary {
        status: match (result, backtest.stopped(), faults.is_empty()) {
            (Err(_), ..) => "failed",
            (Ok(()), Some(_), _) => "stopped-by-risk",
            (Ok(()), None, true) => "completed",
            (Ok(()), None, false) => "completed-with-faults",
        },
        error: result.as_ref().err().map(|e| e.to_string()),
        mode: "backtest",
        host_version: env!("CARGO_PKG_VERSION"),
        interface_version: INTERFACE_VERSION,
        symbols: symbols.to_vec(),
        from: args.from.clone(),
        to: args.to.clone(),
        bars: stats.bars,
        first_bar: stats.first_ts.map(iso),
        last_bar: stats.last_ts.map(iso),
        start_cash: start_cash.normalize().to_string(),
        final_cash: ledger.cash().normalize().to_string(),
        final_equity: equity.normalize().to_string(),
        total_return_pct: total_return.round_dp(4).normalize().to_string(),
        trade_count: ledger.round_trips().len(),
        fees_paid: ledger.fees_paid().normalize().to_string(),
        borrow_paid: ledger.borrow_paid().normalize().to_string(),
        margin_interest: ledger.interest_paid().normalize().to_string(),
        exposure: report::ExposureSummary::new(backtest.exposure(), &session.config.config.account),
        risk_stop: backtest.stopped().map(str::to_owned),
        open_positions: ledger
            .open_positions()
            .map(|(symbol, quantity, mark)| report::OpenPosition {
                symbol: symbol.clone(),
                quantity: quantity.normalize().to_string(),
                mark: mark.normalize().to_string(),
            })
            .collect(),
        synthetic_data: data.iter().any(|d| d.source.as_ref().is_some_and(|s| s.synthetic)),
        data,
        execution: ExecutionSummary {
            fill_model,
            settings: session.settings[&SliceKind::Execution].iter().cloned().collect(),
        },
        refusals: backtest.refusals().clone(),
        risk_refusals: report::RiskRefusals::new(backtest.refusals(), backtest.refusal_examples()),
        fault_policy: session.config.config.faults.clone(),
        faults,
        health: backtest.health(),
        activity: stats,
        slices,
        config_file: session.config.path.display().to_string(),
        config: session.config.config.clone(),
        metrics,
        timing: Timing {
            load_ms,
            instantiate_ms,
            instantiate_us_per_symbol: instantiate_ms * 1e3 / symbols.len() as f64,
            run_ms,
            bars_per_second: if run_ms > 0.0 { backtest.stats().bars as f64 / (run_ms / 1e3) } else { 0.0 },
            peak_rss_mb: report::peak_rss_mb(),
        },
    }
}

fn print_summary(s: &Summary, dir: &Path) {
    let symbols = s.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let span = match (&s.first_bar, &s.last_bar) {
        (Some(a), Some(b)) => format!(", {} to {}", &a[..10], &b[..10]),
        _ => String::new(),
    };
    let synthetic = if s.synthetic_data { " (SYNTHETIC data)" } else { "" };
    println!("Backtest of {symbols}{synthetic}{span}");
    println!("  bars          {}", group(s.bars as i128));
    println!("  trades        {} round trips, {} still open", s.trade_count, s.open_positions.len());
    println!("  return        {}%", money(&s.total_return_pct));
    println!("  final equity  {} (start {})", money(&s.final_equity), money(&s.start_cash));
    println!("  fees paid     {}", money(&s.fees_paid));
    print_exposure(s);
    println!(
        "  time          load {:.0} ms, run {:.0} ms ({} bars/s)",
        s.timing.load_ms,
        s.timing.run_ms,
        group(s.timing.bars_per_second.round() as i128)
    );
    if let Some(reason) = &s.risk_stop {
        println!("  RISK STOP     {reason}");
    }
    print_refusals(s);
    if !s.faults.is_empty() {
        println!("  faults        {} (policy {:?}; see summary.json)", s.faults.len(), s.fault_policy.policy);
        for f in s.faults.iter().take(5) {
            println!(
                "                {} {} at {}: {} -> {}",
                f.symbol,
                f.slice,
                f.at.as_deref().unwrap_or("start"),
                f.message.lines().next().unwrap_or_default(),
                f.action
            );
        }
    }
    println!("  artifacts     {}", dir.display());
    println!("  report        {}", dir.join("report.html").display());
}

/// Leverage and borrowing: what a reader needs to trust the return.
fn print_exposure(s: &Summary) {
    let e = &s.exposure;
    let account = match e.account {
        crate::account::AccountType::Cash => "cash account, no borrowing".to_owned(),
        crate::account::AccountType::Margin => format!("margin account, up to {}x", e.max_leverage_allowed),
    };
    match (e.max_leverage, e.average_leverage) {
        (Some(max), Some(avg)) => println!(
            "  leverage      max {max:.2}x{}, average {avg:.2}x ({account})",
            e.max_leverage_at
                .as_deref()
                .map(|t| format!(" on {}", &t[..10.min(t.len())]))
                .unwrap_or_default()
        ),
        _ => println!("  leverage      none measured ({account})"),
    }
    let borrowed = s.borrow_paid.parse::<Decimal>().is_ok_and(|b| !b.is_zero());
    if borrowed || e.account == crate::account::AccountType::Margin {
        println!("  borrow cost   {} (margin interest {})", money(&s.borrow_paid), money(&s.margin_interest));
    }
}

/// Signals the risk gate refused, by rule, with the first of each: a run
/// whose limits bind must say so where its result is read.
fn print_refusals(s: &Summary) {
    let r = &s.risk_refusals;
    if r.total == 0 {
        return;
    }
    println!(
        "  REFUSED       {} entries by the risk gate (orders.csv has each):",
        group(i128::from(r.total))
    );
    for (rule, refused) in &r.by_rule {
        println!("                {rule}: {}", group(i128::from(refused.count)));
        if let Some(e) = &refused.example {
            println!("                  e.g. {} at {}: {}", e.symbol, e.at, e.detail);
        }
    }
}

/// A decimal string rounded to cents with thousands separators: `12,345.68`.
fn money(text: &str) -> String {
    let d: Decimal = text.parse().unwrap_or_default();
    let rounded = d.round_dp(2);
    let negative = rounded.is_sign_negative() && !rounded.is_zero();
    let abs = rounded.abs();
    let int = abs.trunc().to_string().parse::<i128>().unwrap_or_default();
    let cents = ((abs - abs.trunc()) * Decimal::ONE_HUNDRED).round().to_string();
    format!("{}{}.{:0>2}", if negative { "-" } else { "" }, group(int), cents)
}

fn group(n: i128) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// What `summary.json` says about one component and how it ran.
fn slice_summary(
    plugin: &crate::runtime::Plugin,
    settings: &[(String, crate::model::ConfigValue)],
    grants: &crate::config::Grants,
    limits: crate::config::Limits,
) -> SliceSummary {
    SliceSummary {
        path: plugin.path.display().to_string(),
        sha256: plugin.sha256.clone(),
        size_bytes: plugin.size_bytes,
        name: plugin.info.name.clone(),
        version: plugin.info.version.clone(),
        interface_version: plugin.info.interface_version.clone(),
        built_against: plugin.built_against.to_string(),
        description: plugin.info.description.clone(),
        imports: plugin.imports.clone(),
        settings: settings.iter().cloned().collect(),
        grants: grants.clone(),
        limits,
        compile_ms: plugin.compile_time.as_secs_f64() * 1e3,
        cache: plugin.cache.clone(),
        venue: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_rounds_and_groups() {
        assert_eq!(money("12345.678"), "12,345.68");
        assert_eq!(money("-0.004"), "0.00");
        assert_eq!(money("-1234.5"), "-1,234.50");
        assert_eq!(money("10000"), "10,000.00");
    }

    #[test]
    fn to_includes_its_whole_day_and_from_must_precede_it() {
        let (s, e) = parse_range(Some("2024-01-01"), Some("2024-01-01")).unwrap();
        assert_eq!(e.unwrap() - s.unwrap(), MS_PER_DAY - 1);
        let err = parse_range(Some("2024-02-01"), Some("2024-01-01")).unwrap_err();
        assert_eq!(err.to_string(), "--from 2024-02-01 is after --to 2024-01-01");
    }
}
