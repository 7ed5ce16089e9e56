//! Fault policies: what the loop does when a slice fails, and the host's own
//! closing trades.

use rust_decimal::Decimal;

use super::orders::{StepError, order_record};
use super::pipeline::check_bar;
use super::{Backtest, FaultRecord, Liquidation, OrderStatus, Recorder, RunError, WorkingOrder};
use crate::config::FaultPolicy;
use crate::model::{
    Bar, Order, OrderId, OrderType, Side, SliceKind, TimeInForce, Timestamp, price_to_decimal,
};
use crate::portfolio::LedgerError;
use crate::slice::{Failure, SliceError};
use crate::time::iso;

impl Backtest<'_> {
    /// Applies the fault policy to a failed slice call; passes I/O errors on.
    pub(super) fn fault_or(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        result: Result<(), StepError>,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        match result {
            Ok(()) => Ok(()),
            Err(StepError::Slice(error)) => self.on_fault(i, at, error, recorder),
            Err(StepError::Io(e)) => Err(RunError::Io(e)),
        }
    }

    /// Records a fault and applies the run's policy to it.
    pub(super) fn on_fault(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        error: SliceError,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let chain = &mut self.chains[i];
        chain.faults += 1;
        let policy = match self.settings.faults.policy {
            FaultPolicy::Halt => FaultPolicy::Halt,
            _ if chain.faults >= self.settings.faults.max_faults_per_symbol => FaultPolicy::SkipSymbol,
            other => other,
        };
        let (kind, backtrace) = match &error.failure {
            Failure::Returned(_) => ("returned-error", None),
            Failure::Trapped { backtrace, .. } => ("trapped", backtrace.clone()),
            Failure::Invalid(_) => ("invalid-output", None),
            Failure::OverBudget { .. } => ("over-budget", None),
            Failure::Poisoned => ("poisoned", None),
        };
        let action = match policy {
            FaultPolicy::Halt => "halted",
            FaultPolicy::SkipSymbol => "dropped-symbol",
            FaultPolicy::SafeMode => "safe-mode",
        };
        tracing::warn!(symbol = %chain.symbol, action, "{error}");
        self.faults.push(FaultRecord {
            at: at.map(iso),
            symbol: chain.symbol.clone(),
            slice: error.label.kind,
            plugin: error.label.plugin.to_string(),
            kind,
            message: error.failure.to_string(),
            backtrace,
            action,
        });
        match policy {
            FaultPolicy::Halt => Err(RunError::Slice { symbol: chain.symbol.clone(), at, error }),
            FaultPolicy::SkipSymbol => self.drop_symbol(i, &error, recorder),
            FaultPolicy::SafeMode => self.enter_safe_mode(i, at, &error, recorder),
        }
    }

    /// Skip-symbol: the symbol takes no further decisions; its working orders
    /// are cancelled and the host closes its position at its next bar.
    pub(super) fn drop_symbol(
        &mut self,
        i: usize,
        error: &SliceError,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let reason = format!("{} dropped after a fault in its {}", self.chains[i].symbol, error.label);
        if self.settings.liquidation == Liquidation::ThroughExecution {
            // The orders are at the venue: cancelled there, not only forgotten.
            self.cancel_all(i, &format!("cancelled by the host: {reason}"), recorder)?;
        } else {
            self.close_book(i, None, OrderStatus::Cancelled, &reason, recorder)?;
        }
        let chain = &mut self.chains[i];
        chain.active = false;
        // Decisions already made on bars not yet processed must not be acted on.
        chain.batch.signals.clear();
        chain.batch.fault = None;
        if self.ledger.position(i).is_zero() && chain.working.is_empty() {
            // Keep the bar being processed, if any; read no further.
            chain.ended = true;
            chain.batch.bars.truncate(chain.batch.cursor + 1);
            chain.carry = Default::default();
        } else if !self.ledger.position(i).is_zero() {
            chain.liquidate = Some(reason);
            let at = chain.last_ts.unwrap_or_default();
            self.update_lifecycle(i, at, false, recorder)?;
        }
        Ok(())
    }

    /// Safe mode: no new positions anywhere for the cool-down (and every
    /// position closed if so configured); the failed slice is replaced by a
    /// fresh instance, which warms up from the next bar.
    pub(super) fn enter_safe_mode(
        &mut self,
        i: usize,
        at: Option<Timestamp>,
        error: &SliceError,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let until = self.stats.timestamps + self.settings.faults.cooldown_bars;
        self.safe_until = Some(self.safe_until.map_or(until, |u| u.max(until)));
        if let Err(e) = self.replace(i, error.label.kind, at, recorder) {
            // No fresh instance to carry on with: the symbol cannot continue.
            let note = format!("{e}");
            self.faults.push(FaultRecord {
                at: at.map(iso),
                symbol: self.chains[i].symbol.clone(),
                slice: e.label.kind,
                plugin: e.label.plugin.to_string(),
                kind: "replacement-failed",
                message: note,
                backtrace: None,
                action: "dropped-symbol",
            });
            self.drop_symbol(i, error, recorder)?;
        }
        if self.settings.faults.flatten {
            let reason = format!("safe mode after a fault in {}: flatten", error.label);
            for j in 0..self.chains.len() {
                if !self.ledger.position(j).is_zero() {
                    self.cancel_all(j, &reason, recorder)?;
                    self.chains[j].liquidate = Some(reason.clone());
                    let at = self.chains[j].last_ts.unwrap_or_default();
                    self.update_lifecycle(j, at, false, recorder)?;
                }
            }
        }
        Ok(())
    }

    /// Gives chain `i` a fresh instance of `kind` (all three pipeline slices
    /// for a pipeline fault, so they warm up together). A fresh data slice
    /// starts after the bar the fault was on, which is lost for the symbol.
    pub(super) fn replace(
        &mut self,
        i: usize,
        kind: SliceKind,
        at: Option<Timestamp>,
        recorder: &mut dyn Recorder,
    ) -> Result<(), SliceError> {
        let Some(factory) = self.factory else {
            return Err(SliceError {
                label: self.chains[i].slices.label_of(kind).clone(),
                failure: Failure::Returned("no way to create a fresh instance".into()),
            });
        };
        let chain = &mut self.chains[i];
        let (symbol, clock) = (chain.symbol.clone(), chain.clock.clone());
        match kind {
            SliceKind::Data => {
                let start = chain.last_ts.max(at).map(|t| t + 1).or(self.settings.start);
                let fresh = factory.data(&symbol, start, self.settings.end, &clock)?;
                let old = std::mem::replace(&mut chain.slices.data, fresh);
                chain.retire(kind, old.health());
                chain.history.data_replaced(start);
            }
            SliceKind::Analysis | SliceKind::Regime | SliceKind::Strategy => {
                let analysis = factory.analysis(&symbol, &clock)?;
                let regime = factory.regime(&symbol, &chain.features, &clock)?;
                let strategy = factory.strategy(&symbol, &chain.features, &clock)?;
                let old = std::mem::replace(&mut chain.slices.analysis, analysis);
                chain.retire(SliceKind::Analysis, old.health());
                let old = std::mem::replace(&mut chain.slices.regime, regime);
                chain.retire(SliceKind::Regime, old.health());
                let old = std::mem::replace(&mut chain.slices.strategy, strategy);
                chain.retire(SliceKind::Strategy, old.health());
                chain.history.pipeline_replaced();
                // Decisions on bars not yet processed came from the failed instances.
                let cursor = chain.batch.cursor;
                chain.batch.signals.retain(|s| (s.bar_index as usize) < cursor);
            }
            SliceKind::Sizing => {
                let old = std::mem::replace(&mut chain.slices.sizing, factory.sizing(&symbol, &clock)?);
                chain.retire(kind, old.health());
            }
            SliceKind::Execution => {
                let fresh = factory.execution(&symbol, &clock)?;
                let reason = "cancelled by the host: the execution slice was replaced after a fault";
                // The new instance never saw these orders: the host closes them
                // itself. Through a venue, every instance routes to the same
                // venue and knows its orders, which stay working.
                let keep = self.settings.liquidation == Liquidation::ThroughExecution;
                let closed = if keep {
                    Ok(())
                } else {
                    self.close_book(i, None, OrderStatus::Cancelled, reason, recorder)
                };
                closed.map_err(|e| SliceError {
                    label: self.chains[i].slices.execution.label().clone(),
                    failure: Failure::Returned(format!("cannot record cancelled orders: {e}")),
                })?;
                let chain = &mut self.chains[i];
                let old = std::mem::replace(&mut chain.slices.execution, fresh);
                chain.retire(kind, old.health());
            }
        }
        Ok(())
    }

    /// Host-side close of a position after a fault, at this bar's open.
    pub(super) fn liquidate_if_due(
        &mut self,
        i: usize,
        bar: &Bar,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        if self.settings.liquidation == Liquidation::ThroughExecution {
            // Sent when decided (`send_liquidations`), not at a later open.
            return Ok(());
        }
        let Some(reason) = self.chains[i].liquidate.take() else { return Ok(()) };
        self.close_position_at(i, bar.ts, bar.open, &reason, recorder)?;
        let chain = &mut self.chains[i];
        if !chain.active {
            // Nothing more to do for a dropped symbol: stop after this bar.
            chain.ended = true;
            chain.batch.bars.truncate(chain.batch.cursor + 1);
            chain.carry = Default::default();
        }
        Ok(())
    }

    pub(super) fn close_position_at(
        &mut self,
        i: usize,
        ts: Timestamp,
        price: f64,
        reason: &str,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let position = self.ledger.position(i);
        if position.is_zero() {
            return Ok(());
        }
        let symbol = self.chains[i].symbol.clone();
        let refused =
            |what: String| RunError::Ledger { symbol: symbol.clone(), at: ts, error: LedgerError(what) };
        // Bars are checked on entry, so the price is in range; checked anyway,
        // as all money is, so a gap in that reasoning is an error, not a panic.
        let price = price_to_decimal(price)
            .ok_or_else(|| refused(format!("host liquidation at {price:e}: not an exact decimal price")))?;
        let quantity = position.abs();
        let side = if position > Decimal::ZERO { Side::Sell } else { Side::Buy };
        let notional = quantity.checked_mul(price).ok_or_else(|| {
            refused(format!("host liquidation of {quantity} at {price}: notional overflows"))
        })?;
        let fee = notional
            .checked_mul(self.settings.faults.liquidation_fee_bps)
            .map(|f| f / Decimal::from(10_000))
            .ok_or_else(|| refused(format!("host liquidation of {quantity} at {price}: fee overflows")))?;
        let order = Order {
            id: OrderId(self.next_order_id),
            symbol: self.chains[i].symbol.clone(),
            side,
            quantity,
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Ioc,
            created_at: ts,
        };
        self.next_order_id += 1;
        self.stats.orders += 1;
        self.stats.fills += 1;
        // The ledger first: a fill it refuses is never recorded.
        let trip = self
            .ledger
            .try_apply_fill(i, side, quantity, price, fee, ts)
            .map_err(|error| RunError::Ledger { symbol: order.symbol.clone(), at: ts, error })?;
        let fill = crate::model::Fill { order_id: order.id, ts, price, quantity, fee };
        recorder.fill(&order.symbol, side, &fill)?;
        if let Some(trip) = trip {
            recorder.round_trip(&trip)?;
        }
        let w = WorkingOrder { order, filled: quantity, notional, fees: fee, host_reason: None };
        recorder.order(&order_record(
            w,
            OrderStatus::Filled,
            Some(ts),
            format!("host liquidation: {reason}"),
        ))?;
        self.update_lifecycle(i, ts, false, recorder)?;
        Ok(())
    }

    /// A dropped symbol keeps reading bars only to close its position; if its
    /// data has ended (or its data slice failed), the position is closed at its last mark.
    pub(super) fn refill_for_liquidation(
        &mut self,
        i: usize,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let chain = &mut self.chains[i];
        chain.batch.clear();
        let bar = if !chain.carry.bars.is_empty() {
            // Bars already read after a located fault come first, in order.
            Some(chain.carry.bars.remove(0))
        } else if chain.carry.fault.take().is_some() {
            // The data slice failed after them: there is no further bar to trust.
            None
        } else {
            let mut bars = Vec::with_capacity(1);
            let read = chain.slices.data.next_batch(1, &mut bars);
            if self.settings.liquidation == Liquidation::ThroughExecution
                && self.settings.live
                && matches!(read, Ok(()))
                && bars.is_empty()
            {
                // A live feed with no new bar yet: the venue's answer comes with the next one.
                return Ok(());
            }
            let bar = match read {
                Ok(()) => {
                    bars.first().copied().filter(|b| check_bar(b, chain.last_ts, &self.settings).is_ok())
                }
                Err(_) => None,
            };
            if let Some(bar) = bar {
                chain.last_ts = Some(bar.ts);
            }
            bar
        };
        match bar {
            Some(bar) => chain.batch.bars.push(bar),
            None if self.settings.liquidation == Liquidation::ThroughExecution => {
                chain.ended = true;
                let held = self.ledger.position(i);
                if !held.is_zero() || !chain.working.is_empty() {
                    let message = format!(
                        "{}: its data ended (or its data slice failed) after {} with {} held and {} order(s) working: \
                         the host cannot follow them further, so the position remains open at the venue",
                        chain.symbol,
                        chain.last_ts.map(iso).unwrap_or_else(|| "no bar".into()),
                        held.normalize(),
                        chain.working.len()
                    );
                    tracing::error!("{message}");
                    self.left_open.push(message);
                }
            }
            None => {
                let reason = chain.liquidate.take().unwrap_or_default();
                chain.ended = true;
                let (ts, mark) = (chain.last_ts.unwrap_or_default(), self.ledger.mark_price(i));
                if let Some(mark) = mark {
                    let reason = format!("{reason}; no further bar, closed at the last close");
                    self.close_position_at(i, ts, mark, &reason, recorder)?;
                }
            }
        }
        Ok(())
    }

    /// Live mode: every close the host decided and has not sent yet goes to
    /// the execution slot now, as a market order for the whole position,
    /// dated the chain's last bar (the decision's).
    pub(super) fn send_liquidations(&mut self, recorder: &mut dyn Recorder) -> Result<(), RunError> {
        for i in 0..self.chains.len() {
            let chain = &self.chains[i];
            if chain.liquidate.is_none() || chain.liquidating.is_some() || chain.ended {
                continue;
            }
            // Sized only once the venue has ended every working order (their
            // cancels confirmed): a fill racing a cancel must not leave part
            // of the position open.
            if !chain.working.is_empty() {
                continue;
            }
            // Before the chain's first bar it holds nothing to close.
            let Some(bar) = chain.last_bar else { continue };
            let reason = self.chains[i].liquidate.take().unwrap_or_default();
            self.send_liquidation(i, &bar, reason, recorder)?;
        }
        Ok(())
    }

    /// One host liquidation through chain `i`'s execution slot: it bypasses
    /// the strategy and sizing, is recorded with its reason, and changes the
    /// ledger only by the fills the slot reports. A slot that cannot say
    /// whether it placed the order stops the run: a restart sends it again
    /// with the same id, which a venue does not take twice.
    fn send_liquidation(
        &mut self,
        i: usize,
        bar: &Bar,
        reason: String,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        let position = self.ledger.position(i);
        if position.is_zero() {
            self.settle_liquidation(i);
            return Ok(());
        }
        let symbol = self.chains[i].symbol.clone();
        let side = if position > Decimal::ZERO { Side::Sell } else { Side::Buy };
        let order = Order {
            id: OrderId(self.next_order_id),
            symbol: symbol.clone(),
            side,
            quantity: position.abs(),
            order_type: OrderType::Market,
            limit_price: None,
            stop_price: None,
            time_in_force: TimeInForce::Ioc,
            created_at: bar.ts,
        };
        self.next_order_id += 1;
        self.stats.orders += 1;
        tracing::warn!(
            symbol = %symbol,
            "host liquidation: order {} to {} {} at market through the execution slot ({reason})",
            order.id,
            side.as_str(),
            order.quantity.normalize()
        );
        let mut events = Vec::new();
        let chain = &mut self.chains[i];
        let sent = chain.slices.execution.submit_liquidation(&order, bar, &mut events);
        let id = order.id;
        let zero = Decimal::ZERO;
        chain.working.push(WorkingOrder {
            order,
            filled: zero,
            notional: zero,
            fees: zero,
            host_reason: Some(reason),
        });
        chain.liquidating = Some(id);
        let at = Some(bar.ts);
        if let Err(error) = sent {
            return Err(RunError::Slice { symbol, at, error });
        }
        match self.apply_events(i, bar, &events, recorder) {
            Ok(()) => {}
            Err(StepError::Io(e)) => return Err(RunError::Io(e)),
            Err(StepError::Slice(error)) => return Err(RunError::Slice { symbol, at, error }),
        }
        self.update_lifecycle(i, bar.ts, false, recorder)?;
        self.settle_liquidation(i);
        Ok(())
    }

    /// After the execution slot reported on chain `i`: a host liquidation
    /// that has left the book is done. If the position is still open (the
    /// venue refused the order, or filled less), that is said once and the
    /// order is not sent again. A dropped or stopped chain ends once it has
    /// nothing left to close or to hear about.
    pub(super) fn settle_liquidation(&mut self, i: usize) {
        if self.settings.liquidation != Liquidation::ThroughExecution {
            return;
        }
        let chain = &mut self.chains[i];
        if let Some(id) = chain.liquidating
            && !chain.working.iter().any(|w| w.order.id == id)
        {
            chain.liquidating = None;
            let left = self.ledger.position(i);
            if !left.is_zero() {
                let message = format!(
                    "{}: the host liquidation (order {id}) ended with {} still held after {}: the position remains \
                     open at the venue (see orders.csv for the venue's answer); it is not sent again",
                    chain.symbol,
                    left.normalize(),
                    chain.last_bar.map(|b| iso(b.ts)).unwrap_or_else(|| "no bar".into())
                );
                tracing::error!("{message}");
                self.left_open.push(message);
            }
        }
        if !chain.active
            && !chain.ended
            && chain.liquidate.is_none()
            && chain.liquidating.is_none()
            && chain.working.is_empty()
        {
            chain.ended = true;
            chain.batch.bars.truncate(chain.batch.cursor + 1);
            chain.carry = Default::default();
        }
    }
}
