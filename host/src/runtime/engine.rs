//! The wasmtime engine, configured once per process, and the epoch ticker
//! that enforces per-call CPU deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use wasmtime::{Config, Engine, OptLevel};

/// How often the epoch advances. A deadline of D ms is D / TICK ticks, so a
/// runaway slice is stopped within one tick of its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Set to `1` to let `perf` name the plugins' compiled functions (profiling only).
pub const PERF_MAP_ENV: &str = "STRATA_PERF_MAP";

/// Set to `1` to run without CPU deadlines and memory caps, only to measure
/// what they cost. Never with plugins you do not trust.
pub const NO_LIMITS_ENV: &str = "STRATA_MEASURE_WITHOUT_LIMITS";

/// True when [`NO_LIMITS_ENV`] asks for a run without limits.
pub fn limits_disabled() -> bool {
    std::env::var(NO_LIMITS_ENV).is_ok_and(|v| v == "1")
}

/// How instances get their memories, tables and instance state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Mapped for each instance and unmapped when it goes: cheapest when
    /// every instance is created once, as in `host run`.
    OnDemand,
    /// Slots reserved once and reused (wasmtime's pooling allocator), for
    /// many short-lived instances at a time, as optimize trials are.
    Pooled(Pool),
}

/// The size of the pool: enough slots for `concurrent_chains` six-slice
/// chains with room for fault recovery, and memories up to the largest
/// `limits.memory-mib` of the run (the per-store limit still applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub concurrent_chains: u32,
    pub max_memory_bytes: usize,
}

/// Bytes of a reused memory or table reset with `memset` rather than
/// `madvise`: the reference slices' memories fit, so a reused slot costs
/// no system call and no page faults. Optimize's daily-bar grid runs 1.67x
/// as many trials per second with the pool and this as without.
const KEEP_RESIDENT: usize = 4 << 20;

fn pooling(pool: Pool) -> wasmtime::PoolingAllocationConfig {
    // Six slices a chain, twice over for the fresh instances that replace
    // failed ones while the old ones are still being dropped, and slack.
    let components = pool.concurrent_chains.saturating_mul(6 * 2).saturating_add(64);
    let mut config = wasmtime::PoolingAllocationConfig::default();
    config
        .total_component_instances(components)
        // Components made by other toolchains (componentize-py) hold many core modules.
        .total_core_instances(components.saturating_mul(32))
        .total_memories(components.saturating_mul(2))
        .total_tables(components.saturating_mul(4))
        .max_memories_per_module(2)
        .max_tables_per_module(4)
        .table_elements(1 << 20)
        .max_memory_size(pool.max_memory_bytes)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT);
    config
}

pub fn new_engine(allocation: Allocation) -> Result<Engine> {
    let mut config = Config::new();
    // Epoch interruption costs a load and compare at loop headers and function
    // entries; fuel would cost far more. It is what lets the host stop a slice
    // that never returns.
    config.epoch_interruption(!limits_disabled());
    config.cranelift_opt_level(OptLevel::Speed);
    if std::env::var(PERF_MAP_ENV).is_ok_and(|v| v == "1") {
        // Names JIT-compiled guest functions in /tmp/perf-<pid>.map for `perf report`.
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Allocation::Pooled(pool) = allocation {
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling(pool)));
    }
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread
/// until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ticks needed for a deadline, at least one.
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}
