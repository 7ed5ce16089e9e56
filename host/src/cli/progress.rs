//! The progress bar of `host run` on a terminal: how far the run is through
//! simulated time, bars per second and the time left.
//!
//! Bars stream from the data slices, so their number is not known up front.
//! Progress is measured in simulated time instead: from the first bar to
//! `--to`, or to the latest last row among the symbols' data files when the
//! data slice reads a granted folder of `<SYMBOL>.csv` files. Without an end
//! the bar is a spinner with the date reached and the rate.

use std::io;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rust_decimal::Decimal;

use crate::model::Bar;
use crate::orchestrator::{OrderRecord, Recorder};
use crate::portfolio::RoundTrip;
use crate::time::{Timestamp, date};

/// How often (in timestamps) the bar is updated: cheap enough per bar.
const UPDATE_EVERY: u64 = 1024;

pub struct Progress {
    bar: ProgressBar,
    end: Option<Timestamp>,
    start: Option<Timestamp>,
    bars: u64,
    timestamps: u64,
    started: Instant,
}

impl Progress {
    /// A bar on stderr that runs to `end` (simulated time), if known.
    pub fn new(end: Option<Timestamp>) -> Self {
        let bar = match end {
            Some(_) => ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {wide_bar:.cyan/blue} {percent:>3}% {msg} ETA {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template")),
        };
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar, end, start: None, bars: 0, timestamps: 0, started: Instant::now() }
    }

    fn update(&mut self, ts: Timestamp) {
        let start = *self.start.get_or_insert(ts);
        if let Some(end) = self.end {
            // Seconds of simulated time: the bar's unit.
            self.bar.set_length(((end - start).max(1) / 1000) as u64);
            self.bar.set_position(((ts - start).clamp(0, end - start) / 1000) as u64);
        }
        let rate = self.bars as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!("{} · {} bars · {:.0} bars/s", date(ts), self.bars, rate));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Recorder for Progress {
    fn equity(&mut self, ts: Timestamp, _cash: Decimal, _equity: Decimal) -> io::Result<()> {
        if self.timestamps.is_multiple_of(UPDATE_EVERY) {
            self.update(ts);
        }
        self.timestamps += 1;
        Ok(())
    }

    fn order(&mut self, _order: &OrderRecord) -> io::Result<()> {
        Ok(())
    }

    fn round_trip(&mut self, _trip: &RoundTrip) -> io::Result<()> {
        Ok(())
    }

    fn bar(&mut self, _symbol: usize, _bar: &Bar) {
        self.bars += 1;
    }
}
