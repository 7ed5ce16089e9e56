//! The host's clock. In backtests it shows simulated time (the open time of
//! the bar being processed), and it is the only clock a slice can read, which
//! is what makes a backtest a pure function of its inputs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::model::Timestamp;

/// Simulated time, shared by the orchestrator (which advances it) and every
/// slice's sandbox (which reads it).
#[derive(Debug, Clone, Default)]
pub struct SimClock(Arc<AtomicI64>);

impl SimClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, ts: Timestamp) {
        self.0.store(ts, Ordering::Relaxed);
    }

    pub fn now(&self) -> Timestamp {
        self.0.load(Ordering::Relaxed)
    }
}
