//! Execution algorithms: execution slices that work each order through the
//! host's venue (`strata:plugin/venue`, new in 0.1.1) instead of filling it.
//!
//! The host hands the algorithm each order its risk gate approved (the
//! parent). The algorithm places child orders at the [`Venue`]: split the
//! parent over several bars (TWAP), chase a price, wait for a better one.
//! The venue decides what fills: in backtests and paper trading the
//! simulated venue the run's config names (`[slices.execution.venue]`), in
//! live trading the exchange, with the host signing every request. The host
//! books the children's fills as the parent's; the algorithm reports only
//! the parents it gives up on ([`OrderEvent::Cancelled`] or `Rejected`).
//! One algorithm therefore runs unchanged in every mode.
//!
//! Test one natively with any [`Venue`] of your own, such as
//! [`crate::testing::NextOpenVenue`].

use super::adapter::{self, Slot};
use super::execution::{Order, OrderEvent, to_wire};
use super::sizing::parse_decimal;
use crate::__private::types::{self as wire, ConfigEntry, PluginInfo};
use crate::{Bar, Config, Decimal, Error, Manifest, OrderType, Result, SliceKind, TimeInForce};

/// An order that works part of a parent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildOrder {
    /// The parent, as handed to [`ExecAlgorithm::submit`]; must still be working.
    pub parent_id: u64,
    /// Positive, in base units. Children together never exceed the parent.
    pub quantity: Decimal,
    /// Market, limit, stop or stop-limit.
    pub order_type: OrderType,
    /// Limit price of limit and stop-limit orders.
    pub limit_price: Option<Decimal>,
    /// Trigger price of stop and stop-limit orders.
    pub stop_price: Option<Decimal>,
    /// How long the child stays working.
    pub time_in_force: TimeInForce,
}

impl ChildOrder {
    /// A good-till-cancelled market child of `quantity`.
    pub fn market(parent_id: u64, quantity: Decimal) -> Self {
        ChildOrder {
            parent_id,
            quantity,
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
        }
    }

    /// A good-till-cancelled limit child of `quantity` at `price`.
    pub fn limit(parent_id: u64, quantity: Decimal, price: Decimal) -> Self {
        ChildOrder {
            order_type: OrderType::Limit,
            limit_price: Some(price),
            ..Self::market(parent_id, quantity)
        }
    }
}

/// Where a child stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    /// At the venue, not (fully) filled.
    Working,
    /// Filled in full.
    Filled,
    /// Left the book (cancelled or expired), perhaps partly filled.
    Cancelled,
    /// Refused by the venue.
    Rejected,
}

/// A child order as the venue last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildState {
    /// Assigned by the host when the child was placed.
    pub id: u64,
    /// Its parent.
    pub parent_id: u64,
    /// Working, filled, cancelled or rejected.
    pub status: ChildStatus,
    /// What was placed.
    pub quantity: Decimal,
    /// How much of it filled.
    pub filled_quantity: Decimal,
    /// Average price of its fills, once it has any.
    pub average_price: Option<Decimal>,
    /// Fees paid on its fills.
    pub fees: Decimal,
    /// Why it was cancelled or rejected, as the venue said it.
    pub reason: Option<String>,
}

impl ChildState {
    /// True while the child may still fill.
    pub fn is_working(&self) -> bool {
        self.status == ChildStatus::Working
    }
}

/// Where child orders go. Inside the host this is the host's venue; in
/// native tests, any implementation (see [`crate::testing::NextOpenVenue`]).
pub trait Venue {
    /// Sends a child order; the host refuses one that does not fit its parent.
    fn place(&mut self, order: ChildOrder) -> Result<ChildState>;
    /// Asks the venue to cancel a child; returns its state afterwards.
    fn cancel(&mut self, id: u64) -> Result<ChildState>;
    /// The child's state as last reported.
    fn query(&mut self, id: u64) -> Result<ChildState>;
}

