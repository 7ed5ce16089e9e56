//! The `venue` interface (new in `strata:plugin@0.1.1`): an execution slice
//! works each order the host hands it (the parent) by placing child orders
//! at a venue the host stands behind. In backtests and paper trading the
//! venue is the simulator the config names (`[slices.execution.venue]`,
//! itself an execution slice that fills orders); in live mode it is the
//! exchange router, which signs and journals every request.
//!
//! The host checks every child against its parent before the venue sees it,
//! and books the venue's fills of children as fills of their parent: what
//! fills, and at what price, is never the working slice's say.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use wasmtime::component::HasSelf;

use super::instance::{WasmSlice, decimal_to_wire, parse_decimal};
use super::sandbox::SliceState;
use crate::bindings::{execution, types as wire, venue};
use crate::model::{Bar, Fill, Order, OrderEvent, OrderId, OrderType, TimeInForce};
use crate::slice::{ExecutionSlice, Failure, Slice, SliceError, SliceHealth, SliceLabel, SliceResult};
use crate::text::{self, bound_owned};

/// Most child orders one parent may have; child ids are
/// `parent id * CHILD_ID_BASE + n`, so they are unique and the same on
/// every replay of a session (live mode derives client order ids from them).
pub const MAX_CHILDREN_PER_PARENT: u64 = 999;
const CHILD_ID_BASE: u64 = 1000;

pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<SliceState>) -> wasmtime::Result<()> {
    venue::add_to_linker::<SliceState, HasSelf<SliceState>>(linker, |s| s)
}

/// The host's side of one execution instance's venue: its parents, their
/// children, and the venue they go to.
pub(crate) struct VenueDesk {
    venue: Box<dyn ExecutionSlice>,
    parents: BTreeMap<u64, Parent>,
    children: BTreeMap<u64, Child>,
    /// The bar the call in progress is about: the bar a new parent was
    /// created on, or the bar `on-bar` advanced to. Children are created on it.
    bar: Option<Bar>,
    /// Fills of children not yet handed to the orchestrator, as fills of their parents.
    fills: Vec<OrderEvent>,
    /// The venue itself failed during the call in progress (a simulator
    /// trapped, an exchange answer made no sense): the execution slot fails
    /// with this error, whatever the working slice answers.
    failure: Option<SliceError>,
    /// Time spent in the venue during the call in progress: not the
    /// working slice's CPU time, so it extends the slice's deadline.
    pub(crate) waited: Duration,
}

struct Parent {
    order: Order,
    /// Quantity of its children that filled or may still fill.
    committed: Decimal,
    filled: Decimal,
    children: u64,
    open: bool,
    /// A host liquidation sent as it is: no slice works it, so the host
    /// closes it when the venue ends its child unfilled.
    direct: bool,
    /// How it closes once the venue has ended its working children (a
    /// cancel takes effect when the venue confirms it; a fill may come first).
    closing: Option<OrderEvent>,
}

struct Child {
    order: Order,
    parent: u64,
    status: venue::ChildStatus,
    filled: Decimal,
    notional: Decimal,
    fees: Decimal,
    reason: Option<String>,
}

impl VenueDesk {
    pub(crate) fn new(venue: Box<dyn ExecutionSlice>) -> Self {
        VenueDesk {
            venue,
            parents: BTreeMap::new(),
            children: BTreeMap::new(),
            bar: None,
            fills: Vec::new(),
            failure: None,
            waited: Duration::ZERO,
        }
    }

    fn begin(&mut self, bar: Option<&Bar>) {
        if let Some(bar) = bar {
            self.bar = Some(*bar);
        }
        self.waited = Duration::ZERO;
    }

