//! Slice instances backed by components: the domain slice traits implemented
//! over generated bindings, with every call under a deadline and every trap
//! turned into a [`SliceError`] that poisons the instance.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use wasmtime::{Store, Trap, WasmBacktrace};

use super::sandbox::SliceState;
use crate::bindings::{analysis, data, execution, regime, sizing, snapshot, strategy, types as wire};
use crate::model::{
    Action, Bar, ConfigParam, ConfigValue, Fill, Order, OrderEvent, OrderId, OrderType, PluginInfo, Regime,
    Side, Signal, SizingRequest, SliceKind, SourceInfo, Symbol, TimeInForce, Timestamp,
};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, Failure, RegimeSlice, SizingSlice, Slice, SliceError,
    SliceHealth, SliceLabel, SliceResult, StrategySlice,
};
use crate::text::{self, bound_owned, bounded_escaped};

/// One instance of a component, exporting the guest interface `G`.
pub struct WasmSlice<G> {
    store: Store<SliceState>,
    guest: G,
    label: SliceLabel,
    deadline: Duration,
    deadline_ticks: u64,
    /// CPU time the instance may use over the whole run, if limited.
    budget: Option<Duration>,
    poisoned: bool,
    health: SliceHealth,
    /// Reused between calls so a batch costs no allocation on the host side.
    wire_bars: Vec<wire::Bar>,
    /// The optional `snapshot` interface, when the component exports it.
    snapshot: Option<snapshot::Guest>,
}

/// Largest state a slice may hand the host to persist.
const MAX_STATE_BYTES: usize = 16 << 20;

impl<G> WasmSlice<G> {
    pub(crate) fn new(
        store: Store<SliceState>,
        guest: G,
        label: SliceLabel,
        deadline: Duration,
        budget: Option<Duration>,
        snapshot: Option<snapshot::Guest>,
    ) -> Self {
        WasmSlice {
            store,
            guest,
            label,
            deadline,
            deadline_ticks: super::engine::deadline_ticks(deadline),
            budget,
            poisoned: false,
            health: SliceHealth::default(),
            wire_bars: Vec::new(),
            snapshot,
        }
    }

