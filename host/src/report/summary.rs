//! `summary.json`: everything needed to understand and reproduce a run.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{Grants, Limits, RunConfig};
use crate::model::{ConfigValue, SourceInfo, Symbol};
use crate::orchestrator::{FaultRecord, HealthReport, RunStats};
use crate::runtime::CacheOutcome;

#[derive(Debug, Serialize)]
pub struct Summary {
    /// `completed`, `completed-with-faults` (a fault policy kept the run
    /// going: see `faults`), `stopped-by-risk` (the drawdown kill switch
    /// closed everything: see `risk_stop`) or `failed`.
    pub status: &'static str,
    /// Why the run failed, naming the slice, symbol and bar.
    pub error: Option<String>,
    pub mode: &'static str,
    pub host_version: &'static str,
    pub interface_version: &'static str,
    pub symbols: Vec<Symbol>,
    /// `--from` and `--to` as given (inclusive dates).
    pub from: Option<String>,
    pub to: Option<String>,
    pub bars: u64,
    pub first_bar: Option<String>,
    pub last_bar: Option<String>,
    /// Money is written as exact decimal strings.
    pub start_cash: String,
    pub final_cash: String,
    pub final_equity: String,
    pub total_return_pct: String,
    /// Completed round trips (rows of `trades.csv`).
    pub trade_count: usize,
    pub fees_paid: String,
    /// Borrow cost of short positions.
    pub borrow_paid: String,
    /// Why the risk gate's kill switch stopped trading, if it did.
    pub risk_stop: Option<String>,
    pub open_positions: Vec<OpenPosition>,
    /// True when any symbol's bars were generated rather than recorded.
    pub synthetic_data: bool,
    pub data: Vec<DataSummary>,
    pub execution: ExecutionSummary,
    pub activity: RunStats,
    /// Signals not acted on, by reason.
    pub refusals: BTreeMap<String, u64>,
    /// The fault policy in force and every fault, with what the host did.
    pub fault_policy: crate::config::FaultSection,
    pub faults: Vec<FaultRecord>,
    /// Calls, failures and time of every slice of every symbol.
    pub health: Vec<HealthReport>,
    pub slices: BTreeMap<&'static str, SliceSummary>,
    pub config_file: String,
    /// The configuration as used, after command-line and environment overrides.
    pub config: RunConfig,
    pub timing: Timing,
}

#[derive(Debug, Serialize)]
pub struct OpenPosition {
    pub symbol: Symbol,
    pub quantity: String,
    pub mark: String,
}

#[derive(Debug, Serialize)]
pub struct DataSummary {
    pub symbol: Symbol,
    pub bars: u64,
    pub first_bar: Option<String>,
    pub last_bar: Option<String>,
    pub source: Option<SourceInfo>,
}

/// How orders filled and what they cost.
#[derive(Debug, Serialize)]
pub struct ExecutionSummary {
    /// The execution slice's own statement of its fill rule and costs.
    pub fill_model: String,
    /// The execution slice's settings (fees, fill rule...).
    pub settings: BTreeMap<String, ConfigValue>,
}

#[derive(Debug, Serialize)]
pub struct SliceSummary {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub name: String,
    pub version: String,
    /// The interface version the component's `describe()` reports.
    pub interface_version: String,
    /// The interface version in the component's export name, which is what the host checks.
    pub built_against: String,
    pub description: String,
    /// What the component imports: what it could ask the host for (it gets only its grants).
    pub imports: Vec<String>,
    /// Every setting the slice received, defaults included.
    pub settings: BTreeMap<String, ConfigValue>,
    pub grants: Grants,
    pub limits: Limits,
    /// Compiling the component, or loading its compiled code from the cache.
    pub compile_ms: f64,
    /// Whether the compiled-component cache had it (`hit`), compiled it now
    /// (`miss`), replaced a damaged entry (`rebuilt`), or is disabled (`off`).
    pub cache: CacheOutcome,
}

#[derive(Debug, Serialize)]
pub struct Timing {
    /// Compiling (or loading from the cache) the components and creating every instance.
    pub load_ms: f64,
    /// Of `load_ms`: creating and initialising the six instances of every symbol.
    pub instantiate_ms: f64,
    /// `instantiate_ms` per symbol, in microseconds.
    pub instantiate_us_per_symbol: f64,
    /// The bar loop.
    pub run_ms: f64,
    pub bars_per_second: f64,
    /// The process's peak resident memory (Linux `VmHWM`), at the end of the run.
    pub peak_rss_mb: Option<f64>,
}

/// The process's peak resident set size in MiB, where the OS reports it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
