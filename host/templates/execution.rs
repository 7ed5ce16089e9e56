//! `{{name}}`: {{description}}.
//!
//! Market orders fill in full at the open of the bar after the one they were
//! created on, plus `slippage-bps` against the trader, and pay `fee-bps` of the
//! fill's notional. Other order types are rejected.

use plugin_sdk::rust_decimal::RoundingStrategy;
use plugin_sdk::{
    Bar, Config, Decimal, Error, Executor, Fill, Manifest, Order, OrderEvent, OrderType, Param, Result, Side,
};

pub struct {{type}} {
    fee_bps: Decimal,
    slippage_bps: Decimal,
    /// Orders waiting for the next bar.
    working: Vec<Order>,
}

fn bps(config: &Config, key: &str) -> Result<Decimal> {
    let value = config.float(key)?;
    if !(0.0..=1_000.0).contains(&value) {
        return Err(Error::new(format!("`{key}` must be between 0 and 1000, got {value}")));
    }
    plugin_sdk::price_to_decimal(value).ok_or_else(|| Error::new(format!("bad `{key}`")))
}

impl Executor for {{type}} {
    fn manifest() -> Manifest {
        Manifest::new("{{description}}")
            .param(Param::float("fee-bps", 10.0, "fee, in basis points of the fill's notional"))
            .param(Param::float("slippage-bps", 5.0, "price moved against the trader, in basis points"))
    }

    fn new(config: &Config) -> Result<Self> {
        Ok({{type}} { fee_bps: bps(config, "fee-bps")?, slippage_bps: bps(config, "slippage-bps")?, working: Vec::new() })
    }

    fn fill_model(&self) -> String {
        format!(
            "market orders fill at the next bar's open moved {} bps against the trader; fee {} bps of notional",
            self.slippage_bps, self.fee_bps
        )
    }

    fn submit(&mut self, order: Order, _bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()> {
        if order.order_type != OrderType::Market {
            events.push(OrderEvent::Rejected { order_id: order.id, reason: "only market orders are supported".into() });
        } else {
            self.working.push(order);
        }
        Ok(())
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()> {
        let open = plugin_sdk::price_to_decimal(bar.open).ok_or_else(|| Error::new("the bar's open is not a price"))?;
        let slip = open * self.slippage_bps / Decimal::from(10_000);
        // The host refuses fills outside the bar's range, so clamp to it.
        let (low, high) = (
            plugin_sdk::price_to_decimal(bar.low).unwrap_or(open),
            plugin_sdk::price_to_decimal(bar.high).unwrap_or(open),
        );
        for order in self.working.drain(..) {
            let price = match order.side {
                Side::Buy => (open + slip).min(high),
                Side::Sell => (open - slip).max(low),
            }
            .round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero);
            let fee = price * order.quantity * self.fee_bps / Decimal::from(10_000);
            events.push(OrderEvent::Filled(Fill {
                order_id: order.id,
                ts: bar.ts,
                price,
                quantity: order.quantity,
                fee: fee.round_dp(8),
            }));
        }
        Ok(())
    }

    fn cancel(&mut self, order_id: u64, events: &mut Vec<OrderEvent>) -> Result<()> {
        if let Some(i) = self.working.iter().position(|o| o.id == order_id) {
            self.working.remove(i);
            events.push(OrderEvent::Cancelled { order_id, reason: "cancelled on request".into() });
        }
        Ok(())
    }
}

plugin_sdk::export_executor!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, execute, market_order};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_buy_fills_at_the_next_open_plus_slippage_and_pays_the_fee() {
        let mut executor = {{type}}::new(&Config::defaults(&{{type}}::manifest())).unwrap();
        // The second bar opens at 100 (the first bar's close) and closes at 110.
        let bars = bars_from_closes(&[100.0, 110.0]);
        let events = execute(&mut executor, market_order(1, Side::Buy, "2", bars[0].ts), &bars).unwrap();
        let OrderEvent::Filled(fill) = &events[0] else { panic!("expected a fill, got {events:?}") };
        assert_eq!((fill.ts, fill.price, fill.quantity), (bars[1].ts, d("100.05"), d("2")));
        // 10 bps of 2 x 100.05.
        assert_eq!(fill.fee, d("0.2001"));
    }
}
