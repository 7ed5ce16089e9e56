//! Filling a chain's batch: bars from the data slice (or those left over
//! from a failed batch), checked, through analysis, regime and strategy. A
//! failed pipeline call is located to its bar ([`super::locate`]); the bars
//! after that bar are kept for the next batch, so no bar is lost to a fault.

use super::locate::Located;
use super::pipeline::{Batch, PendingFault, Pipeline, check_bar};
use super::{BacktestSettings, Chain, SliceFactory};
use crate::model::{Bar, Regime, Timestamp};
use crate::slice::SliceError;

/// A fault that fires after some bars: the data slice failed, or gave an
/// unusable bar (its time, when there is one), after the bars before it.
pub(super) type FaultAfter = (Option<Timestamp>, SliceError);

/// Bars already read from the data slice that the pipeline has not taken
/// yet (the rest of a batch whose pipeline call failed), and a data fault
/// that was found right after them.
#[derive(Default)]
pub(super) struct Carry {
    pub(super) bars: Vec<Bar>,
    pub(super) fault: Option<FaultAfter>,
}

impl Chain {
    /// Pulls the next batch through data -> analysis -> regime -> strategy.
    /// A failure is located to its bar and left pending in the batch.
    pub(super) fn refill(&mut self, settings: &BacktestSettings, factory: Option<&dyn SliceFactory>) {
        self.batch.clear();
        let (bars, mut after) = self.next_bars(settings);
        if bars.is_empty() {
            match after {
                Some((ts, error)) => self.batch.fault = Some(PendingFault { at: 0, ts, error }),
                // A live feed with nothing new is waiting; anything else has ended.
                None => self.ended = !settings.live,
            }
            return;
        }
        self.first_ts.get_or_insert(bars[0].ts);
        self.clock.set(bars[bars.len() - 1].ts);
        let s = &mut self.slices;
        let mut pipeline =
            Pipeline { analysis: &mut *s.analysis, regime: &mut *s.regime, strategy: &mut *s.strategy };
        match pipeline.run(&bars, self.features.len(), &mut self.batch) {
            Ok(()) => self.history.fed(bars.len()),
            Err(error) => {
                let located = self.locate(settings, factory, &bars, error);
                self.take_located(&bars, located, after.take());
            }
        }
        if let Some((ts, error)) = after {
            self.batch.fault = Some(PendingFault { at: self.batch.bars.len(), ts, error });
        }
    }

    /// The next bars for the pipeline: those left over from a failed batch
    /// first, then a batch from the data slice, cut before its first
    /// unusable bar. Also returns the fault that follows them, if any.
    fn next_bars(&mut self, settings: &BacktestSettings) -> (Vec<Bar>, Option<FaultAfter>) {
        if !self.carry.bars.is_empty() {
            let n = self.carry.bars.len().min(settings.batch_size as usize);
            let bars: Vec<Bar> = self.carry.bars.drain(..n).collect();
            let after = if self.carry.bars.is_empty() { self.carry.fault.take() } else { None };
            return (bars, after);
        }
        if let Some(fault) = self.carry.fault.take() {
            return (Vec::new(), Some(fault));
        }
        let mut bars = Vec::with_capacity(settings.batch_size as usize);
        if let Err(error) = self.slices.data.next_batch(settings.batch_size, &mut bars) {
            return (Vec::new(), Some((None, error)));
        }
        let mut previous = self.last_ts;
        let mut unusable = None;
        for (k, bar) in bars.iter().enumerate() {
            // A feed that goes on past the cap (bars without end would fill
            // the disk): the bars before it are kept, the fault fires on the
            // first bar over it. Every bar read before this batch has been
            // processed, so `bars_done` counts them.
            if self.bars_done.saturating_add(k as u64) >= settings.max_bars_per_symbol {
                let m = format!(
                    "gave more than {} bars for the symbol, the run's limit (run.max-bars-per-symbol; raise it if the data is real)",
                    settings.max_bars_per_symbol
                );
                unusable = Some((k, bar.ts, m));
                break;
            }
            if let Err(m) = check_bar(bar, previous, settings) {
                unusable = Some((k, bar.ts, m));
                break;
            }
            previous = Some(bar.ts);
        }
        let after = unusable.map(|(k, ts, m)| {
            // The bars before it are sound and go through the pipeline first.
            bars.truncate(k);
            (Some(ts), SliceError::invalid(self.slices.data.label(), format!("bar {k} of its batch: {m}")))
        });
        if let Some(last) = bars.last() {
            self.last_ts = Some(last.ts);
        }
        (bars, after)
    }

    /// Puts a located failure in the batch: the bars proven sound with their
    /// decisions, then the bar the fault fires on (still filled and marked:
    /// only its decisions are lost), and keeps the bars after it for the next
    /// batch, followed by `after`.
    fn take_located(&mut self, bars: &[Bar], located: Located, after: Option<FaultAfter>) {
        let Located { mut batch, at, error, probes } = located;
        for (kind, health) in probes {
            self.retired.entry(kind).or_default().0.absorb(&health);
        }
        let width = self.features.len();
        debug_assert_eq!(batch.bars.len(), at);
        batch.bars.push(bars[at]);
        batch.features.extend(std::iter::repeat_n(f64::NAN, width));
        batch.regimes.push(Regime::Unknown);
        batch.fault = Some(PendingFault { at, ts: None, error });
        self.batch = batch;
        self.carry = Carry { bars: bars[at + 1..].to_vec(), fault: after };
        self.history.consumed(at + 1);
    }
}

/// Keeps the first `n` bars of `batch` and their decisions.
pub(super) fn truncate_batch(batch: &mut Batch, n: usize, width: usize) {
    batch.bars.truncate(n);
    batch.features.truncate(n * width);
    batch.regimes.truncate(n);
    batch.signals.retain(|s| (s.bar_index as usize) < n);
}
