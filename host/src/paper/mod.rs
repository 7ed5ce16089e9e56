//! Paper mode: the backtest loop driven by a live feed, for weeks.
//!
//! - A feed thread appends bars to `<out>/feed/<SYMBOL>.csv`; the data slice
//!   (csv-data with `follow = true`) reads them, so bars still come through
//!   the data slice and its sandbox. Fills are simulated by the execution
//!   slice and every order passes the same risk gate as in backtests.
//! - Every processed timestamp is committed to an SQLite database in one
//!   transaction, then written to the audit log.
//! - On restart the session is replayed from its first bar on fresh
//!   instances, with the config versions it had at the bars it had them,
//!   writing nothing: backtests are deterministic, so this rebuilds every
//!   slice's state, the working orders and the ledger exactly. The replayed
//!   bars and ledger are checked against the database, then the loop carries
//!   on with the first bar after the last committed one. A bar is committed
//!   whole or not at all, so no fill is lost or applied twice.
//! - SIGINT/SIGTERM stop after the bar in progress is committed; a second
//!   one exits at once (the database is consistent at every instant).
//! - The config file is watched (and re-read on SIGHUP): a changed one is
//!   loaded on a thread of its own while the loop keeps running; if valid it
//!   is applied at the first bar boundary after, if not refused and logged.

pub mod audit;
mod chain;
mod coinbase;
pub(crate) mod feed;
pub(crate) use feed::parse_ts as parse_feed_ts;
mod generation;
pub mod http;
mod metrics;
pub mod replay;
pub mod status;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;

use crate::clock::SimClock;
use crate::config::{LoadedConfig, RunConfig};
use crate::live::LiveSession;
use crate::model::{Symbol, Timestamp};
use crate::orchestrator::{Backtest, BacktestSettings, ChainSetup, Progress, SliceFactory};
use crate::runtime::Runtime;
use crate::time::iso;
use audit::{AuditLog, StepRecorder, step_line};
use generation::{
    Clock, ConfigWatch, Generation, LatencyRegistry, PaperFactory, components_dir, pin_components,
};
use status::{SessionState, SharedStatus, Status};
use store::{ConfigVersion, SliceSnapshot, Store};

/// Where a session's bars come from.
#[derive(Debug, Clone)]
pub enum FeedChoice {
    /// `<data-dir>/<SYMBOL>.csv` played at `speed` (bar time per real time;
    /// `None` as fast as possible), rows in `[from, to]`.
    Replay { speed: Option<f64>, from: Option<Timestamp>, to: Option<Timestamp> },
    /// Coinbase Exchange public candles, polled.
    Coinbase,
    /// Live mode: the venue's closed candles (`[live]`).
    Venue,
}

/// A paper session as the command line asked for it.
#[derive(Debug, Clone)]
pub struct Options {
    pub symbols: Vec<Symbol>,
    pub config: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub slice_overrides: Vec<String>,
    pub out: PathBuf,
    pub state: PathBuf,
    pub feed: FeedChoice,
    /// Live mode: orders go to the venue in `[live]`.
    pub live: Option<crate::live::LiveOptions>,
}

/// How often the config file is looked at for changes.
const CONFIG_CHECK: Duration = Duration::from_millis(250);

/// The config file as read, with the command line's overrides applied and
/// made fit for paper mode, and the directory the replay feed reads.
struct PaperConfig {
    file_text: String,
    config: LoadedConfig,
    source_dir: PathBuf,
}

/// Reads and checks the config file: every problem is reported, nothing is loaded.
fn read_config(opts: &Options, feed_dir: &Path) -> Result<PaperConfig> {
    let (mut config, file_text) = LoadedConfig::read_with_text(&opts.config)?;
    if let Some(dir) = &opts.data_dir {
        crate::cli::run::override_data_dir(&mut config, dir)?;
    }
    for swap in &opts.slice_overrides {
        crate::cli::run::override_slice(&mut config, swap)?;
    }
    config.validate()?;
    let source_dir = paperize(&mut config.config, feed_dir)
        .with_context(|| format!("config file {}", config.path.display()))?;
    Ok(PaperConfig { file_text, config, source_dir })
}

/// Points the data slice at the feed directory and makes it follow the
/// files there. Returns the directory it was granted before.
fn paperize(config: &mut RunConfig, feed_dir: &Path) -> Result<PathBuf> {
    let data = &mut config.slices.data;
    if data.grants.read_dirs.len() != 1 {
        bail!(
            "slices.data.grants.read-dirs: paper mode needs the data slice to have exactly one directory grant, \
             which it points at the session's feed folder"
        );
    }
    let host_dir = data.grants.read_dirs.values_mut().next().expect("one grant");
    let source = std::mem::replace(host_dir, feed_dir.to_owned());
    data.config.insert("follow".into(), toml::Value::Boolean(true));
    Ok(source)
}

/// The sections a reload may not change, as text, for comparison.
fn fixed_sections(config: &RunConfig) -> Vec<(&'static str, String)> {
    let text = |v: &dyn erased::Ser| v.to_toml();
    vec![
        ("run", text(&config.run)),
        ("faults", text(&config.faults)),
        ("shorting", text(&config.shorting)),
        ("account", text(&config.account)),
        ("paper", text(&config.paper)),
        ("live", text(&config.live)),
    ]
}

