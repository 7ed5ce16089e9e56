//! The ledger: cash, positions, fees and round trips, in exact decimals.
//!
//! Only the host writes here, and only from fills it has checked. The
//! invariant the whole product rests on holds after every operation:
//! equity = cash + sum(position quantity x mark), exactly.
//!
//! Every amount is computed with checked arithmetic before anything changes:
//! an operation whose result `Decimal` cannot hold (prices and quantities
//! are range-checked where they enter, so only absurd sums get here) leaves
//! the ledger untouched and is an error, never a panic.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{Side, Symbol, Timestamp, price_to_decimal};

/// An amount the ledger cannot hold: the operation was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ledger cannot hold the result: {0}")]
pub struct LedgerError(pub String);

/// `Some(value)` or the error naming what overflowed.
fn held(value: Option<Decimal>, what: &str) -> Result<Decimal, LedgerError> {
    value.ok_or_else(|| LedgerError(format!("{what} is beyond what a decimal holds (about 7.9e28)")))
}

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
#[derive(Debug, Clone, Copy)]
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
    /// `cash + positions_value`, kept with them so reading it cannot overflow.
    equity: Decimal,
    fees_paid: Decimal,
    /// Borrow cost of short positions and margin interest, charged in cash.
    borrow_paid: Decimal,
    /// Of `borrow_paid`: interest on negative cash (margin accounts).
    interest_paid: Decimal,
    trips: Vec<RoundTrip>,
    /// The first operation that could not be applied, through the methods
    /// that cannot return an error ([`Ledger::mark`], [`Ledger::apply_fill`],
    /// [`Ledger::charge_borrow`]); the loop turns it into a run error.
    overflow: Option<LedgerError>,
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
            equity: start_cash,
            fees_paid: Decimal::ZERO,
            borrow_paid: Decimal::ZERO,
            interest_paid: Decimal::ZERO,
            trips: Vec::new(),
            overflow: None,
        }
    }

    pub fn start_cash(&self) -> Decimal {
        self.start_cash
    }
    pub fn cash(&self) -> Decimal {
        self.cash
    }
    pub fn equity(&self) -> Decimal {
        self.equity
    }

    /// The first operation the ledger refused because an amount overflowed, if any.
    pub fn overflow(&self) -> Option<&LedgerError> {
        self.overflow.as_ref()
    }

    fn latch<T>(&mut self, result: Result<T, LedgerError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.overflow.get_or_insert(e);
                None
            }
        }
    }

    /// Sets cash and the positions' value together, with the equity they make.
    fn commit_totals(&mut self, cash: Decimal, positions_value: Decimal) -> Result<(), LedgerError> {
        self.equity = held(cash.checked_add(positions_value), "equity")?;
        self.cash = cash;
        self.positions_value = positions_value;
        Ok(())
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

    /// Signed value of `symbol`'s position at its mark. Marking and filling
    /// check that this product fits, so it cannot overflow here.
    pub fn position_value(&self, symbol: usize) -> Decimal {
        let p = &self.positions[symbol];
        p.quantity.checked_mul(p.mark).unwrap_or(Decimal::ZERO)
    }

    /// Sum of every position's absolute value at its mark, leaving out
    /// `except`; `None` when the sum overflows.
    pub fn gross_exposure_except(&self, except: usize) -> Option<Decimal> {
        self.positions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != except)
            .try_fold(Decimal::ZERO, |sum, (_, p)| sum.checked_add(p.quantity.checked_mul(p.mark)?.abs()))
    }

    /// Takes a short position's borrow cost from cash.
    pub fn charge_borrow(&mut self, amount: Decimal) {
        let result = self.try_charge_borrow(amount);
        self.latch(result);
    }

    /// [`Ledger::charge_borrow`], or the error that left the ledger untouched.
    pub fn try_charge_borrow(&mut self, amount: Decimal) -> Result<(), LedgerError> {
        let cash = held(self.cash.checked_sub(amount), "cash after a borrow charge")?;
        let borrow_paid = held(self.borrow_paid.checked_add(amount), "the borrow cost paid")?;
        self.commit_totals(cash, self.positions_value)?;
        self.borrow_paid = borrow_paid;
        Ok(())
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
        // Equity moves with cash, whether or not a mark follows this bar.
        self.commit_totals(cash, self.positions_value).ok()?;
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
        let result = self.try_mark(symbol, close);
        self.latch(result);
    }

    /// [`Ledger::mark`], or the error that left the ledger untouched.
    #[inline]
    pub fn try_mark(&mut self, symbol: usize, close: f64) -> Result<(), LedgerError> {
        let p = &self.positions[symbol];
        if close.to_bits() == p.mark_price.to_bits() {
            return Ok(());
        }
        if p.quantity.is_zero() {
            self.positions[symbol].mark_price = close;
            return Ok(());
        }
        let new_mark = price_to_decimal(close)
            .ok_or_else(|| LedgerError(format!("close {close:e} of {} is not an exact decimal", p.symbol)))?;
        held(p.quantity.checked_mul(new_mark), "a position's value")?;
        let change =
            held(new_mark.checked_sub(p.mark).and_then(|m| p.quantity.checked_mul(m)), "a mark's change")?;
        let positions_value = held(self.positions_value.checked_add(change), "the positions' value")?;
        self.commit_totals(self.cash, positions_value)?;
        let p = &mut self.positions[symbol];
        p.mark_price = close;
        p.mark = new_mark;
        Ok(())
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
        let result = self.try_apply_fill(symbol, side, quantity, price, fee, ts);
        self.latch(result).flatten()
    }

    /// [`Ledger::apply_fill`], or the error that left the ledger untouched.
    pub fn try_apply_fill(
        &mut self,
        symbol: usize,
        side: Side,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        ts: Timestamp,
    ) -> Result<Option<RoundTrip>, LedgerError> {
        let notional = held(quantity.checked_mul(price), "a fill's notional")?;
        let cash = match side {
            Side::Buy => notional.checked_add(fee).and_then(|cost| self.cash.checked_sub(cost)),
            Side::Sell => notional.checked_sub(fee).and_then(|proceeds| self.cash.checked_add(proceeds)),
        };
        let cash = held(cash, "cash after a fill")?;
        let fees_paid = held(self.fees_paid.checked_add(fee), "the fees paid")?;
        let signed = if side == Side::Buy { quantity } else { -quantity };

        let p = &self.positions[symbol];
        // The mark of a flat position is not kept current; refresh it now.
        let mark =
            if p.quantity.is_zero() { price_to_decimal(p.mark_price).unwrap_or(price) } else { p.mark };
        let before = p.quantity;
        let after = held(before.checked_add(signed), "a position's quantity")?;
        held(after.checked_mul(mark), "a position's value")?;
        let positions_value = held(
            signed.checked_mul(mark).and_then(|v| self.positions_value.checked_add(v)),
            "the positions' value",
        )?;
        let fill = TripFill { quantity, price, notional, fee, ts };
        let (trip, completed) = trip_after_fill(p.trip, &p.symbol, before, after, signed, &fill)?;

        self.commit_totals(cash, positions_value)?;
        self.fees_paid = fees_paid;
        let p = &mut self.positions[symbol];
        p.mark = mark;
        p.quantity = after;
        p.trip = trip;
        if let Some(trip) = &completed {
            self.trips.push(trip.clone());
        }
        Ok(completed)
    }

    /// Recomputes equity from scratch; equal to [`Ledger::equity`] by construction.
    #[cfg(test)]
    pub fn recomputed_equity(&self) -> Option<Decimal> {
        self.positions.iter().try_fold(self.cash, |sum, p| sum.checked_add(p.quantity.checked_mul(p.mark)?))
    }
}

