//! `twap-execution`: works each order as a time-weighted average price
//! (TWAP) algorithm through the host's venue (`strata:plugin/venue`).
//!
//! An order of quantity Q is split into `slices` children of Q / `slices`
//! (rounded down to 8 decimals; the last child takes what is left), the
//! first placed when the order arrives and one more every `interval-bars`
//! bars. Children have the parent's order type, prices and time in force.
//! The venue fills them by its own rules: with the reference
//! `sim-execution` and `fill = "next-open"`, the market children of an order
//! made on bar t fill at the opens of bars t+1, t+2, ... In live mode they
//! are real orders at the exchange.
//!
//! When the venue cancels or rejects a child (a size below the exchange's
//! minimum, say), the algorithm stops working that order: it cancels the
//! children still working and closes the order, rejected if nothing filled,
//! cancelled otherwise, quoting the venue's reason.

use plugin_sdk::rust_decimal::RoundingStrategy;
use plugin_sdk::{
    Bar, ChildOrder, ChildState, ChildStatus, Config, Decimal, Error, ExecAlgorithm, Manifest, Order,
    OrderEvent, Param, Result, Venue,
};

/// Most children per order: the host allows 999.
const MAX_SLICES: i64 = 100;

pub struct Twap {
    slices: u32,
    interval_bars: u32,
    working: Vec<Parent>,
}

struct Parent {
    order: Order,
    children: Vec<u64>,
    placed: Decimal,
    bars_since_last: u32,
}

impl Twap {
    fn child_quantity(&self, parent: &Parent) -> Decimal {
        let left = parent.order.quantity - parent.placed;
        let placed = parent.children.len() as u32;
        if placed + 1 >= self.slices {
            return left;
        }
        let slice = (parent.order.quantity / Decimal::from(self.slices))
            .round_dp_with_strategy(8, RoundingStrategy::ToZero);
        if slice.is_zero() { left } else { slice.min(left) }
    }

    fn place_next(&self, parent: &mut Parent, venue: &mut dyn Venue) -> Result<()> {
        let quantity = self.child_quantity(parent);
        if quantity <= Decimal::ZERO {
            return Ok(());
        }
        let o = &parent.order;
        let child = ChildOrder {
            parent_id: o.id,
            quantity,
            order_type: o.order_type,
            limit_price: o.limit_price,
            stop_price: o.stop_price,
            time_in_force: o.time_in_force,
        };
        let state = venue.place(child)?;
        parent.children.push(state.id);
        parent.placed += quantity;
        parent.bars_since_last = 0;
        Ok(())
    }
}

/// What became of a parent's children so far.
enum Progress {
    Working,
    Done,
    /// The venue ended a child without filling it: stop working the order.
    Stopped {
        filled: Decimal,
        why: String,
    },
}

fn progress(parent: &Parent, states: &[ChildState]) -> Progress {
    let filled: Decimal = states.iter().map(|s| s.filled_quantity).sum();
    if let Some(ended) =
        states.iter().find(|s| matches!(s.status, ChildStatus::Cancelled | ChildStatus::Rejected))
    {
        let why = format!("child {}: {}", ended.id, ended.reason.as_deref().unwrap_or("ended by the venue"));
        return Progress::Stopped { filled, why };
    }
    if filled >= parent.order.quantity { Progress::Done } else { Progress::Working }
}

impl ExecAlgorithm for Twap {
    fn manifest() -> Manifest {
        Manifest::new(
            "TWAP: splits each order into equal child orders, one every few bars, at the host's venue",
        )
        .param(Param::int("slices", 4, "child orders per order (1 to 100)"))
        .param(Param::int("interval-bars", 1, "bars between child orders (1 to 1000)"))
    }

    fn new(config: &Config) -> Result<Self> {
        let slices = config.int("slices")?;
        if !(1..=MAX_SLICES).contains(&slices) {
            return Err(Error::new(format!("`slices` must be between 1 and {MAX_SLICES}, got {slices}")));
        }
        let interval = config.int("interval-bars")?;
        if !(1..=1000).contains(&interval) {
            return Err(Error::new(format!("`interval-bars` must be between 1 and 1000, got {interval}")));
        }
        Ok(Twap { slices: slices as u32, interval_bars: interval as u32, working: Vec::new() })
    }

    fn fill_model(&self) -> String {
        format!(
            "TWAP: each order split into {} child orders, one every {} bar(s), filled by the venue",
            self.slices, self.interval_bars
        )
    }

