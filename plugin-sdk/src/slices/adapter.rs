//! Glue shared by the export macros: where the plugin instance lives between
//! calls, and conversions between wire records and SDK types.

use std::cell::RefCell;

use crate::__private::types::{ConfigEntry, ConfigParam, PluginInfo};
use crate::{Config, Manifest, Result, SliceKind};

/// Holds the plugin value between calls from the host.
///
/// A component instance is single-threaded and the host calls one export at a
/// time, so a `RefCell` in a static is enough; the `Sync` impl only exists so
/// it can live in a `static`.
pub struct Slot<T>(RefCell<Option<T>>);

// SAFETY: exports are only ever called from the component's one thread (wasm32
// components have no threads), and natively the export functions are never called.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// An empty slot; `init` fills it.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Slot(RefCell::new(None))
    }

    pub(crate) fn set(&self, value: T) {
        *self.0.borrow_mut() = Some(value);
    }

    /// Runs `f` on the plugin; an error if `init` has not succeeded.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R, String> {
        let mut guard = self.0.borrow_mut();
        let plugin = guard.as_mut().ok_or_else(|| "called before a successful `init`".to_owned())?;
        f(plugin).map_err(String::from)
    }
}

/// The self-description every slice exports.
pub fn plugin_info(name: &str, version: &str, kind: SliceKind, manifest: Manifest) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        kind,
        interface_version: crate::INTERFACE_VERSION.to_owned(),
        description: manifest.description,
        params: manifest
            .params
            .into_iter()
            .map(|p| ConfigParam { key: p.key, description: p.description, default_value: p.default })
            .collect(),
    }
}

/// The config a plugin receives: its defaults with the host's entries applied.
pub(crate) fn config(manifest: &Manifest, entries: Vec<ConfigEntry>) -> Result<Config> {
    Config::defaults(manifest).merge(entries.into_iter().map(|e| (e.key, e.value)))
}
