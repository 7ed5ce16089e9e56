//! A study's outputs, made from its finished trials alone: `trials.csv`,
//! `best.json` and `report.html`. A single process and a merge of shards
//! call the same function with the same trials, so they write the same
//! bytes.
//!
//! The report draws the best trial of each window; those curves come from
//! backtesting the best parameters once more at the end of a run
//! (`best-curves.json`), which is quick (one backtest per window) and lets
//! a merge draw them without running anything: the best of all shards is
//! the best of its own shard, whose folder holds its curves.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::objective::{number, rank_order};
use super::stats::expected_max_of_normals;
use super::store::write_atomically;
use super::study::{Plan, Study};
use super::trial::{RunResult, TrialRecord};
use super::windows::{Span, stitch};
use crate::metrics::{self, Point};
use crate::report::html::{MAX_CHART_POINTS, downsample};
use crate::time::iso;

pub const CURVES_FILE: &str = "best-curves.json";

/// Every scalar of `summary.json`'s `metrics.portfolio`, in its order: the
/// columns of `trials.csv` (a test checks none is missing).
pub const METRIC_COLUMNS: [&str; 26] = [
    "first",
    "last",
    "periods_per_year",
    "total_return_pct",
    "cagr_pct",
    "volatility_pct",
    "sharpe",
    "sortino",
    "max_drawdown_pct",
    "longest_drawdown_days",
    "calmar",
    "trades",
    "wins",
    "losses",
    "win_rate_pct",
    "net_pnl",
    "gross_profit",
    "gross_loss",
    "average_win",
    "average_loss",
    "profit_factor",
    "expectancy",
    "exposure_pct",
    "turnover",
    "traded_notional",
    "fees_paid",
];

/// The curves of each window's best trial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BestCurves {
    pub windows: Vec<WindowCurves>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCurves {
    pub window: usize,
    pub trial: u64,
    /// On the training range, downsampled for drawing: `[timestamp, value]`.
    pub train_equity: Vec<(i64, f64)>,
    pub train_benchmark: Vec<(i64, f64)>,
    /// Walk-forward: on the test range, every bar (they are stitched together).
    pub test_equity: Option<Vec<(i64, f64)>>,
    pub test_benchmark: Option<Vec<(i64, f64)>>,
}

/// A trial's place in its window's ranking.
#[derive(Debug, Clone)]
pub struct Ranked<'a> {
    pub record: &'a TrialRecord,
    pub qualifies: bool,
    pub score: Option<f64>,
    pub test_score: Option<f64>,
}

/// Each window's finished trials, best first (failed ones last).
pub fn rank<'a>(plan: &Plan, records: &'a [TrialRecord]) -> Vec<Vec<Ranked<'a>>> {
    let objective = &plan.objective;
    let mut windows: Vec<Vec<Ranked>> = vec![Vec::new(); plan.windows.len()];
    for record in records {
        let in_sample = record.in_sample.as_ref().filter(|_| record.ok());
        let ranked = Ranked {
            record,
            qualifies: in_sample.is_some_and(|r| objective.qualifies(&r.metrics)),
            score: in_sample.and_then(|r| objective.score(&r.metrics)),
            test_score: record.out_of_sample.as_ref().and_then(|r| objective.score(&r.metrics)),
        };
        if let Some(w) = windows.get_mut(record.window) {
            w.push(ranked);
        }
    }
    for w in &mut windows {
        w.sort_by(|a, b| {
            rank_order((a.qualifies, a.score, a.record.trial), (b.qualifies, b.score, b.record.trial))
        });
    }
    windows
}

/// Each window's best trial: the top of its ranking, if it qualifies.
pub fn best<'a>(ranked: &[Vec<Ranked<'a>>]) -> Vec<Option<Ranked<'a>>> {
    ranked.iter().map(|w| w.first().filter(|r| r.qualifies).cloned()).collect()
}

