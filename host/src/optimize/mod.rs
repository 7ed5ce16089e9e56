//! Optimize mode: many backtests over a parameter space, in parallel,
//! resumable, splittable into shards, with walk-forward validation.
//!
//! - [`config`]: the `[optimize]` section of a run config.
//! - [`space`] and [`constraint`]: which settings vary over which values,
//!   checked against what the components declare.
//! - [`sampler`]: grid, seeded random, and TPE.
//! - [`windows`]: the whole range, or walk-forward train/test windows.
//! - [`trial`]: one parameter set backtested (the same loop as `host run`);
//!   [`bar_cache`]: the data slice's bars, read once and replayed to every trial.
//! - [`study`]: the plan (trial numbers) and running it on all cores.
//! - [`store`]: the study's folder; appending finished trials makes it resumable.
//! - [`results`] and [`page`]: `trials.csv`, `best.json`, `report.html`.
//! - [`merge`]: shards' folders into one study's outputs.
//!
//! Determinism: a trial's number, parameters and results depend only on the
//! config, the components and the data. Trials run in parallel but each is
//! its own backtest on one thread, and every output is sorted by trial
//! number or made from the trials alone, so the files are the same on any
//! number of cores, in shards, and after a resume.

mod bar_cache;
pub mod config;
mod constraint;
mod merge;
mod objective;
mod page;
mod results;
mod rng;
mod sampler;
mod space;
mod stats;
mod store;
mod study;
mod trial;
mod windows;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub use config::OptimizeSection;
pub use merge::merge;
pub use store::Shard;
pub use study::{StudyOptions, check};
pub use trial::TrialRecord;
pub use windows::Span;

use crate::session::Session;
use results::{BestCurves, CURVES_FILE, Written};
use study::{Plan, Study};

/// What a study (or a merge) did, for the command line and `summary.json`.
pub struct Report {
    pub dir: PathBuf,
    pub plan: Plan,
    pub written: Written,
    /// Every planned trial of this process (its shard) finished.
    pub complete: bool,
    pub ran_now: u64,
    pub resumed: u64,
    pub seconds: f64,
    pub threads: usize,
    pub shard: Option<Shard>,
    /// A merge: how many shards it joined.
    pub merged_shards: Option<u64>,
}

/// What the command line hears while a study runs.
pub trait Observer {
    /// Before the first trial: how many this process will run, and how
    /// many a previous run of the same study already finished.
    fn start(&mut self, remaining: u64, resumed: u64);
    fn trial(&mut self, record: &TrialRecord);
}

/// Plans the study of `session`'s config, runs it into `out` (resuming what
/// is there), and writes the outputs, also when `stop` ends it early.
pub fn run_study(
    session: &Session,
    options: StudyOptions,
    out: &Path,
    threads: usize,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Report> {
    let study = Study::plan(session, options)?;
    let mut store = store::Store::open(out, &study.file)?;
    let resumed = store.records.len() as u64;
    observer.start(study.remaining(&store), resumed);
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let started = Instant::now();
    let ran = study.run(&mut store, threads, stop, &mut |r| observer.trial(r));
    let seconds = started.elapsed().as_secs_f64();
    let complete = ran.is_ok() && !stop.load(Ordering::Relaxed);

    // The outputs are written whatever happened: they are the evidence.
    let finish = || -> Result<Written> {
        let curves = results::compute_curves(&study, &store.records)?;
        store::write_atomically(&out.join(CURVES_FILE), (serde_json::to_string(&curves)? + "\n").as_bytes())?;
        results::write(out, &study.plan, &store.records, &curves, complete)
    };
    let written = match (ran, finish()) {
        (Err(e), _) => {
            return Err(e.context(format!("the study stopped; its finished trials are in {}", out.display())));
        }
        (Ok(()), Err(e)) => {
            return Err(e.context(format!("cannot write the study's outputs in {}", out.display())));
        }
        (Ok(()), Ok(w)) => w,
    };
    if complete && written.counts.finished > 0 && written.counts.failed == written.counts.finished {
        let first = store.records.iter().filter(|r| r.error.is_some()).min_by_key(|r| r.trial);
        let first = first.and_then(|r| r.error.as_deref()).unwrap_or("unknown");
        bail!("every trial failed; the first error: {first} (the trials are in {})", out.display());
    }
    let report = Report {
        dir: out.to_owned(),
        plan: study.plan.clone(),
        written,
        complete,
        ran_now: store.records.len() as u64 - resumed,
        resumed,
        seconds,
        threads,
        shard: study.shard,
        merged_shards: None,
    };
    write_summary(&report)?;
    Ok(report)
}

/// `summary.json` of a study: counts, the best trial, timing. Unlike the
/// other outputs it holds timing, so it differs between runs.
pub fn write_summary(report: &Report) -> Result<()> {
    #[derive(Serialize)]
    struct Summary<'a> {
        status: &'static str,
        mode: &'static str,
        host_version: &'static str,
        symbols: &'a [String],
        range: serde_json::Value,
        shard: Option<String>,
        sampler: &'static str,
        objective: String,
        trials: &'a results::Counts,
        ran_now: u64,
        resumed: u64,
        merged_shards: Option<u64>,
        best: Option<serde_json::Value>,
        out_of_sample: Option<serde_json::Value>,
        timing: serde_json::Value,
    }
    let plan = &report.plan;
    let summary = Summary {
        status: if report.complete { "completed" } else { "interrupted" },
        mode: "optimize",
        host_version: env!("CARGO_PKG_VERSION"),
        symbols: &plan.symbols,
        range: serde_json::json!({
            "from": plan.range.from.map(crate::time::iso),
            "to": plan.range.to.map(crate::time::iso),
        }),
        shard: report.shard.map(|s| s.to_string()),
        sampler: plan.sampler.as_str(),
        objective: plan.objective.describe(),
        trials: &report.written.counts,
        ran_now: report.ran_now,
        resumed: report.resumed,
        merged_shards: report.merged_shards,
        best: report.written.best.as_ref().map(|(trial, params, score)| {
            serde_json::json!({ "trial": trial, "params": params, "objective": score })
        }),
        out_of_sample: report.written.out_of_sample.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        timing: serde_json::json!({
            "seconds": report.seconds,
            "threads": report.threads,
            "trials_per_second": trials_per_second(report),
        }),
    };
    let text = serde_json::to_string_pretty(&summary)? + "\n";
    store::write_atomically(&report.dir.join("summary.json"), text.as_bytes())
        .with_context(|| format!("cannot write {}", report.dir.join("summary.json").display()))
}

/// Trials run now per second of wall time.
pub fn trials_per_second(report: &Report) -> f64 {
    if report.seconds > 0.0 { report.ran_now as f64 / report.seconds } else { 0.0 }
}

/// The curves file of a study folder, for merging.
fn read_curves(dir: &Path) -> Result<BestCurves> {
    let path = dir.join(CURVES_FILE);
    let text = crate::files::read_text_bounded(&path, crate::files::RECORD_MAX, "study curves")
        .context("has this shard finished?")?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
}
