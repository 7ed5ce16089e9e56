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
//! batched call that fails is replayed bar by bar on fresh instances to find
//! the bar it failed on: backtests are deterministic, so the failure recurs.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::clock::SimClock;
use crate::config::FaultPolicy;
use crate::model::{
    Action, Bar, Fill, Order, OrderEvent, OrderId, OrderType, Regime, Side, Signal, SizingRequest, SliceKind,
    SourceInfo, Symbol, TimeInForce, Timestamp, price_to_decimal,
};
use crate::portfolio::{Ledger, RoundTrip};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, Failure, RegimeSlice, SizingSlice, SliceError, SliceHealth,
    SliceResult, StrategySlice, SymbolSlices,
};
use crate::time::iso;

/// Receives what a run produces, as it happens.
pub trait Recorder {
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> io::Result<()>;
    fn order(&mut self, order: &OrderRecord) -> io::Result<()>;
    fn round_trip(&mut self, trip: &RoundTrip) -> io::Result<()>;
}

/// Builds fresh slice instances for a symbol, so the loop can replay a failed
/// batch and recover from faults.
pub trait SliceFactory {
    /// A data slice opened on `symbol` for bars in `[start, end]`.
    fn data(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> SliceResult<Box<dyn DataSlice>>;
    fn analysis(&self, symbol: &Symbol) -> SliceResult<Box<dyn AnalysisSlice>>;
    fn regime(&self, symbol: &Symbol, features: &[String]) -> SliceResult<Box<dyn RegimeSlice>>;
    fn strategy(&self, symbol: &Symbol, features: &[String]) -> SliceResult<Box<dyn StrategySlice>>;
    fn sizing(&self, symbol: &Symbol) -> SliceResult<Box<dyn SizingSlice>>;
    fn execution(&self, symbol: &Symbol) -> SliceResult<Box<dyn ExecutionSlice>>;
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
    /// Still working when the run ended.
    Working,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
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

/// Inputs of a backtest besides the slices.
#[derive(Debug, Clone)]
pub struct BacktestSettings {
    pub start_cash: Decimal,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub batch_size: u32,
    pub faults: FaultSettings,
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
}

/// A failure found while filling a batch, which fires when the loop reaches it.
struct PendingFault {
    /// Index of the bar it fires on; `bars.len()` when it follows the last bar
    /// (the data slice failed, so there is no bar to point at).
    at: usize,
    /// The time of the offending bar when there is one but it is not in the
    /// batch (a data slice returned an unusable bar).
    ts: Option<Timestamp>,
    error: SliceError,
}

/// The bars a chain has pulled ahead of the loop, and what its analysis,
/// regime and strategy slices made of them.
#[derive(Default)]
struct Batch {
    bars: Vec<Bar>,
    features: Vec<f64>,
    regimes: Vec<Regime>,
    signals: Vec<Signal>,
    cursor: usize,
    next_signal: usize,
    fault: Option<PendingFault>,
}

impl Batch {
    fn clear(&mut self) {
        self.bars.clear();
        self.features.clear();
        self.regimes.clear();
        self.signals.clear();
        self.cursor = 0;
        self.next_signal = 0;
        self.fault = None;
    }

    fn exhausted(&self) -> bool {
        self.cursor == self.bars.len()
    }
}

/// One symbol's slices and its place in the data.
struct Chain {
    index: usize,
    symbol: Symbol,
    slices: SymbolSlices,
    features: Vec<String>,
    source: Option<SourceInfo>,
    batch: Batch,
    ended: bool,
    /// Open time of the last bar read and accepted from the data slice.
    last_ts: Option<Timestamp>,
    working: Vec<WorkingOrder>,
    bars_done: u64,
    first_ts: Option<Timestamp>,
    /// False once a fault policy dropped the symbol.
    active: bool,
    /// The host closes the position at the next bar.
    liquidate: Option<String>,
    faults: u32,
    /// Health of replaced instances, per slice kind.
    retired: BTreeMap<SliceKind, (SliceHealth, u32)>,
}

impl Chain {
    fn peek(&self) -> Option<&Bar> {
        self.batch.bars.get(self.batch.cursor)
    }

    /// Net position after every working order fills: what a new signal is judged against.
    fn intended_position(&self, position: Decimal) -> Decimal {
        self.working.iter().fold(position, |q, w| {
            let rest = w.order.quantity - w.filled;
            if w.order.side == Side::Buy { q + rest } else { q - rest }
        })
    }

    fn retire(&mut self, kind: SliceKind, health: SliceHealth) {
        let entry = self.retired.entry(kind).or_default();
        entry.0.absorb(&health);
        entry.1 += 1;
    }
}

/// The pipeline slices a batch goes through, borrowed from a chain or from a replay.
struct Pipeline<'a> {
    analysis: &'a mut dyn AnalysisSlice,
    regime: &'a mut dyn RegimeSlice,
    strategy: &'a mut dyn StrategySlice,
}

impl Pipeline<'_> {
    /// Runs `bars` through analysis, regime and strategy, appending to `out`
    /// and checking each slice's output before the next slice sees it.
    fn run(&mut self, bars: &[Bar], width: usize, out: &mut Batch) -> SliceResult<()> {
        let n = bars.len();
        let (features_before, signals_before, offset) =
            (out.features.len(), out.signals.len(), out.bars.len());
        let mut features = Vec::with_capacity(n * width);
        self.analysis.update(bars, &mut features)?;
        if features.len() != n * width {
            return Err(SliceError::invalid(
                self.analysis.label(),
                format!("update returned {} values for {n} bars x {width} features", features.len()),
            ));
        }
        let mut regimes = Vec::with_capacity(n);
        self.regime.classify(bars, &features, &mut regimes)?;
        if regimes.len() != n {
            return Err(SliceError::invalid(
                self.regime.label(),
                format!("classify returned {} regimes for {n} bars", regimes.len()),
            ));
        }
        let mut signals = Vec::new();
        self.strategy.decide(bars, &features, &regimes, &mut signals)?;
        let mut previous: Option<u32> = None;
        for signal in &signals {
            check_signal(signal, previous, n).map_err(|m| SliceError::invalid(self.strategy.label(), m))?;
            previous = Some(signal.bar_index);
        }
        debug_assert_eq!((out.features.len(), out.signals.len()), (features_before, signals_before));
        out.bars.extend_from_slice(bars);
        out.features.extend_from_slice(&features);
        out.regimes.extend_from_slice(&regimes);
        out.signals
            .extend(signals.into_iter().map(|s| Signal { bar_index: s.bar_index + offset as u32, ..s }));
        Ok(())
    }
}

