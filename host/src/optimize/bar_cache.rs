//! The data slice's bars, read once per range and replayed to every trial.
//!
//! Every trial of a window asks the data slice for the same bars; reading
//! and parsing a file of hourly bars took about as long as the rest of a
//! trial. When the search varies no setting of the data slice, the real
//! data slice (in its sandbox, with its grants) reads each range once, in
//! the batches the backtest asks for, and each trial's chain gets a
//! [`ReplayedData`] that hands back the same batches. The bars still go
//! through the host's checks in every trial, and a trial's results are the
//! same bytes either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;

use crate::clock::SimClock;
use crate::model::{Bar, SliceKind, SourceInfo, Symbol, Timestamp};
use crate::session::Session;
use crate::slice::{DataSlice, Slice, SliceHealth, SliceLabel, SliceResult};

/// One symbol's bars over one range, as the data slice delivered them.
#[derive(Debug)]
pub struct Recorded {
    pub source: SourceInfo,
    bars: Vec<Bar>,
    /// Where each of the data slice's batches ended, in `bars`.
    batch_ends: Vec<usize>,
}

/// Where a data slice is opened: the first and last bar time asked for.
pub type DataRange = (Option<Timestamp>, Option<Timestamp>);

/// Ranges -> each symbol's bars, in symbol order.
#[derive(Debug, Default)]
pub struct BarCache {
    ranges: BTreeMap<DataRange, Vec<Arc<Recorded>>>,
}

impl BarCache {
    /// Reads `symbols` over each of `ranges` through the session's data slice.
    /// A range the data slice fails on is left out: its trials then read
    /// through the data slice themselves and report the failure as
    /// `host run` would.
    pub fn read(session: &Session, symbols: &[Symbol], ranges: impl IntoIterator<Item = DataRange>) -> Self {
        let batch_size = session.config.config.run.batch_size;
        let mut cache = BarCache::default();
        for range in ranges {
            if cache.ranges.contains_key(&range) {
                continue;
            }
            let recorded: Result<Vec<Arc<Recorded>>> = symbols
                .iter()
                .map(|symbol| {
                    let clock = SimClock::new();
                    let (mut data, source) = session.open_data(symbol, range.0, range.1, &clock)?;
                    let mut recorded = Recorded { source, bars: Vec::new(), batch_ends: Vec::new() };
                    loop {
                        let before = recorded.bars.len();
                        data.next_batch(batch_size, &mut recorded.bars)?;
                        if recorded.bars.len() == before {
                            break;
                        }
                        recorded.batch_ends.push(recorded.bars.len());
                    }
                    Ok(Arc::new(recorded))
                })
                .collect();
            if let Ok(recorded) = recorded {
                cache.ranges.insert(range, recorded);
            }
        }
        cache
    }

    /// A data slice replaying `symbol`'s bars over the range, if cached.
    pub fn replay(
        &self,
        range: DataRange,
        index: usize,
        label: &SliceLabel,
    ) -> Option<(ReplayedData, SourceInfo)> {
        let recorded = self.ranges.get(&range)?.get(index)?;
        let source = recorded.source.clone();
        Some((
            ReplayedData { recorded: Arc::clone(recorded), label: label.clone(), next: 0, batch: 0 },
            source,
        ))
    }
}

/// A data slice that hands back recorded batches.
pub struct ReplayedData {
    recorded: Arc<Recorded>,
    /// The real data slice's, so any message names the plugin the bars came from.
    label: SliceLabel,
    next: usize,
    /// The recorded batch `next` is in.
    batch: usize,
}

impl ReplayedData {
    pub fn label_for(session: &Session) -> SliceLabel {
        SliceLabel { kind: SliceKind::Data, plugin: Arc::from(session.plugin(SliceKind::Data).label()) }
    }
}

impl Slice for ReplayedData {
    fn label(&self) -> &SliceLabel {
        &self.label
    }

    fn health(&self) -> SliceHealth {
        SliceHealth::default()
    }
}

impl DataSlice for ReplayedData {
    /// Opened when the bars were recorded.
    fn open(&mut self, _: &Symbol, _: Option<Timestamp>, _: Option<Timestamp>) -> SliceResult<SourceInfo> {
        Ok(self.recorded.source.clone())
    }

    /// The rest of the current recorded batch, at most `max` bars: with the
    /// backtest's batch size, exactly the batches the data slice gave.
    fn next_batch(&mut self, max: u32, bars: &mut Vec<Bar>) -> SliceResult<()> {
        let Some(&end) = self.recorded.batch_ends.get(self.batch) else { return Ok(()) };
        let take = (end - self.next).min(max as usize);
        bars.extend_from_slice(&self.recorded.bars[self.next..self.next + take]);
        self.next += take;
        if self.next == end {
            self.batch += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: Timestamp) -> Bar {
        Bar { ts, open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 1.0 }
    }

    #[test]
    fn replays_the_recorded_batches_and_splits_them_for_smaller_asks() {
        let recorded = Arc::new(Recorded {
            source: SourceInfo { description: "test".into(), synthetic: false },
            bars: (0..5).map(bar).collect(),
            batch_ends: vec![3, 5],
        });
        let label = SliceLabel { kind: SliceKind::Data, plugin: Arc::from("csv-data 0.1.0") };
        let mut data = ReplayedData { recorded, label, next: 0, batch: 0 };
        let mut sizes = Vec::new();
        for max in [8, 1, 8, 8] {
            let mut bars = Vec::new();
            data.next_batch(max, &mut bars).unwrap();
            sizes.push(bars.iter().map(|b| b.ts).collect::<Vec<_>>());
        }
        assert_eq!(sizes, vec![vec![0, 1, 2], vec![3], vec![4], vec![]]);
    }
}
