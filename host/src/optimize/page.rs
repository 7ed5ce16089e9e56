//! `report.html` of a study: one self-contained page (inline CSS and SVG,
//! nothing fetched) with the counts, the multiple-testing note, the best
//! parameters and their equity curve (or, with walk-forward, the stitched
//! out-of-sample curve and the windows in-sample against out-of-sample), a
//! heat map of the objective over two parameters, the ranking and the
//! search space.
//!
//! The page is a pure function of the plan and the trials: it carries no
//! timing, so a merge of shards writes the same bytes as a single run.

use std::fmt::Write as _;

use super::objective::number;
use super::results::{BestCurves, Counts, MultipleTesting, OutOfSample, Ranked};
use super::study::Plan;
use super::windows::Span;
use crate::metrics::Point;
use crate::report::html::{
    BENCHMARK_COLOR, Chart, STRATEGY_COLOR, STYLE, esc, group_int, opt_num, opt_pct, pct, sign, trim_float,
};

/// Rows of the ranking table.
const RANKING_ROWS: usize = 50;
/// A parameter with more distinct values than this is binned on the heat map...
const HEATMAP_MAX_VALUES: usize = 16;
/// ... into at most this many bins.
const HEATMAP_BINS: usize = 12;

pub struct PageInput<'a> {
    pub plan: &'a Plan,
    pub ranked: &'a [Vec<Ranked<'a>>],
    pub bests: &'a [Option<Ranked<'a>>],
    pub counts: &'a Counts,
    pub testing: &'a MultipleTesting,
    pub curves: &'a BestCurves,
    pub out_of_sample: Option<&'a OutOfSample>,
    pub complete: bool,
}

