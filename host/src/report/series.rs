//! The curves a run's metrics and report are made from, kept as the run goes:
//! the portfolio's equity, a buy-and-hold benchmark, and each symbol's sleeve.
//!
//! The portfolio and benchmark keep a point per timestamp, for the report's
//! charts and monthly table; each symbol's curves keep only their running
//! figures ([`Curve`]), so memory does not grow with symbols x bars.
//!
//! A symbol's sleeve is start cash / N plus that symbol's own cash flows
//! (fills and fees) plus its position marked at its close, so the sleeves add
//! up to the portfolio's equity. Fills count when their order leaves the book
//! (for the reference's market orders, the bar they fill on).

use std::io;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::metrics::{Curve, Point};
use crate::model::{Bar, Fill, Side, Symbol};
use crate::orchestrator::{LifecycleEvent, OrderRecord, Recorder};
use crate::portfolio::RoundTrip;
use crate::time::Timestamp;

/// One symbol's share of the run.
#[derive(Debug)]
pub struct SymbolSeries {
    pub symbol: Symbol,
    /// Start cash / number of symbols: the sleeve's and the benchmark's stake.
    pub allocation: Decimal,
    allocation_f64: f64,
    quantity: Decimal,
    /// `quantity` as a float: the sleeve's value per bar is for ratios only,
    /// so it is computed in floats and costs no decimal conversion per bar.
    quantity_f64: f64,
    /// Money in (sales) minus money out (purchases and fees).
    cash_flow: Decimal,
    /// `allocation + cash_flow` as a float, the sleeve's value while flat.
    flat_value: f64,
    pub traded_notional: Decimal,
    pub fees: Decimal,
    first_close: Option<f64>,
    last_close: f64,
    pub bars: u64,
    /// Bars that closed with a position open.
    pub bars_in_market: u64,
    pub sleeve: Curve,
    /// The allocation bought at the first bar's close and held.
    pub benchmark: Curve,
}

impl SymbolSeries {
    /// The benchmark's value now: the allocation until the first bar, then the
    /// allocation grown with the close.
    fn benchmark_value(&self) -> f64 {
        match self.first_close {
            Some(first) => self.allocation_f64 * (self.last_close / first),
            None => self.allocation_f64,
        }
    }
}

/// The curves of a run.
#[derive(Debug)]
pub struct Series {
    pub start_cash: Decimal,
    pub symbols: Vec<SymbolSeries>,
    /// Equity at every timestamp (the rows of `equity.csv`).
    pub portfolio: Vec<Point>,
    /// Buy-and-hold of every symbol, equal weights, at every timestamp.
    pub benchmark: Vec<Point>,
    /// Timestamps that closed with any position open.
    pub timestamps_in_market: u64,
    open_symbols: usize,
    pub traded_notional: Decimal,
    pub fees: Decimal,
    /// The last equity seen and its float, converted again only when it changes.
    last_equity: (Decimal, f64),
}

impl Series {
    /// Curves for `symbols`, whose figures will use the annual `risk_free` rate.
    pub fn new(start_cash: Decimal, symbols: &[Symbol], risk_free: f64) -> Self {
        let allocation =
            if symbols.is_empty() { start_cash } else { start_cash / Decimal::from(symbols.len()) };
        let allocation_f64 = allocation.to_f64().unwrap_or(f64::NAN);
        Series {
            start_cash,
            symbols: symbols
                .iter()
                .map(|symbol| SymbolSeries {
                    symbol: symbol.clone(),
                    allocation,
                    allocation_f64,
                    quantity: Decimal::ZERO,
                    quantity_f64: 0.0,
                    cash_flow: Decimal::ZERO,
                    flat_value: allocation_f64,
                    traded_notional: Decimal::ZERO,
                    fees: Decimal::ZERO,
                    first_close: None,
                    last_close: f64::NAN,
                    bars: 0,
                    bars_in_market: 0,
                    sleeve: Curve::new(allocation_f64, risk_free),
                    benchmark: Curve::new(allocation_f64, risk_free),
                })
                .collect(),
            portfolio: Vec::new(),
            benchmark: Vec::new(),
            timestamps_in_market: 0,
            open_symbols: 0,
            traded_notional: Decimal::ZERO,
            fees: Decimal::ZERO,
            last_equity: (Decimal::MIN, f64::NAN),
        }
    }

    pub fn start_cash_f64(&self) -> f64 {
        self.start_cash.to_f64().unwrap_or(f64::NAN)
    }
}

impl Recorder for Series {
    fn equity(&mut self, ts: Timestamp, _cash: Decimal, equity: Decimal) -> io::Result<()> {
        if self.last_equity.0 != equity {
            self.last_equity = (equity, equity.to_f64().unwrap_or(f64::NAN));
        }
        self.portfolio.push(Point { ts, value: self.last_equity.1 });
        let benchmark = self.symbols.iter().map(SymbolSeries::benchmark_value).sum();
        self.benchmark.push(Point { ts, value: benchmark });
        if self.open_symbols > 0 {
            self.timestamps_in_market += 1;
        }
        Ok(())
    }