    /// Runs `f` against the venue, timing it and keeping its first failure.
    fn at_venue<R>(&mut self, f: impl FnOnce(&mut dyn ExecutionSlice) -> SliceResult<R>) -> Option<R> {
        let started = Instant::now();
        let result = f(self.venue.as_mut());
        self.waited += started.elapsed();
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.failure.get_or_insert(error);
                None
            }
        }
    }

    fn venue_invalid(&mut self, message: String) {
        let error = SliceError { label: self.venue.label().clone(), failure: Failure::Invalid(message) };
        self.failure.get_or_insert(error);
    }

    fn open_parent(&mut self, order: &Order) {
        let parent = Parent {
            order: order.clone(),
            committed: Decimal::ZERO,
            filled: Decimal::ZERO,
            children: 0,
            open: true,
            direct: false,
            closing: None,
        };
        self.parents.insert(order.id.0, parent);
    }

    fn place(&mut self, request: venue::ChildOrder) -> Result<venue::ChildState, String> {
        self.place_at_venue(request, false)
    }

    fn place_at_venue(
        &mut self,
        request: venue::ChildOrder,
        liquidation: bool,
    ) -> Result<venue::ChildState, String> {
        let Some(bar) = self.bar else { return Err("no bar has reached the execution slice yet".into()) };
        let parent_id = request.parent_id;
        let parent =
            self.parents.get_mut(&parent_id).filter(|p| p.open && p.closing.is_none()).ok_or_else(|| {
                format!("order {parent_id} is not a working parent order of this execution slice")
            })?;
        let quantity = parse_decimal("quantity", &request.quantity)?;
        let price = |field: &str, text: Option<String>| -> Result<Option<Decimal>, String> {
            let value = text.map(|t| parse_decimal(field, &t)).transpose()?;
            match value {
                Some(v) if v <= Decimal::ZERO => Err(format!("`{field}` must be positive, got {v}")),
                _ => Ok(value),
            }
        };
        let limit_price = price("limit-price", request.limit_price)?;
        let stop_price = price("stop-price", request.stop_price)?;
        let order_type = order_type_from_wire(request.order_type);
        let needs_limit = matches!(order_type, OrderType::Limit | OrderType::StopLimit);
        let needs_stop = matches!(order_type, OrderType::Stop | OrderType::StopLimit);
        if needs_limit != limit_price.is_some() || needs_stop != stop_price.is_some() {
            return Err(format!(
                "a {order_type:?} child order {} a limit price and {} a stop price",
                if needs_limit { "needs" } else { "takes no" },
                if needs_stop { "needs" } else { "takes no" }
            )
            .to_lowercase());
        }
        if quantity <= Decimal::ZERO {
            return Err(format!("child quantity must be positive, got {quantity}"));
        }
        let left = parent.order.quantity - parent.committed;
        if quantity > left {
            return Err(format!(
                "a child of {quantity} is more than parent order {parent_id} has left to place: {left} of {} \
                 ({} filled or working in earlier children)",
                parent.order.quantity.normalize(),
                parent.committed.normalize()
            ));
        }
        if parent.children >= MAX_CHILDREN_PER_PARENT {
            return Err(format!(
                "parent order {parent_id} already has {MAX_CHILDREN_PER_PARENT} children, the most allowed"
            ));
        }
        let id = parent_id
            .checked_mul(CHILD_ID_BASE)
            .and_then(|base| base.checked_add(parent.children + 1))
            .ok_or_else(|| format!("parent order id {parent_id} is too large to number its children"))?;
        parent.children += 1;
        parent.committed += quantity;
        let order = Order {
            id: OrderId(id),
            symbol: parent.order.symbol.clone(),
            side: parent.order.side,
            quantity,
            order_type,
            limit_price,
            stop_price,
            time_in_force: tif_from_wire(request.time_in_force),
            created_at: bar.ts,
        };
        self.children.insert(
            id,
            Child {
                order: order.clone(),
                parent: parent_id,
                status: venue::ChildStatus::Working,
                filled: Decimal::ZERO,
                notional: Decimal::ZERO,
                fees: Decimal::ZERO,
                reason: None,
            },
        );
        let mut events = Vec::new();
        let sent = self.at_venue(|v| {
            if liquidation {
                v.submit_liquidation(&order, &bar, &mut events)
            } else {
                v.submit(&order, &bar, &mut events)
            }
        });
        if sent.is_none() {
            return Err(self.failed());
        }
        self.absorb(events);
        self.state(id)
    }

    fn cancel(&mut self, id: u64) -> Result<venue::ChildState, String> {
        let child = self.children.get(&id).ok_or_else(|| format!("there is no child order {id}"))?;
        if child.status == venue::ChildStatus::Working {
            let mut events = Vec::new();
            if self.at_venue(|v| v.cancel(OrderId(id), &mut events)).is_none() {
                return Err(self.failed());
            }
            self.absorb(events);
        }
        self.state(id)
    }

    fn failed(&self) -> String {
        let why = self.failure.as_ref().map(|e| e.to_string()).unwrap_or_default();
        format!(
            "the venue failed ({}); the host stops this order's chain with its error",
            bound_owned(why, 512)
        )
    }

    fn state(&self, id: u64) -> Result<venue::ChildState, String> {
        let child = self.children.get(&id).ok_or_else(|| format!("there is no child order {id}"))?;
        let average_price = (!child.filled.is_zero())
            .then(|| child.notional.checked_div(child.filled))
            .flatten()
            .map(decimal_to_wire);
        Ok(venue::ChildState {
            id,
            parent_id: child.parent,
            status: child.status,
            quantity: decimal_to_wire(child.order.quantity),
            filled_quantity: decimal_to_wire(child.filled),
            average_price,
            fees: decimal_to_wire(child.fees),
            reason: child.reason.clone(),
        })
    }

    /// Applies what the venue reported about children, turning their fills
    /// into fills of their parents. An event the venue had no business
    /// reporting fails the venue.
    fn absorb(&mut self, events: Vec<OrderEvent>) {
        for event in events {
            if let Err(message) = self.absorb_one(event) {
                self.venue_invalid(message);
            }
        }
    }

    fn absorb_one(&mut self, event: OrderEvent) -> Result<(), String> {
        let id = match &event {
            OrderEvent::Filled(f) => f.order_id,
            OrderEvent::Cancelled { order_id, .. } | OrderEvent::Rejected { order_id, .. } => *order_id,
        };
        let child = self
            .children
            .get_mut(&id.0)
            .filter(|c| c.status == venue::ChildStatus::Working)
            .ok_or_else(|| format!("reported on order {id}, which is not a working child order"))?;
        let remaining = child.order.quantity - child.filled;
        let rejected = matches!(event, OrderEvent::Rejected { .. });
        let parent = self.parents.get_mut(&child.parent).ok_or("a child without its parent")?;
        match event {
            OrderEvent::Filled(fill) => {
                if fill.quantity <= Decimal::ZERO || fill.quantity > remaining {
                    return Err(format!(
                        "filled {} of child order {id}, which had {remaining} unfilled",
                        fill.quantity
                    ));
                }
                let notional = fill
                    .quantity
                    .checked_mul(fill.price)
                    .and_then(|n| child.notional.checked_add(n))
                    .ok_or_else(|| format!("the notional of child order {id}'s fills overflows"))?;
                child.notional = notional;
                child.fees = child.fees.checked_add(fill.fee).ok_or("fees overflow")?;
                child.filled += fill.quantity;
                if child.filled == child.order.quantity {
                    child.status = venue::ChildStatus::Filled;
                }
                parent.filled += fill.quantity;
                if parent.filled >= parent.order.quantity {
                    parent.open = false;
                }
                self.fills.push(OrderEvent::Filled(Fill { order_id: parent.order.id, ..fill }));
            }
            OrderEvent::Cancelled { reason, .. } | OrderEvent::Rejected { reason, .. } => {
                child.status =
                    if rejected { venue::ChildStatus::Rejected } else { venue::ChildStatus::Cancelled };
                child.reason = Some(bound_owned(reason, text::DESCRIPTION_MAX));
                parent.committed -= remaining;
            }
        }
        Ok(())
    }

    /// Cancels every working child of `parent`; it closes as `close` once
    /// the venue has ended them all.
    fn close_parent(&mut self, parent: u64, close: OrderEvent) {
        let working: Vec<u64> = self
            .children
            .iter()
            .filter(|(_, c)| c.parent == parent && c.status == venue::ChildStatus::Working)
            .map(|(id, _)| *id)
            .collect();
        if let Some(p) = self.parents.get_mut(&parent) {
            p.closing.get_or_insert(close);
        }
        for id in working {
            let mut events = Vec::new();
            if self.at_venue(|v| v.cancel(OrderId(id), &mut events)).is_some() {
                self.absorb(events);
            }
        }
    }

    /// Parents with no child left working that are closing, or are host
    /// liquidations the venue ended unfilled: their close events (with the
    /// venue's reason for a liquidation; the orchestrator reports what is
    /// left open).
    fn settle_closes(&mut self) -> Vec<OrderEvent> {
        let mut closes = Vec::new();
        for (id, parent) in self.parents.iter_mut().filter(|(_, p)| p.open) {
            let mine = self.children.values().filter(|c| c.parent == *id);
            if mine.clone().any(|c| c.status == venue::ChildStatus::Working) {
                continue;
            }
            if let Some(close) = parent.closing.take() {
                parent.open = false;
                closes.push(close);
            } else if parent.direct {
                let reason = mine
                    .filter_map(|c| c.reason.clone())
                    .next_back()
                    .unwrap_or_else(|| "ended by the venue".into());
                parent.open = false;
                let order_id = parent.order.id;
                closes.push(if parent.filled.is_zero() {
                    OrderEvent::Rejected { order_id, reason }
                } else {
                    OrderEvent::Cancelled { order_id, reason }
                });
            }
        }
        closes
    }

    fn any_child_working(&self) -> bool {
        self.children.values().any(|c| c.status == venue::ChildStatus::Working)
    }
}

