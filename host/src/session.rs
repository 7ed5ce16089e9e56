//! From a validated config to ready-to-run slice chains: loads the six
//! components once, checks each slice's settings against what it declares,
//! and builds one chain of fresh instances per symbol.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::clock::SimClock;
use crate::config::{LoadedConfig, slice_settings};
use crate::model::{ConfigValue, SliceKind, SourceInfo, Symbol, Timestamp};
use crate::orchestrator::{ChainSetup, SliceFactory};
use crate::runtime::{Allocation, ClockSource, Plugin, Pool, Runtime, Sandbox};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, RegimeSlice, SizingSlice, SliceResult, StrategySlice,
    SymbolSlices,
};

/// Every slice's settings, by kind: what each slice's `init` receives.
pub type Settings = BTreeMap<SliceKind, Vec<(String, ConfigValue)>>;

/// The loaded components of a run and the settings each slice gets.
pub struct Session {
    pub runtime: Runtime,
    pub config: LoadedConfig,
    pub plugins: BTreeMap<SliceKind, Plugin>,
    /// The settings of the config; optimisation trials bring their own
    /// ([`Session::chains_with`]) and share the compiled components.
    pub settings: Settings,
}

/// Each slice's component, loaded (compiled or read from the cache, asked to
/// describe itself), and its settings checked against what it declares.
pub type Components = (BTreeMap<SliceKind, Plugin>, Settings);

/// Loads the components `kinds` of `config` with `runtime`. Every problem
/// with the settings is reported at once, naming the config file.
pub fn load_components(runtime: &Runtime, config: &LoadedConfig, kinds: &[SliceKind]) -> Result<Components> {
    let mut plugins = BTreeMap::new();
    let mut settings = BTreeMap::new();
    let mut problems = Vec::new();
    for &kind in kinds {
        let section = config.config.slices.get(kind);
        let mut plugin = runtime
            .load(kind, &section.plugin)
            .with_context(|| format!("slices.{kind}.plugin in {}", config.path.display()))?;
        if let Err(p) = attach_venue(runtime, config, &mut plugin) {
            problems.extend(p);
        }
        match slice_settings(kind, &plugin.label(), &section.config, &plugin.info.params) {
            Ok(s) => {
                settings.insert(kind, s);
            }
            Err(p) => problems.extend(p),
        }
        plugins.insert(kind, plugin);
    }
    if !problems.is_empty() {
        bail!(
            "config file {} has {} problem(s):\n{}",
            config.path.display(),
            problems.len(),
            problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
        );
    }
    Ok((plugins, settings))
}

/// Every problem `host run` would meet before its first bar, short of the
/// data: each component loaded, its settings checked against what it
/// declares, and each slice's own `init` run in a throwaway instance with
/// the run's grants and limits (a slice refusing its settings, an instance
/// over its memory limit). Collects them all instead of stopping at the
/// first; returns the loaded session when there is none. Slices in
/// `refused` already have a problem in their section (a memory cap out of
/// range, say): they are not loaded, so each problem is reported once.
pub fn check_components(config: &LoadedConfig, refused: &[SliceKind]) -> (Vec<String>, Option<Session>) {
    let mut problems = Vec::new();
    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return (vec![format!("cannot start the WebAssembly runtime: {e:#}")], None),
    };
    let mut plugins = BTreeMap::new();
    let mut settings = BTreeMap::new();
    for kind in SliceKind::ALL {
        let section = config.config.slices.get(kind);
        if refused.contains(&kind) || !section.plugin.is_file() {
            // Already reported by `LoadedConfig::validate`.
            continue;
        }
        let mut plugin = match runtime.load(kind, &section.plugin) {
            Ok(plugin) => plugin,
            Err(e) => {
                problems.push(format!("slices.{kind}.plugin: {e:#}"));
                continue;
            }
        };
        if let Err(p) = attach_venue(&runtime, config, &mut plugin) {
            problems.extend(p);
        }
        match slice_settings(kind, &plugin.label(), &section.config, &plugin.info.params) {
            Ok(s) => {
                settings.insert(kind, s);
            }
            Err(p) => problems.extend(p),
        }
        plugins.insert(kind, plugin);
    }
    let session = Session { runtime, config: config.clone(), plugins, settings };
    problems.extend(session.init_problems());
    let usable = problems.is_empty()
        && session.plugins.len() == SliceKind::ALL.len()
        && session.settings.len() == SliceKind::ALL.len();
    (problems, usable.then_some(session))
}

