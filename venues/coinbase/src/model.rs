//! Venue types and the parsing of Coinbase JSON into them.
//!
//! Every value is checked where it enters: parsing works on `serde_json::Value` by hand rather
//! than through derived `Deserialize`, so each failure names the endpoint and the field
//! (`GET /orders/historical/{id}: order.filled_size: "-1" is negative`) and no serde message
//! can echo a value into a log.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::rest::VenueError;

/// A tradable pair and the rules Coinbase applies to orders on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub base: String,
    pub quote: String,
    pub base_increment: Decimal,
    pub quote_increment: Decimal,
    pub base_min_size: Decimal,
    pub base_max_size: Decimal,
    pub quote_min_size: Decimal,
    pub quote_max_size: Decimal,
    pub trading_disabled: bool,
    pub post_only: bool,
    pub limit_only: bool,
    pub cancel_only: bool,
    /// Last traded price; absent or empty on some products.
    pub price: Option<Decimal>,
}

/// One OHLCV bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candle {
    /// Start of the bar, unix seconds.
    pub start: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

/// Candle sizes the REST candles endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    OneMinute,
    FiveMinute,
    FifteenMinute,
    ThirtyMinute,
    OneHour,
    TwoHour,
    SixHour,
    OneDay,
}

impl Granularity {
    pub const ALL: [Granularity; 8] = [
        Granularity::OneMinute,
        Granularity::FiveMinute,
        Granularity::FifteenMinute,
        Granularity::ThirtyMinute,
        Granularity::OneHour,
        Granularity::TwoHour,
        Granularity::SixHour,
        Granularity::OneDay,
    ];

    pub fn seconds(self) -> i64 {
        match self {
            Granularity::OneMinute => 60,
            Granularity::FiveMinute => 300,
            Granularity::FifteenMinute => 900,
            Granularity::ThirtyMinute => 1800,
            Granularity::OneHour => 3600,
            Granularity::TwoHour => 7200,
            Granularity::SixHour => 21600,
            Granularity::OneDay => 86400,
        }
    }

    pub fn from_seconds(seconds: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.seconds() == seconds)
    }

    /// The name the REST API takes in `granularity=`.
    pub fn as_api_str(self) -> &'static str {
        match self {
            Granularity::OneMinute => "ONE_MINUTE",
            Granularity::FiveMinute => "FIVE_MINUTE",
            Granularity::FifteenMinute => "FIFTEEN_MINUTE",
            Granularity::ThirtyMinute => "THIRTY_MINUTE",
            Granularity::OneHour => "ONE_HOUR",
            Granularity::TwoHour => "TWO_HOUR",
            Granularity::SixHour => "SIX_HOUR",
            Granularity::OneDay => "ONE_DAY",
        }
    }
}

/// Funds in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub currency: String,
    pub available: Decimal,
    pub hold: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_api_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_api_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKind {
    /// `market_market_ioc`.
    Market,
    /// `limit_limit_gtc`.
    Limit { price: Decimal, post_only: bool },
}

/// An order to submit. Sizes should already have been through [`crate::round_to_rules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Makes the submission idempotent: Coinbase answers a reused id with the existing order.
    pub client_order_id: String,
    pub product_id: String,
    pub side: Side,
    pub base_size: Decimal,
    pub kind: OrderKind,
}

/// What `POST /orders` answered. `Refused` means the venue did not create an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceOutcome {
    Placed { order_id: String },
    Refused { error: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Open,
    Filled,
    Cancelled,
    Expired,
    Failed,
    /// A status this client does not know; kept verbatim so nothing is lost.
    Unknown(String),
}

impl OrderStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" => OrderStatus::Pending,
            "OPEN" => OrderStatus::Open,
            "FILLED" => OrderStatus::Filled,
            "CANCELLED" => OrderStatus::Cancelled,
            "EXPIRED" => OrderStatus::Expired,
            "FAILED" => OrderStatus::Failed,
            other => OrderStatus::Unknown(other.to_string()),
        }
    }

    /// True once the order can change no more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Expired | OrderStatus::Failed
        )
    }
}