impl venue::Host for SliceState {
    fn place(&mut self, order: venue::ChildOrder) -> Result<venue::ChildState, String> {
        self.desk()?.place(order)
    }

    fn cancel(&mut self, id: u64) -> Result<venue::ChildState, String> {
        self.desk()?.cancel(id)
    }

    fn query(&mut self, id: u64) -> Result<venue::ChildState, String> {
        self.desk()?.state(id)
    }
}

impl SliceState {
    fn desk(&mut self) -> Result<&mut VenueDesk, String> {
        self.venue.as_mut().ok_or_else(|| {
            "strata:plugin/venue is only for execution slices the host gave a venue to".to_owned()
        })
    }
}

/// An execution slice that works orders through the venue: the component,
/// with the desk in its store.
pub(crate) struct RoutedExecution {
    inner: WasmSlice<execution::Guest>,
}

impl RoutedExecution {
    pub(crate) fn new(mut inner: WasmSlice<execution::Guest>, venue: Box<dyn ExecutionSlice>) -> Self {
        inner.attach_venue(VenueDesk::new(venue));
        RoutedExecution { inner }
    }

    fn desk(&mut self) -> &mut VenueDesk {
        self.inner.venue_desk().expect("a routed execution slice always has its desk")
    }

    /// Hands the orchestrator the venue's fills (as fills of parents), then
    /// the parents the slice closed. A failure of the venue is the slot's
    /// failure, whatever the slice answered.
    fn finish(
        &mut self,
        answered: SliceResult<()>,
        own: Vec<OrderEvent>,
        events: &mut Vec<OrderEvent>,
    ) -> SliceResult<()> {
        if let Some(error) = self.desk().failure.take() {
            return Err(error);
        }
        answered?;
        for event in own {
            match event {
                OrderEvent::Filled(fill) => {
                    return Err(self.inner.invalid_output(format!(
                        "reported a fill of order {} itself; an execution slice that imports \
                         strata:plugin/venue gets its fills from the venue",
                        fill.order_id
                    )));
                }
                OrderEvent::Cancelled { order_id, .. } | OrderEvent::Rejected { order_id, .. } => {
                    let desk = self.desk();
                    match desk.parents.get(&order_id.0) {
                        None => {
                            return Err(self.inner.invalid_output(format!(
                                "closed order {order_id}, which it was never given"
                            )));
                        }
                        // Filled in full by the venue first, or closing already.
                        Some(p) if p.filled >= p.order.quantity || p.closing.is_some() => {}
                        Some(_) => desk.close_parent(order_id.0, event),
                    }
                }
            }
        }
        if let Some(error) = self.desk().failure.take() {
            return Err(error);
        }
        let desk = self.desk();
        let closes = desk.settle_closes();
        events.append(&mut desk.fills);
        events.extend(closes);
        // Finished parents are forgotten; their children with them.
        let done: Vec<u64> = desk.parents.iter().filter(|(_, p)| !p.open).map(|(id, _)| *id).collect();
        for id in done {
            desk.parents.remove(&id);
            desk.children.retain(|_, c| c.parent != id);
        }
        Ok(())
    }
}

