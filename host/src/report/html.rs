//! `report.html`: one self-contained page a trader can read at a glance.
//!
//! Everything is inline (CSS, a small script, SVG charts drawn here), so the
//! file opens offline and fetches nothing. The page is a pure function of the
//! run: the same run gives the same bytes, except the timing line in the
//! footer (`<p id="timing">`). Long runs are downsampled to at most
//! [`MAX_CHART_POINTS`] points per chart, keeping every bucket's extremes, so
//! peaks, troughs and the deepest drawdown stay visible.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::series::Series;
use super::summary::{Metrics, Summary};
use crate::metrics::{self, Point, ReturnStats};
use crate::portfolio::RoundTrip;
use crate::time::{MS_PER_DAY, civil_from_days, date, days_from_civil};

/// Charts embed at most this many points per line.
pub const MAX_CHART_POINTS: usize = 2_000;
/// The trades table lists at most this many rows (the first and last halves).
const MAX_TRADE_ROWS: usize = 1_000;

pub(crate) const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

pub(crate) const STRATEGY_COLOR: &str = "#1f6feb";
pub(crate) const BENCHMARK_COLOR: &str = "#9a6700";

/// Renders the report of a run.
pub fn render(summary: &Summary, series: &Series, trips: &[RoundTrip]) -> String {
    let m = &summary.metrics;
    let mut out = String::with_capacity(256 * 1024);
    let symbols = summary.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let title = format!("Backtest of {symbols}");
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>",
        esc(&title)
    );
    header(&mut out, summary, &title);
    headline(&mut out, summary, m);
    charts(&mut out, series);
    monthly_table(&mut out, series);
    symbol_table(&mut out, m);
    trades_table(&mut out, trips);
    inputs(&mut out, summary);
    let t = &summary.timing;
    let _ = writeln!(
        out,
        "<footer>\n<p>Written by host {} (interface {}). Formulas: docs/metrics.md.</p>\n\
         <p id=\"timing\">timing: load {:.0} ms, run {:.0} ms, {:.0} bars/s</p>\n</footer>\n</main>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>",
        esc(summary.host_version),
        esc(summary.interface_version),
        t.load_ms,
        t.run_ms,
        t.bars_per_second
    );
    out
}

fn header(out: &mut String, s: &Summary, title: &str) {
    let span = match (&s.first_bar, &s.last_bar) {
        (Some(a), Some(b)) => format!("{} to {}", &a[..10], &b[..10]),
        _ => "no bars".into(),
    };
    let _ = writeln!(
        out,
        "<header>\n<h1>{}</h1>\n<p class=\"sub\">{} &middot; {} bars &middot; start cash {} &middot; final equity {} \
         &middot; {}</p>",
        esc(title),
        esc(&span),
        group_int(s.bars),
        money_text(&s.start_cash),
        money_text(&s.final_equity),
        esc(&s.execution.fill_model),
    );
    if s.synthetic_data {
        out.push_str("<p class=\"banner warn\">SYNTHETIC DATA: these bars were generated, not recorded from a market.</p>\n");
    }
    if let Some(error) = &s.error {
        let _ = writeln!(
            out,
            "<p class=\"banner fail\">The run failed: {}. The figures cover the bars before the failure.</p>",
            esc(error)
        );
    }
    out.push_str("</header>\n");
}

