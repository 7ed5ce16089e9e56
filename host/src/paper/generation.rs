//! A generation is one version of a paper session's config with its six
//! components loaded: the session starts with one, and every accepted reload
//! makes the next. The factory builds slice instances from the current
//! generation, with the real clock in paper mode, and times every call.
//!
//! Components are run from copies in the session's folder, named by their
//! sha256, so that a restart (which replays the session from its first bar)
//! runs exactly the components that made the committed decisions, even if
//! the files the config names have been rebuilt since.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::RwLock;

use anyhow::{Context, Result};

use super::metrics::{LatencyHistogram, Timed};
use crate::clock::SimClock;
use crate::config::{LoadedConfig, RunConfig};
use crate::model::{ConfigValue, SliceKind, Symbol, Timestamp};
use crate::orchestrator::SliceFactory;
use crate::runtime::{ClockSource, Plugin, Runtime, Sandbox};
use crate::session::{derive_seed, load_components};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, RegimeSlice, SizingSlice, SliceResult, StrategySlice,
};

/// One version of the config, its components loaded and their settings checked.
pub struct Generation {
    /// Counted from 1 in the session.
    pub number: u32,
    pub config: LoadedConfig,
    pub plugins: BTreeMap<SliceKind, Plugin>,
    pub settings: BTreeMap<SliceKind, Vec<(String, ConfigValue)>>,
}

impl Generation {
    /// Loads (compiles, checks and asks to describe itself) every component
    /// of `config` and checks each slice's settings. Nothing runs yet.
    pub fn load(runtime: &Runtime, config: LoadedConfig, number: u32) -> Result<Self> {
        let (plugins, settings) = load_components(runtime, &config, &SliceKind::ALL)?;
        Ok(Generation { number, config, plugins, settings })
    }

    /// The slice kinds whose component or settings differ from `other`'s.
    pub fn changed_slices(&self, other: &Generation) -> BTreeSet<SliceKind> {
        SliceKind::ALL
            .into_iter()
            .filter(|k| {
                self.plugins[k].sha256 != other.plugins[k].sha256
                    || self.settings[k] != other.settings[k]
                    || self.config.config.slices.get(*k).limits != other.config.config.slices.get(*k).limits
                    || self.config.config.slices.get(*k).grants != other.config.config.slices.get(*k).grants
            })
            .collect()
    }
}

/// Copies every component `config` names into `dir` as `<sha256>.wasm` (once)
/// and points the config at the copies.
pub fn pin_components(config: &mut RunConfig, dir: &Path) -> Result<()> {
    use sha2::{Digest, Sha256};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pin = |plugin: &mut PathBuf, key: &str| -> Result<()> {
        let bytes = crate::files::read_bounded(plugin, crate::files::PLUGIN_MAX, "plugin")
            .with_context(|| format!("{key}.plugin"))?;
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let pinned = dir.join(format!("{sha}.wasm"));
        if !pinned.is_file() {
            let partial = dir.join(format!("{sha}.wasm.partial"));
            std::fs::write(&partial, &bytes)
                .and_then(|()| std::fs::rename(&partial, &pinned))
                .with_context(|| format!("cannot copy {} to {}", plugin.display(), pinned.display()))?;
        }
        *plugin = pinned;
        Ok(())
    };
    for kind in SliceKind::ALL {
        let section = config.slices.get_mut(kind);
        pin(&mut section.plugin, &format!("slices.{kind}"))?;
        if let Some(venue) = &mut section.venue {
            pin(&mut venue.plugin, &format!("slices.{kind}.venue"))?;
        }
    }
    Ok(())
}

/// Which clock slices get.
#[derive(Clone)]
pub enum Clock {
    /// Paper mode: the machine's clock.
    Real,
    /// `host replay`: the bar's time, as in a backtest (each chain's own
    /// simulated clock, which the loop hands the factory).
    Simulated,
}

