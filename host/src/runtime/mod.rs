//! Everything that touches wasmtime: the engine, loading and checking
//! components, sandboxes, and slice instances. The rest of the host sees
//! [`Plugin`]s and the domain slice traits of [`crate::slice`].

mod cache;
mod engine;
mod instance;
mod loader;
mod sandbox;
mod venue;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

pub use cache::CacheOutcome;
pub use engine::{Allocation, Pool, limits_disabled};
pub use loader::{LoadError, Plugin, SimulatedVenue};
pub use sandbox::{ClockSource, Sandbox};

use crate::bindings;
use crate::model::{ConfigValue, SliceKind};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, Failure, RegimeSlice, SizingSlice, SliceError, SliceLabel,
    StrategySlice,
};
use cache::Cache;
use instance::{WasmSlice, config_to_wire, info_from_wire};
use loader::Exports;
use sandbox::SliceState;

/// Version of the `strata:plugin` WIT package this host implements
/// (the `package` line of `wit/types.wit`; a test keeps them equal).
#[cfg(not(feature = "next-interface"))]
pub const INTERFACE_VERSION: &str = "0.1.1";

/// The `host-next-interface` binary implements the rehearsal of the next
/// compatible version (see `bindings.rs` and docs/versioning.md).
#[cfg(feature = "next-interface")]
pub const INTERFACE_VERSION: &str = "0.1.2";

