//! The backtest loop: chains six slices per symbol, orders bars across
//! symbols by time against one ledger, records what happened, and contains
//! slices that fail.
//!
//! How one timestamp is processed, for all symbols with a bar at it:
//!   1. working orders meet the new bar (the execution slice reports fills,
//!      for example at the open), and the host applies the fills it accepts;
//!      positions the host must close after a fault are closed here;
//!   2. positions are marked at the bar's close;
//!   3. strategy signals made on this bar become orders: sizing slice ->
//!      host checks -> execution slice.
//!
//! Then one equity row is recorded. The analysis, regime and strategy slices
//! only depend on bars, so they run ahead in batches; sizing and execution
//! depend on the portfolio and run at the moment they are needed.
//!
//! When a slice fails, the run's fault policy decides: halt, drop the symbol,
//! or safe mode (no new positions for a cool-down, then fresh instances). A
//! batched call that fails is located to its bar by bisecting the batch on
//! fresh instances, within a time budget (see `locate`): backtests are
//! deterministic, so the failure recurs.

mod faults;
mod guard;
mod live;
mod locate;
mod orders;
mod pipeline;
mod positions;
mod refill;

pub use guard::guarded;

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::account::AccountSection;
use crate::clock::SimClock;
use crate::config::{FaultPolicy, RunConfig, ShortingSection};
use crate::model::{
    Bar, Fill, Order, OrderId, OrderType, Regime, Side, Signal, SliceKind, SourceInfo, Symbol, TimeInForce,
    Timestamp,
};
use crate::portfolio::{Ledger, LedgerError, RoundTrip};
use crate::risk::{RiskGate, RiskLimits};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, RegimeSlice, SizingSlice, SliceError, SliceHealth, SliceResult,
    StrategySlice, SymbolSlices,
};
use crate::time::iso;
use locate::History;
use orders::StepError;
use pipeline::Batch;
use refill::Carry;

/// Receives what a run produces, as it happens.
pub trait Recorder {
    /// What the pipeline made of one symbol's bar, just before the host acts
    /// on it. Only called when [`Backtest::record_decisions`] is on (paper
    /// mode's audit trail and `host replay`), so backtests pay nothing.
    fn decision(&mut self, _decision: &Decision<'_>) -> io::Result<()> {
        Ok(())
    }
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> io::Result<()>;
    fn order(&mut self, order: &OrderRecord) -> io::Result<()>;
    fn round_trip(&mut self, trip: &RoundTrip) -> io::Result<()>;
    /// A position changed state.
    fn lifecycle(&mut self, _event: &LifecycleEvent) -> io::Result<()> {
        Ok(())
    }
    /// A fill the host applied to the ledger (from the execution slice, or its own closing trade).
    fn fill(&mut self, _symbol: &Symbol, _side: Side, _fill: &Fill) -> io::Result<()> {
        Ok(())
    }
    /// One symbol's bar, once processed (fills, mark and signal done), before
    /// the timestamp's equity row: for benchmarks and per-symbol figures.
    fn bar(&mut self, _symbol: usize, _bar: &Bar) {}
}

/// The inputs and outputs of the decision slices for one symbol's bar.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub symbol: &'a Symbol,
    pub bar: &'a Bar,
    /// The analysis slice's values for this bar, in the order of `feature_names`.
    pub features: &'a [f64],
    pub feature_names: &'a [String],
    pub regime: Regime,
    /// The strategy's signal on this bar, if it made one.
    pub signal: Option<Signal>,
}

/// Where a position is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionState {
    /// The first fill made it.
    Opened,
    /// Held, with no order working on it.
    Monitoring,
    /// An order is working that changes it without closing it.
    Adjusting,
    /// An order is working that closes it.
    Closing,
    /// Back to flat.
    Closed,
}

impl PositionState {
    pub fn as_str(self) -> &'static str {
        match self {
            PositionState::Opened => "opened",
            PositionState::Monitoring => "monitoring",
            PositionState::Adjusting => "adjusting",
            PositionState::Closing => "closing",
            PositionState::Closed => "closed",
        }
    }
}

