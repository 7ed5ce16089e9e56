//! Positions over time: their lifecycle (opened, monitoring, adjusting,
//! closing, closed), the borrow cost of shorts, and the kill switch that
//! closes them all.

use rust_decimal::Decimal;

use super::{Backtest, LifecycleEvent, PositionLife, PositionState, Recorder, RunError};
use crate::model::{Side, Timestamp};
use crate::portfolio::LedgerError;

/// Milliseconds in the 365-day year borrow rates are quoted for.
const MS_PER_YEAR: i64 = 365 * 86_400_000;

impl Backtest<'_> {
    /// Moves chain `i`'s position to the state its quantity and working
    /// orders call for, recording each transition. `new_bar` is true once per
    /// bar, when a freshly opened position becomes monitored.
    pub(super) fn update_lifecycle(
        &mut self,
        i: usize,
        ts: Timestamp,
        new_bar: bool,
        recorder: &mut dyn Recorder,
    ) -> std::io::Result<()> {
        let quantity = self.ledger.position(i);
        let chain = &mut self.chains[i];
        let mut transitions = Vec::new();
        match chain.life.as_mut() {
            None if quantity.is_zero() => {}
            None => {
                let life = PositionLife {
                    id: self.next_position_id,
                    state: PositionState::Opened,
                    opened_at: ts,
                    adjustments: 0,
                };
                self.next_position_id += 1;
                chain.life = Some(life);
                transitions.push((life.id, PositionState::Opened));
            }
            Some(life) if quantity.is_zero() => {
                transitions.push((life.id, PositionState::Closed));
                chain.life = None;
            }
            Some(life) => {
                let long = quantity > Decimal::ZERO;
                let closing = chain.liquidate.is_some()
                    || chain.working.iter().any(|w| (w.order.side == Side::Sell) == long);
                let adjusting = chain.working.iter().any(|w| (w.order.side == Side::Buy) == long);
                let wanted = if closing {
                    PositionState::Closing
                } else if adjusting {
                    PositionState::Adjusting
                } else if life.state == PositionState::Opened && !(new_bar && ts > life.opened_at) {
                    PositionState::Opened
                } else {
                    PositionState::Monitoring
                };
                if wanted != life.state {
                    if wanted == PositionState::Adjusting {
                        life.adjustments += 1;
                    }
                    life.state = wanted;
                    transitions.push((life.id, wanted));
                }
            }
        }
        for (position_id, state) in transitions {
            let symbol = self.chains[i].symbol.clone();
            recorder.lifecycle(&LifecycleEvent { position_id, symbol, ts, state, quantity })?;
        }
        Ok(())
    }

    /// Adjustments chain `i`'s open position has had, if one is open.
    pub(super) fn adjustments(&self, i: usize) -> Option<u32> {
        self.chains[i].life.map(|l| l.adjustments)
    }

    /// Charges the borrow cost of a short position for the time since it was
    /// last charged, at the rate in `[shorting]`.
    pub(super) fn charge_borrow(&mut self, i: usize, ts: Timestamp) -> Result<(), LedgerError> {
        let rate = self.settings.shorting.borrow_bps_per_year;
        let quantity = self.ledger.position(i);
        let chain = &mut self.chains[i];
        let since = chain.borrow_paid_to.replace(ts);
        if rate.is_zero() || quantity >= Decimal::ZERO {
            return Ok(());
        }
        let Some(since) = since else { return Ok(()) };
        let value = self.ledger.position_value(i).abs();
        // Dividing by constants of at least one cannot overflow; the products can.
        let cost = value
            .checked_mul(rate)
            .map(|v| v / Decimal::from(10_000))
            .and_then(|v| v.checked_mul(Decimal::from(ts.saturating_sub(since))))
            .map(|v| v / Decimal::from(MS_PER_YEAR))
            .ok_or_else(|| {
                LedgerError(format!(
                    "the borrow cost of a short worth {value} at {rate} bps a year is outside the supported decimal range"
                ))
            })?;
        self.ledger.try_charge_borrow(cost)
    }

    /// Charges a margin account's interest on the cash it owed since the
    /// previous timestamp: cash carried negative over `[previous, ts)` at the
    /// account's annual rate, for the time elapsed. A cash account's rate is
    /// zero, so it is never charged.
    pub(super) fn charge_interest(&mut self, ts: Timestamp) -> Result<(), RunError> {
        let since = self.interest_paid_to.replace(ts);
        let rate = self.settings.account.interest_rate();
        let Some(since) = since.filter(|_| !rate.is_zero()) else { return Ok(()) };
        let owed = self.ledger.cash();
        self.ledger.charge_interest(rate, ts.saturating_sub(since), MS_PER_YEAR).map(drop).ok_or_else(|| {
            RunError::Account(format!(
                "margin interest at {} on cash of {owed} from {} to {} is outside the supported decimal range",
                rate.normalize(),
                crate::time::iso(since),
                crate::time::iso(ts)
            ))
        })
    }

    /// The drawdown kill switch fired: no new orders anywhere, working orders
    /// cancelled, every position closed by the host (at its next bar, or by
    /// an order through the execution slot in live mode), and the run ends
    /// when they are.
    pub(super) fn stop_trading(
        &mut self,
        reason: String,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        tracing::warn!("{reason}: closing every position and stopping");
        for i in 0..self.chains.len() {
            self.cancel_all(i, &format!("cancelled by the host: {reason}"), recorder)?;
            let chain = &mut self.chains[i];
            chain.active = false;
            chain.batch.signals.clear();
            chain.batch.fault = None;
            // Orders whose cancellation the venue has not confirmed keep the
            // chain reading bars until it reports how they ended.
            if self.ledger.position(i).is_zero() && chain.working.is_empty() {
                chain.ended = true;
                chain.batch.bars.truncate(chain.batch.cursor + 1);
            } else if !self.ledger.position(i).is_zero() {
                chain.liquidate = Some(reason.clone());
                let at = chain.last_ts.unwrap_or_default();
                self.update_lifecycle(i, at, false, recorder)?;
            }
        }
        self.stopped = Some(reason);
        Ok(())
    }

    /// The daily-loss limit closes every position (`risk.daily-loss-closes`):
    /// working orders cancelled, each open position closed by the host at its
    /// next bar (through the venue in live mode); the chains keep trading,
    /// with no new positions until the next UTC day.
    pub(super) fn close_for_the_day(
        &mut self,
        reason: String,
        recorder: &mut dyn Recorder,
    ) -> Result<(), RunError> {
        tracing::warn!("{reason}");
        for i in 0..self.chains.len() {
            if !self.chains[i].active || self.ledger.position(i).is_zero() {
                continue;
            }
            self.cancel_all(i, &format!("cancelled by the host: {reason}"), recorder)?;
            let chain = &mut self.chains[i];
            chain.liquidate = Some(reason.clone());
            let at = chain.last_ts.unwrap_or_default();
            self.update_lifecycle(i, at, false, recorder)?;
        }
        Ok(())
    }
}