mod erased {
    pub trait Ser {
        fn to_toml(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_toml(&self) -> String {
            toml::to_string(self).unwrap_or_default()
        }
    }
}

fn settings_of(config: &RunConfig) -> BacktestSettings {
    BacktestSettings { live: true, ..BacktestSettings::from_config(config, None, None) }
}

/// Paper mode reads one bar per call, so after every committed bar each
/// slice's state is exactly that bar's: what a slice's persisted state
/// means, and what a restart rebuilds.
const PAPER_BATCH: u32 = 1;

/// The state of every slice that exports it, for chains with no bar waiting.
fn save_snapshots(backtest: &mut Backtest<'_>) -> Vec<SliceSnapshot> {
    let symbols: Vec<Symbol> = backtest.symbols().cloned().collect();
    let mut out = Vec::new();
    for (i, symbol) in symbols.into_iter().enumerate() {
        let Some((ts, slices)) = backtest.slices_at_rest(i) else { continue };
        for (slice, instance) in slices {
            match instance.save_state() {
                Ok(Some(state)) => out.push(SliceSnapshot { symbol: symbol.clone(), slice, ts, state }),
                Ok(None) => {}
                // Its state is then rebuilt by replay on a restart, as for any slice.
                Err(e) => tracing::warn!(symbol = %symbol, "cannot save the state of {e}"),
            }
        }
    }
    out
}

/// Hands persisted slice states back after the restart's replay, where the
/// replayed chain is at the bar they were saved after.
fn restore_snapshots(backtest: &mut Backtest<'_>, snapshots: &[SliceSnapshot]) -> Result<Vec<String>> {
    let symbols: Vec<Symbol> = backtest.symbols().cloned().collect();
    let mut restored = Vec::new();
    for (i, symbol) in symbols.iter().enumerate() {
        let mine: Vec<&SliceSnapshot> = snapshots.iter().filter(|s| &s.symbol == symbol).collect();
        if mine.is_empty() {
            continue;
        }
        let Some((at, slices)) = backtest.slices_at_rest(i) else {
            tracing::warn!(symbol = %symbol, "bars are waiting: persisted slice state not restored (rebuilt by replay)");
            continue;
        };
        for (kind, instance) in slices {
            let Some(snapshot) = mine.iter().find(|s| s.slice == kind) else { continue };
            if snapshot.ts != at {
                tracing::warn!(
                    symbol = %symbol,
                    slice = %kind,
                    "persisted state is from {}, the replay is at {}: rebuilt by replay",
                    iso(snapshot.ts),
                    iso(at)
                );
                continue;
            }
            match instance.restore_state(&snapshot.state) {
                Ok(true) => restored.push(format!("{symbol}/{kind}")),
                Ok(false) => {}
                Err(e) => bail!("{e} (restoring its state after {} for {symbol})", iso(at)),
            }
        }
    }
    Ok(restored)
}

/// Builds every symbol's chain from the factory's current generation.
pub(crate) fn build_chains(factory: &PaperFactory, symbols: &[Symbol]) -> Result<Vec<ChainSetup>> {
    let mut chains = Vec::new();
    for symbol in symbols {
        // Each symbol's own simulated clock (used by `host replay`).
        let clock = SimClock::new();
        let data = factory.data(symbol, None, None, &clock)?;
        let mut analysis = factory.analysis(symbol, &clock)?;
        let features = analysis.outputs()?;
        let regime = factory.regime(symbol, &features, &clock)?;
        let strategy = factory.strategy(symbol, &features, &clock)?;
        let sizing = factory.sizing(symbol, &clock)?;
        let execution = factory.execution(symbol, &clock)?;
        chains.push(ChainSetup {
            symbol: symbol.clone(),
            clock,
            slices: crate::slice::SymbolSlices { data, analysis, regime, strategy, sizing, execution },
            features,
            source: None,
        });
    }
    Ok(chains)
}

/// Swaps the slices `next` changes, in every chain, at this bar boundary:
/// all chains or none. Returns what changed.
pub(crate) fn apply_generation(
    backtest: &mut Backtest<'_>,
    factory: &PaperFactory,
    next: Arc<Generation>,
    recorder: &mut StepRecorder,
) -> Result<String> {
    let current = factory.current();
    let changed = next.changed_slices(&current);
    let risk_changed = next.config.config.risk != current.config.config.risk;
    factory.switch_to(Arc::clone(&next));
    let mut swaps = Vec::new();
    for i in 0..backtest.symbols().count() {
        match backtest.prepare_swap(i, &changed, factory) {
            Ok(swap) => swaps.push(swap),
            Err(e) => {
                factory.switch_to(current);
                bail!("{e}");
            }
        }
    }
    for swap in swaps {
        backtest.install_swap(swap, recorder)?;
    }
    if risk_changed {
        backtest.set_risk_limits(next.config.config.risk.clone());
    }
    let mut what: Vec<String> = changed
        .iter()
        .map(|k| {
            let (old, new) = (&current.plugins[k], &next.plugins[k]);
            if old.sha256 == new.sha256 {
                format!("{k} settings ({})", new.label())
            } else {
                format!("{k} {} -> {}", old.label(), new.label())
            }
        })
        .collect();
    if risk_changed {
        what.push("risk limits".into());
    }
    Ok(if what.is_empty() { "nothing that affects decisions".into() } else { what.join(", ") })
}

/// Runs a paper session until it is stopped or its replay feed runs out.
pub fn run(opts: Options) -> Result<ExitCode> {
    let stop = Arc::new(AtomicUsize::new(0));
    let hangup = Arc::new(AtomicBool::new(false));
    register_signals(&stop, &hangup)?;

    let out = &opts.out;
    let feed_dir = out.join("feed");
    if let Some(options) = &opts.live {
        // A session that cannot trade leaves no folder or database behind.
        crate::live::preflight(&read_config(&opts, &feed_dir)?.config, options)?;
    }
    for dir in [out, &feed_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let out = std::path::absolute(out).unwrap_or_else(|_| out.clone());
    let feed_dir = out.join("feed");
    let mut store = Store::open(&opts.state)?;
    let started = Instant::now();

    // The config versions of the session: the stored ones on a restart, else the file's.
    let runtime = Arc::new(Runtime::new().context("cannot start the WebAssembly runtime")?);
    let mut versions = store.config_versions()?;
    let resumed = !versions.is_empty();
    // A restart runs the stored config versions; the file is read again by
    // the reload check, so a broken file cannot stop a session from resuming.
    let source_dir = match store.meta("source_dir")? {
        Some(dir) if !versions.is_empty() => opts.data_dir.clone().unwrap_or_else(|| PathBuf::from(dir)),
        _ => {
            let file = read_config(&opts, &feed_dir)?;
            store.set_meta("source_dir", &file.source_dir.display().to_string())?;
            file.source_dir
        }
    };
    if versions.is_empty() {
        let file = read_config(&opts, &feed_dir)?;
        let mut config = file.config.config.clone();
        pin_components(&mut config, &components_dir(&out))?;
        let version = ConfigVersion {
            generation: 1,
            after_ts: None,
            file_text: file.file_text.clone(),
            config_toml: toml::to_string(&config).context("cannot store the config")?,
        };
        store.record_config(&version, "the session's first config")?;
        versions.push(version);
    }
    let load = |v: &ConfigVersion| -> Result<Arc<Generation>> {
        let config: RunConfig = toml::from_str(&v.config_toml).with_context(|| {
            format!("config version {} in {} cannot be read", v.generation, store.path().display())
        })?;
        let loaded = LoadedConfig { path: opts.config.clone(), config };
        Ok(Arc::new(Generation::load(&runtime, loaded, v.generation)?))
    };
    // Versions that took effect before the first bar replace each other; the rest apply at their bars.
    let first_index = versions.iter().rposition(|v| v.after_ts.is_none()).unwrap_or(0);
    let first = load(&versions[first_index])?;
    let mut later: Vec<(Timestamp, Arc<Generation>)> = Vec::new();
    for v in &versions[first_index + 1..] {
        later.push((v.after_ts.unwrap_or_default(), load(v)?));
    }
    let mut last_file_text = ConfigWatch::new(
        &opts.config,
        versions.last().map(|v| v.file_text.clone()).unwrap_or_default(),
        resumed,
    );
    let start_cash = first.config.config.run.start_cash;
    store.check_identity(&opts.symbols, start_cash)?;
    let live = match &opts.live {
        Some(options) => {
            store.enable_venue_journal()?;
            // Where the key is and how to reach the venue are read from the
            // file as it is now (a restart after fixing a key path must see
            // the fix); the stored version serves when the file cannot be read.
            let venue_config = match read_config(&opts, &feed_dir) {
                Ok(file) => file.config,
                Err(e) => {
                    tracing::warn!("reading [live] from the stored config: {e:#}");
                    first.config.clone()
                }
            };
            let session = LiveSession::connect(&venue_config, &opts.symbols, options.clone(), &store)?;
            session.load_journal(&store)?;
            session.confirm(&opts.symbols, start_cash)?;
            Some(session)
        }
        None => None,
    };

    let status: SharedStatus = Arc::new(Mutex::new(Status::new(opts.symbols.clone(), start_cash)));
    status.lock().expect("status").live = live.is_some();
    // A pause outlives a restart: the operator lifts it, not a crash.
    if let Some(session) = &live
        && store.meta("live_paused")?.as_deref() == Some("1")
    {
        session.venue.set_paused(true);
        status.lock().expect("status").paused = true;
        tracing::warn!("the operator paused new orders before the restart: still paused (host ctl resume)");
    }
    let http = match first.config.config.paper.http_port {
        Some(port) => Some(http::serve(port, Arc::clone(&status), &out)?),
        None => None,
    };

    // The feed.
    let lock: feed::FeedLock = Arc::default();
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let feed_stop = Arc::new(AtomicBool::new(false));
    let appender = || feed::Appender::new(&feed_dir);
    let feed_thread = match &opts.feed {
        FeedChoice::Replay { speed, from, to } => {
            let mut pending = Vec::new();
            for symbol in &opts.symbols {
                let source = feed::file_of(&source_dir, symbol);
                let (comments, _) = feed::read_source(&source, None, None, Some(Timestamp::MAX))?;
                let last = feed::prepare_file(&feed_dir, symbol, &comments)?;
                let (_, rows) = feed::read_source(&source, *from, *to, last)?;
                pending.push((symbol.clone(), rows));
            }
            status.lock().expect("status").feed.kind = "replay".into();
            feed::ReplayFeed { pending, speed: *speed }.spawn(
                appender(),
                Arc::clone(&lock),
                wake_tx.clone(),
                Arc::clone(&status),
                Arc::clone(&feed_stop),
            )
        }
        FeedChoice::Coinbase => {
            let mut last = BTreeMap::new();
            for symbol in &opts.symbols {
                let comment = format!("Coinbase Exchange candles of {symbol}, polled by a paper session");
                last.insert(symbol.clone(), feed::prepare_file(&feed_dir, symbol, &[comment])?);
            }
            status.lock().expect("status").feed.kind = "coinbase".into();
            coinbase::PollingFeed::new(&first.config.config.paper, last)?.spawn(
                appender(),
                Arc::clone(&lock),
                wake_tx.clone(),
                Arc::clone(&status),
                Arc::clone(&feed_stop),
            )
        }
        FeedChoice::Venue => {
            let Some(session) = &live else { bail!("the venue feed is live mode's") };
            let mut last = BTreeMap::new();
            for symbol in &opts.symbols {
                let comment = format!(
                    "{symbol}'s closed candles from {}, for a live session",
                    session.settings.rest_url
                );
                last.insert(symbol.clone(), feed::prepare_file(&feed_dir, symbol, &[comment])?);
            }
            status.lock().expect("status").feed.kind = "venue".into();
            crate::live::VenueFeed {
                client: Arc::clone(&session.client),
                credentials: Arc::clone(&session.credentials),
                settings: session.settings.clone(),
                last,
                newest_closed: Arc::clone(&session.newest_closed),
            }
            .spawn(
                appender(),
                Arc::clone(&lock),
                wake_tx.clone(),
                Arc::clone(&status),
                Arc::clone(&feed_stop),
            )
            .context("cannot start the venue feed")?
        }
    };

    let latency = Arc::new(LatencyRegistry::default());
    let mut factory =
        PaperFactory::new(Arc::clone(&runtime), Arc::clone(&first), Clock::Real, Arc::clone(&latency));
    if let Some(session) = &live {
        factory = factory.with_venue(Arc::clone(&session.venue), session.options.dry_run);
    }
    let chains = build_chains(&factory, &opts.symbols)?;
    let mut settings = settings_of(&first.config.config);
    settings.batch_size = PAPER_BATCH;
    if live.is_some() {
        // The venue holds the positions: the host closes them there.
        settings.liquidation = crate::orchestrator::Liquidation::ThroughExecution;
    }
    let mut backtest = Backtest::new(chains, settings, Some(&factory));
    backtest.record_decisions(true);

    let mut audit = AuditLog::open(&out.join("audit.jsonl"))?;
    if audit.last_step.is_none() && std::fs::metadata(audit.path()).map(|m| m.len()).unwrap_or(0) == 0 {
        let session = serde_json::json!({
            "kind": "session", "symbols": opts.symbols, "start_cash": start_cash.normalize().to_string(),
        });
        audit.write_all(&[session, config_line(&versions[0])])?;
    }
    // A crash between recording a reload and logging it leaves the log without it.
    for v in &versions {
        if !audit.generations.contains(&u64::from(v.generation)) {
            audit.write(&config_line(v))?;
        }
    }

    // Replay what was committed.
    let committed = store.last_step()?;
    let committed_bars = if committed.is_some() { store.bars()? } else { BTreeMap::new() };
    let resumed = store.step_count()?;
    let mut rec = StepRecorder::default();
    let mut refusals_before: BTreeMap<String, u64> = BTreeMap::new();
    let mut catching_up = committed.is_some();
    if catching_up {
        tracing::info!(
            "resuming: replaying {resumed} committed bars up to {}",
            iso(committed.unwrap_or_default())
        );
    }
    store.session_event(if catching_up { "starting (resuming)" } else { "starting" })?;
    if let Some(session) = &live
        && !catching_up
    {
        session.reconcile(backtest.ledger(), &opts.symbols)?;
    }
    let mut later = later.into_iter().peekable();
    // Flattens the operator asked for, re-applied at the bars they took effect after.
    let mut flattens: std::collections::VecDeque<Flatten> = recorded_flattens(&store)?.into();
    let mut last_stepped: Option<Timestamp> = None;

    let mut next_config_check = Instant::now();
    let mut pending_reload: Option<PendingReload> = None;
    // Timestamps committed by this process, to say how many ran during a reload.
    let mut committed_steps: u64 = 0;
    let mut outcome = "stopped";
    let result: Result<()> = (|| {
        loop {
            if stop.load(Ordering::Relaxed) > 0 && !catching_up {
                break;
            }
            if !catching_up {
                set_state(&status, &backtest, SessionState::Running);
                if let Some(session) = &live {
                    let generation = factory.current().number;
                    operator_commands(
                        session,
                        &status,
                        &store,
                        &mut backtest,
                        &mut rec,
                        last_stepped,
                        generation,
                    )?;
                }
                let bars_now = committed_steps;
                if pending_reload.as_ref().is_some_and(|p| p.task.is_finished()) {
                    let pending = pending_reload.take().expect("checked");
                    finish_reload(
                        pending,
                        &opts,
                        &factory,
                        &mut backtest,
                        &mut store,
                        &mut audit,
                        &status,
                        last_stepped,
                        bars_now,
                        &mut rec,
                    )?;
                }
                if pending_reload.is_none() {
                    let hup = hangup.swap(false, Ordering::Relaxed);
                    if hup || Instant::now() >= next_config_check {
                        next_config_check = Instant::now() + CONFIG_CHECK;
                        pending_reload = start_reload(
                            &opts,
                            &feed_dir,
                            &out,
                            &runtime,
                            &factory,
                            &status,
                            &mut last_file_text,
                            hup,
                            bars_now,
                        );
                    }
                }
            }
            let exhausted_before = status.lock().expect("status").feed.exhausted;
            let progress = {
                let _guard = lock.lock().expect("feed lock");
                // A panic in a step (a host bug) fails the session with its
                // files and summary written, as any failed step does.
                crate::orchestrator::guarded(|| backtest.advance(&mut rec))?
            };
            // A fault is in the log whatever the progress (a data slice's fires while waiting).
            audit::log_faults(&mut audit, backtest.faults())?;
            match progress {
                Progress::Stepped(ts) => {
                    last_stepped = Some(ts);
                    rec.refusals = audit::refusals_since(backtest.refusals(), &mut refusals_before);
                    if catching_up {
                        for (symbol, bar) in &rec.step.bars {
                            match committed_bars.get(&(symbol.to_string(), bar.ts)) {
                                Some(b) if b == bar => {}
                                other => bail!(
                                    "the feed file {} does not hold the bars the session committed: at {} it has {:?}, \
                                     the state database {:?}",
                                    feed::file_of(&feed_dir, symbol).display(),
                                    iso(bar.ts),
                                    bar,
                                    other
                                ),
                            }
                        }
                        if audit.last_step.is_none_or(|a| ts > a) {
                            audit.write(&step_line(&rec))?;
                        }
                        rec.clear();
                        // The committed state is the state at the commit, before
                        // what the operator or a reload did between bars.
                        if Some(ts) == committed {
                            verify_resumed(&store, &backtest)?;
                            if let Some(session) = &live {
                                session.reconcile(backtest.ledger(), &opts.symbols)?;
                            }
                        }
                        // Between two bars, in the order they were applied: a
                        // flatten under the generation before a reload, the
                        // reload, a flatten under the new generation.
                        let generation = factory.current().number;
                        replay_flattens(&mut flattens, ts, generation, &mut backtest, &mut rec)?;
                        if later.peek().is_some_and(|(at, _)| *at == ts) {
                            let (_, next) = later.next().expect("peeked");
                            // Orders it cancels belong to the next bar's record, as they did.
                            apply_generation(&mut backtest, &factory, next, &mut rec)?;
                        }
                        replay_flattens(&mut flattens, ts, u32::MAX, &mut backtest, &mut rec)?;
                        if Some(ts) == committed {
                            let restored = restore_snapshots(&mut backtest, &store.snapshots()?)?;
                            if !restored.is_empty() {
                                tracing::info!("handed persisted state back to {}", restored.join(", "));
                            }
                            status.lock().expect("status").restored = restored;
                            catching_up = false;
                            let mut s = status.lock().expect("status");
                            s.resumed_bars = resumed;
                            s.config_generation = factory.current().number;
                            drop(s);
                            tracing::info!(
                                "resumed after {resumed} bars in {:.0} ms",
                                started.elapsed().as_secs_f64() * 1e3
                            );
                        }
                        continue;
                    }
                    let snapshots = save_snapshots(&mut backtest);
                    if let Some(session) = &live {
                        store.stage_venue_journal(session.journal_lines());
                    }
                    let took = store.commit_step(&rec.step, &backtest, &snapshots)?;
                    committed_steps += 1;
                    if !snapshots.is_empty() {
                        let mut s = status.lock().expect("status");
                        for snap in &snapshots {
                            s.snapshots.insert(format!("{}/{}", snap.symbol, snap.slice), snap.state.len());
                        }
                    }
                    audit.write(&step_line(&rec))?;
                    update_status(&status, &backtest, &rec, &latency, took);
                    rec.clear();
                }
                Progress::Waiting if catching_up => bail!(
                    "the feed files in {} end before the last committed bar ({}): the session cannot be resumed",
                    feed_dir.display(),
                    iso(committed.unwrap_or_default())
                ),
                Progress::Waiting => {
                    if exhausted_before {
                        outcome = "completed";
                        break;
                    }
                    let _ = wake_rx.recv_timeout(Duration::from_millis(100));
                }
                Progress::Finished => {
                    outcome = "completed";
                    break;
                }
            }
        }
        Ok(())
    })();

    set_state(&status, &backtest, SessionState::Stopping);
    if pending_reload.is_some() {
        tracing::warn!("the session stopped before its changed config finished loading: it was not applied");
    }
    feed_stop.store(true, Ordering::Relaxed);
    let _ = feed_thread.join();
    if let Some(session) = &live {
        let (sent, refused) = session.venue.counts();
        tracing::info!("venue: {sent} order(s) sent by this process, {refused} not sent or refused");
    }
    if let Some(session) = &live
        && stop.load(Ordering::Relaxed) > 0
    {
        match session.settings.on_stop {
            crate::live::OnStop::Cancel => session.cancel_working(),
            crate::live::OnStop::Leave => {
                let left = session.venue.working_venue_orders();
                if !left.is_empty() {
                    tracing::warn!(
                        "stopping: {} order(s) left working at the venue (live.on-stop = \"leave\")",
                        left.len()
                    );
                }
            }
        }
    }
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let commit_seconds = status.lock().expect("status").commit_seconds;
    let summary = finish_files(
        &store,
        &out,
        &opts,
        &backtest,
        live.as_ref(),
        outcome,
        error.as_deref(),
        commit_seconds,
    );
    let event = store.session_event(&format!("stopped ({outcome})"));
    set_state(&status, &backtest, SessionState::Stopped);
    drop(http);
    if let Ok(summary) = &summary {
        print!("{summary}");
    }
    match (result, summary) {
        (Ok(()), Ok(_)) => event.map(|()| ExitCode::SUCCESS).map_err(Into::into),
        (result, summary) => Err(stop_error(result.err(), summary.err(), &store, &opts, &out)),
    }
}

/// Why a session stopped, when the loop failed, or its files could not be
/// written, or both: neither error hides the other, and the user learns what
/// is safe (every bar up to the last committed one is in the state database).
fn stop_error(
    loop_error: Option<anyhow::Error>,
    files_error: Option<anyhow::Error>,
    store: &Store,
    opts: &Options,
    out: &Path,
) -> anyhow::Error {
    let committed = match store.last_step() {
        Ok(Some(ts)) => format!("every bar up to {} is committed", iso(ts)),
        Ok(None) => "no bar was committed".to_owned(),
        Err(e) => format!("its last committed bar cannot be read: {e}"),
    };
    let mode = mode_name(opts);
    let saved = format!("{committed} in its state database {}", opts.state.display());
    match (loop_error, files_error) {
        (Some(e), None) => {
            e.context(format!("the {mode} session stopped; {saved}; its files are in {}", out.display()))
        }
        (None, Some(files)) => files.context(format!(
            "the {mode} session ended, but its files in {} could not all be written; {saved}, \
             from which a restart writes them again",
            out.display()
        )),
        (Some(e), Some(files)) => anyhow::anyhow!(
            "the {mode} session stopped: {e:#}\nand then its files in {} could not all be written: {files:#}\n{saved}",
            out.display()
        ),
        (None, None) => anyhow::anyhow!("the {mode} session stopped; {saved}"),
    }
}

/// Why the host closes positions on an operator's flatten.
const FLATTEN_REASON: &str = "operator flatten (host ctl flatten)";

/// An operator's flatten as the state database keeps it: applied between
/// the bar `after` and the next, under config generation `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Flatten {
    after: Option<Timestamp>,
    generation: u32,
}

fn recorded_flattens(store: &Store) -> Result<Vec<Flatten>> {
    match store.meta("live_flattens")? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).with_context(|| {
            format!("the operator's flattens recorded in {} cannot be read", store.path().display())
        }),
    }
}

