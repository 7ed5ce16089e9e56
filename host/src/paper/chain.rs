//! A hash chain over the committed steps, so that committed history cannot
//! change unnoticed (an edited fill, deleted round trips, a flipped bit).
//!
//! Each step's commit stores, in `step_chain`, one line per table with the
//! rows that step wrote (its range of `seq`, how many rows, and the sha256 of
//! their canonical bytes), the order ids it wrote, and a digest of the ledger
//! state after it; and `hash = sha256(previous hash || that record)`. The
//! digests are computed from the rows as read back inside the commit's
//! transaction, by the same code a restart uses to check them, so the two
//! cannot disagree on what the canonical bytes are.
//!
//! This makes damage evident, not impossible: whoever can write the
//! database can also rewrite the chain. It catches the accidents and
//! careless edits that a resumed session would otherwise build on.

use std::fmt::Write as _;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::model::Timestamp;
use crate::time::iso;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS step_chain (ts INTEGER PRIMARY KEY, record TEXT NOT NULL, hash TEXT NOT NULL);
";

/// The hash before the first step.
const GENESIS: &str = "strata paper session";

/// Tables whose rows a step appends, numbered by `seq`.
const APPENDED: [(&str, &str); 3] = [
    ("fills", "SELECT seq, ts, order_id, symbol, side, qty, price, fee FROM fills"),
    (
        "round_trips",
        "SELECT seq, symbol, direction, entry_ts, entry_price, exit_ts, exit_price, qty, fees, pnl FROM round_trips",
    ),
    ("position_events", "SELECT seq, position_id, symbol, ts, state, qty FROM position_events"),
];

/// What is wrong with committed history.
#[derive(Debug)]
pub enum Damage {
    Sql(rusqlite::Error),
    /// The step at `ts` (the `index`-th, from 1) does not match its record.
    Step {
        index: u64,
        ts: Timestamp,
        what: String,
    },
    /// Something outside every step's record.
    Other(String),
}

