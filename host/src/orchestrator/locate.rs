//! Locating a failed batched call to its bar, within a bound.
//!
//! Analysis, regime and strategy take bars in batches; when a batched call
//! fails, the host looks for the bar it failed on by bisecting the batch on
//! fresh instances: each fresh instance is first brought to the state the
//! failed one had before the batch (its [`History`] replayed: the same bars
//! from the same data, in the same calls), then fed halves of the batch.
//! A sound half is kept (its decisions are the chain's) and the search goes on
//! after it on the same instance; a failing half is split again on a new
//! instance. That is about log2(batch) calls and at most as many history
//! replays, instead of one call per bar.
//!
//! The search has a time budget (a multiple of what the symbol's data and
//! pipeline slices have cost so far, within fixed bounds). When it cannot
//! finish (budget spent, data that differs on replay, a failure that does
//! not recur, or a replay that fails differently, such as a fresh instance's
//! own CPU budget), the original failure is kept, reported at the first bar
//! not proven sound, and its message says the exact bar could not be pinned.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::pipeline::{Batch, Pipeline};
use super::refill::truncate_batch;
use super::{BacktestSettings, Chain, SliceFactory};
use crate::model::{Bar, SliceKind, Timestamp};
use crate::slice::{AnalysisSlice, DataSlice, Failure, RegimeSlice, SliceError, SliceHealth, StrategySlice};
use crate::time::iso;

/// The search may spend this many times what the symbol's data and pipeline
/// slices have cost so far: enough for ~log2(batch) replays of the history.
const BUDGET_MULTIPLE: u32 = 8;
/// Always allowed: a dozen calls that run into a one-second deadline fit.
const BUDGET_FLOOR: Duration = Duration::from_secs(15);
/// Never more, however long the run so far: a fault must not cost an hour.
const BUDGET_CAP: Duration = Duration::from_secs(60);

/// What the current analysis, regime and strategy instances have been fed,
/// so that fresh instances can be brought to the same state: for every data
/// instance they took bars from, where it was opened, how many of its bars
/// came before them, and the sizes of the calls that fed them.
pub(super) struct History {
    segments: Vec<Segment>,
    /// False once instances were swapped in by a config reload, which fed
    /// them in its own way: the search then gives up at once.
    replayable: bool,
}

struct Segment {
    /// Where the data instance was opened.
    start: Option<Timestamp>,
    /// Its bars that came before the current pipeline instances.
    skip: u64,
    /// Its bars taken into batches so far.
    consumed: u64,
    /// The calls that fed the pipeline from it, as (bars, times) runs.
    feeds: Vec<(usize, u64)>,
}

impl History {
    pub(super) fn starting(start: Option<Timestamp>) -> Self {
        History { segments: vec![Segment::opened(start)], replayable: true }
    }

    /// The pipeline took `n` bars of the current data instance in one call.
    pub(super) fn fed(&mut self, n: usize) {
        let Some(segment) = self.segments.last_mut() else { return };
        segment.consumed += n as u64;
        match segment.feeds.last_mut() {
            Some((size, times)) if *size == n => *times += 1,
            _ => segment.feeds.push((n, 1)),
        }
    }

    /// `n` bars of the current data instance went into a batch without a
    /// pipeline call of the current instances (a located failure's).
    pub(super) fn consumed(&mut self, n: usize) {
        if let Some(segment) = self.segments.last_mut() {
            segment.consumed += n as u64;
        }
    }

    /// The data slice was replaced by one opened at `start`.
    pub(super) fn data_replaced(&mut self, start: Option<Timestamp>) {
        self.segments.push(Segment::opened(start));
    }

    /// Fresh pipeline instances start from the next bar of the current data instance.
    pub(super) fn pipeline_replaced(&mut self) {
        let Some(mut current) = self.segments.pop() else { return };
        current.skip = current.consumed;
        current.feeds.clear();
        self.segments = vec![current];
    }

    /// Instances were fed in a way this history does not describe.
    pub(super) fn forget(&mut self) {
        self.replayable = false;
    }
}