    fn submit(
        &mut self,
        order: Order,
        _bar: &Bar,
        venue: &mut dyn Venue,
        closed: &mut Vec<OrderEvent>,
    ) -> Result<()> {
        let mut parent = Parent { order, children: Vec::new(), placed: Decimal::ZERO, bars_since_last: 0 };
        if let Err(e) = self.place_next(&mut parent, venue) {
            closed.push(OrderEvent::Rejected { order_id: parent.order.id, reason: e.message().to_owned() });
            return Ok(());
        }
        self.working.push(parent);
        Ok(())
    }

    fn on_bar(&mut self, _bar: &Bar, venue: &mut dyn Venue, closed: &mut Vec<OrderEvent>) -> Result<()> {
        let mut still = Vec::with_capacity(self.working.len());
        for mut parent in std::mem::take(&mut self.working) {
            let states = parent.children.iter().map(|id| venue.query(*id)).collect::<Result<Vec<_>>>()?;
            match progress(&parent, &states) {
                Progress::Done => continue,
                Progress::Stopped { filled, why } => {
                    for s in states.iter().filter(|s| s.is_working()) {
                        venue.cancel(s.id)?;
                    }
                    let order_id = parent.order.id;
                    closed.push(if filled.is_zero() {
                        OrderEvent::Rejected { order_id, reason: why }
                    } else {
                        OrderEvent::Cancelled { order_id, reason: why }
                    });
                    continue;
                }
                Progress::Working => {}
            }
            parent.bars_since_last += 1;
            let all_placed = parent.placed >= parent.order.quantity;
            if !all_placed && parent.bars_since_last >= self.interval_bars {
                self.place_next(&mut parent, venue)?;
            }
            still.push(parent);
        }
        self.working = still;
        Ok(())
    }

    fn cancel(&mut self, order_id: u64, venue: &mut dyn Venue, closed: &mut Vec<OrderEvent>) -> Result<()> {
        let Some(at) = self.working.iter().position(|p| p.order.id == order_id) else { return Ok(()) };
        let parent = self.working.remove(at);
        for id in parent.children {
            venue.cancel(id)?;
        }
        closed.push(OrderEvent::Cancelled { order_id, reason: "cancelled".into() });
        Ok(())
    }
}

plugin_sdk::export_exec_algorithm!(Twap);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::NextOpenVenue;
    use plugin_sdk::{OrderType, Side, TimeInForce};

    fn bar(ts: i64, open: f64) -> Bar {
        Bar { ts, open, high: open + 1.0, low: open - 1.0, close: open, volume: 1.0 }
    }

    fn order(quantity: &str) -> Order {
        Order {
            id: 7,
            symbol: "BTC-USD".into(),
            side: Side::Buy,
            quantity: quantity.parse().unwrap(),
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
            created_at: 0,
        }
    }

    fn twap(slices: i64, interval: i64) -> Twap {
        let config =
            Config::defaults(&Twap::manifest()).with("slices", slices).with("interval-bars", interval);
        Twap::new(&config).unwrap()
    }

    #[test]
    fn splits_an_order_into_equal_children_one_per_interval() {
        let (mut algo, mut venue, mut closed) = (twap(3, 2), NextOpenVenue::new(), Vec::new());
        venue.parent(7, "1".parse().unwrap());
        algo.submit(order("1"), &bar(0, 100.0), &mut venue, &mut closed).unwrap();
        for ts in 1..=6 {
            venue.advance(&bar(ts, 100.0 + ts as f64));
            algo.on_bar(&bar(ts, 100.0 + ts as f64), &mut venue, &mut closed).unwrap();
        }
        let quantities: Vec<String> = venue.children().iter().map(|c| c.quantity.to_string()).collect();
        assert_eq!(quantities, ["0.33333333", "0.33333333", "0.33333334"]);
        let prices: Vec<String> =
            venue.children().iter().map(|c| c.average_price.unwrap().to_string()).collect();
        // Placed on bars 0, 2 and 4; filled at the next opens.
        assert_eq!(prices, ["101", "103", "105"]);
        assert!(closed.is_empty(), "{closed:?}");
        assert!(algo.working.is_empty(), "the order is done once its children filled");
    }

    #[test]
    fn a_refused_child_closes_the_order_with_the_venue_reason() {
        let (mut algo, mut venue, mut closed) = (twap(2, 1), NextOpenVenue::new(), Vec::new());
        venue.parent(7, "0.1".parse().unwrap());
        algo.submit(order("1"), &bar(0, 100.0), &mut venue, &mut closed).unwrap();
        assert!(
            matches!(&closed[..], [OrderEvent::Rejected { order_id: 7, reason }] if reason.contains("more than parent order 7")),
            "{closed:?}"
        );
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let config = Config::defaults(&Twap::manifest()).with("slices", 0);
        assert!(Twap::new(&config).err().unwrap().message().contains("`slices`"));
    }
}
