//! What the operator sees: the session's state and figures, updated by the
//! loop after every bar and read by the HTTP endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::{SliceKind, Symbol};
use crate::orchestrator::HealthReport;

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionState {
    /// Loading components and replaying the committed bars.
    Starting,
    Running,
    /// Running, but no new positions during a cool-down after a fault.
    SafeMode,
    /// A stop was asked for: finishing the bar and committing it.
    Stopping,
    Stopped,
}

impl SessionState {
    pub const ALL: [SessionState; 5] = [
        SessionState::Starting,
        SessionState::Running,
        SessionState::SafeMode,
        SessionState::Stopping,
        SessionState::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Starting => "starting",
            SessionState::Running => "running",
            SessionState::SafeMode => "safe-mode",
            SessionState::Stopping => "stopping",
            SessionState::Stopped => "stopped",
        }
    }
}

/// A latency histogram as read: cumulative counts per bucket bound (the
/// last is +Inf) and the sum in seconds.
pub type LatencyReading = (Vec<u64>, f64);

/// The feed's health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedHealth {
    /// `replay` or `coinbase`.
    pub kind: String,
    /// Bars the feed has written, per symbol, since this process started.
    pub bars_written: u64,
    /// Failed requests (polling feed) since this process started.
    pub errors: u64,
    pub last_error: Option<String>,
    /// The replay feed has played its whole file.
    pub exhausted: bool,
    /// Polling feed: seconds until the next check, as last chosen.
    pub next_check_seconds: Option<f64>,
    /// Polling feed: the volatility that chose it (standard deviation of log returns per bar).
    pub volatility: Option<f64>,
}

/// Everything `/health` and `/metrics` show.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: SessionState,
    pub symbols: Vec<Symbol>,
    /// The last bar processed per symbol (ISO time).
    pub last_bar: BTreeMap<Symbol, String>,
    pub bars_per_symbol: BTreeMap<Symbol, u64>,
    pub safe_mode: bool,
    pub orders: u64,
    pub fills: u64,
    pub refusals: BTreeMap<String, u64>,
    pub cash: Decimal,
    pub equity: Decimal,
    pub peak_equity: Decimal,
    pub drawdown: Decimal,
    /// Slice faults by kind (`trapped`, `returned-error`, ...).
    pub traps: BTreeMap<String, u64>,
    /// Every slice fault and what the host did about it.
    pub faults: Vec<crate::orchestrator::FaultRecord>,
    pub slices: Vec<HealthReport>,
    #[serde(skip)]
    pub latency: Vec<((Symbol, SliceKind), LatencyReading)>,
    pub feed: FeedHealth,
    /// The config generation running (1 at the start; +1 per applied reload).
    pub config_generation: u32,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
    /// A changed config is being loaded (compiled and checked) while the
    /// current slices keep running.
    pub reload_loading: bool,
    /// What the last reload did, or why it was refused.
    pub last_reload: Option<String>,
    pub commit_seconds: f64,
    /// Bars replayed from the state database when the process started.
    pub resumed_bars: u64,
    /// Slices that export their state: `SYMBOL/slice` -> bytes last persisted.
    pub snapshots: BTreeMap<String, usize>,
    /// Slices whose persisted state was handed back at the restart.
    pub restored: Vec<String>,
    /// Live mode: the session takes operator commands (`host ctl`).
    pub live: bool,
    /// Live mode: the operator paused new orders.
    pub paused: bool,
    /// Operator commands waiting for the loop, in the order they came.
    #[serde(skip)]
    pub commands: Vec<OperatorCommand>,
}

/// What `host ctl` asks a running live session to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorCommand {
    /// Send no new order (each is recorded as not sent) until `Resume`.
    Pause,
    Resume,
    /// Cancel every order working at the venue.
    CancelAll,
    /// Cancel every working order, close every position through the venue,
    /// and pause (until `Resume`).
    Flatten,
}

impl OperatorCommand {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pause" => Some(OperatorCommand::Pause),
            "resume" => Some(OperatorCommand::Resume),
            "cancel-all" => Some(OperatorCommand::CancelAll),
            "flatten" => Some(OperatorCommand::Flatten),
            _ => None,
        }
    }
}

impl Status {
    pub fn new(symbols: Vec<Symbol>, start_cash: Decimal) -> Self {
        Status {
            state: SessionState::Starting,
            symbols,
            last_bar: BTreeMap::new(),
            bars_per_symbol: BTreeMap::new(),
            safe_mode: false,
            orders: 0,
            fills: 0,
            refusals: BTreeMap::new(),
            cash: start_cash,
            equity: start_cash,
            peak_equity: start_cash,
            drawdown: Decimal::ZERO,
            traps: BTreeMap::new(),
            faults: Vec::new(),
            slices: Vec::new(),
            latency: Vec::new(),
            feed: FeedHealth::default(),
            config_generation: 1,
            reloads_applied: 0,
            reloads_refused: 0,
            reload_loading: false,
            last_reload: None,
            commit_seconds: 0.0,
            resumed_bars: 0,
            snapshots: BTreeMap::new(),
            restored: Vec::new(),
            live: false,
            paused: false,
            commands: Vec::new(),
        }
    }
}

pub type SharedStatus = Arc<Mutex<Status>>;