impl Segment {
    fn opened(start: Option<Timestamp>) -> Self {
        Segment { start, skip: 0, consumed: 0, feeds: Vec::new() }
    }
}

/// Where a failed batch's fault fires and what it says.
pub(super) struct Located {
    /// The bars before the fault, with the decisions of the instances that
    /// processed them soundly.
    pub(super) batch: Batch,
    /// The batch index of the bar the fault fires on (`batch.bars.len()`).
    pub(super) at: usize,
    pub(super) error: SliceError,
    /// The health of the instances the search used, to count in the chain's.
    pub(super) probes: Vec<(SliceKind, SliceHealth)>,
}

/// Why the search stopped without pinning the bar.
enum Unpinned {
    Budget(Duration),
    Diverged(String),
    NoRecurrence,
    Replay(SliceError),
    Different(SliceError),
    Unreplayable,
    NoFactory,
}

impl Unpinned {
    fn describe(&self) -> String {
        match self {
            Unpinned::Budget(budget) => format!("the search ran out of its {} s budget", budget.as_secs()),
            Unpinned::Diverged(what) => format!("the data slice gave different bars on replay ({what})"),
            Unpinned::NoRecurrence => "it did not recur when the batch was replayed in parts".into(),
            Unpinned::Replay(e) => format!("replaying the symbol on fresh instances failed: {e}"),
            Unpinned::Different(e) => format!("the replay failed differently: {e}"),
            Unpinned::Unreplayable => "the instances were replaced by a config reload".into(),
            Unpinned::NoFactory => "no fresh instances to replay on".into(),
        }
    }
}

/// Fresh analysis, regime and strategy instances.
struct Probe {
    analysis: Box<dyn AnalysisSlice>,
    regime: Box<dyn RegimeSlice>,
    strategy: Box<dyn StrategySlice>,
}

impl Probe {
    fn pipeline(&mut self) -> Pipeline<'_> {
        Pipeline { analysis: &mut *self.analysis, regime: &mut *self.regime, strategy: &mut *self.strategy }
    }

    fn health(&self) -> [(SliceKind, SliceHealth); 3] {
        [
            (SliceKind::Analysis, self.analysis.health()),
            (SliceKind::Regime, self.regime.health()),
            (SliceKind::Strategy, self.strategy.health()),
        ]
    }
}

/// The state of a bisection of a failed batch.
struct Search<'b> {
    bars: &'b [Bar],
    deadline: Instant,
    budget: Duration,
    /// Decisions for `bars[..lo]`, which fresh instances processed soundly.
    sound: Batch,
    /// The failure lies in `bars[lo..hi]`.
    lo: usize,
    hi: usize,
    probes: Vec<(SliceKind, SliceHealth)>,
}

impl Chain {
    /// Finds the bar a failed pipeline call on `bars` failed on (see the module docs).
    pub(super) fn locate(
        &mut self,
        settings: &BacktestSettings,
        factory: Option<&dyn SliceFactory>,
        bars: &[Bar],
        error: SliceError,
    ) -> Located {
        // A single bar is its own answer; a spent budget or a poisoned
        // instance belongs to the whole call, not to a bar in it.
        let searchable =
            bars.len() > 1 && !matches!(error.failure, Failure::OverBudget { .. } | Failure::Poisoned);
        if !searchable {
            let error = if bars.len() > 1 { annotate(error, &batch_note(bars)) } else { error };
            return Located { batch: Batch::default(), at: 0, error, probes: Vec::new() };
        }
        let budget = (self.pipeline_busy() * BUDGET_MULTIPLE).clamp(BUDGET_FLOOR, BUDGET_CAP);
        let mut search = Search {
            bars,
            deadline: Instant::now() + budget,
            budget,
            sound: Batch::default(),
            lo: 0,
            hi: bars.len(),
            probes: Vec::new(),
        };
        let verdict = match factory {
            Some(factory) => self.bisect(settings, factory, &mut search),
            None => Err(Unpinned::NoFactory),
        };
        let width = self.features.len();
        let Search { mut sound, lo, probes, .. } = search;
        match verdict {
            Ok(found) if same_failure(&found, &error) => {
                Located { batch: sound, at: lo, error: found, probes }
            }
            Ok(found) => unpinned(sound, lo, bars, error, &Unpinned::Different(found), probes),
            Err(reason) => {
                // Everything replayed soundly: the fault still fires on the batch's last bar.
                let at = lo.min(bars.len() - 1);
                truncate_batch(&mut sound, at, width);
                unpinned(sound, at, bars, error, &reason, probes)
            }
        }
    }