    fn order(&mut self, order: &OrderRecord) -> io::Result<()> {
        let Some(s) = self.symbols.iter_mut().find(|s| s.symbol == order.symbol) else {
            return Ok(());
        };
        let was_open = !s.quantity.is_zero();
        if let Some(price) = order.average_price.filter(|_| !order.filled_quantity.is_zero()) {
            let notional = order.filled_quantity * price;
            match order.side {
                Side::Buy => {
                    s.cash_flow -= notional;
                    s.quantity += order.filled_quantity;
                }
                Side::Sell => {
                    s.cash_flow += notional;
                    s.quantity -= order.filled_quantity;
                }
            }
            s.traded_notional += notional;
            self.traded_notional += notional;
        }
        s.cash_flow -= order.fees;
        s.fees += order.fees;
        self.fees += order.fees;
        s.flat_value = (s.allocation + s.cash_flow).to_f64().unwrap_or(f64::NAN);
        s.quantity_f64 = s.quantity.to_f64().unwrap_or(f64::NAN);
        match (was_open, !s.quantity.is_zero()) {
            (false, true) => self.open_symbols += 1,
            (true, false) => self.open_symbols -= 1,
            _ => {}
        }
        Ok(())
    }

    fn round_trip(&mut self, _trip: &RoundTrip) -> io::Result<()> {
        Ok(())
    }

    fn bar(&mut self, symbol: usize, bar: &Bar) {
        let Some(s) = self.symbols.get_mut(symbol) else { return };
        s.first_close.get_or_insert(bar.close);
        s.last_close = bar.close;
        s.bars += 1;
        let value = if s.quantity.is_zero() {
            s.flat_value
        } else {
            s.bars_in_market += 1;
            s.flat_value + s.quantity_f64 * bar.close
        };
        s.sleeve.push(Point { ts: bar.ts, value });
        let benchmark = s.benchmark_value();
        s.benchmark.push(Point { ts: bar.ts, value: benchmark });
    }
}

/// Hands every event to each of several recorders, in order.
pub struct Tee<'a>(pub Vec<&'a mut dyn Recorder>);

impl Recorder for Tee<'_> {
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|r| r.equity(ts, cash, equity))
    }

    fn order(&mut self, order: &OrderRecord) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|r| r.order(order))
    }

    fn round_trip(&mut self, trip: &RoundTrip) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|r| r.round_trip(trip))
    }

    fn lifecycle(&mut self, event: &LifecycleEvent) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|r| r.lifecycle(event))
    }

    fn fill(&mut self, symbol: &Symbol, side: Side, fill: &Fill) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|r| r.fill(symbol, side, fill))
    }

    fn bar(&mut self, symbol: usize, bar: &Bar) {
        self.0.iter_mut().for_each(|r| r.bar(symbol, bar));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderId, OrderType, TimeInForce};
    use crate::orchestrator::OrderStatus;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn bar(ts: Timestamp, close: f64) -> Bar {
        Bar { ts, open: close, high: close, low: close, close, volume: 1.0 }
    }

    fn filled(symbol: &Symbol, side: Side, qty: &str, price: &str, fees: &str) -> OrderRecord {
        OrderRecord {
            id: OrderId(1),
            symbol: symbol.clone(),
            created_at: 0,
            side,
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Gtc,
            quantity: d(qty),
            limit_price: None,
            stop_price: None,
            status: OrderStatus::Filled,
            filled_quantity: d(qty),
            average_price: Some(d(price)),
            fees: d(fees),
            closed_at: Some(0),
            reason: String::new(),
        }
    }

    /// Two symbols, 1000 each. A buys 5 at 100 (fee 1) and marks at 110; B
    /// stays flat. A's sleeve: 1000 - 501 + 5 x 110 = 1049; the portfolio is
    /// the sum, 2049. Buy-and-hold: A 1000 x 110/100 + B 1000 x 60/50 = 2300.
    #[test]
    fn sleeves_add_up_to_equity_and_benchmark_holds_from_the_first_close() {
        let (a, b) = (Symbol::new("A").unwrap(), Symbol::new("B").unwrap());
        let mut s = Series::new(d("2000"), &[a.clone(), b.clone()], 0.0);
        s.bar(0, &bar(1, 100.0));
        s.bar(1, &bar(1, 50.0));
        s.equity(1, d("2000"), d("2000")).unwrap();
        s.order(&filled(&a, Side::Buy, "5", "100", "1")).unwrap();
        s.bar(0, &bar(2, 110.0));
        s.bar(1, &bar(2, 60.0));
        s.equity(2, d("1499"), d("2049")).unwrap();
        assert_eq!(s.symbols[0].sleeve.last_value(), 1049.0);
        assert_eq!(s.symbols[1].sleeve.last_value(), 1000.0);
        assert_eq!(s.benchmark.iter().map(|p| p.value).collect::<Vec<_>>(), [2000.0, 2300.0]);
        assert_eq!((s.symbols[0].bars_in_market, s.timestamps_in_market), (1, 1));
        assert_eq!((s.traded_notional, s.fees), (d("500"), d("1")));
        s.order(&filled(&a, Side::Sell, "5", "120", "1.2")).unwrap();
        s.bar(0, &bar(3, 120.0));
        assert_eq!(s.symbols[0].sleeve.last_value(), 1000.0 - 501.0 + 598.8);
        assert_eq!(s.symbols[0].sleeve.points(), 3);
        assert_eq!(s.open_symbols, 0);
    }
}