/// The data slice's output must be usable as market data: strictly
/// increasing times inside the range, positive finite prices, a consistent bar.
fn check_bar(bar: &Bar, previous: Option<Timestamp>, settings: &BacktestSettings) -> Result<(), String> {
    if let Some(prev) = previous.filter(|&p| bar.ts <= p) {
        return Err(format!(
            "timestamp {} is not after the previous bar's {} (bars must be in strictly increasing time order)",
            iso(bar.ts),
            iso(prev)
        ));
    }
    if settings.start.is_some_and(|s| bar.ts < s) || settings.end.is_some_and(|e| bar.ts > e) {
        return Err(format!("timestamp {} is outside the requested range", iso(bar.ts)));
    }
    for (field, v) in [("open", bar.open), ("high", bar.high), ("low", bar.low), ("close", bar.close)] {
        if !v.is_finite() || v <= 0.0 {
            return Err(format!("`{field}` is {v}, not a positive finite price"));
        }
    }
    if !bar.volume.is_finite() || bar.volume < 0.0 {
        return Err(format!("`volume` is {}, not a finite non-negative number", bar.volume));
    }
    if bar.high < bar.low || bar.high < bar.open.max(bar.close) || bar.low > bar.open.min(bar.close) {
        return Err(format!(
            "prices are inconsistent: open {} high {} low {} close {} (need low <= open, close <= high)",
            bar.open, bar.high, bar.low, bar.close
        ));
    }
    Ok(())
}

fn check_signal(signal: &Signal, previous: Option<u32>, bars: usize) -> Result<(), String> {
    let i = signal.bar_index;
    if i as usize >= bars {
        return Err(format!("signal for bar {i}, but the batch has {bars} bars"));
    }
    if let Some(p) = previous.filter(|&p| i <= p) {
        return Err(format!("signals must be in bar order, at most one per bar; bar {i} came after bar {p}"));
    }
    let price_ok = |p: Option<f64>| p.is_some_and(|v| v.is_finite() && v > 0.0);
    let (needs_limit, needs_stop) = match signal.order_type {
        OrderType::Market => (false, false),
        OrderType::Limit => (true, false),
        OrderType::Stop => (false, true),
        OrderType::StopLimit => (true, true),
    };
    if needs_limit && !price_ok(signal.limit_price) {
        return Err(format!(
            "{} signal on bar {i} needs a positive finite limit price, got {:?}",
            signal.order_type.as_str(),
            signal.limit_price
        ));
    }
    if needs_stop && !price_ok(signal.stop_price) {
        return Err(format!(
            "{} signal on bar {i} needs a positive finite stop price, got {:?}",
            signal.order_type.as_str(),
            signal.stop_price
        ));
    }
    Ok(())
}

/// Largest notional a sized order may have, as a multiple of equity: anything
/// above is taken as a broken sizer, not a decision.
const ABSURD_LEVERAGE: i64 = 100;

/// A backtest over ready-made slice chains.
pub struct Backtest<'f> {
    chains: Vec<Chain>,
    ledger: Ledger,
    clock: SimClock,
    settings: BacktestSettings,
    factory: Option<&'f dyn SliceFactory>,
    next_order_id: u64,
    stats: RunStats,
    /// Reasons signals were not acted on, counted.
    refusals: BTreeMap<String, u64>,
    faults: Vec<FaultRecord>,
    /// Safe mode lasts until this many timestamps have been processed.
    safe_until: Option<u64>,
    active: Vec<usize>,
}