/// An order as the venue reports it over REST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueOrder {
    pub order_id: String,
    pub client_order_id: String,
    pub product_id: String,
    pub side: Side,
    pub status: OrderStatus,
    pub filled_size: Decimal,
    pub average_filled_price: Decimal,
    pub total_fees: Decimal,
    /// `reject_reason` or `cancel_message`, whichever is set; empty otherwise.
    pub reason: String,
}

/// One execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// Unique per fill; the key to deduplicate on.
    pub entry_id: String,
    pub trade_id: String,
    pub order_id: String,
    pub product_id: String,
    pub side: Side,
    pub price: Decimal,
    pub size: Decimal,
    pub commission: Decimal,
    /// RFC 3339, as the venue sent it.
    pub trade_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelResult {
    pub order_id: String,
    pub success: bool,
    pub failure_reason: String,
}

/// An order update from the `user` WebSocket channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueOrderUpdate {
    pub order_id: String,
    pub client_order_id: String,
    pub product_id: String,
    pub status: OrderStatus,
    pub cumulative_quantity: Decimal,
    pub leaves_quantity: Decimal,
    pub avg_price: Decimal,
    pub total_fees: Decimal,
}

// ---------------------------------------------------------------------------------------------
// Field access that names what is wrong.

/// Where a value came from, for error messages: endpoint plus the path inside the body.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub endpoint: &'a str,
    pub path: &'a str,
}

impl At<'_> {
    fn err(&self, field: &str, what: &str) -> VenueError {
        let sep = if self.path.is_empty() { "" } else { "." };
        VenueError::Malformed(format!("{}: {}{sep}{field}: {what}", self.endpoint, self.path))
    }

    pub fn field<'v>(&self, obj: &'v Value, field: &str) -> Result<&'v Value, VenueError> {
        match obj.get(field) {
            Some(Value::Null) | None => Err(self.err(field, "missing")),
            Some(v) => Ok(v),
        }
    }

    pub fn str<'v>(&self, obj: &'v Value, field: &str) -> Result<&'v str, VenueError> {
        self.field(obj, field)?.as_str().ok_or_else(|| self.err(field, "not a string"))
    }

    /// A string that may be absent (empty when so).
    pub fn opt_str<'v>(&self, obj: &'v Value, field: &str) -> Result<&'v str, VenueError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(""),
            Some(v) => v.as_str().ok_or_else(|| self.err(field, "not a string")),
        }
    }

    pub fn bool(&self, obj: &Value, field: &str) -> Result<bool, VenueError> {
        self.field(obj, field)?.as_bool().ok_or_else(|| self.err(field, "not a boolean"))
    }

    pub fn array<'v>(&self, obj: &'v Value, field: &str) -> Result<&'v Vec<Value>, VenueError> {
        self.field(obj, field)?.as_array().ok_or_else(|| self.err(field, "not an array"))
    }

    /// A decimal sent as a string (or, leniently, a JSON number), never negative.
    pub fn dec(&self, obj: &Value, field: &str) -> Result<Decimal, VenueError> {
        let v = self.field(obj, field)?;
        self.dec_value(v, field)
    }

    /// As [`At::dec`], but an absent or empty value reads as zero: Coinbase sends `""` for
    /// averages and fees of orders that have not traded.
    pub fn dec_or_zero(&self, obj: &Value, field: &str) -> Result<Decimal, VenueError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(Decimal::ZERO),
            Some(Value::String(s)) if s.is_empty() => Ok(Decimal::ZERO),
            Some(v) => self.dec_value(v, field),
        }
    }

    /// A decimal that may be absent or empty.
    pub fn opt_dec(&self, obj: &Value, field: &str) -> Result<Option<Decimal>, VenueError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(v) => self.dec_value(v, field).map(Some),
        }
    }

    fn dec_value(&self, v: &Value, field: &str) -> Result<Decimal, VenueError> {
        let d = match v {
            Value::String(s) => parse_decimal(s),
            Value::Number(n) => parse_decimal(&n.to_string()),
            _ => None,
        }
        .ok_or_else(|| self.err(field, &format!("{} is not a decimal", short(v))))?;
        if d.is_sign_negative() && !d.is_zero() {
            return Err(self.err(field, &format!("{d} is negative")));
        }
        Ok(d)
    }

    /// Unix seconds sent as a string or a number.
    pub fn unix(&self, obj: &Value, field: &str) -> Result<i64, VenueError> {
        let v = self.field(obj, field)?;
        let n = match v {
            Value::String(s) => s.trim().parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        match n {
            Some(n) if n >= 0 => Ok(n),
            _ => Err(self.err(field, &format!("{} is not unix seconds", short(v)))),
        }
    }

    pub fn side(&self, obj: &Value, field: &str) -> Result<Side, VenueError> {
        match self.str(obj, field)? {
            "BUY" => Ok(Side::Buy),
            "SELL" => Ok(Side::Sell),
            other => Err(self.err(field, &format!("{:?} is not BUY or SELL", clip(other)))),
        }
    }
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    Decimal::from_str(s).or_else(|_| Decimal::from_scientific(s)).ok()
}

