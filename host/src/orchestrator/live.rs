//! What a long-running driver (paper mode) needs from the loop beyond a
//! backtest's: a look at its state between bars, new risk limits, and new
//! slice instances swapped in at a bar boundary after a config reload.
//!
//! Nothing here runs inside [`Backtest::advance`], so the backtest path is
//! unchanged.

use std::collections::BTreeSet;

use rust_decimal::Decimal;

use super::pipeline::{Batch, PendingFault, Pipeline};
use super::{Backtest, OrderStatus, Recorder, RunError, SliceFactory};
use crate::model::{Order, SliceKind, Symbol, Timestamp};
use crate::risk::{RiskDayState, RiskLimits};
use crate::slice::{
    AnalysisSlice, DataSlice, ExecutionSlice, RegimeSlice, SizingSlice, Slice, SliceError, StrategySlice,
};

/// An order still working, as the driver persists it.
#[derive(Debug, Clone)]
pub struct WorkingOrderView<'a> {
    pub order: &'a Order,
    pub filled: Decimal,
    pub fees: Decimal,
}

/// A chain's six slices, by kind.
pub type ChainSlices<'a> = [(SliceKind, &'a mut dyn Slice); 6];

/// Fresh instances for one symbol's chain, built and warmed up on the bars
/// it has processed, waiting to be installed at a bar boundary.
pub struct PreparedSwap {
    chain: usize,
    data: Option<Box<dyn DataSlice>>,
    pipeline: Option<FreshPipeline>,
    sizing: Option<Box<dyn SizingSlice>>,
    execution: Option<Box<dyn ExecutionSlice>>,
}

struct FreshPipeline {
    analysis: Box<dyn AnalysisSlice>,
    regime: Box<dyn RegimeSlice>,
    strategy: Box<dyn StrategySlice>,
    features: Vec<String>,
    /// The bars the chain had read but not processed yet, through the new pipeline.
    batch: Batch,
}

