//! `[live]`: the venue a live session trades on, where its API key is, and
//! how the session treats the venue's account. Only live mode reads it;
//! nothing here is a secret (the key stays in its file or variable).

use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::excerpt::excerpt;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LiveSection {
    /// The venue: only `coinbase` (Coinbase Advanced Trade, spot) today.
    #[serde(default = "default_venue")]
    pub venue: String,
    /// A CDP API key file as Coinbase lets you download it (JSON with `name`
    /// and `privateKey`), relative to the config file. Read by the host only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Or: the environment variable holding that JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// The venue's REST API.
    #[serde(default = "default_rest_url")]
    pub rest_url: String,
    /// The venue's market data WebSocket.
    #[serde(default = "default_ws_market_url")]
    pub ws_market_url: String,
    /// The venue's user order WebSocket.
    #[serde(default = "default_ws_user_url")]
    pub ws_user_url: String,
    /// Bar length in seconds (Coinbase: 60, 300, 900, 1800, 3600, 7200, 21600 or 86400).
    #[serde(default = "default_granularity")]
    pub granularity_s: u32,
    /// Closed candles fetched at the start, so indicators are warm. Orders
    /// decided on them are never sent: they are history.
    #[serde(default = "default_history_bars")]
    pub history_bars: u32,
    /// How often the venue is asked for new candles, in seconds.
    #[serde(default = "default_poll")]
    pub poll_interval_s: f64,
    /// A request with no answer after this many seconds counts as timed out
    /// (an order request is then re-sent with the same client order id).
    #[serde(default = "default_timeout")]
    pub request_timeout_s: f64,
    /// An order decided on a bar older than this many bars behind the newest
    /// closed candle is not sent (a decision on stale data, say after an outage).
    #[serde(default = "default_max_bar_age")]
    pub max_bar_age: u32,
    /// How far, in the quote currency, the venue's balance may be from what
    /// the ledger expects before the session refuses to trade.
    #[serde(default = "default_tolerance", deserialize_with = "crate::config::exact_decimal")]
    pub balance_tolerance: Decimal,
    /// What a stop (SIGINT/SIGTERM) does with orders still working at the
    /// venue: `cancel` them, or `leave` them working.
    #[serde(default)]
    pub on_stop: OnStop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnStop {
    #[default]
    Cancel,
    Leave,
}

impl Default for LiveSection {
    fn default() -> Self {
        LiveSection {
            venue: default_venue(),
            key_file: None,
            key_env: None,
            rest_url: default_rest_url(),
            ws_market_url: default_ws_market_url(),
            ws_user_url: default_ws_user_url(),
            granularity_s: default_granularity(),
            history_bars: default_history_bars(),
            poll_interval_s: default_poll(),
            request_timeout_s: default_timeout(),
            max_bar_age: default_max_bar_age(),
            balance_tolerance: default_tolerance(),
            on_stop: OnStop::default(),
        }
    }
}

fn default_venue() -> String {
    "coinbase".into()
}
fn default_rest_url() -> String {
    "https://api.coinbase.com".into()
}
fn default_ws_market_url() -> String {
    "wss://advanced-trade-ws.coinbase.com".into()
}
fn default_ws_user_url() -> String {
    "wss://advanced-trade-ws-user.coinbase.com".into()
}
fn default_granularity() -> u32 {
    3600
}
fn default_history_bars() -> u32 {
    100
}
fn default_poll() -> f64 {
    5.0
}
fn default_timeout() -> f64 {
    10.0
}
fn default_max_bar_age() -> u32 {
    1
}
fn default_tolerance() -> Decimal {
    Decimal::new(1, 2)
}

/// Granularities Coinbase Advanced Trade serves candles at.
pub const GRANULARITIES: [u32; 8] = [60, 300, 900, 1800, 3600, 7200, 21600, 86400];

impl LiveSection {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.venue != "coinbase" {
            problems.push(format!(
                "live.venue: \"{}\" is not a venue this host trades on (only \"coinbase\")",
                excerpt(&self.venue)
            ));
        }
        if self.key_file.is_some() && self.key_env.is_some() {
            problems.push("live: give key-file or key-env, not both".into());
        }
        for (key, url, schemes) in [
            ("rest-url", &self.rest_url, ["http://", "https://"]),
            ("ws-market-url", &self.ws_market_url, ["ws://", "wss://"]),
            ("ws-user-url", &self.ws_user_url, ["ws://", "wss://"]),
        ] {
            if !schemes.iter().any(|s| url.starts_with(s)) {
                problems.push(format!(
                    "live.{key} must start with {} or {}, got \"{}\"",
                    schemes[0],
                    schemes[1],
                    excerpt(url)
                ));
            }
        }
        if !GRANULARITIES.contains(&self.granularity_s) {
            problems.push(format!(
                "live.granularity-s must be one of {GRANULARITIES:?} (what Coinbase serves), got {}",
                self.granularity_s
            ));
        }
        if self.history_bars > 10_000 {
            problems.push(format!("live.history-bars must be at most 10000, got {}", self.history_bars));
        }
        for (key, v) in
            [("poll-interval-s", self.poll_interval_s), ("request-timeout-s", self.request_timeout_s)]
        {
            if !(v.is_finite() && (0.01..=3600.0).contains(&v)) {
                problems.push(format!("live.{key} must be between 0.01 and 3600 seconds, got {v}"));
            }
        }
        if self.max_bar_age == 0 || self.max_bar_age > 1000 {
            problems
                .push(format!("live.max-bar-age must be between 1 and 1000 bars, got {}", self.max_bar_age));
        }
        if self.balance_tolerance < Decimal::ZERO || self.balance_tolerance > Decimal::from(1_000_000) {
            problems.push(format!(
                "live.balance-tolerance must be between 0 and 1000000, got {}",
                self.balance_tolerance
            ));
        }
        problems
    }
}
