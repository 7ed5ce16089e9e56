//! The polling feed: Coinbase Exchange public candles, checked at an
//! interval that adapts to volatility, appended to the feed files.
//!
//! The requests and the checks on every candle are `host data fetch`'s
//! client ([`crate::fetch::Client`]), told not to retry: a rate limit or a
//! failure is reported in the feed's health at once, and the feed backs off
//! at its own pace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::feed::{Appender, FeedLock};
use super::status::SharedStatus;
use crate::config::PaperSection;
use crate::fetch::{Client, FetchReport, MAX_CANDLES_PER_REQUEST, Retries};
use crate::model::{Bar, Symbol, Timestamp};
use crate::time::iso;

/// How long to wait before the next check: the longest wait when the market
/// is quiet (volatility at or below `quiet`), shorter in proportion as it
/// moves faster, never below `min`. Volatility is the standard deviation of
/// the log returns of `closes`.
pub fn check_interval(closes: &[f64], quiet: f64, min: f64, max: f64) -> (Duration, Option<f64>) {
    let returns: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).filter(|r| r.is_finite()).collect();
    if returns.len() < 2 {
        return (Duration::from_secs_f64(min), None);
    }
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    let variance = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (returns.len() - 1) as f64;
    let sigma = variance.sqrt();
    let seconds = if sigma <= quiet { max } else { (max * quiet / sigma).clamp(min, max) };
    (Duration::from_secs_f64(seconds), Some(sigma))
}

/// Returns used for the volatility estimate.
const VOLATILITY_WINDOW: usize = 24;

pub struct PollingFeed {
    client: Client,
    settings: PaperSection,
    /// Per symbol, the time of the last bar in its feed file.
    last: BTreeMap<Symbol, Option<Timestamp>>,
    closes: BTreeMap<Symbol, Vec<f64>>,
}

impl PollingFeed {
    pub fn new(settings: &PaperSection, last: BTreeMap<Symbol, Option<Timestamp>>) -> Result<Self> {
        Ok(PollingFeed {
            client: Client::new(Duration::from_secs(20), Retries::NONE),
            settings: settings.clone(),
            closes: last.keys().map(|s| (s.clone(), Vec::new())).collect(),
            last,
        })
    }

    pub fn spawn(
        mut self,
        appender: Appender,
        lock: FeedLock,
        wake: Sender<()>,
        status: SharedStatus,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("polling-feed".into())
            .spawn(move || {
                let mut backoff = Duration::from_secs(1);
                loop {
                    let wait = match self.check(&appender, &lock, &status) {
                        Ok(wait) => {
                            backoff = Duration::from_secs(1);
                            let _ = wake.send(());
                            wait
                        }
                        Err(e) => {
                            let mut s = status.lock().expect("status");
                            s.feed.errors += 1;
                            s.feed.last_error = Some(format!("{e:#}"));
                            tracing::warn!("polling feed: {e:#}; next try in {} s", backoff.as_secs());
                            let wait = backoff;
                            let cap = Duration::from_secs_f64(self.settings.max_check_interval_s);
                            backoff = (backoff * 2).min(cap);
                            wait
                        }
                    };
                    status.lock().expect("status").feed.next_check_seconds = Some(wait.as_secs_f64());
                    let until = Instant::now() + wait;
                    while Instant::now() < until {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                    }
                }
            })
            .expect("spawn the feed thread")
    }

    /// Fetches every symbol's closed candles since its last one and appends
    /// them all in one locked tick. Returns the wait until the next check.
    fn check(&mut self, appender: &Appender, lock: &FeedLock, status: &SharedStatus) -> Result<Duration> {
        let g = i64::from(self.settings.granularity_s) * 1000;
        let now = super::store::now_ms();
        // A candle is final once its period has ended.
        let last_closed = now.div_euclid(g) * g - g;
        let mut fetched: BTreeMap<Symbol, Vec<Bar>> = BTreeMap::new();
        for (symbol, last) in &self.last {
            let mut from = match last {
                Some(t) => t + g,
                None => last_closed - (i64::from(self.settings.history_bars) - 1) * g,
            };
            let mut bars = Vec::new();
            let (base, granularity_s) = (&self.settings.coinbase_url, i64::from(self.settings.granularity_s));
            while from <= last_closed {
                let to = (from + (MAX_CANDLES_PER_REQUEST - 1) * g).min(last_closed);
                let window = (from, to);
                bars.extend(self.client.candles(
                    base,
                    symbol.as_str(),
                    granularity_s,
                    window,
                    &mut FetchReport::default(),
                )?);
                from = to + g;
            }
            fetched.insert(symbol.clone(), bars);
        }
        let mut written = 0;
        {
            let _guard = lock.lock().expect("feed lock");
            for (symbol, bars) in &fetched {
                let rows: Vec<String> = bars
                    .iter()
                    .map(|b| {
                        format!("{},{},{},{},{},{}", iso(b.ts), b.open, b.high, b.low, b.close, b.volume)
                    })
                    .collect();
                appender
                    .append(symbol, &rows)
                    .with_context(|| format!("cannot append {symbol}'s candles"))?;
                written += rows.len();
                if let Some(last) = bars.last() {
                    self.last.insert(symbol.clone(), Some(last.ts));
                }
                let closes = self.closes.entry(symbol.clone()).or_default();
                closes.extend(bars.iter().map(|b| b.close));
                let excess = closes.len().saturating_sub(VOLATILITY_WINDOW + 1);
                closes.drain(..excess);
            }
        }
        // The most volatile symbol sets the pace.
        let s = &self.settings;
        let (wait, sigma) = self
            .closes
            .values()
            .map(|c| check_interval(c, s.quiet_volatility, s.min_check_interval_s, s.max_check_interval_s))
            .min_by_key(|(wait, _)| *wait)
            .unwrap_or((Duration::from_secs_f64(s.min_check_interval_s), None));
        let mut st = status.lock().expect("status");
        st.feed.bars_written += written as u64;
        st.feed.volatility = sigma;
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_markets_wait_longest_and_fast_ones_shortest() {
        let (min, max, quiet) = (900.0, 14_400.0, 0.002);
        let flat = [100.0, 100.05, 100.0, 100.05, 100.0];
        assert_eq!(check_interval(&flat, quiet, min, max).0, Duration::from_secs(14_400));
        // Moves of about 1% per bar: five times the quiet level, a fifth of the longest wait.
        let moving = [100.0, 101.0, 100.0, 101.0, 100.0, 101.0];
        let (wait, sigma) = check_interval(&moving, quiet, min, max);
        let sigma = sigma.unwrap();
        assert!((wait.as_secs_f64() - max * quiet / sigma).abs() < 1e-6);
        assert!(wait < Duration::from_secs(4000) && wait > Duration::from_secs(900), "{wait:?}");
        let wild = [100.0, 120.0, 90.0, 130.0, 80.0];
        assert_eq!(check_interval(&wild, quiet, min, max).0, Duration::from_secs(900));
        assert_eq!(
            check_interval(&[100.0], quiet, min, max).0,
            Duration::from_secs(900),
            "no history: check soon"
        );
    }
}