fn headline(out: &mut String, s: &Summary, m: &Metrics) {
    let p = &m.portfolio;
    let b = &m.benchmark;
    out.push_str("<section class=\"tiles\" id=\"headline\">\n");
    let tile = |out: &mut String, name: &str, value: String, bench: Option<String>, class: &str| {
        let _ = write!(
            out,
            "<div class=\"tile\"><div class=\"name\">{name}</div><div class=\"value {class}\">{value}</div>"
        );
        if let Some(bench) = bench {
            let _ = write!(out, "<div class=\"bench\">buy &amp; hold {bench}</div>");
        }
        out.push_str("</div>\n");
    };
    let r = &p.returns;
    tile(out, "Total return", pct(r.total_return), Some(pct(b.total_return)), sign(r.total_return));
    tile(out, "CAGR", opt_pct(r.cagr), Some(opt_pct(b.cagr)), sign(r.cagr.unwrap_or(0.0)));
    tile(out, "Max drawdown", pct(-r.max_drawdown), Some(pct(-b.max_drawdown)), "neg");
    tile(out, "Sharpe", opt_num(r.sharpe), Some(opt_num(b.sharpe)), "");
    tile(out, "Sortino", opt_num(r.sortino), Some(opt_num(b.sortino)), "");
    tile(out, "Calmar", opt_num(r.calmar), Some(opt_num(b.calmar)), "");
    tile(out, "Volatility", opt_pct(r.volatility), Some(opt_pct(b.volatility)), "");
    tile(out, "Trades", group_int(p.trades.trades as u64), None, "");
    tile(out, "Win rate", opt_pct(p.trades.win_rate), None, "");
    tile(out, "Profit factor", opt_num(p.trades.profit_factor), None, "");
    tile(out, "Exposure", opt_pct(p.activity.exposure), None, "");
    tile(out, "Fees paid", money_text(&p.activity.fees_paid.to_string()), None, "");
    let e = &s.exposure;
    let times = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
    tile(out, "Max leverage", times(e.max_leverage), None, "");
    tile(out, "Avg leverage", times(e.average_leverage), None, "");
    tile(out, "Borrow cost", money_text(&s.borrow_paid), None, "");
    out.push_str("</section>\n");
    leverage_note(out, s);
    refusals(out, s);
    let dd = r.max_drawdown_episode.map_or_else(
        || "The strategy never fell below a previous peak.".to_owned(),
        |d| {
            let recovered = d.recovered.map_or_else(|| "not recovered by the end".into(), |t| format!("recovered {}", date(t)));
            format!(
                "Deepest drawdown {} from the peak of {} to {}, {recovered} ({:.0} days). Longest time under water {:.0} days.",
                pct(-d.depth),
                date(d.peak),
                date(d.trough),
                d.duration_days,
                r.longest_drawdown_days
            )
        },
    );
    let _ = writeln!(
        out,
        "<p class=\"note\">{} Average win {}, average loss {}, expectancy {} per trade; turnover {}x; \
         {} round trips, {} still open. Bars per year {} (inferred), risk-free rate {}%.</p>",
        esc(&dd),
        opt_money(p.trades.average_win),
        opt_money(p.trades.average_loss),
        opt_money(p.trades.expectancy),
        opt_num(p.activity.turnover),
        s.trade_count,
        s.open_positions.len(),
        opt_num(m.conventions.periods_per_year),
        trim_float(m.conventions.risk_free_rate)
    );
}