impl Backtest<'_> {
    pub fn symbols(&self) -> impl Iterator<Item = &Symbol> {
        self.chains.iter().map(|c| &c.symbol)
    }

    /// Orders still working, per symbol index.
    pub fn working_orders(&self) -> impl Iterator<Item = (usize, WorkingOrderView<'_>)> {
        self.chains.iter().flat_map(|c| {
            c.working
                .iter()
                .map(move |w| (c.index, WorkingOrderView { order: &w.order, filled: w.filled, fees: w.fees }))
        })
    }

    /// The id the next order will get.
    pub fn next_order_id(&self) -> u64 {
        self.next_order_id
    }

    pub fn risk_state(&self) -> RiskDayState {
        self.gate.day_state()
    }

    /// Applies new risk limits from the next order on.
    pub fn set_risk_limits(&mut self, limits: RiskLimits) {
        self.settings.risk = limits.clone();
        self.gate.set_limits(limits);
    }

    /// True during a safe-mode cool-down after a fault.
    pub fn safe_mode(&self) -> bool {
        self.in_safe_mode()
    }

    /// The operator's flatten, between two calls to `advance`: every working
    /// order cancelled through its execution slot, and every position closed
    /// by the host (through the execution slot at once in live mode, else at
    /// its next bar). The chains keep running; keeping them from opening new
    /// positions is the driver's (live mode pauses its router).
    pub fn flatten(&mut self, reason: &str, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        for i in 0..self.chains.len() {
            if self.chains[i].ended {
                continue;
            }
            self.cancel_all(i, &format!("cancelled by the host: {reason}"), recorder)?;
            let chain = &mut self.chains[i];
            if !self.ledger.position(i).is_zero() && chain.liquidating.is_none() {
                chain.liquidate = Some(reason.to_owned());
                let at = chain.last_ts.unwrap_or_default();
                self.update_lifecycle(i, at, false, recorder)?;
            }
        }
        if self.settings.liquidation == super::Liquidation::ThroughExecution {
            self.send_liquidations(recorder)?;
        }
        Ok(())
    }

    /// Turns [`super::Recorder::decision`] calls on or off.
    pub fn record_decisions(&mut self, on: bool) {
        self.record_decisions = on;
    }

    /// Chain `i`'s six slices and the time of the last bar it read, when it
    /// has processed every bar it read (so its slices' state is exactly that
    /// bar's); `None` while bars are waiting in its batch.
    pub fn slices_at_rest(&mut self, i: usize) -> Option<(Timestamp, ChainSlices<'_>)> {
        let chain = &mut self.chains[i];
        if !chain.batch.exhausted() || chain.batch.fault.is_some() || !chain.carry.bars.is_empty() {
            return None;
        }
        let at = chain.last_ts?;
        let s = &mut chain.slices;
        Some((
            at,
            [
                (SliceKind::Data, &mut *s.data as &mut dyn Slice),
                (SliceKind::Analysis, &mut *s.analysis as &mut dyn Slice),
                (SliceKind::Regime, &mut *s.regime as &mut dyn Slice),
                (SliceKind::Strategy, &mut *s.strategy as &mut dyn Slice),
                (SliceKind::Sizing, &mut *s.sizing as &mut dyn Slice),
                (SliceKind::Execution, &mut *s.execution as &mut dyn Slice),
            ],
        ))
    }

    /// The time of the last bar chain `i` has processed.
    fn processed_to(&self, i: usize) -> Option<Timestamp> {
        let chain = &self.chains[i];
        match chain.batch.cursor {
            0 if chain.batch.bars.is_empty() => chain.last_ts,
            // Unprocessed bars are waiting: everything before the first of them.
            0 => chain.batch.bars.first().map(|b| b.ts - 1),
            n => Some(chain.batch.bars[n - 1].ts),
        }
    }

    /// Builds fresh instances of `kinds` for chain `i` from `factory`, without
    /// touching the running chain. A new analysis, regime or strategy slice
    /// replaces all three (they warm up together): they are fed every bar the
    /// chain has processed, read again through a fresh data slice and with
    /// their signals discarded, so the new strategy decides the next bar as if
    /// it had been there from the start; bars already read but not processed
    /// go through the new pipeline too. Any failure leaves the chain as it was.
    pub fn prepare_swap(
        &self,
        i: usize,
        kinds: &BTreeSet<SliceKind>,
        factory: &dyn SliceFactory,
    ) -> Result<PreparedSwap, SliceError> {
        let chain = &self.chains[i];
        let symbol = &chain.symbol;
        let mut swap = PreparedSwap { chain: i, data: None, pipeline: None, sizing: None, execution: None };
        if kinds.contains(&SliceKind::Data) {
            let start = chain.last_ts.map(|t| t + 1).or(self.settings.start);
            swap.data = Some(factory.data(symbol, start, self.settings.end, &chain.clock)?);
        }
        if kinds.iter().any(|k| matches!(k, SliceKind::Analysis | SliceKind::Regime | SliceKind::Strategy)) {
            let mut analysis = factory.analysis(symbol, &chain.clock)?;
            let features = analysis.outputs()?;
            let mut regime = factory.regime(symbol, &features, &chain.clock)?;
            let mut strategy = factory.strategy(symbol, &features, &chain.clock)?;
            let width = features.len();
            let mut pipeline =
                Pipeline { analysis: &mut *analysis, regime: &mut *regime, strategy: &mut *strategy };
            if let Some(done) = self.processed_to(i) {
                let mut data = factory.data(symbol, self.settings.start, Some(done), &chain.clock)?;
                loop {
                    let mut bars = Vec::new();
                    data.next_batch(self.settings.batch_size, &mut bars)?;
                    bars.retain(|b| b.ts <= done);
                    let Some(last) = bars.last().map(|b| b.ts) else { break };
                    chain.clock.set(last);
                    pipeline.run(&bars, width, &mut Batch::default())?;
                    if last >= done {
                        break;
                    }
                }
            }
            let mut batch = Batch::default();
            let ahead = &chain.batch.bars[chain.batch.cursor..];
            if !ahead.is_empty() {
                chain.clock.set(ahead[ahead.len() - 1].ts);
                pipeline.run(ahead, width, &mut batch)?;
            }
            // A data fault found after the bars read ahead still fires after them.
            if let Some(fault) = chain.batch.fault.as_ref().filter(|f| f.error.label.kind == SliceKind::Data)
            {
                batch.fault = Some(PendingFault {
                    at: fault.at - chain.batch.cursor,
                    ts: fault.ts,
                    error: fault.error.clone(),
                });
            }
            swap.pipeline = Some(FreshPipeline { analysis, regime, strategy, features, batch });
        }
        if kinds.contains(&SliceKind::Sizing) {
            swap.sizing = Some(factory.sizing(symbol, &chain.clock)?);
        }
        if kinds.contains(&SliceKind::Execution) {
            swap.execution = Some(factory.execution(symbol, &chain.clock)?);
        }
        Ok(swap)
    }

    /// Installs a prepared swap. Call it between two calls to `advance`. A
    /// new execution slice never saw the orders working at the old one, so the
    /// host cancels them (recorded with the reason) before the swap.
    pub fn install_swap(&mut self, swap: PreparedSwap, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        let i = swap.chain;
        if swap.data.is_some() || swap.pipeline.is_some() {
            // The swap fed its instances its own way: a later failure is not searched for.
            self.chains[i].history.forget();
        }
        if let Some(data) = swap.data {
            let old = std::mem::replace(&mut self.chains[i].slices.data, data);
            self.chains[i].retire(SliceKind::Data, old.health());
        }
        if let Some(fresh) = swap.pipeline {
            let chain = &mut self.chains[i];
            let old = std::mem::replace(&mut chain.slices.analysis, fresh.analysis);
            chain.retire(SliceKind::Analysis, old.health());
            let old = std::mem::replace(&mut chain.slices.regime, fresh.regime);
            chain.retire(SliceKind::Regime, old.health());
            let old = std::mem::replace(&mut chain.slices.strategy, fresh.strategy);
            chain.retire(SliceKind::Strategy, old.health());
            chain.features = fresh.features;
            chain.batch = fresh.batch;
        }
        if let Some(sizing) = swap.sizing {
            let old = std::mem::replace(&mut self.chains[i].slices.sizing, sizing);
            self.chains[i].retire(SliceKind::Sizing, old.health());
        }
        if let Some(execution) = swap.execution {
            let reason = "cancelled by the host: the execution slice was replaced by a config reload";
            self.close_book(i, self.chains[i].last_ts, OrderStatus::Cancelled, reason, recorder)?;
            let old = std::mem::replace(&mut self.chains[i].slices.execution, execution);
            self.chains[i].retire(SliceKind::Execution, old.health());
            let at = self.chains[i].last_ts.unwrap_or_default();
            self.update_lifecycle(i, at, false, recorder)?;
        }
        Ok(())
    }
}