/// A position moved from one state to another (a row of `positions.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecycleEvent {
    /// Positions are numbered from 1 in the order they open.
    pub position_id: u64,
    pub symbol: Symbol,
    pub ts: Timestamp,
    pub state: PositionState,
    /// Signed quantity held at the transition.
    pub quantity: Decimal,
}

/// A position's life so far.
#[derive(Debug, Clone, Copy)]
struct PositionLife {
    id: u64,
    state: PositionState,
    opened_at: Timestamp,
    adjustments: u32,
}

/// Builds fresh slice instances for a symbol, so the loop can replay a failed
/// batch and recover from faults. Instances read `clock`, the simulated time
/// of their symbol's chain. Shared by the threads that fill symbols' batches
/// in parallel.
pub trait SliceFactory: Sync {
    /// A data slice opened on `symbol` for bars in `[start, end]`.
    fn data(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        clock: &SimClock,
    ) -> SliceResult<Box<dyn DataSlice>>;
    fn analysis(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn AnalysisSlice>>;
    fn regime(
        &self,
        symbol: &Symbol,
        features: &[String],
        clock: &SimClock,
    ) -> SliceResult<Box<dyn RegimeSlice>>;
    fn strategy(
        &self,
        symbol: &Symbol,
        features: &[String],
        clock: &SimClock,
    ) -> SliceResult<Box<dyn StrategySlice>>;
    fn sizing(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn SizingSlice>>;
    fn execution(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn ExecutionSlice>>;
}

/// The life of one order, written when it leaves the book (or at the end of the run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRecord {
    pub id: OrderId,
    pub symbol: Symbol,
    pub created_at: Timestamp,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub quantity: Decimal,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub status: OrderStatus,
    pub filled_quantity: Decimal,
    /// Volume-weighted average fill price, if anything filled.
    pub average_price: Option<Decimal>,
    pub fees: Decimal,
    pub closed_at: Option<Timestamp>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    Filled,
    Cancelled,
    Rejected,
    /// The host's risk gate refused it; the execution slice never saw it.
    Refused,
    /// Still working when the run ended.
    Working,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Refused => "refused",
            OrderStatus::Working => "working",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the loop reacts to a failing slice.
#[derive(Debug, Clone)]
pub struct FaultSettings {
    pub policy: FaultPolicy,
    pub cooldown_bars: u64,
    pub flatten: bool,
    pub liquidation_fee_bps: Decimal,
    pub max_faults_per_symbol: u32,
}

impl Default for FaultSettings {
    fn default() -> Self {
        let section = crate::config::FaultSection::default();
        FaultSettings {
            policy: section.policy,
            cooldown_bars: section.cooldown_bars,
            flatten: section.flatten,
            liquidation_fee_bps: section.liquidation_fee_bps,
            max_faults_per_symbol: section.max_faults_per_symbol,
        }
    }
}

/// How the host closes a position it must close (the drawdown kill switch,
/// the skip-symbol and safe-mode fault policies, an operator's flatten).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Liquidation {
    /// A fill the host books itself at the next bar's open, with
    /// `faults.liquidation-fee-bps`: backtests and paper mode, whose
    /// execution is simulated anyway.
    #[default]
    Ledger,
    /// A market order the host sends through the chain's execution slot as
    /// soon as it decides to close, applied to the ledger only as the slot
    /// reports its fills: live mode, where the venue holds the position.
    ThroughExecution,
}

/// Threads for `jobs` independent pieces of work (symbols' chains): `threads`
/// of them, 0 meaning one per core, never more than the jobs. `None` when
/// one thread would do it all: threads only pay off with several jobs.
pub fn worker_pool(threads: usize, jobs: usize) -> Option<rayon::ThreadPool> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(jobs.max(1));
    (threads > 1).then(|| rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()).flatten()
}

/// Inputs of a backtest besides the slices.
#[derive(Debug, Clone)]
pub struct BacktestSettings {
    pub start_cash: Decimal,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub batch_size: u32,
    pub faults: FaultSettings,
    pub risk: RiskLimits,
    /// Cash or margin: how much the account may borrow and at what rate.
    pub account: AccountSection,
    pub shorting: ShortingSection,
    /// A live feed (paper and live modes): a data slice with no new bar is
    /// waiting for one, not finished.
    pub live: bool,
    /// Threads that fill symbols' batches in parallel; 0 means one per core.
    /// The results do not depend on it.
    pub threads: usize,
    /// Bars before this time warm the slices up (indicators see them) but
    /// nothing trades and nothing is recorded: the run's account starts
    /// here, as a fresh one. `start` is where the warm-up begins.
    pub trade_from: Option<Timestamp>,
    /// Most bars a symbol's data slice may give (`[run] max-bars-per-symbol`).
    pub max_bars_per_symbol: u64,
    /// How the host closes positions itself.
    pub liquidation: Liquidation,
}

impl BacktestSettings {
    /// A backtest of `config` between `start` and `end` (inclusive).
    pub fn from_config(config: &RunConfig, start: Option<Timestamp>, end: Option<Timestamp>) -> Self {
        BacktestSettings {
            start_cash: config.run.start_cash,
            start,
            end,
            batch_size: config.run.batch_size,
            faults: FaultSettings {
                policy: config.faults.policy,
                cooldown_bars: config.faults.cooldown_bars,
                flatten: config.faults.flatten,
                liquidation_fee_bps: config.faults.liquidation_fee_bps,
                max_faults_per_symbol: config.faults.max_faults_per_symbol,
            },
            risk: config.risk.clone(),
            account: config.account.clone(),
            shorting: config.shorting.clone(),
            live: false,
            threads: config.run.threads,
            trade_from: None,
            max_bars_per_symbol: config.run.max_bars_per_symbol,
            liquidation: Liquidation::Ledger,
        }
    }
}

/// What one call to [`Backtest::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Processed every symbol's bar at this time.
    Stepped(Timestamp),
    /// Live feeds only: no symbol has a new bar yet.
    Waiting,
    /// Every symbol's data has ended.
    Finished,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{error} (symbol {symbol}{})", at.map(|t| format!(", bar {}", iso(t))).unwrap_or_default())]
    Slice { symbol: Symbol, at: Option<Timestamp>, error: SliceError },
    #[error("no bars for {symbol} in the requested range{range}")]
    NoBars { symbol: Symbol, range: String },
    #[error("cannot write the run's records: {0}")]
    Io(#[from] io::Error),
    /// The account's own arithmetic left the supported range (margin interest).
    #[error("{0}")]
    Account(String),
    /// An amount beyond what the ledger's decimal holds: the account cannot
    /// be kept exactly, so the run stops whatever the fault policy.
    #[error("{error} (symbol {symbol}, bar {})", iso(*at))]
    Ledger { symbol: Symbol, at: Timestamp, error: LedgerError },
    /// A panic inside the run, caught by `host run` so the run's records
    /// and summary are still written: a bug in the host.
    #[error("internal error of the host (please report it): {0}")]
    Internal(String),
}

/// Counters of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    pub bars: u64,
    pub timestamps: u64,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
    pub signals: u64,
    /// Signals that would not change the position (enter while in, exit while out).
    pub redundant_signals: u64,
    /// Signals not acted on for another reason (see `refusals` in the summary).
    pub refused_signals: u64,
    pub orders: u64,
    pub fills: u64,
}

