//! The ledger: cash, positions, fees and round trips, in exact decimals.
//!
//! Only the host writes here, and only from fills it has checked. The
//! invariant the whole product rests on holds after every operation:
//! equity = cash + sum(position quantity x mark), exactly.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{Side, Symbol, Timestamp, price_to_decimal};

/// Direction of a position or round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Long,
    Short,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Long => "long",
            Direction::Short => "short",
        }
    }
}

/// A completed round trip: from flat to flat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundTrip {
    pub symbol: Symbol,
    pub direction: Direction,
    pub entry_ts: Timestamp,
    /// Volume-weighted average entry price.
    pub entry_price: Decimal,
    pub exit_ts: Timestamp,
    /// Volume-weighted average exit price.
    pub exit_price: Decimal,
    pub quantity: Decimal,
    /// Fees of every fill of the round trip.
    pub fees: Decimal,
    /// Net of fees.
    pub pnl: Decimal,
}

/// The round trip of a position that is still open.
#[derive(Debug, Clone)]
struct OpenTrip {
    direction: Direction,
    entry_ts: Timestamp,
    entry_qty: Decimal,
    entry_notional: Decimal,
    exit_qty: Decimal,
    exit_notional: Decimal,
    exit_ts: Timestamp,
    fees: Decimal,
}

#[derive(Debug, Clone)]
struct Position {
    symbol: Symbol,
    /// Signed: negative when short.
    quantity: Decimal,
    /// Latest close, as received.
    mark_price: f64,
    /// `mark_price` as an exact decimal; kept current only while the position
    /// is open, so a flat symbol costs no decimal conversion per bar.
    mark: Decimal,
    trip: Option<OpenTrip>,
}

/// Cash, positions and history of one run.
#[derive(Debug, Clone)]
pub struct Ledger {
    start_cash: Decimal,
    cash: Decimal,
    positions: Vec<Position>,
    /// Sum of quantity x mark over all positions, maintained incrementally.
    positions_value: Decimal,
    fees_paid: Decimal,
    /// Borrow cost of short positions and margin interest, charged in cash.
    borrow_paid: Decimal,
    /// Of `borrow_paid`: interest on negative cash (margin accounts).
    interest_paid: Decimal,
    trips: Vec<RoundTrip>,
}

impl Ledger {
    /// A ledger for `symbols` (indexed as given) holding only cash.
    pub fn new(start_cash: Decimal, symbols: &[Symbol]) -> Self {
        let positions = symbols
            .iter()
            .map(|s| Position {
                symbol: s.clone(),
                quantity: Decimal::ZERO,
                mark_price: f64::NAN,
                mark: Decimal::ZERO,
                trip: None,
            })
            .collect();
        Ledger {
            start_cash,
            cash: start_cash,
            positions,
            positions_value: Decimal::ZERO,
            fees_paid: Decimal::ZERO,
            borrow_paid: Decimal::ZERO,
            interest_paid: Decimal::ZERO,
            trips: Vec::new(),
        }
    }

    pub fn start_cash(&self) -> Decimal {
        self.start_cash
    }
    pub fn cash(&self) -> Decimal {
        self.cash
    }
    pub fn equity(&self) -> Decimal {
        self.cash + self.positions_value
    }
    pub fn fees_paid(&self) -> Decimal {
        self.fees_paid
    }
    pub fn position(&self, symbol: usize) -> Decimal {
        self.positions[symbol].quantity
    }
    pub fn borrow_paid(&self) -> Decimal {
        self.borrow_paid
    }

    /// Signed value of `symbol`'s position at its mark.
    pub fn position_value(&self, symbol: usize) -> Decimal {
        let p = &self.positions[symbol];
        p.quantity * p.mark
    }

