//! An independent model of the reference semantics stated in issue #2,
//! written from that text, not from the host's code, to check the host
//! against:
//!
//! - SMA(fast) and SMA(slow) of close; long only; enter when fast crosses above
//!   slow (fast > slow now, fast <= slow on the previous bar), exit when it
//!   crosses below (fast < slow now, fast >= slow before); both SMAs needed on
//!   this bar and the previous one; redundant signals do nothing;
//! - entry quantity = floor(fraction x equity / close, 8 places), equity =
//!   cash + positions marked at the signal bar's close;
//! - market orders fill at the symbol's next bar's open; fee = notional x
//!   fee-bps / 10000, paid in cash; exits sell the whole position;
//! - several symbols: timestamps in order across symbols, one cash balance;
//!   at each timestamp fills first, then marks, then signals;
//! - no borrowing (issue #12): an entry is refused when it would take gross
//!   exposure above `max_gross` x equity at the signal bar's close, gross
//!   exposure being every held position and every entry still waiting for
//!   its fill, each at its symbol's latest close, plus the entry itself;
//! - a position open at the end is marked at the last close, not closed.
//!
//! SMA values are the window's closes summed oldest first, then divided by
//! the period: the definition `sma` documents, so the comparisons agree to the bit.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

#[derive(Debug, Clone, Copy)]
pub struct Bar {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
}

/// Reads `timestamp,open,high,low,close,volume` rows (comment lines skipped).
pub fn read_csv(path: &std::path::Path) -> Vec<Bar> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Bar {
                ts: parse_ts(f[0]),
                open: f[1].parse().unwrap(),
                high: f[2].parse().unwrap(),
                low: f[3].parse().unwrap(),
                close: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// `YYYY-MM-DD[THH:MM:SSZ]` to milliseconds, by counting days.
pub fn parse_ts(text: &str) -> i64 {
    let (y, m, d): (i64, i64, i64) =
        (text[0..4].parse().unwrap(), text[5..7].parse().unwrap(), text[8..10].parse().unwrap());
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for year in 1970..y {
        days += if leap(year) { 366 } else { 365 };
    }
    let months = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    days += months[..(m - 1) as usize].iter().sum::<i64>() + d - 1;
    let secs = if text.len() >= 19 {
        text[11..13].parse::<i64>().unwrap() * 3600
            + text[14..16].parse::<i64>().unwrap() * 60
            + text[17..19].parse::<i64>().unwrap()
    } else {
        0
    };
    days * 86_400_000 + secs * 1000
}

pub fn format_ts(ts: i64) -> String {
    let mut days = ts.div_euclid(86_400_000);
    let secs = ts.rem_euclid(86_400_000) / 1000;
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut y = 1970;
    while days >= if leap(y) { 366 } else { 365 } {
        days -= if leap(y) { 366 } else { 365 };
        y += 1;
    }
    let months = [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut m = 0;
    while days >= months[m] {
        days -= months[m];
        m += 1;
    }
    format!("{y:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", m + 1, days + 1, secs / 3600, secs / 60 % 60, secs % 60)
}

/// A wire price as the exact decimal it stands for (shortest round trip;
/// an exact tie as Ryu, Python and JavaScript break it, which Rust's `{}`
/// does not always).
pub fn dec(price: f64) -> Decimal {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(price);
    let d = if text.contains('e') { Decimal::from_scientific(text) } else { Decimal::from_str(text) };
    d.unwrap().normalize()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    pub entry_ts: String,
    pub entry_price: Decimal,
    pub exit_ts: String,
    pub exit_price: Decimal,
    pub qty: Decimal,
    pub fees: Decimal,
    pub pnl: Decimal,
}

pub struct Params {
    pub fast: usize,
    pub slow: usize,
    pub fraction: Decimal,
    pub fee_bps: Decimal,
    pub start_cash: Decimal,
    /// Largest gross exposure an entry may take the account to, as a
    /// multiple of equity (a cash account's 1); `None` for no limit.
    pub max_gross: Option<Decimal>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            fast: 10,
            slow: 30,
            fraction: Decimal::from_str("0.95").unwrap(),
            fee_bps: Decimal::from(10),
            start_cash: Decimal::from(10_000),
            max_gross: Some(Decimal::ONE),
        }
    }
}

pub struct Outcome {
    pub trades: Vec<Trade>,
    pub final_equity: Decimal,
    pub final_cash: Decimal,
    pub bars: usize,
    /// Entries refused because they would have borrowed.
    pub refused: usize,
}