/// The first refusal of one risk rule.
#[derive(Debug, Clone, Serialize)]
pub struct RefusalExample {
    pub symbol: Symbol,
    /// The signal bar's time.
    pub at: String,
    /// The gate's reason, with the numbers it compared.
    pub detail: String,
}

/// Leverage (gross position value / equity) and cash, per timestamp, at
/// each timestamp's close.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExposureStats {
    /// Highest leverage; `None` before any timestamp with positive equity.
    pub max_leverage: Option<Decimal>,
    pub max_leverage_at: Option<Timestamp>,
    /// Sum of leverage over the timestamps with positive equity, and their count.
    leverage_sum: Decimal,
    points: u64,
    /// Timestamps whose equity was zero or negative (leverage undefined).
    pub points_without_equity: u64,
    /// Lowest cash at any close.
    pub min_cash: Option<Decimal>,
    pub min_cash_at: Option<Timestamp>,
}

impl ExposureStats {
    fn record(&mut self, ts: Timestamp, gross: Option<Decimal>, cash: Decimal, equity: Decimal) {
        if self.min_cash.is_none_or(|m| cash < m) {
            self.min_cash = Some(cash);
            self.min_cash_at = Some(ts);
        }
        // Flat is the common case: no division for it.
        let leverage = gross
            .filter(|_| equity > Decimal::ZERO)
            .and_then(|g| if g.is_zero() { Some(Decimal::ZERO) } else { g.checked_div(equity) });
        let Some(leverage) = leverage else {
            self.points_without_equity += 1;
            return;
        };
        if self.max_leverage.is_none_or(|m| leverage > m) {
            self.max_leverage = Some(leverage);
            self.max_leverage_at = Some(ts);
        }
        // A sum that leaves the decimal range (leverages near 1e28) stops
        // growing rather than panicking; the maximum still tells the story.
        if let Some(sum) = self.leverage_sum.checked_add(leverage) {
            self.leverage_sum = sum;
            self.points += 1;
        }
    }