    /// Calls into the guest under the deadline, timing the call. A trap
    /// poisons the instance: its memory may be half-updated, so it is never
    /// called again.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&G, &mut Store<SliceState>, &[wire::Bar]) -> wasmtime::Result<Result<R, String>>,
    ) -> SliceResult<R> {
        if self.poisoned {
            return Err(self.fail(Failure::Poisoned));
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        let started = Instant::now();
        self.store.data_mut().call_deadline = Some(started + self.deadline);
        let result = f(&self.guest, &mut self.store, &self.wire_bars);
        // Time spent waiting for the venue is not the slice's.
        let waited = self.store.data_mut().venue.as_mut().map(|d| std::mem::take(&mut d.waited));
        let elapsed = started.elapsed().saturating_sub(waited.unwrap_or_default());
        self.store.data_mut().call_deadline = None;
        self.health.calls += 1;
        self.health.busy += elapsed;
        self.health.slowest_call = self.health.slowest_call.max(elapsed);
        let value = match result {
            Ok(Ok(value)) => value,
            Ok(Err(message)) => {
                return Err(self.fail(Failure::Returned(bound_owned(message, text::MESSAGE_MAX))));
            }
            Err(trap) => {
                self.poisoned = true;
                let failure = self.trap_failure(&trap);
                return Err(self.fail(failure));
            }
        };
        if let Some(budget) = self.budget.filter(|b| self.health.busy > *b) {
            return Err(self.fail(Failure::OverBudget { spent: self.health.busy, budget }));
        }
        Ok(value)
    }

    /// Records a failure in the instance's health and turns it into an error.
    fn fail(&mut self, failure: Failure) -> SliceError {
        self.health.failures += 1;
        self.health.last_error = Some(failure.to_string());
        SliceError { label: self.label.clone(), failure }
    }

    fn trap_failure(&self, err: &wasmtime::Error) -> Failure {
        let mut reason = match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("ran past its deadline of {} ms", self.deadline.as_millis()),
            Some(Trap::UnreachableCodeReached) => {
                "reached `unreachable` (a panic or abort in the plugin)".to_owned()
            }
            Some(trap) => trap.to_string(),
            None => bounded_escaped(&format!("{err:#}"), text::MESSAGE_MAX),
        };
        if let Some(refusal) = self.store.data().limits.refusal() {
            reason.push_str(&format!("; the host refused it memory: {refusal}"));
        }
        let stderr = self.store.data().stderr.tail();
        if !stderr.is_empty() {
            // Rust's hint to set RUST_BACKTRACE means nothing inside a sandbox;
            // the host reports the guest's backtrace itself.
            let last: Vec<&str> =
                stderr.lines().rev().filter(|l| !l.contains("RUST_BACKTRACE")).take(3).collect();
            let last: Vec<&str> = last.into_iter().rev().collect();
            let printed = bounded_escaped(&last.join(" | "), text::MESSAGE_MAX);
            reason.push_str(&format!("; it printed: {printed}"));
        }
        let backtrace = err
            .downcast_ref::<WasmBacktrace>()
            .map(|bt| bounded_escaped(&bt.to_string(), text::BACKTRACE_MAX));
        Failure::Trapped { reason, backtrace }
    }

    /// Calls the guest's `init`; a returned error means it refused its config.
    pub(crate) fn init_with(
        &mut self,
        f: impl FnOnce(&G, &mut Store<SliceState>) -> wasmtime::Result<Result<(), String>>,
    ) -> SliceResult<()> {
        self.call(|g, s, _| f(g, s)).map_err(|mut e| {
            if let Failure::Returned(message) = &e.failure {
                e.failure = Failure::Returned(format!("rejected its config: {message}"));
            }
            e
        })
    }

    fn stage_bars(&mut self, bars: &[Bar]) {
        self.wire_bars.clear();
        self.wire_bars.extend(bars.iter().map(bar_to_wire));
    }

    fn invalid(&mut self, message: impl Into<String>) -> SliceError {
        self.fail(Failure::Invalid(message.into()))
    }

    /// Records an answer the host refused (see [`Failure::Invalid`]).
    pub(super) fn invalid_output(&mut self, message: String) -> SliceError {
        self.invalid(message)
    }

    /// Gives the instance a venue (`strata:plugin/venue`). Time the venue
    /// takes to answer extends the call's deadline: a slow exchange is not
    /// the slice running away.
    pub(super) fn attach_venue(&mut self, desk: super::venue::VenueDesk) {
        self.store.data_mut().venue = Some(desk);
        self.store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            let waited = state.venue.as_ref().map(|d| d.waited).unwrap_or_default();
            match state.call_deadline {
                Some(deadline) if !waited.is_zero() => {
                    let now = Instant::now();
                    let allowed = deadline + waited;
                    if now < allowed {
                        let ticks = super::engine::deadline_ticks(allowed - now).max(1);
                        return Ok(wasmtime::UpdateDeadline::Continue(ticks));
                    }
                    Err(Trap::Interrupt.into())
                }
                _ => Err(Trap::Interrupt.into()),
            }
        });
    }

    pub(super) fn venue_desk(&mut self) -> Option<&mut super::venue::VenueDesk> {
        self.store.data_mut().venue.as_mut()
    }
}

impl<G: Send> Slice for WasmSlice<G> {
    fn label(&self) -> &SliceLabel {
        &self.label
    }

    fn health(&self) -> SliceHealth {
        self.health.clone()
    }

    fn save_state(&mut self) -> SliceResult<Option<Vec<u8>>> {
        let Some(guest) = self.snapshot.clone() else { return Ok(None) };
        let state = self.call(|_, s, _| guest.call_save(s))?;
        if state.len() > MAX_STATE_BYTES {
            return Err(self.invalid(format!(
                "snapshot save returned {} bytes, more than the {MAX_STATE_BYTES} allowed",
                state.len()
            )));
        }
        Ok(Some(state))
    }