/// Backtests each window's best trial again, keeping its curves.
pub fn compute_curves(study: &Study, records: &[TrialRecord]) -> Result<BestCurves> {
    let ranked = rank(&study.plan, records);
    let mut curves = BestCurves::default();
    for (window, best) in study.plan.windows.iter().zip(best(&ranked)) {
        let Some(best) = best else { continue };
        let (train, test) = study
            .curves(window, &best.record.params)
            .with_context(|| format!("cannot backtest trial {} again for its curves", best.record.trial))?;
        let keep = downsample(
            &[
                train.equity.iter().map(|p| p.value).collect(),
                train.benchmark.iter().map(|p| p.value).collect(),
            ],
            MAX_CHART_POINTS,
        );
        let pick = |points: &[Point]| keep.iter().map(|&i| (points[i].ts, points[i].value)).collect();
        let all = |points: &[Point]| points.iter().map(|p| (p.ts, p.value)).collect();
        curves.windows.push(WindowCurves {
            window: window.index,
            trial: best.record.trial,
            train_equity: pick(&train.equity),
            train_benchmark: pick(&train.benchmark),
            test_equity: test.as_ref().map(|t| all(&t.equity)),
            test_benchmark: test.as_ref().map(|t| all(&t.benchmark)),
        });
    }
    Ok(curves)
}

/// The counts a study reports.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Trials in the plan (all shards).
    pub planned: u64,
    pub finished: u64,
    pub failed: u64,
    /// Finished trials that met the objective's conditions.
    pub qualified: u64,
    /// Parameter sets never run because they broke a constraint.
    pub skipped_by_constraints: u64,
    /// Random draws that repeated an earlier one.
    pub duplicates: u64,
}

pub fn counts(plan: &Plan, records: &[TrialRecord]) -> Counts {
    let ranked = rank(plan, records);
    Counts {
        planned: plan.total_trials(),
        finished: records.len() as u64,
        failed: records.iter().filter(|r| !r.ok()).count() as u64,
        qualified: ranked.iter().flatten().filter(|r| r.qualifies).count() as u64,
        skipped_by_constraints: plan.skipped_by_constraints * plan.windows.len() as u64
            + records.iter().map(|r| r.rejected).sum::<u64>(),
        duplicates: plan.duplicates * plan.windows.len() as u64,
    }
}

/// How the best Sharpe ratio compares with the best expected by luck from
/// this many trials (see [`expected_max_of_normals`]).
#[derive(Debug, Clone, Serialize)]
pub struct MultipleTesting {
    /// Trials that ran, all windows together.
    pub trials: u64,
    /// Trials each window's choice was made from.
    pub trials_per_window: u64,
    /// Standard deviation of the in-sample Sharpe ratios across trials (per window, averaged).
    pub sharpe_spread: Option<f64>,
    /// The best Sharpe ratio `trials_per_window` trials of strategies with
    /// no edge would be expected to show, given that spread.
    pub luck_sharpe: Option<f64>,
    pub note: String,
}