    /// Mean leverage over the timestamps with positive equity.
    pub fn average_leverage(&self) -> Option<Decimal> {
        (self.points > 0).then(|| self.leverage_sum / Decimal::from(self.points))
    }
}

/// One slice failure and what the host did about it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// The bar being processed when the fault surfaced.
    pub at: Option<String>,
    pub symbol: Symbol,
    pub slice: SliceKind,
    pub plugin: String,
    /// `trapped`, `returned-error`, `invalid-output`, `over-budget` or `poisoned`.
    pub kind: &'static str,
    pub message: String,
    /// The guest's stack at the trap, when available.
    pub backtrace: Option<String>,
    /// What the host did: `halted`, `dropped-symbol` or `safe-mode`.
    pub action: &'static str,
}

/// What each symbol contributed.
#[derive(Debug, Clone, Serialize)]
pub struct SymbolReport {
    pub symbol: Symbol,
    pub bars: u64,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
    pub source: Option<SourceInfo>,
    /// False when a fault policy dropped the symbol.
    pub active: bool,
}

/// Health of one slice of one symbol, over every instance it had.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub symbol: Symbol,
    pub slice: SliceKind,
    pub plugin: String,
    pub calls: u64,
    pub failures: u64,
    pub busy_ms: f64,
    pub slowest_call_ms: f64,
    pub last_error: Option<String>,
    /// Instances that replaced a failed one.
    pub replacements: u32,
}

struct WorkingOrder {
    order: Order,
    filled: Decimal,
    notional: Decimal,
    fees: Decimal,
    /// Why the host placed it, for its own liquidations (`None`: a strategy's order).
    host_reason: Option<String>,
}

/// One symbol's slices and its place in the data.
struct Chain {
    index: usize,
    symbol: Symbol,
    /// The simulated time this chain's slices see.
    clock: SimClock,
    slices: SymbolSlices,
    features: Vec<String>,
    source: Option<SourceInfo>,
    batch: Batch,
    /// Bars read but not yet through the pipeline, after a located fault.
    carry: Carry,
    /// What the current pipeline instances were fed, to locate a failure.
    history: History,
    ended: bool,
    /// Open time of the last bar read and accepted from the data slice.
    last_ts: Option<Timestamp>,
    working: Vec<WorkingOrder>,
    bars_done: u64,
    first_ts: Option<Timestamp>,
    /// False once a fault policy dropped the symbol.
    active: bool,
    /// The host closes the position: at the next bar (in the ledger), or
    /// by an order through the execution slot, sent at once.
    liquidate: Option<String>,
    /// The host's closing order working in the execution slot.
    liquidating: Option<OrderId>,
    /// The last bar processed, for orders the host places between bars.
    last_bar: Option<Bar>,
    faults: u32,
    /// Health of replaced instances, per slice kind.
    retired: BTreeMap<SliceKind, (SliceHealth, u32)>,
    /// The open position's life, if there is one.
    life: Option<PositionLife>,
    /// Borrow cost of a short position is charged up to this time.
    borrow_paid_to: Option<Timestamp>,
}