/// Builds slice instances of the current generation for the loop.
pub struct PaperFactory {
    runtime: Arc<Runtime>,
    current: RwLock<Arc<Generation>>,
    clock: Clock,
    latency: Arc<LatencyRegistry>,
    /// Live mode: the venue router fills every execution slot (in a dry run
    /// around the config's execution slice, which simulates the fills).
    venue: Option<(Arc<crate::live::router::Venue>, bool)>,
}

/// Call latency histograms per symbol and slice kind, shared by every
/// instance that ever filled the slot.
#[derive(Default)]
pub struct LatencyRegistry(std::sync::Mutex<BTreeMap<(Symbol, SliceKind), Arc<LatencyHistogram>>>);

impl LatencyRegistry {
    pub fn get(&self, symbol: &Symbol, kind: SliceKind) -> Arc<LatencyHistogram> {
        let mut map = self.0.lock().expect("latency registry");
        Arc::clone(map.entry((symbol.clone(), kind)).or_default())
    }

    pub fn snapshot(&self) -> Vec<((Symbol, SliceKind), Arc<LatencyHistogram>)> {
        let map = self.0.lock().expect("latency registry");
        map.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
    }
}

impl PaperFactory {
    pub fn new(
        runtime: Arc<Runtime>,
        first: Arc<Generation>,
        clock: Clock,
        latency: Arc<LatencyRegistry>,
    ) -> Self {
        PaperFactory { runtime, current: RwLock::new(first), clock, latency, venue: None }
    }

    /// Live mode: execution slots route to `venue` (`dry_run`: checked and
    /// logged, then filled by the config's execution slice).
    pub fn with_venue(mut self, venue: Arc<crate::live::router::Venue>, dry_run: bool) -> Self {
        self.venue = Some((venue, dry_run));
        self
    }

    pub fn current(&self) -> Arc<Generation> {
        Arc::clone(&self.current.read().expect("generation lock"))
    }

    /// From now on, instances come from `generation`.
    pub fn switch_to(&self, generation: Arc<Generation>) {
        *self.current.write().expect("generation lock") = generation;
    }

    fn sandbox(
        &self,
        generation: &Generation,
        kind: SliceKind,
        symbol: &Symbol,
        clock: &SimClock,
    ) -> Sandbox {
        let section = generation.config.config.slices.get(kind);
        Sandbox {
            symbol: Some(symbol.clone()),
            read_dirs: section.grants.read_dirs.clone(),
            clock: match &self.clock {
                Clock::Real => ClockSource::Real,
                Clock::Simulated => ClockSource::Simulated(clock.clone()),
            },
            // The same seed as a backtest's instance of this slot, so paper
            // and backtest draw the same random numbers.
            seed: derive_seed(generation.config.config.run.seed, &[kind.as_str(), symbol.as_str()]),
            limits: section.limits,
        }
    }

    fn parts(
        &self,
        kind: SliceKind,
        symbol: &Symbol,
        clock: &SimClock,
    ) -> (Arc<Generation>, Sandbox, Arc<LatencyHistogram>) {
        let generation = self.current();
        let sandbox = self.sandbox(&generation, kind, symbol, clock);
        (generation, sandbox, self.latency.get(symbol, kind))
    }
}

impl SliceFactory for PaperFactory {
    fn data(
        &self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
        clock: &SimClock,
    ) -> SliceResult<Box<dyn DataSlice>> {
        let kind = SliceKind::Data;
        let (g, sandbox, latency) = self.parts(kind, symbol, clock);
        let inner = self.runtime.data_slice(&g.plugins[&kind], &sandbox, &g.settings[&kind])?;
        let mut data = Timed::new(inner, latency);
        data.open(symbol, start, end)?;
        Ok(Box::new(data))
    }