fn multiple_testing(plan: &Plan, ranked: &[Vec<Ranked>]) -> MultipleTesting {
    let finished: u64 = ranked.iter().map(|w| w.len() as u64).sum();
    let per_window = ranked.iter().map(|w| w.len() as u64).max().unwrap_or(0);
    let spreads: Vec<f64> = ranked
        .iter()
        .filter_map(|w| {
            let sharpes: Vec<f64> = w
                .iter()
                .filter_map(|r| r.record.in_sample.as_ref().and_then(|s| number(&s.metrics["sharpe"])))
                .collect();
            (sharpes.len() >= 2).then(|| {
                let mean = sharpes.iter().sum::<f64>() / sharpes.len() as f64;
                (sharpes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (sharpes.len() - 1) as f64).sqrt()
            })
        })
        .collect();
    let spread = (!spreads.is_empty()).then(|| spreads.iter().sum::<f64>() / spreads.len() as f64);
    let luck = spread.map(|s| round4(s * expected_max_of_normals(per_window)));
    let wf = if plan.walk_forward() {
        format!(
            " Each of the {} windows chose from {} trials; its test window shows how the choice held up on data it \
             did not see.",
            plan.windows.len(),
            per_window
        )
    } else {
        " Nothing here was tested on data the search did not see: use walk-forward ([optimize.walk-forward]) for \
         that."
            .to_owned()
    };
    let luck_text = match (spread, luck) {
        (Some(s), Some(l)) => format!(
            " The trials' Sharpe ratios spread with a standard deviation of {:.2}; among {} trials of strategies with \
             no edge at all, the best would show a Sharpe ratio of about {:.2} by luck alone (Bailey and López de \
             Prado's expected maximum; the trials are correlated, so this is a rough guide).",
            s, per_window, l
        ),
        _ => String::new(),
    };
    MultipleTesting {
        trials: finished,
        trials_per_window: per_window,
        sharpe_spread: spread.map(round4),
        luck_sharpe: luck,
        note: format!(
            "{finished} parameter sets were backtested. The best of many trials looks better than it will do: part \
             of its edge is the luck of being picked.{luck_text}{wf}"
        ),
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// The out-of-sample result of a walk-forward study.
#[derive(Debug, Clone)]
pub struct OutOfSample {
    pub stitched: Vec<Point>,
    pub benchmark: Vec<Point>,
    pub stats: metrics::ReturnStats,
    pub benchmark_stats: metrics::ReturnStats,
}

fn out_of_sample(plan: &Plan, curves: &BestCurves) -> Option<OutOfSample> {
    if !plan.walk_forward() {
        return None;
    }
    let start: f64 = plan.start_cash.parse().ok()?;
    let to_points = |v: &[(i64, f64)]| v.iter().map(|&(ts, value)| Point { ts, value }).collect::<Vec<_>>();
    let mut equity = Vec::new();
    let mut bench = Vec::new();
    for w in &plan.windows {
        let c = curves.windows.iter().find(|c| c.window == w.index);
        let span = w.test.unwrap_or(Span { from: None, to: None });
        equity.push((span, c.and_then(|c| c.test_equity.as_deref()).map(to_points)));
        bench.push((span, c.and_then(|c| c.test_benchmark.as_deref()).map(to_points)));
    }
    let stitched = stitch(start, &equity.iter().map(|(s, c)| (*s, c.as_deref())).collect::<Vec<_>>());
    let benchmark = stitch(start, &bench.iter().map(|(s, c)| (*s, c.as_deref())).collect::<Vec<_>>());
    let per_year = metrics::periods_per_year(&stitched);
    Some(OutOfSample {
        stats: metrics::return_stats(start, &stitched, per_year, plan.risk_free_rate),
        benchmark_stats: metrics::return_stats(start, &benchmark, per_year, plan.risk_free_rate),
        stitched,
        benchmark,
    })
}

/// What the command line prints about the outputs.
pub struct Written {
    pub counts: Counts,
    /// The best trial of the last window (of the whole range without walk-forward).
    pub best: Option<(u64, serde_json::Map<String, serde_json::Value>, Option<f64>)>,
    pub out_of_sample: Option<metrics::ReturnStats>,
}

/// Writes `trials.csv`, `best.json` and `report.html` into `dir`.
pub fn write(
    dir: &Path,
    plan: &Plan,
    records: &[TrialRecord],
    curves: &BestCurves,
    complete: bool,
) -> Result<Written> {
    let mut records = records.to_vec();
    records.sort_by_key(|r| r.trial);
    let ranked = rank(plan, &records);
    let bests = best(&ranked);
    let counts = counts(plan, &records);
    let testing = multiple_testing(plan, &ranked);
    let oos = out_of_sample(plan, curves);

    write_atomically(&dir.join("trials.csv"), trials_csv(plan, &records).as_bytes())?;
    let best_json = best_json(plan, &bests, &counts, &testing, oos.as_ref(), complete);
    write_atomically(&dir.join("best.json"), (serde_json::to_string_pretty(&best_json)? + "\n").as_bytes())?;
    let page = super::page::render(&super::page::PageInput {
        plan,
        ranked: &ranked,
        bests: &bests,
        counts: &counts,
        testing: &testing,
        curves,
        out_of_sample: oos.as_ref(),
        complete,
    });
    write_atomically(&dir.join("report.html"), page.as_bytes())?;

    let last = bests.last().and_then(|b| b.as_ref());
    Ok(Written {
        counts,
        best: last.map(|b| (b.record.trial, b.record.params.clone(), b.score)),
        out_of_sample: oos.map(|o| o.stats),
    })
}

fn trials_csv(plan: &Plan, records: &[TrialRecord]) -> String {
    let wf = plan.walk_forward();
    let mut out = String::with_capacity(records.len() * 400 + 1024);
    out.push_str("trial");
    if wf {
        out.push_str(",window,train_from,train_to,test_from,test_to");
    }
    out.push_str(",status");
    for p in &plan.parameters {
        out.push(',');
        push_field(&mut out, &p.name);
    }
    let block = |out: &mut String, prefix: &str| {
        let _ = write!(out, ",{prefix}objective");
        if prefix.is_empty() {
            out.push_str(",qualifies");
        }
        for m in METRIC_COLUMNS {
            let _ = write!(out, ",{prefix}{m}");
        }
        let _ = write!(out, ",{prefix}final_equity,{prefix}bars");
    };
    block(&mut out, "");
    if wf {
        block(&mut out, "test_");
    }
    out.push_str(",error\n");

    let objective = &plan.objective;
    for r in records {
        let _ = write!(out, "{}", r.trial);
        if wf {
            let w = &plan.windows[r.window.min(plan.windows.len() - 1)];
            let test = w.test.unwrap_or(Span { from: None, to: None });
            let _ = write!(out, ",{}", r.window);
            for ts in [w.train.from, w.train.to, test.from, test.to] {
                out.push(',');
                if let Some(ts) = ts {
                    out.push_str(&iso(ts));
                }
            }
        }
        out.push(',');
        out.push_str(match (&r.in_sample, &r.error) {
            (Some(s), None) => &s.status,
            _ => "failed",
        });
        for p in &plan.parameters {
            out.push(',');
            push_value(&mut out, r.params.get(&p.name).unwrap_or(&serde_json::Value::Null));
        }
        let block = |out: &mut String, result: Option<&RunResult>, qualifies: Option<bool>| {
            out.push(',');
            if let Some(score) = result.and_then(|s| objective.score(&s.metrics)) {
                push_value(out, &serde_json::json!(score));
            }
            if let Some(q) = qualifies {
                let _ = write!(out, ",{q}");
            }
            for m in METRIC_COLUMNS {
                out.push(',');
                if let Some(s) = result {
                    push_value(out, &s.metrics[m]);
                }
            }
            out.push(',');
            if let Some(s) = result {
                out.push_str(&s.final_equity);
                let _ = write!(out, ",{}", s.bars);
            } else {
                out.push(',');
            }
        };
        let in_sample = r.in_sample.as_ref();
        block(
            &mut out,
            in_sample,
            Some(r.ok() && in_sample.is_some_and(|s| objective.qualifies(&s.metrics))),
        );
        if wf {
            block(&mut out, r.out_of_sample.as_ref(), None);
        }
        out.push(',');
        if let Some(e) = &r.error {
            push_field(&mut out, e);
        }
        out.push('\n');
    }
    out
}

fn push_value(out: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => push_field(out, s),
        other => out.push_str(&other.to_string()),
    }
}

/// A CSV field, quoted when it needs to be.
fn push_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

fn span_json(span: Span) -> serde_json::Value {
    serde_json::json!({ "from": span.from.map(iso), "to": span.to.map(iso) })
}

/// The best parameters as slice settings: `{"analysis": {"fast": 10}}`,
/// ready to paste into the config's `[slices.<kind>] config`.
fn settings_json(params: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, value) in params {
        if let Some((kind, key)) = name.split_once('.') {
            let slice = out.entry(kind.to_owned()).or_insert_with(|| serde_json::json!({}));
            slice[key] = value.clone();
        }
    }
    serde_json::Value::Object(out)
}