    /// Sum of every position's absolute value at its mark, leaving out `except`.
    pub fn gross_exposure_except(&self, except: usize) -> Decimal {
        self.positions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != except)
            .map(|(_, p)| (p.quantity * p.mark).abs())
            .sum()
    }

    /// Takes a short position's borrow cost from cash.
    pub fn charge_borrow(&mut self, amount: Decimal) {
        self.cash -= amount;
        self.borrow_paid += amount;
    }
    /// Charges interest on negative cash (a margin account's loan): the
    /// amount owed x `annual_rate` x `elapsed_ms` / `ms_per_year`, exact and
    /// checked, taken from cash and added to the borrow cost. Returns the
    /// interest charged (zero when cash is not negative), or `None` when the
    /// arithmetic leaves the decimal range (nothing is charged then).
    pub fn charge_interest(
        &mut self,
        annual_rate: Decimal,
        elapsed_ms: i64,
        ms_per_year: i64,
    ) -> Option<Decimal> {
        if self.cash >= Decimal::ZERO || elapsed_ms <= 0 {
            return Some(Decimal::ZERO);
        }
        let owed = -self.cash;
        let interest = owed
            .checked_mul(annual_rate)?
            .checked_mul(Decimal::from(elapsed_ms))?
            .checked_div(Decimal::from(ms_per_year))?;
        let cash = self.cash.checked_sub(interest)?;
        let borrow_paid = self.borrow_paid.checked_add(interest)?;
        let interest_paid = self.interest_paid.checked_add(interest)?;
        self.cash = cash;
        self.borrow_paid = borrow_paid;
        self.interest_paid = interest_paid;
        Some(interest)
    }

    /// Margin interest charged so far (part of [`Ledger::borrow_paid`]).
    pub fn interest_paid(&self) -> Decimal {
        self.interest_paid
    }

    /// Sum of every open position's absolute value at its mark: what
    /// leverage is measured on. `None` if it leaves the decimal range.
    pub fn gross_exposure(&self) -> Option<Decimal> {
        self.positions
            .iter()
            .filter(|p| !p.quantity.is_zero())
            .try_fold(Decimal::ZERO, |sum, p| sum.checked_add(p.quantity.checked_mul(p.mark)?.abs()))
    }

    pub fn round_trips(&self) -> &[RoundTrip] {
        &self.trips
    }

    /// Open positions: symbol, quantity, mark.
    pub fn open_positions(&self) -> impl Iterator<Item = (&Symbol, Decimal, Decimal)> {
        self.positions.iter().filter(|p| !p.quantity.is_zero()).map(|p| (&p.symbol, p.quantity, p.mark))
    }

    /// The latest close `symbol` was marked at, if any.
    pub fn mark_price(&self, symbol: usize) -> Option<f64> {
        Some(self.positions[symbol].mark_price).filter(|p| !p.is_nan())
    }

    /// Marks `symbol` at a new close.
    #[inline]
    pub fn mark(&mut self, symbol: usize, close: f64) {
        let p = &mut self.positions[symbol];
        if close.to_bits() == p.mark_price.to_bits() {
            return;
        }
        p.mark_price = close;
        if p.quantity.is_zero() {
            return;
        }
        let new_mark = price_to_decimal(close).expect("closes are validated as finite");
        self.positions_value += p.quantity * (new_mark - p.mark);
        p.mark = new_mark;
    }

    /// Applies a checked fill. Returns the round trip it completed, if any.
    pub fn apply_fill(
        &mut self,
        symbol: usize,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        ts: Timestamp,
    ) -> Option<RoundTrip> {
        let notional = quantity * price;
        match side {
            Side::Buy => self.cash -= notional + fee,
            Side::Sell => self.cash += notional - fee,
        }
        self.fees_paid += fee;
        let signed = if side == Side::Buy { quantity } else { -quantity };

        let p = &mut self.positions[symbol];
        if p.quantity.is_zero() {
            // The mark of a flat position is not kept current; refresh it now.
            p.mark = price_to_decimal(p.mark_price).unwrap_or(price);
        }
        let before = p.quantity;
        p.quantity += signed;
        self.positions_value += signed * p.mark;

        let direction_of = |q: Decimal| if q > Decimal::ZERO { Direction::Long } else { Direction::Short };
        let opening = before.is_zero() || (before > Decimal::ZERO) == (signed > Decimal::ZERO);
        if opening {
            let trip = p.trip.get_or_insert(OpenTrip {
                direction: direction_of(signed),
                entry_ts: ts,
                entry_qty: Decimal::ZERO,
                entry_notional: Decimal::ZERO,
                exit_qty: Decimal::ZERO,
                exit_notional: Decimal::ZERO,
                exit_ts: ts,
                fees: Decimal::ZERO,
            });
            trip.entry_qty += quantity;
            trip.entry_notional += notional;
            trip.fees += fee;
            return None;
        }

        // Reducing, closing or flipping the position.
        let closing_qty = quantity.min(before.abs());
        let closing_fee = if closing_qty == quantity { fee } else { fee * closing_qty / quantity };
        let mut trip = p.trip.take().expect("an open position has an open round trip");
        trip.exit_qty += closing_qty;
        trip.exit_notional += closing_qty * price;
        trip.exit_ts = ts;
        trip.fees += closing_fee;
        let completed = if p.quantity.is_zero() || (before > Decimal::ZERO) != (p.quantity > Decimal::ZERO) {
            Some(close_trip(&p.symbol, trip))
        } else {
            p.trip = Some(trip);
            None
        };
        if !p.quantity.is_zero() && completed.is_some() {
            // Flipped through zero: the rest of the fill opens a new round trip.
            let rest = quantity - closing_qty;
            p.trip = Some(OpenTrip {
                direction: direction_of(p.quantity),
                entry_ts: ts,
                entry_qty: rest,
                entry_notional: rest * price,
                exit_qty: Decimal::ZERO,
                exit_notional: Decimal::ZERO,
                exit_ts: ts,
                fees: fee - closing_fee,
            });
        }
        if let Some(trip) = &completed {
            self.trips.push(trip.clone());
        }
        completed
    }

    /// Recomputes equity from scratch; equal to [`Ledger::equity`] by construction.
    #[cfg(test)]
    pub fn recomputed_equity(&self) -> Decimal {
        self.cash + self.positions.iter().map(|p| p.quantity * p.mark).sum::<Decimal>()
    }
}