    /// Bisects `search.bars[lo..hi]` until one bar's call fails.
    fn bisect(
        &self,
        settings: &BacktestSettings,
        factory: &dyn SliceFactory,
        search: &mut Search<'_>,
    ) -> Result<SliceError, Unpinned> {
        let width = self.features.len();
        let mut current: Option<Probe> = None;
        let result = loop {
            if search.lo == search.hi {
                break Err(Unpinned::NoRecurrence);
            }
            if Instant::now() >= search.deadline {
                break Err(Unpinned::Budget(search.budget));
            }
            let mut probe = match current.take() {
                Some(probe) => probe,
                None => match self.rebuild(settings, factory, search) {
                    Ok(probe) => probe,
                    Err(reason) => break Err(reason),
                },
            };
            let (lo, hi) = (search.lo, search.hi);
            let mid = if hi - lo == 1 { hi } else { lo + (hi - lo) / 2 };
            let piece = &search.bars[lo..mid];
            self.clock.set(piece[piece.len() - 1].ts);
            match probe.pipeline().run(piece, width, &mut search.sound) {
                Ok(()) => {
                    search.lo = mid;
                    current = Some(probe);
                }
                Err(found) => {
                    search.probes.extend(probe.health());
                    if mid - lo == 1 {
                        break Ok(found);
                    }
                    search.hi = mid;
                }
            }
        };
        if let Some(probe) = current {
            search.probes.extend(probe.health());
        }
        result
    }

    /// Fresh pipeline instances fed this chain's history, then the sound
    /// part of the failed batch.
    fn rebuild(
        &self,
        settings: &BacktestSettings,
        factory: &dyn SliceFactory,
        search: &mut Search<'_>,
    ) -> Result<Probe, Unpinned> {
        if !self.history.replayable {
            return Err(Unpinned::Unreplayable);
        }
        let (symbol, clock) = (&self.symbol, &self.clock);
        let mut probe = Probe {
            analysis: factory.analysis(symbol, clock).map_err(Unpinned::Replay)?,
            regime: factory.regime(symbol, &self.features, clock).map_err(Unpinned::Replay)?,
            strategy: factory.strategy(symbol, &self.features, clock).map_err(Unpinned::Replay)?,
        };
        let result = self.feed_history(settings, factory, search, &mut probe);
        if result.is_err() {
            search.probes.extend(probe.health());
        }
        result.map(|()| probe)
    }

    fn feed_history(
        &self,
        settings: &BacktestSettings,
        factory: &dyn SliceFactory,
        search: &Search<'_>,
        probe: &mut Probe,
    ) -> Result<(), Unpinned> {
        let width = self.features.len();
        let segments = &self.history.segments;
        for (k, segment) in segments.iter().enumerate() {
            let data = factory.data(&self.symbol, segment.start, settings.end, &self.clock);
            let mut reader = Reader { data: data.map_err(Unpinned::Replay)?, queue: VecDeque::new(), search };
            reader.take(settings.batch_size, segment.skip as usize)?;
            for &(size, times) in &segment.feeds {
                for _ in 0..times {
                    let bars = reader.take(settings.batch_size, size)?;
                    self.clock.set(bars[bars.len() - 1].ts);
                    probe.pipeline().run(&bars, width, &mut Batch::default()).map_err(Unpinned::Replay)?;
                }
            }
            if k + 1 == segments.len() {
                // The failed batch follows: the replay must read exactly its bars.
                let next = reader.take(settings.batch_size, search.bars.len())?;
                if next != search.bars {
                    let first = search.bars.iter().zip(&next).position(|(a, b)| a != b).unwrap_or(0);
                    return Err(Unpinned::Diverged(format!(
                        "bar {} of the batch, {}",
                        first,
                        iso(search.bars[first].ts)
                    )));
                }
            }
        }
        // The part of the batch already proven sound, in one call: the search
        // relies on a slice's results not depending on how bars are batched.
        let sound = &search.bars[..search.lo];
        if let Some(last) = sound.last() {
            self.clock.set(last.ts);
            probe.pipeline().run(sound, width, &mut Batch::default()).map_err(Unpinned::Replay)?;
        }
        Ok(())
    }