fn best_json(
    plan: &Plan,
    bests: &[Option<Ranked>],
    counts: &Counts,
    testing: &MultipleTesting,
    oos: Option<&OutOfSample>,
    complete: bool,
) -> serde_json::Value {
    let result = |r: Option<&RunResult>, score: Option<f64>| match r {
        Some(r) => serde_json::json!({
            "objective": score,
            "status": r.status,
            "final_equity": r.final_equity,
            "bars": r.bars,
            "metrics": r.metrics,
        }),
        None => serde_json::Value::Null,
    };
    let trial = |b: &Ranked| {
        serde_json::json!({
            "trial": b.record.trial,
            "params": b.record.params,
            "settings": settings_json(&b.record.params),
            "in_sample": result(b.record.in_sample.as_ref(), b.score),
        })
    };
    let mut json = serde_json::json!({
        "complete": complete,
        "symbols": plan.symbols,
        "range": span_json(plan.range),
        "synthetic_data": plan.synthetic_data,
        "sampler": plan.sampler.as_str(),
        "objective": {
            "metric": plan.objective.kind.as_str(),
            "maximise": plan.objective.kind.metric_key(),
            "max_drawdown": plan.objective.max_drawdown,
            "min_trades": plan.objective.min_trades,
        },
        "trials": counts,
        "multiple_testing": testing,
        // The parameters to use now: the best of the last window.
        "best": bests.last().and_then(|b| b.as_ref()).map(trial),
    });
    if plan.walk_forward() {
        let windows: Vec<serde_json::Value> = plan
            .windows
            .iter()
            .zip(bests)
            .map(|(w, b)| {
                let mut entry = serde_json::json!({
                    "window": w.index,
                    "train": span_json(w.train),
                    "test": w.test.map(span_json),
                });
                match b {
                    Some(b) => {
                        entry["trial"] = serde_json::json!(b.record.trial);
                        entry["params"] = serde_json::json!(b.record.params);
                        entry["in_sample"] = result(b.record.in_sample.as_ref(), b.score);
                        entry["out_of_sample"] = result(b.record.out_of_sample.as_ref(), b.test_score);
                    }
                    None => {
                        entry["note"] = serde_json::json!("no trial qualified: the test window stays in cash")
                    }
                }
                entry
            })
            .collect();
        let mean = |scores: Vec<f64>| {
            (!scores.is_empty()).then(|| round4(scores.iter().sum::<f64>() / scores.len() as f64))
        };
        let is: Vec<f64> = bests.iter().flatten().filter_map(|b| b.score).collect();
        let oos_scores: Vec<f64> = bests.iter().flatten().filter_map(|b| b.test_score).collect();
        json["walk_forward"] = serde_json::json!({
            "windows": windows,
            "in_sample_mean_objective": mean(is),
            "out_of_sample_mean_objective": mean(oos_scores),
            "out_of_sample": oos.map(|o| serde_json::to_value(&o.stats).unwrap_or_default()),
            "out_of_sample_benchmark": oos.map(|o| serde_json::to_value(&o.benchmark_stats).unwrap_or_default()),
            "stitching": "each test window's equity curve scaled to start where the previous one ended; \
                          a window without a qualifying trial stays in cash",
        });
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    /// trials.csv must carry every figure summary.json has: a metric added
    /// to the summary without a column here fails this test. (The deepest
    /// drawdown's episode is an object: best.json has it.)
    #[test]
    fn metric_columns_cover_every_scalar_of_the_portfolio_metrics() {
        let series = crate::report::Series::new(rust_decimal::Decimal::from(100), &[], 0.0);
        let m = crate::report::metrics(&series, &[], 0.0);
        let json = serde_json::to_value(&m.portfolio).unwrap();
        let mut scalars: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "max_drawdown_episode")
            .collect();
        let mut columns = METRIC_COLUMNS.to_vec();
        columns.sort_unstable();
        scalars.sort_unstable();
        assert_eq!(columns, scalars);
    }

    #[test]
    fn settings_group_parameters_by_slice() {
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"analysis.fast": 5, "analysis.slow": 20, "sizing.fraction": 0.5}"#)
                .unwrap();
        assert_eq!(
            settings_json(&params),
            serde_json::json!({"analysis": {"fast": 5, "slow": 20}, "sizing": {"fraction": 0.5}})
        );
    }
}
