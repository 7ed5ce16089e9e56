//! Call latency of every slice, as histograms, by wrapping each instance the
//! paper factory builds; and the Prometheus text rendering of the session's
//! figures for `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::status::Status;
use crate::model::{
    Bar, Order, OrderEvent, OrderId, Regime, Signal, SizingRequest, SourceInfo, Symbol, Timestamp,
};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, RegimeSlice, SizingSlice, Slice, SliceHealth, SliceLabel,
    SliceResult, StrategySlice,
};

/// Upper bounds of the latency buckets, in seconds: from 10 µs (a cheap
/// call is ~1 µs) to the default deadline of 1 s.
pub const BUCKETS: [f64; 12] = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0];

/// A latency histogram updated without locks.
#[derive(Default)]
pub struct LatencyHistogram {
    /// Calls per bucket; the last one is above every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (and +Inf last), and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self.counts.iter().map(|c| {
            total += c.load(Ordering::Relaxed);
            total
        });
        let cumulative = cumulative.collect();
        (cumulative, self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// A slice instance whose every call is timed into a histogram.
pub struct Timed<S: ?Sized> {
    inner: Box<S>,
    latency: Arc<LatencyHistogram>,
}

impl<S: ?Sized> Timed<S> {
    pub fn new(inner: Box<S>, latency: Arc<LatencyHistogram>) -> Self {
        Timed { inner, latency }
    }

    fn time<R>(&mut self, f: impl FnOnce(&mut S) -> R) -> R {
        let started = Instant::now();
        let result = f(&mut self.inner);
        self.latency.observe(started.elapsed());
        result
    }
}

macro_rules! forward_slice {
    ($t:ident) => {
        impl Slice for Timed<dyn $t> {
            fn label(&self) -> &SliceLabel {
                self.inner.label()
            }
            fn health(&self) -> SliceHealth {
                self.inner.health()
            }
            fn save_state(&mut self) -> SliceResult<Option<Vec<u8>>> {
                self.inner.save_state()
            }
            fn restore_state(&mut self, state: &[u8]) -> SliceResult<bool> {
                self.inner.restore_state(state)
            }
        }
    };
}
forward_slice!(DataSlice);
forward_slice!(AnalysisSlice);
forward_slice!(RegimeSlice);
forward_slice!(StrategySlice);
forward_slice!(SizingSlice);
forward_slice!(ExecutionSlice);

impl DataSlice for Timed<dyn DataSlice> {
    fn open(
        &mut self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> SliceResult<SourceInfo> {
        self.time(|s| s.open(symbol, start, end))
    }
    fn next_batch(&mut self, max: u32, bars: &mut Vec<Bar>) -> SliceResult<()> {
        self.time(|s| s.next_batch(max, bars))
    }
}

impl AnalysisSlice for Timed<dyn AnalysisSlice> {
    fn outputs(&mut self) -> SliceResult<Vec<String>> {
        self.time(|s| s.outputs())
    }
    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> SliceResult<()> {
        self.time(|s| s.update(bars, values))
    }
}

impl RegimeSlice for Timed<dyn RegimeSlice> {
    fn classify(&mut self, bars: &[Bar], features: &[f64], regimes: &mut Vec<Regime>) -> SliceResult<()> {
        self.time(|s| s.classify(bars, features, regimes))
    }
}

impl StrategySlice for Timed<dyn StrategySlice> {
    fn decide(
        &mut self,
        bars: &[Bar],
        features: &[f64],
        regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> SliceResult<()> {
        self.time(|s| s.decide(bars, features, regimes, signals))
    }
}

impl SizingSlice for Timed<dyn SizingSlice> {
    fn size(&mut self, request: &SizingRequest) -> SliceResult<Decimal> {
        self.time(|s| s.size(request))
    }
}

impl ExecutionSlice for Timed<dyn ExecutionSlice> {
    fn fill_model(&mut self) -> SliceResult<String> {
        self.time(|s| s.fill_model())
    }
    fn submit(&mut self, order: &Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.time(|s| s.submit(order, bar, events))
    }
    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.time(|s| s.on_bar(bar, events))
    }
    fn cancel(&mut self, order_id: OrderId, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.time(|s| s.cancel(order_id, events))
    }
    fn submit_liquidation(
        &mut self,
        order: &Order,
        bar: &Bar,
        events: &mut Vec<OrderEvent>,
    ) -> SliceResult<()> {
        self.time(|s| s.submit_liquidation(order, bar, events))
    }
}

/// Label values are quoted; backslashes, quotes and line ends escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn decimal(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The session's figures in the Prometheus text exposition format (0.0.4).
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let o = &mut out;
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP strata_{name} {help}\n# TYPE strata_{name} {kind}");
    };
    family(o, "state", "gauge", "1 for the session's current state");
    for state in super::status::SessionState::ALL {
        let on = u8::from(status.state == state);
        let _ = writeln!(o, "strata_state{{state=\"{}\"}} {on}", state.as_str());
    }
    family(o, "bars_processed_total", "counter", "Bars processed, per symbol");
    for (symbol, bars) in &status.bars_per_symbol {
        let _ = writeln!(o, "strata_bars_processed_total{{symbol=\"{}\"}} {bars}", label(symbol.as_str()));
    }
    family(o, "orders_total", "counter", "Orders the host created, refused ones included");
    let _ = writeln!(o, "strata_orders_total {}", status.orders);
    family(o, "fills_total", "counter", "Fills applied to the ledger");
    let _ = writeln!(o, "strata_fills_total {}", status.fills);
    family(o, "refusals_total", "counter", "Signals not acted on, by reason");
    for (reason, n) in &status.refusals {
        let _ = writeln!(o, "strata_refusals_total{{reason=\"{}\"}} {n}", label(reason));
    }
    family(o, "equity", "gauge", "Cash plus positions marked at the last close");
    let _ = writeln!(o, "strata_equity {}", decimal(status.equity));
    family(o, "cash", "gauge", "Cash");
    let _ = writeln!(o, "strata_cash {}", decimal(status.cash));
    family(o, "drawdown_ratio", "gauge", "Fall of equity from its peak, as a fraction of the peak");
    let _ = writeln!(o, "strata_drawdown_ratio {}", decimal(status.drawdown));
    family(o, "safe_mode", "gauge", "1 during a safe-mode cool-down after a fault");
    let _ = writeln!(o, "strata_safe_mode {}", u8::from(status.safe_mode));
    family(o, "slice_calls_total", "counter", "Calls into each slice");
    for h in &status.slices {
        let labels = format!("symbol=\"{}\",slice=\"{}\"", label(h.symbol.as_str()), h.slice);
        let _ = writeln!(o, "strata_slice_calls_total{{{labels}}} {}", h.calls);
    }
    family(
        o,
        "slice_failures_total",
        "counter",
        "Failed calls into each slice: traps, errors, invalid output",
    );
    for h in &status.slices {
        let labels = format!("symbol=\"{}\",slice=\"{}\"", label(h.symbol.as_str()), h.slice);
        let _ = writeln!(o, "strata_slice_failures_total{{{labels}}} {}", h.failures);
    }
    family(o, "traps_total", "counter", "Slice faults the host contained, by kind");
    for (kind, n) in &status.traps {
        let _ = writeln!(o, "strata_traps_total{{kind=\"{}\"}} {n}", label(kind));
    }
    family(o, "slice_call_seconds", "histogram", "Latency of calls into each slice");
    for ((symbol, kind), (cumulative, sum)) in &status.latency {
        let labels = format!("symbol=\"{}\",slice=\"{}\"", label(symbol.as_str()), kind.as_str());
        for (bound, count) in BUCKETS.iter().zip(cumulative) {
            let _ = writeln!(o, "strata_slice_call_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let total = cumulative.last().copied().unwrap_or_default();
        let _ = writeln!(o, "strata_slice_call_seconds_bucket{{{labels},le=\"+Inf\"}} {total}");
        let _ = writeln!(o, "strata_slice_call_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(o, "strata_slice_call_seconds_count{{{labels}}} {total}");
    }
    family(o, "reloads_total", "counter", "Config reloads, by outcome");
    for (outcome, n) in [("applied", status.reloads_applied), ("refused", status.reloads_refused)] {
        let _ = writeln!(o, "strata_reloads_total{{outcome=\"{outcome}\"}} {n}");
    }
    family(o, "feed_errors_total", "counter", "Failed feed requests");
    let _ = writeln!(o, "strata_feed_errors_total {}", status.feed.errors);
    family(o, "commit_seconds_total", "counter", "Time spent committing bars to the state database");
    let _ = writeln!(o, "strata_commit_seconds_total {}", status.commit_seconds);
    out
}