/// Re-applies, while replaying, the flattens recorded after bar `ts` under
/// a generation up to `generation`: the same cancellations and closing
/// orders, which the venue journal answers as the venue did.
fn replay_flattens(
    flattens: &mut std::collections::VecDeque<Flatten>,
    ts: Timestamp,
    generation: u32,
    backtest: &mut Backtest<'_>,
    rec: &mut StepRecorder,
) -> Result<()> {
    // One before the first bar found nothing to cancel or close.
    while flattens.front().is_some_and(|f| f.after.is_none_or(|at| at < ts)) {
        flattens.pop_front();
    }
    while flattens.front().is_some_and(|f| f.after == Some(ts) && f.generation <= generation) {
        flattens.pop_front();
        backtest
            .flatten(FLATTEN_REASON, rec)
            .with_context(|| format!("replaying the flatten after {}", iso(ts)))?;
    }
    Ok(())
}

/// Applies what `host ctl` asked, between bars. A flatten is recorded
/// before anything is sent, so a restart re-applies it at the same bar.
fn operator_commands(
    session: &LiveSession,
    status: &SharedStatus,
    store: &Store,
    backtest: &mut Backtest<'_>,
    rec: &mut StepRecorder,
    last_stepped: Option<Timestamp>,
    generation: u32,
) -> Result<()> {
    let commands = std::mem::take(&mut status.lock().expect("status").commands);
    for command in commands {
        use status::OperatorCommand::*;
        let what = match command {
            Pause => {
                let _ = store.set_meta("live_paused", "1");
                session.venue.set_paused(true);
                status.lock().expect("status").paused = true;
                "paused: no new order is sent until host ctl resume"
            }
            Resume => {
                let _ = store.set_meta("live_paused", "0");
                session.venue.set_paused(false);
                status.lock().expect("status").paused = false;
                "resumed: orders are sent again"
            }
            CancelAll => {
                session.cancel_working();
                "cancel-all: every order working at the venue was asked to cancel"
            }
            Flatten => {
                let mut recorded = recorded_flattens(store)?;
                recorded.push(self::Flatten { after: last_stepped, generation });
                store
                    .set_meta("live_flattens", &serde_json::to_string(&recorded)?)
                    .context("cannot record the operator's flatten: nothing was cancelled or sent")?;
                store.set_meta("live_paused", "1").context("cannot record the flatten's pause")?;
                session.venue.set_paused(true);
                status.lock().expect("status").paused = true;
                backtest.flatten(FLATTEN_REASON, rec)?;
                "flatten: every working order cancelled and every position closed at the venue by a market order; \
                 paused until host ctl resume"
            }
        };
        tracing::warn!("operator: {what}");
        let _ = store.session_event(&format!("operator: {what}"));
    }
    Ok(())
}