/// A value quoted for an error message, cut short so a hostile body cannot flood the log.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", clip(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        other => clip(&other.to_string()).to_string(),
    }
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers, one per response shape. `endpoint` names the request in errors.

pub(crate) fn parse_product(endpoint: &str, body: &Value) -> Result<Product, VenueError> {
    let at = At { endpoint, path: "" };
    Ok(Product {
        id: at.str(body, "product_id")?.to_string(),
        base: at.str(body, "base_currency_id")?.to_string(),
        quote: at.str(body, "quote_currency_id")?.to_string(),
        base_increment: at.dec(body, "base_increment")?,
        quote_increment: at.dec(body, "quote_increment")?,
        base_min_size: at.dec(body, "base_min_size")?,
        base_max_size: at.dec(body, "base_max_size")?,
        quote_min_size: at.dec(body, "quote_min_size")?,
        quote_max_size: at.dec(body, "quote_max_size")?,
        trading_disabled: at.bool(body, "trading_disabled")?,
        post_only: opt_bool(&at, body, "post_only")?,
        limit_only: opt_bool(&at, body, "limit_only")?,
        cancel_only: opt_bool(&at, body, "cancel_only")?,
        price: at.opt_dec(body, "price")?,
    })
}

fn opt_bool(at: &At<'_>, obj: &Value, field: &str) -> Result<bool, VenueError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(_) => at.bool(obj, field),
    }
}

pub(crate) fn parse_candle(at: &At<'_>, c: &Value) -> Result<Candle, VenueError> {
    let candle = Candle {
        start: at.unix(c, "start")?,
        open: at.dec(c, "open")?,
        high: at.dec(c, "high")?,
        low: at.dec(c, "low")?,
        close: at.dec(c, "close")?,
        volume: at.dec(c, "volume")?,
    };
    if candle.low > candle.high {
        return Err(VenueError::Malformed(format!(
            "{}: {}: low {} is above high {}",
            at.endpoint, at.path, candle.low, candle.high
        )));
    }
    Ok(candle)
}

/// Candles from one REST page, in the order the venue sent them (newest first).
pub(crate) fn parse_candles(endpoint: &str, body: &Value) -> Result<Vec<Candle>, VenueError> {
    let top = At { endpoint, path: "" };
    let list = top.array(body, "candles")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let path = format!("candles[{i}]");
        out.push(parse_candle(&At { endpoint, path: &path }, c)?);
    }
    Ok(out)
}