pub fn render(input: &PageInput) -> String {
    let plan = input.plan;
    let mut out = String::with_capacity(128 * 1024);
    let title = format!("Optimization of {}", plan.symbols.join(", "));
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}{EXTRA_STYLE}</style>\n</head>\n<body>\n<main>",
        esc(&title)
    );
    header(&mut out, input, &title);
    tiles(&mut out, input);
    let _ = writeln!(
        out,
        "<p class=\"note\" id=\"multiple-testing\"><strong>Multiple testing.</strong> {}</p>",
        esc(&input.testing.note)
    );
    if plan.walk_forward() {
        walk_forward(&mut out, input);
    } else {
        best_section(&mut out, input);
    }
    heatmap(&mut out, input);
    ranking(&mut out, input);
    space(&mut out, plan);
    let _ = writeln!(
        out,
        "<footer>\n<p>Written by host {}. Every trial is in trials.csv; the best parameters in best.json. \
         Metrics: docs/metrics.md; this page: docs/optimize.md.</p>\n</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

const EXTRA_STYLE: &str = "svg.heatmap { max-width: 100%; height: auto; display: block; }\n\
svg.heatmap text { font-size: 11px; fill: var(--fg); }\n\
svg.heatmap .axis-label { fill: var(--muted); font-size: 12px; }\n\
svg.heatmap rect.best { stroke: #1f2328; stroke-width: 2; }\n\
td.param, th.param { text-align: left; }\n";

fn header(out: &mut String, input: &PageInput, title: &str) {
    let plan = input.plan;
    let names: Vec<&str> = plan.parameters.iter().map(|p| p.name.as_str()).collect();
    let wf = if plan.walk_forward() {
        format!(" &middot; walk-forward, {} windows", plan.windows.len())
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "<header>\n<h1>{}</h1>\n<p class=\"sub\">{} &middot; {} search over {} &middot; objective {} &middot; {} trials{wf}</p>",
        esc(title),
        esc(&plan.describe_range()),
        plan.sampler.as_str(),
        esc(&names.join(", ")),
        esc(&plan.objective.describe()),
        group_int(input.counts.finished),
    );
    if plan.synthetic_data {
        out.push_str("<p class=\"banner warn\">SYNTHETIC DATA: these bars were generated, not recorded from a market.</p>\n");
    }
    if !input.complete {
        let _ = writeln!(
            out,
            "<p class=\"banner fail\" id=\"incomplete\">Incomplete: {} of {} trials finished. Run the same command again \
             to finish the study; finished trials are kept.</p>",
            group_int(input.counts.finished),
            group_int(input.counts.planned)
        );
    }
    out.push_str("</header>\n");
}

fn tile(out: &mut String, name: &str, value: &str, class: &str) {
    let _ = writeln!(
        out,
        "<div class=\"tile\"><div class=\"name\">{}</div><div class=\"value {class}\">{}</div></div>",
        esc(name),
        esc(value)
    );
}

fn tiles(out: &mut String, input: &PageInput) {
    let c = input.counts;
    out.push_str("<section class=\"tiles\" id=\"counts\">\n");
    tile(out, "Trials", &group_int(c.finished), "");
    tile(out, "Qualified", &group_int(c.qualified), "");
    tile(out, "Skipped (constraints)", &group_int(c.skipped_by_constraints), "");
    tile(out, "Failed", &group_int(c.failed), if c.failed > 0 { "neg" } else { "" });
    if let Some(o) = input.out_of_sample {
        tile(out, "Out-of-sample return", &pct(o.stats.total_return), sign(o.stats.total_return));
        tile(out, "Out-of-sample Sharpe", &opt_num(o.stats.sharpe), "");
        tile(out, "Out-of-sample max DD", &pct(-o.stats.max_drawdown), "neg");
        tile(
            out,
            "Buy & hold, same span",
            &pct(o.benchmark_stats.total_return),
            sign(o.benchmark_stats.total_return),
        );
    } else if let Some(b) = input.bests.last().and_then(|b| b.as_ref()) {
        tile(out, &format!("Best {}", input.plan.objective.kind.as_str()), &opt_num(b.score), "");
        let m = &b.record.in_sample.as_ref().expect("a best trial ran").metrics;
        let ret = number(&m["total_return_pct"]).map(|v| v / 100.0);
        tile(out, "Best: return", &ret.map_or("n/a".into(), pct), sign(ret.unwrap_or(0.0)));
        tile(
            out,
            "Best: max DD",
            &number(&m["max_drawdown_pct"]).map_or("n/a".into(), |v| pct(-v / 100.0)),
            "neg",
        );
        tile(out, "Best: trades", &m["trades"].to_string(), "");
    }
    out.push_str("</section>\n");
}

fn params_text(params: &serde_json::Map<String, serde_json::Value>) -> String {
    params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
}

fn points(v: &[(i64, f64)]) -> Vec<Point> {
    v.iter().map(|&(ts, value)| Point { ts, value }).collect()
}

fn legend(out: &mut String, strategy: &str) {
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span style=\"background:{STRATEGY_COLOR}\"></span>{} \
         <span style=\"background:{BENCHMARK_COLOR}\"></span>buy and hold</p>",
        esc(strategy)
    );
}

fn log_scale(lines: &[&Vec<Point>]) -> bool {
    let values = || lines.iter().flat_map(|l| l.iter().map(|p| p.value));
    let (lo, hi) = crate::report::html::extent(values());
    values().all(|v| v > 0.0) && lo > 0.0 && hi / lo > 20.0
}

fn best_section(out: &mut String, input: &PageInput) {
    out.push_str("<section id=\"best\">\n<h2>Best parameters</h2>\n");
    let Some(best) = input.bests.first().and_then(|b| b.as_ref()) else {
        out.push_str("<p class=\"note\">No trial qualified, so there is no best.</p>\n</section>\n");
        return;
    };
    let _ = writeln!(
        out,
        "<p>Trial {}: <strong>{}</strong> ({} {}).</p>",
        best.record.trial,
        esc(&params_text(&best.record.params)),
        esc(input.plan.objective.kind.as_str()),
        opt_num(best.score)
    );
    if let Some(c) = input.curves.windows.iter().find(|c| c.trial == best.record.trial) {
        let (eq, bh) = (points(&c.train_equity), points(&c.train_benchmark));
        legend(out, "best parameters");
        let chart = Chart { id: "best-equity", height: 300.0, log: log_scale(&[&eq, &bh]), percent: false };
        chart.draw(out, &[(&eq, STRATEGY_COLOR, "best"), (&bh, BENCHMARK_COLOR, "buy-and-hold")]);
        out.push_str("<p class=\"note\">In sample: this curve is the one the search picked as best.</p>\n");
    }
    out.push_str("</section>\n");
}