/// `paper`, `live` or `live (dry run)`, as summaries say it.
fn mode_name(opts: &Options) -> &'static str {
    match &opts.live {
        None => "paper",
        Some(l) if l.dry_run => "live (dry run)",
        Some(_) => "live",
    }
}

fn config_line(v: &ConfigVersion) -> serde_json::Value {
    serde_json::json!({
        "kind": "config",
        "generation": v.generation,
        "after": v.after_ts.map(iso),
        "config": v.config_toml,
    })
}

fn register_signals(stop: &Arc<AtomicUsize>, hangup: &Arc<AtomicBool>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // A second signal while stopping exits at once; SQLite's transactions
        // keep the state database consistent whenever that happens.
        let already = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&already))
            .context("cannot handle signals")?;
        signal_hook::flag::register(signal, already).context("cannot handle signals")?;
        let stop = Arc::clone(stop);
        // SAFETY: the handler only touches an atomic.
        unsafe {
            signal_hook::low_level::register(signal, move || {
                stop.fetch_add(1, Ordering::Relaxed);
            })
        }
        .context("cannot handle signals")?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(hangup)).context("cannot handle SIGHUP")?;
    Ok(())
}

fn set_state(status: &SharedStatus, backtest: &Backtest<'_>, state: SessionState) {
    let mut s = status.lock().expect("status");
    let safe = backtest.safe_mode();
    s.safe_mode = safe;
    s.state = if state == SessionState::Running && safe { SessionState::SafeMode } else { state };
}

