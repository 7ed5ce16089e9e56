//! The backtest loop: chains six slices per symbol, orders bars across
//! symbols by time against one ledger, and records what happened.
//!
//! How one timestamp is processed, for all symbols with a bar at it:
//!   1. working orders meet the new bar (the execution slice reports fills,
//!      for example at the open), and the host applies the fills it accepts;
//!   2. positions are marked at the bar's close;
//!   3. strategy signals made on this bar become orders: sizing slice ->
//!      host checks -> execution slice.
//!
//! Then one equity row is recorded. The analysis, regime and strategy slices
//! only depend on bars, so they run ahead in batches; sizing and execution
//! depend on the portfolio and run at the moment they are needed.

use std::fmt;
use std::io;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::clock::SimClock;
use crate::model::{
    Action, Bar, Fill, Order, OrderEvent, OrderId, OrderType, Regime, Side, Signal, SizingRequest,
    SourceInfo, Symbol, TimeInForce, Timestamp, price_to_decimal,
};
use crate::portfolio::{Ledger, RoundTrip};
use crate::slice::{SliceError, SymbolSlices};
use crate::time::iso;

/// Receives what a run produces, as it happens.
pub trait Recorder {
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> io::Result<()>;
    fn order(&mut self, order: &OrderRecord) -> io::Result<()>;
    fn round_trip(&mut self, trip: &RoundTrip) -> io::Result<()>;
    /// One symbol's bar, once processed (fills, mark and signal done), before
    /// the timestamp's equity row: for benchmarks and per-symbol figures.
    fn bar(&mut self, _symbol: usize, _bar: &Bar) {}
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

/// Inputs of a backtest besides the slices.
#[derive(Debug, Clone)]
pub struct BacktestSettings {
    pub start_cash: Decimal,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub batch_size: u32,
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

/// What each symbol contributed.
#[derive(Debug, Clone, Serialize)]
pub struct SymbolReport {
    pub symbol: Symbol,
    pub bars: u64,
    pub first_ts: Option<Timestamp>,
    pub last_ts: Option<Timestamp>,
    pub last_close: Option<f64>,
    pub source: Option<SourceInfo>,
}

struct WorkingOrder {
    order: Order,
    filled: Decimal,
    notional: Decimal,
    fees: Decimal,
}

/// One symbol's slices and the bars they have processed ahead of the loop.
struct Chain {
    index: usize,
    symbol: Symbol,
    slices: SymbolSlices,
    features_width: usize,
    source: Option<SourceInfo>,
    // The current batch, with what the analysis, regime and strategy slices made of it.
    bars: Vec<Bar>,
    features: Vec<f64>,
    regimes: Vec<Regime>,
    signals: Vec<Signal>,
    cursor: usize,
    next_signal: usize,
    ended: bool,
    last_ts: Option<Timestamp>,
    working: Vec<WorkingOrder>,
    bars_done: u64,
    first_ts: Option<Timestamp>,
}

impl Chain {
    fn peek(&self) -> Option<&Bar> {
        self.bars.get(self.cursor)
    }

    fn slice_error(&self, at: Option<Timestamp>, error: SliceError) -> RunError {
        RunError::Slice { symbol: self.symbol.clone(), at, error }
    }

    /// Pulls the next batch through data -> analysis -> regime -> strategy,
    /// checking each slice's output before the next slice sees it.
    fn refill(&mut self, settings: &BacktestSettings, clock: &SimClock) -> Result<(), RunError> {
        self.bars.clear();
        self.features.clear();
        self.regimes.clear();
        self.signals.clear();
        self.cursor = 0;
        self.next_signal = 0;

        let s = &mut self.slices;
        let data_label = s.data.label().clone();
        let at = self.last_ts;
        let symbol = self.symbol.clone();
        let fail = |at, error| RunError::Slice { symbol: symbol.clone(), at, error };

        s.data.next_batch(settings.batch_size, &mut self.bars).map_err(|e| fail(at, e))?;
        if self.bars.is_empty() {
            self.ended = true;
            return Ok(());
        }
        let mut previous = self.last_ts;
        for (i, bar) in self.bars.iter().enumerate() {
            check_bar(bar, previous, settings).map_err(|m| {
                fail(Some(bar.ts), SliceError::invalid(&data_label, format!("bar {i} of its batch: {m}")))
            })?;
            previous = Some(bar.ts);
        }
        let last = self.bars[self.bars.len() - 1].ts;
        clock.set(last);

        let n = self.bars.len();
        s.analysis.update(&self.bars, &mut self.features).map_err(|e| fail(Some(last), e))?;
        if self.features.len() != n * self.features_width {
            let e = SliceError::invalid(
                s.analysis.label(),
                format!(
                    "update returned {} values for {n} bars x {} features",
                    self.features.len(),
                    self.features_width
                ),
            );
            return Err(fail(Some(last), e));
        }
        s.regime.classify(&self.bars, &self.features, &mut self.regimes).map_err(|e| fail(Some(last), e))?;
        if self.regimes.len() != n {
            let e = SliceError::invalid(
                s.regime.label(),
                format!("classify returned {} regimes for {n} bars", self.regimes.len()),
            );
            return Err(fail(Some(last), e));
        }
        s.strategy
            .decide(&self.bars, &self.features, &self.regimes, &mut self.signals)
            .map_err(|e| fail(Some(last), e))?;
        let mut previous: Option<u32> = None;
        for signal in &self.signals {
            let at = self.bars.get(signal.bar_index as usize).map(|b| b.ts).or(Some(last));
            check_signal(signal, previous, n)
                .map_err(|m| fail(at, SliceError::invalid(s.strategy.label(), m)))?;
            previous = Some(signal.bar_index);
        }
        if self.first_ts.is_none() {
            self.first_ts = Some(self.bars[0].ts);
        }
        self.last_ts = Some(last);
        Ok(())
    }