/// One page of accounts, with the cursor for the next one (`None` when this was the last).
pub(crate) fn parse_accounts(
    endpoint: &str,
    body: &Value,
) -> Result<(Vec<Balance>, Option<String>), VenueError> {
    let top = At { endpoint, path: "" };
    let list = top.array(body, "accounts")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let path = format!("accounts[{i}]");
        let at = At { endpoint, path: &path };
        let available = at.field(a, "available_balance")?;
        let hold = at.field(a, "hold")?;
        let avail_path = format!("{path}.available_balance");
        let hold_path = format!("{path}.hold");
        out.push(Balance {
            currency: at.str(a, "currency")?.to_string(),
            available: At { endpoint, path: &avail_path }.dec(available, "value")?,
            hold: At { endpoint, path: &hold_path }.dec(hold, "value")?,
        });
    }
    Ok((out, next_cursor(&top, body)?))
}

/// `has_next` decides when present; otherwise a non-empty cursor means another page.
fn next_cursor(at: &At<'_>, body: &Value) -> Result<Option<String>, VenueError> {
    let cursor = at.opt_str(body, "cursor")?;
    let has_next = match body.get("has_next") {
        None | Some(Value::Null) => !cursor.is_empty(),
        Some(_) => at.bool(body, "has_next")?,
    };
    Ok((has_next && !cursor.is_empty()).then(|| cursor.to_string()))
}

pub(crate) fn parse_create_order(endpoint: &str, body: &Value) -> Result<PlaceOutcome, VenueError> {
    let at = At { endpoint, path: "" };
    if at.bool(body, "success")? {
        let ok = at.field(body, "success_response")?;
        let id = At { endpoint, path: "success_response" }.str(ok, "order_id")?;
        if id.is_empty() {
            return Err(VenueError::Malformed(format!("{endpoint}: success_response.order_id: empty")));
        }
        Ok(PlaceOutcome::Placed { order_id: id.to_string() })
    } else {
        let failure = at.opt_str(body, "failure_reason")?;
        let (error, message) = match body.get("error_response") {
            Some(e @ Value::Object(_)) => {
                let at = At { endpoint, path: "error_response" };
                (at.opt_str(e, "error")?, at.opt_str(e, "message")?)
            }
            _ => ("", ""),
        };
        let error = if error.is_empty() { failure } else { error };
        Ok(PlaceOutcome::Refused {
            error: if error.is_empty() { "UNKNOWN".into() } else { error.to_string() },
            message: message.to_string(),
        })
    }
}

pub(crate) fn parse_cancel(endpoint: &str, body: &Value) -> Result<Vec<CancelResult>, VenueError> {
    let top = At { endpoint, path: "" };
    let list = top.array(body, "results")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let path = format!("results[{i}]");
        let at = At { endpoint, path: &path };
        out.push(CancelResult {
            order_id: at.str(r, "order_id")?.to_string(),
            success: at.bool(r, "success")?,
            failure_reason: at.opt_str(r, "failure_reason")?.to_string(),
        });
    }
    Ok(out)
}

pub(crate) fn parse_order(at: &At<'_>, o: &Value) -> Result<VenueOrder, VenueError> {
    let reject = at.opt_str(o, "reject_reason")?;
    let cancel = at.opt_str(o, "cancel_message")?;
    Ok(VenueOrder {
        order_id: at.str(o, "order_id")?.to_string(),
        client_order_id: at.opt_str(o, "client_order_id")?.to_string(),
        product_id: at.str(o, "product_id")?.to_string(),
        side: at.side(o, "side")?,
        status: OrderStatus::parse(at.str(o, "status")?),
        filled_size: at.dec_or_zero(o, "filled_size")?,
        average_filled_price: at.dec_or_zero(o, "average_filled_price")?,
        total_fees: at.dec_or_zero(o, "total_fees")?,
        // Coinbase fills these with enum names meaning "none" (e.g. REJECT_REASON_UNSPECIFIED).
        reason: [reject, cancel]
            .into_iter()
            .find(|r| !r.is_empty() && !r.ends_with("_UNSPECIFIED"))
            .unwrap_or("")
            .to_string(),
    })
}