    fn restore_state(&mut self, state: &[u8]) -> SliceResult<bool> {
        let Some(guest) = self.snapshot.clone() else { return Ok(false) };
        self.call(|_, s, _| guest.call_restore(s, state))?;
        Ok(true)
    }
}

impl DataSlice for WasmSlice<data::Guest> {
    fn open(
        &mut self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> SliceResult<SourceInfo> {
        let info = self.call(|g, s, _| g.call_open(s, symbol.as_str(), start, end))?;
        Ok(SourceInfo {
            description: bound_owned(info.description, text::DESCRIPTION_MAX),
            synthetic: info.synthetic,
        })
    }

    fn next_batch(&mut self, max: u32, bars: &mut Vec<Bar>) -> SliceResult<()> {
        let batch = self.call(|g, s, _| g.call_next_batch(s, max))?;
        if batch.len() > max as usize {
            return Err(self.invalid(format!(
                "next-batch returned {} bars, more than the {max} asked for",
                batch.len()
            )));
        }
        bars.extend(batch.iter().map(bar_from_wire));
        Ok(())
    }
}

impl AnalysisSlice for WasmSlice<analysis::Guest> {
    fn outputs(&mut self) -> SliceResult<Vec<String>> {
        let names = self.call(|g, s, _| g.call_outputs(s).map(Ok))?;
        Ok(names.into_iter().map(|n| bound_owned(n, text::NAME_MAX)).collect())
    }

    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> SliceResult<()> {
        self.stage_bars(bars);
        let out = self.call(|g, s, b| g.call_update(s, b))?;
        values.extend_from_slice(&out);
        Ok(())
    }
}

impl RegimeSlice for WasmSlice<regime::Guest> {
    fn classify(&mut self, bars: &[Bar], features: &[f64], regimes: &mut Vec<Regime>) -> SliceResult<()> {
        self.stage_bars(bars);
        let out = self.call(|g, s, b| g.call_classify(s, b, features))?;
        regimes.extend(out.into_iter().map(regime_from_wire));
        Ok(())
    }
}

impl StrategySlice for WasmSlice<strategy::Guest> {
    fn decide(
        &mut self,
        bars: &[Bar],
        features: &[f64],
        regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> SliceResult<()> {
        self.stage_bars(bars);
        let wire_regimes: Vec<wire::Regime> = regimes.iter().map(|r| regime_to_wire(*r)).collect();
        let out = self.call(|g, s, b| g.call_decide(s, b, features, &wire_regimes))?;
        signals.extend(out.into_iter().map(signal_from_wire));
        Ok(())
    }
}

impl SizingSlice for WasmSlice<sizing::Guest> {
    fn size(&mut self, request: &SizingRequest) -> SliceResult<Decimal> {
        let wire_request = wire::SizingRequest {
            symbol: request.symbol.to_string(),
            action: action_to_wire(request.action),
            ts: request.ts,
            price: decimal_to_wire(request.price),
            equity: decimal_to_wire(request.equity),
            cash: decimal_to_wire(request.cash),
            position: decimal_to_wire(request.position),
        };
        let quantity = self.call(|g, s, _| g.call_size(s, &wire_request))?;
        parse_decimal("quantity", &quantity).map_err(|m| self.invalid(m))
    }
}

impl ExecutionSlice for WasmSlice<execution::Guest> {
    fn fill_model(&mut self) -> SliceResult<String> {
        let model = self.call(|g, s, _| g.call_fill_model(s).map(Ok))?;
        Ok(bound_owned(model, text::DESCRIPTION_MAX))
    }

    fn submit(&mut self, order: &Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        let wire_order = order_to_wire(order);
        let bar = bar_to_wire(bar);
        let out = self.call(|g, s, _| g.call_submit(s, &wire_order, bar))?;
        self.collect_events(out, events)
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        let bar = bar_to_wire(bar);
        let out = self.call(|g, s, _| g.call_on_bar(s, bar))?;
        self.collect_events(out, events)
    }

