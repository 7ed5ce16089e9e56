//! The audit trail: an append-only log (JSON lines) of every decision's
//! inputs and outputs, one line per processed timestamp, plus a line per
//! config version and one per slice fault. `host replay` reads it back, runs the same bars through
//! the backtest engine and compares decision by decision.
//!
//! Lines are written after their bar is committed, so the log never holds a
//! decision the state database lost; a crash between the two leaves lines
//! missing, which the restart writes again while it replays the session.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::store::StepRecord;
use crate::model::{Bar, Fill, Regime, Side, Signal, Symbol, Timestamp};
use crate::orchestrator::{Decision, FaultRecord, LifecycleEvent, OrderRecord, Recorder};
use crate::portfolio::RoundTrip;
use crate::time::iso;

/// One symbol's decision on one bar, owned.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub symbol: Symbol,
    pub bar: Bar,
    pub features: Vec<(String, f64)>,
    pub regime: Regime,
    pub signal: Option<Signal>,
}

/// Gathers a step's records as the loop produces them.
#[derive(Default)]
pub struct StepRecorder {
    pub step: StepRecord,
    pub decisions: Vec<DecisionRecord>,
    pub refusals: BTreeMap<String, u64>,
}

impl StepRecorder {
    pub fn clear(&mut self) {
        self.step.clear();
        self.decisions.clear();
        self.refusals.clear();
    }
}

impl Recorder for StepRecorder {
    fn decision(&mut self, d: &Decision<'_>) -> std::io::Result<()> {
        self.step.bars.push((d.symbol.clone(), *d.bar));
        self.decisions.push(DecisionRecord {
            symbol: d.symbol.clone(),
            bar: *d.bar,
            features: d.feature_names.iter().cloned().zip(d.features.iter().copied()).collect(),
            regime: d.regime,
            signal: d.signal,
        });
        Ok(())
    }
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> std::io::Result<()> {
        self.step.equity = Some((ts, cash, equity));
        Ok(())
    }
    fn order(&mut self, order: &OrderRecord) -> std::io::Result<()> {
        self.step.orders.push(order.clone());
        Ok(())
    }
    fn round_trip(&mut self, trip: &RoundTrip) -> std::io::Result<()> {
        self.step.trips.push(trip.clone());
        Ok(())
    }
    fn lifecycle(&mut self, event: &LifecycleEvent) -> std::io::Result<()> {
        self.step.lifecycle.push(event.clone());
        Ok(())
    }
    fn fill(&mut self, symbol: &Symbol, side: Side, fill: &Fill) -> std::io::Result<()> {
        self.step.fills.push((symbol.clone(), side, fill.clone()));
        Ok(())
    }
}

/// The refusals counted since `before` (which becomes `now`): a step's share
/// of the loop's running counts.
pub fn refusals_since(
    now: &BTreeMap<String, u64>,
    before: &mut BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let delta = now
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect();
    before.clone_from(now);
    delta
}

fn d(v: Decimal) -> String {
    v.normalize().to_string()
}

