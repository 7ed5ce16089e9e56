//! Execution slices: how orders fill.

use super::adapter::{self, Slot};
use super::sizing::parse_decimal;
use crate::__private::types::{self as wire, ConfigEntry, PluginInfo};
use crate::{
    Bar, Config, Decimal, Error, Manifest, OrderType, Result, Side, SliceKind, TimeInForce, Timestamp,
};

/// An order the host's risk gate approved.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Unique within the run.
    pub id: u64,
    /// Symbol to trade.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// Positive, in base units.
    pub quantity: Decimal,
    /// Market, limit, stop or stop-limit.
    pub order_type: OrderType,
    /// Limit price of limit and stop-limit orders.
    pub limit_price: Option<Decimal>,
    /// Trigger price of stop and stop-limit orders.
    pub stop_price: Option<Decimal>,
    /// How long the order stays working.
    pub time_in_force: TimeInForce,
    /// Open time of the bar the order was created on.
    pub created_at: Timestamp,
}

/// A (partial) execution of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// The order filled.
    pub order_id: u64,
    /// Open time of the bar the fill happened on.
    pub ts: Timestamp,
    /// Execution price.
    pub price: Decimal,
    /// Positive, at most the order's unfilled quantity.
    pub quantity: Decimal,
    /// Paid in cash; zero or positive.
    pub fee: Decimal,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderEvent {
    /// The order (partly) filled.
    Filled(Fill),
    /// The order left the book unfilled or partly filled (expiry, cancel request).
    Cancelled {
        /// The order.
        order_id: u64,
        /// Why, for the run's records.
        reason: String,
    },
    /// The order was refused.
    Rejected {
        /// The order.
        order_id: u64,
        /// Why, for the run's records.
        reason: String,
    },
}

/// Simulates (or routes) the orders of one symbol and reports what happened.
pub trait Executor: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration and builds the executor.
    fn new(config: &Config) -> Result<Self>;

    /// One line on the fill rule and costs, recorded in every run summary.
    fn fill_model(&self) -> String;

    /// Accepts an order after `bar` (the bar it was created on) closed.
    fn submit(&mut self, order: Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()>;

    /// Advances to the next bar while orders are working.
    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> Result<()>;

    /// Cancels a working order.
    fn cancel(&mut self, order_id: u64, events: &mut Vec<OrderEvent>) -> Result<()>;
}

impl TryFrom<wire::Order> for Order {
    type Error = Error;
    fn try_from(o: wire::Order) -> Result<Self> {
        let optional = |field: &str, v: Option<String>| -> Result<Option<Decimal>> {
            v.map(|s| parse_decimal(field, &s)).transpose()
        };
        Ok(Order {
            quantity: parse_decimal("quantity", &o.quantity)?,
            limit_price: optional("limit-price", o.limit_price)?,
            stop_price: optional("stop-price", o.stop_price)?,
            id: o.id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            time_in_force: o.time_in_force,
            created_at: o.created_at,
        })
    }
}

impl From<OrderEvent> for wire::OrderEvent {
    fn from(event: OrderEvent) -> Self {
        match event {
            OrderEvent::Filled(f) => wire::OrderEvent::Filled(wire::Fill {
                order_id: f.order_id,
                ts: f.ts,
                price: f.price.normalize().to_string(),
                quantity: f.quantity.normalize().to_string(),
                fee: f.fee.normalize().to_string(),
            }),
            OrderEvent::Cancelled { order_id, reason } => {
                wire::OrderEvent::Cancelled(wire::OrderClosed { order_id, reason })
            }
            OrderEvent::Rejected { order_id, reason } => {
                wire::OrderEvent::Rejected(wire::OrderClosed { order_id, reason })
            }
        }
    }
}

pub(super) fn to_wire(events: Vec<OrderEvent>) -> Vec<wire::OrderEvent> {
    events.into_iter().map(Into::into).collect()
}

#[doc(hidden)]
pub fn describe<T: Executor>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Execution, T::manifest())
}