/// The replayed session must be the committed one.
fn verify_resumed(store: &Store, backtest: &Backtest<'_>) -> Result<()> {
    let Some(committed) = store.committed_ledger()? else { return Ok(()) };
    let ledger = backtest.ledger();
    let risk = serde_json::to_string(&backtest.risk_state()).unwrap_or_default();
    let replayed = store::CommittedLedger {
        cash: ledger.cash(),
        equity: ledger.equity(),
        fees_paid: ledger.fees_paid(),
        next_order_id: backtest.next_order_id(),
        last_ts: committed.last_ts,
        risk,
    };
    if replayed != committed {
        bail!(
            "replaying the session does not give the state it committed (a slice is not deterministic, or a \
             component or bar changed): committed {committed:?}, replayed {replayed:?}"
        );
    }
    Ok(())
}

fn update_status(
    status: &SharedStatus,
    backtest: &Backtest<'_>,
    rec: &StepRecorder,
    latency: &LatencyRegistry,
    commit: Duration,
) {
    let mut s = status.lock().expect("status");
    for d in &rec.decisions {
        s.last_bar.insert(d.symbol.clone(), iso(d.bar.ts));
    }
    for r in backtest.symbol_reports() {
        s.bars_per_symbol.insert(r.symbol, r.bars);
    }
    let stats = backtest.stats();
    s.orders = stats.orders;
    s.fills = stats.fills;
    s.refusals = backtest.refusals().clone();
    let ledger = backtest.ledger();
    s.cash = ledger.cash();
    s.equity = ledger.equity();
    s.peak_equity = s.peak_equity.max(s.equity);
    s.drawdown = if s.peak_equity > Decimal::ZERO {
        ((s.peak_equity - s.equity) / s.peak_equity).round_dp(8)
    } else {
        Decimal::ZERO
    };
    let mut traps = BTreeMap::new();
    for f in backtest.faults() {
        *traps.entry(f.kind.to_owned()).or_default() += 1;
    }
    s.traps = traps;
    s.faults = backtest.faults().to_vec();
    s.slices = backtest.health();
    s.latency = latency.snapshot().into_iter().map(|(k, h)| (k, h.read())).collect();
    s.commit_seconds += commit.as_secs_f64();
}