    fn analysis(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn AnalysisSlice>> {
        let kind = SliceKind::Analysis;
        let (g, sandbox, latency) = self.parts(kind, symbol, clock);
        let inner = self.runtime.analysis_slice(&g.plugins[&kind], &sandbox, &g.settings[&kind])?;
        Ok(Box::new(Timed::new(inner, latency)))
    }

    fn regime(
        &self,
        symbol: &Symbol,
        features: &[String],
        clock: &SimClock,
    ) -> SliceResult<Box<dyn RegimeSlice>> {
        let kind = SliceKind::Regime;
        let (g, sandbox, latency) = self.parts(kind, symbol, clock);
        let inner = self.runtime.regime_slice(&g.plugins[&kind], &sandbox, &g.settings[&kind], features)?;
        Ok(Box::new(Timed::new(inner, latency)))
    }

    fn strategy(
        &self,
        symbol: &Symbol,
        features: &[String],
        clock: &SimClock,
    ) -> SliceResult<Box<dyn StrategySlice>> {
        let kind = SliceKind::Strategy;
        let (g, sandbox, latency) = self.parts(kind, symbol, clock);
        let inner = self.runtime.strategy_slice(&g.plugins[&kind], &sandbox, &g.settings[&kind], features)?;
        Ok(Box::new(Timed::new(inner, latency)))
    }

    fn sizing(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn SizingSlice>> {
        let kind = SliceKind::Sizing;
        let (g, sandbox, latency) = self.parts(kind, symbol, clock);
        let inner = self.runtime.sizing_slice(&g.plugins[&kind], &sandbox, &g.settings[&kind])?;
        Ok(Box::new(Timed::new(inner, latency)))
    }

    fn execution(&self, symbol: &Symbol, clock: &SimClock) -> SliceResult<Box<dyn ExecutionSlice>> {
        let kind = SliceKind::Execution;
        let (g, sandbox, latency) = self.parts(kind, symbol, clock);
        let plugin = &g.plugins[&kind];
        if let (Some((venue, dry_run)), true) = (&self.venue, plugin.uses_venue) {
            // The slice works orders itself; the exchange router is its
            // venue (in a dry run, in front of the simulated venue).
            let simulated = dry_run.then(|| self.runtime.simulated_venue(plugin, &sandbox)).transpose()?;
            let router = venue.execution(symbol, simulated);
            let routed =
                self.runtime.execution_slice_at(plugin, &sandbox, &g.settings[&kind], Some(router))?;
            return Ok(Box::new(Timed::new(routed, latency)));
        }
        if let Some((venue, false)) = &self.venue {
            return Ok(Box::new(Timed::new(venue.execution(symbol, None), latency)));
        }
        let inner = self.runtime.execution_slice(&g.plugins[&kind], &sandbox, &g.settings[&kind])?;
        if let Some((venue, true)) = &self.venue {
            return Ok(Box::new(Timed::new(venue.execution(symbol, Some(inner)), latency)));
        }
        Ok(Box::new(Timed::new(inner, latency)))
    }
}

/// Where the components of a session are pinned.
pub fn components_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("components")
}

/// What the paper loop knows of its config file between checks, without
/// reading it: the loop thread only looks at the file's metadata (`stat`,
/// which neither blocks on a FIFO nor reads a byte), and the text is read
/// and compared on the reload thread, so a config replaced by a FIFO, a
/// device or a huge file can never stop the bars.
pub struct ConfigWatch {
    /// The text of the config version in use (or last refused), shared
    /// with the reload thread that compares and replaces it.
    pub text: Arc<std::sync::Mutex<String>>,
    seen: Option<FileStamp>,
}

/// Enough of a file's metadata to notice it was edited or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    dev: u64,
    ino: u64,
}

impl ConfigWatch {
    /// `text` is the config version in use. A fresh session just read it
    /// from `path`; a resumed one runs its stored versions, so the file
    /// counts as unseen and the first check reads it (a file edited, or
    /// broken, while the session was down is reloaded or refused then).
    pub fn new(path: &Path, text: String, resumed: bool) -> Self {
        let seen = if resumed { None } else { stamp(path) };
        ConfigWatch { text: Arc::new(std::sync::Mutex::new(text)), seen }
    }

    /// True when the file looks different from the last time this was asked.
    pub fn changed(&mut self, path: &Path) -> bool {
        let now = stamp(path);
        std::mem::replace(&mut self.seen, now) != now
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp { len: meta.len(), modified: meta.modified().ok(), dev: meta.dev(), ino: meta.ino() })
}
