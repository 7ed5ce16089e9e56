//! `sim-execution`: simulated fills, by explicit rules.
//!
//! **Fill rule** (`fill`): which prices of a bar an order may trade at.
//! - `next-open` (the default): the open of each bar after the order's bar.
//!   Market orders fill at the next open; a limit or stop fills at an open
//!   that is through its price, at that open.
//! - `close`: the close, starting with the bar the order was made on. Market
//!   orders fill at that close; limits and stops at the first close through them.
//! - `intrabar`: each later bar's path, taken as open -> low -> high -> close for
//!   a bar that closed up and open -> high -> low -> close otherwise (the
//!   conservative order). A limit fills where the path first reaches it, at
//!   its price, or at the open if the bar gaps through it (a better price); a
//!   stop triggers where the path reaches it, at its price, or at the open if
//!   the bar gaps through it (a worse price); a stop-limit becomes a limit at
//!   its trigger point and fills from there on along the path.
//!
//! **Time in force**: `gtc` works until filled or cancelled; `day` expires at
//! the first bar of a later UTC day; `ioc` gets one chance (the first bar it
//! can trade on) and the rest is cancelled.
//!
//! **Costs**: market and stop fills pay `taker-fee-bps`, limit fills
//! `maker-fee-bps` (a stop-limit that fills at its trigger is taker), plus
//! `fixed-fee` once per order. Taker fills also pay slippage, against the
//! order and kept inside the bar's range: `none`, `fixed-bps`
//! (`slippage-bps`), `range` (`slippage-range-fraction` of the bar's high -
//! low) or `volume` (`slippage-impact-bps` times quantity / bar volume).
//!
//! **Volume cap**: with `max-volume-fraction` > 0 a fill takes at most that
//! fraction of the bar's volume (in the data's volume unit); the rest keeps
//! working (partial fills).

use plugin_sdk::{
    Bar, Config, Decimal, Error, Executor, Fill, Manifest, Order, OrderEvent, OrderType, Param, Result, Side,
    TimeInForce, price_to_decimal, rust_decimal::RoundingStrategy,
};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillRule {
    NextOpen,
    Close,
    Intrabar,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Slippage {
    None,
    FixedBps(Decimal),
    RangeFraction(Decimal),
    VolumeImpactBps(Decimal),
}

pub struct SimExecution {
    rule: FillRule,
    taker_bps: Decimal,
    maker_bps: Decimal,
    fixed_fee: Decimal,
    slippage: Slippage,
    max_volume_fraction: Option<Decimal>,
    working: Vec<Working>,
}

struct Working {
    order: Order,
    filled: Decimal,
    /// A stop-limit whose stop has been reached.
    triggered: bool,
    fixed_fee_paid: bool,
}

/// A price an order traded at, and whether it took liquidity.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Match {
    price: f64,
    taker: bool,
}

fn decimal_setting(config: &Config, key: &str, max: i64) -> Result<Decimal> {
    let raw = config.float(key)?;
    price_to_decimal(raw)
        .filter(|v| *v >= Decimal::ZERO && *v <= Decimal::from(max))
        .ok_or_else(|| Error::new(format!("`{key}` must be between 0 and {max}, got {raw}")))
}

impl Executor for SimExecution {
    fn manifest() -> Manifest {
        Manifest::new(
            "Simulated fills by explicit rules: fill rule, time in force, fees, slippage, volume cap",
        )
        .param(Param::text(
            "fill",
            "next-open",
            "which bar prices orders trade at: next-open, close or intrabar",
        ))
        .param(Param::float(
            "taker-fee-bps",
            10.0,
            "fee of market and stop fills, in basis points of notional",
        ))
        .param(Param::float("maker-fee-bps", 10.0, "fee of limit fills, in basis points of notional"))
        .param(Param::float("fixed-fee", 0.0, "fee per order, in quote currency, charged on its first fill"))
        .param(Param::text("slippage", "none", "slippage of taker fills: none, fixed-bps, range or volume"))
        .param(Param::float("slippage-bps", 0.0, "fixed-bps: adverse slippage in basis points"))
        .param(Param::float("slippage-range-fraction", 0.0, "range: fraction of the bar's high - low"))
        .param(Param::float(
            "slippage-impact-bps",
            0.0,
            "volume: basis points per unit of quantity / bar volume",
        ))
        .param(Param::float(
            "max-volume-fraction",
            0.0,
            "largest fraction of a bar's volume one fill may take; 0 = no cap",
        ))
    }