    /// CPU time the symbol's data and pipeline slices have used so far, every instance counted.
    fn pipeline_busy(&self) -> Duration {
        let s = &self.slices;
        let current = [s.data.health(), s.analysis.health(), s.regime.health(), s.strategy.health()];
        let retired = [SliceKind::Data, SliceKind::Analysis, SliceKind::Regime, SliceKind::Strategy]
            .iter()
            .filter_map(|kind| self.retired.get(kind).map(|(health, _)| health.busy));
        current.iter().map(|h| h.busy).chain(retired).sum()
    }
}

/// A fresh data instance read again, bar by bar as the replay needs them.
struct Reader<'s, 'b> {
    data: Box<dyn DataSlice>,
    queue: VecDeque<Bar>,
    search: &'s Search<'b>,
}

impl Reader<'_, '_> {
    /// The next `n` bars, reading batches of `batch_size` as needed.
    fn take(&mut self, batch_size: u32, n: usize) -> Result<Vec<Bar>, Unpinned> {
        while self.queue.len() < n {
            if Instant::now() >= self.search.deadline {
                return Err(Unpinned::Budget(self.search.budget));
            }
            let mut bars = Vec::new();
            self.data.next_batch(batch_size, &mut bars).map_err(Unpinned::Replay)?;
            if bars.is_empty() {
                return Err(Unpinned::Diverged("its data ended early".into()));
            }
            self.queue.extend(bars);
        }
        Ok(self.queue.drain(..n).collect())
    }
}

/// The replay found the same kind of failure in the same slice: not, for
/// example, a fresh instance running out of its own CPU budget.
fn same_failure(found: &SliceError, original: &SliceError) -> bool {
    found.label.kind == original.label.kind
        && std::mem::discriminant(&found.failure) == std::mem::discriminant(&original.failure)
}

fn unpinned(
    batch: Batch,
    at: usize,
    bars: &[Bar],
    error: SliceError,
    reason: &Unpinned,
    probes: Vec<(SliceKind, SliceHealth)>,
) -> Located {
    let note = format!(
        "(the exact bar could not be pinned: {}; {}, and the bars before {} replayed soundly)",
        reason.describe(),
        batch_range(bars),
        iso(bars[at].ts)
    );
    Located { batch, at, error: annotate(error, &note), probes }
}

fn batch_note(bars: &[Bar]) -> String {
    format!("({})", batch_range(bars))
}

fn batch_range(bars: &[Bar]) -> String {
    match (bars.first(), bars.last()) {
        (Some(first), Some(last)) => {
            format!(
                "the failed call covered the {} bars from {} to {}",
                bars.len(),
                iso(first.ts),
                iso(last.ts)
            )
        }
        _ => "the failed call had no bars".into(),
    }
}

fn annotate(mut error: SliceError, note: &str) -> SliceError {
    error.failure = match error.failure {
        Failure::Returned(m) => Failure::Returned(format!("{m} {note}")),
        Failure::Invalid(m) => Failure::Invalid(format!("{m} {note}")),
        Failure::Trapped { reason, backtrace } => {
            Failure::Trapped { reason: format!("{reason} {note}"), backtrace }
        }
        // These kinds' messages are fixed; they never reach a search anyway.
        other => other,
    };
    error
}
