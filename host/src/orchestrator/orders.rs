//! From a strategy's signal to an order, through sizing, the risk gate and
//! the execution slice; and the execution slice's reports, checked and
//! applied to the ledger.

use std::collections::BTreeMap;
use std::io;

use rust_decimal::Decimal;

use super::{Backtest, OrderRecord, OrderStatus, Recorder, RunError, WorkingOrder};

/// Largest notional a sized order may have, as a multiple of equity: anything
/// above is taken as a broken sizer, not a decision.
const ABSURD_LEVERAGE: i64 = 100;
use crate::model::{
    Action, Bar, Fill, MAX_QUANTITY, Order, OrderEvent, OrderId, OrderType, Side, Signal, SizingRequest,
    Timestamp, checked_price, decimal_to_price, price_in_range, price_to_decimal,
};
use crate::risk::{Proposal, Refusal};
use crate::slice::SliceError;
use crate::time::iso;

impl Backtest<'_> {
    pub(super) fn refuse(&mut self, reason: &str) {
        self.stats.refused_signals += 1;
        *self.refusals.entry(reason.to_owned()).or_default() += 1;
    }

    pub(super) fn in_safe_mode(&self) -> bool {
        self.safe_until.is_some_and(|until| self.stats.timestamps < until)
    }

    pub(super) fn on_signal(
        &mut self,
        i: usize,
        signal: &Signal,
        bar: &Bar,
        recorder: &mut dyn Recorder,
    ) -> Result<(), StepError> {
        self.stats.signals += 1;
        // The host's closing order is working: a decision now could cancel
        // or cross it, so none is acted on until it is done.
        if self.chains[i].liquidating.is_some() || self.chains[i].liquidate.is_some() {
            self.refuse("host liquidation in progress: no new decisions until it is done");
            return Ok(());
        }
        let zero = Decimal::ZERO;
        let entering = matches!(signal.action, Action::EnterLong | Action::EnterShort);
        // The side of the order this signal would place, and the direction of
        // the position it is about (+1 long, -1 short).
        let (side, direction) = match signal.action {
            Action::EnterLong => (Side::Buy, Decimal::ONE),
            Action::ExitLong => (Side::Sell, Decimal::ONE),
            Action::EnterShort => (Side::Sell, Decimal::NEGATIVE_ONE),
            Action::ExitShort => (Side::Buy, Decimal::NEGATIVE_ONE),
        };
        // Working orders the other way are what the strategy no longer wants
        // (a pending exit when it says enter, a pending entry when it says exit).
        let opposite = if side == Side::Buy { Side::Sell } else { Side::Buy };
        self.cancel_side(i, opposite, bar, recorder)?;

        let held = self.ledger.position(i) * direction;
        let redundant = if entering { held > zero } else { held <= zero };
        if redundant {
            self.stats.redundant_signals += 1;
            return Ok(());
        }
        if entering && held < zero {
            let other = if direction > zero { "short" } else { "long" };
            self.refuse(&format!("{} while {other}: exit the {other} first", signal.action.as_str()));
            return Ok(());
        }
        // An order for this is already working: the same one stays, a
        // different one replaces it (cancel and replace).
        if !self.chains[i].working.is_empty() {
            if self.chains[i].working.iter().any(|w| same_order(&w.order, signal)) {
                self.stats.redundant_signals += 1;
                return Ok(());
            }
            self.cancel_side(i, side, bar, recorder)?;
        }
        if entering && self.in_safe_mode() {
            self.refuse("safe mode: no new positions during the cool-down after a fault");
            return Ok(());
        }
        if signal.action == Action::EnterShort && !self.settings.shorting.enabled {
            self.refuse("short selling is not enabled (the run is long-only; see [shorting])");
            return Ok(());
        }

        let chain = &mut self.chains[i];
        // Bars are range-checked where they enter (`check_bar`), so this
        // only fails for a bar that bypassed that check.
        let price = checked_price("close", bar.close)
            .map_err(|m| StepError::Slice(SliceError::invalid(chain.slices.data.label(), m)))?;
        let request = SizingRequest {
            symbol: chain.symbol.clone(),
            action: signal.action,
            ts: bar.ts,
            price,
            equity: self.ledger.equity(),
            cash: self.ledger.cash(),
            position: self.ledger.position(i),
        };
        let quantity = chain.slices.sizing.size(&request)?;
        let label = chain.slices.sizing.label();
        let invalid = |m: String| StepError::Slice(SliceError::invalid(label, m));
        if quantity < zero {
            return Err(invalid(format!(
                "sized a {} order at {quantity}; quantities cannot be negative",
                signal.action.as_str()
            )));
        }
        if !entering && quantity > request.position.abs() {
            return Err(invalid(format!(
                "sized an exit at {quantity}, more than the position of {}",
                request.position.abs()
            )));
        }
        // Both products fit: quantity and price are in range, and equity is
        // bounded by what the ledger holds; checked all the same.
        let notional = quantity.checked_mul(price);
        let ceiling = request.equity.abs().max(Decimal::ONE).checked_mul(Decimal::from(ABSURD_LEVERAGE));
        if entering && notional.zip(ceiling).is_none_or(|(notional, ceiling)| notional > ceiling) {
            return Err(invalid(format!(
                "sized an entry at {quantity} (at {price}), over {ABSURD_LEVERAGE} times the equity of {}",
                request.equity
            )));
        }
        if quantity > MAX_QUANTITY {
            return Err(invalid(format!(
                "sized a {} order at {quantity}, over the largest supported quantity of {MAX_QUANTITY}",
                signal.action.as_str()
            )));
        }
        if quantity.is_zero() {
            self.refuse("sized to zero");
            return Ok(());
        }

        // The strategy's prices were range-checked with its batch
        // (`check_signal`); a price that still does not convert is refused,
        // never dropped, so no order goes out without the price it was given.
        let strategy = self.chains[i].slices.strategy.label();
        let to_decimal = |field: &str, p: Option<f64>| {
            p.map(|v| checked_price(field, v))
                .transpose()
                .map_err(|m| StepError::Slice(SliceError::invalid(strategy, m)))
        };
        let (limit_price, stop_price) =
            (to_decimal("limit-price", signal.limit_price)?, to_decimal("stop-price", signal.stop_price)?);
        let order = Order {
            id: OrderId(self.next_order_id),
            symbol: request.symbol.clone(),
            side,
            quantity,
            order_type: signal.order_type,
            limit_price,
            stop_price,
            time_in_force: signal.time_in_force,
            created_at: bar.ts,
        };
        self.next_order_id += 1;
        self.stats.orders += 1;

        if entering && let Err(refusal) = self.check_risk(i, &order, price, request.equity) {
            let key = format!("risk: {}", refusal.0.split(':').next().unwrap_or("risk"));
            self.refuse(&key);
            let symbol = &self.chains[i].symbol;
            self.refusal_examples.entry(key).or_insert_with(|| super::RefusalExample {
                symbol: symbol.clone(),
                at: iso(bar.ts),
                detail: refusal.0.clone(),
            });
            let w = WorkingOrder { order, filled: zero, notional: zero, fees: zero, host_reason: None };
            recorder.order(&order_record(
                w,
                OrderStatus::Refused,
                Some(bar.ts),
                format!("risk gate: {refusal}"),
            ))?;
            return Ok(());
        }

        let mut events = Vec::new();
        let chain = &mut self.chains[i];
        chain.slices.execution.submit(&order, bar, &mut events)?;
        chain.working.push(WorkingOrder {
            order,
            filled: zero,
            notional: zero,
            fees: zero,
            host_reason: None,
        });
        self.apply_events(i, bar, &events, recorder)?;
        self.update_lifecycle(i, bar.ts, false, recorder)?;
        Ok(())
    }

    /// The risk gate's verdict on an order that opens or grows a position,
    /// valued at its reference price: the close for market orders, else its
    /// limit (or, for a plain stop, its stop) price. Gross exposure counts
    /// the other symbols' entries still working, valued the same way, so
    /// entries signalled at the same close cannot together borrow.
    fn check_risk(
        &mut self,
        i: usize,
        order: &Order,
        close: Decimal,
        equity: Decimal,
    ) -> Result<(), Refusal> {
        let reference = match order.order_type {
            OrderType::Market => close,
            OrderType::Stop => order.stop_price.unwrap_or(close),
            OrderType::Limit | OrderType::StopLimit => order.limit_price.unwrap_or(close),
        };
        let signed = if order.side == Side::Buy { order.quantity } else { -order.quantity };
        // Checked: an order the gate cannot value exactly is refused, not approved.
        let valued = || {
            let after = self.ledger.position(i).checked_add(signed)?.checked_mul(reference)?;
            Some(Proposal {
                notional: order.quantity.checked_mul(reference)?,
                position_value_after: after,
                gross_after: self
                    .ledger
                    .gross_exposure_except(i)?
                    .checked_add(after.abs())?
                    .checked_add(self.pending_entries_except(i)?)?,
                adjustments: (!self.ledger.position(i).is_zero()).then(|| self.adjustments(i)).flatten(),
            })
        };
        let proposal = valued().ok_or_else(|| {
            Refusal(format!(
                "valuation: the order ({} at {reference}) or the positions after it are beyond what a decimal holds",
                order.quantity
            ))
        })?;
        self.gate.check_entry(&proposal, equity)
    }

    /// Value of the working orders of every symbol but `except` that would
    /// open or grow a position, each at its reference price (market orders
    /// at the symbol's latest close). `None` if it leaves the decimal range.
    fn pending_entries_except(&self, except: usize) -> Option<Decimal> {
        let mut total = Decimal::ZERO;
        for chain in self.chains.iter().filter(|c| c.index != except) {
            let held = self.ledger.position(chain.index);
            for w in &chain.working {
                let buying = w.order.side == Side::Buy;
                let grows = held.is_zero() || (held > Decimal::ZERO) == buying;
                if !grows {
                    continue;
                }
                let reference = match w.order.order_type {
                    OrderType::Market => self.ledger.mark_price(chain.index).and_then(price_to_decimal),
                    OrderType::Stop => w.order.stop_price,
                    OrderType::Limit | OrderType::StopLimit => w.order.limit_price,
                };
                let open = w.order.quantity.checked_sub(w.filled)?;
                total = total.checked_add(open.checked_mul(reference.unwrap_or(Decimal::ZERO))?)?;
            }
        }
        Some(total)
    }

    /// Cancels chain `i`'s working orders on `side` through its execution slice.
    fn cancel_side(
        &mut self,
        i: usize,
        side: Side,
        bar: &Bar,
        recorder: &mut dyn Recorder,
    ) -> Result<(), StepError> {
        let ids: Vec<OrderId> =
            self.chains[i].working.iter().filter(|w| w.order.side == side).map(|w| w.order.id).collect();
        for id in ids {
            let mut events = Vec::new();
            self.chains[i].slices.execution.cancel(id, &mut events)?;
            self.apply_events(i, bar, &events, recorder)?;
        }
        Ok(())
    }

    /// Cancels through the slice when it is healthy, else closes the book
    /// host-side. The host's own closing orders are left working.
    ///
    /// When the host liquidates through the execution slot (live mode), the
    /// slot's answers are applied as they come: an order it reports
    /// cancelled leaves the book, one whose cancellation it has asked for
    /// but not confirmed (fills may still come) stays working until the slot
    /// reports how it ended, so the ledger follows the venue.
    pub(super) fn cancel_all(
        &mut self,
        i: usize,
        reason: &str,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let ids: Vec<OrderId> =
            self.chains[i].working.iter().filter(|w| w.host_reason.is_none()).map(|w| w.order.id).collect();
        let through = self.settings.liquidation == super::Liquidation::ThroughExecution;
        let bar = self.chains[i].last_bar;
        for id in ids {
            let mut events = Vec::new();
            if self.chains[i].slices.execution.cancel(id, &mut events).is_err() {
                break;
            }
            if through && let Some(bar) = bar {
                match self.apply_events(i, &bar, &events, recorder) {
                    Ok(()) => {}
                    Err(StepError::Io(e)) => return Err(RunError::Io(e)),
                    Err(StepError::Slice(e)) => {
                        tracing::warn!(symbol = %self.chains[i].symbol, "cancelling order {id}: {e}");
                        break;
                    }
                }
            }
        }
        if through && bar.is_some() {
            return Ok(());
        }
        let chain = &mut self.chains[i];
        let (host, strategy): (Vec<_>, Vec<_>) =
            chain.working.drain(..).partition(|w| w.host_reason.is_some());
        chain.working = strategy;
        self.close_book(i, None, OrderStatus::Cancelled, reason, recorder)?;
        self.chains[i].working.extend(host);
        Ok(())
    }

    /// Records every working order of chain `i` as closed with `status` and
    /// forgets it (the run ended, or the host cancelled it after a fault).
    pub(super) fn close_book(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        status: OrderStatus,
        reason: &str,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        for w in self.chains[i].working.drain(..) {
            let reason = if status == OrderStatus::Working { String::new() } else { reason.to_owned() };
            recorder.order(&order_record(w, status, at, reason))?;
        }
        Ok(())
    }

    /// Checks every event against the order book and the bar, then applies
    /// them all: a bad event leaves the ledger untouched.
    pub(super) fn apply_events(
        &mut self,
        i: usize,
        bar: &Bar,
        events: &[OrderEvent],
        recorder: &mut dyn Recorder,
    ) -> Result<(), StepError> {
        let chain = &self.chains[i];
        let label = chain.slices.execution.label().clone();
        let invalid = |m: String| StepError::Slice(SliceError::invalid(&label, m));
        let mut filled: BTreeMap<OrderId, Decimal> = BTreeMap::new();
        let mut closed: Vec<OrderId> = Vec::new();
        for event in events {
            let id = event_order(event);
            let w = chain
                .working
                .iter()
                .find(|w| w.order.id == id)
                .filter(|_| !closed.contains(&id))
                .ok_or_else(|| invalid(format!("event for order {id}, which is not working")))?;
            match event {
                OrderEvent::Filled(fill) => {
                    let so_far = filled.entry(id).or_insert(w.filled);
                    check_fill(fill, w, *so_far, bar).map_err(invalid)?;
                    // Cannot overflow: check_fill keeps it at most the order's quantity.
                    *so_far = so_far.checked_add(fill.quantity).unwrap_or(w.order.quantity);
                    if *so_far == w.order.quantity {
                        closed.push(id);
                    }
                }
                OrderEvent::Cancelled { .. } | OrderEvent::Rejected { .. } => closed.push(id),
            }
        }
        for event in events {
            let chain = &mut self.chains[i];
            let (order_id, status, reason) = match event {
                OrderEvent::Filled(fill) => {
                    let id = fill.order_id;
                    let ledger_error = |e: crate::portfolio::LedgerError| {
                        StepError::Slice(SliceError::invalid(&label, format!("fill of order {id}: {e}")))
                    };
                    let missing = || invalid(format!("event for order {id}, which is not working"));
                    let w = chain.working.iter_mut().find(|w| w.order.id == id).ok_or_else(missing)?;
                    let book = w
                        .filled
                        .checked_add(fill.quantity)
                        .zip(fill.quantity.checked_mul(fill.price).and_then(|n| w.notional.checked_add(n)))
                        .zip(w.fees.checked_add(fill.fee));
                    let Some(((filled, notional), fees)) = book else {
                        return Err(ledger_error(crate::portfolio::LedgerError(
                            "the order's totals are beyond what a decimal holds".into(),
                        )));
                    };
                    let side = w.order.side;
                    // The ledger first: a fill it cannot hold is refused before it is recorded.
                    let trip = self
                        .ledger
                        .try_apply_fill(i, side, fill.quantity, fill.price, fill.fee, fill.ts)
                        .map_err(ledger_error)?;
                    (w.filled, w.notional, w.fees) = (filled, notional, fees);
                    let done = w.filled == w.order.quantity;
                    self.stats.fills += 1;
                    recorder.fill(&chain.symbol, side, fill)?;
                    if let Some(trip) = trip {
                        recorder.round_trip(&trip)?;
                    }
                    if !done {
                        continue;
                    }
                    (fill.order_id, OrderStatus::Filled, String::new())
                }
                OrderEvent::Cancelled { order_id, reason } => {
                    (*order_id, OrderStatus::Cancelled, reason.clone())
                }
                OrderEvent::Rejected { order_id, reason } => {
                    (*order_id, OrderStatus::Rejected, reason.clone())
                }
            };
            let chain = &mut self.chains[i];
            let Some(pos) = chain.working.iter().position(|w| w.order.id == order_id) else {
                return Err(invalid(format!("event for order {order_id}, which is not working")));
            };
            let w = chain.working.remove(pos);
            let reason = match (&w.host_reason, status) {
                (None, _) => reason,
                (Some(why), OrderStatus::Filled) => format!("host liquidation: {why}"),
                (Some(why), _) => format!("host liquidation: {why}; {reason}"),
            };
            recorder.order(&order_record(w, status, Some(bar.ts), reason))?;
        }
        self.update_lifecycle(i, bar.ts, false, recorder)?;
        Ok(())
    }
}