    fn new(config: &Config) -> Result<Self> {
        let rule = match config.text("fill")? {
            "next-open" => FillRule::NextOpen,
            "close" => FillRule::Close,
            "intrabar" => FillRule::Intrabar,
            other => {
                return Err(Error::new(format!(
                    "`fill` must be next-open, close or intrabar, got {other:?}"
                )));
            }
        };
        let slippage = match config.text("slippage")? {
            "none" => Slippage::None,
            "fixed-bps" => Slippage::FixedBps(decimal_setting(config, "slippage-bps", 10_000)?),
            "range" => Slippage::RangeFraction(decimal_setting(config, "slippage-range-fraction", 1)?),
            "volume" => Slippage::VolumeImpactBps(decimal_setting(config, "slippage-impact-bps", 100_000)?),
            other => {
                return Err(Error::new(format!(
                    "`slippage` must be none, fixed-bps, range or volume, got {other:?}"
                )));
            }
        };
        let cap = decimal_setting(config, "max-volume-fraction", 1)?;
        Ok(SimExecution {
            rule,
            taker_bps: decimal_setting(config, "taker-fee-bps", 10_000)?,
            maker_bps: decimal_setting(config, "maker-fee-bps", 10_000)?,
            fixed_fee: decimal_setting(config, "fixed-fee", 1_000_000_000)?,
            slippage,
            max_volume_fraction: (!cap.is_zero()).then_some(cap),
            working: Vec::new(),
        })
    }

    fn fill_model(&self) -> String {
        let rule = match self.rule {
            FillRule::NextOpen => {
                "market orders fill at the next bar's open; limits and stops at a later open through their price"
            }
            FillRule::Close => {
                "market orders fill at their bar's close; limits and stops at the first close through their price"
            }
            FillRule::Intrabar => {
                "market orders fill at the next bar's open; limits and stops along each later bar's open-low-high-close (up bar) or open-high-low-close path, at their price or a gap open"
            }
        };
        let slippage = match self.slippage {
            Slippage::None => "no slippage".to_owned(),
            Slippage::FixedBps(b) => format!("slippage {} bps on taker fills", b.normalize()),
            Slippage::RangeFraction(f) => {
                format!("slippage {} of the bar's range on taker fills", f.normalize())
            }
            Slippage::VolumeImpactBps(b) => {
                format!("slippage {} bps x quantity/volume on taker fills", b.normalize())
            }
        };
        let mut model = format!(
            "{rule}; fees: taker {} bps, maker {} bps of notional",
            self.taker_bps.normalize(),
            self.maker_bps.normalize()
        );
        if !self.fixed_fee.is_zero() {
            model += &format!(" plus {} per order", self.fixed_fee.normalize());
        }
        model += &format!(", paid in cash; {slippage}");
        if let Some(cap) = self.max_volume_fraction {
            model += &format!("; at most {} of a bar's volume per fill", cap.normalize());
        }
        model
    }

