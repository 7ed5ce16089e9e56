//! The polling feed: Coinbase Exchange public candles, checked at an
//! interval that adapts to volatility, appended to the feed files.
//!
//! `Client` is the whole of what paper mode needs from the venue and keeps
//! to this module (see docs/paper.md for how it should merge with `host data
//! fetch`'s client): `GET /products/{id}/candles?granularity&start&end`
//! returns rows `[time, low, high, open, close, volume]`, newest first, at
//! most 300 per request; HTTP 429 means slow down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::feed::{Appender, FeedLock};
use super::status::SharedStatus;
use crate::config::PaperSection;
use crate::model::{Bar, Symbol, Timestamp};
use crate::time::iso;

/// Most candles Coinbase returns per request.
pub const MAX_CANDLES: i64 = 300;

/// Why a request for candles failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    #[error("HTTP {status} from {url}: {body}")]
    Status { status: u16, url: String, body: String },
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("unexpected answer from {url}: {reason}")]
    Body { url: String, reason: String },
}

/// A small client for Coinbase Exchange's public market data.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// `base` is `https://api.exchange.coinbase.com`, or a test server's URL.
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .http_status_as_error(false)
            .user_agent("strata-host paper mode")
            .build()
            .into();
        Client { base: base.trim_end_matches('/').to_owned(), agent }
    }

    /// Candles of `product` with open times in `[start, end]` (ms), oldest first.
    /// Rows that are not sound bars are dropped with a warning.
    pub fn candles(
        &self,
        product: &str,
        granularity_s: u32,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<Bar>, FetchError> {
        let url = format!(
            "{}/products/{product}/candles?granularity={granularity_s}&start={}&end={}",
            self.base,
            iso(start),
            iso(end)
        );
        let mut response = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| FetchError::Transport { url: url.clone(), reason: e.to_string() })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| FetchError::Transport { url: url.clone(), reason: e.to_string() })?;
        match status {
            200 => {}
            429 => return Err(FetchError::RateLimited),
            _ => {
                let body = body.chars().take(300).collect();
                return Err(FetchError::Status { status, url, body });
            }
        }
        let rows: Vec<Vec<f64>> = serde_json::from_str(&body).map_err(|e| FetchError::Body {
            url: url.clone(),
            reason: format!("not a list of candles: {e}"),
        })?;
        let mut bars = Vec::with_capacity(rows.len());
        for row in rows {
            let [time, low, high, open, close, volume] = row[..] else {
                return Err(FetchError::Body {
                    url,
                    reason: format!("a candle has {} fields, not 6", row.len()),
                });
            };
            let bar = Bar { ts: time as i64 * 1000, open, high, low, close, volume };
            let sound = [open, high, low, close].iter().all(|p| p.is_finite() && *p > 0.0)
                && volume.is_finite()
                && volume >= 0.0
                && low <= open.min(close)
                && high >= open.max(close);
            if sound && (start..=end).contains(&bar.ts) {
                bars.push(bar);
            } else if !sound {
                tracing::warn!("{product}: dropped an unsound candle at {}: {row:?}", iso(bar.ts));
            }
        }
        bars.sort_by_key(|b| b.ts);
        bars.dedup_by_key(|b| b.ts);
        Ok(bars)
    }
}

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
            client: Client::new(&settings.coinbase_url),
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
                            s.feed.last_error = Some(e.to_string());
                            tracing::warn!("polling feed: {e}; next try in {} s", backoff.as_secs());
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
    fn check(
        &mut self,
        appender: &Appender,
        lock: &FeedLock,
        status: &SharedStatus,
    ) -> Result<Duration, FetchError> {
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
            while from <= last_closed {
                let to = (from + (MAX_CANDLES - 1) * g).min(last_closed);
                bars.extend(self.client.candles(symbol.as_str(), self.settings.granularity_s, from, to)?);
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
                appender.append(symbol, &rows).map_err(|e| FetchError::Body {
                    url: "the feed file".into(),
                    reason: format!("cannot append {symbol}'s candles: {e}"),
                })?;
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