/// What can go wrong inside a step: a slice fault (for the policy) or I/O.
pub(super) enum StepError {
    Slice(SliceError),
    Io(io::Error),
}

impl From<SliceError> for StepError {
    fn from(e: SliceError) -> Self {
        StepError::Slice(e)
    }
}

impl From<io::Error> for StepError {
    fn from(e: io::Error) -> Self {
        StepError::Io(e)
    }
}

fn event_order(event: &OrderEvent) -> OrderId {
    match event {
        OrderEvent::Filled(f) => f.order_id,
        OrderEvent::Cancelled { order_id, .. } | OrderEvent::Rejected { order_id, .. } => *order_id,
    }
}

fn check_fill(fill: &Fill, working: &WorkingOrder, filled_so_far: Decimal, bar: &Bar) -> Result<(), String> {
    let id = fill.order_id;
    if fill.ts != bar.ts {
        return Err(format!(
            "fill of order {id} is dated {}, but the bar being processed is {}",
            iso(fill.ts),
            iso(bar.ts)
        ));
    }
    let open = working.order.quantity.checked_sub(filled_so_far).unwrap_or(Decimal::ZERO);
    if fill.quantity <= Decimal::ZERO || fill.quantity > open {
        return Err(format!("fill of order {id} has quantity {}, but {open} is open", fill.quantity));
    }
    // Compared as the f64s on the wire: a slice that prints a bar's price
    // with other shortest digits (a tie broken the other way) names the
    // same price, and is inside the bar.
    let price = decimal_to_price(fill.price);
    if !(bar.low <= price && price <= bar.high && price_in_range(fill.price)) {
        let (low, high) = (price_to_decimal(bar.low), price_to_decimal(bar.high));
        let show = |d: Option<Decimal>, f: f64| d.map_or_else(|| format!("{f:e}"), |d| d.to_string());
        return Err(format!(
            "fill of order {id} at {} is outside the bar's range [{}, {}]",
            fill.price,
            show(low, bar.low),
            show(high, bar.high)
        ));
    }
    if fill.fee < Decimal::ZERO {
        return Err(format!("fill of order {id} has a negative fee {}", fill.fee));
    }
    // A fee is at most what the fill is worth (the cap `faults.liquidation-fee-bps`
    // has too): more is a broken fee model, and an absurd fee would take the
    // ledger's money beyond what it can hold.
    let notional = fill.quantity.checked_mul(fill.price);
    if notional.is_none_or(|notional| fill.fee > notional) {
        return Err(format!(
            "fill of order {id} has a fee of {}, more than the fill's notional ({} x {})",
            fill.fee, fill.quantity, fill.price
        ));
    }
    Ok(())
}

pub(super) fn order_record(
    w: WorkingOrder,
    status: OrderStatus,
    closed_at: Option<Timestamp>,
    reason: String,
) -> OrderRecord {
    OrderRecord {
        id: w.order.id,
        symbol: w.order.symbol,
        created_at: w.order.created_at,
        side: w.order.side,
        order_type: w.order.order_type,
        time_in_force: w.order.time_in_force,
        quantity: w.order.quantity,
        limit_price: w.order.limit_price,
        stop_price: w.order.stop_price,
        status,
        filled_quantity: w.filled,
        average_price: w.notional.checked_div(w.filled),
        fees: w.fees,
        closed_at,
        reason,
    }
}

/// True when `order` is what `signal` would place (type, prices, time in force).
fn same_order(order: &Order, signal: &Signal) -> bool {
    let price = |p: Option<f64>| p.and_then(price_to_decimal);
    order.order_type == signal.order_type
        && order.limit_price == price(signal.limit_price)
        && order.stop_price == price(signal.stop_price)
        && order.time_in_force == signal.time_in_force
}