impl Chain {
    fn peek(&self) -> Option<&Bar> {
        self.batch.bars.get(self.batch.cursor)
    }

    fn retire(&mut self, kind: SliceKind, health: SliceHealth) {
        let entry = self.retired.entry(kind).or_default();
        entry.0.absorb(&health);
        entry.1 += 1;
    }

    /// True when the next batch can be pulled: nothing left, nothing pending.
    fn needs_batch(&self) -> bool {
        self.active && !self.ended && self.batch.exhausted() && self.batch.fault.is_none()
    }

    /// True right after a refill found the symbol's data empty from the
    /// start: no bar in the range at all, and no fault to explain it.
    fn has_no_bars(&self) -> bool {
        self.ended && self.bars_done == 0 && self.batch.fault.is_none()
    }
}

/// A backtest over ready-made slice chains.
pub struct Backtest<'f> {
    chains: Vec<Chain>,
    ledger: Ledger,
    settings: BacktestSettings,
    /// Fills the batches of several symbols at once; `None` for one thread.
    pool: Option<rayon::ThreadPool>,
    factory: Option<&'f dyn SliceFactory>,
    next_order_id: u64,
    stats: RunStats,
    /// Reasons signals were not acted on, counted.
    refusals: BTreeMap<String, u64>,
    faults: Vec<FaultRecord>,
    /// Safe mode lasts until this many timestamps have been processed.
    safe_until: Option<u64>,
    gate: RiskGate,
    /// Set when the risk kill switch stopped trading, with its reason.
    stopped: Option<String>,
    /// The first refusal of each risk rule, to show what the gate did.
    refusal_examples: BTreeMap<String, RefusalExample>,
    /// Gross exposure over equity through the run.
    exposure: ExposureStats,
    /// Margin interest is charged up to this time.
    interest_paid_to: Option<Timestamp>,
    next_position_id: u64,
    active: Vec<usize>,
    /// Call [`Recorder::decision`] for every symbol's bar.
    record_decisions: bool,
    /// Host liquidations the execution slot could not complete: the
    /// positions they leave open (at the venue, in live mode).
    left_open: Vec<String>,
}

/// A symbol's ready-made chain: its slices (data already opened), the analysis
/// slice's feature names, and where its data comes from.
pub struct ChainSetup {
    pub symbol: Symbol,
    /// The clock the chain's slices were built with.
    pub clock: SimClock,
    pub slices: SymbolSlices,
    pub features: Vec<String>,
    pub source: Option<SourceInfo>,
}

