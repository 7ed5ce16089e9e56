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

pub fn new_engine() -> Result<Engine> {
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
