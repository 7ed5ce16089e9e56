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

/// The supported range of every price the host handles (bars, limit and
/// stop prices, fills), inclusive. Both ends are chosen so that money cannot
/// overflow `Decimal` (about 7.9e28) and every price in range is exact:
/// - from 1e-12: any `f64` at or above it has a shortest decimal of at most
///   17 significant digits, so at most 28 fractional digits, which `Decimal`
///   holds exactly (1e-12 is far below any traded asset's price);
/// - to 1e12: with quantities up to [`MAX_QUANTITY`] a position or order is
///   worth at most 1e27, leaving a factor of 79 for cash, fees and the sum
///   of several positions before `Decimal` could overflow.
pub const MIN_PRICE: f64 = 1e-12;
/// See [`MIN_PRICE`].
pub const MAX_PRICE: f64 = 1e12;

/// The largest quantity an order, a fill or a position may have: 1e15, so
/// that quantity x [`MAX_PRICE`] is at most 1e27 (see [`MIN_PRICE`]). A
/// million dollars of a token priced at 1e-9 is 1e15 units.
pub const MAX_QUANTITY: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

/// The largest starting cash a run may have: 1e15 in the quote currency,
/// so that equity, cash and every amount derived from them stay far inside
/// what `Decimal` holds.
pub const MAX_START_CASH: Decimal = MAX_QUANTITY;

/// A price from outside (a bar, a signal) as the exact decimal the ledger
/// uses, if it is a finite price inside the supported range
/// ([`MIN_PRICE`], [`MAX_PRICE`]); else why not, naming `field`.
pub fn checked_price(field: &str, price: f64) -> Result<Decimal, String> {
    check_price_range(field, price)?;
    price_to_decimal(price).ok_or_else(|| format!("`{field}` is {price:e}, which has no exact decimal"))
}

/// The range check of [`checked_price`] alone, for the four prices of every
/// bar: inside [`MIN_PRICE`], [`MAX_PRICE`] a price's shortest decimal has
/// at most 17 digits and a scale of at most 28, so it always converts, and
/// the conversion is left to the bars a position is marked on.
#[inline]
pub fn check_price_range(field: &str, price: f64) -> Result<(), String> {
    if (MIN_PRICE..=MAX_PRICE).contains(&price) {
        return Ok(());
    }
    if !price.is_finite() || price <= 0.0 {
        return Err(format!("`{field}` is {price}, not a positive finite price"));
    }
    Err(format!("`{field}` is {price:e}, outside the supported price range [{MIN_PRICE:e}, {MAX_PRICE:e}]"))
}

/// True when `d` is a price inside the supported range (a fill's price).
pub fn price_in_range(d: Decimal) -> bool {
    let (min, max) = price_range();
    min <= d && d <= max
}

/// [`MIN_PRICE`] and [`MAX_PRICE`] as decimals.
pub fn price_range() -> (Decimal, Decimal) {
    (Decimal::new(1, 12), Decimal::from(1_000_000_000_000_i64))
}

