//! The pipeline a batch goes through: analysis, regime and strategy, every
//! output checked; and the checks on the data slice's bars.

use crate::model::{Bar, OrderType, Regime, Signal, Timestamp};
use crate::slice::{AnalysisSlice, RegimeSlice, SliceError, SliceResult, StrategySlice};
use crate::time::iso;

use super::BacktestSettings;

/// A failure found while filling a batch, which fires when the loop reaches it.
pub(super) struct PendingFault {
    /// Index of the bar it fires on; `bars.len()` when it follows the last bar
    /// (the data slice failed, so there is no bar to point at).
    pub(super) at: usize,
    /// The time of the offending bar when there is one but it is not in the
    /// batch (a data slice returned an unusable bar).
    pub(super) ts: Option<Timestamp>,
    pub(super) error: SliceError,
}

/// The bars a chain has pulled ahead of the loop, and what its analysis,
/// regime and strategy slices made of them.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) bars: Vec<Bar>,
    pub(super) features: Vec<f64>,
    pub(super) regimes: Vec<Regime>,
    pub(super) signals: Vec<Signal>,
    pub(super) cursor: usize,
    pub(super) next_signal: usize,
    pub(super) fault: Option<PendingFault>,
}

impl Batch {
    pub(super) fn clear(&mut self) {
        self.bars.clear();
        self.features.clear();
        self.regimes.clear();
        self.signals.clear();
        self.cursor = 0;
        self.next_signal = 0;
        self.fault = None;
    }

    pub(super) fn exhausted(&self) -> bool {
        self.cursor == self.bars.len()
    }
}

/// The pipeline slices a batch goes through, borrowed from a chain or from a replay.
pub(super) struct Pipeline<'a> {
    pub(super) analysis: &'a mut dyn AnalysisSlice,
    pub(super) regime: &'a mut dyn RegimeSlice,
    pub(super) strategy: &'a mut dyn StrategySlice,
}

impl Pipeline<'_> {
    /// Runs `bars` through analysis, regime and strategy, appending to `out`
    /// and checking each slice's output before the next slice sees it.
    pub(super) fn run(&mut self, bars: &[Bar], width: usize, out: &mut Batch) -> SliceResult<()> {
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
pub(super) fn check_bar(
    bar: &Bar,
    previous: Option<Timestamp>,
    settings: &BacktestSettings,
) -> Result<(), String> {
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