fn walk_forward(out: &mut String, input: &PageInput) {
    let plan = input.plan;
    out.push_str("<section id=\"walk-forward\">\n<h2>Walk-forward: out of sample</h2>\n");
    if let Some(o) = input.out_of_sample {
        legend(out, "stitched test windows");
        let chart = Chart {
            id: "oos-equity",
            height: 300.0,
            log: log_scale(&[&o.stitched, &o.benchmark]),
            percent: false,
        };
        chart.draw(
            out,
            &[
                (&o.stitched, STRATEGY_COLOR, "out-of-sample"),
                (&o.benchmark, BENCHMARK_COLOR, "buy-and-hold"),
            ],
        );
        let _ = writeln!(
            out,
            "<p class=\"note\">Each test window traded the parameters that were best on the training window before \
             it; the windows' curves are chained so each starts where the previous ended. Out of sample: return {}, \
             CAGR {}, Sharpe {}, max drawdown {}. Buy and hold over the same windows: return {}.</p>",
            pct(o.stats.total_return),
            opt_pct(o.stats.cagr),
            opt_num(o.stats.sharpe),
            pct(-o.stats.max_drawdown),
            pct(o.benchmark_stats.total_return),
        );
    }
    let objective = plan.objective.kind.as_str();
    let _ = writeln!(
        out,
        "<div class=\"scroll\"><table id=\"windows\">\n<thead><tr><th>window</th><th>train</th><th>test</th>\
         <th class=\"param\">best parameters (on train)</th><th>in-sample {objective}</th><th>out-of-sample {objective}</th>\
         <th>in-sample return</th><th>out-of-sample return</th><th>out-of-sample max DD</th><th>out-of-sample trades</th>\
         </tr></thead>\n<tbody>"
    );
    let metric = |r: Option<&super::trial::RunResult>, key: &str| r.and_then(|r| number(&r.metrics[key]));
    let mut is_scores = Vec::new();
    let mut oos_scores = Vec::new();
    for (w, best) in plan.windows.iter().zip(input.bests) {
        let test = w.test.unwrap_or(Span { from: None, to: None });
        match best {
            Some(b) => {
                let (is, oos) = (b.record.in_sample.as_ref(), b.record.out_of_sample.as_ref());
                is_scores.extend(b.score);
                oos_scores.extend(b.test_score);
                let ret = |r| metric(r, "total_return_pct").map(|v| v / 100.0);
                let _ = writeln!(
                    out,
                    "<tr><th>{}</th><td>{}</td><td>{}</td><td class=\"param\">{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td>\
                     <td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                    w.index,
                    esc(&w.train.describe()),
                    esc(&test.describe()),
                    esc(&params_text(&b.record.params)),
                    opt_num(b.score),
                    opt_num(b.test_score),
                    sign(ret(is).unwrap_or(0.0)),
                    opt_pct(ret(is)),
                    sign(ret(oos).unwrap_or(0.0)),
                    opt_pct(ret(oos)),
                    metric(oos, "max_drawdown_pct").map_or("n/a".into(), |v| pct(-v / 100.0)),
                    metric(oos, "trades").map_or("n/a".into(), |v| format!("{v}")),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "<tr><th>{}</th><td>{}</td><td>{}</td><td class=\"param\" colspan=\"7\">no trial qualified: the test \
                     window stays in cash</td></tr>",
                    w.index,
                    esc(&w.train.describe()),
                    esc(&test.describe())
                );
            }
        }
    }
    out.push_str("</tbody></table></div>\n");
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let _ = writeln!(
        out,
        "<p class=\"note\" id=\"is-vs-oos\">Mean {objective} of the chosen parameters: {} in sample, {} out of sample. \
         A large drop means the search fitted noise in the training windows.</p>\n</section>",
        opt_num(mean(&is_scores)),
        opt_num(mean(&oos_scores))
    );
}