fn charts(out: &mut String, series: &Series) {
    let start = series.start_cash_f64();
    let equity = &series.portfolio;
    if equity.is_empty() {
        out.push_str("<section>\n<h2>Equity</h2>\n<p class=\"note\">No bar was processed: nothing to chart.</p>\n</section>\n");
        out.push_str("<script type=\"application/json\" id=\"chart-data\">{\"day\":[],\"ms\":[],\"eq\":[],\"bh\":[],\"dde\":[],\"ddb\":[]}</script>\n");
        return;
    }
    let bench = &series.benchmark;
    let dd_equity = metrics::drawdowns(start, equity);
    let dd_bench = metrics::drawdowns(start, bench);
    let values: Vec<Vec<f64>> = vec![
        equity.iter().map(|p| p.value).collect(),
        bench.iter().map(|p| p.value).collect(),
        dd_equity.clone(),
        dd_bench.clone(),
    ];
    let keep = downsample(&values, MAX_CHART_POINTS);
    let pick =
        |v: &[f64]| -> Vec<Point> { keep.iter().map(|&i| Point { ts: equity[i].ts, value: v[i] }).collect() };
    let eq = pick(&values[0]);
    let bh = pick(&values[1]);
    let dde = pick(&dd_equity);
    let ddb = pick(&dd_bench);

    out.push_str("<section>\n<h2>Equity against buy and hold</h2>\n");
    legend(out);
    let positive = eq.iter().chain(&bh).all(|p| p.value > 0.0);
    let (lo, hi) = extent(eq.iter().chain(&bh).map(|p| p.value));
    let log = positive && lo > 0.0 && hi / lo > 20.0;
    if log {
        out.push_str("<p class=\"note\">Logarithmic scale: equal heights are equal percentage moves.</p>\n");
    }
    let chart = Chart { id: "equity-chart", height: 320.0, log, percent: false };
    chart.draw(out, &[(&eq, STRATEGY_COLOR, "strategy"), (&bh, BENCHMARK_COLOR, "buy-and-hold")]);
    out.push_str("</section>\n<section>\n<h2>Drawdown from the running peak</h2>\n");
    legend(out);
    let chart = Chart { id: "drawdown-chart", height: 200.0, log: false, percent: true };
    chart.draw(out, &[(&dde, STRATEGY_COLOR, "strategy"), (&ddb, BENCHMARK_COLOR, "buy-and-hold")]);
    out.push_str("</section>\n");

    // What the hover readout shows: day number, equity, benchmark, drawdowns.
    let mut data = String::from("{\"day\":[");
    join_into(&mut data, eq.iter().map(|p| p.ts.div_euclid(MS_PER_DAY).to_string()));
    data.push_str("],\"ms\":[");
    join_into(&mut data, eq.iter().map(|p| p.ts.rem_euclid(MS_PER_DAY).to_string()));
    for (key, points, scale) in
        [("eq", &eq, 1.0), ("bh", &bh, 1.0), ("dde", &dde, 100.0), ("ddb", &ddb, 100.0)]
    {
        let _ = write!(data, "],\"{key}\":[");
        join_into(&mut data, points.iter().map(|p| compact(p.value * scale)));
    }
    data.push_str("]}");
    let _ = writeln!(out, "<script type=\"application/json\" id=\"chart-data\">{data}</script>");
}

fn legend(out: &mut String) {
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span style=\"background:{STRATEGY_COLOR}\"></span>strategy \
         <span style=\"background:{BENCHMARK_COLOR}\"></span>buy and hold (equal weights, from the first close)</p>"
    );
}

/// Indices of the points to draw: all of them when there are few, otherwise
/// per bucket of consecutive points the first, the last, and the minimum and
/// maximum of every series, so no extreme is lost.
pub fn downsample(series: &[Vec<f64>], max_points: usize) -> Vec<usize> {
    let n = series.first().map_or(0, Vec::len);
    if n <= max_points {
        return (0..n).collect();
    }
    let per_bucket = 2 + 2 * series.len();
    let buckets = (max_points / per_bucket).max(1);
    let mut keep = Vec::with_capacity(buckets * per_bucket);
    for b in 0..buckets {
        let (from, to) = (b * n / buckets, (b + 1) * n / buckets);
        if from >= to {
            continue;
        }
        keep.push(from);
        keep.push(to - 1);
        for values in series {
            let slice = &values[from..to];
            let (mut lo, mut hi) = (0, 0);
            for (i, v) in slice.iter().enumerate() {
                if *v < slice[lo] {
                    lo = i;
                }
                if *v > slice[hi] {
                    hi = i;
                }
            }
            keep.push(from + lo);
            keep.push(from + hi);
        }
    }
    keep.sort_unstable();
    keep.dedup();
    keep
}