struct Book {
    name: String,
    bars: Vec<Bar>,
    next: usize,
    closes: Vec<f64>,
    position: Decimal,
    last_close: Option<f64>,
    /// (is_buy, quantity) placed on the previous bar, to fill at this bar's open.
    pending: Option<(bool, Decimal)>,
    entry: Option<(i64, Decimal, Decimal)>, // ts, price, fee
}

fn sma(closes: &[f64], period: usize) -> Option<f64> {
    if closes.len() < period {
        return None;
    }
    let sum: f64 = closes[closes.len() - period..].iter().sum();
    Some(sum / period as f64)
}

pub fn simulate(symbols: Vec<(String, Vec<Bar>)>, p: &Params) -> Outcome {
    let mut books: Vec<Book> = symbols
        .into_iter()
        .map(|(name, bars)| Book {
            name,
            bars,
            next: 0,
            closes: vec![],
            position: Decimal::ZERO,
            last_close: None,
            pending: None,
            entry: None,
        })
        .collect();
    let mut cash = p.start_cash;
    let mut trades = Vec::new();
    let mut bars_seen = 0;
    let mut refused = 0;
    let ten_k = Decimal::from(10_000);
    while let Some(ts) = books.iter().filter_map(|b| b.bars.get(b.next).map(|x| x.ts)).min() {
        let active: Vec<usize> = (0..books.len())
            .filter(|&i| books[i].bars.get(books[i].next).is_some_and(|b| b.ts == ts))
            .collect();
        // 1. fills at the open
        for &i in &active {
            let b = &mut books[i];
            let bar = b.bars[b.next];
            if let Some((buy, qty)) = b.pending.take() {
                let price = dec(bar.open);
                let fee = qty * price * p.fee_bps / ten_k;
                if buy {
                    cash -= qty * price + fee;
                    b.position += qty;
                    b.entry = Some((ts, price, fee));
                } else {
                    cash += qty * price - fee;
                    b.position -= qty;
                    let (entry_ts, entry_price, entry_fee) = b.entry.take().unwrap();
                    let fees = entry_fee + fee;
                    trades.push(Trade {
                        symbol: b.name.clone(),
                        entry_ts: format_ts(entry_ts),
                        entry_price,
                        exit_ts: format_ts(ts),
                        exit_price: price,
                        qty,
                        fees,
                        pnl: qty * price - qty * entry_price - fees,
                    });
                }
            }
        }
        // 2. marks
        for &i in &active {
            let b = &mut books[i];
            b.last_close = Some(b.bars[b.next].close);
        }
        // 3. signals, in symbol order
        for &i in &active {
            let bar = books[i].bars[books[i].next];
            let previous = (sma(&books[i].closes, p.fast), sma(&books[i].closes, p.slow));
            books[i].closes.push(bar.close);
            let now = (sma(&books[i].closes, p.fast), sma(&books[i].closes, p.slow));
            let (Some(pf), Some(ps), Some(f), Some(s)) = (previous.0, previous.1, now.0, now.1) else {
                continue;
            };
            if f > s && pf <= ps && books[i].position.is_zero() {
                let equity = cash
                    + books
                        .iter()
                        .map(|b| b.position * b.last_close.map(dec).unwrap_or_default())
                        .sum::<Decimal>();
                let qty = (p.fraction * equity / dec(bar.close))
                    .round_dp_with_strategy(8, RoundingStrategy::ToZero);
                let at_close = |b: &Book| b.last_close.map(dec).unwrap_or_default();
                let held: Decimal = books.iter().map(|b| (b.position * at_close(b)).abs()).sum();
                let waiting: Decimal = books
                    .iter()
                    .filter_map(|b| match b.pending {
                        Some((true, q)) => Some(q * at_close(b)),
                        _ => None,
                    })
                    .sum();
                let gross = held + waiting + qty * dec(bar.close);
                let borrows = p.max_gross.is_some_and(|limit| gross > equity.max(Decimal::ZERO) * limit);
                if qty > Decimal::ZERO && borrows {
                    refused += 1;
                } else if qty > Decimal::ZERO {
                    books[i].pending = Some((true, qty));
                }
            } else if f < s && pf >= ps && books[i].position > Decimal::ZERO {
                books[i].pending = Some((false, books[i].position));
            }
        }
        for &i in &active {
            books[i].next += 1;
            bars_seen += 1;
        }
    }
    let final_equity =
        cash + books.iter().map(|b| b.position * b.last_close.map(dec).unwrap_or_default()).sum::<Decimal>();
    Outcome { trades, final_equity, final_cash: cash, bars: bars_seen, refused }
}