/// One axis of the heat map: the distinct values seen, or bins of a
/// parameter with many values.
struct Axis {
    labels: Vec<String>,
    /// A value's cell on this axis.
    cell: CellOf,
}

type CellOf = Box<dyn Fn(&serde_json::Value) -> Option<usize>>;

fn axis(name: &str, records: &[&Ranked]) -> Axis {
    let mut values: Vec<serde_json::Value> = Vec::new();
    for r in records {
        if let Some(v) = r.record.params.get(name)
            && !values.contains(v)
        {
            values.push(v.clone());
        }
    }
    let all_numbers = values.iter().all(|v| v.is_number());
    if all_numbers {
        values.sort_by(|a, b| a.as_f64().unwrap_or(0.0).total_cmp(&b.as_f64().unwrap_or(0.0)));
    }
    if values.len() <= HEATMAP_MAX_VALUES || !all_numbers {
        let labels = values.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
        return Axis { labels, cell: Box::new(move |v| values.iter().position(|x| x == v)) };
    }
    // Many numbers: bins of consecutive distinct values, as many in each,
    // labelled with the first and last value in them.
    let per_bin = values.len().div_ceil(HEATMAP_BINS);
    let labels = values
        .chunks(per_bin)
        .map(|bin| {
            let (a, b) = (bin[0].as_f64().unwrap_or(0.0), bin[bin.len() - 1].as_f64().unwrap_or(0.0));
            if bin.len() == 1 { short(a) } else { format!("{}-{}", short(a), short(b)) }
        })
        .collect();
    Axis { labels, cell: Box::new(move |v| values.iter().position(|x| x == v).map(|i| i / per_bin)) }
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { trim_float((v * 100.0).round() / 100.0) }
}

