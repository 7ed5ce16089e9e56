//! `host replay`: takes a paper session's audit log, writes the bars it
//! processed to CSV files, and runs them through the backtest engine (the
//! simulated clock, the configured batch size, the session's components and
//! config versions swapped at the same bars), recording the same audit line
//! per step and comparing the two decision by decision.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::audit::{StepRecorder, step_line};
use super::feed::{HEADER, parse_ts};
use super::generation::{Clock, Generation, LatencyRegistry, PaperFactory};
use super::{apply_generation, build_chains, settings_of};
use crate::config::{LoadedConfig, RunConfig};
use crate::model::{Symbol, Timestamp};
use crate::orchestrator::{Backtest, Progress};
use crate::runtime::Runtime;

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub symbols: String,
    pub steps: usize,
    pub decisions: usize,
    pub generations: usize,
    pub differing_steps: usize,
    pub differences: Vec<String>,
}

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn replay(audit_path: &Path) -> Result<ReplayReport> {
    let lines = super::audit::read(audit_path)?;
    let bad =
        |what: &str| anyhow::anyhow!("{} is not a paper session's audit log: {what}", audit_path.display());
    let session = lines.iter().find(|l| l["kind"] == "session").ok_or_else(|| bad("no session line"))?;
    let symbols: Vec<Symbol> = session["symbols"]
        .as_array()
        .ok_or_else(|| bad("the session line lists no symbols"))?
        .iter()
        .map(|s| Symbol::new(s.as_str().unwrap_or_default()).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let steps: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "step").collect();
    let configs: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "config").collect();
    if configs.is_empty() {
        bail!(bad("no config line"));
    }

    // The session's bars, back to CSV files for the data slice.
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "strata-replay-{}-{}",
        std::process::id(),
        super::store::now_ms()
    )));
    let data_dir = scratch.0.join("data");
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut csv: BTreeMap<String, String> =
        symbols.iter().map(|s| (s.to_string(), format!("{HEADER}\n"))).collect();
    let mut decisions = 0;
    for step in &steps {
        for d in step["decisions"].as_array().into_iter().flatten() {
            decisions += 1;
            let symbol = d["symbol"].as_str().unwrap_or_default();
            let bar = &d["bar"];
            let text =
                csv.get_mut(symbol).ok_or_else(|| bad(&format!("a decision for unknown symbol {symbol}")))?;
            let f = |k: &str| bar[k].as_f64().map(|v| v.to_string()).unwrap_or_default();
            let _ = writeln!(
                text,
                "{},{},{},{},{},{}",
                bar["ts"].as_str().unwrap_or_default(),
                f("open"),
                f("high"),
                f("low"),
                f("close"),
                f("volume")
            );
        }
    }
    for (symbol, text) in &csv {
        std::fs::write(data_dir.join(format!("{symbol}.csv")), text)?;
    }

    // The session's config versions, reading the scratch files.
    let runtime = Arc::new(Runtime::new().context("cannot start the WebAssembly runtime")?);
    let mut generations = Vec::new();
    for c in &configs {
        let mut config: RunConfig = toml::from_str(c["config"].as_str().unwrap_or_default())
            .map_err(|e| bad(&format!("config version {}: {e}", c["generation"])))?;
        for dir in config.slices.data.grants.read_dirs.values_mut() {
            *dir = data_dir.clone();
        }
        config.slices.data.config.insert("follow".into(), toml::Value::Boolean(false));
        let after = c["after"].as_str().map(parse_ts).transpose().map_err(|e| bad(&e))?;
        let number = c["generation"].as_u64().unwrap_or_default() as u32;
        let loaded = LoadedConfig { path: audit_path.to_owned(), config };
        generations.push((after, Arc::new(Generation::load(&runtime, loaded, number)?)));
    }
    let first_index = generations.iter().rposition(|(after, _)| after.is_none()).unwrap_or(0);
    let first = Arc::clone(&generations[first_index].1);
    let mut later: Vec<(Timestamp, Arc<Generation>)> =
        generations[first_index + 1..].iter().map(|(a, g)| (a.unwrap_or_default(), Arc::clone(g))).collect();
    later.reverse();

    let factory = PaperFactory::new(
        runtime,
        Arc::clone(&first),
        Clock::Simulated,
        Arc::new(LatencyRegistry::default()),
    );
    let chains = build_chains(&factory, &symbols)?;
    let mut settings = settings_of(&first.config.config);
    settings.live = false;
    let mut backtest = Backtest::new(chains, settings, Some(&factory));
    backtest.record_decisions(true);

    let mut report = ReplayReport {
        symbols: symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        decisions,
        generations: generations.len(),
        ..ReplayReport::default()
    };
    let mut rec = StepRecorder::default();
    let mut refusals_before: BTreeMap<String, u64> = BTreeMap::new();
    let mut index = 0;
    // Waiting or Finished: the logged bars have all been read.
    while let Progress::Stepped(ts) = backtest.advance(&mut rec)? {
        rec.refusals = super::audit::refusals_since(backtest.refusals(), &mut refusals_before);
        let mine: Value = serde_json::from_str(&serde_json::to_string(&step_line(&rec))?)?;
        match steps.get(index) {
            Some(theirs) => {
                let mut found = Vec::new();
                diff("", theirs, &mine, &mut found);
                if !found.is_empty() {
                    report.differing_steps += 1;
                    let at = crate::time::iso(ts);
                    report.differences.extend(found.into_iter().map(|d| format!("{at} {d}")));
                }
            }
            None => {
                report.differing_steps += 1;
                report.differences.push(format!(
                    "{}: the backtest has a bar the paper session did not",
                    crate::time::iso(ts)
                ));
            }
        }
        index += 1;
        rec.clear();
        if later.last().is_some_and(|(at, _)| *at == ts) {
            let (_, next) = later.pop().expect("checked");
            // Orders it cancels belong to the next bar's line, as in the session.
            apply_generation(&mut backtest, &factory, next, &mut rec)?;
        }
    }
    report.steps = index;
    if index < steps.len() {
        report.differing_steps += steps.len() - index;
        report.differences.push(format!(
            "the paper session processed {} bars the backtest did not (from {})",
            steps.len() - index,
            steps[index]["ts"].as_str().unwrap_or_default()
        ));
    }
    Ok(report)
}

/// Every path at which `paper` and `backtest` differ.
fn diff(path: &str, paper: &Value, backtest: &Value, out: &mut Vec<String>) {
    match (paper, backtest) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                diff(&sub, a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(format!("{path}: paper {a}, backtest {b}")),
        _ => {}
    }
}