#[doc(hidden)]
pub fn init<T: Executor>(slot: &Slot<T>, config: Vec<ConfigEntry>) -> Result<(), String> {
    let plugin = adapter::config(&T::manifest(), config).and_then(|c| T::new(&c))?;
    slot.set(plugin);
    Ok(())
}

#[doc(hidden)]
pub fn fill_model<T: Executor>(slot: &Slot<T>) -> String {
    slot.with(|p| Ok(p.fill_model())).unwrap_or_default()
}

#[doc(hidden)]
pub fn submit<T: Executor>(
    slot: &Slot<T>,
    order: wire::Order,
    bar: Bar,
) -> Result<Vec<wire::OrderEvent>, String> {
    slot.with(|p| {
        let mut events = Vec::new();
        p.submit(Order::try_from(order)?, &bar, &mut events)?;
        Ok(to_wire(events))
    })
}

#[doc(hidden)]
pub fn on_bar<T: Executor>(slot: &Slot<T>, bar: Bar) -> Result<Vec<wire::OrderEvent>, String> {
    slot.with(|p| {
        let mut events = Vec::new();
        p.on_bar(&bar, &mut events)?;
        Ok(to_wire(events))
    })
}

#[doc(hidden)]
pub fn cancel<T: Executor>(slot: &Slot<T>, order_id: u64) -> Result<Vec<wire::OrderEvent>, String> {
    slot.with(|p| {
        let mut events = Vec::new();
        p.cancel(order_id, &mut events)?;
        Ok(to_wire(events))
    })
}

#[doc(hidden)]
pub fn save_state<T: Executor + crate::Snapshot>(slot: &Slot<T>) -> Result<Vec<u8>, String> {
    slot.with(|p| p.save())
}

#[doc(hidden)]
pub fn restore_state<T: Executor + crate::Snapshot>(slot: &Slot<T>, state: Vec<u8>) -> Result<(), String> {
    slot.with(|p| p.restore(&state))
}

/// Exports an [`Executor`] as this crate's component. Call it once per crate.
#[macro_export]
macro_rules! export_executor {
    ($plugin:ty) => {
        $crate::export_executor!(@export "execution-slice", $plugin, {});
    };
    // Also exports the optional `snapshot` interface: `$plugin` implements [`Snapshot`].
    ($plugin:ty, snapshot) => {
        const _: fn() = || {
            fn exports_its_state<T: $crate::Snapshot>() {}
            exports_its_state::<$plugin>();
        };
        $crate::export_executor!(@export "execution-slice-with-snapshot", $plugin, { $crate::__export_snapshot!(execution); });
    };
    (@export $world:literal, $plugin:ty, { $($extra:tt)* }) => {
        // Natively the crate is an ordinary library for tests: check the type
        // and export nothing (component export names are not valid native symbols).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::Executor>() {}
            implements::<$plugin>();
        };

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports)]
        mod __strata_export {
            use super::*;
            use $crate::__private::types as wire;
            $crate::__generate_slice_world!($world);

            static SLOT: $crate::__private::Slot<$plugin> = $crate::__private::Slot::new();

            struct Adapter;
            impl exports::strata::plugin::execution::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::execution::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(config: Vec<wire::ConfigEntry>) -> ::core::result::Result<(), String> {
                    $crate::__private::execution::init(&SLOT, config)
                }
                fn fill_model() -> String {
                    $crate::__private::execution::fill_model(&SLOT)
                }
                fn submit(
                    order: wire::Order,
                    bar: wire::Bar,
                ) -> ::core::result::Result<Vec<wire::OrderEvent>, String> {
                    $crate::__private::execution::submit(&SLOT, order, bar)
                }
                fn on_bar(bar: wire::Bar) -> ::core::result::Result<Vec<wire::OrderEvent>, String> {
                    $crate::__private::execution::on_bar(&SLOT, bar)
                }
                fn cancel(order_id: u64) -> ::core::result::Result<Vec<wire::OrderEvent>, String> {
                    $crate::__private::execution::cancel(&SLOT, order_id)
                }
            }
            $($extra)*
            export!(Adapter);
        }
    };
}
