//! Analysis slices: features (indicators) computed from bars.

use super::adapter::{self, Slot};
use crate::__private::types::{ConfigEntry, PluginInfo};
use crate::{Bar, Config, Manifest, Result, SliceKind};

/// Computes named numeric features from the bars of one symbol.
pub trait Analyzer: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration (say which key is wrong and why) and builds the analyzer.
    fn new(config: &Config) -> Result<Self>;

    /// Names of the features, in the order [`update`](Self::update) writes them.
    fn outputs(&self) -> Vec<String>;

    /// Consumes the next bars (each bar exactly once, in order) and appends,
    /// for each bar, one value per output: `bars.len() * outputs().len()` values
    /// in all. Use NaN while a feature is warming up.
    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> Result<()>;
}

#[doc(hidden)]
pub fn describe<T: Analyzer>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Analysis, T::manifest())
}

#[doc(hidden)]
pub fn init<T: Analyzer>(slot: &Slot<T>, config: Vec<ConfigEntry>) -> Result<(), String> {
    let plugin = adapter::config(&T::manifest(), config).and_then(|c| T::new(&c))?;
    slot.set(plugin);
    Ok(())
}

#[doc(hidden)]
pub fn outputs<T: Analyzer>(slot: &Slot<T>) -> Vec<String> {
    slot.with(|p| Ok(p.outputs())).unwrap_or_default()
}

#[doc(hidden)]
pub fn update<T: Analyzer>(slot: &Slot<T>, bars: Vec<Bar>) -> Result<Vec<f64>, String> {
    slot.with(|p| {
        let mut values = Vec::new();
        p.update(&bars, &mut values)?;
        Ok(values)
    })
}

#[doc(hidden)]
pub fn save_state<T: Analyzer + crate::Snapshot>(slot: &Slot<T>) -> Result<Vec<u8>, String> {
    slot.with(|p| p.save())
}

#[doc(hidden)]
pub fn restore_state<T: Analyzer + crate::Snapshot>(slot: &Slot<T>, state: Vec<u8>) -> Result<(), String> {
    slot.with(|p| p.restore(&state))
}

/// Exports an [`Analyzer`] as this crate's component. Call it once per crate.
#[macro_export]
macro_rules! export_analyzer {
    ($plugin:ty) => {
        $crate::export_analyzer!(@export "analysis-slice", $plugin, {});
    };
    // Also exports the optional `snapshot` interface: `$plugin` implements [`Snapshot`].
    ($plugin:ty, snapshot) => {
        const _: fn() = || {
            fn exports_its_state<T: $crate::Snapshot>() {}
            exports_its_state::<$plugin>();
        };
        $crate::export_analyzer!(@export "analysis-slice-with-snapshot", $plugin, { $crate::__export_snapshot!(analysis); });
    };
    (@export $world:literal, $plugin:ty, { $($extra:tt)* }) => {
        // Natively the crate is an ordinary library for tests: check the type
        // and export nothing (component export names are not valid native symbols).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::Analyzer>() {}
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
            impl exports::strata::plugin::analysis::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::analysis::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(config: Vec<wire::ConfigEntry>) -> ::core::result::Result<(), String> {
                    $crate::__private::analysis::init(&SLOT, config)
                }
                fn outputs() -> Vec<String> {
                    $crate::__private::analysis::outputs(&SLOT)
                }
                fn update(bars: Vec<wire::Bar>) -> ::core::result::Result<Vec<f64>, String> {
                    $crate::__private::analysis::update(&SLOT, bars)
                }
            }
            $($extra)*
            export!(Adapter);
        }
    };
}
