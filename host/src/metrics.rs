//! Performance metrics of a run: pure functions over an equity curve and the
//! P&L of round trips. No I/O. Money that is summed stays an exact decimal;
//! ratios are `f64`. The formulas and conventions are written out in
//! `docs/metrics.md`; the tests below check them against hand-computed values.
//!
//! Fractions are fractions here (`0.1` is 10%); the summary writes them as
//! percentages (`*_pct` keys).

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Serialize, Serializer};

use crate::time::{MS_PER_DAY, Timestamp, civil_from_days, iso};

/// Days in the average Gregorian-calendar year (including leap years), which
/// turns a run's span into years.
pub const DAYS_PER_YEAR: f64 = 365.25;
const MS_PER_YEAR: f64 = DAYS_PER_YEAR * MS_PER_DAY as f64;

/// One point of an equity curve: the value at a bar's close.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: Timestamp,
    pub value: f64,
}

/// Years between two timestamps (365.25-day years).
pub fn years(first: Timestamp, last: Timestamp) -> f64 {
    (last - first) as f64 / MS_PER_YEAR
}

/// Bars per year as observed in the curve: the number of bar-to-bar returns
/// divided by the years they span. Daily crypto bars give 365.25, daily stock
/// bars about 252, hourly crypto bars 8,766. `None` for fewer than two points
/// or a zero span.
pub fn periods_per_year(points: &[Point]) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    let span = years(first.ts, last.ts);
    (points.len() >= 2 && span > 0.0).then(|| (points.len() - 1) as f64 / span)
}

/// The deepest fall from a running peak, and how long it lasted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drawdown {
    /// `1 - trough / peak`: 0.25 is a 25% fall.
    #[serde(rename = "depth_pct", serialize_with = "pct")]
    pub depth: f64,
    #[serde(serialize_with = "timestamp")]
    pub peak: Timestamp,
    #[serde(serialize_with = "timestamp")]
    pub trough: Timestamp,
    /// The first point back at the peak's value, if the curve got there.
    #[serde(serialize_with = "optional_timestamp")]
    pub recovered: Option<Timestamp>,
    /// From the peak to the recovery, or to the last point if not recovered.
    #[serde(serialize_with = "days")]
    pub duration_days: f64,
}

/// Drawdown of every point from the running peak, as fractions <= 0; the peak
/// starts at `start` (the money put in).
pub fn drawdowns(start: f64, points: &[Point]) -> Vec<f64> {
    let mut peak = start;
    points
        .iter()
        .map(|p| {
            peak = peak.max(p.value);
            p.value / peak - 1.0
        })
        .collect()
}

/// The deepest drawdown and the longest time under water (which may be
/// another episode). `None` when the curve never fell below a peak.
#[cfg(test)]
pub fn drawdown_episodes(start: f64, points: &[Point]) -> (Option<Drawdown>, Option<Drawdown>) {
    let mut curve = Curve::new(start, 0.0);
    points.iter().for_each(|p| curve.push(*p));
    curve.drawdown_episodes()
}

/// Figures of an equity curve. Optional figures are `None` (`null` in JSON)
/// when undefined: too few points, a zero span, no variation, no drawdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReturnStats {
    #[serde(serialize_with = "timestamp")]
    pub first: Timestamp,
    #[serde(serialize_with = "timestamp")]
    pub last: Timestamp,
    /// Bars per year used to annualise (see [`periods_per_year`]).
    #[serde(serialize_with = "optional_ratio")]
    pub periods_per_year: Option<f64>,
    #[serde(rename = "total_return_pct", serialize_with = "pct")]
    pub total_return: f64,
    #[serde(rename = "cagr_pct", serialize_with = "optional_pct")]
    pub cagr: Option<f64>,
    /// Annualised standard deviation of bar returns.
    #[serde(rename = "volatility_pct", serialize_with = "optional_pct")]
    pub volatility: Option<f64>,
    #[serde(serialize_with = "optional_ratio")]
    pub sharpe: Option<f64>,
    #[serde(serialize_with = "optional_ratio")]
    pub sortino: Option<f64>,
    /// 0 when the curve never fell.
    #[serde(rename = "max_drawdown_pct", serialize_with = "pct")]
    pub max_drawdown: f64,
    /// The episode of the deepest drawdown.
    pub max_drawdown_episode: Option<Drawdown>,
    /// The longest time under water, in days.
    #[serde(serialize_with = "days")]
    pub longest_drawdown_days: f64,
    #[serde(serialize_with = "optional_ratio")]
    pub calmar: Option<f64>,
}