/// Works the orders of one symbol through a [`Venue`].
pub trait ExecAlgorithm: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration and builds the algorithm.
    fn new(config: &Config) -> Result<Self>;

    /// One line on how it works orders, recorded in every run summary next
    /// to the venue's own fill model.
    fn fill_model(&self) -> String;

    /// A new parent order, after `bar` (the bar it was created on) closed.
    /// Push a `Cancelled` or `Rejected` event to `closed` to give it up.
    fn submit(
        &mut self,
        order: Order,
        bar: &Bar,
        venue: &mut dyn Venue,
        closed: &mut Vec<OrderEvent>,
    ) -> Result<()>;

    /// The next bar, while parents are working. The venue has already
    /// applied this bar to the children: query them to see what filled.
    fn on_bar(&mut self, bar: &Bar, venue: &mut dyn Venue, closed: &mut Vec<OrderEvent>) -> Result<()>;

    /// The host cancels a parent: cancel its children and report it
    /// cancelled (the host closes it anyway).
    fn cancel(&mut self, order_id: u64, venue: &mut dyn Venue, closed: &mut Vec<OrderEvent>) -> Result<()>;
}

#[doc(hidden)]
pub fn describe<T: ExecAlgorithm>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Execution, T::manifest())
}

#[doc(hidden)]
pub fn init<T: ExecAlgorithm>(slot: &Slot<T>, config: Vec<ConfigEntry>) -> Result<(), String> {
    let plugin = adapter::config(&T::manifest(), config).and_then(|c| T::new(&c))?;
    slot.set(plugin);
    Ok(())
}

#[doc(hidden)]
pub fn fill_model<T: ExecAlgorithm>(slot: &Slot<T>) -> String {
    slot.with(|p| Ok(p.fill_model())).unwrap_or_default()
}

#[doc(hidden)]
pub fn submit<T: ExecAlgorithm>(
    slot: &Slot<T>,
    venue: &mut dyn Venue,
    order: wire::Order,
    bar: Bar,
) -> Result<Vec<wire::OrderEvent>, String> {
    slot.with(|p| {
        let mut closed = Vec::new();
        p.submit(Order::try_from(order)?, &bar, venue, &mut closed)?;
        Ok(to_wire(closed))
    })
}

#[doc(hidden)]
pub fn on_bar<T: ExecAlgorithm>(
    slot: &Slot<T>,
    venue: &mut dyn Venue,
    bar: Bar,
) -> Result<Vec<wire::OrderEvent>, String> {
    slot.with(|p| {
        let mut closed = Vec::new();
        p.on_bar(&bar, venue, &mut closed)?;
        Ok(to_wire(closed))
    })
}

#[doc(hidden)]
pub fn cancel<T: ExecAlgorithm>(
    slot: &Slot<T>,
    venue: &mut dyn Venue,
    order_id: u64,
) -> Result<Vec<wire::OrderEvent>, String> {
    slot.with(|p| {
        let mut closed = Vec::new();
        p.cancel(order_id, venue, &mut closed)?;
        Ok(to_wire(closed))
    })
}

/// The wire fields of a child order (the export macro builds the generated record from them).
#[doc(hidden)]
pub fn child_to_wire(
    o: &ChildOrder,
) -> (u64, String, OrderType, Option<String>, Option<String>, TimeInForce) {
    let text = |d: Decimal| d.normalize().to_string();
    (
        o.parent_id,
        text(o.quantity),
        o.order_type,
        o.limit_price.map(text),
        o.stop_price.map(text),
        o.time_in_force,
    )
}

/// A child's state from the wire fields of the generated record. `status`:
/// 0 working, 1 filled, 2 cancelled, 3 rejected.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub fn state_from_wire(
    id: u64,
    parent_id: u64,
    status: u8,
    quantity: &str,
    filled_quantity: &str,
    average_price: Option<&str>,
    fees: &str,
    reason: Option<String>,
) -> Result<ChildState> {
    let status = match status {
        0 => ChildStatus::Working,
        1 => ChildStatus::Filled,
        2 => ChildStatus::Cancelled,
        3 => ChildStatus::Rejected,
        other => return Err(Error::new(format!("host sent child status {other}"))),
    };
    Ok(ChildState {
        id,
        parent_id,
        status,
        quantity: parse_decimal("quantity", quantity)?,
        filled_quantity: parse_decimal("filled-quantity", filled_quantity)?,
        average_price: average_price.map(|p| parse_decimal("average-price", p)).transpose()?,
        fees: parse_decimal("fees", fees)?,
        reason,
    })
}

