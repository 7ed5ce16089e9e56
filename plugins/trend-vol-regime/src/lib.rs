//! `trend-vol-regime`: labels each bar trending up, trending down, ranging or
//! volatile, from the slope of a moving average and realised volatility.
//!
//! - volatile: realised volatility over `vol-window` returns is more than
//!   `vol-ratio` times its level over the longer `baseline-window`;
//! - otherwise trending up or down: the `trend-window` SMA of close moved by
//!   more than `trend-threshold` (as a fraction) over `slope-lookback` bars;
//! - otherwise ranging;
//! - unknown while any window is still filling.
//!
//! It needs no features from the analysis slice, so it works with any of them.

use std::collections::VecDeque;

use plugin_sdk::{
    Bar, Config, Error, FeatureNames, FeatureRows, Manifest, Param, Regime, RegimeDetector, Result,
};

pub struct TrendVolRegime {
    trend_window: usize,
    slope_lookback: usize,
    trend_threshold: f64,
    vol_window: usize,
    baseline_window: usize,
    vol_ratio: f64,
    closes: VecDeque<f64>,
    /// Sum of `closes`, kept as they come and go; re-summed with the other
    /// running sums, so it cannot drift.
    closes_sum: f64,
    /// Recent values of the trend SMA, newest last.
    smas: VecDeque<f64>,
    returns: VecDeque<f64>,
    previous_close: Option<f64>,
    /// Running sums of squared returns over the two windows. Recomputed from
    /// scratch every `RESUM_EVERY` bars so rounding drift cannot build up.
    short_sq: f64,
    long_sq: f64,
    since_resum: usize,
}

const RESUM_EVERY: usize = 4096;

impl RegimeDetector for TrendVolRegime {
    fn manifest() -> Manifest {
        Manifest::new("Trend / range / high-volatility regimes from SMA slope and realised volatility")
            .param(Param::int("trend-window", 50, "period of the SMA whose slope defines a trend, in bars"))
            .param(Param::int("slope-lookback", 10, "bars over which the SMA's change is measured"))
            .param(Param::float("trend-threshold", 0.02, "fractional SMA change that counts as a trend"))
            .param(Param::int("vol-window", 20, "returns in the short realised-volatility window"))
            .param(Param::int("baseline-window", 200, "returns in the baseline volatility window"))
            .param(Param::float("vol-ratio", 1.5, "short/baseline volatility ratio that counts as volatile"))
    }

    fn new(config: &Config, _features: &FeatureNames) -> Result<Self> {
        let vol_window = config.count("vol-window")?;
        let baseline_window = config.count("baseline-window")?;
        if vol_window >= baseline_window {
            return Err(Error::new(format!(
                "`vol-window` ({vol_window}) must be less than `baseline-window` ({baseline_window})"
            )));
        }
        let positive = |key: &str| -> Result<f64> {
            let v = config.float(key)?;
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::new(format!("`{key}` must be positive, got {v}")))
            }
        };
        Ok(TrendVolRegime {
            trend_window: config.count("trend-window")?,
            slope_lookback: config.count("slope-lookback")?,
            trend_threshold: positive("trend-threshold")?,
            vol_window,
            baseline_window,
            vol_ratio: positive("vol-ratio")?,
            closes: VecDeque::new(),
            closes_sum: 0.0,
            smas: VecDeque::new(),
            returns: VecDeque::new(),
            previous_close: None,
            short_sq: 0.0,
            long_sq: 0.0,
            since_resum: 0,
        })
    }

    fn classify(&mut self, bars: &[Bar], _features: &FeatureRows, regimes: &mut Vec<Regime>) -> Result<()> {
        for bar in bars {
            regimes.push(self.update(bar.close));
        }
        Ok(())
    }
}

