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
    DataSummary, ExecutionSummary, Metrics, OpenPosition, SliceSummary, Summary, Timing, metrics,
};

use crate::orchestrator::{OrderRecord, Recorder};
use crate::portfolio::RoundTrip;
use crate::time::{Timestamp, write_iso};

pub const TRADES_HEADER: &str = "symbol,entry_ts,entry_price,exit_ts,exit_price,qty,fees,pnl,side,return_pct";
pub const EQUITY_HEADER: &str = "timestamp,cash,equity";
pub const ORDERS_HEADER: &str = "id,symbol,created_ts,side,type,time_in_force,qty,limit_price,stop_price,status,filled_qty,avg_price,fees,closed_ts,reason";

/// Writes a run's files into its folder.
pub struct RunWriter {
    dir: PathBuf,
    equity: BufWriter<File>,
    trades: BufWriter<File>,
    orders: BufWriter<File>,
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
        std::fs::write(self.dir.join("summary.json"), summary_json(summary)? + "\n")?;
        std::fs::write(self.dir.join("report.html"), html::render(summary, series, trips))
    }
}

/// `summary.json`'s text, which `--json` also prints.
pub fn summary_json(summary: &Summary) -> io::Result<String> {
    serde_json::to_string_pretty(summary).map_err(io::Error::other)
}

/// Decimals in files are normalized: `12.5`, not `12.500000`.
fn push_decimal(line: &mut String, d: Decimal) {
    write!(line, "{}", d.normalize()).expect("write to String");
}

fn push_ts(line: &mut String, ts: Timestamp) {
    write_iso(line, ts).expect("write to String");
}

impl Recorder for RunWriter {
    fn equity(&mut self, ts: Timestamp, cash: Decimal, equity: Decimal) -> io::Result<()> {
        if self.cash_cache.0 != cash {
            self.cash_cache = (cash, cash.normalize().to_string());
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