/// Gives an execution slice that imports `strata:plugin/venue` the simulated
/// venue `[slices.execution.venue]` names, loaded and its settings checked;
/// names what is wrong when the two do not go together.
pub fn attach_venue(
    runtime: &Runtime,
    config: &LoadedConfig,
    plugin: &mut Plugin,
) -> Result<(), Vec<String>> {
    if plugin.kind != SliceKind::Execution {
        return Ok(());
    }
    let section = &config.config.slices.execution;
    let label = plugin.label();
    let Some(venue) = &section.venue else {
        if plugin.uses_venue {
            return Err(vec![format!(
                "slices.execution: {label} works orders through strata:plugin/venue; name the simulated \
                 venue its orders go to in backtests and paper trading under [slices.execution.venue], \
                 for example plugin = \"sim_execution.wasm\" (live mode sends them to the exchange)"
            )]);
        }
        return Ok(());
    };
    if !plugin.uses_venue {
        return Err(vec![format!(
            "slices.execution.venue: {label} fills orders itself (it does not import strata:plugin/venue); \
             remove [slices.execution.venue]"
        )]);
    }
    let sim = runtime
        .load(SliceKind::Execution, &venue.plugin)
        .map_err(|e| vec![format!("slices.execution.venue.plugin: {e:#}")])?;
    if sim.uses_venue {
        return Err(vec![format!(
            "slices.execution.venue: {} routes orders to a venue itself; the venue must fill them",
            sim.label()
        )]);
    }
    let settings = slice_settings(SliceKind::Execution, &sim.label(), &venue.config, &sim.info.params)
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|p| p.replacen("slices.execution.", "slices.execution.venue.", 1))
                .collect::<Vec<_>>()
        })?;
    plugin.venue = Some(std::sync::Arc::new(crate::runtime::SimulatedVenue {
        plugin: sim,
        settings,
        read_dirs: venue.grants.read_dirs.clone(),
        limits: venue.limits,
    }));
    Ok(())
}

impl Session {
    /// Runs the `init` of every slice whose component loaded and whose
    /// settings passed, in throwaway instances, as a run's first chain
    /// would. Regime and strategy slices get the analysis slice's outputs,
    /// so they are initialised only when it was.
    fn init_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let clock = SimClock::new();
        // The run's grants and limits; no symbol is opened, as `init` must
        // not depend on one.
        let sandbox = |kind: SliceKind| {
            let section = self.config.config.slices.get(kind);
            Sandbox {
                symbol: None,
                read_dirs: section.grants.read_dirs.clone(),
                clock: ClockSource::Simulated(clock.clone()),
                seed: derive_seed(self.config.config.run.seed, &[kind.as_str()]),
                limits: section.limits,
            }
        };
        let ready = |kind: SliceKind| self.plugins.get(&kind).zip(self.settings.get(&kind));
        let mut report = |kind: SliceKind, result: Result<(), crate::slice::SliceError>| {
            if let Err(e) = result {
                problems.push(format!("slices.{kind}: init failed: {e}"));
            }
        };
        let rt = &self.runtime;
        if let Some((plugin, settings)) = ready(SliceKind::Data) {
            report(SliceKind::Data, rt.data_slice(plugin, &sandbox(SliceKind::Data), settings).map(drop));
        }
        let mut features = None;
        if let Some((plugin, settings)) = ready(SliceKind::Analysis) {
            let analysis = rt
                .analysis_slice(plugin, &sandbox(SliceKind::Analysis), settings)
                .and_then(|mut a| a.outputs());
            match analysis {
                Ok(outputs) => features = Some(outputs),
                Err(e) => {
                    report(SliceKind::Analysis, Err(e));
                    // Regime and strategy are still checked, against the
                    // outputs the component has with its own defaults, so
                    // their problems show in the same pass.
                    let defaults: Vec<(String, ConfigValue)> =
                        plugin.info.params.iter().map(|p| (p.key.clone(), p.default.clone())).collect();
                    features = rt
                        .analysis_slice(plugin, &sandbox(SliceKind::Analysis), &defaults)
                        .and_then(|mut a| a.outputs())
                        .ok();
                }
            }
        }
        if let Some(features) = &features {
            if let Some((plugin, settings)) = ready(SliceKind::Regime) {
                let built = rt.regime_slice(plugin, &sandbox(SliceKind::Regime), settings, features);
                report(SliceKind::Regime, built.map(drop));
            }
            if let Some((plugin, settings)) = ready(SliceKind::Strategy) {
                let built = rt.strategy_slice(plugin, &sandbox(SliceKind::Strategy), settings, features);
                report(SliceKind::Strategy, built.map(drop));
            }
        }
        if let Some((plugin, settings)) = ready(SliceKind::Sizing) {
            report(
                SliceKind::Sizing,
                rt.sizing_slice(plugin, &sandbox(SliceKind::Sizing), settings).map(drop),
            );
        }
        if let Some((plugin, settings)) = ready(SliceKind::Execution) {
            let built = rt
                .execution_slice(plugin, &sandbox(SliceKind::Execution), settings)
                .and_then(|mut e| e.fill_model().map(drop));
            report(SliceKind::Execution, built);
        }
        problems
    }
}

