//! What the orchestrator needs from each slice, in domain types.
//!
//! The runtime implements these traits for WebAssembly components; tests and
//! the native benchmark floor can implement them directly. Nothing here knows
//! about wasmtime.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::model::{
    Bar, Order, OrderEvent, OrderId, Regime, Signal, SizingRequest, SliceKind, SourceInfo, Symbol, Timestamp,
};

/// Which slice: its kind and the plugin filling it (`strategy slice sma-crossover 0.1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceLabel {
    pub kind: SliceKind,
    /// Name and version, `sma-crossover 0.1.0`.
    pub plugin: Arc<str>,
}

impl fmt::Display for SliceLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} slice {}", self.kind, self.plugin)
    }
}

/// How a call into a slice went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The slice returned an error message.
    Returned(String),
    /// The slice trapped (panic, out of bounds, out of memory, deadline).
    Trapped { reason: String, backtrace: Option<String> },
    /// The slice answered, but the answer breaks the interface's rules.
    Invalid(String),
    /// The slice used up its CPU budget for the run (`limits.budget-ms`).
    OverBudget { spent: Duration, budget: Duration },
    /// An earlier trap left the instance unusable.
    Poisoned,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Returned(m) => f.write_str(m),
            Failure::Trapped { reason, .. } => write!(f, "trapped: {reason}"),
            Failure::Invalid(m) => write!(f, "invalid output: {m}"),
            Failure::OverBudget { spent, budget } => write!(
                f,
                "used {} ms of CPU, over its budget of {} ms for the run",
                spent.as_millis(),
                budget.as_millis()
            ),
            Failure::Poisoned => f.write_str("unusable after an earlier trap"),
        }
    }
}

/// A failed call into a slice, naming the slice.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{label}: {failure}")]
pub struct SliceError {
    pub label: SliceLabel,
    pub failure: Failure,
}

impl SliceError {
    pub fn invalid(label: &SliceLabel, message: impl Into<String>) -> Self {
        SliceError { label: label.clone(), failure: Failure::Invalid(message.into()) }
    }
}

pub type SliceResult<T> = Result<T, SliceError>;

/// How a slice instance has been doing: what `summary.json` reports and,
/// in long-running modes, what the operator sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceHealth {
    pub calls: u64,
    pub failures: u64,
    /// Time spent inside the slice.
    pub busy: Duration,
    pub slowest_call: Duration,
    pub last_error: Option<String>,
}

impl SliceHealth {
    /// Adds another instance's figures (a replaced instance's, for example).
    pub fn absorb(&mut self, other: &SliceHealth) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.busy += other.busy;
        self.slowest_call = self.slowest_call.max(other.slowest_call);
        if other.last_error.is_some() {
            self.last_error.clone_from(&other.last_error);
        }
    }
}

/// What every slice instance offers, whatever its kind.
pub trait Slice: Send {
    fn label(&self) -> &SliceLabel;
    fn health(&self) -> SliceHealth;
    /// The instance's own state, if its component exports the optional
    /// `snapshot` interface; `None` otherwise (paper mode persists it).
    fn save_state(&mut self) -> SliceResult<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Hands back state [`Slice::save_state`] returned. False when the
    /// component does not export `snapshot`.
    fn restore_state(&mut self, _state: &[u8]) -> SliceResult<bool> {
        Ok(false)
    }
}

/// Produces the bars of one symbol.
pub trait DataSlice: Slice {
    fn open(
        &mut self,
        symbol: &Symbol,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> SliceResult<SourceInfo>;
    /// Appends up to `max` bars; appending none means the feed has ended.
    fn next_batch(&mut self, max: u32, bars: &mut Vec<Bar>) -> SliceResult<()>;
}

/// Computes feature columns from bars.
pub trait AnalysisSlice: Slice {
    fn outputs(&mut self) -> SliceResult<Vec<String>>;
    /// Appends `bars.len() * outputs().len()` values, row-major.
    fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> SliceResult<()>;
}

/// Labels bars with regimes.
pub trait RegimeSlice: Slice {
    fn classify(&mut self, bars: &[Bar], features: &[f64], regimes: &mut Vec<Regime>) -> SliceResult<()>;
}

/// Decides entries and exits.
pub trait StrategySlice: Slice {
    fn decide(
        &mut self,
        bars: &[Bar],
        features: &[f64],
        regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> SliceResult<()>;
}

/// Turns a signal into a quantity.
pub trait SizingSlice: Slice {
    fn size(&mut self, request: &SizingRequest) -> SliceResult<Decimal>;
}

/// Fills orders.
pub trait ExecutionSlice: Slice {
    fn fill_model(&mut self) -> SliceResult<String>;
    fn submit(&mut self, order: &Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()>;
    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()>;
    fn cancel(&mut self, order_id: OrderId, events: &mut Vec<OrderEvent>) -> SliceResult<()>;
    /// An order the host makes to close a position (the kill switch, a
    /// fault policy, an operator's flatten), not a strategy's decision. A
    /// slot that holds decisions back (the live router while paused or on a
    /// stale bar) lets it through; any other treats it as `submit`.
    fn submit_liquidation(
        &mut self,
        order: &Order,
        bar: &Bar,
        events: &mut Vec<OrderEvent>,
    ) -> SliceResult<()> {
        self.submit(order, bar, events)
    }
}

/// The six slices of one symbol's chain, each its own instance.
pub struct SymbolSlices {
    pub data: Box<dyn DataSlice>,
    pub analysis: Box<dyn AnalysisSlice>,
    pub regime: Box<dyn RegimeSlice>,
    pub strategy: Box<dyn StrategySlice>,
    pub sizing: Box<dyn SizingSlice>,
    pub execution: Box<dyn ExecutionSlice>,
}

impl SymbolSlices {
    pub fn label_of(&self, kind: SliceKind) -> &SliceLabel {
        match kind {
            SliceKind::Data => self.data.label(),
            SliceKind::Analysis => self.analysis.label(),
            SliceKind::Regime => self.regime.label(),
            SliceKind::Strategy => self.strategy.label(),
            SliceKind::Sizing => self.sizing.label(),
            SliceKind::Execution => self.execution.label(),
        }
    }
}