    fn submit(&mut self, order: Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()> {
        if let Some(reason) = invalid_order(&order) {
            events.push(OrderEvent::Rejected { order_id: order.id, reason });
            return Ok(());
        }
        self.working.push(Working { order, filled: Decimal::ZERO, triggered: false, fixed_fee_paid: false });
        if self.rule == FillRule::Close {
            // The order's own bar is its first chance under the close rule.
            let i = self.working.len() - 1;
            self.try_fill(i, bar, events);
            self.retire_finished(events, bar);
        }
        Ok(())
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()> {
        for i in 0..self.working.len() {
            let w = &self.working[i];
            if w.order.time_in_force == TimeInForce::Day
                && bar.ts.div_euclid(DAY_MS) > w.order.created_at.div_euclid(DAY_MS)
            {
                events.push(OrderEvent::Cancelled {
                    order_id: w.order.id,
                    reason: "expired: day order".into(),
                });
                continue;
            }
            self.try_fill(i, bar, events);
        }
        self.retire_finished(events, bar);
        Ok(())
    }

    fn cancel(&mut self, order_id: u64, events: &mut Vec<OrderEvent>) -> Result<()> {
        if let Some(i) = self.working.iter().position(|w| w.order.id == order_id) {
            self.working.remove(i);
            events.push(OrderEvent::Cancelled { order_id, reason: "cancelled by the host".into() });
        }
        Ok(())
    }
}

fn invalid_order(order: &Order) -> Option<String> {
    let positive = |p: Option<Decimal>| p.is_some_and(|v| v > Decimal::ZERO);
    match order.order_type {
        OrderType::Limit if !positive(order.limit_price) => {
            Some("limit order without a positive limit price".into())
        }
        OrderType::Stop if !positive(order.stop_price) => {
            Some("stop order without a positive stop price".into())
        }
        OrderType::StopLimit if !positive(order.limit_price) || !positive(order.stop_price) => {
            Some("stop-limit order needs positive stop and limit prices".into())
        }
        _ if order.quantity <= Decimal::ZERO => Some(format!("quantity {} is not positive", order.quantity)),
        _ => None,
    }
}

impl SimExecution {
    /// Matches working order `i` against `bar` and reports a fill if it trades.
    fn try_fill(&mut self, i: usize, bar: &Bar, events: &mut Vec<OrderEvent>) {
        let rule = self.rule;
        let w = &mut self.working[i];
        let Some(m) = match_order(w, bar, rule) else { return };
        let terms = self.terms(&self.working[i], m, bar);
        let w = &mut self.working[i];
        match terms {
            Some(Some(FillTerms { price, quantity, fee, filled })) => {
                w.fixed_fee_paid = true;
                w.filled = filled;
                events.push(OrderEvent::Filled(Fill {
                    order_id: w.order.id,
                    ts: bar.ts,
                    price,
                    quantity,
                    fee,
                }));
            }
            Some(None) => {}
            None => events.push(OrderEvent::Rejected {
                order_id: w.order.id,
                reason: "the fill's price, notional or fee is beyond what a decimal holds".into(),
            }),
        }
    }

    /// The terms of `w`'s fill at `m`: `Some(None)` when nothing is available
    /// to fill, `None` when an amount is beyond what a decimal holds. Checked
    /// throughout: prices and quantities from the host are bounded, but a
    /// fill this slice cannot compute exactly is rejected, never a panic.
    fn terms(&self, w: &Working, m: Match, bar: &Bar) -> Option<Option<FillTerms>> {
        let open = w.order.quantity.checked_sub(w.filled)?;
        let quantity = match self.max_volume_fraction {
            Some(cap) => {
                let available = price_to_decimal(bar.volume).unwrap_or_default().checked_mul(cap)?;
                open.min(available.round_dp_with_strategy(8, RoundingStrategy::ToZero))
            }
            None => open,
        };
        if quantity <= Decimal::ZERO {
            return Some(None);
        }
        let price = slipped(self.slippage, m, w.order.side, quantity, bar)?;
        let bps = if m.taker { self.taker_bps } else { self.maker_bps };
        let notional = quantity.checked_mul(price)?;
        let mut fee = notional.checked_mul(bps)?.checked_div(Decimal::from(10_000))?;
        if !w.fixed_fee_paid {
            // A fee is never more than what the fill is worth (the host
            // refuses that): a fixed fee on a tiny fill is capped.
            fee = fee.checked_add(self.fixed_fee)?.min(notional);
        }
        Some(Some(FillTerms { price, quantity, fee, filled: w.filled.checked_add(quantity)? }))
    }

    /// Reports filled orders as done and IOC orders' remainders as cancelled.
    fn retire_finished(&mut self, events: &mut Vec<OrderEvent>, _bar: &Bar) {
        let closed: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                OrderEvent::Cancelled { order_id, .. } | OrderEvent::Rejected { order_id, .. } => {
                    Some(*order_id)
                }
                _ => None,
            })
            .collect();
        let mut ioc_done = Vec::new();
        self.working.retain(|w| {
            if closed.contains(&w.order.id) || w.filled == w.order.quantity {
                return false;
            }
            if w.order.time_in_force == TimeInForce::Ioc {
                ioc_done.push(w.order.id);
                return false;
            }
            true
        });
        for order_id in ioc_done {
            events.push(OrderEvent::Cancelled {
                order_id,
                reason: "immediate-or-cancel: rest not filled".into(),
            });
        }
    }
}

