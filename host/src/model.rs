//! The host's domain types. The runtime converts wire records into these, so
//! the orchestrator, ledger and reports never see generated binding types.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;

pub use crate::time::Timestamp;

/// One OHLCV bar. Prices are floats as on the wire; the ledger converts them
/// to exact decimals where money moves ([`price_to_decimal`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub ts: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A validated symbol name such as `BTC-USD`. It becomes a file name in data
/// directories, so only letters, digits, `-`, `_` and `.` are allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Symbol(Arc<str>);

impl Symbol {
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Symbol(name.into()))
        } else {
            Err(format!(
                "`{name}` is not a valid symbol (use letters, digits, `-`, `_` and `.`, for example BTC-USD)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The six kinds of slice, in chain order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SliceKind {
    Data,
    Analysis,
    Regime,
    Strategy,
    Sizing,
    Execution,
}

impl SliceKind {
    pub const ALL: [SliceKind; 6] = [
        SliceKind::Data,
        SliceKind::Analysis,
        SliceKind::Regime,
        SliceKind::Strategy,
        SliceKind::Sizing,
        SliceKind::Execution,
    ];

    /// The name used in WIT (`strata:plugin/<name>`), in config (`[slices.<name>]`) and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SliceKind::Data => "data",
            SliceKind::Analysis => "analysis",
            SliceKind::Regime => "regime",
            SliceKind::Strategy => "strategy",
            SliceKind::Sizing => "sizing",
            SliceKind::Execution => "execution",
        }
    }

    pub fn from_name(name: &str) -> Option<SliceKind> {
        SliceKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for SliceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    Unknown,
    TrendingUp,
    TrendingDown,
    Ranging,
    Volatile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    EnterLong,
    ExitLong,
    EnterShort,
    ExitShort,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::EnterLong => "enter-long",
            Action::ExitLong => "exit-long",
            Action::EnterShort => "enter-short",
            Action::ExitShort => "exit-short",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderType {
    Market,
    Limit,
    Stop,
    StopLimit,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
            OrderType::Stop => "stop",
            OrderType::StopLimit => "stop-limit",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeInForce {
    Gtc,
    Day,
    Ioc,
}

impl TimeInForce {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Day => "day",
            TimeInForce::Ioc => "ioc",
        }
    }
}

/// A strategy's decision on one bar of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signal {
    pub bar_index: u32,
    pub action: Action,
    pub order_type: OrderType,
    pub limit_price: Option<f64>,
    pub stop_price: Option<f64>,
    pub time_in_force: TimeInForce,
}

/// Orders are numbered from 1 in the order the host creates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrderId(pub u64);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An order the risk gate approved (a `SubmitOrder` command to the execution slice).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub quantity: Decimal,
    pub order_type: OrderType,
    pub limit_price: Option<Decimal>,
    pub stop_price: Option<Decimal>,
    pub time_in_force: TimeInForce,
    pub created_at: Timestamp,
}

/// An execution reported by the execution slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub order_id: OrderId,
    pub ts: Timestamp,
    pub price: Decimal,
    pub quantity: Decimal,
    pub fee: Decimal,
}

/// What the execution slice says happened to an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    Filled(Fill),
    Cancelled { order_id: OrderId, reason: String },
    Rejected { order_id: OrderId, reason: String },
}

/// What the sizing slice is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct SizingRequest {
    pub symbol: Symbol,
    pub action: Action,
    pub ts: Timestamp,
    pub price: Decimal,
    pub equity: Decimal,
    pub cash: Decimal,
    pub position: Decimal,
}

/// Where a data slice's bars come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceInfo {
    pub description: String,
    pub synthetic: bool,
}

/// A configuration value as slices see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl ConfigValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            ConfigValue::Bool(_) => "a boolean",
            ConfigValue::Int(_) => "an integer",
            ConfigValue::Float(_) => "a number",
            ConfigValue::Text(_) => "a string",
        }
    }
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Bool(v) => v.fmt(f),
            ConfigValue::Int(v) => v.fmt(f),
            ConfigValue::Float(v) => write!(f, "{v:?}"),
            ConfigValue::Text(v) => write!(f, "{v:?}"),
        }
    }
}

/// A configuration key a slice declares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigParam {
    pub key: String,
    pub description: String,
    pub default: ConfigValue,
}

/// What a component says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: SliceKind,
    pub interface_version: String,
    pub description: String,
    pub params: Vec<ConfigParam>,
}

impl PluginInfo {
    /// `sma 0.1.0`: how messages name a plugin.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// The exact decimal a wire price stands for: the shortest decimal that
/// converts back to the same `f64`, the rule documented on `decimal` in
/// `wit/types.wit` (and implemented identically in `plugin-sdk`).
pub fn price_to_decimal(price: f64) -> Option<Decimal> {
    use std::io::Write as _;
    if !price.is_finite() {
        return None;
    }
    // Formatting into a stack buffer keeps the per-bar marking allocation-free.
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{price}").ok()?;
    let len = cursor.position() as usize;
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    text.parse::<Decimal>().ok().or_else(|| Decimal::from_scientific(&format!("{price:e}")).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_to_decimal_is_shortest_round_trip() {
        let cases = [
            (101.5, "101.5"),
            (0.1, "0.1"),
            (456.8599853515625, "456.8599853515625"),
            (1e-7, "0.0000001"),
            (43_000.0, "43000"),
        ];
        for (price, want) in cases {
            assert_eq!(price_to_decimal(price).unwrap().to_string(), want, "{price}");
        }
        assert_eq!(price_to_decimal(f64::NAN), None);
    }

    #[test]
    fn symbols_cannot_escape_a_directory() {
        assert!(Symbol::new("BTC-USD").is_ok());
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "BTC USD"] {
            assert!(Symbol::new(bad).is_err(), "{bad}");
        }
    }
}
