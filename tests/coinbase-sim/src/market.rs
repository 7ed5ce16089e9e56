//! The account and the matching engine: candles drive sim time, orders fill against the bar
//! that closes. All money is `rust_decimal` so balances reconcile exactly with the client's.
//!
//! Sim time is the start of the *forming* candle of the first product loaded; every product
//! closes its candle with that start when the sim advances (a product with a gap in its data
//! simply has no bar that step).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use crate::clock;

/// Trading rules, the same for every product (the simulator does not model per-product rules).
pub mod rules {
    use rust_decimal::Decimal;
    pub const BASE_INCREMENT: Decimal = Decimal::from_parts(1, 0, 0, false, 8);
    pub const QUOTE_INCREMENT: Decimal = Decimal::from_parts(1, 0, 0, false, 2);
    pub const BASE_MIN_SIZE: Decimal = Decimal::from_parts(1, 0, 0, false, 8);
    pub const BASE_MAX_SIZE: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);
    pub const QUOTE_MIN_SIZE: Decimal = Decimal::ONE;
    pub const QUOTE_MAX_SIZE: Decimal = Decimal::from_parts(100_000_000, 0, 0, false, 0);
}

#[derive(Clone, Debug, PartialEq)]
pub struct Candle {
    pub start: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

#[derive(Debug)]
pub struct Series {
    pub candles: Vec<Candle>,
    /// Seconds between the first two rows.
    pub granularity: i64,
}

fn dec(s: &str) -> Option<Decimal> {
    let s = s.trim();
    Decimal::from_str(s).or_else(|_| Decimal::from_scientific(s)).ok()
}

impl Series {
    /// Parses `timestamp,open,high,low,close,volume` with RFC3339 UTC timestamps.
    pub fn from_csv(text: &str) -> Result<Series, String> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
        if header != "timestamp,open,high,low,close,volume" {
            return Err(format!("unexpected CSV header {header:?}"));
        }
        let mut candles: Vec<Candle> = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let bad = || format!("line {}: expected timestamp,open,high,low,close,volume", i + 1);
            if f.len() != 6 {
                return Err(bad());
            }
            let start = clock::parse(f[0]).ok_or_else(bad)?.0;
            let n: Vec<Decimal> = f[1..].iter().map(|x| dec(x)).collect::<Option<_>>().ok_or_else(bad)?;
            if let Some(prev) = candles.last()
                && prev.start >= start
            {
                return Err(format!("line {}: timestamps must increase", i + 1));
            }
            candles.push(Candle { start, open: n[0], high: n[1], low: n[2], close: n[3], volume: n[4] });
        }
        if candles.len() < 2 {
            return Err("need at least two candles to know the granularity".into());
        }
        let granularity = candles[1].start - candles[0].start;
        Ok(Series { candles, granularity })
    }

    fn at(&self, start: i64) -> Option<&Candle> {
        self.candles.binary_search_by_key(&start, |c| c.start).ok().map(|i| &self.candles[i])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    Filled,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::Filled => "FILLED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OrderKind {
    Market,
    Limit { price: Decimal, post_only: bool },
}

#[derive(Clone, Debug)]
pub struct Order {
    pub order_id: String,
    pub client_order_id: String,
    pub product_id: String,
    pub side: Side,
    pub kind: OrderKind,
    pub base_size: Decimal,
    pub filled_size: Decimal,
    /// Sum of price * size over fills, for the average price.
    pub filled_value: Decimal,
    pub total_fees: Decimal,
    pub number_of_fills: u32,
    pub status: Status,
    /// Sim time of placement.
    pub created_time: i64,
    pub cancel_message: String,
    /// Still reserved: quote currency for a BUY, base currency for a SELL.
    pub hold: Decimal,
}

