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
    Action, Bar, Fill, Order, OrderEvent, OrderId, Side, Signal, SizingRequest, Timestamp, price_to_decimal,
};
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
        let position = self.ledger.position(i);
        let intended = self.chains[i].intended_position(position);
        let zero = Decimal::ZERO;
        let redundant = match signal.action {
            Action::EnterLong => intended > zero,
            Action::ExitLong => intended <= zero,
            Action::EnterShort => intended < zero,
            Action::ExitShort => intended >= zero,
        };
        if redundant {
            self.stats.redundant_signals += 1;
            return Ok(());
        }
        let entering = matches!(signal.action, Action::EnterLong | Action::EnterShort);
        if entering && self.in_safe_mode() {
            self.refuse("safe mode: no new positions during the cool-down after a fault");
            return Ok(());
        }
        let side = match signal.action {
            Action::EnterShort => {
                self.refuse("short selling is not enabled (the run is long-only)");
                return Ok(());
            }
            Action::EnterLong if intended < zero => {
                self.refuse("enter-long while short: exit the short first");
                return Ok(());
            }
            Action::EnterLong | Action::ExitShort => Side::Buy,
            Action::ExitLong => Side::Sell,
        };
        if !entering {
            // Unfilled entries are cancelled first: the strategy no longer wants the position.
            self.cancel_working(i, bar, recorder)?;
            if self.ledger.position(i).is_zero() {
                return Ok(());
            }
        }

        let chain = &mut self.chains[i];
        let price = price_to_decimal(bar.close).expect("closes are validated as finite");
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
        if entering
            && quantity * price > request.equity.abs().max(Decimal::ONE) * Decimal::from(ABSURD_LEVERAGE)
        {
            return Err(invalid(format!(
                "sized an entry at {quantity} ({} at {price}), over {ABSURD_LEVERAGE} times the equity of {}",
                quantity * price,
                request.equity
            )));
        }
        if quantity.is_zero() {
            self.refuse("sized to zero");
            return Ok(());
        }

        let to_decimal = |p: Option<f64>| p.and_then(price_to_decimal);
        let order = Order {
            id: OrderId(self.next_order_id),
            symbol: request.symbol.clone(),
            side,
            quantity,
            order_type: signal.order_type,
            limit_price: to_decimal(signal.limit_price),
            stop_price: to_decimal(signal.stop_price),
            time_in_force: signal.time_in_force,
            created_at: bar.ts,
        };
        self.next_order_id += 1;
        self.stats.orders += 1;

        let mut events = Vec::new();
        let chain = &mut self.chains[i];
        chain.slices.execution.submit(&order, bar, &mut events)?;
        chain.working.push(WorkingOrder { order, filled: zero, notional: zero, fees: zero });
        self.apply_events(i, bar, &events, recorder)
    }

    /// Cancels chain `i`'s working orders through its execution slice.
    pub(super) fn cancel_working(
        &mut self,
        i: usize,
        bar: &Bar,
        recorder: &mut dyn Recorder,
    ) -> Result<(), StepError> {
        let ids: Vec<OrderId> = self.chains[i].working.iter().map(|w| w.order.id).collect();
        for id in ids {
            let mut events = Vec::new();
            self.chains[i].slices.execution.cancel(id, &mut events)?;
            self.apply_events(i, bar, &events, recorder)?;
        }
        Ok(())
    }

    /// Cancels through the slice when it is healthy, else closes the book host-side.
    pub(super) fn cancel_all(
        &mut self,
        i: usize,
        reason: &str,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let ids: Vec<OrderId> = self.chains[i].working.iter().map(|w| w.order.id).collect();
        for id in ids {
            let mut events = Vec::new();
            if self.chains[i].slices.execution.cancel(id, &mut events).is_err() {
                break;
            }
        }
        self.close_book(i, None, OrderStatus::Cancelled, reason, recorder)
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
        let label = chain.slices.execution.label();
        let invalid = |m: String| StepError::Slice(SliceError::invalid(label, m));
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
                    *so_far += fill.quantity;
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
                    let pos =
                        chain.working.iter().position(|w| w.order.id == fill.order_id).expect("checked");
                    let w = &mut chain.working[pos];
                    w.filled += fill.quantity;
                    w.notional += fill.quantity * fill.price;
                    w.fees += fill.fee;
                    let (side, done) = (w.order.side, w.filled == w.order.quantity);
                    self.stats.fills += 1;
                    if let Some(trip) =
                        self.ledger.apply_fill(i, side, fill.quantity, fill.price, fill.fee, fill.ts)
                    {
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
            let pos = chain.working.iter().position(|w| w.order.id == order_id).expect("checked");
            let w = chain.working.remove(pos);
            recorder.order(&order_record(w, status, Some(bar.ts), reason))?;
        }
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
    let open = working.order.quantity - filled_so_far;
    if fill.quantity <= Decimal::ZERO || fill.quantity > open {
        return Err(format!("fill of order {id} has quantity {}, but {open} is open", fill.quantity));
    }
    let low = price_to_decimal(bar.low).expect("validated");
    let high = price_to_decimal(bar.high).expect("validated");
    if fill.price < low || fill.price > high {
        return Err(format!(
            "fill of order {id} at {} is outside the bar's range [{low}, {high}]",
            fill.price
        ));
    }
    if fill.fee < Decimal::ZERO {
        return Err(format!("fill of order {id} has a negative fee {}", fill.fee));
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
        average_price: (!w.filled.is_zero()).then(|| w.notional / w.filled),
        fees: w.fees,
        closed_at,
        reason,
    }
}