/// The exact decimal a wire price stands for: the shortest decimal that
/// converts back to the same `f64`, the rule documented on `decimal` in
/// `wit/types.wit` (and implemented identically in `plugin-sdk`), normalized
/// (no trailing zeros). Called for every bar a position is marked on, so it
/// builds the decimal from Ryu's shortest digits directly.
pub fn price_to_decimal(price: f64) -> Option<Decimal> {
    if !price.is_finite() {
        return None;
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(price).as_bytes();
    // Ryu writes `-?digits[.digits][e-?digits]`.
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (digits, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (&text[..e], std::str::from_utf8(&text[e + 1..]).ok()?.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut after_point = false;
    for &b in digits {
        if b == b'.' {
            after_point = true;
            continue;
        }
        mantissa = mantissa * 10 + i128::from(b - b'0');
        fraction_digits += i32::from(after_point);
    }
    let mut scale = fraction_digits - exponent;
    while scale < 0 {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    if scale > 28 {
        return None;
    }
    let mantissa = if negative { -mantissa } else { mantissa };
    Decimal::try_from_i128_with_scale(mantissa, scale as u32).ok().map(|d| d.normalize())
}

/// The `f64` a decimal price names (the nearest one): the inverse of
/// [`price_to_decimal`] for any decimal that rule or another shortest-digits
/// rule gives.
pub fn decimal_to_price(d: Decimal) -> f64 {
    // Through text: parsing is correctly rounded; `Decimal::to_f64` is not always.
    d.to_string().parse().unwrap_or(f64::NAN)
}

/// Appends `d` as `Decimal`'s `Display` writes it once normalized (`12.5`,
/// `-0.001`, `10000`), without going through `core::fmt`: the run loop writes
/// a decimal or two for every bar.
pub fn push_decimal(out: &mut String, d: Decimal) {
    let d = d.normalize();
    let mantissa = d.mantissa();
    if mantissa == 0 {
        out.push('0');
        return;
    }
    if mantissa < 0 {
        out.push('-');
    }
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(mantissa.unsigned_abs());
    let scale = d.scale() as usize;
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The literal is the f64's exact binary value, written out in full on purpose.
    #[allow(clippy::excessive_precision)]
    fn a_decimal_names_the_price_it_came_from() {
        // Exactly halfway: ...062 (Ryu's pick) and ...063 (core::fmt's) name
        // the same f64.
        let halfway = 243.694000244140625_f64;
        assert_eq!(price_to_decimal(halfway).unwrap().to_string(), "243.69400024414062");
        for text in ["243.69400024414062", "243.69400024414063", "243.694000244140625"] {
            assert_eq!(decimal_to_price(text.parse().unwrap()).to_bits(), halfway.to_bits(), "{text}");
        }
        assert_ne!(decimal_to_price("243.6940002441407".parse().unwrap()), halfway);
    }

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

    /// The previous definition: format the shortest digits with `{}` and parse them.
    fn by_formatting(price: f64) -> Decimal {
        format!("{price}").parse::<Decimal>().unwrap().normalize()
    }

    fn pseudo_random() -> impl Iterator<Item = u64> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        std::iter::from_fn(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(x)
        })
    }

    #[test]
    fn price_to_decimal_agrees_with_formatting_everywhere() {
        for (i, x) in pseudo_random().take(300_000).enumerate() {
            // Prices as data files have them, and raw doubles of every magnitude.
            let price = match i % 3 {
                0 => (x % 100_000_000) as f64 / 100.0,
                1 => (x % 1_000_000_000_000) as f64 / 1e9 + 0.5,
                _ => f64::from_bits(x >> 2).abs() % 1e12,
            };
            if price == 0.0 || price < 1e-12 {
                continue;
            }
            let want = by_formatting(price);
            let got = price_to_decimal(price).unwrap();
            assert_eq!((got, got.scale()), (want, want.scale()), "{price:e}");
        }
    }

    #[test]
    fn push_decimal_writes_what_display_writes() {
        let mut line = String::new();
        let cases = [
            "0",
            "-0.001",
            "10000",
            "12.5000",
            "0.0000001",
            "-123456789.123456789",
            "79228162514264337593543950335",
        ];
        for text in cases {
            let d: Decimal = text.parse().unwrap();
            line.clear();
            push_decimal(&mut line, d);
            assert_eq!(line, d.normalize().to_string(), "{text}");
        }
        for x in pseudo_random().take(100_000) {
            let d = Decimal::from_i128_with_scale((x as i128) - (1 << 62), (x % 20) as u32);
            line.clear();
            push_decimal(&mut line, d);
            assert_eq!(line, d.normalize().to_string());
        }
    }

    #[test]
    fn the_supported_ranges_are_what_their_comments_say() {
        assert_eq!(MAX_QUANTITY, Decimal::from(1_000_000_000_000_000_i64));
        assert_eq!(
            price_range(),
            (price_to_decimal(MIN_PRICE).unwrap(), price_to_decimal(MAX_PRICE).unwrap())
        );
        // The largest position value leaves a factor of 79 to Decimal::MAX.
        let largest = MAX_QUANTITY.checked_mul(price_range().1).unwrap();
        assert!(largest.checked_mul(Decimal::from(79)).is_some());
        // Every f64 in range converts exactly, down to 17 significant digits at the bottom.
        let just_above_min = f64::from_bits(MIN_PRICE.to_bits() + 12_345);
        let just_below_max = f64::from_bits(MAX_PRICE.to_bits() - 1);
        for price in [MIN_PRICE, just_above_min, MAX_PRICE, just_below_max] {
            let d = checked_price("close", price).unwrap();
            assert_eq!(decimal_to_price(d).to_bits(), price.to_bits(), "{price:e}");
        }
        for price in [f64::NAN, f64::INFINITY, 0.0, -1.0, 5e-324, 9.9e-13, MAX_PRICE * 1.001, 1e300] {
            assert!(checked_price("close", price).is_err(), "{price:e}");
            assert!(check_price_range("close", price).is_err(), "{price:e}");
        }
    }

    #[test]
    fn symbols_cannot_escape_a_directory() {
        assert!(Symbol::new("BTC-USD").is_ok());
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "BTC USD"] {
            assert!(Symbol::new(bad).is_err(), "{bad}");
        }
    }
}