/// An SVG line chart over time.
pub(crate) struct Chart {
    pub(crate) id: &'static str,
    pub(crate) height: f64,
    pub(crate) log: bool,
    /// Values are fractions shown as percentages.
    pub(crate) percent: bool,
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

impl Chart {
    pub(crate) fn draw(&self, out: &mut String, lines: &[(&Vec<Point>, &str, &str)]) {
        let all = || lines.iter().flat_map(|(points, ..)| points.iter());
        let (t0, t1) = extent(all().map(|p| p.ts as f64));
        let (mut lo, mut hi) = extent(all().map(|p| p.value));
        if self.percent {
            hi = hi.max(0.0);
        }
        if lo == hi {
            (lo, hi) = (lo - 1.0, hi + 1.0);
        }
        let y_of = |v: f64| if self.log { v.log10() } else { v };
        let (ylo, yhi) = (y_of(lo), y_of(hi));
        let plot_h = self.height - TOP - BOTTOM;
        let x = |t: f64| LEFT + if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.5 } * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| TOP + (1.0 - (y_of(v) - ylo) / (yhi - ylo)) * plot_h;
        let _ = writeln!(
            out,
            "<div class=\"chart-wrap\"><svg class=\"chart\" id=\"{}\" viewBox=\"0 0 {WIDTH} {}\" \
             preserveAspectRatio=\"none\" role=\"img\" data-t0=\"{t0}\" data-t1=\"{t1}\" data-left=\"{LEFT}\" \
             data-right=\"{RIGHT}\">",
            self.id, self.height
        );
        // Grid and value labels.
        for v in value_ticks(lo, hi, self.log) {
            let yy = y(v);
            let label = if self.percent { format!("{:.0}%", v * 100.0) } else { compact_money(v) };
            let _ = writeln!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                yy + 4.0
            );
        }
        for (t, label) in time_ticks(t0 as i64, t1 as i64) {
            let xx = x(t as f64);
            let _ = writeln!(
                out,
                "<line class=\"grid\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
                 <text class=\"tick\" x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
                TOP + plot_h,
                self.height - 8.0
            );
        }
        if !self.log && lo < 0.0 && hi > 0.0 || self.percent {
            let yy = y(0.0);
            let _ = writeln!(
                out,
                "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>",
                WIDTH - RIGHT
            );
        }
        // Benchmark first, so the strategy draws on top.
        for (points, color, name) in lines.iter().rev() {
            if points.is_empty() {
                continue;
            }
            let mut d = String::with_capacity(points.len() * 14);
            for (i, p) in points.iter().enumerate() {
                let _ =
                    write!(d, "{}{:.1} {:.1}", if i == 0 { "M" } else { "L" }, x(p.ts as f64), y(p.value));
            }
            let _ = writeln!(
                out,
                "<path class=\"line\" data-series=\"{name}\" d=\"{d}\" stroke=\"{color}\" fill=\"none\" \
                 stroke-width=\"1.5\" vector-effect=\"non-scaling-stroke\"/>"
            );
        }
        let _ = writeln!(
            out,
            "<line class=\"cursor\" x1=\"0\" x2=\"0\" y1=\"{TOP}\" y2=\"{:.1}\" visibility=\"hidden\"/>\n</svg>\
             <div class=\"readout\" hidden></div></div>",
            TOP + plot_h
        );
    }
}

pub(crate) fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// About five round values across [lo, hi]; on a log scale, 1-2-5 steps per decade.
fn value_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return Vec::new();
    }
    if log {
        let mut ticks = Vec::new();
        let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let steps: &[f64] = if d1 - d0 > 4 { &[1.0] } else { &[1.0, 2.0, 5.0] };
        for decade in d0..=d1 {
            for s in steps {
                let v = s * 10f64.powi(decade);
                if v >= lo && v <= hi {
                    ticks.push(v);
                }
            }
        }
        return ticks;
    }
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    // Multiples of the step, computed (not accumulated) so 0 is exactly 0.
    let first = (lo / step - 1e-9).ceil() as i64;
    (first..first + 12).map(|k| k as f64 * step).take_while(|v| *v <= hi + step * 1e-9).collect()
}