impl Order {
    pub fn remaining(&self) -> Decimal {
        self.base_size - self.filled_size
    }
    pub fn average_price(&self) -> Decimal {
        if self.filled_size.is_zero() {
            Decimal::ZERO
        } else {
            (self.filled_value / self.filled_size).round_dp(8)
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fill {
    pub entry_id: String,
    pub trade_id: String,
    pub order_id: String,
    pub product_id: String,
    pub side: Side,
    pub price: Decimal,
    pub size: Decimal,
    pub commission: Decimal,
    pub time: i64,
    /// Orders fills that share a second (see `clock::format_micros`).
    pub micros: u32,
    pub liquidity: &'static str,
}

impl Fill {
    pub fn sequence_key(&self) -> (i64, u32) {
        (self.time, self.micros)
    }
}

/// A create-order request after JSON decoding.
#[derive(Clone, Debug)]
pub struct NewOrder {
    pub client_order_id: String,
    pub product_id: String,
    pub side: Side,
    pub kind: OrderKind,
    pub base_size: Decimal,
}

/// Why an order was refused, in Coinbase's vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub error: String,
    pub message: String,
    pub preview_failure_reason: String,
}

fn reject(error: &str, preview: &str, message: impl Into<String>) -> Rejection {
    Rejection { error: error.into(), message: message.into(), preview_failure_reason: preview.into() }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    Created(String),
    /// The client_order_id was already used: nothing was created.
    Existing(String),
}

/// The candle data has no bar after the forming one, so it cannot close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataExhausted;

/// Something WebSocket subscribers may need to hear about.
#[derive(Clone, Debug)]
pub enum Event {
    OrderChanged(Order),
    CandleClosed { product_id: String, candle: Candle },
}

pub struct Exchange {
    series: BTreeMap<String, Series>,
    primary: String,
    /// Index into the primary series of the forming candle.
    cursor: usize,
    pub granularity: i64,
    pub balances: BTreeMap<String, Decimal>,
    orders: Vec<Order>,
    by_id: HashMap<String, usize>,
    by_client_id: HashMap<String, usize>,
    fills: Vec<Fill>,
    taker_rate: Decimal,
    maker_rate: Decimal,
    /// Fault: the next fill takes only this fraction of the order's remainder.
    pub partial_fill_next: Option<Decimal>,
    events: Vec<Event>,
}

impl Exchange {
    /// `series` in command-line order: the first drives sim time. `warm` closed candles are history.
    pub fn new(
        series: Vec<(String, Series)>,
        warm: usize,
        balances: BTreeMap<String, Decimal>,
        taker_bps: Decimal,
        maker_bps: Decimal,
    ) -> Result<Exchange, String> {
        let Some((primary, first)) = series.first() else {
            return Err("no candle series given".into());
        };
        let granularity = first.granularity;
        if let Some((p, _)) = series.iter().find(|(_, s)| s.granularity != granularity) {
            return Err(format!("{p}'s candles are not {granularity} s apart like {primary}'s"));
        }
        if warm + 1 > first.candles.len() {
            return Err(format!(
                "--warm {warm} leaves no forming candle: {primary} has {} candles",
                first.candles.len()
            ));
        }
        let start = first.candles[warm].start;
        if let Some((p, _)) = series.iter().find(|(_, s)| s.candles[0].start > start) {
            return Err(format!("{p}'s data begins after the sim starts ({})", clock::format(start)));
        }
        let primary = primary.clone();
        let mut balances = balances;
        for (p, _) in &series {
            let (base, quote) =
                split_product(p).ok_or_else(|| format!("product id {p:?} is not BASE-QUOTE"))?;
            balances.entry(base.to_string()).or_default();
            balances.entry(quote.to_string()).or_default();
        }
        let bps = Decimal::from(10_000);
        Ok(Exchange {
            series: series.into_iter().collect(),
            primary,
            cursor: warm,
            granularity,
            balances,
            orders: Vec::new(),
            by_id: HashMap::new(),
            by_client_id: HashMap::new(),
            fills: Vec::new(),
            taker_rate: taker_bps / bps,
            maker_rate: maker_bps / bps,
            partial_fill_next: None,
            events: Vec::new(),
        })
    }

    /// Sim now: the start of the forming candle.
    pub fn now(&self) -> i64 {
        self.series[&self.primary].candles[self.cursor].start
    }

    pub fn has_product(&self, product_id: &str) -> bool {
        self.series.contains_key(product_id)
    }

    pub fn forming(&self, product_id: &str) -> Option<&Candle> {
        self.series.get(product_id)?.at(self.now())
    }

    /// The price an order placed now would trade at: the forming candle's open, or the last
    /// close when the product has a gap at this bar.
    pub fn price(&self, product_id: &str) -> Option<Decimal> {
        if let Some(c) = self.forming(product_id) {
            return Some(c.open);
        }
        let now = self.now();
        let s = self.series.get(product_id)?;
        s.candles.iter().rev().find(|c| c.start < now).map(|c| c.close)
    }

    /// Candles with `start` in `[start, end]`, oldest first, never past sim now; the forming one
    /// is open-only with zero volume, as Coinbase serves a candle that is still forming.
    pub fn candles(&self, product_id: &str, start: i64, end: i64) -> Vec<Candle> {
        let Some(s) = self.series.get(product_id) else {
            return Vec::new();
        };
        let now = self.now();
        let end = end.min(now);
        let from = s.candles.partition_point(|c| c.start < start);
        let mut out = Vec::new();
        for c in s.candles[from..].iter().take_while(|c| c.start <= end) {
            if c.start == now {
                out.push(Candle {
                    high: c.open,
                    low: c.open,
                    close: c.open,
                    volume: Decimal::ZERO,
                    ..c.clone()
                });
            } else {
                out.push(c.clone());
            }
        }
        out
    }

    /// The last closed candle of a product, for WS snapshots.
    pub fn last_closed(&self, product_id: &str) -> Option<&Candle> {
        let now = self.now();
        let s = self.series.get(product_id)?;
        s.candles[..s.candles.partition_point(|c| c.start < now)].last()
    }

    pub fn orders(&self) -> &[Order] {
        &self.orders
    }

    pub fn order(&self, order_id: &str) -> Option<&Order> {
        self.by_id.get(order_id).map(|&i| &self.orders[i])
    }

    pub fn fills(&self) -> &[Fill] {
        &self.fills
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Amount of `currency` reserved by open orders.
    pub fn hold(&self, currency: &str) -> Decimal {
        self.orders
            .iter()
            .filter(|o| o.status == Status::Open && hold_currency(o) == Some(currency))
            .map(|o| o.hold)
            .sum()
    }

    pub fn available(&self, currency: &str) -> Decimal {
        self.balances.get(currency).copied().unwrap_or_default() - self.hold(currency)
    }

    /// Validates and books an order. A reused client_order_id answers with the existing order.
    pub fn place(&mut self, req: NewOrder) -> Result<Placed, Rejection> {
        if let Some(&i) = self.by_client_id.get(&req.client_order_id) {
            return Ok(Placed::Existing(self.orders[i].order_id.clone()));
        }
        let (base, quote) = match split_product(&req.product_id) {
            Some(bq) if self.has_product(&req.product_id) => bq,
            _ => {
                return Err(reject(
                    "INVALID_PRODUCT_ID",
                    "PREVIEW_INVALID_PRODUCT_ID",
                    format!("unknown product {}", req.product_id),
                ));
            }
        };
        let (base, quote) = (base.to_string(), quote.to_string());
        let size = req.base_size;
        if !(size % rules::BASE_INCREMENT).is_zero() {
            return Err(reject(
                "INVALID_SIZE_PRECISION",
                "PREVIEW_INVALID_SIZE_PRECISION",
                format!("base_size {size} is not a multiple of {}", rules::BASE_INCREMENT),
            ));
        }
        if size <= Decimal::ZERO || size < rules::BASE_MIN_SIZE {
            return Err(reject(
                "UNKNOWN_FAILURE_REASON",
                "PREVIEW_INVALID_BASE_SIZE_TOO_SMALL",
                format!("base_size {size} is below the minimum {}", rules::BASE_MIN_SIZE),
            ));
        }
        if size > rules::BASE_MAX_SIZE {
            return Err(reject(
                "UNKNOWN_FAILURE_REASON",
                "PREVIEW_INVALID_BASE_SIZE_TOO_LARGE",
                format!("base_size {size} is above the maximum {}", rules::BASE_MAX_SIZE),
            ));
        }
        let market = self.price(&req.product_id).ok_or_else(|| {
            reject("UNKNOWN_FAILURE_REASON", "UNKNOWN_PREVIEW_FAILURE_REASON", "no price yet")
        })?;
        let price = match &req.kind {
            OrderKind::Market => market,
            OrderKind::Limit { price, post_only } => {
                if *price <= Decimal::ZERO {
                    return Err(reject(
                        "INVALID_LIMIT_PRICE",
                        "PREVIEW_INVALID_LIMIT_PRICE",
                        "limit_price must be positive",
                    ));
                }
                if !(*price % rules::QUOTE_INCREMENT).is_zero() {
                    return Err(reject(
                        "INVALID_PRICE_PRECISION",
                        "PREVIEW_INVALID_PRICE_PRECISION",
                        format!("limit_price {price} is not a multiple of {}", rules::QUOTE_INCREMENT),
                    ));
                }
                let crosses = match req.side {
                    Side::Buy => *price >= market,
                    Side::Sell => *price <= market,
                };
                if *post_only && crosses {
                    return Err(reject(
                        "INVALID_LIMIT_PRICE_POST_ONLY",
                        "PREVIEW_INVALID_LIMIT_PRICE_POST_ONLY",
                        format!("post-only limit {price} would cross the market at {market}"),
                    ));
                }
                *price
            }
        };
        let notional = price.checked_mul(size);
        match notional {
            Some(n) if n < rules::QUOTE_MIN_SIZE => {
                return Err(reject(
                    "UNKNOWN_FAILURE_REASON",
                    "PREVIEW_INVALID_QUOTE_SIZE_TOO_SMALL",
                    format!("notional {n} is below the minimum {} {quote}", rules::QUOTE_MIN_SIZE),
                ));
            }
            Some(n) if n <= rules::QUOTE_MAX_SIZE => {}
            _ => {
                return Err(reject(
                    "UNKNOWN_FAILURE_REASON",
                    "PREVIEW_INVALID_QUOTE_SIZE_TOO_LARGE",
                    format!("notional is above the maximum {} {quote}", rules::QUOTE_MAX_SIZE),
                ));
            }
        }
        let notional = notional.unwrap_or_default();
        // A BUY reserves the worst case (taker fee at the price it was checked at); the
        // unused part is released as it fills.
        let (hold, hold_ccy) = match req.side {
            Side::Buy => (notional + notional * self.taker_rate, &quote),
            Side::Sell => (size, &base),
        };
        let available = self.available(hold_ccy);
        if hold > available {
            return Err(reject(
                "INSUFFICIENT_FUND",
                "PREVIEW_INSUFFICIENT_FUND",
                format!(
                    "Insufficient balance in source account: need {hold} {hold_ccy}, available {available}"
                ),
            ));
        }
        let order = Order {
            order_id: crate::auth::uuid_v4(),
            client_order_id: req.client_order_id,
            product_id: req.product_id,
            side: req.side,
            kind: req.kind,
            base_size: size,
            filled_size: Decimal::ZERO,
            filled_value: Decimal::ZERO,
            total_fees: Decimal::ZERO,
            number_of_fills: 0,
            status: Status::Open,
            created_time: self.now(),
            cancel_message: String::new(),
            hold,
        };
        let id = order.order_id.clone();
        let i = self.orders.len();
        self.by_id.insert(id.clone(), i);
        self.by_client_id.insert(order.client_order_id.clone(), i);
        self.events.push(Event::OrderChanged(order.clone()));
        self.orders.push(order);
        Ok(Placed::Created(id))
    }

    /// Cancels an open order; `Err` carries Coinbase's cancel failure reason.
    pub fn cancel(&mut self, order_id: &str) -> Result<(), &'static str> {
        let &i = self.by_id.get(order_id).ok_or("UNKNOWN_CANCEL_ORDER")?;
        let o = &mut self.orders[i];
        if o.status != Status::Open {
            return Err("UNKNOWN_CANCEL_ORDER");
        }
        o.status = Status::Cancelled;
        o.hold = Decimal::ZERO;
        o.cancel_message = "User requested cancel".into();
        self.events.push(Event::OrderChanged(o.clone()));
        Ok(())
    }

    /// Fills what is left of an open order at the current price (the cancel-races-fill fault).
    pub fn fill_now(&mut self, order_id: &str) {
        let Some(&i) = self.by_id.get(order_id) else { return };
        let o = &self.orders[i];
        if o.status != Status::Open {
            return;
        }
        let Some(market) = self.price(&o.product_id) else { return };
        let (price, liquidity) = match o.kind {
            OrderKind::Market => (market, "TAKER"),
            OrderKind::Limit { price, .. } => (price, "MAKER"),
        };
        let size = o.remaining();
        self.fill(i, price, size, liquidity, self.now());
    }

    /// Closes the forming candle of every product and fills what it reached. `Err` when the
    /// data has no further candle to become the forming one.
    pub fn advance(&mut self) -> Result<(), DataExhausted> {
        let primary_len = self.series[&self.primary].candles.len();
        if self.cursor + 1 >= primary_len {
            return Err(DataExhausted);
        }
        let closing_start = self.now();
        let closed: Vec<(String, Candle)> = self
            .series
            .iter()
            .filter_map(|(p, s)| s.at(closing_start).map(|c| (p.clone(), c.clone())))
            .collect();
        for (product, candle) in &closed {
            for i in 0..self.orders.len() {
                let o = &self.orders[i];
                if o.status != Status::Open || &o.product_id != product {
                    continue;
                }
                let hit = match (&o.kind, o.side) {
                    (OrderKind::Market, _) => Some((candle.open, "TAKER")),
                    // A gap through the limit fills at the better open, as a real book would.
                    (OrderKind::Limit { price, .. }, Side::Buy) if candle.open <= *price => {
                        Some((candle.open, "TAKER"))
                    }
                    (OrderKind::Limit { price, .. }, Side::Sell) if candle.open >= *price => {
                        Some((candle.open, "TAKER"))
                    }
                    (OrderKind::Limit { price, .. }, Side::Buy) if candle.low <= *price => {
                        Some((*price, "MAKER"))
                    }
                    (OrderKind::Limit { price, .. }, Side::Sell) if candle.high >= *price => {
                        Some((*price, "MAKER"))
                    }
                    _ => None,
                };
                if let Some((price, liquidity)) = hit {
                    let size = self.fill_size(o.remaining());
                    // Inside the candle it traded in, as a venue's fill times are.
                    self.fill(i, price, size, liquidity, closing_start);
                }
            }
        }
        self.cursor += 1;
        for (product_id, candle) in closed {
            self.events.push(Event::CandleClosed { product_id, candle });
        }
        Ok(())
    }

    /// The whole remainder, unless the partial-fill fault is armed.
    fn fill_size(&mut self, remaining: Decimal) -> Decimal {
        let Some(frac) = self.partial_fill_next.take() else {
            return remaining;
        };
        let part = (remaining * frac).round_dp_with_strategy(8, RoundingStrategy::ToZero);
        if part <= Decimal::ZERO || part >= remaining { remaining } else { part }
    }

    fn fill(&mut self, i: usize, price: Decimal, size: Decimal, liquidity: &'static str, time: i64) {
        let rate = if liquidity == "MAKER" { self.maker_rate } else { self.taker_rate };
        let notional = price * size;
        let fee = notional * rate;
        let o = &self.orders[i];
        let (base, quote) =
            split_product(&o.product_id).map(|(b, q)| (b.to_string(), q.to_string())).unwrap_or_default();
        // What this fill needs against what is free plus this order's own hold: after a
        // partial fill the next bar may open higher, or balance drift may have taken funds.
        let (need, ccy) = match o.side {
            Side::Buy => (notional + fee, &quote),
            Side::Sell => (size, &base),
        };
        if need > self.available(ccy) + o.hold {
            let o = &mut self.orders[i];
            o.status = Status::Cancelled;
            o.hold = Decimal::ZERO;
            o.cancel_message = "Insufficient funds when the order came to fill".into();
            self.events.push(Event::OrderChanged(o.clone()));
            return;
        }
        match o.side {
            Side::Buy => {
                *self.balances.entry(quote).or_default() -= notional + fee;
                *self.balances.entry(base).or_default() += size;
            }
            Side::Sell => {
                *self.balances.entry(base).or_default() -= size;
                *self.balances.entry(quote).or_default() += notional - fee;
            }
        }
        let seq = self.fills.len();
        let o = &mut self.orders[i];
        let before = o.remaining();
        o.filled_size += size;
        o.filled_value += notional;
        o.total_fees += fee;
        o.number_of_fills += 1;
        if o.remaining().is_zero() {
            o.status = Status::Filled;
            o.hold = Decimal::ZERO;
        } else {
            o.hold = (o.hold * o.remaining() / before).round_dp(12);
        }
        self.fills.push(Fill {
            entry_id: crate::auth::uuid_v4(),
            trade_id: crate::auth::uuid_v4(),
            order_id: o.order_id.clone(),
            product_id: o.product_id.clone(),
            side: o.side,
            price,
            size,
            commission: fee,
            time,
            micros: (seq % 1_000_000) as u32,
            liquidity,
        });
        self.events.push(Event::OrderChanged(o.clone()));
    }
}

/// `BTC-USD` -> (`BTC`, `USD`).
pub fn split_product(product_id: &str) -> Option<(&str, &str)> {
    let (b, q) = product_id.split_once('-')?;
    (!b.is_empty() && !q.is_empty() && !q.contains('-')).then_some((b, q))
}

fn hold_currency(o: &Order) -> Option<&str> {
    let (b, q) = split_product(&o.product_id)?;
    Some(match o.side {
        Side::Buy => q,
        Side::Sell => b,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Three hourly bars: opens 100, 110, 120.
    pub fn exchange(usd: &str) -> Exchange {
        let csv = "timestamp,open,high,low,close,volume\n\
            2020-01-01T00:00:00Z,100,105,95,110,1\n\
            2020-01-01T01:00:00Z,110,115,100,120,1\n\
            2020-01-01T02:00:00Z,120,125,118,121,1\n";
        let s = Series::from_csv(csv).unwrap();
        let bal = BTreeMap::from([("USD".to_string(), d(usd))]);
        Exchange::new(vec![("BTC-USD".into(), s)], 1, bal, d("60"), d("40")).unwrap()
    }

    fn order(coid: &str, side: Side, kind: OrderKind, size: &str) -> NewOrder {
        NewOrder {
            client_order_id: coid.into(),
            product_id: "BTC-USD".into(),
            side,
            kind,
            base_size: d(size),
        }
    }

    #[test]
    fn market_buy_fills_at_forming_open_with_taker_fee() {
        let mut ex = exchange("1000");
        assert_eq!(ex.now(), 1_577_840_400);
        let forming = ex.now();
        ex.place(order("a", Side::Buy, OrderKind::Market, "2")).unwrap();
        // 2 * 110 = 220 notional, 0.6% fee = 1.32, all held while OPEN.
        assert_eq!(ex.available("USD"), d("778.68"));
        ex.advance().unwrap();
        assert_eq!(ex.balances["USD"], d("778.68"));
        assert_eq!(ex.balances["BTC"], d("2"));
        assert_eq!(ex.hold("USD"), Decimal::ZERO);
        let o = &ex.orders()[0];
        assert_eq!((o.status, o.average_price(), o.total_fees), (Status::Filled, d("110"), d("1.32")));
        // Stamped inside the candle it traded in, not at the next one's start.
        assert_eq!(ex.fills()[0].time, forming);

        ex.place(order("b", Side::Sell, OrderKind::Market, "2")).unwrap();
        assert_eq!(ex.available("BTC"), Decimal::ZERO);
        // No bar after the last one: the sim cannot advance.
        assert_eq!(ex.advance(), Err(DataExhausted));
    }

    #[test]
    fn duplicate_client_order_id_creates_nothing() {
        let mut ex = exchange("1000");
        let Placed::Created(id) = ex.place(order("x", Side::Buy, OrderKind::Market, "1")).unwrap() else {
            panic!("first placement must create")
        };
        assert_eq!(ex.place(order("x", Side::Buy, OrderKind::Market, "5")), Ok(Placed::Existing(id)));
        assert_eq!(ex.orders().len(), 1);
        assert_eq!(ex.hold("USD"), d("110.66"));
    }

    #[test]
    fn validation_rejects_like_coinbase() {
        let mut ex = exchange("1000");
        let cases = [
            (order("1", Side::Buy, OrderKind::Market, "0.000000001"), "INVALID_SIZE_PRECISION"),
            (order("2", Side::Buy, OrderKind::Market, "20"), "INSUFFICIENT_FUND"),
            (order("3", Side::Sell, OrderKind::Market, "1"), "INSUFFICIENT_FUND"),
            (order("4", Side::Buy, OrderKind::Market, "0.001"), "UNKNOWN_FAILURE_REASON"), // 0.11 USD < 1
            (
                order("5", Side::Buy, OrderKind::Limit { price: d("100.001"), post_only: false }, "1"),
                "INVALID_PRICE_PRECISION",
            ),
            (
                order("6", Side::Buy, OrderKind::Limit { price: d("111"), post_only: true }, "1"),
                "INVALID_LIMIT_PRICE_POST_ONLY",
            ),
            (
                order(
                    "7",
                    Side::Buy,
                    OrderKind::Limit { price: d("79000000000000000000000000000"), post_only: false },
                    "1",
                ),
                "UNKNOWN_FAILURE_REASON",
            ),
        ];
        for (req, want) in cases {
            let coid = req.client_order_id.clone();
            assert_eq!(ex.place(req).unwrap_err().error, want, "case {coid}");
        }
        assert!(ex.orders().is_empty());
    }

    #[test]
    fn limit_fills_when_the_bar_reaches_it_and_partial_fault_splits() {
        let mut ex = exchange("1000");
        ex.place(order("l", Side::Buy, OrderKind::Limit { price: d("101"), post_only: true }, "1")).unwrap();
        ex.partial_fill_next = Some(d("0.25"));
        ex.advance().unwrap(); // bar low 100 reaches 101: a quarter fills as maker
        let o = &ex.orders()[0];
        assert_eq!((o.status, o.filled_size), (Status::Open, d("0.25")));
        assert_eq!(ex.fills()[0].commission, d("0.101")); // 25.25 * 0.4%
        assert_eq!(ex.advance(), Err(DataExhausted));
    }
}
