//! A run's evidence on disk: `equity.csv`, `trades.csv` and `orders.csv`,
//! written as the run goes (so a run that fails part-way still leaves its
//! records), and `summary.json` at the end, whether the run completed or not.

pub mod browser;
pub mod html;
mod series;
mod summary;

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

pub use series::{Series, Tee};
pub use summary::{
    DataSummary, ExecutionSummary, ExposureSummary, Metrics, OpenPosition, RiskRefusals, SliceSummary,
    Summary, Timing, metrics, peak_rss_mb,
};

use crate::model::{Fill, Side, Symbol};
use crate::orchestrator::{LifecycleEvent, OrderRecord, Recorder};
use crate::portfolio::RoundTrip;
use crate::time::{Timestamp, push_iso};

pub const TRADES_HEADER: &str = "symbol,entry_ts,entry_price,exit_ts,exit_price,qty,fees,pnl,side,return_pct";
pub const EQUITY_HEADER: &str = "timestamp,cash,equity";
pub const ORDERS_HEADER: &str = "id,symbol,created_ts,side,type,time_in_force,qty,limit_price,stop_price,status,filled_qty,avg_price,fees,closed_ts,reason";
pub const POSITIONS_HEADER: &str = "position_id,symbol,ts,state,qty";
pub const FILLS_HEADER: &str = "ts,order_id,symbol,side,qty,price,fee";

/// Writes a run's files into its folder.
pub struct RunWriter {
    dir: PathBuf,
    equity: BufWriter<File>,
    trades: BufWriter<File>,
    orders: BufWriter<File>,
    positions: BufWriter<File>,
    fills: BufWriter<File>,
    line: String,
    /// `cash` as last formatted: cash changes only on fills, so most rows reuse it.
    cash_cache: (Decimal, String),
}

impl RunWriter {
    /// Creates `dir` (which must not hold a previous run) and the CSV files with their headers.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str, header: &str| -> io::Result<BufWriter<File>> {
            let mut w = BufWriter::with_capacity(1 << 16, File::create(dir.join(name))?);
            writeln!(w, "{header}")?;
            Ok(w)
        };
        Ok(RunWriter {
            dir: dir.to_owned(),
            equity: open("equity.csv", EQUITY_HEADER)?,
            trades: open("trades.csv", TRADES_HEADER)?,
            orders: open("orders.csv", ORDERS_HEADER)?,
            positions: open("positions.csv", POSITIONS_HEADER)?,
            fills: open("fills.csv", FILLS_HEADER)?,
            line: String::with_capacity(256),
            cash_cache: (Decimal::MIN, String::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes the CSV files and writes `summary.json` and `report.html`.
    pub fn finish(mut self, summary: &Summary, series: &Series, trips: &[RoundTrip]) -> io::Result<()> {
        self.equity.flush()?;
        self.trades.flush()?;
        self.orders.flush()?;
        self.positions.flush()?;
        self.fills.flush()?;
        std::fs::write(self.dir.join("summary.json"), summary_json(summary)? + "\n")?;
        std::fs::write(self.dir.join("report.html"), html::render(summary, series, trips))
    }
}

/// `summary.json`'s text, which `--json` also prints.
pub fn summary_json(summary: &Summary) -> io::Result<String> {
    serde_json::to_string_pretty(summary).map_err(io::Error::other)
}

// Decimals in files are normalized: `12.5`, not `12.500000`.
use crate::model::push_decimal;

fn push_ts(line: &mut String, ts: Timestamp) {
    push_iso(line, ts);
}

impl Recorder for RunWriter {
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> io::Result<()> {
        if self.cash_cache.0 != cash {
            self.cash_cache.0 = cash;
            self.cash_cache.1.clear();
            push_decimal(&mut self.cash_cache.1, cash);
        }
        let line = &mut self.line;
        line.clear();
        push_ts(line, ts);
        line.push(',');
        line.push_str(&self.cash_cache.1);
        line.push(',');
        if equity == cash {
            line.push_str(&self.cash_cache.1);
        } else {
            push_decimal(line, equity);
        }
        line.push('\n');
        self.equity.write_all(line.as_bytes())
    }

    fn order(&mut self, o: &OrderRecord) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        let opt = |line: &mut String, d: Option<Decimal>| {
            if let Some(d) = d {
                push_decimal(line, d);
            }
        };
        write!(line, "{},{},", o.id, o.symbol).unwrap();
        push_ts(line, o.created_at);
        write!(line, ",{},{},{},", o.side.as_str(), o.order_type.as_str(), o.time_in_force.as_str()).unwrap();
        push_decimal(line, o.quantity);
        line.push(',');
        opt(line, o.limit_price);
        line.push(',');
        opt(line, o.stop_price);
        write!(line, ",{},", o.status.as_str()).unwrap();
        push_decimal(line, o.filled_quantity);
        line.push(',');
        opt(line, o.average_price);
        line.push(',');
        push_decimal(line, o.fees);
        line.push(',');
        if let Some(ts) = o.closed_at {
            push_ts(line, ts);
        }
        line.push(',');
        push_csv_text(line, &o.reason);
        line.push('\n');
        self.orders.write_all(line.as_bytes())
    }

    fn lifecycle(&mut self, e: &LifecycleEvent) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        write!(line, "{},{},", e.position_id, e.symbol).unwrap();
        push_ts(line, e.ts);
        write!(line, ",{},", e.state.as_str()).unwrap();
        push_decimal(line, e.quantity);
        line.push('\n');
        self.positions.write_all(line.as_bytes())
    }

    fn fill(&mut self, symbol: &Symbol, side: Side, f: &Fill) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        push_ts(line, f.ts);
        write!(line, ",{},{symbol},{},", f.order_id, side.as_str()).unwrap();
        push_decimal(line, f.quantity);
        line.push(',');
        push_decimal(line, f.price);
        line.push(',');
        push_decimal(line, f.fee);
        line.push('\n');
        self.fills.write_all(line.as_bytes())
    }

    fn round_trip(&mut self, t: &RoundTrip) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        write!(line, "{},", t.symbol).unwrap();
        push_ts(line, t.entry_ts);
        line.push(',');
        push_decimal(line, t.entry_price);
        line.push(',');
        push_ts(line, t.exit_ts);
        line.push(',');
        push_decimal(line, t.exit_price);
        line.push(',');
        push_decimal(line, t.quantity);
        line.push(',');
        push_decimal(line, t.fees);
        line.push(',');
        push_decimal(line, t.pnl);
        write!(line, ",{},", t.direction.as_str()).unwrap();
        let invested = t.entry_price * t.quantity;
        if !invested.is_zero() {
            push_decimal(line, (t.pnl / invested * Decimal::ONE_HUNDRED).round_dp(4));
        }
        line.push('\n');
        self.trades.write_all(line.as_bytes())
    }
}

/// Quotes a free-text CSV field when it needs quoting.
fn push_csv_text(line: &mut String, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&text.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(text);
    }
}