/// Year starts when the span is long, month starts when it is shorter, days otherwise.
fn time_ticks(t0: i64, t1: i64) -> Vec<(i64, String)> {
    let (y0, m0, _) = civil_from_days(t0.div_euclid(MS_PER_DAY));
    let (y1, _, _) = civil_from_days(t1.div_euclid(MS_PER_DAY));
    let span_days = (t1 - t0) / MS_PER_DAY;
    let mut ticks = Vec::new();
    if span_days > 3 * 365 {
        let step = ((y1 - y0) / 10 + 1).max(1);
        for y in (y0 + 1..=y1).filter(|y| (y - y0 - 1) % step == 0) {
            ticks.push((days_from_civil(y, 1, 1) * MS_PER_DAY, y.to_string()));
        }
    } else if span_days > 60 {
        let months = (y1 - y0) * 12 + 12;
        let step = (span_days / 30 / 10 + 1).max(1);
        for i in 1..=months {
            let (y, m) = (y0 + (m0 as i64 - 1 + i) / 12, ((m0 as i64 - 1 + i) % 12 + 1) as u32);
            if i % step != 0 {
                continue;
            }
            let t = days_from_civil(y, m, 1) * MS_PER_DAY;
            if t > t1 {
                break;
            }
            ticks.push((t, format!("{y}-{m:02}")));
        }
    } else {
        let step = (span_days / 10 + 1).max(1);
        let mut day = t0.div_euclid(MS_PER_DAY) + 1;
        while day * MS_PER_DAY <= t1 {
            ticks.push((day * MS_PER_DAY, date(day * MS_PER_DAY)[5..].to_owned()));
            day += step;
        }
    }
    ticks.retain(|(t, _)| *t >= t0 && *t <= t1);
    ticks
}

