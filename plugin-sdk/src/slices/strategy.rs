//! Strategy slices: when to enter and exit.

use super::adapter::{self, Slot};
use crate::__private::types::{ConfigEntry, PluginInfo};
use crate::{
    Action, Bar, Config, FeatureNames, FeatureRows, Manifest, OrderType, Regime, Result, Signal, SliceKind,
    TimeInForce,
};

/// Decides entries and exits for one symbol from bars, features and regimes.
///
/// A strategy never sees the portfolio. It may emit a signal on every bar its
/// rule holds: the host ignores signals that would not change the position.
pub trait Strategy: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration and looks up the feature columns it needs.
    fn new(config: &Config, features: &FeatureNames) -> Result<Self>;

    /// Appends this batch's signals, at most one per bar, in bar order.
    fn decide(
        &mut self,
        bars: &[Bar],
        features: &FeatureRows,
        regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> Result<()>;
}

impl Signal {
    /// A market order for `action` on bar `bar_index` of the batch, good till cancelled.
    pub fn market(bar_index: usize, action: Action) -> Signal {
        Signal {
            bar_index: bar_index as u32,
            action,
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Gtc,
        }
    }

    /// A limit order at `price`, good till cancelled.
    pub fn limit(bar_index: usize, action: Action, price: f64) -> Signal {
        Signal { order_type: OrderType::Limit, limit_price: Some(price), ..Self::market(bar_index, action) }
    }

    /// A stop order triggered at `price`, good till cancelled.
    pub fn stop(bar_index: usize, action: Action, price: f64) -> Signal {
        Signal { order_type: OrderType::Stop, stop_price: Some(price), ..Self::market(bar_index, action) }
    }

    /// The same signal with another time in force.
    pub fn with_time_in_force(self, time_in_force: TimeInForce) -> Signal {
        Signal { time_in_force, ..self }
    }
}

#[doc(hidden)]
pub fn describe<T: Strategy>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Strategy, T::manifest())
}

#[doc(hidden)]
pub struct State<T> {
    plugin: T,
    width: usize,
}

#[doc(hidden)]
pub fn init<T: Strategy>(
    slot: &Slot<State<T>>,
    config: Vec<ConfigEntry>,
    features: Vec<String>,
) -> Result<(), String> {
    let names = FeatureNames::new(features);
    let plugin = adapter::config(&T::manifest(), config).and_then(|c| T::new(&c, &names))?;
    slot.set(State { plugin, width: names.len() });
    Ok(())
}

#[doc(hidden)]
pub fn decide<T: Strategy>(
    slot: &Slot<State<T>>,
    bars: Vec<Bar>,
    features: Vec<f64>,
    regimes: Vec<Regime>,
) -> Result<Vec<Signal>, String> {
    slot.with(|s| {
        let mut signals = Vec::new();
        s.plugin.decide(&bars, &FeatureRows::new(&features, s.width), &regimes, &mut signals)?;
        Ok(signals)
    })
}

#[doc(hidden)]
pub fn save_state<T: Strategy + crate::Snapshot>(slot: &Slot<State<T>>) -> Result<Vec<u8>, String> {
    slot.with(|s| s.plugin.save())
}

#[doc(hidden)]
pub fn restore_state<T: Strategy + crate::Snapshot>(
    slot: &Slot<State<T>>,
    state: Vec<u8>,
) -> Result<(), String> {
    slot.with(|s| s.plugin.restore(&state))
}

/// Exports a [`Strategy`] as this crate's component. Call it once per crate.
#[macro_export]
macro_rules! export_strategy {
    ($plugin:ty) => {
        $crate::export_strategy!(@export "strategy-slice", $plugin, {});
    };
    // Also exports the optional `snapshot` interface: `$plugin` implements [`Snapshot`].
    ($plugin:ty, snapshot) => {
        const _: fn() = || {
            fn exports_its_state<T: $crate::Snapshot>() {}
            exports_its_state::<$plugin>();
        };
        $crate::export_strategy!(@export "strategy-slice-with-snapshot", $plugin, { $crate::__export_snapshot!(strategy); });
    };
    (@export $world:literal, $plugin:ty, { $($extra:tt)* }) => {
        // Natively the crate is an ordinary library for tests: check the type
        // and export nothing (component export names are not valid native symbols).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::Strategy>() {}
            implements::<$plugin>();
        };

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports)]
        mod __strata_export {
            use super::*;
            use $crate::__private::types as wire;
            $crate::__generate_slice_world!($world);

            static SLOT: $crate::__private::Slot<$crate::__private::strategy::State<$plugin>> =
                $crate::__private::Slot::new();

            struct Adapter;
            impl exports::strata::plugin::strategy::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::strategy::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(
                    config: Vec<wire::ConfigEntry>,
                    features: Vec<String>,
                ) -> ::core::result::Result<(), String> {
                    $crate::__private::strategy::init(&SLOT, config, features)
                }
                fn decide(
                    bars: Vec<wire::Bar>,
                    features: Vec<f64>,
                    regimes: Vec<wire::Regime>,
                ) -> ::core::result::Result<Vec<wire::Signal>, String> {
                    $crate::__private::strategy::decide(&SLOT, bars, features, regimes)
                }
            }
            $($extra)*
            export!(Adapter);
        }
    };
}