/// A fill's price, quantity and fee, and the order's filled quantity after it.
struct FillTerms {
    price: Decimal,
    quantity: Decimal,
    fee: Decimal,
    filled: Decimal,
}

/// The fill price after slippage: against the order, never outside the bar.
/// `None` when a price is not an exact decimal or the slippage overflows.
fn slipped(slippage: Slippage, m: Match, side: Side, quantity: Decimal, bar: &Bar) -> Option<Decimal> {
    let price = price_to_decimal(m.price)?;
    if !m.taker {
        return Some(price);
    }
    let ten_k = Decimal::from(10_000);
    let slip = match slippage {
        Slippage::None => return Some(price),
        Slippage::FixedBps(bps) => price.checked_mul(bps)?.checked_div(ten_k)?,
        Slippage::RangeFraction(f) => {
            let (high, low) =
                (price_to_decimal(bar.high).unwrap_or(price), price_to_decimal(bar.low).unwrap_or(price));
            high.checked_sub(low)?.checked_mul(f)?
        }
        Slippage::VolumeImpactBps(bps) => match price_to_decimal(bar.volume).filter(|v| !v.is_zero()) {
            Some(volume) => {
                price.checked_mul(bps)?.checked_div(ten_k)?.checked_mul(quantity)?.checked_div(volume)?
            }
            None => Decimal::ZERO,
        },
    };
    let (low, high) =
        (price_to_decimal(bar.low).unwrap_or(price), price_to_decimal(bar.high).unwrap_or(price));
    Some(match side {
        Side::Buy => {
            price.checked_add(slip)?.round_dp_with_strategy(8, RoundingStrategy::AwayFromZero).min(high)
        }
        Side::Sell => price.checked_sub(slip)?.round_dp_with_strategy(8, RoundingStrategy::ToZero).max(low),
    })
}

/// The prices of `bar` an order may trade at under `rule`, in time order, and
/// whether the price moves continuously between them.
fn path(bar: &Bar, rule: FillRule) -> (Vec<f64>, bool) {
    match rule {
        FillRule::NextOpen => (vec![bar.open], false),
        FillRule::Close => (vec![bar.close], false),
        FillRule::Intrabar if bar.close >= bar.open => (vec![bar.open, bar.low, bar.high, bar.close], true),
        FillRule::Intrabar => (vec![bar.open, bar.high, bar.low, bar.close], true),
    }
}

fn to_f64(d: Option<Decimal>) -> f64 {
    d.and_then(|d| d.to_string().parse().ok()).unwrap_or(f64::NAN)
}