/// A symbol's ready-made chain: its slices (data already opened), the analysis
/// slice's feature names, and where its data comes from.
pub struct ChainSetup {
    pub symbol: Symbol,
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
        clock: SimClock,
        factory: Option<&'f dyn SliceFactory>,
    ) -> Self {
        let symbols: Vec<Symbol> = chains.iter().map(|c| c.symbol.clone()).collect();
        let chains = chains
            .into_iter()
            .enumerate()
            .map(|(index, c)| Chain {
                index,
                symbol: c.symbol,
                slices: c.slices,
                features: c.features,
                source: c.source,
                batch: Batch::default(),
                ended: false,
                last_ts: None,
                working: Vec::new(),
                bars_done: 0,
                first_ts: None,
                active: true,
                liquidate: None,
                faults: 0,
                retired: BTreeMap::new(),
            })
            .collect();
        Backtest {
            chains,
            ledger: Ledger::new(settings.start_cash, &symbols),
            clock,
            settings,
            factory,
            next_order_id: 1,
            stats: RunStats::default(),
            refusals: BTreeMap::new(),
            faults: Vec::new(),
            safe_until: None,
            active: Vec::new(),
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

    pub fn faults(&self) -> &[FaultRecord] {
        &self.faults
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
        loop {
            let mut next: Option<Timestamp> = None;
            for i in 0..self.chains.len() {
                self.prepare(i, recorder)?;
                if let Some(bar) = self.chains[i].peek() {
                    next = Some(next.map_or(bar.ts, |n: Timestamp| n.min(bar.ts)));
                }
            }
            let Some(ts) = next else { break };
            self.step(ts, recorder)?;
        }
        for i in 0..self.chains.len() {
            let reason = "the run ended with the symbol's data";
            self.close_book(i, None, OrderStatus::Working, reason, recorder)?;
        }
        Ok(())
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
            } else {
                self.refill(i)?;
                let chain = &self.chains[i];
                if chain.ended && chain.bars_done == 0 && chain.batch.fault.is_none() {
                    return Err(RunError::NoBars {
                        symbol: chain.symbol.clone(),
                        range: describe_range(&self.settings),
                    });
                }
            }
        }
    }

    /// Pulls the next batch through data -> analysis -> regime -> strategy.
    /// A failure is located to its bar and left pending in the batch.
    fn refill(&mut self, i: usize) -> Result<(), RunError> {
        let settings = &self.settings;
        let chain = &mut self.chains[i];
        chain.batch.clear();
        let mut bars = Vec::with_capacity(settings.batch_size as usize);
        let data_label = chain.slices.data.label().clone();
        let read = chain.slices.data.next_batch(settings.batch_size, &mut bars).and_then(|()| {
            let mut previous = chain.last_ts;
            for (k, bar) in bars.iter().enumerate() {
                check_bar(bar, previous, settings)
                    .map_err(|m| SliceError::invalid(&data_label, format!("bar {k} of its batch: {m}")))?;
                previous = Some(bar.ts);
            }
            Ok(())
        });
        let result = read.and_then(|()| {
            if bars.is_empty() {
                return Ok(());
            }
            self.clock.set(bars[bars.len() - 1].ts);
            let s = &mut chain.slices;
            let mut pipeline =
                Pipeline { analysis: &mut *s.analysis, regime: &mut *s.regime, strategy: &mut *s.strategy };
            pipeline.run(&bars, chain.features.len(), &mut chain.batch)
        });
        match result {
            Ok(()) if bars.is_empty() => chain.ended = true,
            Ok(()) => {
                chain.first_ts.get_or_insert(bars[0].ts);
                chain.last_ts = Some(bars[bars.len() - 1].ts);
            }
            Err(error) => {
                let failed_len = bars.len().max(settings.batch_size as usize);
                self.locate_fault(i, error, failed_len)?;
            }
        }
        Ok(())
    }

    /// Replays chain `i` from its first bar on fresh instances (whole batches
    /// up to the failed one, then bar by bar) and leaves the bars before the
    /// failure in its batch with the failure pending on the bar it recurs on.
    /// The chain continues on the fresh instances.
    fn locate_fault(&mut self, i: usize, error: SliceError, failed_len: usize) -> Result<(), RunError> {
        let replay = self.factory.map(|factory| self.replay(i, factory, failed_len));
        let chain = &mut self.chains[i];
        chain.batch.clear();
        match replay {
            Some(Ok((slices, batch))) => {
                for (kind, old) in replaced_health(&mut chain.slices, slices) {
                    chain.retire(kind, old);
                }
                if let Some(first) = batch.bars.first() {
                    chain.first_ts.get_or_insert(first.ts);
                }
                if let Some(last) = batch.bars.last() {
                    chain.last_ts = Some(last.ts);
                }
                let mut batch = batch;
                if batch.fault.is_none() {
                    // The failure did not recur bar by bar: report it where the batch began.
                    let note = "(it did not recur when the batch was replayed bar by bar)";
                    let error = annotate(error, note);
                    batch.fault = Some(PendingFault { at: 0, ts: None, error });
                }
                chain.batch = batch;
            }
            Some(Err(replay_error)) => {
                let note = format!("(replaying the batch to find the bar failed too: {replay_error})");
                chain.batch.fault = Some(PendingFault { at: 0, ts: None, error: annotate(error, &note) });
            }
            None => chain.batch.fault = Some(PendingFault { at: 0, ts: None, error }),
        }
        Ok(())
    }

    /// Fresh data, analysis, regime and strategy instances replayed up to the
    /// failed batch, and that batch processed bar by bar until it fails.
    fn replay(
        &self,
        i: usize,
        factory: &dyn SliceFactory,
        failed_len: usize,
    ) -> Result<(FreshPipeline, Batch), SliceError> {
        let chain = &self.chains[i];
        let symbol = &chain.symbol;
        let mut fresh = FreshPipeline {
            data: factory.data(symbol, self.settings.start, self.settings.end)?,
            analysis: factory.analysis(symbol)?,
            regime: factory.regime(symbol, &chain.features)?,
            strategy: factory.strategy(symbol, &chain.features)?,
        };
        let width = chain.features.len();
        let diverged = |what: String| SliceError::invalid(fresh_label(&chain.slices), what);
        // Whole batches, exactly as the run read them, up to the failed one.
        let mut previous: Option<Timestamp> = None;
        if let Some(done) = chain.last_ts {
            while previous.is_none_or(|p| p < done) {
                let mut bars = Vec::new();
                fresh.data.next_batch(self.settings.batch_size, &mut bars)?;
                if bars.is_empty() || bars[bars.len() - 1].ts > done {
                    return Err(diverged("the data slice gave different bars on replay".into()));
                }
                self.clock.set(bars[bars.len() - 1].ts);
                let mut sink = Batch::default();
                fresh.pipeline().run(&bars, width, &mut sink)?;
                previous = Some(bars[bars.len() - 1].ts);
            }
        }
        // Then bar by bar.
        let mut batch = Batch::default();
        for _ in 0..failed_len {
            let mut bars = Vec::with_capacity(1);
            if let Err(error) = fresh.data.next_batch(1, &mut bars) {
                batch.fault = Some(PendingFault { at: batch.bars.len(), ts: None, error });
                break;
            }
            let Some(bar) = bars.first().copied() else { break };
            if let Err(m) = check_bar(&bar, previous, &self.settings) {
                let error = SliceError::invalid(fresh.data.label(), m);
                batch.fault = Some(PendingFault { at: batch.bars.len(), ts: Some(bar.ts), error });
                break;
            }
            previous = Some(bar.ts);
            self.clock.set(bar.ts);
            if let Err(error) = fresh.pipeline().run(&bars, width, &mut batch) {
                // The bar itself is sound market data: it is still filled and
                // marked; only its decisions are lost.
                let at = batch.bars.len();
                batch.bars.push(bar);
                batch.features.extend(std::iter::repeat_n(f64::NAN, width));
                batch.regimes.push(Regime::Unknown);
                batch.fault = Some(PendingFault { at, ts: None, error });
                break;
            }
        }
        Ok((fresh, batch))
    }

    fn step(&mut self, ts: Timestamp, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        self.clock.set(ts);
        let mut active = std::mem::take(&mut self.active);
        active.clear();
        active.extend(self.chains.iter().filter(|c| c.peek().is_some_and(|b| b.ts == ts)).map(|c| c.index));

        for &i in &active {
            let bar = self.chains[i].batch.bars[self.chains[i].batch.cursor];
            self.liquidate_if_due(i, &bar, recorder)?;
            if !self.chains[i].working.is_empty() {
                let mut events = Vec::new();
                let result =
                    self.chains[i].slices.execution.on_bar(&bar, &mut events).map_err(StepError::from);
                let result = result.and_then(|()| self.apply_events(i, &bar, &events, recorder));
                self.fault_or(i, Some(ts), result, recorder)?;
            }
        }
        for &i in &active {
            let batch = &self.chains[i].batch;
            self.ledger.mark(i, batch.bars[batch.cursor].close);
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
            if let Some(signal) = signal {
                chain.batch.next_signal += 1;
                if chain.active {
                    let bar = chain.batch.bars[cursor];
                    let result = self.on_signal(i, &signal, &bar, recorder);
                    self.fault_or(i, Some(ts), result, recorder)?;
                }
            }
        }
        for &i in &active {
            let chain = &mut self.chains[i];
            chain.batch.cursor += 1;
            chain.bars_done += 1;
        }
        self.stats.bars += active.len() as u64;
        self.stats.timestamps += 1;
        self.stats.first_ts.get_or_insert(ts);
        self.stats.last_ts = Some(ts);
        self.active = active;
        recorder.equity(ts, self.ledger.cash(), self.ledger.equity())?;
        Ok(())
    }

    /// Applies the fault policy to a failed slice call; passes I/O errors on.
    fn fault_or(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        result: Result<(), StepError>,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        match result {
            Ok(()) => Ok(()),
            Err(StepError::Slice(error)) => self.on_fault(i, at, error, recorder),
            Err(StepError::Io(e)) => Err(RunError::Io(e)),
        }
    }

    /// Records a fault and applies the run's policy to it.
    fn on_fault(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        error: SliceError,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let chain = &mut self.chains[i];
        chain.faults += 1;
        let policy = match self.settings.faults.policy {
            FaultPolicy::Halt => FaultPolicy::Halt,
            _ if chain.faults >= self.settings.faults.max_faults_per_symbol => FaultPolicy::SkipSymbol,
            other => other,
        };
        let (kind, backtrace) = match &error.failure {
            Failure::Returned(_) => ("returned-error", None),
            Failure::Trapped { backtrace, .. } => ("trapped", backtrace.clone()),
            Failure::Invalid(_) => ("invalid-output", None),
            Failure::OverBudget { .. } => ("over-budget", None),
            Failure::Poisoned => ("poisoned", None),
        };
        let action = match policy {
            FaultPolicy::Halt => "halted",
            FaultPolicy::SkipSymbol => "dropped-symbol",
            FaultPolicy::SafeMode => "safe-mode",
        };
        tracing::warn!(symbol = %chain.symbol, action, "{error}");
        self.faults.push(FaultRecord {
            at: at.map(iso),
            symbol: chain.symbol.clone(),
            slice: error.label.kind,
            plugin: error.label.plugin.to_string(),
            kind,
            message: error.failure.to_string(),
            backtrace,
            action,
        });
        match policy {
            FaultPolicy::Halt => Err(RunError::Slice { symbol: chain.symbol.clone(), at, error }),
            FaultPolicy::SkipSymbol => self.drop_symbol(i, &error, recorder),
            FaultPolicy::SafeMode => self.enter_safe_mode(i, at, &error, recorder),
        }
    }

    /// Skip-symbol: the symbol takes no further decisions; its working orders
    /// are cancelled and the host closes its position at its next bar.
    fn drop_symbol(
        &mut self,
        i: usize,
        error: &SliceError,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let reason = format!("{} dropped after a fault in its {}", self.chains[i].symbol, error.label);
        self.close_book(i, None, OrderStatus::Cancelled, &reason, recorder)?;
        let chain = &mut self.chains[i];
        chain.active = false;
        // Decisions already made on bars not yet processed must not be acted on.
        chain.batch.signals.clear();
        chain.batch.fault = None;
        if self.ledger.position(i).is_zero() {
            // Keep the bar being processed, if any; read no further.
            chain.ended = true;
            chain.batch.bars.truncate(chain.batch.cursor + 1);
        } else {
            chain.liquidate = Some(reason);
        }
        Ok(())
    }

    /// Safe mode: no new positions anywhere for the cool-down (and every
    /// position closed if so configured); the failed slice is replaced by a
    /// fresh instance, which warms up from the next bar.
    fn enter_safe_mode(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        error: &SliceError,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let until = self.stats.timestamps + self.settings.faults.cooldown_bars;
        self.safe_until = Some(self.safe_until.map_or(until, |u| u.max(until)));
        if let Err(e) = self.replace(i, error.label.kind, at, recorder) {
            // No fresh instance to carry on with: the symbol cannot continue.
            let note = format!("{e}");
            self.faults.push(FaultRecord {
                at: at.map(iso),
                symbol: self.chains[i].symbol.clone(),
                slice: e.label.kind,
                plugin: e.label.plugin.to_string(),
                kind: "replacement-failed",
                message: note,
                backtrace: None,
                action: "dropped-symbol",
            });
            self.drop_symbol(i, error, recorder)?;
        }
        if self.settings.faults.flatten {
            let reason = format!("safe mode after a fault in {}: flatten", error.label);
            for j in 0..self.chains.len() {
                if !self.ledger.position(j).is_zero() {
                    self.cancel_all(j, &reason, recorder)?;
                    self.chains[j].liquidate = Some(reason.clone());
                }
            }
        }
        Ok(())
    }

    /// Gives chain `i` a fresh instance of `kind` (all three pipeline slices
    /// for a pipeline fault, so they warm up together). A fresh data slice
    /// starts after the bar the fault was on, which is lost for the symbol.
    fn replace(
        &mut self,
        i: usize,
        kind: SliceKind,
        at: Option<Timestamp>,
        recorder: &mut dyn Recorder,
    ) -> Result<(), SliceError> {
        let Some(factory) = self.factory else {
            return Err(SliceError {
                label: self.chains[i].slices.label_of(kind).clone(),
                failure: Failure::Returned("no way to create a fresh instance".into()),
            });
        };
        let chain = &mut self.chains[i];
        let symbol = chain.symbol.clone();
        match kind {
            SliceKind::Data => {
                let start = chain.last_ts.max(at).map(|t| t + 1).or(self.settings.start);
                let fresh = factory.data(&symbol, start, self.settings.end)?;
                let old = std::mem::replace(&mut chain.slices.data, fresh);
                chain.retire(kind, old.health());
            }
            SliceKind::Analysis | SliceKind::Regime | SliceKind::Strategy => {
                let analysis = factory.analysis(&symbol)?;
                let regime = factory.regime(&symbol, &chain.features)?;
                let strategy = factory.strategy(&symbol, &chain.features)?;
                let old = std::mem::replace(&mut chain.slices.analysis, analysis);
                chain.retire(SliceKind::Analysis, old.health());
                let old = std::mem::replace(&mut chain.slices.regime, regime);
                chain.retire(SliceKind::Regime, old.health());
                let old = std::mem::replace(&mut chain.slices.strategy, strategy);
                chain.retire(SliceKind::Strategy, old.health());
                // Decisions on bars not yet processed came from the failed instances.
                let cursor = chain.batch.cursor;
                chain.batch.signals.retain(|s| (s.bar_index as usize) < cursor);
            }
            SliceKind::Sizing => {
                let old = std::mem::replace(&mut chain.slices.sizing, factory.sizing(&symbol)?);
                chain.retire(kind, old.health());
            }
            SliceKind::Execution => {
                let fresh = factory.execution(&symbol)?;
                let reason = "cancelled by the host: the execution slice was replaced after a fault";
                // The new instance never saw these orders: the host closes them itself.
                self.close_book(i, None, OrderStatus::Cancelled, reason, recorder).map_err(|e| {
                    SliceError {
                        label: self.chains[i].slices.execution.label().clone(),
                        failure: Failure::Returned(format!("cannot record cancelled orders: {e}")),
                    }
                })?;
                let chain = &mut self.chains[i];
                let old = std::mem::replace(&mut chain.slices.execution, fresh);
                chain.retire(kind, old.health());
            }
        }
        Ok(())
    }

    /// Host-side close of a position after a fault, at this bar's open.
    fn liquidate_if_due(&mut self, i: usize, bar: &Bar, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        let Some(reason) = self.chains[i].liquidate.take() else { return Ok(()) };
        self.close_position_at(i, bar.ts, bar.open, &reason, recorder)?;
        let chain = &mut self.chains[i];
        if !chain.active {
            // Nothing more to do for a dropped symbol: stop after this bar.
            chain.ended = true;
            chain.batch.bars.truncate(chain.batch.cursor + 1);
        }
        Ok(())
    }

    fn close_position_at(
        &mut self,
        i: usize,
        ts: Timestamp,
        price: f64,
        reason: &str,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let position = self.ledger.position(i);
        if position.is_zero() {
            return Ok(());
        }
        let price = price_to_decimal(price).expect("prices are validated as finite");
        let quantity = position.abs();
        let side = if position > Decimal::ZERO { Side::Sell } else { Side::Buy };
        let fee = quantity * price * self.settings.faults.liquidation_fee_bps / Decimal::from(10_000);
        let order = Order {
            id: OrderId(self.next_order_id),
            symbol: self.chains[i].symbol.clone(),
            side,
            quantity,
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Ioc,
            created_at: ts,
        };
        self.next_order_id += 1;
        self.stats.orders += 1;
        self.stats.fills += 1;
        if let Some(trip) = self.ledger.apply_fill(i, side, quantity, price, fee, ts) {
            recorder.round_trip(&trip)?;
        }
        let w = WorkingOrder { order, filled: quantity, notional: quantity * price, fees: fee };
        recorder.order(&order_record(
            w,
            OrderStatus::Filled,
            Some(ts),
            format!("host liquidation: {reason}"),
        ))?;
        Ok(())
    }

    /// A dropped symbol keeps reading bars only to close its position; if its
    /// data has ended (or its data slice failed), the position is closed at its last mark.
    fn refill_for_liquidation(&mut self, i: usize, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        let chain = &mut self.chains[i];
        chain.batch.clear();
        let mut bars = Vec::with_capacity(1);
        let read = chain.slices.data.next_batch(1, &mut bars);
        let bar = match read {
            Ok(()) => bars.first().copied().filter(|b| check_bar(b, chain.last_ts, &self.settings).is_ok()),
            Err(_) => None,
        };
        match bar {
            Some(bar) => {
                chain.last_ts = Some(bar.ts);
                chain.batch.bars.push(bar);
            }
            None => {
                let reason = chain.liquidate.take().unwrap_or_default();
                chain.ended = true;
                let (ts, mark) = (chain.last_ts.unwrap_or_default(), self.ledger.mark_price(i));
                if let Some(mark) = mark {
                    let reason = format!("{reason}; no further bar, closed at the last close");
                    self.close_position_at(i, ts, mark, &reason, recorder)?;
                }
            }
        }
        Ok(())
    }

    fn refuse(&mut self, reason: &str) {
        self.stats.refused_signals += 1;
        *self.refusals.entry(reason.to_owned()).or_default() += 1;
    }

    fn in_safe_mode(&self) -> bool {
        self.safe_until.is_some_and(|until| self.stats.timestamps < until)
    }

    fn on_signal(
        &mut self,
        i: usize,
        signal: &Signal,
        bar: &Bar,
        recorder: &mut dyn Recorder,
    ) -> Result<(), StepError> {
        self.stats.signals += 1;
        let position = self.ledger.position(i);
        let intended = self.chains[i].intended_position(position);
        let zero = Decimal::ZERO;
        let redundant = match signal.action {
            Action::EnterLong => intended > zero,
            Action::ExitLong => intended <= zero,
            Action::EnterShort => intended < zero,
            Action::ExitShort => intended >= zero,
        };
        if redundant {
            self.stats.redundant_signals += 1;
            return Ok(());
        }
        let entering = matches!(signal.action, Action::EnterLong | Action::EnterShort);
        if entering && self.in_safe_mode() {
            self.refuse("safe mode: no new positions during the cool-down after a fault");
            return Ok(());
        }
        let side = match signal.action {
            Action::EnterShort => {
                self.refuse("short selling is not enabled (the run is long-only)");
                return Ok(());
            }
            Action::EnterLong if intended < zero => {
                self.refuse("enter-long while short: exit the short first");
                return Ok(());
            }
            Action::EnterLong | Action::ExitShort => Side::Buy,
            Action::ExitLong => Side::Sell,
        };
        if !entering {
            // Unfilled entries are cancelled first: the strategy no longer wants the position.
            self.cancel_working(i, bar, recorder)?;
            if self.ledger.position(i).is_zero() {
                return Ok(());
            }
        }

        let chain = &mut self.chains[i];
        let price = price_to_decimal(bar.close).expect("closes are validated as finite");
        let request = SizingRequest {
            symbol: chain.symbol.clone(),
            action: signal.action,
            ts: bar.ts,
            price,
            equity: self.ledger.equity(),
            cash: self.ledger.cash(),
            position: self.ledger.position(i),
        };
        let quantity = chain.slices.sizing.size(&request)?;
        let label = chain.slices.sizing.label();
        let invalid = |m: String| StepError::Slice(SliceError::invalid(label, m));
        if quantity < zero {
            return Err(invalid(format!(
                "sized a {} order at {quantity}; quantities cannot be negative",
                signal.action.as_str()
            )));
        }
        if !entering && quantity > request.position.abs() {
            return Err(invalid(format!(
                "sized an exit at {quantity}, more than the position of {}",
                request.position.abs()
            )));
        }
        if entering
            && quantity * price > request.equity.abs().max(Decimal::ONE) * Decimal::from(ABSURD_LEVERAGE)
        {
            return Err(invalid(format!(
                "sized an entry at {quantity} ({} at {price}), over {ABSURD_LEVERAGE} times the equity of {}",
                quantity * price,
                request.equity
            )));
        }
        if quantity.is_zero() {
            self.refuse("sized to zero");
            return Ok(());
        }

        let to_decimal = |p: Option<f64>| p.and_then(price_to_decimal);
        let order = Order {
            id: OrderId(self.next_order_id),
            symbol: request.symbol.clone(),
            side,
            quantity,
            order_type: signal.order_type,
            limit_price: to_decimal(signal.limit_price),
            stop_price: to_decimal(signal.stop_price),
            time_in_force: signal.time_in_force,
            created_at: bar.ts,
        };
        self.next_order_id += 1;
        self.stats.orders += 1;

        let mut events = Vec::new();
        let chain = &mut self.chains[i];
        chain.slices.execution.submit(&order, bar, &mut events)?;
        chain.working.push(WorkingOrder { order, filled: zero, notional: zero, fees: zero });
        self.apply_events(i, bar, &events, recorder)
    }

    /// Cancels chain `i`'s working orders through its execution slice.
    fn cancel_working(&mut self, i: usize, bar: &Bar, recorder: &mut dyn Recorder) -> Result<(), StepError> {
        let ids: Vec<OrderId> = self.chains[i].working.iter().map(|w| w.order.id).collect();
        for id in ids {
            let mut events = Vec::new();
            self.chains[i].slices.execution.cancel(id, &mut events)?;
            self.apply_events(i, bar, &events, recorder)?;
        }
        Ok(())
    }

    /// Cancels through the slice when it is healthy, else closes the book host-side.
    fn cancel_all(&mut self, i: usize, reason: &str, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        let ids: Vec<OrderId> = self.chains[i].working.iter().map(|w| w.order.id).collect();
        for id in ids {
            let mut events = Vec::new();
            if self.chains[i].slices.execution.cancel(id, &mut events).is_err() {
                break;
            }
        }
        self.close_book(i, None, OrderStatus::Cancelled, reason, recorder)
    }

    /// Records every working order of chain `i` as closed with `status` and
    /// forgets it (the run ended, or the host cancelled it after a fault).
    fn close_book(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        status: OrderStatus,
        reason: &str,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        for w in self.chains[i].working.drain(..) {
            let reason = if status == OrderStatus::Working { String::new() } else { reason.to_owned() };
            recorder.order(&order_record(w, status, at, reason))?;
        }
        Ok(())
    }

    /// Checks every event against the order book and the bar, then applies
    /// them all: a bad event leaves the ledger untouched.
    fn apply_events(
        &mut self,
        i: usize,
        bar: &Bar,
        events: &[OrderEvent],
        recorder: &mut dyn Recorder,
    ) -> Result<(), StepError> {
        let chain = &self.chains[i];
        let label = chain.slices.execution.label();
        let invalid = |m: String| StepError::Slice(SliceError::invalid(label, m));
        let mut filled: BTreeMap<OrderId, Decimal> = BTreeMap::new();
        let mut closed: Vec<OrderId> = Vec::new();
        for event in events {
            let id = event_order(event);
            let w = chain
                .working
                .iter()
                .find(|w| w.order.id == id)
                .filter(|_| !closed.contains(&id))
                .ok_or_else(|| invalid(format!("event for order {id}, which is not working")))?;
            match event {
                OrderEvent::Filled(fill) => {
                    let so_far = filled.entry(id).or_insert(w.filled);
                    check_fill(fill, w, *so_far, bar).map_err(invalid)?;
                    *so_far += fill.quantity;
                    if *so_far == w.order.quantity {
                        closed.push(id);
                    }
                }
                OrderEvent::Cancelled { .. } | OrderEvent::Rejected { .. } => closed.push(id),
            }
        }
        for event in events {
            let chain = &mut self.chains[i];
            let (order_id, status, reason) = match event {
                OrderEvent::Filled(fill) => {
                    let pos =
                        chain.working.iter().position(|w| w.order.id == fill.order_id).expect("checked");
                    let w = &mut chain.working[pos];
                    w.filled += fill.quantity;
                    w.notional += fill.quantity * fill.price;
                    w.fees += fill.fee;
                    let (side, done) = (w.order.side, w.filled == w.order.quantity);
                    self.stats.fills += 1;
                    if let Some(trip) =
                        self.ledger.apply_fill(i, side, fill.quantity, fill.price, fill.fee, fill.ts)
                    {
                        recorder.round_trip(&trip)?;
                    }
                    if !done {
                        continue;
                    }
                    (fill.order_id, OrderStatus::Filled, String::new())
                }
                OrderEvent::Cancelled { order_id, reason } => {
                    (*order_id, OrderStatus::Cancelled, reason.clone())
                }
                OrderEvent::Rejected { order_id, reason } => {
                    (*order_id, OrderStatus::Rejected, reason.clone())
                }
            };
            let chain = &mut self.chains[i];
            let pos = chain.working.iter().position(|w| w.order.id == order_id).expect("checked");
            let w = chain.working.remove(pos);
            recorder.order(&order_record(w, status, Some(bar.ts), reason))?;
        }
        Ok(())
    }
}