fn monthly_table(out: &mut String, series: &Series) {
    let start = series.start_cash_f64();
    let months = metrics::monthly_returns(start, &series.portfolio);
    let years = metrics::yearly_returns(start, &series.portfolio);
    let bench_years = metrics::yearly_returns(start, &series.benchmark);
    out.push_str("<section>\n<h2>Monthly returns</h2>\n<div class=\"scroll\"><table class=\"months\" id=\"monthly-returns\">\n<thead><tr><th>year</th>");
    for name in ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"] {
        let _ = write!(out, "<th>{name}</th>");
    }
    out.push_str("<th>year</th><th>buy &amp; hold</th></tr></thead>\n<tbody>\n");
    for year in &years {
        let _ = write!(out, "<tr><th>{}</th>", year.year);
        for month in 1..=12 {
            match months.iter().find(|m| m.year == year.year && m.month == month) {
                Some(m) => {
                    let _ = write!(out, "<td style=\"{}\">{}</td>", heat(m.value), pct1(m.value));
                }
                None => out.push_str("<td></td>"),
            }
        }
        let bench = bench_years.iter().find(|b| b.year == year.year).map_or(String::new(), |b| pct1(b.value));
        let _ = writeln!(
            out,
            "<td class=\"total\" style=\"{}\">{}</td><td class=\"bench\">{bench}</td></tr>",
            heat(year.value),
            pct1(year.value)
        );
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

/// A cell colour: green for gains, red for losses, stronger with size (full at 20%).
fn heat(r: f64) -> String {
    let strength = (r.abs() / 0.2).min(1.0);
    let alpha = 0.08 + 0.5 * strength;
    if r >= 0.0 {
        format!("background:rgba(26,127,55,{alpha:.2})")
    } else {
        format!("background:rgba(207,34,46,{alpha:.2})")
    }
}

fn symbol_table(out: &mut String, m: &Metrics) {
    out.push_str(
        "<section>\n<h2>By symbol</h2>\n<p class=\"note\">Each symbol as a sleeve of start cash / N with its own fills, \
         fees and position; buy and hold with the same stake.</p>\n<div class=\"scroll\"><table id=\"per-symbol\">\n\
         <thead><tr><th>symbol</th><th>bars</th><th>stake</th><th>return</th><th>CAGR</th><th>max DD</th><th>Sharpe</th>\
         <th>trades</th><th>win rate</th><th>profit factor</th><th>net P&amp;L</th><th>exposure</th><th>fees</th>\
         <th>buy &amp; hold</th><th>B&amp;H max DD</th></tr></thead>\n<tbody>\n",
    );
    for s in &m.symbols {
        let r: &ReturnStats = &s.returns;
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(s.symbol.as_str()),
            group_int(s.bars),
            money_text(&s.allocation.to_string()),
            sign(r.total_return),
            pct(r.total_return),
            opt_pct(r.cagr),
            pct(-r.max_drawdown),
            opt_num(r.sharpe),
            s.trades.trades,
            opt_pct(s.trades.win_rate),
            opt_num(s.trades.profit_factor),
            money_text(&s.trades.net_pnl.to_string()),
            opt_pct(s.activity.exposure),
            money_text(&s.activity.fees_paid.to_string()),
            pct(s.benchmark.total_return),
            pct(-s.benchmark.max_drawdown),
        );
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

fn trades_table(out: &mut String, trips: &[RoundTrip]) {
    let _ = writeln!(
        out,
        "<section>\n<h2>Trades</h2>\n<p class=\"note\">{} round trips (all of them in trades.csv). Prices are volume-weighted \
         fill prices; P&amp;L is net of fees.</p>\n<div class=\"scroll tall\"><table id=\"trades\">\n<thead><tr><th>#</th>\
         <th>symbol</th><th>side</th><th>entry</th><th>entry price</th><th>exit</th><th>exit price</th><th>quantity</th>\
         <th>fees</th><th>P&amp;L</th><th>return</th></tr></thead>\n<tbody>",
        group_int(trips.len() as u64)
    );
    let half = MAX_TRADE_ROWS / 2;
    for (i, t) in trips.iter().enumerate() {
        if trips.len() > MAX_TRADE_ROWS && i == half {
            let _ = writeln!(
                out,
                "<tr><td colspan=\"11\" class=\"gap\">{} more round trips: see trades.csv</td></tr>",
                group_int((trips.len() - MAX_TRADE_ROWS) as u64)
            );
        }
        if trips.len() > MAX_TRADE_ROWS && i >= half && i < trips.len() - half {
            continue;
        }
        let invested = t.entry_price * t.quantity;
        let ret = metrics::ratio(t.pnl, invested).unwrap_or(0.0);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"{}\">{}</td><td class=\"{}\">{}</td></tr>",
            i + 1,
            esc(t.symbol.as_str()),
            t.direction.as_str(),
            date_or_time(t.entry_ts),
            price_text(t.entry_price),
            date_or_time(t.exit_ts),
            price_text(t.exit_price),
            t.quantity.normalize(),
            money_text(&t.fees.to_string()),
            sign_decimal(t.pnl),
            money_text(&t.pnl.to_string()),
            sign(ret),
            pct(ret),
        );
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

/// What the account borrowed, in words, under the tiles.
fn leverage_note(out: &mut String, s: &Summary) {
    let e = &s.exposure;
    let account = match e.account {
        crate::account::AccountType::Cash => {
            "Cash account: no borrowing, entries refused above 1x equity at the signal bar's close".to_owned()
        }
        crate::account::AccountType::Margin => format!(
            "Margin account: up to {}x equity, interest on negative cash ({} paid)",
            trim_float(e.max_leverage_allowed),
            money_text(&s.margin_interest)
        ),
    };
    let _ = writeln!(
        out,
        "<p class=\"note\" id=\"leverage\">{}. Leverage (gross position value / equity at each close): max {}{}, \
         average {}. Lowest cash {}{}.</p>",
        esc(&account),
        e.max_leverage.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}x")),
        e.max_leverage_at.as_deref().map(|t| format!(" on {}", esc(t))).unwrap_or_default(),
        e.average_leverage.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}x")),
        e.min_cash.as_deref().map_or_else(|| "-".to_owned(), money_text),
        e.min_cash_at.as_deref().map(|t| format!(" on {}", esc(t))).unwrap_or_default(),
    );
}

/// The risk gate's refusals by rule, with an example each: limits that bind
/// must be visible where the result is read.
fn refusals(out: &mut String, s: &Summary) {
    let r = &s.risk_refusals;
    if r.total == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "<section id=\"refusals\">\n<p class=\"banner warn\">The risk gate refused {} entries (each is in orders.csv).</p>\n\
         <table>\n<thead><tr><th>rule</th><th>refused</th><th>first example</th></tr></thead>\n<tbody>",
        group_int(r.total)
    );
    for (rule, refused) in &r.by_rule {
        let example = refused
            .example
            .as_ref()
            .map_or_else(String::new, |e| format!("{} at {}: {}", e.symbol, e.at, e.detail));
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            esc(rule),
            group_int(refused.count),
            esc(&example)
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn inputs(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"inputs\">\n<h2>Inputs</h2>\n<table class=\"kv\">\n");
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    row(out, "mode", s.mode);
    row(out, "symbols", &s.symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
    row(
        out,
        "requested range",
        &format!("{} to {}", s.from.as_deref().unwrap_or("the start"), s.to.as_deref().unwrap_or("the end")),
    );
    row(
        out,
        "bars used",
        &format!("{} to {}", s.first_bar.as_deref().unwrap_or("-"), s.last_bar.as_deref().unwrap_or("-")),
    );
    row(out, "start cash", &s.start_cash);
    row(out, "fill rule", &s.execution.fill_model);
    let settings =
        s.execution.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
    row(out, "execution settings", &settings);
    for d in &s.data {
        let source = d.source.as_ref().map_or("-".to_owned(), |src| {
            format!("{}{}", src.description, if src.synthetic { " (SYNTHETIC)" } else { "" })
        });
        row(out, &format!("data: {}", d.symbol), &source);
    }
    row(out, "config file", &s.config_file);
    out.push_str("</table>\n<h3>Components</h3>\n<div class=\"scroll\"><table id=\"components\">\n<thead><tr><th>slice</th><th>plugin</th>\
         <th>sha256</th><th>grants</th><th>limits</th><th>settings</th><th>path</th></tr></thead>\n<tbody>\n");
    for (kind, slice) in &s.slices {
        let grants = if slice.grants.read_dirs.is_empty() {
            "none".to_owned()
        } else {
            slice
                .grants
                .read_dirs
                .iter()
                .map(|(guest, host)| format!("read {guest} = {}", host.display()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let limits = format!("{} ms per call, {} MiB", slice.limits.deadline_ms, slice.limits.memory_mib);
        let settings =
            slice.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{} {}</td><td class=\"hash\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"path\">{}</td></tr>",
            esc(kind),
            esc(&slice.name),
            esc(&slice.version),
            esc(&slice.sha256),
            esc(&grants),
            esc(&limits),
            esc(&settings),
            esc(&slice.path)
        );
    }
    out.push_str("</tbody></table></div>\n<h3>Configuration as used</h3>\n");
    let config = toml::to_string_pretty(&s.config)
        .unwrap_or_else(|_| serde_json::to_string_pretty(&s.config).unwrap_or_default());
    let _ = writeln!(out, "<pre id=\"config\">{}</pre>\n</section>", esc(&config));
}

// Formatting.

pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn join_into(out: &mut String, items: impl Iterator<Item = String>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
}

/// A number with at most 2 decimals and no trailing zeros, for embedded data.
fn compact(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    trim_float((v * 100.0).round() / 100.0)
}

pub(crate) fn trim_float(v: f64) -> String {
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".into() } else { text.to_owned() }
}

pub(crate) fn sign(v: f64) -> &'static str {
    if v > 0.0 {
        "pos"
    } else if v < 0.0 {
        "neg"
    } else {
        ""
    }
}

fn sign_decimal(v: Decimal) -> &'static str {
    sign(if v.is_sign_negative() && !v.is_zero() {
        -1.0
    } else if v.is_zero() {
        0.0
    } else {
        1.0
    })
}

pub(crate) fn pct(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let p = v * 100.0;
    if p.abs() >= 1000.0 { format!("{}%", group_int_signed(p.round() as i64)) } else { format!("{p:.2}%") }
}

fn pct1(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let text = format!("{:.1}%", v * 100.0);
    // A loss too small to show is not "-0.0%".
    if text == "-0.0%" { "0.0%".into() } else { text }
}

pub(crate) fn opt_pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), pct)
}