/// A changed config being loaded on a thread of its own: compiling a new
/// component takes from milliseconds (cached) to seconds, and the running
/// slices keep processing bars meanwhile. Only one is in flight at a time;
/// the loop swaps it in at the first bar boundary after it is ready.
struct PendingReload {
    started: Instant,
    bars_before: u64,
    task: std::thread::JoinHandle<Result<ReloadOutcome>>,
}

/// What the reload thread found in the config file.
enum ReloadOutcome {
    /// The same text as the version in use (or the path is briefly missing).
    Unchanged,
    /// Edited, but in nothing that affects the session (comments, say).
    NoEffect,
    Ready(PreparedReload),
}

/// A config version whose components are compiled and checked and whose
/// settings are valid, not yet in use.
struct PreparedReload {
    next: Arc<Generation>,
    file_text: String,
    config_toml: String,
}

/// Looks at the config file's metadata and, if it changed (or on SIGHUP),
/// starts reading and loading it off the loop thread: the loop never reads
/// the file, so a config replaced by a FIFO, a device or a huge file cannot
/// stop the bars.
#[allow(clippy::too_many_arguments)]
fn start_reload(
    opts: &Options,
    feed_dir: &Path,
    out: &Path,
    runtime: &Arc<Runtime>,
    factory: &PaperFactory,
    status: &SharedStatus,
    last_file_text: &mut ConfigWatch,
    forced: bool,
    bars_before: u64,
) -> Option<PendingReload> {
    if !last_file_text.changed(&opts.config) && !forced {
        return None;
    }
    let last_text = Arc::clone(&last_file_text.text);
    let (opts, feed_dir, components) = (opts.clone(), feed_dir.to_owned(), components_dir(out));
    let (runtime, current) = (Arc::clone(runtime), factory.current());
    let task = std::thread::Builder::new()
        .name("config-reload".into())
        .spawn(move || -> Result<ReloadOutcome> {
            let text = match crate::files::read_text_bounded(&opts.config, crate::files::CONFIG_MAX, "config file") {
                // An editor saving by rename leaves the path missing for a moment.
                Err(e) if !forced && e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                    return Ok(ReloadOutcome::Unchanged);
                }
                other => other?,
            };
            {
                let mut last = last_text.lock().map_err(|_| anyhow::anyhow!("config watch lock poisoned"))?;
                if text == *last {
                    if forced {
                        tracing::info!("SIGHUP: {} is unchanged", opts.config.display());
                    }
                    return Ok(ReloadOutcome::Unchanged);
                }
                last.clone_from(&text);
            }
            tracing::info!("{} changed: loading it while the current slices keep running", opts.config.display());
            let file = read_config(&opts, &feed_dir)?;
            let mut config = file.config.config.clone();
            let fixed_now = fixed_sections(&current.config.config);
            let changed_fixed: Vec<&str> = fixed_sections(&config)
                .iter()
                .zip(&fixed_now)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0)
                .collect();
            if !changed_fixed.is_empty() {
                bail!(
                    "[{}] cannot change while the session runs (only [risk] and [slices.*] can); start a new session for that",
                    changed_fixed.join("], [")
                );
            }
            pin_components(&mut config, &components)?;
            let loaded = LoadedConfig { path: opts.config.clone(), config: config.clone() };
            let next = Arc::new(Generation::load(&runtime, loaded, current.number + 1)?);
            if next.changed_slices(&current).is_empty() && next.config.config.risk == current.config.config.risk {
                return Ok(ReloadOutcome::NoEffect);
            }
            Ok(ReloadOutcome::Ready(PreparedReload {
                next,
                file_text: file.file_text,
                config_toml: toml::to_string(&config)?,
            }))
        });
    match task {
        Ok(task) => {
            status.lock().expect("status").reload_loading = true;
            Some(PendingReload { started: Instant::now(), bars_before, task })
        }
        Err(e) => {
            refuse(status, format!("cannot start loading the config: {e}"));
            None
        }
    }
}