/// An equity curve's figures, computed as its points arrive, so a run keeps
/// no per-bar history for them however long it is. Return moments use
/// Welford's method. The downside deviation compares each return with the
/// per-bar risk-free rate, which depends on the bars per year known only at
/// the end: with a non-zero rate the returns are kept for it.
#[derive(Debug, Clone)]
pub struct Curve {
    start: f64,
    keep_returns: bool,
    first: Option<Timestamp>,
    last: Timestamp,
    points: u64,
    last_value: f64,
    value_sum: f64,
    previous: Option<f64>,
    /// Returns seen, their running mean and sum of squared deviations.
    n: u64,
    mean: f64,
    m2: f64,
    /// Sum of squared negative returns (the downside at a zero risk-free rate).
    down_sq: f64,
    returns: Vec<f64>,
    peak: f64,
    peak_ts: Timestamp,
    /// The drawdown episode in progress: its deepest point so far.
    current: Option<Drawdown>,
    deepest: Option<Drawdown>,
    longest: Option<Drawdown>,
}

impl Curve {
    /// A curve that starts from `start` (the money put in, which counts as
    /// the first peak), for figures at the annual risk-free rate `risk_free`.
    pub fn new(start: f64, risk_free: f64) -> Self {
        Curve {
            start,
            keep_returns: risk_free != 0.0,
            first: None,
            last: 0,
            points: 0,
            last_value: start,
            value_sum: 0.0,
            previous: None,
            n: 0,
            mean: 0.0,
            m2: 0.0,
            down_sq: 0.0,
            returns: Vec::new(),
            peak: start,
            peak_ts: 0,
            current: None,
            deepest: None,
            longest: None,
        }
    }

    pub fn push(&mut self, p: Point) {
        if self.first.is_none() {
            self.first = Some(p.ts);
            self.peak_ts = p.ts;
        }
        self.last = p.ts;
        self.points += 1;
        self.last_value = p.value;
        self.value_sum += p.value;
        if let Some(previous) = self.previous.replace(p.value) {
            let r = p.value / previous - 1.0;
            self.n += 1;
            let delta = r - self.mean;
            self.mean += delta / self.n as f64;
            self.m2 += delta * (r - self.mean);
            self.down_sq += r.min(0.0).powi(2);
            if self.keep_returns {
                self.returns.push(r);
            }
        }
        self.track_drawdown(p);
    }

    fn track_drawdown(&mut self, p: Point) {
        if p.value >= self.peak {
            if let Some(mut episode) = self.current.take() {
                episode.recovered = Some(p.ts);
                episode.duration_days = (p.ts - episode.peak) as f64 / MS_PER_DAY as f64;
                self.close_episode(episode);
            }
            self.peak = p.value;
            self.peak_ts = p.ts;
            return;
        }
        let depth = 1.0 - p.value / self.peak;
        let episode = self.current.get_or_insert(Drawdown {
            depth,
            peak: self.peak_ts,
            trough: p.ts,
            recovered: None,
            duration_days: 0.0,
        });
        if depth > episode.depth {
            episode.depth = depth;
            episode.trough = p.ts;
        }
    }

    fn close_episode(&mut self, episode: Drawdown) {
        if self.deepest.is_none_or(|d| episode.depth > d.depth) {
            self.deepest = Some(episode);
        }
        if self.longest.is_none_or(|d| episode.duration_days > d.duration_days) {
            self.longest = Some(episode);
        }
    }

    /// Points pushed.
    pub fn points(&self) -> u64 {
        self.points
    }

    /// The latest value (the start before any point).
    #[cfg(test)]
    pub fn last_value(&self) -> f64 {
        self.last_value
    }

    /// Bars per year as observed (see [`periods_per_year`]).
    pub fn periods_per_year(&self) -> Option<f64> {
        let span = years(self.first?, self.last);
        (self.points >= 2 && span > 0.0).then(|| (self.points - 1) as f64 / span)
    }

    /// Mean of the values pushed.
    pub fn mean_value(&self) -> Option<f64> {
        (self.points > 0).then(|| self.value_sum / self.points as f64)
    }

