//! `{{name}}`: {{description}}.
//!
//! Goes long when the close rises above the slow moving average by a margin,
//! and exits when the close falls back below the average. The average comes
//! from the analysis slice (the default chain's `sma` produces `sma_slow`).

use plugin_sdk::{
    Action, Bar, Config, Error, FeatureNames, FeatureRows, Manifest, Param, Regime, Result, Signal, Strategy,
};

pub struct {{type}} {
    /// Column of the moving average in the feature rows.
    average: usize,
    /// Fraction above the average that counts as a breakout.
    margin: f64,
}

impl Strategy for {{type}} {
    fn manifest() -> Manifest {
        Manifest::new("{{description}}")
            .param(Param::text("feature", "sma_slow", "feature holding the moving average"))
            .param(Param::float("margin", 0.02, "fraction above the average that counts as a breakout"))
    }

    fn new(config: &Config, features: &FeatureNames) -> Result<Self> {
        let margin = config.float("margin")?;
        if !(0.0..1.0).contains(&margin) {
            return Err(Error::new(format!("`margin` must be at least 0 and below 1, got {margin}")));
        }
        // Fails with a message listing the features there are if it is missing.
        let average = features.index(config.text("feature")?)?;
        Ok({{type}} { average, margin })
    }

    fn decide(
        &mut self,
        bars: &[Bar],
        features: &FeatureRows,
        _regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> Result<()> {
        for (i, bar) in bars.iter().enumerate() {
            let average = features.get(i, self.average);
            if average.is_nan() {
                continue; // the average is still warming up
            }
            // The host ignores an entry while long and an exit while flat, so
            // emitting a signal on every bar the rule holds is fine.
            if bar.close > average * (1.0 + self.margin) {
                signals.push(Signal::market(i, Action::EnterLong));
            } else if bar.close < average {
                signals.push(Signal::market(i, Action::ExitLong));
            }
        }
        Ok(())
    }
}

plugin_sdk::export_strategy!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, decide};

    fn strategy() -> {{type}} {
        let names = FeatureNames::new(["sma_fast", "sma_slow"]);
        {{type}}::new(&Config::defaults(&{{type}}::manifest()), &names).unwrap()
    }

    #[test]
    fn enters_on_a_breakout_and_exits_below_the_average() {
        let bars = bars_from_closes(&[100.0, 101.0, 103.0, 99.0]);
        // (sma_fast, sma_slow) per bar; the first bar is still warming up.
        let features = [f64::NAN, f64::NAN, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0];
        let signals = decide(&mut strategy(), &bars, &features, 2).unwrap();
        let got: Vec<(u32, Action)> = signals.iter().map(|s| (s.bar_index, s.action)).collect();
        // 101 is above 100 but not by 2%; 103 is; 99 is below.
        assert_eq!(got, vec![(2, Action::EnterLong), (3, Action::ExitLong)]);
    }

    #[test]
    fn a_missing_feature_is_named() {
        let err = {{type}}::new(&Config::defaults(&{{type}}::manifest()), &FeatureNames::new(["rsi"]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs feature `sma_slow`"), "{err}");
    }
}