/// One symbol's chain, its data source opened.
pub struct Chain {
    pub symbol: Symbol,
    pub slices: SymbolSlices,
    pub features: Vec<String>,
    pub source: SourceInfo,
}

impl Chain {
    /// The orchestrator's view of this chain, whose slices read `clock`.
    pub fn into_setup(self, clock: SimClock) -> ChainSetup {
        ChainSetup {
            symbol: self.symbol,
            clock,
            slices: self.slices,
            features: self.features,
            source: Some(self.source),
        }
    }
}

impl Session {
    /// Loads the components `kinds` of `config` (all six for a run).
    pub fn open(config: LoadedConfig, kinds: &[SliceKind]) -> Result<Self> {
        Self::open_with(config, kinds, Allocation::OnDemand)
    }

    /// Loads all six components for many short runs at once (optimize
    /// trials: `concurrent_chains` is threads x symbols) on wasmtime's
    /// pooling allocator, whose reused slots make creating and dropping
    /// instances cheap. Loading asks each component to describe itself, so
    /// one the pool cannot hold shows here; then, and whenever the limits
    /// are off, the session uses on-demand instances like `host run` (same
    /// results, only slower).
    pub fn open_for_trials(config: LoadedConfig, concurrent_chains: usize) -> Result<Self> {
        let slices = &config.config.slices;
        let largest_memory_mib =
            SliceKind::ALL.iter().map(|k| slices.get(*k).limits.memory_mib).max().unwrap_or(0);
        let pool = Pool {
            concurrent_chains: u32::try_from(concurrent_chains).unwrap_or(u32::MAX),
            max_memory_bytes: usize::try_from(largest_memory_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
        };
        if crate::runtime::limits_disabled() {
            return Self::open(config, &SliceKind::ALL);
        }
        match Self::open_with(config.clone(), &SliceKind::ALL, Allocation::Pooled(pool)) {
            Ok(session) => Ok(session),
            Err(pooled) => {
                // A genuine error (a missing file, bad settings) fails here
                // again and is reported as `host run` would report it.
                let session = Self::open(config, &SliceKind::ALL)?;
                tracing::warn!(
                    "trials use on-demand instances, which is slower: the pooling allocator cannot hold these components: {pooled:#}"
                );
                Ok(session)
            }
        }
    }

    fn open_with(config: LoadedConfig, kinds: &[SliceKind], allocation: Allocation) -> Result<Self> {
        let started = Instant::now();
        let runtime = Runtime::with_allocation(allocation).context("cannot start the WebAssembly runtime")?;
        let (plugins, settings) = load_components(&runtime, &config, kinds)?;
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, ?allocation, "components loaded");
        Ok(Session { runtime, config, plugins, settings })
    }

    pub fn plugin(&self, kind: SliceKind) -> &Plugin {
        &self.plugins[&kind]
    }

