//! The session's durable state: an SQLite database in WAL mode, written in
//! one transaction per processed timestamp (every symbol's bar at it, the
//! orders, fills, round trips and position changes it made, the ledger, the
//! risk gate's day state, the working orders and each slice's health), so a
//! crash leaves either the whole bar or none of it. Money is stored as exact
//! decimal text.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;

use crate::model::{Bar, Fill, Side, Symbol, Timestamp};
use crate::orchestrator::{Backtest, LifecycleEvent, OrderRecord};
use crate::portfolio::RoundTrip;
use crate::time::iso;

/// 2: committed steps are chained by hash (`step_chain`, see [`super::chain`]).
const SCHEMA_VERSION: &str = "2";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (ts INTEGER PRIMARY KEY, cash TEXT NOT NULL, equity TEXT NOT NULL, committed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (symbol TEXT NOT NULL, ts INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL,
    low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, PRIMARY KEY (symbol, ts));
CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, created_ts INTEGER NOT NULL,
    side TEXT NOT NULL, type TEXT NOT NULL, time_in_force TEXT NOT NULL, qty TEXT NOT NULL, limit_price TEXT,
    stop_price TEXT, status TEXT NOT NULL, filled_qty TEXT NOT NULL, avg_price TEXT, fees TEXT NOT NULL,
    closed_ts INTEGER, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS working_orders (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, created_ts INTEGER NOT NULL,
    side TEXT NOT NULL, type TEXT NOT NULL, time_in_force TEXT NOT NULL, qty TEXT NOT NULL, limit_price TEXT,
    stop_price TEXT, filled_qty TEXT NOT NULL, fees TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fills (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, order_id INTEGER NOT NULL,
    symbol TEXT NOT NULL, side TEXT NOT NULL, qty TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS round_trips (seq INTEGER PRIMARY KEY, symbol TEXT NOT NULL, direction TEXT NOT NULL,
    entry_ts INTEGER NOT NULL, entry_price TEXT NOT NULL, exit_ts INTEGER NOT NULL, exit_price TEXT NOT NULL,
    qty TEXT NOT NULL, fees TEXT NOT NULL, pnl TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS position_events (seq INTEGER PRIMARY KEY, position_id INTEGER NOT NULL,
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, state TEXT NOT NULL, qty TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS holdings (symbol TEXT PRIMARY KEY, qty TEXT NOT NULL, mark TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY CHECK (id = 1), cash TEXT NOT NULL, equity TEXT NOT NULL,
    fees_paid TEXT NOT NULL, borrow_paid TEXT NOT NULL, next_order_id INTEGER NOT NULL, last_ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS risk_day (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slice_health (symbol TEXT NOT NULL, slice TEXT NOT NULL, plugin TEXT NOT NULL,
    calls INTEGER NOT NULL, failures INTEGER NOT NULL, busy_ms REAL NOT NULL, slowest_call_ms REAL NOT NULL,
    last_error TEXT, replacements INTEGER NOT NULL, PRIMARY KEY (symbol, slice));
CREATE TABLE IF NOT EXISTS config_versions (generation INTEGER PRIMARY KEY, after_ts INTEGER,
    file_text TEXT NOT NULL, config_toml TEXT NOT NULL, changed TEXT NOT NULL, recorded_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slice_snapshots (symbol TEXT NOT NULL, slice TEXT NOT NULL, ts INTEGER NOT NULL,
    state BLOB NOT NULL, PRIMARY KEY (symbol, slice));
CREATE TABLE IF NOT EXISTS session_events (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL);
";

/// Why the state database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {}: {source}", path.display())]
    Sql { path: PathBuf, source: rusqlite::Error },
    #[error("state database {} belongs to another session: {message}", path.display())]
    Mismatch { path: PathBuf, message: String },
    #[error(
        "state database {} is in use by another paper session ({holder}); stop that one first, \
         or give this one its own --out or --state",
        path.display()
    )]
    InUse { path: PathBuf, holder: String },
    #[error("state database {}: cannot lock {}: {source}", path.display(), lock.display())]
    Lock { path: PathBuf, lock: PathBuf, source: std::io::Error },
    #[error(
        "state database {} {problem}; it cannot be resumed: restore a backup of it, or start a new session \
         with another --state (or --out)",
        path.display()
    )]
    Unusable { path: PathBuf, problem: String },
}

/// What one timestamp produced, gathered while the loop processes it.
#[derive(Debug, Default)]
pub struct StepRecord {
    pub bars: Vec<(Symbol, Bar)>,
    pub orders: Vec<OrderRecord>,
    pub fills: Vec<(Symbol, Side, Fill)>,
    pub trips: Vec<RoundTrip>,
    pub lifecycle: Vec<LifecycleEvent>,
    pub equity: Option<(Timestamp, Decimal, Decimal)>,
}

impl StepRecord {
    pub fn clear(&mut self) {
        *self = StepRecord::default();
    }
}

/// A slice's own state (the optional `snapshot` interface) after the bar at `ts`.
#[derive(Debug, Clone)]
pub struct SliceSnapshot {
    pub symbol: Symbol,
    pub slice: crate::model::SliceKind,
    pub ts: Timestamp,
    pub state: Vec<u8>,
}

/// A config version as stored.
#[derive(Debug, Clone)]
pub struct ConfigVersion {
    pub generation: u32,
    /// The version took effect after this bar (`None`: from the first bar).
    pub after_ts: Option<Timestamp>,
    pub file_text: String,
    pub config_toml: String,
}

/// The ledger as last committed, to check a resumed session against.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedLedger {
    pub cash: Decimal,
    pub equity: Decimal,
    pub fees_paid: Decimal,
    pub next_order_id: u64,
    pub last_ts: Timestamp,
    pub risk: String,
}

pub struct Store {
    path: PathBuf,
    conn: Connection,
    /// `<database>.lock`, locked for as long as the store is open.
    _lock: std::fs::File,
    /// Live mode: the venue router's journal of the step being committed,
    /// written in the step's transaction (see `live::router`).
    staged_venue: Vec<String>,
}

/// Live mode's table: every answer the venue gave, in the order the
/// session asked, committed with the step that asked.
const VENUE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS venue_journal (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, record TEXT NOT NULL);
";

/// Takes `<database>.lock` for this process. SQLite's own locking keeps
/// each transaction whole, but two sessions taking turns on one database
/// would each apply the other's bars again; the second is refused instead.
/// The kernel releases the lock when the process ends, however it ends.
fn lock_database(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = PathBuf::from(name);
    let io = |source| StoreError::Lock { path: path.to_owned(), lock: lock.clone(), source };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("pid {pid}"),
            };
            return Err(StoreError::InUse { path: path.to_owned(), holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).and_then(|()| file.rewind()).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

/// Whether the database file exists; refuses one that cannot be a session's
/// state: not a regular file, empty (truncated), or not SQLite.
fn check_file(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read;
    let unusable =
        |problem: &str| StoreError::Unusable { path: path.to_owned(), problem: problem.to_owned() };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unusable(&format!("cannot be read: {e}"))),
    };
    if !meta.is_file() {
        return Err(unusable("is not a regular file"));
    }
    if meta.len() == 0 {
        return Err(unusable("is empty (0 bytes): the session's history is gone"));
    }
    let mut magic = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    if read.is_err() || &magic != b"SQLite format 3\0" {
        return Err(unusable("is not an SQLite database"));
    }
    Ok(true)
}

/// Every table a session writes must already be in an existing database.
fn check_tables(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sql { path: path.to_owned(), source };
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").map_err(sql)?;
    let names: Vec<String> =
        stmt.query_map([], |r| r.get(0)).map_err(sql)?.collect::<Result<_, _>>().map_err(sql)?;
    let wanted = SCHEMA
        .split("CREATE TABLE IF NOT EXISTS ")
        .skip(1)
        .chain(super::chain::SCHEMA.split("CREATE TABLE IF NOT EXISTS ").skip(1));
    let missing: Vec<&str> =
        wanted.filter_map(|t| t.split([' ', '(']).next()).filter(|t| !names.iter().any(|n| n == t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Unusable {
        path: path.to_owned(),
        problem: format!("lacks the tables {} (damaged, or from an older version)", missing.join(", ")),
    })
}

fn dec(text: String) -> Decimal {
    text.parse().unwrap_or_default()
}

impl Store {
    /// Opens (or creates) the database in WAL mode with full sync: a
    /// committed bar survives a crash of the process or of the machine.
    /// A database that exists must be a whole session's state, its
    /// committed history intact (checked from the first step); it never
    /// silently becomes a new session.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = lock_database(path)?;
        let existed = check_file(path)?;
        let sql = |source| StoreError::Sql { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        if existed {
            check_tables(&conn, path)?;
        }
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(super::chain::SCHEMA).map_err(sql)?;
        super::chain::verify(&conn).map_err(|damage| match damage {
            super::chain::Damage::Sql(source) => StoreError::Sql { path: path.to_owned(), source },
            damage => StoreError::Unusable {
                path: path.to_owned(),
                problem: format!("has damaged committed history at {damage}"),
            },
        })?;
        Ok(Store { path: path.to_owned(), conn, _lock: lock, staged_venue: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sql { path: self.path.clone(), source }
    }

    /// Records the session's identity on first use; refuses a database made
    /// for other symbols or another start cash.
    pub fn check_identity(&self, symbols: &[Symbol], start_cash: Decimal) -> Result<(), StoreError> {
        let want = [
            ("schema", SCHEMA_VERSION.to_owned()),
            ("symbols", symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")),
            ("start_cash", start_cash.normalize().to_string()),
        ];
        for (key, value) in want {
            let found: Option<String> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(self.sql())?;
            match found {
                None => {
                    self.conn
                        .execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                        .map_err(self.sql())?;
                }
                Some(found) if found != value => {
                    return Err(StoreError::Mismatch {
                        path: self.path.clone(),
                        message: format!(
                            "its {key} is `{found}`, this run's is `{value}` (use another --out for a new session)"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.sql())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
            .map_err(self.sql())?;
        Ok(())
    }

    /// The last committed timestamp: the feed's position.
    pub fn last_step(&self) -> Result<Option<Timestamp>, StoreError> {
        self.conn.query_row("SELECT MAX(ts) FROM steps", [], |r| r.get(0)).map_err(self.sql())
    }

    pub fn step_count(&self) -> Result<u64, StoreError> {
        self.conn.query_row("SELECT COUNT(*) FROM steps", [], |r| r.get(0)).map_err(self.sql())
    }

    /// Every committed bar, by symbol and time.
    pub fn bars(&self) -> Result<std::collections::BTreeMap<(String, Timestamp), Bar>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT symbol, ts, open, high, low, close, volume FROM bars")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                let bar = Bar {
                    ts: r.get(1)?,
                    open: r.get(2)?,
                    high: r.get(3)?,
                    low: r.get(4)?,
                    close: r.get(5)?,
                    volume: r.get(6)?,
                };
                Ok(((r.get::<_, String>(0)?, bar.ts), bar))
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    pub fn committed_ledger(&self) -> Result<Option<CommittedLedger>, StoreError> {
        self.conn
            .query_row(
                "SELECT l.cash, l.equity, l.fees_paid, l.next_order_id, l.last_ts, r.state FROM ledger l, risk_day r",
                [],
                |r| {
                    Ok(CommittedLedger {
                        cash: dec(r.get(0)?),
                        equity: dec(r.get(1)?),
                        fees_paid: dec(r.get(2)?),
                        next_order_id: r.get(3)?,
                        last_ts: r.get(4)?,
                        risk: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql())
    }

    /// Every slice's last persisted state.
    pub fn snapshots(&self) -> Result<Vec<SliceSnapshot>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT symbol, slice, ts, state FROM slice_snapshots").map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?)))
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (symbol, slice, ts, state) = row.map_err(self.sql())?;
            let (Ok(symbol), Some(slice)) =
                (Symbol::new(&symbol), crate::model::SliceKind::from_name(&slice))
            else {
                continue;
            };
            out.push(SliceSnapshot { symbol, slice, ts, state });
        }
        Ok(out)
    }

    pub fn config_versions(&self) -> Result<Vec<ConfigVersion>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT generation, after_ts, file_text, config_toml FROM config_versions ORDER BY generation")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ConfigVersion {
                    generation: r.get(0)?,
                    after_ts: r.get(1)?,
                    file_text: r.get(2)?,
                    config_toml: r.get(3)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    pub fn record_config(&self, version: &ConfigVersion, changed: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO config_versions (generation, after_ts, file_text, config_toml, changed, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    version.generation,
                    version.after_ts,
                    version.file_text,
                    version.config_toml,
                    changed,
                    iso(now_ms())
                ],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    pub fn session_event(&self, event: &str) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT INTO session_events (at, event) VALUES (?1, ?2)", params![iso(now_ms()), event])
            .map_err(self.sql())?;
        Ok(())
    }

    /// Commits one processed timestamp and the state after it, atomically.
    /// Returns how long the commit took.
    pub fn commit_step(
        &mut self,
        step: &StepRecord,
        loop_state: &Backtest<'_>,
        snapshots: &[SliceSnapshot],
    ) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let Some((ts, cash, equity)) = step.equity else { return Ok(Duration::ZERO) };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let s = |d: Decimal| d.normalize().to_string();
            let so = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
            tx.execute(
                "INSERT INTO steps (ts, cash, equity, committed_at) VALUES (?1, ?2, ?3, ?4)",
                params![ts, s(cash), s(equity), iso(now_ms())],
            )
            .map_err(sql)?;
            let mut bar = tx
                .prepare_cached("INSERT INTO bars (symbol, ts, open, high, low, close, volume) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .map_err(sql)?;
            for (symbol, b) in &step.bars {
                bar.execute(params![symbol.as_str(), b.ts, b.open, b.high, b.low, b.close, b.volume])
                    .map_err(sql)?;
            }
            let mut order = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO orders (id, symbol, created_ts, side, type, time_in_force, qty, limit_price,
                     stop_price, status, filled_qty, avg_price, fees, closed_ts, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .map_err(sql)?;
            for o in &step.orders {
                order
                    .execute(params![
                        o.id.0,
                        o.symbol.as_str(),
                        o.created_at,
                        o.side.as_str(),
                        o.order_type.as_str(),
                        o.time_in_force.as_str(),
                        s(o.quantity),
                        so(o.limit_price),
                        so(o.stop_price),
                        o.status.as_str(),
                        s(o.filled_quantity),
                        so(o.average_price),
                        s(o.fees),
                        o.closed_at,
                        o.reason
                    ])
                    .map_err(sql)?;
            }
            let mut fill = tx
                .prepare_cached(
                    "INSERT INTO fills (ts, order_id, symbol, side, qty, price, fee) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            for (symbol, side, f) in &step.fills {
                fill.execute(params![
                    f.ts,
                    f.order_id.0,
                    symbol.as_str(),
                    side.as_str(),
                    s(f.quantity),
                    s(f.price),
                    s(f.fee)
                ])
                .map_err(sql)?;
            }
            let mut trip = tx
                .prepare_cached(
                    "INSERT INTO round_trips (symbol, direction, entry_ts, entry_price, exit_ts, exit_price, qty, fees, pnl)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql)?;
            for t in &step.trips {
                trip.execute(params![
                    t.symbol.as_str(),
                    t.direction.as_str(),
                    t.entry_ts,
                    s(t.entry_price),
                    t.exit_ts,
                    s(t.exit_price),
                    s(t.quantity),
                    s(t.fees),
                    s(t.pnl)
                ])
                .map_err(sql)?;
            }
            let mut life = tx
                .prepare_cached(
                    "INSERT INTO position_events (position_id, symbol, ts, state, qty) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            for e in &step.lifecycle {
                life.execute(params![
                    e.position_id,
                    e.symbol.as_str(),
                    e.ts,
                    e.state.as_str(),
                    s(e.quantity)
                ])
                .map_err(sql)?;
            }
            tx.execute("DELETE FROM working_orders", []).map_err(sql)?;
            let mut working = tx
                .prepare_cached(
                    "INSERT INTO working_orders (id, symbol, created_ts, side, type, time_in_force, qty, limit_price,
                     stop_price, filled_qty, fees) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sql)?;
            for (_, w) in loop_state.working_orders() {
                let o = w.order;
                working
                    .execute(params![
                        o.id.0,
                        o.symbol.as_str(),
                        o.created_at,
                        o.side.as_str(),
                        o.order_type.as_str(),
                        o.time_in_force.as_str(),
                        s(o.quantity),
                        so(o.limit_price),
                        so(o.stop_price),
                        s(w.filled),
                        s(w.fees)
                    ])
                    .map_err(sql)?;
            }
            let ledger = loop_state.ledger();
            tx.execute("DELETE FROM holdings", []).map_err(sql)?;
            for (symbol, qty, mark) in ledger.open_positions() {
                tx.execute(
                    "INSERT INTO holdings (symbol, qty, mark) VALUES (?1, ?2, ?3)",
                    params![symbol.as_str(), s(qty), s(mark)],
                )
                .map_err(sql)?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO ledger (id, cash, equity, fees_paid, borrow_paid, next_order_id, last_ts)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s(ledger.cash()),
                    s(ledger.equity()),
                    s(ledger.fees_paid()),
                    s(ledger.borrow_paid()),
                    loop_state.next_order_id(),
                    ts
                ],
            )
            .map_err(sql)?;
            let risk = serde_json::to_string(&loop_state.risk_state()).unwrap_or_default();
            tx.execute("INSERT OR REPLACE INTO risk_day (id, state) VALUES (1, ?1)", [risk]).map_err(sql)?;
            let mut health = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO slice_health (symbol, slice, plugin, calls, failures, busy_ms,
                     slowest_call_ms, last_error, replacements) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql)?;
            for h in loop_state.health() {
                health
                    .execute(params![
                        h.symbol.as_str(),
                        h.slice.as_str(),
                        h.plugin,
                        h.calls,
                        h.failures,
                        h.busy_ms,
                        h.slowest_call_ms,
                        h.last_error,
                        h.replacements
                    ])
                    .map_err(sql)?;
            }
            let mut snapshot = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO slice_snapshots (symbol, slice, ts, state) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            for s in snapshots {
                snapshot.execute(params![s.symbol.as_str(), s.slice.as_str(), s.ts, s.state]).map_err(sql)?;
            }
        }
        if !self.staged_venue.is_empty() {
            let mut journal =
                tx.prepare_cached("INSERT INTO venue_journal (ts, record) VALUES (?1, ?2)").map_err(sql)?;
            for record in &self.staged_venue {
                journal.execute(params![ts, record]).map_err(sql)?;
            }
        }
        let order_ids: Vec<u64> = step.orders.iter().map(|o| o.id.0).collect();
        super::chain::commit(&tx, ts, &order_ids).map_err(|damage| match damage {
            super::chain::Damage::Sql(source) => StoreError::Sql { path: path.clone(), source },
            other => {
                StoreError::Unusable { path: path.clone(), problem: format!("cannot chain step: {other}") }
            }
        })?;
        tx.commit().map_err(sql)?;
        self.staged_venue.clear();
        Ok(started.elapsed())
    }

    /// Live mode: creates the venue journal's table if it is not there.
    pub fn enable_venue_journal(&self) -> Result<(), StoreError> {
        self.conn.execute_batch(VENUE_SCHEMA).map_err(self.sql())
    }

    /// Live mode: the venue router's records of the step about to be committed.
    pub fn stage_venue_journal(&mut self, records: Vec<String>) {
        self.staged_venue.extend(records);
    }

    /// Live mode: every committed venue record, in order.
    pub fn venue_journal(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT record FROM venue_journal ORDER BY seq").map_err(self.sql())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.sql())?;
        rows.collect::<Result<Vec<String>, _>>().map_err(self.sql())
    }

    /// Rows of a query as CSV lines (for the run folder's files).
    pub fn export_csv(
        &self,
        query: &str,
        out: &Path,
        header: &str,
    ) -> Result<(), Box<dyn std::error::Error>> {
        use std::io::Write;
        let mut stmt = self.conn.prepare(query)?;
        let columns = stmt.column_count();
        let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
        writeln!(file, "{header}")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let mut fields = Vec::with_capacity(columns);
            for i in 0..columns {
                let v: rusqlite::types::Value = row.get(i)?;
                fields.push(match v {
                    rusqlite::types::Value::Null => String::new(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(t) if t.contains([',', '"', '\n']) => {
                        format!("\"{}\"", t.replace('"', "\"\""))
                    }
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(_) => String::new(),
                });
            }
            writeln!(file, "{}", fields.join(","))?;
        }
        file.flush()?;
        Ok(())
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