    /// Net position after every working order fills: what a new signal is judged against.
    fn intended_position(&self, position: Decimal) -> Decimal {
        self.working.iter().fold(position, |q, w| {
            let rest = w.order.quantity - w.filled;
            if w.order.side == Side::Buy { q + rest } else { q - rest }
        })
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
    if previous.is_some_and(|p| i <= p) {
        return Err(format!(
            "signals must be in bar order, at most one per bar; bar {i} came after bar {}",
            previous.unwrap()
        ));
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

/// A backtest over ready-made slice chains.
pub struct Backtest {
    chains: Vec<Chain>,
    ledger: Ledger,
    clock: SimClock,
    settings: BacktestSettings,
    next_order_id: u64,
    stats: RunStats,
    /// Reasons signals were not acted on, counted.
    refusals: std::collections::BTreeMap<String, u64>,
    active: Vec<usize>,
    events: Vec<OrderEvent>,
}

impl Backtest {
    /// `chains` pairs each symbol with its six slices (data slices already opened)
    /// and the analysis slice's feature names.
    pub fn new(
        chains: Vec<(Symbol, SymbolSlices, usize, Option<SourceInfo>)>,
        settings: BacktestSettings,
        clock: SimClock,
    ) -> Self {
        let symbols: Vec<Symbol> = chains.iter().map(|(s, ..)| s.clone()).collect();
        let chains = chains
            .into_iter()
            .enumerate()
            .map(|(index, (symbol, slices, features_width, source))| Chain {
                index,
                symbol,
                slices,
                features_width,
                source,
                bars: Vec::new(),
                features: Vec::new(),
                regimes: Vec::new(),
                signals: Vec::new(),
                cursor: 0,
                next_signal: 0,
                ended: false,
                last_ts: None,
                working: Vec::new(),
                bars_done: 0,
                first_ts: None,
            })
            .collect();
        Backtest {
            chains,
            ledger: Ledger::new(settings.start_cash, &symbols),
            clock,
            settings,
            next_order_id: 1,
            stats: RunStats::default(),
            refusals: Default::default(),
            active: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    pub fn refusals(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.refusals
    }

    pub fn symbol_reports(&self) -> Vec<SymbolReport> {
        self.chains
            .iter()
            .map(|c| SymbolReport {
                symbol: c.symbol.clone(),
                bars: c.bars_done,
                first_ts: c.first_ts,
                last_ts: c.last_ts.filter(|_| c.bars_done > 0),
                last_close: c.bars.get(c.cursor.saturating_sub(1)).map(|b| b.close),
                source: c.source.clone(),
            })
            .collect()
    }

    /// Runs to the end of the data. On error, everything recorded so far stays
    /// recorded and the ledger reflects the last completed bar.
    pub fn run(&mut self, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        loop {
            let mut next: Option<Timestamp> = None;
            for chain in &mut self.chains {
                if chain.cursor == chain.bars.len() && !chain.ended {
                    chain.refill(&self.settings, &self.clock)?;
                    if chain.ended && chain.bars_done == 0 {
                        return Err(RunError::NoBars {
                            symbol: chain.symbol.clone(),
                            range: describe_range(&self.settings),
                        });
                    }
                }
                if let Some(bar) = chain.peek() {
                    next = Some(next.map_or(bar.ts, |n: Timestamp| n.min(bar.ts)));
                }
            }
            let Some(ts) = next else { break };
            self.step(ts, recorder)?;
        }
        self.flush_working_orders(recorder)?;
        Ok(())
    }

    fn step(&mut self, ts: Timestamp, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        self.clock.set(ts);
        self.active.clear();
        self.active
            .extend(self.chains.iter().filter(|c| c.peek().is_some_and(|b| b.ts == ts)).map(|c| c.index));
        let active = std::mem::take(&mut self.active);

        for &i in &active {
            if !self.chains[i].working.is_empty() {
                let bar = self.chains[i].bars[self.chains[i].cursor];
                let mut events = std::mem::take(&mut self.events);
                events.clear();
                let chain = &mut self.chains[i];
                chain
                    .slices
                    .execution
                    .on_bar(&bar, &mut events)
                    .map_err(|e| chain.slice_error(Some(ts), e))?;
                self.apply_events(i, &bar, &events, recorder)?;
                self.events = events;
            }
        }
        for &i in &active {
            let chain = &self.chains[i];
            self.ledger.mark(i, chain.bars[chain.cursor].close);
        }
        for &i in &active {
            let chain = &mut self.chains[i];
            let cursor = chain.cursor as u32;
            let signal = chain.signals.get(chain.next_signal).filter(|s| s.bar_index == cursor).copied();
            if let Some(signal) = signal {
                chain.next_signal += 1;
                let bar = chain.bars[chain.cursor];
                self.on_signal(i, &signal, &bar, recorder)?;
            }
        }
        for &i in &active {
            let chain = &mut self.chains[i];
            recorder.bar(i, &chain.bars[chain.cursor]);
            chain.cursor += 1;
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

    fn refuse(&mut self, reason: &str) {
        self.stats.refused_signals += 1;
        *self.refusals.entry(reason.to_owned()).or_default() += 1;
    }

    fn on_signal(
        &mut self,
        i: usize,
        signal: &Signal,
        bar: &Bar,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
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
        let exiting = matches!(signal.action, Action::ExitLong | Action::ExitShort);
        if exiting {
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
        let quantity = chain.slices.sizing.size(&request).map_err(|e| chain.slice_error(Some(bar.ts), e))?;
        let label = chain.slices.sizing.label().clone();
        let invalid = |m: String| RunError::Slice {
            symbol: request.symbol.clone(),
            at: Some(bar.ts),
            error: SliceError::invalid(&label, m),
        };
        if quantity < zero {
            return Err(invalid(format!(
                "sized a {} order at {quantity}; quantities cannot be negative",
                signal.action.as_str()
            )));
        }
        if exiting && quantity > request.position.abs() {
            return Err(invalid(format!(
                "sized an exit at {quantity}, more than the position of {}",
                request.position.abs()
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

        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let chain = &mut self.chains[i];
        chain
            .slices
            .execution
            .submit(&order, bar, &mut events)
            .map_err(|e| chain.slice_error(Some(bar.ts), e))?;
        chain.working.push(WorkingOrder { order, filled: zero, notional: zero, fees: zero });
        self.apply_events(i, bar, &events, recorder)?;
        self.events = events;
        Ok(())
    }

    fn cancel_working(&mut self, i: usize, bar: &Bar, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        let ids: Vec<OrderId> = self.chains[i].working.iter().map(|w| w.order.id).collect();
        for id in ids {
            let mut events = Vec::new();
            let chain = &mut self.chains[i];
            chain.slices.execution.cancel(id, &mut events).map_err(|e| chain.slice_error(Some(bar.ts), e))?;
            self.apply_events(i, bar, &events, recorder)?;
        }
        Ok(())
    }

    /// Checks each event against the order book and the bar, then applies it.
    fn apply_events(
        &mut self,
        i: usize,
        bar: &Bar,
        events: &[OrderEvent],
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        for event in events {
            let chain = &mut self.chains[i];
            let label = chain.slices.execution.label().clone();
            let symbol = chain.symbol.clone();
            let invalid = |m: String| RunError::Slice {
                symbol: symbol.clone(),
                at: Some(bar.ts),
                error: SliceError::invalid(&label, m),
            };
            let (order_id, status, reason) = match event {
                OrderEvent::Filled(fill) => {
                    let pos =
                        chain.working.iter().position(|w| w.order.id == fill.order_id).ok_or_else(|| {
                            invalid(format!("fill for order {}, which is not working", fill.order_id))
                        })?;
                    check_fill(fill, &chain.working[pos], bar).map_err(invalid)?;
                    let w = &mut chain.working[pos];
                    w.filled += fill.quantity;
                    w.notional += fill.quantity * fill.price;
                    w.fees += fill.fee;
                    let side = w.order.side;
                    let done = w.filled == w.order.quantity;
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
            let Some(pos) = chain.working.iter().position(|w| w.order.id == order_id) else {
                return Err(invalid(format!("{} order {order_id}, which is not working", status.as_str())));
            };
            let w = chain.working.remove(pos);
            recorder.order(&order_record(w, status, Some(bar.ts), reason))?;
        }
        Ok(())
    }

    fn flush_working_orders(&mut self, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        for chain in &mut self.chains {
            for w in chain.working.drain(..) {
                recorder.order(&order_record(w, OrderStatus::Working, None, String::new()))?;
            }
        }
        Ok(())
    }
}

fn check_fill(fill: &Fill, working: &WorkingOrder, bar: &Bar) -> Result<(), String> {
    let id = fill.order_id;
    if fill.ts != bar.ts {
        return Err(format!(
            "fill of order {id} is dated {}, but the bar being processed is {}",
            iso(fill.ts),
            iso(bar.ts)
        ));
    }
    let open = working.order.quantity - working.filled;
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

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