    /// The sandbox of one slice instance: its grants and limits from config,
    /// the shared simulated clock, and a seed of its own (derived from the
    /// run's seed, the slice kind and the symbol, so instances never share
    /// a random stream and a rerun gets the same streams).
    pub fn sandbox(&self, kind: SliceKind, symbol: &Symbol, clock: &SimClock) -> Sandbox {
        let section = self.config.config.slices.get(kind);
        Sandbox {
            symbol: Some(symbol.clone()),
            read_dirs: section.grants.read_dirs.clone(),
            clock: ClockSource::Simulated(clock.clone()),
            seed: derive_seed(self.config.config.run.seed, &[kind.as_str(), symbol.as_str()]),
            limits: section.limits,
        }
    }

    /// A data slice instance for `symbol`, opened on the range.
    pub fn open_data(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        clock: &SimClock,
    ) -> Result<(Box<dyn DataSlice>, SourceInfo)> {
        self.open_data_with(symbol, start, end, clock, &self.settings)
    }

    fn open_data_with(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        clock: &SimClock,
        settings: &Settings,
    ) -> Result<(Box<dyn DataSlice>, SourceInfo)> {
        let kind = SliceKind::Data;
        let mut data = self
            .runtime
            .data_slice(self.plugin(kind), &self.sandbox(kind, symbol, clock), &settings[&kind])
            .map_err(|e| self.explain(e))?;
        let source = data.open(symbol, start, end).map_err(|e| self.explain(e))?;
        Ok((data, source))
    }

    /// Builds every symbol's chain, each with its own simulated clock.
    ///
    /// One after another: most of the time goes to the kernel mapping each
    /// instance's memory (page faults, mmap, mprotect), which takes the
    /// process's memory-map lock, so instantiating on two threads measured
    /// slower, not faster; so did wasmtime's pooling allocator.
    pub fn chains(
        &self,
        symbols: &[Symbol],
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<(Chain, SimClock)>> {
        self.chains_with(symbols, start, end, &self.settings)
    }

    /// Like [`Session::chains`], with other settings for the slices (an
    /// optimisation trial's): the same compiled components, new instances.
    pub fn chains_with(
        &self,
        symbols: &[Symbol],
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        settings: &Settings,
    ) -> Result<Vec<(Chain, SimClock)>> {
        symbols
            .iter()
            .map(|symbol| {
                let clock = SimClock::new();
                self.chain_with(symbol, start, end, &clock, settings).map(|chain| (chain, clock))
            })
            .collect()
    }

    /// Builds the six-slice chain of `symbol`: fresh instances, nothing shared
    /// with any other symbol.
    fn chain_with(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        clock: &SimClock,
        settings: &Settings,
    ) -> Result<Chain> {
        let (data, source) = self.open_data_with(symbol, start, end, clock, settings)?;
        self.chain_from(symbol, data, source, clock, settings)
    }

    /// Builds the chain of `symbol` around a data slice that is already
    /// open: optimisation trials hand in one that replays bars the real data
    /// slice read once for every trial.
    pub fn chain_from(
        &self,
        symbol: &Symbol,
        data: Box<dyn DataSlice>,
        source: SourceInfo,
        clock: &SimClock,
        settings: &Settings,
    ) -> Result<Chain> {
        let rt = &self.runtime;
        let sb = |kind| self.sandbox(kind, symbol, clock);
        let mut analysis = rt.analysis_slice(
            self.plugin(SliceKind::Analysis),
            &sb(SliceKind::Analysis),
            settings_of(settings, SliceKind::Analysis),
        )?;
        let features = analysis.outputs()?;
        if features.len() > 256 || features.iter().any(|f| f.is_empty() || f.len() > 64) {
            bail!(
                "{} declares {} outputs; at most 256 names of 1 to 64 bytes are allowed",
                analysis.label(),
                features.len()
            );
        }
        let regime = rt.regime_slice(
            self.plugin(SliceKind::Regime),
            &sb(SliceKind::Regime),
            settings_of(settings, SliceKind::Regime),
            &features,
        )?;
        let strategy = rt.strategy_slice(
            self.plugin(SliceKind::Strategy),
            &sb(SliceKind::Strategy),
            settings_of(settings, SliceKind::Strategy),
            &features,
        )?;
        let sizing = rt.sizing_slice(
            self.plugin(SliceKind::Sizing),
            &sb(SliceKind::Sizing),
            settings_of(settings, SliceKind::Sizing),
        )?;
        let execution = rt.execution_slice(
            self.plugin(SliceKind::Execution),
            &sb(SliceKind::Execution),
            settings_of(settings, SliceKind::Execution),
        )?;
        Ok(Chain {
            symbol: symbol.clone(),
            slices: SymbolSlices { data, analysis, regime, strategy, sizing, execution },
            features,
            source,
        })
    }

    /// Slices see their granted directories under guest paths; add where those
    /// are on this machine, so a message like "no file /data/ETH-USD.csv" is actionable.
    fn explain(&self, err: crate::slice::SliceError) -> anyhow::Error {
        let grants = &self.config.config.slices.data.grants.read_dirs;
        if grants.is_empty() {
            return err.into();
        }
        let mapping: Vec<String> =
            grants.iter().map(|(guest, host)| format!("{guest} is {}", host.display())).collect();
        anyhow::anyhow!("{err} [in the data slice's sandbox {}]", mapping.join(", "))
    }
}

fn settings_of(settings: &Settings, kind: SliceKind) -> &[(String, ConfigValue)] {
    &settings[&kind]
}

/// Fresh instances for the backtest loop (replaying a failed batch,
/// replacing a failed slice).
pub struct Factory<'a> {
    pub session: &'a Session,
    /// The settings the run's chains were built with.
    pub settings: &'a Settings,
}