    /// The deepest drawdown and the longest time under water so far.
    pub fn drawdown_episodes(&self) -> (Option<Drawdown>, Option<Drawdown>) {
        let mut finished = self.clone();
        if let Some(mut episode) = finished.current.take() {
            episode.duration_days = (self.last - episode.peak) as f64 / MS_PER_DAY as f64;
            finished.close_episode(episode);
        }
        (finished.deepest, finished.longest)
    }

    /// The curve's figures, annualised with `periods_per_year`.
    pub fn stats(&self, periods_per_year: Option<f64>, risk_free: f64) -> ReturnStats {
        let first = self.first.unwrap_or(0);
        let last = self.last;
        let final_value = if self.points > 0 { self.last_value } else { self.start };
        let total_return = final_value / self.start - 1.0;
        let span = years(first, last);
        let cagr = (span > 0.0 && final_value > 0.0 && self.start > 0.0)
            .then(|| (final_value / self.start).powf(1.0 / span) - 1.0);
        let annual = periods_per_year.filter(|p| *p > 0.0);
        let (mut volatility, mut sharpe, mut sortino) = (None, None, None);
        if let (Some(per_year), true) = (annual, self.n >= 2) {
            // The per-bar risk-free rate compounds to the annual one.
            let rf = (1.0 + risk_free).powf(1.0 / per_year) - 1.0;
            let n = self.n as f64;
            let std = (self.m2 / (n - 1.0)).sqrt();
            let down_sq = if self.keep_returns {
                self.returns.iter().map(|r| (r - rf).min(0.0).powi(2)).sum::<f64>()
            } else {
                self.down_sq
            };
            let downside = (down_sq / n).sqrt();
            let root = per_year.sqrt();
            volatility = Some(std * root);
            sharpe = (std > 0.0).then(|| (self.mean - rf) / std * root);
            sortino = (downside > 0.0).then(|| (self.mean - rf) / downside * root);
        }
        let (deepest, longest) = self.drawdown_episodes();
        let max_drawdown = deepest.map_or(0.0, |d| d.depth);
        ReturnStats {
            first,
            last,
            periods_per_year: annual,
            total_return,
            cagr,
            volatility,
            sharpe,
            sortino,
            max_drawdown,
            max_drawdown_episode: deepest,
            longest_drawdown_days: longest.map_or(0.0, |d| d.duration_days),
            calmar: cagr.filter(|_| max_drawdown > 0.0).map(|c| c / max_drawdown),
        }
    }
}

/// Return figures of `points`, a curve that started from `start` (the money
/// put in, which counts as the first peak). `periods_per_year` annualises;
/// `risk_free` is an annual rate (0.04 is 4%).
pub fn return_stats(
    start: f64,
    points: &[Point],
    periods_per_year: Option<f64>,
    risk_free: f64,
) -> ReturnStats {
    let mut curve = Curve::new(start, risk_free);
    points.iter().for_each(|p| curve.push(*p));
    curve.stats(periods_per_year, risk_free)
}

/// Figures of closed round trips, from their P&L net of fees.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeStats {
    pub trades: usize,
    /// Round trips with P&L > 0.
    pub wins: usize,
    /// Round trips with P&L < 0 (a round trip at exactly 0 is neither).
    pub losses: usize,
    #[serde(rename = "win_rate_pct", serialize_with = "optional_pct")]
    pub win_rate: Option<f64>,
    #[serde(serialize_with = "money")]
    pub net_pnl: Decimal,
    /// Sum of the winners' P&L.
    #[serde(serialize_with = "money")]
    pub gross_profit: Decimal,
    /// Sum of the losers' P&L (negative or zero).
    #[serde(serialize_with = "money")]
    pub gross_loss: Decimal,
    #[serde(serialize_with = "optional_money")]
    pub average_win: Option<Decimal>,
    /// Negative.
    #[serde(serialize_with = "optional_money")]
    pub average_loss: Option<Decimal>,
    /// gross profit / |gross loss|; `None` without a losing trade.
    #[serde(serialize_with = "optional_ratio")]
    pub profit_factor: Option<f64>,
    /// Average P&L per round trip: net P&L / trades.
    #[serde(serialize_with = "optional_money")]
    pub expectancy: Option<Decimal>,
}