pub(crate) fn opt_num(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or("n/a".into(), |v| format!("{v:.2}"))
}

fn opt_money(v: Option<Decimal>) -> String {
    v.map_or("n/a".into(), |d| money_text(&d.to_string()))
}

/// A decimal string rounded to cents with thousands separators.
pub(crate) fn money_text(text: &str) -> String {
    let Ok(d) = text.parse::<Decimal>() else { return esc(text) };
    let rounded = d.round_dp(2);
    let negative = rounded.is_sign_negative() && !rounded.is_zero();
    let abs = rounded.abs();
    let int: u64 = abs.trunc().to_string().parse().unwrap_or(0);
    let cents = ((abs - abs.trunc()) * Decimal::ONE_HUNDRED).round();
    format!("{}{}.{cents:0>2}", if negative { "-" } else { "" }, group_int(int))
}

/// Prices keep their precision (up to 8 decimals) but get separators.
fn price_text(d: Decimal) -> String {
    let rounded = d.round_dp(8).normalize();
    let text = rounded.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int: u64 = int.trim_start_matches('-').parse().unwrap_or(0);
    if frac.is_empty() { group_int(int) } else { format!("{}.{frac}", group_int(int)) }
}

fn compact_money(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "B")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{suffix}", trim_float((scaled * 100.0).round() / 100.0))
}

