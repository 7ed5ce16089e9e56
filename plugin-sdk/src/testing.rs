//! Helpers for testing slices natively with `cargo test`: build bars, feed them
//! to a slice the way the host does, and get its outputs back.

use crate::{Analyzer, Bar, FeatureRows, Regime, RegimeDetector, Result, Signal, Strategy, Timestamp};

/// 2024-01-01T00:00:00Z in milliseconds: the first bar of [`bars_from_closes`].
pub const START: Timestamp = 1_704_067_200_000;

/// One day in milliseconds.
pub const DAY: Timestamp = 86_400_000;

/// Daily bars from closing prices, starting at [`START`]: each bar opens at the
/// previous close (the first at its own close), and high and low span open and close.
pub fn bars_from_closes(closes: &[f64]) -> Vec<Bar> {
    let mut prev = closes.first().copied().unwrap_or_default();
    closes
        .iter()
        .enumerate()
        .map(|(i, &close)| {
            let open = prev;
            prev = close;
            Bar {
                ts: START + i as Timestamp * DAY,
                open,
                high: open.max(close),
                low: open.min(close),
                close,
                volume: 1_000.0,
            }
        })
        .collect()
}

/// Feeds `bars` to an analyzer in one batch and returns its values, row-major.
pub fn update<A: Analyzer>(analyzer: &mut A, bars: &[Bar]) -> Result<Vec<f64>> {
    let mut values = Vec::new();
    analyzer.update(bars, &mut values)?;
    Ok(values)
}

/// Runs a regime detector on one batch.
pub fn classify<R: RegimeDetector>(
    detector: &mut R,
    bars: &[Bar],
    features: &[f64],
    width: usize,
) -> Result<Vec<Regime>> {
    let mut regimes = Vec::new();
    detector.classify(bars, &FeatureRows::new(features, width), &mut regimes)?;
    Ok(regimes)
}

/// Runs a strategy on one batch, every bar in the `unknown` regime.
pub fn decide<S: Strategy>(
    strategy: &mut S,
    bars: &[Bar],
    features: &[f64],
    width: usize,
) -> Result<Vec<Signal>> {
    decide_in(strategy, bars, features, width, &vec![Regime::Unknown; bars.len()])
}

/// Runs a strategy on one batch with the given regimes.
pub fn decide_in<S: Strategy>(
    strategy: &mut S,
    bars: &[Bar],
    features: &[f64],
    width: usize,
    regimes: &[Regime],
) -> Result<Vec<Signal>> {
    let mut signals = Vec::new();
    strategy.decide(bars, &FeatureRows::new(features, width), regimes, &mut signals)?;
    Ok(signals)
}
