//! One trial: a parameter set run as a backtest on its window's training
//! range (and, with walk-forward, on the test range after it), with the
//! same loop, ledger and metrics as `host run`, but writing no files.
//!
//! Each backtest builds its own instances (its own stores) of the
//! components the session compiled once, and runs its symbols on one
//! thread: trials, not symbols, are what runs in parallel.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::bar_cache::{BarCache, DataRange, ReplayedData};
use super::windows::Span;
use crate::metrics::Point;
use crate::model::Symbol;
use crate::orchestrator::{Backtest, BacktestSettings};
use crate::report::{self, Series};
use crate::session::{Factory, Session, Settings};
use crate::time::Timestamp;

/// Runs backtests for trials.
pub struct Evaluator<'s> {
    pub session: &'s Session,
    pub symbols: Vec<Symbol>,
    pub risk_free: f64,
    /// Bars read once per range, when the search leaves the data slice's
    /// settings alone; ranges not in it are read by each trial.
    pub cache: BarCache,
}

/// What one backtest of a trial gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// As `summary.json`'s status: `completed`, `completed-with-faults` or `stopped-by-risk`.
    pub status: String,
    pub bars: u64,
    /// Exact decimal, as in `summary.json`.
    pub final_equity: String,
    /// Exactly `summary.json`'s `metrics.portfolio` for the same run.
    pub metrics: serde_json::Value,
}

/// A backtest's result with its curves, for the report's charts.
pub struct Evaluation {
    pub result: RunResult,
    pub equity: Vec<Point>,
    pub benchmark: Vec<Point>,
}

impl Evaluator<'_> {
    /// Backtests `settings` on `span`, with the slices warmed up on the
    /// bars from `warm_up_from` (a walk-forward test window, warmed up on
    /// its training window), as `host run --from --to --warm-up-from` does.
    /// An error (a slice that refuses the settings, traps, or finds no bars)
    /// is the trial's, not the study's.
    pub fn evaluate(
        &self,
        settings: &Settings,
        span: Span,
        warm_up_from: Option<Timestamp>,
    ) -> Result<Evaluation, String> {
        let session = self.session;
        let data_from = warm_up_from.or(span.from);
        let chains = match self.replayed_chains((data_from, span.to), settings) {
            Some(chains) => chains,
            None => session.chains_with(&self.symbols, data_from, span.to, settings),
        }
        .map_err(|e| format!("{e:#}"))?;
        let mut backtest_settings = BacktestSettings::from_config(&session.config.config, data_from, span.to);
        backtest_settings.threads = 1;
        backtest_settings.trade_from = warm_up_from.and(span.from);
        let setups = chains.into_iter().map(|(c, clock)| c.into_setup(clock)).collect();
        let factory = Factory { session, settings };
        let mut series = Series::new(backtest_settings.start_cash, &self.symbols, self.risk_free);
        let mut backtest = Backtest::new(setups, backtest_settings, Some(&factory));
        backtest.run(&mut series).map_err(|e| e.to_string())?;
        let metrics = report::metrics(&series, backtest.ledger().round_trips(), self.risk_free);
        let status = match (backtest.stopped(), backtest.faults().is_empty()) {
            (Some(_), _) => "stopped-by-risk",
            (None, true) => "completed",
            (None, false) => "completed-with-faults",
        };
        let result = RunResult {
            status: status.to_owned(),
            bars: backtest.stats().bars,
            final_equity: backtest.ledger().equity().normalize().to_string(),
            metrics: serde_json::to_value(&metrics.portfolio).map_err(|e| e.to_string())?,
        };
        Ok(Evaluation { result, equity: series.portfolio, benchmark: series.benchmark })
    }

    /// Chains whose data slices replay the cached bars of `range`, if cached.
    fn replayed_chains(
        &self,
        range: DataRange,
        settings: &Settings,
    ) -> Option<anyhow::Result<Vec<(crate::session::Chain, crate::clock::SimClock)>>> {
        let label = ReplayedData::label_for(self.session);
        let mut chains = Vec::with_capacity(self.symbols.len());
        for (i, symbol) in self.symbols.iter().enumerate() {
            let (data, source) = self.cache.replay(range, i, &label)?;
            let clock = crate::clock::SimClock::new();
            let chain = self.session.chain_from(symbol, Box::new(data), source, &clock, settings);
            chains.push(chain.map(|c| (c, clock)));
        }
        Some(chains.into_iter().collect())
    }

    /// The first and last bar of the symbols' data in `span`, read through
    /// the data slice once, and whether any of it is synthetic: walk-forward
    /// windows need the extent when the range is open, and a missing file or
    /// an empty range fails here, before any trial.
    pub fn extent(&self, span: Span) -> anyhow::Result<((Timestamp, Timestamp), bool)> {
        let mut first = Timestamp::MAX;
        let mut last = Timestamp::MIN;
        let mut synthetic = false;
        for symbol in &self.symbols {
            let clock = crate::clock::SimClock::new();
            let (mut data, source) = self.session.open_data(symbol, span.from, span.to, &clock)?;
            synthetic |= source.synthetic;
            let mut bars = Vec::new();
            loop {
                bars.clear();
                data.next_batch(4096, &mut bars)?;
                let (Some(a), Some(b)) = (bars.first(), bars.last()) else { break };
                first = first.min(a.ts);
                last = last.max(b.ts);
            }
        }
        if first > last {
            anyhow::bail!(
                "no bars for {} in {}",
                self.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                span.describe()
            );
        }
        Ok(((first, last), synthetic))
    }
}

/// A finished trial, as `trials.jsonl` keeps it: one JSON object per line,
/// appended as soon as the trial ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The trial's number in the study's plan (stable: the same config gives
    /// the same numbers to the same parameter sets).
    pub trial: u64,
    pub window: usize,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The backtest on the training range (the whole range without walk-forward).
    pub in_sample: Option<RunResult>,
    /// Walk-forward: the same parameters on the test range after it.
    pub out_of_sample: Option<RunResult>,
    /// Why a backtest of the trial failed.
    pub error: Option<String>,
    /// Proposals that broke a constraint and were drawn again before this
    /// one (TPE; grid and random count theirs when they plan).
    #[serde(default)]
    pub rejected: u64,
    /// Wall time of the trial; the only thing that differs between two runs.
    pub ms: f64,
}

impl TrialRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.in_sample.is_some()
    }
}

/// Runs the trial `trial` of `window` with `settings`.
pub fn run(
    evaluator: &Evaluator,
    trial: u64,
    window: &super::windows::Window,
    params: serde_json::Map<String, serde_json::Value>,
    settings: &Settings,
    rejected: u64,
) -> TrialRecord {
    let started = Instant::now();
    let mut record = TrialRecord {
        trial,
        window: window.index,
        params,
        in_sample: None,
        out_of_sample: None,
        error: None,
        rejected,
        ms: 0.0,
    };
    match evaluator.evaluate(settings, window.train, None) {
        Ok(e) => record.in_sample = Some(e.result),
        Err(e) => record.error = Some(e),
    }
    if let (Some(test), None) = (window.test, &record.error) {
        match evaluator.evaluate(settings, test, window.train.from) {
            Ok(e) => record.out_of_sample = Some(e.result),
            Err(e) => record.error = Some(format!("test window {}: {e}", test.describe())),
        }
    }
    record.ms = started.elapsed().as_secs_f64() * 1e3;
    record
}
