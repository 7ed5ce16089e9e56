//! The pipeline a batch goes through: analysis, regime and strategy, every
//! output checked; and the checks on the data slice's bars.

use crate::model::{Bar, OrderType, Regime, Signal, Timestamp, check_price_range, checked_price};
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
/// increasing times inside the range, prices inside the supported range
/// (`model::MIN_PRICE` to `MAX_PRICE`, which keeps every amount the ledger
/// derives from them exact and inside what a decimal holds), a consistent bar.
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
        check_price_range(field, v)?;
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
    let (needs_limit, needs_stop) = match signal.order_type {
        OrderType::Market => (false, false),
        OrderType::Limit => (true, false),
        OrderType::Stop => (false, true),
        OrderType::StopLimit => (true, true),
    };
    let kind = signal.order_type.as_str();
    for (field, price, needed) in
        [("limit-price", signal.limit_price, needs_limit), ("stop-price", signal.stop_price, needs_stop)]
    {
        match price {
            None if needed => {
                return Err(format!("{kind} signal on bar {i} needs a positive finite {field}, got none"));
            }
            // Every price given is checked, needed or not: the host keeps it
            // on the order, so it must be one the ledger can hold.
            Some(v) => checked_price(field, v).map_err(|m| format!("{kind} signal on bar {i}: {m}"))?,
            None => continue,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, TimeInForce};

    fn limit(price: f64) -> Signal {
        Signal {
            bar_index: 0,
            action: Action::EnterLong,
            order_type: OrderType::Limit,
            limit_price: Some(price),
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
        }
    }

    #[test]
    fn signal_prices_outside_the_supported_range_are_refused_not_dropped() {
        // Positive and finite, so they passed before, then converted to no
        // price at all and the order went out without one.
        for price in [1e300, 5e-324, 1e-13, 1.5e12] {
            let err = check_signal(&limit(price), None, 1).unwrap_err();
            assert!(err.contains("outside the supported price range"), "{price:e}: {err}");
        }
        for price in [f64::NAN, -1.0, 0.0] {
            assert!(check_signal(&limit(price), None, 1).is_err(), "{price}");
        }
        // A stop price given to a plain limit order is kept on the order, so it is checked too.
        let stray_stop = Signal { stop_price: Some(1e300), ..limit(100.0) };
        assert!(check_signal(&stray_stop, None, 1).unwrap_err().contains("stop-price"));
        assert!(check_signal(&limit(1e-12), None, 1).is_ok(), "the range's ends are in it");
        assert!(check_signal(&limit(1e12), None, 1).is_ok());
    }

    #[test]
    fn bars_outside_the_supported_range_are_refused_with_the_field() {
        let settings = BacktestSettings {
            start_cash: rust_decimal::Decimal::from(10_000),
            start: None,
            end: None,
            batch_size: 1,
            faults: super::super::FaultSettings::default(),
            risk: crate::risk::RiskLimits::default(),
            shorting: crate::config::ShortingSection::default(),
            account: crate::account::AccountSection::default(),
            live: false,
            threads: 1,
            trade_from: None,
            max_bars_per_symbol: 1,
            liquidation: Default::default(),
        };
        let bar = Bar { ts: 0, open: 100.0, high: 101.0, low: 99.0, close: 100.0, volume: 1.0 };
        assert!(check_bar(&bar, None, &settings).is_ok());
        for (field, b) in [
            ("high", Bar { high: 1e30, close: 1e30, ..bar }),
            ("low", Bar { low: 5e-324, ..bar }),
            ("high", Bar { high: 2e12, ..bar }),
        ] {
            let err = check_bar(&b, None, &settings).unwrap_err();
            assert!(err.contains(&format!("`{field}`")) && err.contains("outside"), "{err}");
        }
    }
}