pub(crate) fn parse_one_order(endpoint: &str, body: &Value) -> Result<VenueOrder, VenueError> {
    let o = At { endpoint, path: "" }.field(body, "order")?;
    parse_order(&At { endpoint, path: "order" }, o)
}

pub(crate) fn parse_orders(
    endpoint: &str,
    body: &Value,
) -> Result<(Vec<VenueOrder>, Option<String>), VenueError> {
    let top = At { endpoint, path: "" };
    let list = top.array(body, "orders")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, o) in list.iter().enumerate() {
        let path = format!("orders[{i}]");
        out.push(parse_order(&At { endpoint, path: &path }, o)?);
    }
    Ok((out, next_cursor(&top, body)?))
}

pub(crate) fn parse_fills(endpoint: &str, body: &Value) -> Result<(Vec<Fill>, Option<String>), VenueError> {
    let top = At { endpoint, path: "" };
    let list = top.array(body, "fills")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        let path = format!("fills[{i}]");
        let at = At { endpoint, path: &path };
        out.push(Fill {
            entry_id: at.str(f, "entry_id")?.to_string(),
            trade_id: at.str(f, "trade_id")?.to_string(),
            order_id: at.str(f, "order_id")?.to_string(),
            product_id: at.str(f, "product_id")?.to_string(),
            side: at.side(f, "side")?,
            price: at.dec(f, "price")?,
            size: at.dec(f, "size")?,
            commission: at.dec_or_zero(f, "commission")?,
            trade_time: at.str(f, "trade_time")?.to_string(),
        });
    }
    Ok((out, next_cursor(&top, body)?))
}

