//! Sizing slices: how much to buy or sell.

use std::str::FromStr;

use super::adapter::{self, Slot};
use crate::__private::types::{self as wire, ConfigEntry, PluginInfo};
use crate::{Action, Config, Decimal, Error, Manifest, Result, SliceKind, Timestamp};

/// The portfolio as the host sees it when a signal arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct SizingRequest {
    /// Symbol the signal is for.
    pub symbol: String,
    /// What the strategy wants to do.
    pub action: Action,
    /// Open time of the signal bar.
    pub ts: Timestamp,
    /// Close of the signal bar.
    pub price: Decimal,
    /// Cash plus every position marked at its latest close.
    pub equity: Decimal,
    /// Cash.
    pub cash: Decimal,
    /// Current position in `symbol` in base units; negative when short.
    pub position: Decimal,
}

/// Turns a signal into an order quantity.
pub trait Sizer: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration and builds the sizer.
    fn new(config: &Config) -> Result<Self>;

    /// The order quantity in base units: zero (do not trade) or positive.
    /// The host's risk gate checks it afterwards.
    fn size(&mut self, request: &SizingRequest) -> Result<Decimal>;
}

pub(crate) fn parse_decimal(field: &str, text: &str) -> Result<Decimal> {
    Decimal::from_str(text).map_err(|_| Error::new(format!("host sent `{field}` = {text:?}, not a decimal")))
}

impl TryFrom<wire::SizingRequest> for SizingRequest {
    type Error = Error;
    fn try_from(r: wire::SizingRequest) -> Result<Self> {
        Ok(SizingRequest {
            price: parse_decimal("price", &r.price)?,
            equity: parse_decimal("equity", &r.equity)?,
            cash: parse_decimal("cash", &r.cash)?,
            position: parse_decimal("position", &r.position)?,
            symbol: r.symbol,
            action: r.action,
            ts: r.ts,
        })
    }
}

#[doc(hidden)]
pub fn describe<T: Sizer>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Sizing, T::manifest())
}

#[doc(hidden)]
pub fn init<T: Sizer>(slot: &Slot<T>, config: Vec<ConfigEntry>) -> Result<(), String> {
    let plugin = adapter::config(&T::manifest(), config).and_then(|c| T::new(&c))?;
    slot.set(plugin);
    Ok(())
}

#[doc(hidden)]
pub fn size<T: Sizer>(slot: &Slot<T>, request: wire::SizingRequest) -> Result<String, String> {
    slot.with(|p| {
        let request = SizingRequest::try_from(request)?;
        Ok(p.size(&request)?.normalize().to_string())
    })
}

#[doc(hidden)]
pub fn save_state<T: Sizer + crate::Snapshot>(slot: &Slot<T>) -> Result<Vec<u8>, String> {
    slot.with(|p| p.save())
}

#[doc(hidden)]
pub fn restore_state<T: Sizer + crate::Snapshot>(slot: &Slot<T>, state: Vec<u8>) -> Result<(), String> {
    slot.with(|p| p.restore(&state))
}

/// Exports a [`Sizer`] as this crate's component. Call it once per crate.
#[macro_export]
macro_rules! export_sizer {
    ($plugin:ty) => {
        $crate::export_sizer!(@export "sizing-slice", $plugin, {});
    };
    // Also exports the optional `snapshot` interface: `$plugin` implements [`Snapshot`].
    ($plugin:ty, snapshot) => {
        const _: fn() = || {
            fn exports_its_state<T: $crate::Snapshot>() {}
            exports_its_state::<$plugin>();
        };
        $crate::export_sizer!(@export "sizing-slice-with-snapshot", $plugin, { $crate::__export_snapshot!(sizing); });
    };
    (@export $world:literal, $plugin:ty, { $($extra:tt)* }) => {
        // Natively the crate is an ordinary library for tests: check the type
        // and export nothing (component export names are not valid native symbols).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::Sizer>() {}
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
            impl exports::strata::plugin::sizing::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::sizing::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(config: Vec<wire::ConfigEntry>) -> ::core::result::Result<(), String> {
                    $crate::__private::sizing::init(&SLOT, config)
                }
                fn size(request: wire::SizingRequest) -> ::core::result::Result<String, String> {
                    $crate::__private::sizing::size(&SLOT, request)
                }
            }
            $($extra)*
            export!(Adapter);
        }
    };
}