/// The audit line of one step: what each symbol's slices saw and decided,
/// and what the host did with it.
pub fn step_line(rec: &StepRecorder) -> Value {
    let (ts, cash, equity) = rec.step.equity.unwrap_or_default();
    let decisions: Vec<Value> = rec
        .decisions
        .iter()
        .map(|x| {
            let features: serde_json::Map<String, Value> =
                x.features.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({
                "symbol": x.symbol,
                "bar": {"ts": iso(x.bar.ts), "open": x.bar.open, "high": x.bar.high, "low": x.bar.low,
                        "close": x.bar.close, "volume": x.bar.volume},
                "features": features,
                "regime": x.regime,
                "signal": x.signal.map(|s| json!({
                    "action": s.action, "order_type": s.order_type, "limit_price": s.limit_price,
                    "stop_price": s.stop_price, "time_in_force": s.time_in_force,
                })),
            })
        })
        .collect();
    let orders: Vec<Value> = rec
        .step
        .orders
        .iter()
        .map(|o| {
            json!({
                "id": o.id, "symbol": o.symbol, "created": iso(o.created_at), "side": o.side,
                "type": o.order_type, "qty": d(o.quantity), "limit_price": o.limit_price.map(d),
                "stop_price": o.stop_price.map(d), "status": o.status, "filled_qty": d(o.filled_quantity),
                "avg_price": o.average_price.map(d), "fees": d(o.fees), "reason": o.reason,
            })
        })
        .collect();
    let fills: Vec<Value> = rec
        .step
        .fills
        .iter()
        .map(|(symbol, side, f)| {
            json!({"order_id": f.order_id, "symbol": symbol, "side": side, "ts": iso(f.ts),
                   "qty": d(f.quantity), "price": d(f.price), "fee": d(f.fee)})
        })
        .collect();
    json!({
        "kind": "step",
        "ts": iso(ts),
        "decisions": decisions,
        "orders": orders,
        "fills": fills,
        "refusals": rec.refusals,
        "cash": d(cash),
        "equity": d(equity),
    })
}

/// Writes a line for each fault in `faults` the log does not have yet.
pub fn log_faults(audit: &mut AuditLog, faults: &[FaultRecord]) -> Result<()> {
    let new: Vec<Value> = faults
        .iter()
        .skip(audit.faults)
        .map(|f| {
            json!({
                "kind": "fault", "at": f.at, "symbol": f.symbol, "slice": f.slice, "plugin": f.plugin,
                "fault": f.kind, "message": f.message, "action": f.action,
            })
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    audit.write_all(&new)
}

/// The append-only log file.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The time of the last step line in the file.
    pub last_step: Option<Timestamp>,
    /// Config generations the file has a line for.
    pub generations: std::collections::BTreeSet<u64>,
    /// Fault lines in the file: a restart replays the session and meets the
    /// same faults in the same order, so only those past this count are new.
    pub faults: usize,
}

impl AuditLog {
    /// Opens `path` for appending, cutting a last line a crash left unfinished.
    pub fn open(path: &Path) -> Result<Self> {
        let mut text = String::new();
        if path.exists() {
            text = crate::files::read_text_bounded(path, crate::files::RECORD_MAX, "the audit log")?;
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |i| i + 1);
                text.truncate(keep);
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(keep as u64))
                    .with_context(|| format!("cannot repair the audit log {}", path.display()))?;
            }
        }
        let last_step = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["kind"] == "step")
            .and_then(|v| v["ts"].as_str().and_then(|t| super::feed::parse_ts(t).ok()));
        let generations = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "config")
            .filter_map(|v| v["generation"].as_u64())
            .collect();
        let faults = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "fault")
            .count();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(AuditLog { path: path.to_owned(), file, last_step, generations, faults })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, line: &Value) -> Result<()> {
        self.write_all(std::slice::from_ref(line))
    }

    /// Appends `lines` in one write, so a crash keeps all or (after the
    /// repair in `open`) none of them.
    pub fn write_all(&mut self, lines: &[Value]) -> Result<()> {
        let mut text = String::new();
        for line in lines {
            text.push_str(&serde_json::to_string(line)?);
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        for line in lines {
            if line["kind"] == "fault" {
                self.faults += 1;
            } else if line["kind"] == "step" {
                self.last_step = line["ts"].as_str().and_then(|t| super::feed::parse_ts(t).ok());
            } else if let Some(g) = line["generation"].as_u64() {
                self.generations.insert(g);
            }
        }
        Ok(())
    }
}

/// Every line of an audit log, parsed.
pub fn read(path: &Path) -> Result<Vec<Value>> {
    let (file, _) = crate::files::open_regular(path, crate::files::RECORD_MAX, "the audit log")?;
    let mut lines = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {} is not JSON", path.display(), n + 1))?;
        lines.push(value);
    }
    Ok(lines)
}