fn close_trip(symbol: &Symbol, t: OpenTrip) -> RoundTrip {
    let gross = match t.direction {
        Direction::Long => t.exit_notional - t.entry_notional,
        Direction::Short => t.entry_notional - t.exit_notional,
    };
    RoundTrip {
        symbol: symbol.clone(),
        direction: t.direction,
        entry_ts: t.entry_ts,
        entry_price: t.entry_notional / t.entry_qty,
        exit_ts: t.exit_ts,
        exit_price: t.exit_notional / t.exit_qty,
        quantity: t.entry_qty,
        fees: t.fees,
        pnl: gross - t.fees,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn ledger() -> Ledger {
        Ledger::new(d("10000"), &[Symbol::new("BTC-USD").unwrap()])
    }

    #[test]
    fn a_long_round_trip_by_hand() {
        let mut l = ledger();
        l.mark(0, 100.0);
        // Buy 95 at 101 with a 0.1% fee: cost 9595 + 9.595.
        assert!(l.apply_fill(0, Side::Buy, d("95"), d("101"), d("9.595"), 1).is_none());
        assert_eq!(l.cash(), d("395.405"));
        // Marked at the previous close of 100 until the next mark.
        assert_eq!(l.equity(), d("9895.405"));
        l.mark(0, 110.0);
        assert_eq!(l.equity(), d("10845.405"));
        let trip = l.apply_fill(0, Side::Sell, d("95"), d("110"), d("10.45"), 2).unwrap();
        assert_eq!(l.cash(), d("10834.955"));
        assert_eq!(l.equity(), l.cash());
        assert_eq!(trip.pnl, d("834.955"));
        assert_eq!(trip.fees, d("20.045"));
        assert_eq!((trip.entry_price, trip.exit_price, trip.quantity), (d("101"), d("110"), d("95")));
        assert_eq!(l.fees_paid(), d("20.045"));
    }

    #[test]
    fn equity_always_equals_cash_plus_marked_positions() {
        let mut l = ledger();
        let closes = [100.0, 100.5, 99.25, 103.125, 101.0];
        l.mark(0, closes[0]);
        l.apply_fill(0, Side::Buy, d("3.5"), d("100.25"), d("0.35"), 1);
        for (i, c) in closes.iter().enumerate() {
            l.mark(0, *c);
            assert_eq!(l.equity(), l.recomputed_equity(), "bar {i}");
        }
        l.apply_fill(0, Side::Sell, d("1.5"), d("101"), d("0.15"), 6);
        assert_eq!(l.equity(), l.recomputed_equity());
        assert_eq!(l.position(0), d("2"));
    }

    #[test]
    fn partial_exits_average_into_one_round_trip() {
        let mut l = ledger();
        l.mark(0, 10.0);
        l.apply_fill(0, Side::Buy, d("10"), d("10"), d("0"), 1);
        assert!(l.apply_fill(0, Side::Sell, d("4"), d("12"), d("0"), 2).is_none());
        let trip = l.apply_fill(0, Side::Sell, d("6"), d("13"), d("0"), 3).unwrap();
        assert_eq!(trip.exit_price, d("12.6"));
        assert_eq!(trip.pnl, d("26"));
        assert_eq!(trip.exit_ts, 3);
    }

    #[test]
    fn a_flip_closes_one_trip_and_opens_the_other() {
        let mut l = ledger();
        l.mark(0, 10.0);
        l.apply_fill(0, Side::Buy, d("2"), d("10"), d("0"), 1);
        let trip = l.apply_fill(0, Side::Sell, d("5"), d("11"), d("0.5"), 2).unwrap();
        assert_eq!(trip.quantity, d("2"));
        assert_eq!(trip.fees, d("0.2"));
        assert_eq!(l.position(0), d("-3"));
        let short = l.apply_fill(0, Side::Buy, d("3"), d("9"), d("0"), 3).unwrap();
        assert_eq!(short.direction, Direction::Short);
        assert_eq!(short.pnl, d("6") - d("0.3"));
    }
}