pub fn trade_stats(pnls: impl IntoIterator<Item = Decimal>) -> TradeStats {
    let (mut trades, mut wins, mut losses) = (0usize, 0usize, 0usize);
    let (mut gross_profit, mut gross_loss, mut net_pnl) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for pnl in pnls {
        trades += 1;
        // Summed in trade order (not as profit + loss) so it matches a running
        // total of trades.csv to the last of Decimal's 28 digits.
        net_pnl += pnl;
        if pnl > Decimal::ZERO {
            wins += 1;
            gross_profit += pnl;
        } else if pnl < Decimal::ZERO {
            losses += 1;
            gross_loss += pnl;
        }
    }
    let average = |sum: Decimal, n: usize| (n > 0).then(|| sum / Decimal::from(n));
    TradeStats {
        trades,
        wins,
        losses,
        win_rate: (trades > 0).then(|| wins as f64 / trades as f64),
        net_pnl,
        gross_profit,
        gross_loss,
        average_win: average(gross_profit, wins),
        average_loss: average(gross_loss, losses),
        profit_factor: (losses > 0).then(|| ratio(gross_profit, -gross_loss)).flatten(),
        expectancy: average(net_pnl, trades),
    }
}

/// `a / b` as a float, `None` when `b` is zero.
pub fn ratio(a: Decimal, b: Decimal) -> Option<f64> {
    if b.is_zero() {
        return None;
    }
    (a / b).to_f64()
}

/// Mean of the curve's values; `None` for an empty curve.
pub fn mean_value(points: &[Point]) -> Option<f64> {
    (!points.is_empty()).then(|| points.iter().map(|p| p.value).sum::<f64>() / points.len() as f64)
}

/// Times the capital was traded: traded notional / mean equity.
pub fn turnover(traded_notional: Decimal, mean_equity: Option<f64>) -> Option<f64> {
    let mean = mean_equity.filter(|m| *m > 0.0)?;
    Some(traded_notional.to_f64()? / mean)
}

/// The return of one calendar month (UTC) or one year (`month` 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PeriodReturn {
    pub year: i64,
    pub month: u32,
    #[serde(rename = "return_pct", serialize_with = "pct")]
    pub value: f64,
}

/// Month by month: the last value of a month over the last value of the
/// previous month that has points (or `start` for the first month), minus 1.
pub fn monthly_returns(start: f64, points: &[Point]) -> Vec<PeriodReturn> {
    period_returns(start, points, |(y, m)| (y, m))
}

/// Year by year (calendar years, UTC), like [`monthly_returns`].
pub fn yearly_returns(start: f64, points: &[Point]) -> Vec<PeriodReturn> {
    period_returns(start, points, |(y, _)| (y, 0))
}

fn period_returns(start: f64, points: &[Point], key: fn((i64, u32)) -> (i64, u32)) -> Vec<PeriodReturn> {
    let mut out = Vec::new();
    let mut base = start;
    let mut current: Option<((i64, u32), f64)> = None;
    for p in points {
        let (y, m, _) = civil_from_days(p.ts.div_euclid(MS_PER_DAY));
        let k = key((y, m));
        match current {
            Some((ck, _)) if ck == k => current = Some((k, p.value)),
            Some(((year, month), last)) => {
                out.push(PeriodReturn { year, month, value: last / base - 1.0 });
                base = last;
                current = Some((k, p.value));
            }
            None => current = Some((k, p.value)),
        }
    }
    if let Some(((year, month), last)) = current {
        out.push(PeriodReturn { year, month, value: last / base - 1.0 });
    }
    out
}

// How figures are written to JSON: percentages and ratios rounded to 4
// decimal places, days to 2, money as exact decimal strings, non-finite
// numbers as null.

fn round(v: f64, places: i32) -> Option<f64> {
    let scale = 10f64.powi(places);
    v.is_finite().then(|| (v * scale).round() / scale)
}

fn pct<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    round(v * 100.0, 4).serialize(s)
}

pub fn optional_pct<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    v.and_then(|v| round(v * 100.0, 4)).serialize(s)
}

pub fn optional_ratio<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    v.and_then(|v| round(v, 4)).serialize(s)
}

fn days<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    round(*v, 2).serialize(s)
}

fn timestamp<S: Serializer>(v: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso(*v))
}

fn optional_timestamp<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    v.map(iso).serialize(s)
}

/// Sums of money stay exact.
pub fn money<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.normalize().to_string())
}

