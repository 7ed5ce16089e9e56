//! `{{name}}`: {{description}}.
//!
//! Labels a bar trending up when its close is above a moving average (taken
//! from the analysis slice's features) by more than a band, trending down
//! when below it by more than the band, ranging in between, and unknown while
//! the average warms up.

use plugin_sdk::{Bar, Config, Error, FeatureNames, FeatureRows, Manifest, Param, Regime, RegimeDetector, Result};

pub struct {{type}} {
    average: usize,
    band: f64,
}

impl RegimeDetector for {{type}} {
    fn manifest() -> Manifest {
        Manifest::new("{{description}}")
            .param(Param::text("feature", "sma_slow", "feature holding the moving average"))
            .param(Param::float("band", 0.01, "fraction around the average that counts as ranging"))
    }

    fn new(config: &Config, features: &FeatureNames) -> Result<Self> {
        let band = config.float("band")?;
        if !(0.0..1.0).contains(&band) {
            return Err(Error::new(format!("`band` must be at least 0 and below 1, got {band}")));
        }
        Ok({{type}} { average: features.index(config.text("feature")?)?, band })
    }

    fn classify(&mut self, bars: &[Bar], features: &FeatureRows, regimes: &mut Vec<Regime>) -> Result<()> {
        // Exactly one regime per bar: the host checks the count.
        for (i, bar) in bars.iter().enumerate() {
            let average = features.get(i, self.average);
            regimes.push(if average.is_nan() {
                Regime::Unknown
            } else if bar.close > average * (1.0 + self.band) {
                Regime::TrendingUp
            } else if bar.close < average * (1.0 - self.band) {
                Regime::TrendingDown
            } else {
                Regime::Ranging
            });
        }
        Ok(())
    }
}

plugin_sdk::export_regime_detector!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, classify};

    #[test]
    fn labels_follow_the_close_against_the_average() {
        let names = FeatureNames::new(["sma_fast", "sma_slow"]);
        let mut detector = {{type}}::new(&Config::defaults(&{{type}}::manifest()), &names).unwrap();
        let bars = bars_from_closes(&[100.0, 105.0, 95.0, 100.5]);
        let features = [f64::NAN, f64::NAN, 0.0, 100.0, 0.0, 100.0, 0.0, 100.0];
        let regimes = classify(&mut detector, &bars, &features, 2).unwrap();
        assert_eq!(regimes, vec![Regime::Unknown, Regime::TrendingUp, Regime::TrendingDown, Regime::Ranging]);
    }
}
