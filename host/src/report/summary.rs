//! `summary.json`: everything needed to understand and reproduce a run.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::series::Series;
use crate::config::{Grants, Limits, RunConfig};
use crate::metrics::{self, ReturnStats, TradeStats};
use crate::model::{ConfigValue, SourceInfo, Symbol};
use crate::orchestrator::{FaultRecord, HealthReport, RunStats};
use crate::portfolio::RoundTrip;
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
    /// Borrow cost: short positions' borrow fee plus a margin account's
    /// interest on negative cash, charged in cash.
    pub borrow_paid: String,
    /// Of `borrow_paid`: interest on negative cash (`[account] type = "margin"`).
    pub margin_interest: String,
    /// How much the account borrowed: leverage (gross position value /
    /// equity) per timestamp, and the lowest cash.
    pub exposure: ExposureSummary,
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
    /// Entries the risk gate refused, by rule, each with its first example.
    pub risk_refusals: RiskRefusals,
    /// The fault policy in force and every fault, with what the host did.
    pub fault_policy: crate::config::FaultSection,
    pub faults: Vec<FaultRecord>,
    /// Calls, failures and time of every slice of every symbol.
    pub health: Vec<HealthReport>,
    pub slices: BTreeMap<&'static str, SliceSummary>,
    pub config_file: String,
    /// The configuration as used, after command-line and environment overrides.
    pub config: RunConfig,
    pub metrics: Metrics,
    pub timing: Timing,
}

/// Leverage and cash through a run, measured at every timestamp's close.
#[derive(Debug, Serialize)]
pub struct ExposureSummary {
    /// `cash` (never borrows: at most 1x at the signal bar's close) or `margin`.
    pub account: crate::account::AccountType,
    /// The account's limit on gross exposure, as a multiple of equity.
    pub max_leverage_allowed: f64,
    /// Highest gross position value / equity at a close (4 decimals).
    pub max_leverage: Option<f64>,
    pub max_leverage_at: Option<String>,
    /// Mean of gross position value / equity over every timestamp with
    /// positive equity, flat ones (0) included.
    pub average_leverage: Option<f64>,
    /// Timestamps whose equity was zero or negative, where leverage is undefined.
    pub timestamps_without_equity: u64,
    /// Lowest cash at a close: below zero only by the next-open gap (cash
    /// account) or by borrowing (margin).
    pub min_cash: Option<String>,
    pub min_cash_at: Option<String>,
}

impl ExposureSummary {
    pub fn new(stats: &crate::orchestrator::ExposureStats, account: &crate::account::AccountSection) -> Self {
        use rust_decimal::prelude::ToPrimitive as _;
        let ratio = |d: Decimal| d.round_dp(4).to_f64();
        ExposureSummary {
            account: account.kind,
            max_leverage_allowed: account.leverage_cap().to_f64().unwrap_or_default(),
            max_leverage: stats.max_leverage.and_then(ratio),
            max_leverage_at: stats.max_leverage_at.map(crate::time::iso),
            average_leverage: stats.average_leverage().and_then(ratio),
            timestamps_without_equity: stats.points_without_equity,
            min_cash: stats.min_cash.map(|c| c.normalize().to_string()),
            min_cash_at: stats.min_cash_at.map(crate::time::iso),
        }
    }
}

/// The risk gate's refusals: how many, by rule, with the first of each.
#[derive(Debug, Default, Serialize)]
pub struct RiskRefusals {
    pub total: u64,
    pub by_rule: BTreeMap<String, RuleRefusals>,
}

#[derive(Debug, Serialize)]
pub struct RuleRefusals {
    pub count: u64,
    pub example: Option<crate::orchestrator::RefusalExample>,
}