/// Exports an [`ExecAlgorithm`] as this crate's component, importing the
/// host's venue. Call it once per crate.
#[macro_export]
macro_rules! export_exec_algorithm {
    ($plugin:ty) => {
        // Natively the crate is an ordinary library for tests.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::ExecAlgorithm>() {}
            implements::<$plugin>();
        };

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports)]
        mod __strata_export {
            use super::*;
            use $crate::__private::types as wire;
            $crate::__generate_slice_world!("venue-execution-slice");

            static SLOT: $crate::__private::Slot<$plugin> = $crate::__private::Slot::new();

            /// The host's venue, through the generated imports.
            struct HostVenue;
            impl HostVenue {
                fn state(s: strata::plugin::venue::ChildState) -> $crate::Result<$crate::ChildState> {
                    use strata::plugin::venue::ChildStatus as S;
                    let status = match s.status {
                        S::Working => 0,
                        S::Filled => 1,
                        S::Cancelled => 2,
                        S::Rejected => 3,
                    };
                    $crate::__private::exec_algorithm::state_from_wire(
                        s.id,
                        s.parent_id,
                        status,
                        &s.quantity,
                        &s.filled_quantity,
                        s.average_price.as_deref(),
                        &s.fees,
                        s.reason,
                    )
                }
            }
            impl $crate::Venue for HostVenue {
                fn place(&mut self, order: $crate::ChildOrder) -> $crate::Result<$crate::ChildState> {
                    let (parent_id, quantity, order_type, limit_price, stop_price, time_in_force) =
                        $crate::__private::exec_algorithm::child_to_wire(&order);
                    let wire_order = strata::plugin::venue::ChildOrder {
                        parent_id,
                        quantity,
                        order_type,
                        limit_price,
                        stop_price,
                        time_in_force,
                    };
                    strata::plugin::venue::place(&wire_order)
                        .map_err($crate::Error::new)
                        .and_then(Self::state)
                }
                fn cancel(&mut self, id: u64) -> $crate::Result<$crate::ChildState> {
                    strata::plugin::venue::cancel(id).map_err($crate::Error::new).and_then(Self::state)
                }
                fn query(&mut self, id: u64) -> $crate::Result<$crate::ChildState> {
                    strata::plugin::venue::query(id).map_err($crate::Error::new).and_then(Self::state)
                }
            }

            struct Adapter;
            impl exports::strata::plugin::execution::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::exec_algorithm::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(config: Vec<wire::ConfigEntry>) -> ::core::result::Result<(), String> {
                    $crate::__private::exec_algorithm::init(&SLOT, config)
                }
                fn fill_model() -> String {
                    $crate::__private::exec_algorithm::fill_model(&SLOT)
                }
                fn submit(
                    order: wire::Order,
                    bar: wire::Bar,
                ) -> ::core::result::Result<Vec<wire::OrderEvent>, String> {
                    $crate::__private::exec_algorithm::submit(&SLOT, &mut HostVenue, order, bar)
                }
                fn on_bar(bar: wire::Bar) -> ::core::result::Result<Vec<wire::OrderEvent>, String> {
                    $crate::__private::exec_algorithm::on_bar(&SLOT, &mut HostVenue, bar)
                }
                fn cancel(order_id: u64) -> ::core::result::Result<Vec<wire::OrderEvent>, String> {
                    $crate::__private::exec_algorithm::cancel(&SLOT, &mut HostVenue, order_id)
                }
            }
            export!(Adapter);
        }
    };
}