impl Slice for RoutedExecution {
    fn label(&self) -> &SliceLabel {
        self.inner.label()
    }

    fn health(&self) -> SliceHealth {
        self.inner.health()
    }

    // Neither saved nor restored: a restarted session rebuilds the slice,
    // its desk and the simulated venue by replaying its bars (live mode's
    // venue journal answers for the exchange).
}

impl ExecutionSlice for RoutedExecution {
    fn fill_model(&mut self) -> SliceResult<String> {
        let working = self.inner.fill_model()?;
        let venue = self.desk().venue.fill_model()?;
        Ok(bound_owned(format!("{working}; at the venue: {venue}"), text::DESCRIPTION_MAX))
    }

    fn submit(&mut self, order: &Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        let desk = self.desk();
        desk.begin(Some(bar));
        desk.open_parent(order);
        let mut own = Vec::new();
        let answered = self.inner.submit(order, bar, &mut own);
        self.finish(answered, own, events)
    }

    /// The host's own closing order goes to the venue as it is, one child
    /// for the whole quantity: a position must close even when the slice
    /// that would work it is the one that failed.
    fn submit_liquidation(
        &mut self,
        order: &Order,
        bar: &Bar,
        events: &mut Vec<OrderEvent>,
    ) -> SliceResult<()> {
        let desk = self.desk();
        desk.begin(Some(bar));
        desk.open_parent(order);
        if let Some(p) = desk.parents.get_mut(&order.id.0) {
            p.direct = true;
        }
        let child = venue::ChildOrder {
            parent_id: order.id.0,
            quantity: decimal_to_wire(order.quantity),
            order_type: order_type_to_wire(order.order_type),
            limit_price: order.limit_price.map(decimal_to_wire),
            stop_price: order.stop_price.map(decimal_to_wire),
            time_in_force: tif_to_wire(order.time_in_force),
        };
        let mut own = Vec::new();
        if let Err(refused) = desk.place_at_venue(child, true) {
            own.push(OrderEvent::Rejected { order_id: order.id, reason: refused });
        }
        self.finish(Ok(()), own, events)
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        let desk = self.desk();
        desk.begin(Some(bar));
        // The venue moves first: children fill on this bar by its rules,
        // and the slice sees the result when it is called.
        if desk.any_child_working() {
            let mut fills = Vec::new();
            if desk.at_venue(|v| v.on_bar(bar, &mut fills)).is_some() {
                desk.absorb(fills);
            }
            if let Some(error) = desk.failure.take() {
                return Err(error);
            }
        }
        let mut own = Vec::new();
        let answered = self.inner.on_bar(bar, &mut own);
        self.finish(answered, own, events)
    }