/// What can go wrong inside a step: a slice fault (for the policy) or I/O.
enum StepError {
    Slice(SliceError),
    Io(io::Error),
}

impl From<SliceError> for StepError {
    fn from(e: SliceError) -> Self {
        StepError::Slice(e)
    }
}

impl From<io::Error> for StepError {
    fn from(e: io::Error) -> Self {
        StepError::Io(e)
    }
}

/// Fresh pipeline instances from a replay.
struct FreshPipeline {
    data: Box<dyn DataSlice>,
    analysis: Box<dyn AnalysisSlice>,
    regime: Box<dyn RegimeSlice>,
    strategy: Box<dyn StrategySlice>,
}

impl FreshPipeline {
    fn pipeline(&mut self) -> Pipeline<'_> {
        Pipeline { analysis: &mut *self.analysis, regime: &mut *self.regime, strategy: &mut *self.strategy }
    }
}

/// Installs the replay's instances in the chain, returning the old ones' health.
fn replaced_health(slices: &mut SymbolSlices, fresh: FreshPipeline) -> Vec<(SliceKind, SliceHealth)> {
    let old_data = std::mem::replace(&mut slices.data, fresh.data);
    let old_analysis = std::mem::replace(&mut slices.analysis, fresh.analysis);
    let old_regime = std::mem::replace(&mut slices.regime, fresh.regime);
    let old_strategy = std::mem::replace(&mut slices.strategy, fresh.strategy);
    vec![
        (SliceKind::Data, old_data.health()),
        (SliceKind::Analysis, old_analysis.health()),
        (SliceKind::Regime, old_regime.health()),
        (SliceKind::Strategy, old_strategy.health()),
    ]
}