impl From<rusqlite::Error> for Damage {
    fn from(e: rusqlite::Error) -> Self {
        Damage::Sql(e)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Sql(e) => write!(f, "{e}"),
            Damage::Step { index, ts, what } => write!(f, "step {index} (bar {}): {what}", iso(*ts)),
            Damage::Other(what) => f.write_str(what),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// sha256 and count of the rows `sql` returns, each value tagged with its
/// type and length so that no two different row sets give the same bytes.
fn rows_digest(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<(u64, String), Damage> {
    let mut stmt = conn.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query(args)?;
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        n += 1;
        hasher.update(b"R");
        for i in 0..columns {
            match row.get_ref(i)? {
                ValueRef::Null => hasher.update(b"N"),
                ValueRef::Integer(v) => {
                    hasher.update(b"I");
                    hasher.update(v.to_le_bytes());
                }
                ValueRef::Real(v) => {
                    hasher.update(b"F");
                    hasher.update(v.to_bits().to_le_bytes());
                }
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    hasher.update(b"T");
                    hasher.update((t.len() as u64).to_le_bytes());
                    hasher.update(t);
                }
            }
        }
    }
    Ok((n, hex(&hasher.finalize())))
}

/// The ledger state after the last commit: cash, holdings, working orders, risk day.
fn ledger_digest(conn: &Connection) -> Result<String, Damage> {
    let parts = [
        "SELECT cash, equity, fees_paid, borrow_paid, next_order_id, last_ts FROM ledger",
        "SELECT symbol, qty, mark FROM holdings ORDER BY symbol",
        "SELECT * FROM working_orders ORDER BY id",
        "SELECT state FROM risk_day",
    ];
    let mut all = String::new();
    for sql in parts {
        all += &rows_digest(conn, sql, [])?.1;
    }
    Ok(hex(&Sha256::digest(all.as_bytes())))
}

/// The lines of a step's record, in a fixed order:
/// `steps <n> <digest>`, `bars <n> <digest>`, `orders <ids> <n> <digest>`,
/// `<table> <from> <to> <n> <digest>` for each appended table, `ledger <digest>`.
fn step_lines(
    conn: &Connection,
    ts: Timestamp,
    order_ids: &str,
    ranges: &[(i64, i64)],
) -> Result<Vec<String>, Damage> {
    let mut lines = Vec::new();
    let (n, d) = rows_digest(conn, "SELECT ts, cash, equity FROM steps WHERE ts = ?1", [ts])?;
    lines.push(format!("steps {n} {d}"));
    let bars = "SELECT symbol, ts, open, high, low, close, volume FROM bars WHERE ts = ?1 ORDER BY symbol";
    let (n, d) = rows_digest(conn, bars, [ts])?;
    lines.push(format!("bars {n} {d}"));
    // Ids are digits and commas only (written by `commit`), so they can go in the query.
    let ids = if order_ids.is_empty() { "-" } else { order_ids };
    let (n, d) = if order_ids.is_empty() {
        (0, hex(&Sha256::digest(b"")))
    } else {
        rows_digest(conn, &format!("SELECT * FROM orders WHERE id IN ({order_ids}) ORDER BY id"), [])?
    };
    lines.push(format!("orders {ids} {n} {d}"));
    for ((table, select), (from, to)) in APPENDED.iter().zip(ranges) {
        let sql = format!("{select} WHERE seq > ?1 AND seq <= ?2 ORDER BY seq");
        let (n, d) = rows_digest(conn, &sql, params![from, to])?;
        lines.push(format!("{table} {from} {to} {n} {d}"));
    }
    Ok(lines)
}

fn max_seq(conn: &Connection, table: &str) -> Result<i64, Damage> {
    Ok(conn.query_row(&format!("SELECT COALESCE(MAX(seq), 0) FROM {table}"), [], |r| r.get(0))?)
}

fn last_hash(conn: &Connection) -> Result<(String, Vec<i64>), Damage> {
    let last: Option<(String, String)> = conn
        .query_row("SELECT record, hash FROM step_chain ORDER BY ts DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match last {
        None => Ok((hex(&Sha256::digest(GENESIS.as_bytes())), vec![0; APPENDED.len()])),
        Some((record, hash)) => Ok((hash, appended_ends(&record))),
    }
}

/// Where each appended table's rows ended after a step, from its record.
fn appended_ends(record: &str) -> Vec<i64> {
    APPENDED
        .iter()
        .map(|(table, _)| {
            record
                .lines()
                .find_map(|l| l.strip_prefix(table).and_then(|r| r.strip_prefix(' ')))
                .and_then(|r| r.split(' ').nth(1))
                .and_then(|to| to.parse().ok())
                .unwrap_or(-1)
        })
        .collect()
}

/// Chains the step at `ts`, inside the transaction that committed its rows.
pub fn commit(conn: &Connection, ts: Timestamp, order_ids: &[u64]) -> Result<(), Damage> {
    let (previous, ends) = last_hash(conn)?;
    let mut ranges = Vec::new();
    for ((table, _), from) in APPENDED.iter().zip(ends) {
        ranges.push((from, max_seq(conn, table)?));
    }
    let ids: Vec<String> = order_ids.iter().map(u64::to_string).collect();
    let mut lines = step_lines(conn, ts, &ids.join(","), &ranges)?;
    lines.push(format!("ledger {}", ledger_digest(conn)?));
    let record = lines.join("\n");
    let hash = chain_hash(&previous, ts, &record);
    conn.execute("INSERT INTO step_chain (ts, record, hash) VALUES (?1, ?2, ?3)", params![ts, record, hash])?;
    Ok(())
}

fn chain_hash(previous: &str, ts: Timestamp, record: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(ts.to_le_bytes());
    hasher.update(record.as_bytes());
    hex(&hasher.finalize())
}

/// Checks every committed step against the chain, from the first: each
/// step's rows against its record, each record against its hash, and that no
/// row exists outside every step's record.
pub fn verify(conn: &Connection) -> Result<(), Damage> {
    let steps: Vec<Timestamp> = conn
        .prepare("SELECT ts FROM steps ORDER BY ts")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let chained: Vec<(Timestamp, String, String)> = conn
        .prepare("SELECT ts, record, hash FROM step_chain ORDER BY ts")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut previous = hex(&Sha256::digest(GENESIS.as_bytes()));
    let mut ends = vec![0i64; APPENDED.len()];
    for (k, (ts, record, hash)) in chained.iter().enumerate() {
        let index = k as u64 + 1;
        let damaged = |what: String| Damage::Step { index, ts: *ts, what };
        match steps.get(k) {
            Some(s) if s == ts => {}
            Some(s) if s < ts => {
                return Err(Damage::Step {
                    index,
                    ts: *s,
                    what: "the steps table has a row no commit made".into(),
                });
            }
            _ => return Err(damaged("its row in the steps table is missing".into())),
        }
        if chain_hash(&previous, *ts, record) != *hash {
            return Err(damaged("its record in step_chain does not match the chain of hashes".into()));
        }
        let lines: Vec<&str> = record.lines().collect();
        let order_ids = lines.get(2).and_then(|l| l.split(' ').nth(1)).unwrap_or("");
        let order_ids = if order_ids == "-" { "" } else { order_ids };
        if !order_ids.bytes().all(|b| b.is_ascii_digit() || b == b',') {
            return Err(damaged("its record in step_chain is malformed".into()));
        }
        let recorded_ends = appended_ends(record);
        let ranges: Vec<(i64, i64)> = ends.iter().copied().zip(recorded_ends.iter().copied()).collect();
        let found = step_lines(conn, *ts, order_ids, &ranges)?;
        for (&want, got) in lines.iter().zip(&found) {
            if want != got.as_str() {
                return Err(damaged(describe(want, got)));
            }
        }
        if lines.len() != found.len() + 1 {
            return Err(damaged("its record in step_chain is malformed".into()));
        }
        previous.clone_from(hash);
        ends = recorded_ends;
    }
    if let Some(extra) = steps.get(chained.len()) {
        let index = chained.len() as u64 + 1;
        return Err(Damage::Step {
            index,
            ts: *extra,
            what: "the steps table has a row no commit made".into(),
        });
    }
    for ((table, _), end) in APPENDED.iter().zip(&ends) {
        if max_seq(conn, table)? > *end {
            return Err(Damage::Other(format!("the {table} table has rows after the last committed step")));
        }
    }
    if let Some((ts, record, _)) = chained.last() {
        let want = record.lines().last().unwrap_or_default();
        if want != format!("ledger {}", ledger_digest(conn)?) {
            let index = chained.len() as u64;
            let what =
                "the ledger, holdings, working orders or risk state differ from what it committed".into();
            return Err(Damage::Step { index, ts: *ts, what });
        }
    }
    Ok(())
}

/// Which table of a step differs, and how.
fn describe(want: &str, got: &str) -> String {
    let table = want.split(' ').next().unwrap_or("?");
    let count = |line: &str| line.split(' ').rev().nth(1).map(str::to_owned).unwrap_or_default();
    let (committed, now) = (count(want), count(got));
    if committed != now {
        format!(
            "the {table} table holds {now} of its rows, {committed} were committed (rows deleted or added)"
        )
    } else {
        format!("its rows in the {table} table differ from what was committed (edited or corrupted)")
    }
}