    fn cancel(&mut self, order_id: OrderId, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.desk().begin(None);
        let mut own = Vec::new();
        let answered = self.inner.cancel(order_id, &mut own);
        // The host's cancel is final: a parent the slice left open is closed here.
        let closed_by_slice = own.iter().any(|e| {
            matches!(e, OrderEvent::Cancelled { order_id: id, .. } | OrderEvent::Rejected { order_id: id, .. } if *id == order_id)
        });
        let still_open = self.desk().parents.get(&order_id.0).is_some_and(|p| p.open && p.closing.is_none());
        if answered.is_ok() && !closed_by_slice && still_open {
            own.push(OrderEvent::Cancelled {
                order_id,
                reason: "cancelled by the host (the execution slice left it working)".into(),
            });
        }
        self.finish(answered, own, events)
    }
}

fn order_type_from_wire(t: wire::OrderType) -> OrderType {
    match t {
        wire::OrderType::Market => OrderType::Market,
        wire::OrderType::Limit => OrderType::Limit,
        wire::OrderType::Stop => OrderType::Stop,
        wire::OrderType::StopLimit => OrderType::StopLimit,
    }
}

fn tif_from_wire(t: wire::TimeInForce) -> TimeInForce {
    match t {
        wire::TimeInForce::Gtc => TimeInForce::Gtc,
        wire::TimeInForce::Day => TimeInForce::Day,
        wire::TimeInForce::Ioc => TimeInForce::Ioc,
    }
}

fn order_type_to_wire(t: OrderType) -> wire::OrderType {
    match t {
        OrderType::Market => wire::OrderType::Market,
        OrderType::Limit => wire::OrderType::Limit,
        OrderType::Stop => wire::OrderType::Stop,
        OrderType::StopLimit => wire::OrderType::StopLimit,
    }
}

fn tif_to_wire(t: TimeInForce) -> wire::TimeInForce {
    match t {
        TimeInForce::Gtc => wire::TimeInForce::Gtc,
        TimeInForce::Day => wire::TimeInForce::Day,
        TimeInForce::Ioc => wire::TimeInForce::Ioc,
    }
}