impl<'a> Factory<'a> {
    /// Instances with the config's settings.
    pub fn new(session: &'a Session) -> Self {
        Factory { session, settings: &session.settings }
    }

    fn args(
        &self,
        kind: SliceKind,
        symbol: &Symbol,
        clock: &SimClock,
    ) -> (&Plugin, Sandbox, &[(String, ConfigValue)]) {
        let s = self.session;
        (s.plugin(kind), s.sandbox(kind, symbol, clock), settings_of(self.settings, kind))
    }
}

impl SliceFactory for Factory<'_> {
    fn data(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        clock: &SimClock,
    ) -> SliceResult<Box<dyn DataSlice>> {
        let (plugin, sandbox, settings) = self.args(SliceKind::Data, symbol, clock);
        let mut data = self.session.runtime.data_slice(plugin, &sandbox, settings)?;
        data.open(symbol, start, end)?;
        Ok(data)
    }

    fn analysis(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn AnalysisSlice>> {
        let (plugin, sandbox, settings) = self.args(SliceKind::Analysis, symbol, clock);
        self.session.runtime.analysis_slice(plugin, &sandbox, settings)
    }

    fn regime(
        &self,
        symbol: &Symbol,
        features: &[String],
        clock: &SimClock,
    ) -> SliceResult<Box<dyn RegimeSlice>> {
        let (plugin, sandbox, settings) = self.args(SliceKind::Regime, symbol, clock);
        self.session.runtime.regime_slice(plugin, &sandbox, settings, features)
    }

    fn strategy(
        &self,
        symbol: &Symbol,
        features: &[String],
        clock: &SimClock,
    ) -> SliceResult<Box<dyn StrategySlice>> {
        let (plugin, sandbox, settings) = self.args(SliceKind::Strategy, symbol, clock);
        self.session.runtime.strategy_slice(plugin, &sandbox, settings, features)
    }

    fn sizing(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn SizingSlice>> {
        let (plugin, sandbox, settings) = self.args(SliceKind::Sizing, symbol, clock);
        self.session.runtime.sizing_slice(plugin, &sandbox, settings)
    }

    fn execution(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn ExecutionSlice>> {
        let (plugin, sandbox, settings) = self.args(SliceKind::Execution, symbol, clock);
        self.session.runtime.execution_slice(plugin, &sandbox, settings)
    }
}

/// A stable seed for one instance: FNV-1a over the run seed and the names.
pub fn derive_seed(seed: u64, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_slice_and_symbol_and_stay_fixed() {
        let a = derive_seed(42, &["strategy", "BTC-USD"]);
        assert_eq!(a, derive_seed(42, &["strategy", "BTC-USD"]));
        assert_ne!(a, derive_seed(42, &["strategy", "ETH-USD"]));
        assert_ne!(a, derive_seed(42, &["sizing", "BTC-USD"]));
        assert_ne!(a, derive_seed(43, &["strategy", "BTC-USD"]));
    }
}