pub(crate) fn parse_order_update(at: &At<'_>, o: &Value) -> Result<VenueOrderUpdate, VenueError> {
    Ok(VenueOrderUpdate {
        order_id: at.str(o, "order_id")?.to_string(),
        client_order_id: at.opt_str(o, "client_order_id")?.to_string(),
        product_id: at.str(o, "product_id")?.to_string(),
        status: OrderStatus::parse(at.str(o, "status")?),
        cumulative_quantity: at.dec_or_zero(o, "cumulative_quantity")?,
        leaves_quantity: at.dec_or_zero(o, "leaves_quantity")?,
        avg_price: at.dec_or_zero(o, "avg_price")?,
        total_fees: at.dec_or_zero(o, "total_fees")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn product_json() -> Value {
        json!({"product_id":"BTC-USD","price":"50000.5","base_increment":"0.00000001",
            "quote_increment":"0.01","base_min_size":"0.00000001","base_max_size":"3400",
            "quote_min_size":"1","quote_max_size":"150000000","status":"online",
            "trading_disabled":false,"post_only":false,"limit_only":false,"cancel_only":false,
            "base_currency_id":"BTC","quote_currency_id":"USD"})
    }

    fn malformed(r: Result<impl std::fmt::Debug, VenueError>) -> String {
        match r {
            Err(VenueError::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn product_parses_the_contract_sample() {
        let p = parse_product("GET /products/BTC-USD", &product_json()).unwrap();
        assert_eq!((p.base.as_str(), p.quote.as_str()), ("BTC", "USD"));
        assert_eq!(p.quote_increment, Decimal::new(1, 2));
        assert_eq!(p.price, Some(Decimal::new(500005, 1)));
    }

    #[test]
    fn hostile_products_name_endpoint_and_field() {
        // (mutation, text the error must contain)
        let cases: Vec<(&str, Value, &str)> = vec![
            ("base_increment", Value::Null, "base_increment: missing"),
            ("base_min_size", json!("-1"), "base_min_size: -1 is negative"),
            ("quote_increment", json!("abc"), "quote_increment: \"abc\" is not a decimal"),
            ("quote_max_size", json!({"x": 1}), "an object is not a decimal"),
            ("trading_disabled", json!("no"), "trading_disabled: not a boolean"),
            ("product_id", json!(7), "product_id: not a string"),
            ("price", json!("1e400"), "price"),
            ("base_max_size", json!("9".repeat(100)), "base_max_size"),
        ];
        for (field, value, expect) in cases {
            let mut body = product_json();
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value;
            }
            let m = malformed(parse_product("GET /products/BTC-USD", &body));
            assert!(m.starts_with("GET /products/BTC-USD: "), "{m}");
            assert!(m.contains(expect), "{m:?} should contain {expect:?}");
        }
        // Not even an object.
        let m = malformed(parse_product("GET /products/X", &json!([1, 2])));
        assert!(m.contains("product_id: missing"), "{m}");
    }

    #[test]
    fn candles_check_every_value() {
        let ok =
            json!({"candles":[{"start":"300","low":"1","high":"3","open":"2","close":"2","volume":"0"}]});
        assert_eq!(parse_candles("c", &ok).unwrap()[0].start, 300);
        let cases = [
            (
                json!({"candles":[{"start":"x","low":"1","high":"3","open":"2","close":"2","volume":"1"}]}),
                "candles[0].start",
            ),
            (
                json!({"candles":[{"start":"-5","low":"1","high":"3","open":"2","close":"2","volume":"1"}]}),
                "not unix seconds",
            ),
            (
                json!({"candles":[{"start":"1","low":"4","high":"3","open":"2","close":"2","volume":"1"}]}),
                "low 4 is above high 3",
            ),
            (
                json!({"candles":[{"start":"1","low":"1","high":"3","open":"2","close":"2"}]}),
                "volume: missing",
            ),
            (json!({"candles":{}}), "candles: not an array"),
            (json!({}), "candles: missing"),
        ];
        for (body, expect) in cases {
            let m = malformed(parse_candles("GET /products/BTC-USD/candles", &body));
            assert!(m.contains(expect), "{m:?} should contain {expect:?}");
        }
    }

    #[test]
    fn accounts_and_cursors() {
        let body = json!({"accounts":[{"uuid":"u","currency":"USD",
            "available_balance":{"value":"10.5","currency":"USD"},"hold":{"value":"1","currency":"USD"}}],
            "has_next":true,"cursor":"abc","size":1});
        let (b, next) = parse_accounts("a", &body).unwrap();
        assert_eq!(b[0].available, Decimal::new(105, 1));
        assert_eq!(next.as_deref(), Some("abc"));
        // has_next false wins over a leftover cursor.
        let mut last = body.clone();
        last["has_next"] = json!(false);
        assert_eq!(parse_accounts("a", &last).unwrap().1, None);
        let mut neg = body.clone();
        neg["accounts"][0]["hold"]["value"] = json!("-0.1");
        let m = malformed(parse_accounts("GET /accounts", &neg));
        assert!(m.contains("accounts[0].hold.value: -0.1 is negative"), "{m}");
    }

    #[test]
    fn create_order_outcomes() {
        let placed = json!({"success":true,"success_response":{"order_id":"o-1","product_id":"BTC-USD","side":"BUY","client_order_id":"c"}});
        assert_eq!(
            parse_create_order("p", &placed).unwrap(),
            PlaceOutcome::Placed { order_id: "o-1".into() }
        );
        let refused = json!({"success":false,"failure_reason":"UNKNOWN_FAILURE_REASON","error_response":{"error":"INSUFFICIENT_FUND","message":"Insufficient balance in source account","error_details":"","preview_failure_reason":"PREVIEW_INSUFFICIENT_FUND"}});
        assert_eq!(
            parse_create_order("p", &refused).unwrap(),
            PlaceOutcome::Refused {
                error: "INSUFFICIENT_FUND".into(),
                message: "Insufficient balance in source account".into()
            }
        );
        let m = malformed(parse_create_order("POST /orders", &json!({"success":true})));
        assert!(m.contains("success_response: missing"), "{m}");
        let m = malformed(parse_create_order(
            "POST /orders",
            &json!({"success":true,"success_response":{"order_id":""}}),
        ));
        assert!(m.contains("order_id: empty"), "{m}");
    }

    #[test]
    fn orders_fills_and_cancels() {
        let order = json!({"order":{"order_id":"o","product_id":"BTC-USD","side":"BUY",
            "client_order_id":"c","status":"CANCELLED","filled_size":"0",
            "average_filled_price":"","total_fees":"0","created_time":"2026-01-01T00:00:00Z",
            "reject_reason":"REJECT_REASON_UNSPECIFIED","cancel_message":"User requested cancel"}});
        let o = parse_one_order("g", &order).unwrap();
        assert_eq!(o.status, OrderStatus::Cancelled);
        assert_eq!(o.average_filled_price, Decimal::ZERO);
        assert_eq!(o.reason, "User requested cancel");
        let mut odd = order.clone();
        odd["order"]["status"] = json!("QUEUED");
        odd["order"]["side"] = json!("BUY");
        assert_eq!(parse_one_order("g", &odd).unwrap().status, OrderStatus::Unknown("QUEUED".into()));
        odd["order"]["side"] = json!("SIDEWAYS");
        let m = malformed(parse_one_order("GET /orders/historical/o", &odd));
        assert!(m.contains("order.side: \"SIDEWAYS\" is not BUY or SELL"), "{m}");

        let fills = json!({"fills":[{"entry_id":"e","trade_id":"t","order_id":"o",
            "trade_time":"2026-01-01T00:00:00Z","trade_type":"FILL","price":"100","size":"0.5",
            "commission":"0.01","product_id":"BTC-USD","sequence_timestamp":"2026-01-01T00:00:00Z",
            "liquidity_indicator":"TAKER","size_in_quote":false,"side":"SELL"}],"cursor":""});
        let (f, next) = parse_fills("f", &fills).unwrap();
        assert_eq!((f[0].side, f[0].size), (Side::Sell, Decimal::new(5, 1)));
        assert_eq!(next, None, "empty cursor ends the listing");
        let mut neg = fills.clone();
        neg["fills"][0]["size"] = json!("-0.5");
        assert!(malformed(parse_fills("f", &neg)).contains("fills[0].size"));

        let cancels = json!({"results":[{"success":true,"failure_reason":"UNKNOWN_CANCEL_FAILURE_REASON","order_id":"a"},
            {"success":false,"failure_reason":"UNKNOWN_CANCEL_ORDER","order_id":"b"}]});
        let r = parse_cancel("c", &cancels).unwrap();
        assert!(r[0].success && !r[1].success);
        assert_eq!(r[1].failure_reason, "UNKNOWN_CANCEL_ORDER");
        assert!(
            malformed(parse_cancel("c", &json!({"results":[{"order_id":"a"}]})))
                .contains("results[0].success: missing")
        );
    }

    #[test]
    fn granularity_round_trips() {
        for g in Granularity::ALL {
            assert_eq!(Granularity::from_seconds(g.seconds()), Some(g));
        }
        assert_eq!(Granularity::from_seconds(61), None);
        assert_eq!(Granularity::FiveMinute.as_api_str(), "FIVE_MINUTE");
    }

    #[test]
    fn long_values_are_clipped_in_errors() {
        let body = json!({"candles":[{"start":"1","low":"x".repeat(10_000),"high":"3","open":"2","close":"2","volume":"1"}]});
        let m = malformed(parse_candles("c", &body));
        assert!(m.len() < 200, "{} chars", m.len());
    }
}