fn heatmap(out: &mut String, input: &PageInput) {
    let plan = input.plan;
    let axes: Vec<&str> =
        plan.heatmap.iter().filter_map(|&i| plan.parameters.get(i)).map(|p| p.name.as_str()).collect();
    let Some(&x_name) = axes.first() else { return };
    let y_name = axes.get(1).copied();
    let records: Vec<&Ranked> = input.ranked.iter().flatten().collect();
    let x = axis(x_name, &records);
    let y = y_name.map(|n| axis(n, &records));
    let (nx, ny) = (x.labels.len(), y.as_ref().map_or(1, |y| y.labels.len()));
    if nx == 0 {
        return;
    }
    // Per window, the best score in each cell (over the other parameters);
    // then the mean over windows.
    let mut sums = vec![vec![(0.0f64, 0u32); nx]; ny];
    for window in input.ranked {
        let mut best = vec![vec![None::<f64>; nx]; ny];
        for r in window {
            let Some(score) = r.score else { continue };
            let Some(cx) = r.record.params.get(x_name).and_then(|v| (x.cell)(v)) else { continue };
            let cy = match (&y, y_name) {
                (Some(y), Some(n)) => match r.record.params.get(n).and_then(|v| (y.cell)(v)) {
                    Some(c) => c,
                    None => continue,
                },
                _ => 0,
            };
            let cell = &mut best[cy][cx];
            *cell = Some(cell.map_or(score, |s: f64| s.max(score)));
        }
        for (row, sum_row) in best.iter().zip(&mut sums) {
            for (cell, sum) in row.iter().zip(sum_row.iter_mut()) {
                if let Some(s) = cell {
                    sum.0 += s;
                    sum.1 += 1;
                }
            }
        }
    }
    let cells: Vec<Vec<Option<f64>>> = sums
        .iter()
        .map(|row| row.iter().map(|&(s, n)| (n > 0).then(|| s / f64::from(n))).collect())
        .collect();
    let max_abs = cells.iter().flatten().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    let top = cells
        .iter()
        .enumerate()
        .flat_map(|(j, row)| row.iter().enumerate().filter_map(move |(i, v)| v.map(|v| (v, j, i))))
        .fold(
            None::<(f64, usize, usize)>,
            |best, c| if best.is_none_or(|b| c.0 > b.0) { Some(c) } else { best },
        );

    let objective = plan.objective.kind.as_str();
    let _ = writeln!(
        out,
        "<section id=\"heatmap\">\n<h2>Heat map: {objective} by {}{}</h2>\n<p class=\"note\">Each cell shows the best \
         in-sample {objective} among the trials with those values{}{}. Green is positive, red negative; grey cells had \
         no trial (a constraint ruled them out, or the sampler did not go there).</p>",
        esc(x_name),
        y_name.map_or(String::new(), |n| format!(" and {}", esc(n))),
        if axes.len() == 2 && plan.parameters.len() > 2 { " (over the other parameters)" } else { "" },
        if plan.walk_forward() { ", averaged over the walk-forward windows" } else { "" },
    );
    let (cw, ch) = ((720.0 / nx as f64).clamp(14.0, 64.0), (360.0 / ny as f64).clamp(14.0, 30.0));
    // Labels wider than their cell are drawn slanted, and need more room.
    let slant = x.labels.iter().any(|l| l.len() as f64 * 6.5 > cw - 4.0);
    let (left, bottom) = (90.0, if slant { 84.0 } else { 56.0 });
    let (width, height) = (left + cw * nx as f64 + 10.0, ch * ny as f64 + bottom + 6.0);
    let _ = writeln!(
        out,
        "<div class=\"scroll\"><svg class=\"heatmap\" id=\"heatmap-svg\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\">"
    );
    let show_values = nx <= 20 && ny <= 24 && cw >= 34.0;
    for (j, row) in cells.iter().enumerate() {
        // The first y value at the bottom.
        let top_y = (ny - 1 - j) as f64 * ch + 4.0;
        for (i, v) in row.iter().enumerate() {
            let left_x = left + i as f64 * cw;
            let label = format!(
                "{x_name} = {}{}: {}",
                x.labels[i],
                y.as_ref().map_or(String::new(), |y| format!(
                    ", {} = {}",
                    y_name.unwrap_or_default(),
                    y.labels[j]
                )),
                v.map_or("no trial".to_owned(), |v| format!("{objective} {v:.4}"))
            );
            let fill = v.map_or("#eaeef2".to_owned(), |v| heat(v, max_abs));
            let class = if top.is_some_and(|t| t.1 == j && t.2 == i) { " class=\"best\"" } else { "" };
            let _ = write!(
                out,
                "<rect{class} x=\"{left_x:.1}\" y=\"{top_y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
                cw - 1.0,
                ch - 1.0,
                esc(&label)
            );
            if show_values && let Some(v) = v {
                let _ = write!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.2}</text>",
                    left_x + cw / 2.0,
                    top_y + ch / 2.0 + 4.0
                );
            }
        }
        out.push('\n');
    }
    for (i, label) in x.labels.iter().enumerate() {
        let (lx, ly) = (left + i as f64 * cw + cw / 2.0, ny as f64 * ch + 20.0);
        if slant {
            let _ = write!(
                out,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" transform=\"rotate(-30 {lx:.1} {ly:.1})\">{}</text>",
                esc(label)
            );
        } else {
            let _ =
                write!(out, "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{}</text>", esc(label));
        }
    }
    let _ = writeln!(
        out,
        "\n<text class=\"axis-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        left + cw * nx as f64 / 2.0,
        ny as f64 * ch + bottom - 10.0,
        esc(x_name)
    );
    if let (Some(y), Some(name)) = (&y, y_name) {
        for (j, label) in y.labels.iter().enumerate() {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left - 6.0,
                (ny - 1 - j) as f64 * ch + 4.0 + ch / 2.0 + 4.0,
                esc(label)
            );
        }
        let _ = writeln!(
            out,
            "\n<text class=\"axis-label\" x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
            ny as f64 * ch / 2.0,
            ny as f64 * ch / 2.0,
            esc(name)
        );
    }
    out.push_str("</svg></div>\n</section>\n");
}

/// Green for positive, red for negative, stronger with size.
fn heat(v: f64, max_abs: f64) -> String {
    let strength = if max_abs > 0.0 { (v.abs() / max_abs).min(1.0) } else { 0.0 };
    let alpha = 0.1 + 0.75 * strength;
    if v >= 0.0 { format!("rgba(26,127,55,{alpha:.2})") } else { format!("rgba(207,34,46,{alpha:.2})") }
}