pub(crate) fn group_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group_int_signed(n: i64) -> String {
    if n < 0 { format!("-{}", group_int(n.unsigned_abs())) } else { group_int(n as u64) }
}

fn date_or_time(ts: i64) -> String {
    if ts.rem_euclid(MS_PER_DAY) == 0 {
        date(ts)
    } else {
        crate::time::iso(ts).replace('T', " ").replace(":00Z", "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_every_extreme_and_the_ends() {
        let n = 100_000;
        let mut values: Vec<f64> = (0..n).map(|i| (i as f64 / 1000.0).sin()).collect();
        values[54_321] = 10.0;
        values[7] = -10.0;
        let keep = downsample(&[values.clone()], 2_000);
        assert!(keep.len() <= 2_000, "{}", keep.len());
        for i in [0, 7, 54_321, n - 1] {
            assert!(keep.contains(&i), "index {i} dropped");
        }
        assert!(keep.windows(2).all(|w| w[0] < w[1]), "indices in time order, no repeats");
        assert_eq!(downsample(&[vec![1.0, 2.0]], 2_000), [0, 1]);
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        let labels = |ticks: Vec<f64>| ticks.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>();
        assert_eq!(
            labels(value_ticks(0.0, 100.0, false)),
            ["0.00", "20.00", "40.00", "60.00", "80.00", "100.00"]
        );
        assert_eq!(labels(value_ticks(-0.62, 0.0, false)), ["-0.60", "-0.40", "-0.20", "0.00"]);
        // A few decades get 1-2-5 steps; many get powers of ten only.
        assert_eq!(value_ticks(3000.0, 60_000.0, true), [5000.0, 10_000.0, 20_000.0, 50_000.0]);
        assert_eq!(value_ticks(30.0, 2e7, true), [100.0, 1e3, 1e4, 1e5, 1e6, 1e7]);
        let years = time_ticks(
            crate::time::parse_date("2014-09-18").unwrap(),
            crate::time::parse_date("2025-11-28").unwrap(),
        );
        assert_eq!(years.first().unwrap().1, "2015");
        assert!(years.len() <= 11, "{years:?}");
    }

    #[test]
    fn a_run_without_bars_still_gets_a_page() {
        let series = Series::new(Decimal::from(1000), &[crate::model::Symbol::new("X").unwrap()], 0.0);
        let mut out = String::new();
        charts(&mut out, &series);
        assert!(out.contains("nothing to chart") && !out.contains("<svg"), "{out}");
    }

    #[test]
    fn text_is_escaped_and_money_grouped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(money_text("1723435.32717848"), "1,723,435.33");
        assert_eq!(money_text("-54859.8768468"), "-54,859.88");
        assert_eq!(price_text("43210.123456789".parse().unwrap()), "43,210.12345679");
        assert_eq!(pct(171.343533), "17,134%");
        assert_eq!(pct(-0.619959), "-62.00%");
        assert_eq!(compact_money(1_250_000.0), "1.25M");
    }
}