/// Swaps a loaded config in at this bar boundary, or reports why it was refused.
#[allow(clippy::too_many_arguments)]
fn finish_reload(
    pending: PendingReload,
    opts: &Options,
    factory: &PaperFactory,
    backtest: &mut Backtest<'_>,
    store: &mut Store,
    audit: &mut AuditLog,
    status: &SharedStatus,
    last_stepped: Option<Timestamp>,
    bars_now: u64,
    rec: &mut StepRecorder,
) -> Result<()> {
    status.lock().expect("status").reload_loading = false;
    let prepared = match pending.task.join() {
        Ok(Ok(ReloadOutcome::Ready(p))) => p,
        Ok(Ok(ReloadOutcome::Unchanged)) => return Ok(()),
        Ok(Ok(ReloadOutcome::NoEffect)) => {
            tracing::info!("{} changed, but not in anything that affects the session", opts.config.display());
            return Ok(());
        }
        Ok(Err(e)) => {
            refuse(status, format!("{e:#}"));
            return Ok(());
        }
        Err(_) => {
            refuse(status, "loading it panicked".into());
            return Ok(());
        }
    };
    let PreparedReload { next, file_text, config_toml } = prepared;
    let version = ConfigVersion { generation: next.number, after_ts: last_stepped, file_text, config_toml };
    let cancelled_before = rec.step.orders.len();
    match apply_generation(backtest, factory, Arc::clone(&next), rec) {
        Ok(what) => {
            // The swap is recorded now; orders the host cancelled for it stay
            // in `rec` and are committed with the next bar. A session that
            // cannot record its config must not trade on it.
            store.record_config(&version, &what).context("the reload was applied but cannot be recorded")?;
            audit.write(&config_line(&version))?;
            let at = last_stepped.map(iso).unwrap_or_else(|| "the first bar".into());
            let message = format!(
                "config generation {} applied after {at}: {what} (loaded in {:.0} ms, while {} bar(s) ran on the previous config)",
                next.number,
                pending.started.elapsed().as_secs_f64() * 1e3,
                bars_now.saturating_sub(pending.bars_before)
            );
            tracing::warn!("{message}");
            let mut s = status.lock().expect("status");
            s.reloads_applied += 1;
            s.config_generation = next.number;
            s.last_reload = Some(message);
        }
        Err(e) => refuse(status, format!("the new slices failed to warm up: {e:#}")),
    }
    let cancelled = rec.step.orders.len() - cancelled_before;
    if cancelled > 0 {
        tracing::warn!("{cancelled} working order(s) cancelled by the execution slice swap");
    }
    Ok(())
}