fn fresh_label(slices: &SymbolSlices) -> &crate::slice::SliceLabel {
    slices.data.label()
}

fn annotate(mut error: SliceError, note: &str) -> SliceError {
    error.failure = match error.failure {
        Failure::Returned(m) => Failure::Returned(format!("{m} {note}")),
        Failure::Invalid(m) => Failure::Invalid(format!("{m} {note}")),
        Failure::Trapped { reason, backtrace } => {
            Failure::Trapped { reason: format!("{reason} {note}"), backtrace }
        }
        other => other,
    };
    error
}

fn event_order(event: &OrderEvent) -> OrderId {
    match event {
        OrderEvent::Filled(f) => f.order_id,
        OrderEvent::Cancelled { order_id, .. } | OrderEvent::Rejected { order_id, .. } => *order_id,
    }
}

fn check_fill(fill: &Fill, working: &WorkingOrder, filled_so_far: Decimal, bar: &Bar) -> Result<(), String> {
    let id = fill.order_id;
    if fill.ts != bar.ts {
        return Err(format!(
            "fill of order {id} is dated {}, but the bar being processed is {}",
            iso(fill.ts),
            iso(bar.ts)
        ));
    }
    let open = working.order.quantity - filled_so_far;
    if fill.quantity <= Decimal::ZERO || fill.quantity > open {
        return Err(format!("fill of order {id} has quantity {}, but {open} is open", fill.quantity));
    }
    let low = price_to_decimal(bar.low).expect("validated");
    let high = price_to_decimal(bar.high).expect("validated");
    if fill.price < low || fill.price > high {
        return Err(format!(
            "fill of order {id} at {} is outside the bar's range [{low}, {high}]",
            fill.price
        ));
    }
    if fill.fee < Decimal::ZERO {
        return Err(format!("fill of order {id} has a negative fee {}", fill.fee));
    }
    Ok(())
}

fn order_record(
    w: WorkingOrder,
    status: OrderStatus,
    closed_at: Option<Timestamp>,
    reason: String,
) -> OrderRecord {
    OrderRecord {
        id: w.order.id,
        symbol: w.order.symbol,
        created_at: w.order.created_at,
        side: w.order.side,
        order_type: w.order.order_type,
        time_in_force: w.order.time_in_force,
        quantity: w.order.quantity,
        limit_price: w.order.limit_price,
        stop_price: w.order.stop_price,
        status,
        filled_quantity: w.filled,
        average_price: (!w.filled.is_zero()).then(|| w.notional / w.filled),
        fees: w.fees,
        closed_at,
        reason,
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
