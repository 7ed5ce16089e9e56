//! Data slices: where bars come from.

use super::adapter::{self, Slot};
use crate::__private::types::{ConfigEntry, PluginInfo};
use crate::{Bar, Config, Manifest, Result, SliceKind, SourceInfo, Timestamp};

/// Open times of the bars the host wants, inclusive; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// First open time wanted.
    pub start: Option<Timestamp>,
    /// Last open time wanted.
    pub end: Option<Timestamp>,
}

impl TimeRange {
    /// True when `ts` is inside the range.
    pub fn contains(&self, ts: Timestamp) -> bool {
        self.start.is_none_or(|s| ts >= s) && self.end.is_none_or(|e| ts <= e)
    }
}

/// Produces the bars of one symbol, oldest first. The host makes one instance
/// per symbol and calls [`open`](Self::open) once.
pub trait DataSource: Sized + 'static {
    /// Description and configuration keys.
    fn manifest() -> Manifest;

    /// Validates the configuration and builds the source.
    fn new(config: &Config) -> Result<Self>;

    /// Prepares the bars of `symbol` inside `range`. Fail with a message that
    /// helps the user: which symbol, where you looked, what exists.
    fn open(&mut self, symbol: &str, range: TimeRange) -> Result<SourceInfo>;

    /// Appends up to `max` further bars to `bars` (which arrives empty),
    /// strictly increasing in time. Appending none means the feed has ended.
    /// Bars outside the range given to `open` may be appended: the SDK drops
    /// them before the host sees them (skipping them at the source is faster).
    fn next_batch(&mut self, max: usize, bars: &mut Vec<Bar>) -> Result<()>;
}

#[doc(hidden)]
pub fn describe<T: DataSource>(name: &str, version: &str) -> PluginInfo {
    adapter::plugin_info(name, version, SliceKind::Data, T::manifest())
}

/// The plugin and the range it was opened on. The adapter enforces the
/// range, so a source that ignores it still hands the host only what it asked for.
#[doc(hidden)]
pub struct State<T> {
    plugin: T,
    range: TimeRange,
    past_end: bool,
}

#[doc(hidden)]
pub fn init<T: DataSource>(slot: &Slot<State<T>>, config: Vec<ConfigEntry>) -> Result<(), String> {
    let plugin = adapter::config(&T::manifest(), config).and_then(|c| T::new(&c))?;
    slot.set(State { plugin, range: TimeRange::default(), past_end: false });
    Ok(())
}

#[doc(hidden)]
pub fn open<T: DataSource>(
    slot: &Slot<State<T>>,
    symbol: String,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> Result<SourceInfo, String> {
    slot.with(|s| {
        s.range = TimeRange { start, end };
        s.plugin.open(&symbol, s.range)
    })
}

#[doc(hidden)]
pub fn next_batch<T: DataSource>(slot: &Slot<State<T>>, max: u32) -> Result<Vec<Bar>, String> {
    slot.with(|s| {
        let mut bars = Vec::with_capacity(max.min(65_536) as usize);
        // Bars before the range are skipped until some are in it or the
        // source ends; a bar after the range ends the feed.
        while bars.is_empty() && !s.past_end {
            let mut batch = Vec::with_capacity(max.min(65_536) as usize);
            s.plugin.next_batch(max as usize, &mut batch)?;
            if batch.is_empty() {
                break;
            }
            for bar in batch.into_iter().take(max as usize) {
                if s.range.end.is_some_and(|end| bar.ts > end) {
                    s.past_end = true;
                    break;
                }
                if s.range.contains(bar.ts) {
                    bars.push(bar);
                }
            }
        }
        Ok(bars)
    })
}

#[doc(hidden)]
pub fn save_state<T: DataSource + crate::Snapshot>(slot: &Slot<State<T>>) -> Result<Vec<u8>, String> {
    slot.with(|s| s.plugin.save())
}

#[doc(hidden)]
pub fn restore_state<T: DataSource + crate::Snapshot>(
    slot: &Slot<State<T>>,
    state: Vec<u8>,
) -> Result<(), String> {
    slot.with(|s| s.plugin.restore(&state))
}

/// Exports a [`DataSource`] as this crate's component. Call it once per crate.
#[macro_export]
macro_rules! export_data_source {
    ($plugin:ty) => {
        $crate::export_data_source!(@export "data-slice", $plugin, {});
    };
    // Also exports the optional `snapshot` interface: `$plugin` implements [`Snapshot`].
    ($plugin:ty, snapshot) => {
        const _: fn() = || {
            fn exports_its_state<T: $crate::Snapshot>() {}
            exports_its_state::<$plugin>();
        };
        $crate::export_data_source!(@export "data-slice-with-snapshot", $plugin, { $crate::__export_snapshot!(data); });
    };
    (@export $world:literal, $plugin:ty, { $($extra:tt)* }) => {
        // Natively the crate is an ordinary library for tests: check the type
        // and export nothing (component export names are not valid native symbols).
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn implements<T: $crate::DataSource>() {}
            implements::<$plugin>();
        };

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unused_imports)]
        mod __strata_export {
            use super::*;
            use $crate::__private::types as wire;
            $crate::__generate_slice_world!($world);

            static SLOT: $crate::__private::Slot<$crate::__private::data::State<$plugin>> =
                $crate::__private::Slot::new();

            struct Adapter;
            impl exports::strata::plugin::data::Guest for Adapter {
                fn describe() -> wire::PluginInfo {
                    $crate::__private::data::describe::<$plugin>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn init(config: Vec<wire::ConfigEntry>) -> ::core::result::Result<(), String> {
                    $crate::__private::data::init(&SLOT, config)
                }
                fn open(
                    symbol: String,
                    start: Option<wire::Timestamp>,
                    end: Option<wire::Timestamp>,
                ) -> ::core::result::Result<wire::SourceInfo, String> {
                    $crate::__private::data::open(&SLOT, symbol, start, end)
                }
                fn next_batch(max: u32) -> ::core::result::Result<Vec<wire::Bar>, String> {
                    $crate::__private::data::next_batch(&SLOT, max)
                }
            }
            $($extra)*
            export!(Adapter);
        }
    };
}