impl RiskRefusals {
    /// From the run's refusal counts (`risk: <rule>` keys) and examples.
    pub fn new(
        counts: &BTreeMap<String, u64>,
        examples: &BTreeMap<String, crate::orchestrator::RefusalExample>,
    ) -> Self {
        let mut out = RiskRefusals::default();
        for (key, count) in counts {
            let Some(rule) = key.strip_prefix("risk: ") else { continue };
            out.total = out.total.saturating_add(*count);
            out.by_rule
                .insert(rule.to_owned(), RuleRefusals { count: *count, example: examples.get(key).cloned() });
        }
        out
    }
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
    /// False when a fault policy dropped the symbol before the run's end.
    pub active: bool,
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
    /// An execution algorithm's simulated venue (`[slices.execution.venue]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<Box<SliceSummary>>,
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

/// `summary.json`'s `metrics`: the portfolio, the buy-and-hold benchmark and
/// each symbol. Formulas and conventions: `docs/metrics.md`.
#[derive(Debug, Serialize)]
pub struct Metrics {
    pub conventions: Conventions,
    pub portfolio: PortfolioMetrics,
    /// Buy-and-hold of the same symbols (see `conventions.benchmark`).
    pub benchmark: ReturnStats,
    pub symbols: Vec<SymbolMetrics>,
}

#[derive(Debug, Serialize)]
pub struct Conventions {
    /// Bars per year, inferred from the portfolio's timestamps.
    pub periods_per_year: Option<f64>,
    pub annualisation: &'static str,
    #[serde(rename = "risk_free_rate_pct")]
    pub risk_free_rate: f64,
    pub standard_deviation: &'static str,
    pub benchmark: &'static str,
    pub per_symbol: &'static str,
    pub formulas: &'static str,
}

#[derive(Debug, Serialize)]
pub struct PortfolioMetrics {
    #[serde(flatten)]
    pub returns: ReturnStats,
    #[serde(flatten)]
    pub trades: TradeStats,
    #[serde(flatten)]
    pub activity: Activity,
}

/// How much a portfolio or a symbol's sleeve traded, and what it paid.
#[derive(Debug, Serialize)]
pub struct Activity {
    /// Share of the points (the portfolio's timestamps, or the symbol's
    /// bars) that closed with a position open.
    #[serde(serialize_with = "crate::metrics::optional_pct", rename = "exposure_pct")]
    pub exposure: Option<f64>,
    /// Traded notional / mean value (equity, or the sleeve's value).
    #[serde(serialize_with = "crate::metrics::optional_ratio")]
    pub turnover: Option<f64>,
    #[serde(serialize_with = "crate::metrics::money")]
    pub traded_notional: Decimal,
    #[serde(serialize_with = "crate::metrics::money")]
    pub fees_paid: Decimal,
}

impl Activity {
    fn new(
        in_market: u64,
        points: usize,
        traded_notional: Decimal,
        mean_value: Option<f64>,
        fees_paid: Decimal,
    ) -> Self {
        Activity {
            exposure: (points > 0).then(|| in_market as f64 / points as f64),
            turnover: metrics::turnover(traded_notional, mean_value),
            traded_notional,
            fees_paid,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SymbolMetrics {
    pub symbol: Symbol,
    pub bars: u64,
    /// The sleeve's stake: start cash / number of symbols.
    #[serde(serialize_with = "crate::metrics::money")]
    pub allocation: Decimal,
    #[serde(flatten)]
    pub returns: ReturnStats,
    #[serde(flatten)]
    pub trades: TradeStats,
    #[serde(flatten)]
    pub activity: Activity,
    pub benchmark: ReturnStats,
}

/// The metrics of a run from its curves and round trips. `risk_free` is an
/// annual rate (0.04 is 4%).
pub fn metrics(series: &Series, trips: &[RoundTrip], risk_free: f64) -> Metrics {
    let start = series.start_cash_f64();
    let per_year = metrics::periods_per_year(&series.portfolio);
    let portfolio = PortfolioMetrics {
        returns: metrics::return_stats(start, &series.portfolio, per_year, risk_free),
        trades: metrics::trade_stats(trips.iter().map(|t| t.pnl)),
        activity: Activity::new(
            series.timestamps_in_market,
            series.portfolio.len(),
            series.traded_notional,
            metrics::mean_value(&series.portfolio),
            series.fees,
        ),
    };
    let symbols = series
        .symbols
        .iter()
        .map(|s| {
            let per_year = s.sleeve.periods_per_year();
            SymbolMetrics {
                symbol: s.symbol.clone(),
                bars: s.bars,
                allocation: s.allocation,
                returns: s.sleeve.stats(per_year, risk_free),
                trades: metrics::trade_stats(trips.iter().filter(|t| t.symbol == s.symbol).map(|t| t.pnl)),
                activity: Activity::new(
                    s.bars_in_market,
                    s.sleeve.points() as usize,
                    s.traded_notional,
                    s.sleeve.mean_value(),
                    s.fees,
                ),
                benchmark: s.benchmark.stats(per_year, risk_free),
            }
        })
        .collect();
    Metrics {
        conventions: Conventions {
            periods_per_year: per_year.map(|p| (p * 1e4).round() / 1e4),
            annualisation: "bar returns annualised with the bars per year observed in the run (returns / years spanned, 365.25-day years)",
            risk_free_rate: risk_free * 100.0,
            standard_deviation: "sample (n - 1) for volatility and Sharpe; Sortino's downside deviation divides by n",
            benchmark: "buy-and-hold: start cash split equally across the symbols, each share bought at its symbol's first close, no fees, held to the end",
            per_symbol: "each symbol is a sleeve of start cash / N holding that symbol's own fills, fees and position",
            formulas: "docs/metrics.md",
        },
        portfolio,
        benchmark: metrics::return_stats(start, &series.benchmark, per_year, risk_free),
        symbols,
    }
}
