//! `{{name}}`: {{description}}.
//!
//! Produces one feature, `momentum`: the close divided by the close `period`
//! bars earlier, minus one. NaN until `period` earlier bars have been seen.

use std::collections::VecDeque;

use plugin_sdk::{Analyzer, Bar, Config, Manifest, Param, Result};

pub struct {{type}} {
    period: usize,
    /// The last `period + 1` closes, oldest first.
    closes: VecDeque<f64>,
}

impl Analyzer for {{type}} {
    fn manifest() -> Manifest {
        Manifest::new("{{description}}").param(Param::int("period", 14, "lookback in bars"))
    }

    fn new(config: &Config) -> Result<Self> {
        // `count` refuses zero and negative values with a message naming the key.
        let period = config.count("period")?;
        Ok({{type}} { period, closes: VecDeque::with_capacity(period + 1) })
    }

    fn outputs(&self) -> Vec<String> {
        vec!["momentum".into()]
    }

    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> Result<()> {
        // Bars arrive in batches of any size; state carries across batches.
        for bar in bars {
            if self.closes.len() == self.period + 1 {
                self.closes.pop_front();
            }
            self.closes.push_back(bar.close);
            let value = if self.closes.len() == self.period + 1 { bar.close / self.closes[0] - 1.0 } else { f64::NAN };
            values.push(value);
        }
        Ok(())
    }
}

plugin_sdk::export_analyzer!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, update};

    #[test]
    fn momentum_over_two_bars() {
        let config = Config::defaults(&{{type}}::manifest()).with("period", 2);
        let mut analyzer = {{type}}::new(&config).unwrap();
        let bars = bars_from_closes(&[100.0, 110.0, 120.0, 90.0]);
        let values = update(&mut analyzer, &bars[..1]).unwrap();
        assert!(values[0].is_nan());
        // A second batch continues where the first stopped.
        let values = update(&mut analyzer, &bars[1..]).unwrap();
        assert!(values[0].is_nan());
        assert!((values[1] - 0.2).abs() < 1e-12, "120 / 100 - 1");
        assert!((values[2] + 0.181_818_181_818).abs() < 1e-9, "90 / 110 - 1");
    }

    #[test]
    fn a_zero_period_is_refused() {
        let config = Config::defaults(&{{type}}::manifest()).with("period", 0);
        assert!({{type}}::new(&config).is_err());
    }
}