/// One fill as the round-trip bookkeeping sees it.
struct TripFill {
    quantity: Decimal,
    price: Decimal,
    notional: Decimal,
    fee: Decimal,
    ts: Timestamp,
}

/// The open round trip after a fill that moves a position from `before` to
/// `after` (by `signed`), and the round trip it completed, if any.
fn trip_after_fill(
    open: Option<OpenTrip>,
    symbol: &Symbol,
    before: Decimal,
    after: Decimal,
    signed: Decimal,
    f: &TripFill,
) -> Result<(Option<OpenTrip>, Option<RoundTrip>), LedgerError> {
    let direction_of = |q: Decimal| if q > Decimal::ZERO { Direction::Long } else { Direction::Short };
    let add = |a: Decimal, b: Decimal, what: &str| held(a.checked_add(b), what);
    let opening = before.is_zero() || (before > Decimal::ZERO) == (signed > Decimal::ZERO);
    if opening {
        let mut trip = open.unwrap_or(OpenTrip {
            direction: direction_of(signed),
            entry_ts: f.ts,
            entry_qty: Decimal::ZERO,
            entry_notional: Decimal::ZERO,
            exit_qty: Decimal::ZERO,
            exit_notional: Decimal::ZERO,
            exit_ts: f.ts,
            fees: Decimal::ZERO,
        });
        trip.entry_qty = add(trip.entry_qty, f.quantity, "a round trip's quantity")?;
        trip.entry_notional = add(trip.entry_notional, f.notional, "a round trip's notional")?;
        trip.fees = add(trip.fees, f.fee, "a round trip's fees")?;
        return Ok((Some(trip), None));
    }

    // Reducing, closing or flipping the position.
    let closing_qty = f.quantity.min(before.abs());
    let closing_fee = if closing_qty == f.quantity {
        f.fee
    } else {
        held(f.fee.checked_mul(closing_qty).and_then(|x| x.checked_div(f.quantity)), "a fill's fee share")?
    };
    let mut trip =
        open.ok_or_else(|| LedgerError(format!("{symbol} has a position but no open round trip")))?;
    trip.exit_qty = add(trip.exit_qty, closing_qty, "a round trip's quantity")?;
    let exit_notional = held(closing_qty.checked_mul(f.price), "a round trip's notional")?;
    trip.exit_notional = add(trip.exit_notional, exit_notional, "a round trip's notional")?;
    trip.exit_ts = f.ts;
    trip.fees = add(trip.fees, closing_fee, "a round trip's fees")?;
    if !(after.is_zero() || (before > Decimal::ZERO) != (after > Decimal::ZERO)) {
        return Ok((Some(trip), None));
    }
    let completed = close_trip(symbol, trip)?;
    if after.is_zero() {
        return Ok((None, Some(completed)));
    }
    // Flipped through zero: the rest of the fill opens a new round trip.
    let rest = held(f.quantity.checked_sub(closing_qty), "a fill's quantity")?;
    let reopened = OpenTrip {
        direction: direction_of(after),
        entry_ts: f.ts,
        entry_qty: rest,
        entry_notional: held(rest.checked_mul(f.price), "a round trip's notional")?,
        exit_qty: Decimal::ZERO,
        exit_notional: Decimal::ZERO,
        exit_ts: f.ts,
        fees: held(f.fee.checked_sub(closing_fee), "a round trip's fees")?,
    };
    Ok((Some(reopened), Some(completed)))
}

