//! `sim-execution`: simulated fills.
//!
//! Market orders fill in full at the open of the bar after the one they were
//! created on, with a fee of `fee-bps` basis points of the fill's notional,
//! paid in cash. No slippage. Orders of other types are rejected with a reason
//! (they are recorded in `orders.csv`), not silently treated as market orders.

use plugin_sdk::{
    Bar, Config, Decimal, Error, Executor, Fill, Manifest, Order, OrderEvent, OrderType, Param, Result,
    price_to_decimal,
};

pub struct SimExecution {
    fee_bps: Decimal,
    working: Vec<Order>,
}

impl Executor for SimExecution {
    fn manifest() -> Manifest {
        Manifest::new("Simulated fills: market orders at the next bar's open, fee in basis points")
            .param(Param::float("fee-bps", 10.0, "fee per fill, in basis points of notional (10 = 0.1%)"))
    }

    fn new(config: &Config) -> Result<Self> {
        let raw = config.float("fee-bps")?;
        let fee_bps = price_to_decimal(raw)
            .filter(|f| *f >= Decimal::ZERO && *f <= Decimal::from(10_000))
            .ok_or_else(|| Error::new(format!("`fee-bps` must be between 0 and 10000, got {raw}")))?;
        Ok(SimExecution { fee_bps, working: Vec::new() })
    }

    fn fill_model(&self) -> String {
        format!(
            "market orders fill in full at the next bar's open; fee {} bps of notional, paid in cash; no slippage",
            self.fee_bps.normalize()
        )
    }

    fn submit(&mut self, order: Order, _bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()> {
        if order.order_type != OrderType::Market {
            events.push(OrderEvent::Rejected {
                order_id: order.id,
                reason: format!(
                    "{:?} orders are not supported by sim-execution; use market orders",
                    order.order_type
                ),
            });
            return Ok(());
        }
        self.working.push(order);
        Ok(())
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()> {
        let price = price_to_decimal(bar.open)
            .ok_or_else(|| Error::new(format!("bar open {} is not a price", bar.open)))?;
        for order in self.working.drain(..) {
            let fee = order.quantity * price * self.fee_bps / Decimal::from(10_000);
            events.push(OrderEvent::Filled(Fill {
                order_id: order.id,
                ts: bar.ts,
                price,
                quantity: order.quantity,
                fee,
            }));
        }
        Ok(())
    }

    fn cancel(&mut self, order_id: u64, events: &mut Vec<OrderEvent>) -> Result<()> {
        if let Some(i) = self.working.iter().position(|o| o.id == order_id) {
            self.working.remove(i);
            events.push(OrderEvent::Cancelled { order_id, reason: "cancelled by the host".into() });
        }
        Ok(())
    }
}

plugin_sdk::export_executor!(SimExecution);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::{Side, TimeInForce, testing::bars_from_closes};

    fn order(id: u64, order_type: OrderType) -> Order {
        Order {
            id,
            symbol: "BTC-USD".into(),
            side: Side::Buy,
            quantity: "0.5".parse().unwrap(),
            order_type,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
            created_at: 0,
        }
    }

    fn sim() -> SimExecution {
        SimExecution::new(&Config::defaults(&SimExecution::manifest())).unwrap()
    }

    #[test]
    fn market_orders_fill_at_the_next_open_with_the_fee() {
        let bars = bars_from_closes(&[100.0, 101.5]);
        let mut sim = sim();
        let mut events = Vec::new();
        sim.submit(order(1, OrderType::Market), &bars[0], &mut events).unwrap();
        assert!(events.is_empty(), "nothing fills on the signal bar");
        sim.on_bar(&bars[1], &mut events).unwrap();
        let OrderEvent::Filled(fill) = &events[0] else { panic!("{events:?}") };
        // Bar 1 opens at bar 0's close, 100; fee = 0.5 * 100 * 10 / 10000.
        assert_eq!(
            (fill.price, fill.fee, fill.ts),
            ("100".parse().unwrap(), "0.05".parse().unwrap(), bars[1].ts)
        );
    }

    #[test]
    fn other_order_types_are_rejected_with_a_reason() {
        let mut events = Vec::new();
        sim().submit(order(2, OrderType::Limit), &bars_from_closes(&[1.0])[0], &mut events).unwrap();
        assert!(
            matches!(&events[0], OrderEvent::Rejected { reason, .. } if reason.contains("not supported"))
        );
    }

    #[test]
    fn cancel_removes_a_working_order() {
        let mut sim = sim();
        let mut events = Vec::new();
        sim.submit(order(3, OrderType::Market), &bars_from_closes(&[1.0])[0], &mut events).unwrap();
        sim.cancel(3, &mut events).unwrap();
        assert!(matches!(events[0], OrderEvent::Cancelled { order_id: 3, .. }));
        events.clear();
        sim.on_bar(&bars_from_closes(&[1.0])[0], &mut events).unwrap();
        assert!(events.is_empty());
    }
}
