//! Feeds: threads that append bars to `<run>/feed/<SYMBOL>.csv`, the files
//! the data slice follows (csv-data with `follow = true`). Bars therefore
//! still reach the loop through the data slice and its sandbox; the feed
//! only decides when a bar exists.
//!
//! A feed appends every symbol's bars for a time while holding the feed
//! lock, and the loop holds it while it reads, so the loop never sees one
//! symbol's bar for a time without the others' (which would order decisions
//! differently from a backtest on the same bars).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::status::SharedStatus;
use crate::model::{Symbol, Timestamp};
use crate::time::{iso, parse_date};

pub const HEADER: &str = "timestamp,open,high,low,close,volume";

/// Shared by the feed (while appending) and the loop (while reading).
pub type FeedLock = Arc<Mutex<()>>;

/// Parses the timestamps csv-data accepts: `2024-01-05` or
/// `2024-01-05T13:00:00Z` (with optional `.mmm`).
pub fn parse_ts(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    let Some((date, time)) = text.split_once('T') else { return parse_date(text) };
    let day = parse_date(date)?;
    let bad = || format!("`{text}` is not a UTC time like 2024-01-05T13:00:00Z");
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3 || millis.len() > 3 {
        return Err(bad());
    }
    let n = |s: &str, max: i64| s.parse::<i64>().ok().filter(|v| (0..=max).contains(v)).ok_or_else(bad);
    let (h, m, s) = (n(parts[0], 23)?, n(parts[1], 59)?, n(parts[2], 59)?);
    let ms = format!("{millis:0<3}").parse::<i64>().map_err(|_| bad())?;
    Ok(day + ((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// The feed file of `symbol`: created with `comments` and the header if it
/// does not exist; else a last row cut short by a crash is removed. Returns
/// the time of its last row.
pub fn prepare_file(dir: &Path, symbol: &Symbol, comments: &[String]) -> Result<Option<Timestamp>> {
    let path = file_of(dir, symbol);
    if !path.exists() {
        let mut text = String::new();
        for c in comments {
            text.push_str(&format!("# {c}\n"));
        }
        text.push_str(HEADER);
        text.push('\n');
        let partial = path.with_extension("csv.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("cannot create the feed file {}", path.display()))?;
        return Ok(None);
    }
    // The host's own file, but in a folder anyone with the session's rights
    // can touch: checked as a regular file within the records cap first, so
    // a FIFO or device in its place cannot stop the session.
    crate::files::open_regular(&path, crate::files::RECORD_MAX, "feed file")?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the feed file {}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text).with_context(|| format!("cannot read {}", path.display()))?;
    if !text.ends_with('\n') {
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        file.set_len(keep as u64)?;
        file.seek(SeekFrom::End(0))?;
        text.truncate(keep);
        tracing::warn!("{}: removed a last row cut short by a crash", path.display());
    }
    let last = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.eq_ignore_ascii_case(HEADER))
        .map(|l| parse_ts(l.split(',').next().unwrap_or_default()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{}: last row: {e}", path.display()))?;
    Ok(last)
}

pub fn file_of(dir: &Path, symbol: &Symbol) -> PathBuf {
    dir.join(format!("{symbol}.csv"))
}

/// Appends rows to feed files, each write flushed to disk.
pub struct Appender {
    dir: PathBuf,
}

impl Appender {
    pub fn new(dir: &Path) -> Self {
        Appender { dir: dir.to_owned() }
    }

    pub fn append(&self, symbol: &Symbol, rows: &[String]) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut file = OpenOptions::new().append(true).open(file_of(&self.dir, symbol))?;
        let mut text = String::new();
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        // One write per symbol and tick: the data slice never sees half a tick
        // (it holds the feed lock while reading), and a crash leaves at most
        // one torn last row, which `prepare_file` removes.
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

/// A CSV file played as if live: a row becomes visible when real time since
/// the start, times `speed`, reaches its distance from the first row played.
pub struct ReplayFeed {
    /// Per symbol: rows (time, line) still to play.
    pub pending: Vec<(Symbol, Vec<(Timestamp, String)>)>,
    /// Bar time per real second; `None` plays everything at once.
    pub speed: Option<f64>,
}

/// Rows of a CSV file: each one's time and its text.
pub type Rows = Vec<(Timestamp, String)>;

/// Comment lines before the header of a source CSV, and its rows inside
/// `[from, to]` that come after `after`.
pub fn read_source(
    path: &Path,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    after: Option<Timestamp>,
) -> Result<(Vec<String>, Rows)> {
    let (file, _) = crate::files::open_regular(path, crate::files::RECORD_MAX, "the replay source")?;
    let mut comments = Vec::new();
    let mut rows = Vec::new();
    let mut header = false;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let trimmed = line.trim();
        if !header {
            if let Some(c) = trimmed.strip_prefix('#') {
                comments.push(c.trim().to_owned());
            } else if trimmed.eq_ignore_ascii_case(HEADER) {
                header = true;
            } else if !trimmed.is_empty() {
                bail!("{} line {}: expected the header `{HEADER}`", path.display(), n + 1);
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        let ts = parse_ts(trimmed.split(',').next().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
        if from.is_some_and(|f| ts < f) || to.is_some_and(|t| ts > t) || after.is_some_and(|a| ts <= a) {
            continue;
        }
        rows.push((ts, trimmed.to_owned()));
    }
    if !header {
        bail!("{} has no header `{HEADER}`", path.display());
    }
    Ok((comments, rows))
}

impl ReplayFeed {
    /// Plays the rows on a thread until they run out or `stop` is set.
    pub fn spawn(
        self,
        appender: Appender,
        lock: FeedLock,
        wake: Sender<()>,
        status: SharedStatus,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("replay-feed".into())
            .spawn(move || {
                if let Err(e) = self.play(&appender, &lock, &wake, &status, &stop) {
                    let mut s = status.lock().expect("status");
                    s.feed.errors += 1;
                    s.feed.last_error = Some(format!("{e:#}"));
                    tracing::error!("replay feed stopped: {e:#}");
                }
                let _ = wake.send(());
            })
            .expect("spawn the feed thread")
    }

    fn play(
        mut self,
        appender: &Appender,
        lock: &FeedLock,
        wake: &Sender<()>,
        status: &SharedStatus,
        stop: &AtomicBool,
    ) -> Result<()> {
        let first = self.pending.iter().filter_map(|(_, rows)| rows.first().map(|r| r.0)).min();
        let started = Instant::now();
        let mut cursor = vec![0usize; self.pending.len()];
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // The bar time the replay has reached.
            let reached = match (self.speed, first) {
                (_, None) => Timestamp::MIN,
                (None, Some(_)) => Timestamp::MAX,
                (Some(speed), Some(first)) => {
                    first.saturating_add((started.elapsed().as_secs_f64() * speed * 1000.0) as i64)
                }
            };
            let next_due =
                self.pending.iter().zip(&cursor).filter_map(|((_, rows), &c)| rows.get(c).map(|r| r.0)).min();
            let Some(next_due) = next_due else {
                status.lock().expect("status").feed.exhausted = true;
                tracing::info!("the replay feed has played its whole file");
                return Ok(());
            };
            if next_due > reached {
                let wait_ms = (next_due - reached) as f64 / self.speed.unwrap_or(1.0);
                std::thread::sleep(Duration::from_secs_f64((wait_ms / 1000.0).clamp(0.0005, 0.1)));
                continue;
            }
            // Every symbol's rows at this time (and any earlier ones still due), in one locked tick.
            let mut written = 0;
            {
                let _guard = lock.lock().expect("feed lock");
                for ((symbol, rows), c) in self.pending.iter_mut().zip(cursor.iter_mut()) {
                    let start = *c;
                    while rows.get(*c).is_some_and(|r| r.0 <= next_due) {
                        *c += 1;
                    }
                    let lines: Vec<String> =
                        rows[start..*c].iter_mut().map(|r| std::mem::take(&mut r.1)).collect();
                    written += lines.len();
                    appender
                        .append(symbol, &lines)
                        .with_context(|| format!("cannot append {symbol}'s bar at {}", iso(next_due)))?;
                }
            }
            status.lock().expect("status").feed.bars_written += written as u64;
            let _ = wake.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MS_PER_DAY, days_from_civil};

    fn day_of(year: i64, month: u32, day: u32) -> Timestamp {
        days_from_civil(year, month, day) * MS_PER_DAY
    }

    #[test]
    fn timestamps_parse_like_csv_data_reads_them() {
        assert_eq!(parse_ts("2024-01-05").unwrap(), day_of(2024, 1, 5));
        assert_eq!(parse_ts("2024-01-05T13:00:00Z").unwrap(), day_of(2024, 1, 5) + 13 * 3_600_000);
        assert_eq!(parse_ts("2024-01-05T00:00:01.5Z").unwrap(), day_of(2024, 1, 5) + 1500);
        for bad in ["2024-01-05T25:00:00Z", "2024-01-05T13:00:00", "noon"] {
            assert!(parse_ts(bad).is_err(), "{bad}");
        }
    }
}