fn close_trip(symbol: &Symbol, t: OpenTrip) -> Result<RoundTrip, LedgerError> {
    let gross = match t.direction {
        Direction::Long => t.exit_notional.checked_sub(t.entry_notional),
        Direction::Short => t.entry_notional.checked_sub(t.exit_notional),
    };
    let gross = held(gross, "a round trip's profit")?;
    Ok(RoundTrip {
        symbol: symbol.clone(),
        direction: t.direction,
        entry_ts: t.entry_ts,
        entry_price: held(t.entry_notional.checked_div(t.entry_qty), "a round trip's entry price")?,
        exit_ts: t.exit_ts,
        exit_price: held(t.exit_notional.checked_div(t.exit_qty), "a round trip's exit price")?,
        quantity: t.entry_qty,
        fees: t.fees,
        pnl: held(gross.checked_sub(t.fees), "a round trip's profit")?,
    })
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
    fn margin_interest_lowers_equity_at_once() {
        let mut l = ledger();
        l.mark(0, 100.0);
        // Buy 150 at 100 on 10,000: 5,000 borrowed.
        l.apply_fill(0, Side::Buy, d("150"), d("100"), d("0"), 1);
        assert_eq!(l.cash(), d("-5000"));
        // 10% a year for a tenth of a year: 50, with no mark after it.
        assert_eq!(l.charge_interest(d("0.1"), 1, 10), Some(d("50")));
        assert_eq!(l.cash(), d("-5050"));
        assert_eq!(l.equity(), d("9950"));
        assert_eq!(l.interest_paid(), d("50"));
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
            assert_eq!(Some(l.equity()), l.recomputed_equity(), "bar {i}");
        }
        l.apply_fill(0, Side::Sell, d("1.5"), d("101"), d("0.15"), 6);
        assert_eq!(Some(l.equity()), l.recomputed_equity());
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

/// Fuzzing the money path: arbitrary prices, quantities and fees, extremes
/// included, through the ledger. No operation panics; one that is applied
/// keeps equity = cash + positions exactly; one that is refused leaves the
/// ledger as it was.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    use super::*;

    /// Any decimal: every mantissa and scale, so Decimal::MAX and the
    /// smallest steps too, weighted towards the extremes and ordinary amounts.
    fn decimal() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            any::<(u32, u32, u32, bool, u8)>().prop_map(
                |(lo, mid, hi, negative, scale)| Decimal::from_parts(
                    lo,
                    mid,
                    hi,
                    negative,
                    u32::from(scale % 29)
                )
            ),
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            Just(Decimal::new(1, 28)),
            Just(Decimal::from_i128_with_scale(10_i128.pow(27), 0)),
            (1_i64..10_000_000, 0_u32..8).prop_map(|(m, s)| Decimal::new(m, s)),
        ]
    }

    /// A positive decimal (what the host's checks let through as a quantity or price).
    fn positive() -> impl Strategy<Value = Decimal> {
        decimal().prop_map(|d| d.abs()).prop_filter("positive", |d| !d.is_zero())
    }

    /// Any close: ordinary prices, the ends of the supported range, and values past them.
    fn close() -> impl Strategy<Value = f64> {
        prop_oneof![
            1e-3_f64..1e6,
            Just(1e-12),
            Just(1e12),
            Just(1e27),
            Just(1e30),
            Just(5e-324),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            any::<f64>().prop_filter("finite positive", |v| v.is_finite() && *v > 0.0),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Mark(usize, f64),
        Fill(usize, Side, Decimal, Decimal, Decimal),
        Borrow(Decimal),
    }

    fn op() -> impl Strategy<Value = Op> {
        let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
        prop_oneof![
            (0..2_usize, close()).prop_map(|(s, c)| Op::Mark(s, c)),
            (0..2_usize, side, positive(), positive(), decimal().prop_map(|d| d.abs()))
                .prop_map(|(s, side, q, p, fee)| Op::Fill(s, side, q, p, fee)),
            decimal().prop_map(|d| Op::Borrow(d.abs())),
        ]
    }

    fn start_cash() -> impl Strategy<Value = Decimal> {
        prop_oneof![Just(Decimal::from(10_000)), Just(crate::model::MAX_START_CASH), positive()]
    }

    /// A decimal of at most 6 significant digits times 10^`exponents`:
    /// amounts whose products and sums stay exact in a decimal's 28 digits
    /// (quantities to 1e8 with 4 places, prices to 1e7 with 8: products of
    /// at most 27 digits), so equity must equal its recomputation exactly.
    fn moderate(exponents: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = Decimal> {
        (1_i64..1_000_000, exponents).prop_map(|(m, e)| {
            let d = Decimal::from(m);
            if e >= 0 { d * Decimal::from(10_i64.pow(e as u32)) } else { Decimal::new(m, e.unsigned_abs()) }
        })
    }

    fn moderate_op() -> impl Strategy<Value = Op> {
        let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
        prop_oneof![
            (0..2_usize, moderate(-8..=1)).prop_map(|(s, p)| Op::Mark(s, crate::model::decimal_to_price(p))),
            (0..2_usize, side, moderate(-4..=2), moderate(-8..=1), moderate(-8..=0))
                .prop_map(|(s, side, q, p, fee)| Op::Fill(s, side, q, p, fee)),
            moderate(-8..=2).prop_map(Op::Borrow),
        ]
    }

    fn apply(ledger: &mut Ledger, k: usize, op: &Op) -> bool {
        match *op {
            Op::Mark(s, c) => ledger.try_mark(s, c).is_ok(),
            Op::Fill(s, side, q, p, fee) => ledger.try_apply_fill(s, side, q, p, fee, k as i64).is_ok(),
            Op::Borrow(amount) => ledger.try_charge_borrow(amount).is_ok(),
        }
    }

    fn ledger(cash: Decimal) -> Ledger {
        Ledger::new(cash, &[Symbol::new("A").unwrap(), Symbol::new("B").unwrap()])
    }

    proptest! {
        // A fixed seed, so CI runs the same cases every time; no files of
        // failures: a case it finds becomes a unit test below.
        #![proptest_config(Config {
            cases: 3_000,
            rng_seed: RngSeed::Fixed(12),
            failure_persistence: None,
            ..Config::default()
        })]

        #[test]
        fn extremes_never_panic_and_a_refusal_changes_nothing(
            cash in start_cash(),
            ops in prop::collection::vec(op(), 1..30),
        ) {
            let mut ledger = ledger(cash);
            for (k, op) in ops.iter().enumerate() {
                let before = format!("{ledger:?}");
                if apply(&mut ledger, k, op) {
                    // The totals always agree, exactly.
                    prop_assert_eq!(ledger.cash.checked_add(ledger.positions_value), Some(ledger.equity()), "after {:?}", op);
                } else {
                    prop_assert_eq!(&before, &format!("{ledger:?}"), "a refused {:?} changed the ledger", op);
                }
            }
        }

        #[test]
        fn equity_is_cash_plus_marked_positions_exactly(
            cash in prop_oneof![Just(Decimal::from(10_000)), moderate(-2..=6)],
            ops in prop::collection::vec(moderate_op(), 1..40),
        ) {
            let mut ledger = ledger(cash);
            for (k, op) in ops.iter().enumerate() {
                if apply(&mut ledger, k, op) {
                    prop_assert_eq!(Some(ledger.equity()), ledger.recomputed_equity(), "after {:?}", op);
                }
            }
        }
    }
}