    fn cancel(&mut self, order_id: OrderId, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        let out = self.call(|g, s, _| g.call_cancel(s, order_id.0))?;
        self.collect_events(out, events)
    }
}

impl WasmSlice<execution::Guest> {
    fn collect_events(
        &mut self,
        out: Vec<wire::OrderEvent>,
        events: &mut Vec<OrderEvent>,
    ) -> SliceResult<()> {
        for event in out {
            events.push(event_from_wire(event).map_err(|m| self.invalid(m))?);
        }
        Ok(())
    }
}

// ---- conversions between wire records and domain types ----

pub(crate) fn bar_to_wire(b: &Bar) -> wire::Bar {
    wire::Bar { ts: b.ts, open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume }
}

fn bar_from_wire(b: &wire::Bar) -> Bar {
    Bar { ts: b.ts, open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume }
}

fn regime_from_wire(r: wire::Regime) -> Regime {
    match r {
        wire::Regime::Unknown => Regime::Unknown,
        wire::Regime::TrendingUp => Regime::TrendingUp,
        wire::Regime::TrendingDown => Regime::TrendingDown,
        wire::Regime::Ranging => Regime::Ranging,
        wire::Regime::Volatile => Regime::Volatile,
    }
}

fn regime_to_wire(r: Regime) -> wire::Regime {
    match r {
        Regime::Unknown => wire::Regime::Unknown,
        Regime::TrendingUp => wire::Regime::TrendingUp,
        Regime::TrendingDown => wire::Regime::TrendingDown,
        Regime::Ranging => wire::Regime::Ranging,
        Regime::Volatile => wire::Regime::Volatile,
    }
}

fn action_to_wire(a: Action) -> wire::Action {
    match a {
        Action::EnterLong => wire::Action::EnterLong,
        Action::ExitLong => wire::Action::ExitLong,
        Action::EnterShort => wire::Action::EnterShort,
        Action::ExitShort => wire::Action::ExitShort,
    }
}

fn signal_from_wire(s: wire::Signal) -> Signal {
    Signal {
        bar_index: s.bar_index,
        action: match s.action {
            wire::Action::EnterLong => Action::EnterLong,
            wire::Action::ExitLong => Action::ExitLong,
            wire::Action::EnterShort => Action::EnterShort,
            wire::Action::ExitShort => Action::ExitShort,
        },
        order_type: match s.order_type {
            wire::OrderType::Market => OrderType::Market,
            wire::OrderType::Limit => OrderType::Limit,
            wire::OrderType::Stop => OrderType::Stop,
            wire::OrderType::StopLimit => OrderType::StopLimit,
        },
        limit_price: s.limit_price,
        stop_price: s.stop_price,
        time_in_force: match s.time_in_force {
            wire::TimeInForce::Gtc => TimeInForce::Gtc,
            wire::TimeInForce::Day => TimeInForce::Day,
            wire::TimeInForce::Ioc => TimeInForce::Ioc,
        },
    }
}

fn order_to_wire(o: &Order) -> wire::Order {
    wire::Order {
        id: o.id.0,
        symbol: o.symbol.to_string(),
        side: match o.side {
            Side::Buy => wire::Side::Buy,
            Side::Sell => wire::Side::Sell,
        },
        quantity: decimal_to_wire(o.quantity),
        order_type: match o.order_type {
            OrderType::Market => wire::OrderType::Market,
            OrderType::Limit => wire::OrderType::Limit,
            OrderType::Stop => wire::OrderType::Stop,
            OrderType::StopLimit => wire::OrderType::StopLimit,
        },
        limit_price: o.limit_price.map(decimal_to_wire),
        stop_price: o.stop_price.map(decimal_to_wire),
        time_in_force: match o.time_in_force {
            TimeInForce::Gtc => wire::TimeInForce::Gtc,
            TimeInForce::Day => wire::TimeInForce::Day,
            TimeInForce::Ioc => wire::TimeInForce::Ioc,
        },
        created_at: o.created_at,
    }
}

fn event_from_wire(e: wire::OrderEvent) -> Result<OrderEvent, String> {
    let reason = |r: String| Ok::<_, String>(bound_owned(r, text::DESCRIPTION_MAX));
    Ok(match e {
        wire::OrderEvent::Filled(f) => {
            let field = |name: &str, v: &str| {
                parse_decimal(name, v).map_err(|m| format!("fill of order {}: {m}", f.order_id))
            };
            OrderEvent::Filled(Fill {
                order_id: OrderId(f.order_id),
                ts: f.ts,
                price: field("price", &f.price)?,
                quantity: field("quantity", &f.quantity)?,
                fee: field("fee", &f.fee)?,
            })
        }
        wire::OrderEvent::Cancelled(c) => {
            OrderEvent::Cancelled { order_id: OrderId(c.order_id), reason: reason(c.reason)? }
        }
        wire::OrderEvent::Rejected(c) => {
            OrderEvent::Rejected { order_id: OrderId(c.order_id), reason: reason(c.reason)? }
        }
    })
}

pub(super) fn decimal_to_wire(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Parses a wire decimal strictly: plain notation, nothing else.
pub(super) fn parse_decimal(field: &str, text: &str) -> Result<Decimal, String> {
    let plain = !text.is_empty()
        && text.len() <= 40
        && text.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.');
    plain.then(|| Decimal::from_str(text).ok()).flatten().ok_or_else(|| {
        format!("`{field}` is \"{}\", not a decimal in plain notation", bounded_escaped(text, 64))
    })
}

/// A plugin's self-description in domain types, every text in it bounded and
/// escaped (it names the plugin in every message, report and log line).
pub(crate) fn info_from_wire(i: wire::PluginInfo) -> PluginInfo {
    let name = |s| bound_owned(s, text::NAME_MAX);
    PluginInfo {
        name: name(i.name),
        version: name(i.version),
        kind: match i.kind {
            wire::SliceKind::Data => SliceKind::Data,
            wire::SliceKind::Analysis => SliceKind::Analysis,
            wire::SliceKind::Regime => SliceKind::Regime,
            wire::SliceKind::Strategy => SliceKind::Strategy,
            wire::SliceKind::Sizing => SliceKind::Sizing,
            wire::SliceKind::Execution => SliceKind::Execution,
        },
        interface_version: name(i.interface_version),
        description: bound_owned(i.description, text::DESCRIPTION_MAX),
        params: i
            .params
            .into_iter()
            .map(|p| ConfigParam {
                key: name(p.key),
                description: bound_owned(p.description, text::DESCRIPTION_MAX),
                default: value_from_wire(p.default_value),
            })
            .collect(),
    }
}

fn value_from_wire(v: wire::ConfigValue) -> ConfigValue {
    match v {
        wire::ConfigValue::Boolean(b) => ConfigValue::Bool(b),
        wire::ConfigValue::Integer(i) => ConfigValue::Int(i),
        wire::ConfigValue::Float(f) => ConfigValue::Float(f),
        wire::ConfigValue::Text(s) => ConfigValue::Text(bound_owned(s, text::DESCRIPTION_MAX)),
    }
}

pub(crate) fn config_to_wire(settings: &[(String, ConfigValue)]) -> Vec<wire::ConfigEntry> {
    settings
        .iter()
        .map(|(key, value)| wire::ConfigEntry {
            key: key.clone(),
            value: match value {
                ConfigValue::Bool(b) => wire::ConfigValue::Boolean(*b),
                ConfigValue::Int(i) => wire::ConfigValue::Integer(*i),
                ConfigValue::Float(f) => wire::ConfigValue::Float(*f),
                ConfigValue::Text(s) => wire::ConfigValue::Text(s.clone()),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_decimals_must_be_plain() {
        assert_eq!(parse_decimal("q", "0.5").unwrap(), Decimal::new(5, 1));
        assert_eq!(parse_decimal("q", "-12").unwrap(), Decimal::from(-12));
        for bad in ["", "1e5", "NaN", " 1", "+1", "1,000"] {
            assert!(parse_decimal("q", bad).is_err(), "{bad:?}");
        }
    }
}