impl TrendVolRegime {
    fn update(&mut self, close: f64) -> Regime {
        if let Some(prev) = self.previous_close {
            let r = (close / prev).ln();
            self.returns.push_back(r);
            self.short_sq += r * r;
            self.long_sq += r * r;
            let n = self.returns.len();
            if n > self.vol_window {
                let old = self.returns[n - 1 - self.vol_window];
                self.short_sq -= old * old;
            }
            if n > self.baseline_window {
                let old = self.returns.pop_front().expect("non-empty");
                self.long_sq -= old * old;
            }
            self.since_resum += 1;
            if self.since_resum >= RESUM_EVERY {
                self.resum();
            }
        }
        self.previous_close = Some(close);

        self.closes.push_back(close);
        self.closes_sum += close;
        if self.closes.len() > self.trend_window {
            self.closes_sum -= self.closes.pop_front().expect("non-empty");
        }
        if self.closes.len() == self.trend_window {
            let sma = self.closes_sum / self.trend_window as f64;
            self.smas.push_back(sma);
            if self.smas.len() > self.slope_lookback + 1 {
                self.smas.pop_front();
            }
        }

        if self.returns.len() < self.baseline_window || self.smas.len() <= self.slope_lookback {
            return Regime::Unknown;
        }
        let short = (self.short_sq.max(0.0) / self.vol_window as f64).sqrt();
        let long = (self.long_sq.max(0.0) / self.baseline_window as f64).sqrt();
        if long > 0.0 && short > self.vol_ratio * long {
            return Regime::Volatile;
        }
        let (first, last) = (self.smas[0], self.smas[self.smas.len() - 1]);
        let change = last / first - 1.0;
        if change > self.trend_threshold {
            Regime::TrendingUp
        } else if change < -self.trend_threshold {
            Regime::TrendingDown
        } else {
            Regime::Ranging
        }
    }

    fn resum(&mut self) {
        self.closes_sum = self.closes.iter().sum();
        let n = self.returns.len();
        self.long_sq = self.returns.iter().map(|r| r * r).sum();
        self.short_sq = self.returns.range(n.saturating_sub(self.vol_window)..).map(|r| r * r).sum();
        self.since_resum = 0;
    }
}

plugin_sdk::export_regime_detector!(TrendVolRegime);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, classify};

    fn detector() -> TrendVolRegime {
        let config = Config::defaults(&TrendVolRegime::manifest())
            .with("trend-window", 5)
            .with("slope-lookback", 3)
            .with("vol-window", 5)
            .with("baseline-window", 20);
        TrendVolRegime::new(&config, &FeatureNames::default()).unwrap()
    }

    fn last_regime(closes: &[f64]) -> Regime {
        let bars = bars_from_closes(closes);
        *classify(&mut detector(), &bars, &[], 0).unwrap().last().unwrap()
    }

    /// Closes that wobble by +-0.5% around a path.
    fn wobble(path: impl Fn(usize) -> f64, n: usize) -> Vec<f64> {
        (0..n).map(|i| path(i) * if i % 2 == 0 { 1.005 } else { 0.995 }).collect()
    }

    #[test]
    fn unknown_until_the_windows_fill() {
        let bars = bars_from_closes(&wobble(|_| 100.0, 21));
        let regimes = classify(&mut detector(), &bars, &[], 0).unwrap();
        assert!(regimes[..20].iter().all(|r| *r == Regime::Unknown));
        assert_ne!(regimes[20], Regime::Unknown);
    }

    #[test]
    fn labels_follow_the_path() {
        assert_eq!(last_regime(&wobble(|_| 100.0, 40)), Regime::Ranging);
        assert_eq!(last_regime(&wobble(|i| 100.0 * 1.01f64.powi(i as i32), 40)), Regime::TrendingUp);
        assert_eq!(last_regime(&wobble(|i| 100.0 * 0.99f64.powi(i as i32), 40)), Regime::TrendingDown);
        let mut wild = wobble(|_| 100.0, 36);
        wild.extend([110.0, 95.0, 112.0, 90.0]);
        assert_eq!(last_regime(&wild), Regime::Volatile);
    }
}