/// Where along the bar's path the order trades, if it does.
fn match_order(w: &mut Working, bar: &Bar, rule: FillRule) -> Option<Match> {
    let (points, continuous) = path(bar, rule);
    let buy = w.order.side == Side::Buy;
    // `reaches(p, level)`: a buy limit is reached at or below its price, a sell limit at or above.
    let limit_ok = |p: f64, limit: f64| if buy { p <= limit } else { p >= limit };
    let stop_hit = |p: f64, stop: f64| if buy { p >= stop } else { p <= stop };
    match w.order.order_type {
        OrderType::Market => Some(Match { price: points[0], taker: true }),
        OrderType::Limit => {
            let limit = to_f64(w.order.limit_price);
            first_reach(&points, continuous, |p| limit_ok(p, limit), limit)
                .map(|price| Match { price, taker: false })
        }
        OrderType::Stop => {
            let stop = to_f64(w.order.stop_price);
            first_reach(&points, continuous, |p| stop_hit(p, stop), stop)
                .map(|price| Match { price, taker: true })
        }
        OrderType::StopLimit => {
            let (stop, limit) = (to_f64(w.order.stop_price), to_f64(w.order.limit_price));
            // Where the stop triggers: (index of the path point from which to
            // continue, price at the trigger).
            let trigger = if w.triggered {
                Some((0, points[0]))
            } else {
                first_reach_at(&points, continuous, |p| stop_hit(p, stop), stop)
            };
            let (from, price) = trigger?;
            w.triggered = true;
            if limit_ok(price, limit) {
                return Some(Match { price, taker: true });
            }
            let mut rest = vec![price];
            rest.extend_from_slice(&points[from + 1..]);
            first_reach(&rest, continuous, |p| limit_ok(p, limit), limit)
                .map(|price| Match { price, taker: false })
        }
    }
}

/// The price at which the path first satisfies `reached`: a path point if it
/// already does (a gap), else `level` where a continuous segment crosses it.
fn first_reach(points: &[f64], continuous: bool, reached: impl Fn(f64) -> bool, level: f64) -> Option<f64> {
    first_reach_at(points, continuous, reached, level).map(|(_, price)| price)
}

fn first_reach_at(
    points: &[f64],
    continuous: bool,
    reached: impl Fn(f64) -> bool,
    level: f64,
) -> Option<(usize, f64)> {
    for (k, &p) in points.iter().enumerate() {
        if reached(p) {
            return Some((k, p));
        }
        if continuous
            && let Some(&next) = points.get(k + 1)
            && reached(next)
        {
            // The segment p -> next crosses `level` on the way.
            return Some((k, level));
        }
    }
    None
}

