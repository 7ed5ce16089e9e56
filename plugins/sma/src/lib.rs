//! `sma`: simple moving averages of the close.
//!
//! Produces two features, `sma_fast` and `sma_slow`. Each is the sum of the
//! last `period` closes, added oldest first, divided by `period`; NaN until
//! `period` bars have been seen. Summing the window afresh on every bar (rather
//! than keeping a running sum) costs a few dozen additions and keeps the value
//! free of accumulated rounding drift, so two runs, or this plugin and an
//! independent re-implementation, agree to the last bit.

use plugin_sdk::{Analyzer, Bar, Config, Error, Manifest, Param, Result};

/// Moving averages over a window of recent closes.
pub struct Sma {
    fast: usize,
    slow: usize,
    /// The last `slow` closes, each stored twice (at `i` and `i + slow`), so
    /// that the latest `n` of them are always one contiguous slice.
    ring: Vec<f64>,
    /// Where the next close goes, in `0..slow`.
    next: usize,
    seen: usize,
}

impl Sma {
    fn push(&mut self, close: f64) {
        self.ring[self.next] = close;
        self.ring[self.next + self.slow] = close;
        self.next = (self.next + 1) % self.slow;
        self.seen += 1;
    }

    /// Mean of the last `period` closes, summed oldest first.
    fn mean_of_last(&self, period: usize) -> f64 {
        if self.seen < period {
            return f64::NAN;
        }
        // The newest close is at `next - 1 + slow` in the doubled buffer.
        let end = self.next + self.slow;
        let sum: f64 = self.ring[end - period..end].iter().sum();
        sum / period as f64
    }
}

impl Analyzer for Sma {
    fn manifest() -> Manifest {
        Manifest::new("Simple moving averages of close: sma_fast and sma_slow")
            .param(Param::int("fast", 10, "period of sma_fast, in bars"))
            .param(Param::int("slow", 30, "period of sma_slow, in bars; greater than fast"))
    }

    fn new(config: &Config) -> Result<Self> {
        let fast = config.count("fast")?;
        let slow = config.count("slow")?;
        if fast >= slow {
            return Err(Error::new(format!("`fast` ({fast}) must be less than `slow` ({slow})")));
        }
        Ok(Sma { fast, slow, ring: vec![0.0; 2 * slow], next: 0, seen: 0 })
    }

    fn outputs(&self) -> Vec<String> {
        vec!["sma_fast".into(), "sma_slow".into()]
    }

    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> Result<()> {
        values.reserve(bars.len() * 2);
        for bar in bars {
            self.push(bar.close);
            values.push(self.mean_of_last(self.fast));
            values.push(self.mean_of_last(self.slow));
        }
        Ok(())
    }
}

plugin_sdk::export_analyzer!(Sma);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, update};

    fn sma(fast: i64, slow: i64) -> Result<Sma> {
        Sma::new(&Config::defaults(&Sma::manifest()).with("fast", fast).with("slow", slow))
    }

    #[test]
    fn averages_appear_once_the_window_is_full() {
        let mut a = sma(2, 3).unwrap();
        let values = update(&mut a, &bars_from_closes(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        // Rows: (fast, slow) per bar.
        assert!(values[0].is_nan() && values[1].is_nan());
        assert_eq!(values[2], 1.5);
        assert!(values[3].is_nan());
        assert_eq!((values[4], values[5]), (2.5, 2.0));
        assert_eq!((values[6], values[7]), (3.5, 3.0));
    }

    #[test]
    fn batches_do_not_change_the_result() {
        let closes: Vec<f64> = (0..50).map(|i| 100.0 + (i as f64 * 0.7).sin() * 5.0).collect();
        let bars = bars_from_closes(&closes);
        let whole = update(&mut sma(3, 7).unwrap(), &bars).unwrap();
        let mut split = sma(3, 7).unwrap();
        let mut pieces = update(&mut split, &bars[..13]).unwrap();
        pieces.extend(update(&mut split, &bars[13..]).unwrap());
        assert_eq!(whole.len(), pieces.len());
        assert!(whole.iter().zip(&pieces).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn fast_must_be_less_than_slow() {
        let err = sma(30, 10).err().unwrap();
        assert_eq!(err.to_string(), "`fast` (30) must be less than `slow` (10)");
    }

    #[test]
    fn defaults_are_10_and_30() {
        let a = Sma::new(&Config::defaults(&Sma::manifest())).unwrap();
        assert_eq!((a.fast, a.slow), (10, 30));
    }
}
