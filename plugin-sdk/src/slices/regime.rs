//! Regime slices: a market-regime label for every bar.

use super::adapter::{self, Slot};
use crate::__private::types::{ConfigEntry, PluginInfo};
use crate::{Bar, Config, FeatureNames, FeatureRows, Manifest, Regime, Result, SliceKind};

/// Labels each bar of one symbol with a [`Regime`].
pub trait RegimeDetector: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration and looks up the feature columns it needs.
    fn new(config: &Config, features: &FeatureNames) -> Result<Self>;

    /// Appends one regime per bar.
    fn classify(&mut self, bars: &[Bar], features: &FeatureRows, regimes: &mut Vec<Regime>) -> Result<()>;
}

#[doc(hidden)]
pub fn describe<T: RegimeDetector>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Regime, T::manifest())
}

#[doc(hidden)]
pub struct State<T> {
    plugin: T,
    width: usize,
}

#[doc(hidden)]
pub fn init<T: RegimeDetector>(
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
pub fn classify<T: RegimeDetector>(
    slot: &Slot<State<T>>,
    bars: Vec<Bar>,
    features: Vec<f64>,
) -> Result<Vec<Regime>, String> {
    slot.with(|s| {
        let mut regimes = Vec::with_capacity(bars.len());
        s.plugin.classify(&bars, &FeatureRows::new(&features, s.width), &mut regimes)?;
        Ok(regimes)
    })
}

#[doc(hidden)]
pub fn save_state<T: RegimeDetector + crate::Snapshot>(slot: &Slot<State<T>>) -> Result<Vec<u8>, String> {
    slot.with(|s| s.plugin.save())
}

#[doc(hidden)]
pub fn restore_state<T: RegimeDetector + crate::Snapshot>(
    slot: &Slot<State<T>>,
    state: Vec<u8>,
) -> Result<(), String> {
    slot.with(|s| s.plugin.restore(&state))
}

/// Exports a [`RegimeDetector`] as this crate's component. Call it once per crate.
#[macro_export]
macro_rules! export_regime_detector {
    ($plugin:ty) => {
        $crate::export_regime_detector!(@export "regime-slice", $plugin, {});
    };
    // Also exports the optional `snapshot` interface: `$plugin` implements [`Snapshot`].
    ($plugin:ty, snapshot) => {
        const _: fn() = || {
            fn exports_its_state<T: $crate::Snapshot>() {}
            exports_its_state::<$plugin>();
        };
        $crate::export_regime_detector!(@export "regime-slice-with-snapshot", $plugin, { $crate::__export_snapshot!(regime); });
    };
    (@export $world:literal, $plugin:ty, { $($extra:tt)* }) => {
        // Natively the crate is an ordinary library for tests: check the type
        // and export nothing (component export names are not valid native symbols).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::RegimeDetector>() {}
            implements::<$plugin>();
        };

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports)]
        mod __strata_export {
            use super::*;
            use $crate::__private::types as wire;
            $crate::__generate_slice_world!($world);

            static SLOT: $crate::__private::Slot<$crate::__private::regime::State<$plugin>> =
                $crate::__private::Slot::new();

            struct Adapter;
            impl exports::strata::plugin::regime::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::regime::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(
                    config: Vec<wire::ConfigEntry>,
                    features: Vec<String>,
                ) -> ::core::result::Result<(), String> {
                    $crate::__private::regime::init(&SLOT, config, features)
                }
                fn classify(
                    bars: Vec<wire::Bar>,
                    features: Vec<f64>,
                ) -> ::core::result::Result<Vec<wire::Regime>, String> {
                    $crate::__private::regime::classify(&SLOT, bars, features)
                }
            }
            $($extra)*
            export!(Adapter);
        }
    };
}