plugin_sdk::export_executor!(SimExecution);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::DAY;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn bar(day: i64, open: f64, high: f64, low: f64, close: f64) -> Bar {
        Bar { ts: plugin_sdk::testing::START + day * DAY, open, high, low, close, volume: 100.0 }
    }

    fn order(id: u64, side: Side, order_type: OrderType, limit: Option<&str>, stop: Option<&str>) -> Order {
        Order {
            id,
            symbol: "X".into(),
            side,
            quantity: d("2"),
            order_type,
            limit_price: limit.map(d),
            stop_price: stop.map(d),
            time_in_force: TimeInForce::Gtc,
            created_at: plugin_sdk::testing::START,
        }
    }

    fn sim(settings: &[(&str, &str)]) -> SimExecution {
        let mut config = Config::defaults(&SimExecution::manifest());
        for (k, v) in settings {
            config = match v.parse::<f64>() {
                Ok(f) => config.with(k, f),
                Err(_) => config.with(k, *v),
            };
        }
        SimExecution::new(&config).unwrap()
    }

    /// Submits on bar 0, then feeds `later` bars; returns the fills as (day, price, fee).
    fn run(sim: &mut SimExecution, order: Order, later: &[Bar]) -> Vec<(i64, Decimal, Decimal, Decimal)> {
        let mut events = Vec::new();
        sim.submit(order, &bar(0, 100.0, 101.0, 99.0, 100.0), &mut events).unwrap();
        for b in later {
            sim.on_bar(b, &mut events).unwrap();
        }
        events
            .into_iter()
            .filter_map(|e| match e {
                OrderEvent::Filled(f) => {
                    Some(((f.ts - plugin_sdk::testing::START) / DAY, f.price, f.quantity, f.fee))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn limit_and_stop_fills_by_rule_table() {
        // (rule, order, bar 1 O/H/L/C, expected fill price on bar 1 or None)
        type Case = (
            &'static str,
            Side,
            OrderType,
            Option<&'static str>,
            Option<&'static str>,
            [f64; 4],
            Option<&'static str>,
        );
        let cases: [Case; 12] = [
            // A buy limit at 95: touched inside the range -> its price; gapped through -> the open.
            (
                "intrabar",
                Side::Buy,
                OrderType::Limit,
                Some("95"),
                None,
                [100.0, 101.0, 94.0, 96.0],
                Some("95"),
            ),
            ("intrabar", Side::Buy, OrderType::Limit, Some("95"), None, [93.0, 97.0, 92.0, 96.0], Some("93")),
            ("intrabar", Side::Buy, OrderType::Limit, Some("95"), None, [100.0, 101.0, 96.0, 97.0], None),
            // Under next-open only the open counts.
            ("next-open", Side::Buy, OrderType::Limit, Some("95"), None, [100.0, 101.0, 94.0, 96.0], None),
            (
                "next-open",
                Side::Buy,
                OrderType::Limit,
                Some("95"),
                None,
                [94.5, 101.0, 94.0, 96.0],
                Some("94.5"),
            ),
            // Under close only the close counts.
            ("close", Side::Buy, OrderType::Limit, Some("95"), None, [100.0, 101.0, 93.0, 94.0], Some("94")),
            // A sell stop at 95: crossed -> its price; gapped below -> the (worse) open.
            (
                "intrabar",
                Side::Sell,
                OrderType::Stop,
                None,
                Some("95"),
                [100.0, 101.0, 94.0, 96.0],
                Some("95"),
            ),
            ("intrabar", Side::Sell, OrderType::Stop, None, Some("95"), [90.0, 92.0, 89.0, 91.0], Some("90")),
            // A buy stop at 105 on a down bar: open 100 -> high 106 reaches it first.
            (
                "intrabar",
                Side::Buy,
                OrderType::Stop,
                None,
                Some("105"),
                [100.0, 106.0, 98.0, 99.0],
                Some("105"),
            ),
            // Buy stop-limit 105/104: triggered at 105 on the way up, the limit
            // is not reached at the trigger, but the path comes back down to 104.
            (
                "intrabar",
                Side::Buy,
                OrderType::StopLimit,
                Some("104"),
                Some("105"),
                [100.0, 106.0, 98.0, 99.0],
                Some("104"),
            ),
            // Buy stop-limit 105/107: fills at the trigger (marketable).
            (
                "intrabar",
                Side::Buy,
                OrderType::StopLimit,
                Some("107"),
                Some("105"),
                [100.0, 106.0, 98.0, 99.0],
                Some("105"),
            ),
            // Up bar, open -> low -> high: a sell limit at 103 fills on the way up.
            (
                "intrabar",
                Side::Sell,
                OrderType::Limit,
                Some("103"),
                None,
                [100.0, 104.0, 99.0, 103.5],
                Some("103"),
            ),
        ];
        for (i, (rule, side, order_type, limit, stop, [o, h, l, c], want)) in cases.into_iter().enumerate() {
            let mut s = sim(&[("fill", rule)]);
            let fills = run(&mut s, order(1, side, order_type, limit, stop), &[bar(1, o, h, l, c)]);
            let got = fills.first().map(|f| f.1);
            // Under the close rule the creation bar (close 100) comes first; none of these cases fill there.
            assert_eq!(got, want.map(d), "case {i}: {rule} {side:?} {order_type:?}");
        }
    }

    #[test]
    fn market_orders_by_rule() {
        let next = bar(1, 101.5, 102.0, 101.0, 101.8);
        assert_eq!(
            run(&mut sim(&[]), order(1, Side::Buy, OrderType::Market, None, None), &[next])[0].1,
            d("101.5")
        );
        let at_close =
            run(&mut sim(&[("fill", "close")]), order(1, Side::Buy, OrderType::Market, None, None), &[next]);
        assert_eq!((at_close[0].0, at_close[0].1), (0, d("100")), "fills on its own bar's close");
    }

    #[test]
    fn fees_maker_taker_and_fixed() {
        let mut s = sim(&[("taker-fee-bps", "10"), ("maker-fee-bps", "2"), ("fixed-fee", "1.5")]);
        let market = run(
            &mut s,
            order(1, Side::Buy, OrderType::Market, None, None),
            &[bar(1, 100.0, 101.0, 99.0, 100.0)],
        );
        // 2 x 100 x 10 bps + 1.5
        assert_eq!(market[0].3, d("1.7"));
        let mut s = sim(&[("fill", "intrabar"), ("taker-fee-bps", "10"), ("maker-fee-bps", "2")]);
        let limit = run(
            &mut s,
            order(1, Side::Buy, OrderType::Limit, Some("99.5"), None),
            &[bar(1, 100.0, 101.0, 99.0, 100.0)],
        );
        // 2 x 99.5 x 2 bps
        assert_eq!(limit[0].3, d("0.0398"));
    }

    #[test]
    fn slippage_models_move_taker_fills_against_the_order_within_the_bar() {
        let b = bar(1, 100.0, 104.0, 96.0, 101.0);
        let buy = || order(1, Side::Buy, OrderType::Market, None, None);
        let price = |settings: &[(&str, &str)]| run(&mut sim(settings), buy(), &[b])[0].1;
        assert_eq!(price(&[("slippage", "fixed-bps"), ("slippage-bps", "50")]), d("100.5"));
        assert_eq!(price(&[("slippage", "range"), ("slippage-range-fraction", "0.25")]), d("102"));
        // 100 bps x (2 / 100 volume) = 2 bps of 100.
        assert_eq!(price(&[("slippage", "volume"), ("slippage-impact-bps", "100")]), d("100.02"));
        // Never outside the bar: 50% of the range would be 104 + 4.
        assert_eq!(price(&[("slippage", "range"), ("slippage-range-fraction", "1")]), d("104"));
        let sell = order(2, Side::Sell, OrderType::Market, None, None);
        let p = run(&mut sim(&[("slippage", "fixed-bps"), ("slippage-bps", "50")]), sell, &[b])[0].1;
        assert_eq!(p, d("99.5"));
    }

    #[test]
    fn volume_cap_splits_into_partial_fills() {
        let mut s = sim(&[("max-volume-fraction", "0.01")]);
        // 1% of 100 volume = 1 per bar; the order is for 2.
        let fills = run(
            &mut s,
            order(1, Side::Buy, OrderType::Market, None, None),
            &[bar(1, 100.0, 101.0, 99.0, 100.0), bar(2, 101.0, 102.0, 100.0, 101.0)],
        );
        assert_eq!(fills.iter().map(|f| (f.0, f.2)).collect::<Vec<_>>(), vec![(1, d("1")), (2, d("1"))]);
    }

    #[test]
    fn time_in_force() {
        // A day order made on day 0 expires at day 1's first bar.
        let mut s = sim(&[]);
        let mut events = Vec::new();
        let mut day_order = order(1, Side::Buy, OrderType::Limit, Some("50"), None);
        day_order.time_in_force = TimeInForce::Day;
        s.submit(day_order, &bar(0, 100.0, 101.0, 99.0, 100.0), &mut events).unwrap();
        s.on_bar(&bar(1, 100.0, 101.0, 99.0, 100.0), &mut events).unwrap();
        assert!(matches!(&events[0], OrderEvent::Cancelled { reason, .. } if reason.contains("day order")));
        // IOC gets one bar, then the rest is cancelled.
        let mut s = sim(&[("max-volume-fraction", "0.01")]);
        let mut events = Vec::new();
        let mut ioc = order(2, Side::Buy, OrderType::Market, None, None);
        ioc.time_in_force = TimeInForce::Ioc;
        s.submit(ioc, &bar(0, 100.0, 101.0, 99.0, 100.0), &mut events).unwrap();
        s.on_bar(&bar(1, 100.0, 101.0, 99.0, 100.0), &mut events).unwrap();
        assert!(matches!(events[0], OrderEvent::Filled(ref f) if f.quantity == d("1")));
        assert!(
            matches!(&events[1], OrderEvent::Cancelled { reason, .. } if reason.contains("immediate-or-cancel"))
        );
        assert!(s.working.is_empty());
    }

    #[test]
    fn orders_without_their_prices_are_rejected() {
        let mut events = Vec::new();
        sim(&[])
            .submit(
                order(3, Side::Buy, OrderType::Limit, None, None),
                &bar(0, 1.0, 1.0, 1.0, 1.0),
                &mut events,
            )
            .unwrap();
        assert!(matches!(&events[0], OrderEvent::Rejected { reason, .. } if reason.contains("limit price")));
    }

    #[test]
    fn cancel_removes_a_working_order() {
        let mut s = sim(&[]);
        let mut events = Vec::new();
        s.submit(
            order(4, Side::Buy, OrderType::Market, None, None),
            &bar(0, 1.0, 1.0, 1.0, 1.0),
            &mut events,
        )
        .unwrap();
        s.cancel(4, &mut events).unwrap();
        assert!(matches!(events[0], OrderEvent::Cancelled { order_id: 4, .. }));
        events.clear();
        s.on_bar(&bar(1, 1.0, 1.0, 1.0, 1.0), &mut events).unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn prices_and_quantities_beyond_a_decimal_reject_instead_of_panicking() {
        // A subnormal open has no exact decimal; an open of 1e300 x a
        // quantity of 1e15 is beyond Decimal's 7.9e28. Either rejects the order.
        for (open, quantity) in [(5e-324, "1"), (1e27, "1000000000000000")] {
            let mut s = sim(&[("slippage", "fixed-bps"), ("slippage-bps", "10")]);
            let mut events = Vec::new();
            let mut o = order(1, Side::Buy, OrderType::Market, None, None);
            o.quantity = d(quantity);
            s.submit(o, &bar(0, 1.0, 1.0, 1.0, 1.0), &mut events).unwrap();
            s.on_bar(&bar(1, open, open, open, open), &mut events).unwrap();
            assert!(
                matches!(&events[..], [OrderEvent::Rejected { order_id: 1, reason }] if reason.contains("beyond")),
                "{open:e}: {events:?}"
            );
        }
    }

    #[test]
    fn a_fixed_fee_is_never_more_than_the_fill() {
        // A fixed fee of 5 on a fill worth 2 x 1 = 2 is capped at 2.
        let mut s = sim(&[("fixed-fee", "5"), ("taker-fee-bps", "0"), ("slippage", "none")]);
        let mut events = Vec::new();
        s.submit(
            order(1, Side::Buy, OrderType::Market, None, None),
            &bar(0, 1.0, 1.0, 1.0, 1.0),
            &mut events,
        )
        .unwrap();
        s.on_bar(&bar(1, 1.0, 1.0, 1.0, 1.0), &mut events).unwrap();
        assert!(matches!(&events[0], OrderEvent::Filled(f) if f.fee == d("2")), "{events:?}");
    }

    #[test]
    fn the_reference_settings_describe_themselves() {
        let model = sim(&[]).fill_model();
        assert!(model.starts_with("market orders fill at the next bar's open"), "{model}");
        assert!(model.contains("taker 10 bps"), "{model}");
    }
}