/// The engine, the linker every slice is instantiated with, the compiled-component
/// cache, and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<SliceState>,
    cache: Option<Cache>,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    pub fn new() -> Result<Self> {
        Self::with_allocation(Allocation::OnDemand)
    }

    pub fn with_allocation(allocation: Allocation) -> Result<Self> {
        let engine = engine::new_engine(allocation)?;
        let mut linker = Linker::new(&engine);
        // All of WASI 0.2 is linked, so any wasip2 component instantiates; what
        // it can reach through it is decided per store in `sandbox`.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        sandbox::link_bounded_sleeps(&mut linker)?;
        sandbox::link_regular_files_only(&mut linker)?;
        bindings::host::add_to_linker::<SliceState, HasSelf<SliceState>>(&mut linker, |s| s)?;
        venue::add_to_linker(&mut linker)?;
        if engine::limits_disabled() {
            tracing::warn!("{}=1: slices run without CPU deadlines or memory caps", engine::NO_LIMITS_ENV);
        }
        let ticker = engine::EpochTicker::start(&engine);
        let cache = Cache::from_env(&engine);
        Ok(Runtime { engine, linker, cache, _ticker: ticker })
    }

    /// Loads `path` for slot `kind`: checks, compiles, and asks the component
    /// to describe itself in a throwaway instance with nothing granted.
    pub fn load(&self, kind: SliceKind, path: &std::path::Path) -> Result<Plugin, LoadError> {
        self.load_any(Some(kind), path)
    }

    /// Like [`Runtime::load`], for a component of any slice kind.
    pub fn load_any(&self, kind: Option<SliceKind>, path: &std::path::Path) -> Result<Plugin, LoadError> {
        let mut plugin = loader::load(&self.engine, &self.linker, self.cache.as_ref(), path, kind)?;
        let describe_failed = |reason: String| LoadError::Describe { path: plugin.path.clone(), reason };
        let probe = Sandbox {
            symbol: None,
            read_dirs: Default::default(),
            clock: Default::default(),
            seed: 0,
            limits: Default::default(),
        };
        let mut store = sandbox::new_store(&self.engine, &probe, &provisional_label(&plugin))
            .map_err(|e| describe_failed(format!("{e:#}")))?;
        store.set_epoch_deadline(engine::deadline_ticks(Duration::from_millis(probe.limits.deadline_ms)));
        let instance = plugin.pre.instantiate(&mut store).map_err(|e| {
            describe_failed(match store.data().limits.refusal() {
                Some(refusal) => format!("instantiation failed: {refusal}"),
                None => format!("instantiation failed: {e:#}"),
            })
        })?;
        let info = match &plugin.exports {
            Exports::Data(ix) => ix.load(&mut store, &instance).and_then(|g| g.call_describe(&mut store)),
            Exports::Analysis(ix) => ix.load(&mut store, &instance).and_then(|g| g.call_describe(&mut store)),
            Exports::Regime(ix) => ix.load(&mut store, &instance).and_then(|g| g.call_describe(&mut store)),
            Exports::Strategy(ix) => ix.load(&mut store, &instance).and_then(|g| g.call_describe(&mut store)),
            Exports::Sizing(ix) => ix.load(&mut store, &instance).and_then(|g| g.call_describe(&mut store)),
            Exports::Execution(ix) => {
                ix.load(&mut store, &instance).and_then(|g| g.call_describe(&mut store))
            }
        }
        .map_err(|e| {
            // A trap from a refused growth says only `unreachable`; the cap says why.
            let refusal = store.data().limits.refusal().map(|r| format!(" ({r})")).unwrap_or_default();
            describe_failed(format!(
                "{}{refusal}",
                crate::text::bounded_escaped(&format!("{e:#}"), crate::text::MESSAGE_MAX)
            ))
        })?;
        let info = info_from_wire(info);
        loader::check_description(&plugin, &info)?;
        plugin.info = info;
        Ok(plugin)
    }

    fn instance<G>(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        load: impl FnOnce(
            &Exports,
            &mut wasmtime::Store<SliceState>,
            &wasmtime::component::Instance,
        ) -> Option<wasmtime::Result<G>>,
    ) -> Result<WasmSlice<G>, SliceError> {
        let label = label(plugin);
        let fail = |failure| SliceError { label: label.clone(), failure };
        let trapped =
            |e: wasmtime::Error| fail(Failure::Trapped { reason: format!("{e:#}"), backtrace: None });
        let mut store = sandbox::new_store(&self.engine, sandbox, &label)
            .map_err(|e| fail(Failure::Returned(format!("{e:#}"))))?;
        let deadline = Duration::from_millis(sandbox.limits.deadline_ms);
        store.set_epoch_deadline(engine::deadline_ticks(deadline));
        let instance =
            plugin.pre.instantiate(&mut store).map_err(|e| match store.data().limits.refusal() {
                Some(refusal) => fail(Failure::Trapped {
                    reason: format!("cannot be instantiated: {refusal}"),
                    backtrace: None,
                }),
                None => trapped(e),
            })?;
        let guest = load(&plugin.exports, &mut store, &instance)
            .ok_or_else(|| fail(Failure::Invalid(format!("is not {} slice", plugin.kind))))?
            .map_err(trapped)?;
        let snapshot =
            plugin.snapshot.as_ref().map(|ix| ix.load(&mut store, &instance)).transpose().map_err(trapped)?;
        let budget = sandbox.limits.budget_ms.map(Duration::from_millis);
        Ok(WasmSlice::new(store, guest, label, deadline, budget, snapshot))
    }

    pub fn data_slice(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
    ) -> Result<Box<dyn DataSlice>, SliceError> {
        let mut slice = self.instance(plugin, sandbox, |e, s, i| match e {
            Exports::Data(ix) => Some(ix.load(s, i)),
            _ => None,
        })?;
        let config = config_to_wire(settings);
        slice.init_with(|g, s| g.call_init(s, &config))?;
        Ok(Box::new(slice))
    }

    pub fn analysis_slice(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
    ) -> Result<Box<dyn AnalysisSlice>, SliceError> {
        let mut slice = self.instance(plugin, sandbox, |e, s, i| match e {
            Exports::Analysis(ix) => Some(ix.load(s, i)),
            _ => None,
        })?;
        let config = config_to_wire(settings);
        slice.init_with(|g, s| g.call_init(s, &config))?;
        Ok(Box::new(slice))
    }

    pub fn regime_slice(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
        features: &[String],
    ) -> Result<Box<dyn RegimeSlice>, SliceError> {
        let mut slice = self.instance(plugin, sandbox, |e, s, i| match e {
            Exports::Regime(ix) => Some(ix.load(s, i)),
            _ => None,
        })?;
        let config = config_to_wire(settings);
        slice.init_with(|g, s| g.call_init(s, &config, features))?;
        Ok(Box::new(slice))
    }

    pub fn strategy_slice(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
        features: &[String],
    ) -> Result<Box<dyn StrategySlice>, SliceError> {
        let mut slice = self.instance(plugin, sandbox, |e, s, i| match e {
            Exports::Strategy(ix) => Some(ix.load(s, i)),
            _ => None,
        })?;
        let config = config_to_wire(settings);
        slice.init_with(|g, s| g.call_init(s, &config, features))?;
        Ok(Box::new(slice))
    }

    pub fn sizing_slice(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
    ) -> Result<Box<dyn SizingSlice>, SliceError> {
        let mut slice = self.instance(plugin, sandbox, |e, s, i| match e {
            Exports::Sizing(ix) => Some(ix.load(s, i)),
            _ => None,
        })?;
        let config = config_to_wire(settings);
        slice.init_with(|g, s| g.call_init(s, &config))?;
        Ok(Box::new(slice))
    }

    /// An execution slice; one that imports `strata:plugin/venue` sends its
    /// child orders to the simulated venue its plugin was loaded with.
    pub fn execution_slice(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
    ) -> Result<Box<dyn ExecutionSlice>, SliceError> {
        self.execution_slice_at(plugin, sandbox, settings, None)
    }

    /// Like [`Runtime::execution_slice`], with `venue` (live mode's
    /// exchange router) in place of the simulated venue, for a slice that
    /// imports `strata:plugin/venue`; a slice that does not gets none.
    pub fn execution_slice_at(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
        venue: Option<Box<dyn ExecutionSlice>>,
    ) -> Result<Box<dyn ExecutionSlice>, SliceError> {
        let slice = self.execution_instance(plugin, sandbox, settings)?;
        if !plugin.uses_venue {
            return Ok(Box::new(slice));
        }
        let venue = match venue {
            Some(venue) => venue,
            None => self.simulated_venue(plugin, sandbox)?,
        };
        Ok(Box::new(venue::RoutedExecution::new(slice, venue)))
    }

    /// An execution slice's component, instantiated and its `init` run, with
    /// no venue yet: enough for `host plugin check`.
    fn execution_instance(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
    ) -> Result<WasmSlice<bindings::execution::Guest>, SliceError> {
        let mut slice = self.instance(plugin, sandbox, |e, s, i| match e {
            Exports::Execution(ix) => Some(ix.load(s, i)),
            _ => None,
        })?;
        let config = config_to_wire(settings);
        slice.init_with(|g, s| g.call_init(s, &config))?;
        Ok(slice)
    }

    /// Runs an execution slice's `init` on `settings`, without a venue.
    pub fn check_execution(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
        settings: &[(String, ConfigValue)],
    ) -> Result<(), SliceError> {
        self.execution_instance(plugin, sandbox, settings).map(drop)
    }

    /// A fresh instance of the simulated venue `plugin` was loaded with.
    pub fn simulated_venue(
        &self,
        plugin: &Plugin,
        sandbox: &Sandbox,
    ) -> Result<Box<dyn ExecutionSlice>, SliceError> {
        let Some(sim) = &plugin.venue else {
            return Err(SliceError {
                label: label(plugin),
                failure: Failure::Returned(
                    "imports strata:plugin/venue, but the config names no simulated venue \
                     ([slices.execution.venue])"
                        .into(),
                ),
            });
        };
        // Nothing granted but what its own section grants; the slot's clock and seed.
        let sandbox = Sandbox {
            read_dirs: sim.read_dirs.clone(),
            limits: sim.limits,
            seed: sandbox.seed ^ 0x7665_6e75_6500,
            ..sandbox.clone()
        };
        self.execution_slice_at(&sim.plugin, &sandbox, &sim.settings, None)
    }
}

fn label(plugin: &Plugin) -> SliceLabel {
    SliceLabel { kind: plugin.kind, plugin: Arc::from(plugin.label()) }
}

/// Before `describe` has answered, a plugin is known by its file name.
fn provisional_label(plugin: &Plugin) -> SliceLabel {
    let file = plugin.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    SliceLabel { kind: plugin.kind, plugin: Arc::from(file) }
}

#[cfg(test)]
mod tests {
    #[cfg(not(feature = "next-interface"))]
    #[test]
    fn interface_version_matches_the_wit_package() {
        let wit = include_str!("../../../wit/types.wit");
        let line = wit.lines().find(|l| l.starts_with("package ")).unwrap();
        assert_eq!(line, format!("package strata:plugin@{};", super::INTERFACE_VERSION));
    }
}