fn ranking(out: &mut String, input: &PageInput) {
    let plan = input.plan;
    let Some(last) = input.ranked.last() else { return };
    let wf = plan.walk_forward();
    let objective = plan.objective.kind.as_str();
    let _ = writeln!(
        out,
        "<section id=\"ranking\">\n<h2>Ranking</h2>\n<p class=\"note\">The top {} of {} trials{}, best first; trials that \
         do not qualify ({}) come after those that do. Every trial is in trials.csv.</p>\n\
         <div class=\"scroll tall\"><table id=\"ranking-table\">\n<thead><tr><th>rank</th><th>trial</th>",
        RANKING_ROWS.min(last.len()),
        group_int(last.len() as u64),
        if wf {
            format!(
                " of the last window (training range {})",
                plan.windows.last().map_or(String::new(), |w| w.train.describe())
            )
        } else {
            String::new()
        },
        esc(&plan.objective.describe()),
    );
    for p in &plan.parameters {
        let _ = write!(out, "<th class=\"param\">{}</th>", esc(&p.name));
    }
    let _ = write!(
        out,
        "<th>{objective}</th><th>qualifies</th><th>return</th><th>CAGR</th><th>max DD</th><th>Sharpe</th><th>trades</th>"
    );
    if wf {
        let _ = write!(out, "<th>test {objective}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (rank, r) in last.iter().take(RANKING_ROWS).enumerate() {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td>", rank + 1, r.record.trial);
        for p in &plan.parameters {
            let v = r
                .record
                .params
                .get(&p.name)
                .map_or(String::new(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            let _ = write!(out, "<td class=\"param\">{}</td>", esc(&v));
        }
        let m = r.record.in_sample.as_ref().map(|s| &s.metrics);
        let get = |key: &str| m.and_then(|m| number(&m[key]));
        match m.filter(|_| r.record.ok()) {
            Some(_) => {
                let ret = get("total_return_pct").map(|v| v / 100.0);
                let _ = write!(
                    out,
                    "<td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                    opt_num(r.score),
                    if r.qualifies { "yes" } else { "no" },
                    sign(ret.unwrap_or(0.0)),
                    opt_pct(ret),
                    opt_pct(get("cagr_pct").map(|v| v / 100.0)),
                    get("max_drawdown_pct").map_or("n/a".into(), |v| pct(-v / 100.0)),
                    opt_num(get("sharpe")),
                    get("trades").map_or("n/a".into(), |v| format!("{v}")),
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<td colspan=\"7\" class=\"neg\">failed: {}</td>",
                    esc(r.record.error.as_deref().unwrap_or("unknown").lines().next().unwrap_or_default())
                );
            }
        }
        if wf {
            let _ = write!(out, "<td>{}</td>", opt_num(r.test_score));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

fn space(out: &mut String, plan: &Plan) {
    out.push_str("<section id=\"space\">\n<h2>Search space</h2>\n<table class=\"kv\">\n");
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    for p in &plan.parameters {
        row(out, &p.name, &p.values);
    }
    row(
        out,
        "constraints",
        &if plan.constraints.is_empty() { "none".to_owned() } else { plan.constraints.join("; ") },
    );
    let sampler = match plan.sampler {
        super::config::SamplerKind::Grid => "grid: every combination".to_owned(),
        super::config::SamplerKind::Random => format!("random, seed {}", plan.seed),
        super::config::SamplerKind::Tpe => format!(
            "tpe, seed {}: rounds of {}, random until {} trials",
            plan.seed, plan.batch, plan.startup_trials
        ),
    };
    row(out, "sampler", &sampler);
    row(out, "objective", &plan.objective.describe());
    row(out, "trials per window", &group_int(plan.trials_per_window));
    row(out, "range", &plan.describe_range());
    if plan.walk_forward() {
        row(out, "walk-forward windows", &group_int(plan.windows.len() as u64));
    }
    row(out, "start cash", &plan.start_cash);
    row(out, "risk-free rate", &format!("{}%", trim_float(plan.risk_free_rate * 100.0)));
    out.push_str("</table>\n</section>\n");
}
