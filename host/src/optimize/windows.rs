//! The ranges trials run on. Without walk-forward, one window: the whole
//! range, as `host run --from --to` would use it. With walk-forward, train
//! and test windows in time order: each test window starts the day after its
//! training window ends, and the next pair moves on by one test length, so
//! the test windows tile the range end to end and never overlap. The last
//! test window may be shorter; one shorter than half a test length is dropped.

use serde::{Deserialize, Serialize};

use super::config::WalkForwardSection;
use crate::metrics::Point;
use crate::time::{MS_PER_DAY, Timestamp, date};

/// A range of bars: open times in `[from, to]`; `None` is the data's start or end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl Span {
    /// `2020-01-01 to 2021-12-31` (the last day is included in full).
    pub fn describe(&self) -> String {
        format!(
            "{} to {}",
            self.from.map(date).unwrap_or_else(|| "the start".into()),
            self.to.map(date).unwrap_or_else(|| "the end".into())
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub index: usize,
    /// Where parameters are chosen (the whole range without walk-forward).
    pub train: Span,
    /// Where the chosen parameters are tested: walk-forward only.
    pub test: Option<Span>,
}

/// The windows of a study over `range`. `extent` is the first and last bar
/// of the data in the range, which walk-forward needs when `--from` or
/// `--to` is not given.
pub fn plan(
    walk_forward: Option<&WalkForwardSection>,
    range: Span,
    extent: (Timestamp, Timestamp),
) -> Result<Vec<Window>, String> {
    let Some(wf) = walk_forward else {
        return Ok(vec![Window { index: 0, train: range, test: None }]);
    };
    // Whole UTC days, from the requested start (or the first bar's day).
    let start = range.from.unwrap_or(extent.0).div_euclid(MS_PER_DAY) * MS_PER_DAY;
    let end = range.to.unwrap_or(extent.1);
    let (train, test) = (i64::from(wf.train_days) * MS_PER_DAY, i64::from(wf.test_days) * MS_PER_DAY);
    let mut windows = Vec::new();
    let mut test_from = start + train;
    while test_from <= end {
        // A last test window shorter than half the others says little: dropped.
        if !windows.is_empty() && end - test_from + 1 < test / 2 {
            break;
        }
        let train_from = if wf.anchored { start } else { test_from - train };
        windows.push(Window {
            index: windows.len(),
            train: Span { from: Some(train_from), to: Some(test_from - 1) },
            test: Some(Span { from: Some(test_from), to: Some((test_from + test - 1).min(end)) }),
        });
        test_from += test;
    }
    if windows.is_empty() {
        return Err(format!(
            "walk-forward needs more than train-days ({}) of data, and {} to {} is {} days",
            wf.train_days,
            date(start),
            date(end),
            (end - start) / MS_PER_DAY + 1
        ));
    }
    Ok(windows)
}

/// The out-of-sample equity curve: each test window's curve, scaled so it
/// starts where the previous one ended (returns compound across windows,
/// as if the equity at the end of one window were the start cash of the
/// next). A window with no curve (no parameters qualified) stays in cash:
/// its span is flat at the value reached.
pub fn stitch(start_cash: f64, windows: &[(Span, Option<&[Point]>)]) -> Vec<Point> {
    let mut stitched: Vec<Point> = Vec::new();
    let mut carried = start_cash;
    for (span, curve) in windows {
        match curve {
            Some(points) if !points.is_empty() => {
                let at = carried;
                stitched.extend(points.iter().map(|p| Point { ts: p.ts, value: p.value * at / start_cash }));
                carried = points[points.len() - 1].value * at / start_cash;
            }
            _ => {
                for ts in [span.from, span.to].into_iter().flatten() {
                    stitched.push(Point { ts, value: carried });
                }
            }
        }
    }
    stitched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_date;

    fn day(text: &str) -> Timestamp {
        parse_date(text).unwrap()
    }

    fn wf(train: u32, test: u32, anchored: bool) -> WalkForwardSection {
        WalkForwardSection { train_days: train, test_days: test, anchored }
    }

    #[test]
    fn rolling_windows_tile_the_range_with_their_tests() {
        let range = Span { from: Some(day("2020-01-01")), to: Some(day("2020-12-31") + MS_PER_DAY - 1) };
        let w = plan(Some(&wf(100, 100, false)), range, (0, 0)).unwrap();
        // 366 days: train 100, then tests of 100, 100 and the last 66.
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].train, Span { from: Some(day("2020-01-01")), to: Some(day("2020-04-10") - 1) });
        assert_eq!(w[0].test.unwrap().from, Some(day("2020-04-10")));
        assert_eq!(w[1].train.from, Some(day("2020-04-10")));
        assert_eq!(w[1].test.unwrap().from, w[0].test.unwrap().to.map(|t| t + 1));
        assert_eq!(w[2].test.unwrap().to, range.to);
    }

    #[test]
    fn a_short_last_test_window_is_dropped() {
        let range = Span { from: Some(day("2020-01-01")), to: Some(day("2020-01-24") + MS_PER_DAY - 1) };
        // Train 10 days, then tests of 10: January 11-20, and 21-24 (4 days, dropped).
        let w = plan(Some(&wf(10, 10, false)), range, (0, 0)).unwrap();
        assert_eq!(w.len(), 1);
        // Half a test length (21-25) is kept.
        let range = Span { to: Some(day("2020-01-25") + MS_PER_DAY - 1), ..range };
        assert_eq!(plan(Some(&wf(10, 10, false)), range, (0, 0)).unwrap().len(), 2);
    }

    #[test]
    fn anchored_windows_all_train_from_the_start() {
        let w = plan(
            Some(&wf(10, 5, true)),
            Span { from: None, to: None },
            (day("2021-03-01") + 3_600_000, day("2021-03-25")),
        )
        .unwrap();
        assert!(w.iter().all(|w| w.train.from == Some(day("2021-03-01"))));
        assert_eq!(w.len(), 3);
        assert_eq!(w[2].train.to, Some(day("2021-03-21") - 1));
    }

    #[test]
    fn too_little_data_for_one_window_is_refused() {
        let range = Span { from: Some(day("2020-01-01")), to: Some(day("2020-01-10") + MS_PER_DAY - 1) };
        let err = plan(Some(&wf(10, 5, false)), range, (0, 0)).unwrap_err();
        assert_eq!(
            err,
            "walk-forward needs more than train-days (10) of data, and 2020-01-01 to 2020-01-10 is 10 days"
        );
    }

    #[test]
    fn stitching_compounds_windows_and_holds_cash_where_nothing_qualified() {
        let p = |ts, value| Point { ts, value };
        let a = [p(1, 100.0), p(2, 110.0)];
        let c = [p(5, 100.0), p(6, 50.0)];
        let spans = [
            Span { from: Some(1), to: Some(2) },
            Span { from: Some(3), to: Some(4) },
            Span { from: Some(5), to: Some(6) },
        ];
        let s = stitch(100.0, &[(spans[0], Some(&a[..])), (spans[1], None), (spans[2], Some(&c[..]))]);
        let values: Vec<f64> = s.iter().map(|p| p.value).collect();
        assert_eq!(values, [100.0, 110.0, 110.0, 110.0, 110.0, 55.0]);
    }
}