impl<'f> Backtest<'f> {
    /// `factory` builds fresh instances when a failed batch must be replayed
    /// or a slice replaced; without one, faults are reported at batch granularity.
    pub fn new(
        chains: Vec<ChainSetup>,
        settings: BacktestSettings,
        factory: Option<&'f dyn SliceFactory>,
    ) -> Self {
        let symbols: Vec<Symbol> = chains.iter().map(|c| c.symbol.clone()).collect();
        let chains: Vec<Chain> = chains
            .into_iter()
            .enumerate()
            .map(|(index, c)| Chain {
                index,
                symbol: c.symbol,
                clock: c.clock,
                slices: c.slices,
                features: c.features,
                source: c.source,
                batch: Batch::default(),
                carry: Carry::default(),
                history: History::starting(settings.start),
                ended: false,
                last_ts: None,
                working: Vec::new(),
                bars_done: 0,
                first_ts: None,
                active: true,
                liquidate: None,
                liquidating: None,
                last_bar: None,
                faults: 0,
                retired: BTreeMap::new(),
                life: None,
                borrow_paid_to: None,
            })
            .collect();
        let gate = RiskGate::new(settings.risk.clone(), settings.start_cash)
            .with_leverage_cap(settings.account.leverage_cap());
        let pool = worker_pool(settings.threads, chains.len());
        Backtest {
            chains,
            ledger: Ledger::new(settings.start_cash, &symbols),
            settings,
            pool,
            factory,
            next_order_id: 1,
            stats: RunStats::default(),
            refusals: BTreeMap::new(),
            faults: Vec::new(),
            safe_until: None,
            gate,
            stopped: None,
            refusal_examples: BTreeMap::new(),
            exposure: ExposureStats::default(),
            interest_paid_to: None,
            next_position_id: 1,
            active: Vec::new(),
            record_decisions: false,
            left_open: Vec::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    pub fn refusals(&self) -> &BTreeMap<String, u64> {
        &self.refusals
    }

    /// The first refusal of each risk rule: symbol, bar and the numbers.
    pub fn refusal_examples(&self) -> &BTreeMap<String, RefusalExample> {
        &self.refusal_examples
    }

    /// Gross exposure over equity, per timestamp, through the run.
    pub fn exposure(&self) -> &ExposureStats {
        &self.exposure
    }

    pub fn faults(&self) -> &[FaultRecord] {
        &self.faults
    }

    /// Why the risk kill switch stopped trading, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    /// Host liquidations that did not close their position, each saying
    /// what remains open and why.
    pub fn positions_left_open(&self) -> &[String] {
        &self.left_open
    }

    pub fn symbol_reports(&self) -> Vec<SymbolReport> {
        self.chains
            .iter()
            .map(|c| SymbolReport {
                symbol: c.symbol.clone(),
                bars: c.bars_done,
                first_ts: c.first_ts,
                last_ts: c.last_ts.filter(|_| c.bars_done > 0),
                source: c.source.clone(),
                active: c.active,
            })
            .collect()
    }

    pub fn health(&self) -> Vec<HealthReport> {
        let mut out = Vec::new();
        for c in &self.chains {
            let s = &c.slices;
            let current = [
                (SliceKind::Data, s.data.label(), s.data.health()),
                (SliceKind::Analysis, s.analysis.label(), s.analysis.health()),
                (SliceKind::Regime, s.regime.label(), s.regime.health()),
                (SliceKind::Strategy, s.strategy.label(), s.strategy.health()),
                (SliceKind::Sizing, s.sizing.label(), s.sizing.health()),
                (SliceKind::Execution, s.execution.label(), s.execution.health()),
            ];
            for (kind, label, mut health) in current {
                let replacements = c.retired.get(&kind).map_or(0, |(retired, n)| {
                    health.absorb(retired);
                    *n
                });
                out.push(HealthReport {
                    symbol: c.symbol.clone(),
                    slice: kind,
                    plugin: label.plugin.to_string(),
                    calls: health.calls,
                    failures: health.failures,
                    busy_ms: health.busy.as_secs_f64() * 1e3,
                    slowest_call_ms: health.slowest_call.as_secs_f64() * 1e3,
                    last_error: health.last_error,
                    replacements,
                });
            }
        }
        out
    }

    /// Runs to the end of the data. On error, everything recorded so far stays
    /// recorded and the ledger reflects the last completed bar.
    pub fn run(&mut self, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        while self.advance(recorder)? != Progress::Finished {}
        self.finish(recorder)
    }

    /// Processes the next timestamp, if any symbol has a bar for it.
    pub fn advance(&mut self, recorder: &mut dyn Recorder) -> Result<Progress, RunError> {
        self.fill_batches()?;
        let mut next: Option<Timestamp> = None;
        let mut waiting = false;
        for i in 0..self.chains.len() {
            self.prepare(i, recorder)?;
            match self.chains[i].peek() {
                Some(bar) => next = Some(next.map_or(bar.ts, |n: Timestamp| n.min(bar.ts))),
                None => waiting |= !self.chains[i].ended,
            }
        }
        match next {
            Some(ts) => {
                self.step(ts, recorder)?;
                Ok(Progress::Stepped(ts))
            }
            None if waiting => Ok(Progress::Waiting),
            None => Ok(Progress::Finished),
        }
    }

    /// Records the orders still working when the run ends.
    pub fn finish(&mut self, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        for i in 0..self.chains.len() {
            self.close_book(i, None, OrderStatus::Working, "the run ended with the symbol's data", recorder)?;
        }
        Ok(())
    }

    /// Pulls the next batch of every symbol that needs one. The symbols'
    /// analysis, regime and strategy slices depend on their own bars only,
    /// so with a thread pool they run at the same time; each chain has its
    /// own instances and clock, so the results are the same either way.
    fn fill_batches(&mut self) -> Result<(), RunError> {
        let (settings, factory) = (&self.settings, self.factory);
        let mut due: Vec<&mut Chain> = self.chains.iter_mut().filter(|c| c.needs_batch()).collect();
        match &self.pool {
            Some(pool) if due.len() > 1 => {
                use rayon::prelude::*;
                pool.install(|| due.par_iter_mut().for_each(|chain| chain.refill(settings, factory)));
            }
            _ => due.iter_mut().for_each(|chain| chain.refill(settings, factory)),
        }
        // Checked in symbol order, so the error does not depend on threads.
        match due.iter().find(|chain| chain.has_no_bars()) {
            Some(chain) => {
                Err(RunError::NoBars { symbol: chain.symbol.clone(), range: describe_range(settings) })
            }
            None => Ok(()),
        }
    }

    /// Makes sure chain `i` has a next bar if its data has one, firing a
    /// fault that follows its last bar.
    fn prepare(&mut self, i: usize, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        // Bounded: every pass either ends the chain, fills its batch, or
        // counts a fault (and faults are capped per symbol).
        loop {
            let chain = &mut self.chains[i];
            if !chain.batch.exhausted() {
                return Ok(());
            }
            if let Some(fault) = chain.batch.fault.take() {
                let at = fault.ts.or(chain.last_ts);
                self.on_fault(i, at, fault.error, recorder)?;
                continue;
            }
            if chain.ended {
                return Ok(());
            }
            if !chain.active {
                self.refill_for_liquidation(i, recorder)?;
                let chain = &self.chains[i];
                if !chain.ended && chain.batch.exhausted() && chain.batch.fault.is_none() {
                    // A live feed with nothing new yet: ask again on the next advance.
                    return Ok(());
                }
            } else {
                let (settings, factory) = (&self.settings, self.factory);
                self.chains[i].refill(settings, factory);
                let chain = &self.chains[i];
                if chain.has_no_bars() {
                    return Err(RunError::NoBars {
                        symbol: chain.symbol.clone(),
                        range: describe_range(&self.settings),
                    });
                }
                if !chain.ended && chain.batch.exhausted() && chain.batch.fault.is_none() {
                    // A live feed with nothing new yet: ask again on the next advance.
                    return Ok(());
                }
            }
        }
    }

    fn step(&mut self, ts: Timestamp, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        // Warming up: no signal is acted on, so there is no order, fill or
        // position either, and nothing is recorded.
        let trading = self.settings.trade_from.is_none_or(|from| ts >= from);
        if trading {
            self.charge_interest(ts)?;
        }
        self.gate.begin(ts, self.ledger.equity());
        let mut active = std::mem::take(&mut self.active);
        active.clear();
        active.extend(self.chains.iter().filter(|c| c.peek().is_some_and(|b| b.ts == ts)).map(|c| c.index));
        for &i in &active {
            self.chains[i].clock.set(ts);
        }

        for &i in &active {
            let bar = self.chains[i].batch.bars[self.chains[i].batch.cursor];
            self.liquidate_if_due(i, &bar, recorder)?;
            if !self.chains[i].working.is_empty() {
                let mut events = Vec::new();
                let result =
                    self.chains[i].slices.execution.on_bar(&bar, &mut events).map_err(StepError::from);
                let result = result.and_then(|()| self.apply_events(i, &bar, &events, recorder));
                self.fault_or(i, Some(ts), result, recorder)?;
                self.settle_liquidation(i);
            }
        }
        for &i in &active {
            let batch = &self.chains[i].batch;
            let close = batch.bars[batch.cursor].close;
            if let Err(error) = self.ledger.try_mark(i, close).and_then(|()| self.charge_borrow(i, ts)) {
                return Err(RunError::Ledger { symbol: self.chains[i].symbol.clone(), at: ts, error });
            }
            self.update_lifecycle(i, ts, true, recorder)?;
        }
        if let Some(reason) = self.gate.after_marks(self.ledger.equity()) {
            self.stop_trading(reason, recorder)?;
        } else if let Some(reason) = self.gate.daily_close_due(self.ledger.equity()) {
            self.close_for_the_day(reason, recorder)?;
        }
        for &i in &active {
            let chain = &mut self.chains[i];
            let cursor = chain.batch.cursor;
            if chain.batch.fault.as_ref().is_some_and(|f| f.at == cursor) {
                let fault = chain.batch.fault.take().expect("checked");
                self.on_fault(i, Some(ts), fault.error, recorder)?;
                continue;
            }
            let signal = chain
                .batch
                .signals
                .get(chain.batch.next_signal)
                .filter(|s| s.bar_index as usize == cursor)
                .copied();
            if self.record_decisions {
                let width = chain.features.len();
                let batch = &chain.batch;
                recorder.decision(&Decision {
                    symbol: &chain.symbol,
                    bar: &batch.bars[cursor],
                    features: batch.features.get(cursor * width..(cursor + 1) * width).unwrap_or_default(),
                    feature_names: &chain.features,
                    regime: batch.regimes.get(cursor).copied().unwrap_or(Regime::Unknown),
                    signal: signal.filter(|_| chain.active),
                })?;
            }
            if let Some(signal) = signal {
                chain.batch.next_signal += 1;
                if chain.active && trading {
                    let bar = chain.batch.bars[cursor];
                    let result = self.on_signal(i, &signal, &bar, recorder);
                    self.fault_or(i, Some(ts), result, recorder)?;
                }
            }
        }
        for &i in &active {
            let chain = &mut self.chains[i];
            chain.last_bar = Some(chain.batch.bars[chain.batch.cursor]);
        }
        if self.settings.liquidation == Liquidation::ThroughExecution {
            self.send_liquidations(recorder)?;
        }
        for &i in &active {
            let chain = &mut self.chains[i];
            if trading {
                recorder.bar(i, &chain.batch.bars[chain.batch.cursor]);
            }
            chain.batch.cursor += 1;
            chain.bars_done += 1;
        }
        if !trading {
            self.active = active;
            return Ok(());
        }
        self.stats.bars += active.len() as u64;
        self.stats.timestamps += 1;
        self.stats.first_ts.get_or_insert(ts);
        self.stats.last_ts = Some(ts);
        // A ledger operation that could not be applied (a host liquidation
        // or borrow charge beyond what a decimal holds) ends the run here,
        // before a row that would not be the account's.
        if let Some(error) = self.ledger.overflow() {
            let symbol = active
                .first()
                .map_or_else(|| self.chains[0].symbol.clone(), |&i| self.chains[i].symbol.clone());
            self.active = active;
            return Err(RunError::Ledger { symbol, at: ts, error: error.clone() });
        }
        self.active = active;
        self.exposure.record(ts, self.ledger.gross_exposure(), self.ledger.cash(), self.ledger.equity());
        recorder.equity(ts, self.ledger.cash(), self.ledger.equity())?;
        Ok(())
    }
}

fn describe_range(settings: &BacktestSettings) -> String {
    match (settings.start, settings.end) {
        (None, None) => String::new(),
        (s, e) => format!(
            " ({} to {})",
            s.map(crate::time::date).unwrap_or_else(|| "the start".into()),
            e.map(crate::time::date).unwrap_or_else(|| "the end".into())
        ),
    }
}
