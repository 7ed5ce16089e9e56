//! The live feed: the venue's closed candles, appended to the session's feed
//! files for the data slice to read, as paper mode's feeds do.
//!
//! "Closed" is decided by the venue's clock (its server time), not ours: a
//! candle is final once its period has ended there. The newest closed candle
//! of each symbol is shared with the router, which never sends an order
//! decided on an older bar than `live.max-bar-age` allows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_coinbase::{Credentials, Granularity, RestClient, Stream, StreamEvent};

use super::config::LiveSection;
use crate::model::{Symbol, Timestamp};
use crate::paper::feed::{Appender, FeedLock};
use crate::paper::status::SharedStatus;
use crate::time::iso;

/// Coinbase answers at most this many candles per request.
const MAX_CANDLES: i64 = 350;

pub struct VenueFeed {
    pub client: Arc<RestClient>,
    /// For the user channel of the WebSocket stream.
    pub credentials: Arc<Credentials>,
    pub settings: LiveSection,
    /// Per symbol, the time of the last bar in its feed file.
    pub last: BTreeMap<Symbol, Option<Timestamp>>,
    pub newest_closed: Arc<Mutex<BTreeMap<Symbol, Timestamp>>>,
}

impl VenueFeed {
    pub fn spawn(
        mut self,
        appender: Appender,
        lock: FeedLock,
        wake: Sender<()>,
        status: SharedStatus,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("venue-feed".into()).spawn(move || {
            // The WebSocket stream says at once when a candle closes (and
            // when it was cut off: then the REST poll fills the gap); the
            // poll runs anyway, every poll-interval-s, so a silent stream
            // never stalls the session.
            let (events_tx, events) = std::sync::mpsc::channel();
            let products: Vec<String> = self.last.keys().map(|s| s.to_string()).collect();
            let endpoints = self.client.endpoints().clone();
            let stream = Stream::new(&endpoints, Some(Arc::clone(&self.credentials)), products)
                .spawn(events_tx, Arc::clone(&stop));
            let every = Duration::from_secs_f64(self.settings.poll_interval_s);
            let mut backoff = every;
            let mut forming: BTreeMap<String, i64> = BTreeMap::new();
            loop {
                let wait = match self.check(&appender, &lock, &status) {
                    Ok(()) => {
                        backoff = every;
                        let _ = wake.send(());
                        every
                    }
                    Err(e) => {
                        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                        s.feed.errors += 1;
                        s.feed.last_error = Some(format!("{e:#}"));
                        drop(s);
                        tracing::warn!("venue feed: {e:#}; next try in {:.1} s", backoff.as_secs_f64());
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(60).max(every));
                        wait
                    }
                };
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if stop.load(Ordering::Relaxed) {
                        drop(events);
                        let _ = stream.join();
                        return;
                    }
                    let slice =
                        Duration::from_millis(20).min(until.saturating_duration_since(Instant::now()));
                    match events.recv_timeout(slice) {
                        Ok(event) if closes_a_candle(&event, &mut forming) => break,
                        _ => {}
                    }
                }
            }
        })
    }

    /// Appends every symbol's candles closed since its last one, by the venue's clock.
    ///
    /// Every check asks from the last candle in the file on, so whatever a
    /// dropped stream missed is filled here, over REST.
    fn check(&mut self, appender: &Appender, lock: &FeedLock, status: &SharedStatus) -> Result<()> {
        let g_s = i64::from(self.settings.granularity_s);
        let granularity =
            Granularity::from_seconds(g_s).context("live.granularity-s is not one Coinbase serves")?;
        let now = self.client.server_time().context("asking the venue for its time")?;
        // Candles are final once their period has ended on the venue's clock.
        let last_closed = now.div_euclid(g_s) * g_s - g_s;
        let mut fetched: BTreeMap<Symbol, Vec<String>> = BTreeMap::new();
        let mut newest: BTreeMap<Symbol, Timestamp> = BTreeMap::new();
        for (symbol, last) in &self.last {
            let mut from = match last {
                Some(t) => t.div_euclid(1000) + g_s,
                None => last_closed - (i64::from(self.settings.history_bars) - 1).max(0) * g_s,
            };
            let mut rows = Vec::new();
            while from <= last_closed {
                let to = (from + (MAX_CANDLES - 1) * g_s).min(last_closed);
                let mut candles = self
                    .client
                    .candles(symbol.as_str(), from, to + g_s - 1, granularity)
                    .with_context(|| format!("{symbol}'s candles from {}", iso(from * 1000)))?;
                candles.retain(|c| c.start >= from && c.start <= to);
                candles.sort_by_key(|c| c.start);
                candles.dedup_by_key(|c| c.start);
                for c in candles {
                    let ts = c.start.checked_mul(1000).context("a candle time out of range")?;
                    rows.push(format!(
                        "{},{},{},{},{},{}",
                        iso(ts),
                        c.open.normalize(),
                        c.high.normalize(),
                        c.low.normalize(),
                        c.close.normalize(),
                        c.volume.normalize()
                    ));
                    newest.insert(symbol.clone(), ts);
                }
                from = to + g_s;
            }
            fetched.insert(symbol.clone(), rows);
        }
        let mut written = 0;
        {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            for (symbol, rows) in &fetched {
                appender.append(symbol, rows).with_context(|| format!("cannot append {symbol}'s candles"))?;
                written += rows.len();
                if let Some(ts) = newest.get(symbol) {
                    self.last.insert(symbol.clone(), Some(*ts));
                }
            }
        }
        // The router's view of "now" moves only after the bars are in the files.
        let mut closed = self.newest_closed.lock().unwrap_or_else(|p| p.into_inner());
        for symbol in self.last.keys() {
            closed.insert(symbol.clone(), last_closed * 1000);
        }
        drop(closed);
        status.lock().unwrap_or_else(|p| p.into_inner()).feed.bars_written += written as u64;
        Ok(())
    }
}

/// Whether a stream event means a poll is due now: a candle of a new period
/// (the previous one closed), or the stream reconnected after a gap.
fn closes_a_candle(event: &StreamEvent, forming: &mut BTreeMap<String, i64>) -> bool {
    match event {
        StreamEvent::Candle { product_id, candle } => {
            let seen = forming.insert(product_id.clone(), candle.start);
            seen.is_none_or(|start| candle.start > start)
        }
        StreamEvent::Gap { endpoint, reason } => {
            tracing::warn!(
                "venue stream {endpoint:?}: {reason}; reconnecting (the next poll fills what it missed)"
            );
            false
        }
        StreamEvent::Connected { endpoint } => {
            tracing::info!("venue stream {endpoint:?}: subscribed");
            true
        }
        StreamEvent::Order(update) => {
            tracing::debug!(
                "venue order {} ({}): {:?}, {} filled",
                update.order_id,
                update.client_order_id,
                update.status,
                update.cumulative_quantity.normalize()
            );
            false
        }
        StreamEvent::Heartbeat { .. } => false,
    }
}