fn refuse(status: &SharedStatus, reason: String) {
    let message = format!("config reload refused, still running the previous config: {reason}");
    tracing::error!("{message}");
    let mut s = status.lock().expect("status");
    s.reloads_refused += 1;
    s.last_reload = Some(message);
}

/// Writes the run folder's files from the state database and returns the
/// text summary to print.
#[allow(clippy::too_many_arguments)]
fn finish_files(
    store: &Store,
    out: &Path,
    opts: &Options,
    backtest: &Backtest<'_>,
    live: Option<&LiveSession>,
    outcome: &str,
    error: Option<&str>,
    commit_seconds: f64,
) -> Result<String> {
    let iso_of = |col: &str| format!("strftime('%Y-%m-%dT%H:%M:%SZ', {col} / 1000, 'unixepoch')");
    let exports = [
        (
            "equity.csv",
            crate::report::EQUITY_HEADER.to_owned(),
            format!("SELECT {}, cash, equity FROM steps ORDER BY ts", iso_of("ts")),
        ),
        (
            "fills.csv",
            crate::report::FILLS_HEADER.to_owned(),
            format!(
                "SELECT {}, order_id, symbol, side, qty, price, fee FROM fills ORDER BY seq",
                iso_of("ts")
            ),
        ),
        (
            "orders.csv",
            crate::report::ORDERS_HEADER.to_owned(),
            format!(
                "SELECT id, symbol, {}, side, type, time_in_force, qty, limit_price, stop_price, status, filled_qty, avg_price, fees, \
                 CASE WHEN closed_ts IS NULL THEN NULL ELSE {} END, reason FROM orders \
                 UNION ALL SELECT id, symbol, {}, side, type, time_in_force, qty, limit_price, stop_price, 'working', filled_qty, NULL, fees, NULL, '' \
                 FROM working_orders ORDER BY 1",
                iso_of("created_ts"),
                iso_of("closed_ts"),
                iso_of("created_ts")
            ),
        ),
        (
            "trades.csv",
            "symbol,entry_ts,entry_price,exit_ts,exit_price,qty,fees,pnl,side".to_owned(),
            format!(
                "SELECT symbol, {}, entry_price, {}, exit_price, qty, fees, pnl, direction FROM round_trips ORDER BY seq",
                iso_of("entry_ts"),
                iso_of("exit_ts")
            ),
        ),
        (
            "positions.csv",
            crate::report::POSITIONS_HEADER.to_owned(),
            format!(
                "SELECT position_id, symbol, {}, state, qty FROM position_events ORDER BY seq",
                iso_of("ts")
            ),
        ),
    ];
    for (name, header, query) in exports {
        store
            .export_csv(&query, &out.join(name), &header)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.join(name).display()))?;
    }
    let committed = store.committed_ledger()?;
    let conn = store.connection();
    let count = |table: &str| -> u64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap_or(0)
    };
    let (cash, equity) = committed
        .as_ref()
        .map(|c| (c.cash.normalize().to_string(), c.equity.normalize().to_string()))
        .unwrap_or_else(|| (backtest.ledger().cash().to_string(), backtest.ledger().equity().to_string()));
    let faults = backtest.faults();
    let status = if outcome == "completed" && !faults.is_empty() { "completed-with-faults" } else { outcome };
    let dropped: Vec<String> =
        backtest.symbol_reports().into_iter().filter(|r| !r.active).map(|r| r.symbol.to_string()).collect();
    let mut summary = serde_json::json!({
        "status": status,
        "error": error,
        "mode": mode_name(opts),
        "faults": faults,
        "dropped_symbols": dropped,
        "symbols": opts.symbols,
        "bars": count("bars"),
        "timestamps": count("steps"),
        "last_bar": committed.as_ref().map(|c| iso(c.last_ts)),
        "start_cash": backtest.ledger().start_cash().normalize().to_string(),
        "final_cash": cash,
        "final_equity": equity,
        "fills": count("fills"),
        "trade_count": count("round_trips"),
        "orders": count("orders") + count("working_orders"),
        "config_generations": count("config_versions"),
        // Of the bars this process committed (a restart's replay commits nothing).
        "commit_seconds": commit_seconds,
        "state_db": store.path().display().to_string(),
        "audit_log": out.join("audit.jsonl").display().to_string(),
        "venue": live.map(LiveSession::summary),
    });
    let left_open = backtest.positions_left_open();
    if live.is_some() {
        summary["risk_stop"] = serde_json::json!(backtest.stopped());
        summary["positions_left_open"] = serde_json::json!(left_open);
    }
    std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("cannot write {}", out.join("summary.json").display()))?;
    let names = opts.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut warnings = String::new();
    if live.is_some() {
        if let Some(reason) = backtest.stopped() {
            warnings.push_str(&format!("  stopped       {reason}\n"));
        }
        for message in left_open {
            warnings.push_str(&format!("  LEFT OPEN     {message}\n"));
        }
    }
    Ok(format!(
        "{} session of {names}: {status}\n  faults        {}\n  bars          {}\n  last bar      {}\n  final equity  {equity} (cash {cash})\n  fills         {}\n  state         {}\n  artifacts     {}\n",
        if opts.live.is_some() { "Live" } else { "Paper" },
        faults.len(),
        count("bars"),
        summary["last_bar"].as_str().unwrap_or("none yet"),
        count("fills"),
        store.path().display(),
        out.display()
    ) + &warnings)
}