/// Averages, which divide, keep 8 decimal places.
fn optional_money<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    v.map(|d| d.round_dp(8).normalize().to_string()).serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    macro_rules! assert_close {
        ($got:expr, $want:expr) => {{
            let (got, want): (f64, f64) = ($got, $want);
            assert!(close(got, want), "{} = {got}, want {want}", stringify!($got));
        }};
    }

    const DAY: i64 = MS_PER_DAY;
    const YEAR: i64 = 36_525 * MS_PER_DAY / 100;

    fn curve(spacing: i64, values: &[f64]) -> Vec<Point> {
        values.iter().enumerate().map(|(i, &value)| Point { ts: i as i64 * spacing, value }).collect()
    }

    /// 100 -> 110 -> 99 -> 108.9: returns +10%, -10%, +10%, one point per year.
    /// mean = 1/30; sample variance = (0.0667^2 + 0.1333^2 + 0.0667^2) / 2 = 0.04/3,
    /// so std = 0.2/sqrt(3) = 0.11547; downside deviation = sqrt(0.01 / 3) = 0.1/sqrt(3).
    #[test]
    fn yearly_curve_by_hand() {
        let points = curve(YEAR, &[100.0, 110.0, 99.0, 108.9]);
        let p = periods_per_year(&points).unwrap();
        assert_close!(p, 1.0);
        let s = return_stats(100.0, &points, Some(p), 0.0);
        assert_close!(s.total_return, 0.089);
        // 1.089^(1/3) - 1
        assert_close!(s.cagr.unwrap(), 1.089f64.cbrt() - 1.0);
        assert_close!(s.volatility.unwrap(), 0.2 / 3f64.sqrt());
        // (1/30) / (0.2/sqrt 3) = sqrt(3)/6
        assert_close!(s.sharpe.unwrap(), 3f64.sqrt() / 6.0);
        // (1/30) / (0.1/sqrt 3) = sqrt(3)/3
        assert_close!(s.sortino.unwrap(), 3f64.sqrt() / 3.0);
        // Peak 110 (year 1), trough 99 (year 2): 10%, not recovered by 108.9.
        assert_close!(s.max_drawdown, 0.1);
        let dd = s.max_drawdown_episode.unwrap();
        assert_eq!((dd.peak, dd.trough, dd.recovered), (YEAR, 2 * YEAR, None));
        assert_close!(dd.duration_days, 2.0 * 365.25);
        assert_close!(s.longest_drawdown_days, 730.5);
        assert_close!(s.calmar.unwrap(), (1.089f64.cbrt() - 1.0) / 0.1);
    }

    /// The same returns one day apart: 3 returns in 3/365.25 years is 365.25 a year.
    /// volatility = 0.11547 * sqrt(365.25) = 2.20681, Sharpe = sqrt(3)/6 * 19.1116 = 5.51702.
    #[test]
    fn daily_curve_annualises_with_the_observed_bar_count() {
        let points = curve(DAY, &[100.0, 110.0, 99.0, 108.9]);
        let p = periods_per_year(&points).unwrap();
        assert_close!(p, 365.25);
        let s = return_stats(100.0, &points, Some(p), 0.0);
        assert!((s.volatility.unwrap() - 2.206_807_649).abs() < 1e-8);
        assert!((s.sharpe.unwrap() - 5.517_019_123).abs() < 1e-8);
        assert!((s.sortino.unwrap() - 11.034_038_245).abs() < 1e-8);
        assert_close!(s.longest_drawdown_days, 2.0);
    }

    /// With a 4% risk-free rate and one bar a year, the per-bar rate is 4%:
    /// Sharpe = (1/30 - 0.04) / 0.11547 = -0.057735; the downside of
    /// (0.06, -0.14, 0.06) is sqrt(0.0196 / 3), so Sortino = -0.0066667 / 0.0808290.
    #[test]
    fn risk_free_rate_is_subtracted() {
        let points = curve(YEAR, &[100.0, 110.0, 99.0, 108.9]);
        let s = return_stats(100.0, &points, Some(1.0), 0.04);
        assert_close!(s.sharpe.unwrap(), (1.0 / 30.0 - 0.04) / (0.2 / 3f64.sqrt()));
        assert_close!(s.sortino.unwrap(), (1.0 / 30.0 - 0.04) / (0.0196f64 / 3.0).sqrt());
    }

    /// 100, 120, 90, 96, 130, 125: the 25% fall from 120 recovers at 130 (3
    /// days later); the later fall to 125 is 3.85% and still open at the end.
    #[test]
    fn drawdown_episodes_by_hand() {
        let points = curve(DAY, &[100.0, 120.0, 90.0, 96.0, 130.0, 125.0]);
        let (deepest, longest) = drawdown_episodes(100.0, &points);
        let deepest = deepest.unwrap();
        assert_close!(deepest.depth, 0.25);
        assert_eq!((deepest.peak, deepest.trough, deepest.recovered), (DAY, 2 * DAY, Some(4 * DAY)));
        assert_close!(deepest.duration_days, 3.0);
        assert_close!(longest.unwrap().duration_days, 3.0);
        let dd = drawdowns(100.0, &points);
        assert_close!(dd[2], -0.25);
        assert_close!(dd[5], 125.0 / 130.0 - 1.0);
        // Starting below the start cash is a drawdown from the start.
        let (deepest, _) = drawdown_episodes(100.0, &curve(DAY, &[95.0, 100.0]));
        assert_close!(deepest.unwrap().depth, 0.05);
    }

    #[test]
    fn flat_and_short_curves_have_no_ratios() {
        let s = return_stats(100.0, &curve(DAY, &[100.0, 100.0, 100.0]), Some(365.25), 0.0);
        assert_eq!((s.sharpe, s.sortino, s.calmar), (None, None, None));
        assert_eq!(s.volatility, Some(0.0));
        assert_eq!(s.max_drawdown, 0.0);
        let one = curve(DAY, &[100.0]);
        assert_eq!(periods_per_year(&one), None);
        let s = return_stats(100.0, &one, None, 0.0);
        assert_eq!((s.cagr, s.volatility), (None, None));
    }

    /// P&L 100, -50, 30, -20, 0: 2 wins of 5, profit factor 130/70, expectancy 60/5.
    #[test]
    fn trade_stats_by_hand() {
        let t = trade_stats(["100", "-50", "30", "-20", "0"].map(d));
        assert_eq!((t.trades, t.wins, t.losses), (5, 2, 2));
        assert_close!(t.win_rate.unwrap(), 0.4);
        assert_eq!(t.gross_profit, d("130"));
        assert_eq!(t.gross_loss, d("-70"));
        assert_eq!(t.net_pnl, d("60"));
        assert_eq!(t.average_win, Some(d("65")));
        assert_eq!(t.average_loss, Some(d("-35")));
        assert_close!(t.profit_factor.unwrap(), 130.0 / 70.0);
        assert_eq!(t.expectancy, Some(d("12")));
        let none = trade_stats([]);
        assert_eq!((none.win_rate, none.profit_factor, none.expectancy), (None, None, None));
        assert_eq!(trade_stats([d("5")]).profit_factor, None);
    }

    #[test]
    fn turnover_is_traded_notional_over_mean_equity() {
        let points = curve(DAY, &[100.0, 120.0, 110.0]);
        assert_close!(mean_value(&points).unwrap(), 110.0);
        assert_close!(turnover(d("330"), mean_value(&points)).unwrap(), 3.0);
        assert_eq!(turnover(d("330"), None), None);
    }

    /// Jan 31: 110, Feb 1: 99, Feb 28: 121, Mar 1: 133.1 (start 100):
    /// January +10%, February 121/110 = +10%, March 133.1/121 = +10%.
    #[test]
    fn monthly_and_yearly_returns_chain_from_month_end_to_month_end() {
        let jan31 = crate::time::parse_date("2024-01-31").unwrap();
        let points = [
            Point { ts: jan31 - DAY, value: 105.0 },
            Point { ts: jan31, value: 110.0 },
            Point { ts: jan31 + DAY, value: 99.0 },
            Point { ts: jan31 + 29 * DAY, value: 121.0 },
            Point { ts: jan31 + 30 * DAY, value: 133.1 },
        ];
        let months = monthly_returns(100.0, &points);
        assert_eq!(
            months.iter().map(|m| (m.year, m.month)).collect::<Vec<_>>(),
            [(2024, 1), (2024, 2), (2024, 3)]
        );
        for m in &months {
            assert_close!(m.value, 0.1);
        }
        let years = yearly_returns(100.0, &points);
        assert_eq!(years.len(), 1);
        assert_close!(years[0].value, 0.331);
    }
}
