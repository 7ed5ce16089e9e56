//! `csv-data`: bars from `<dir>/<SYMBOL>.csv` in a directory granted to the slice.
//!
//! The file has the header `timestamp,open,high,low,close,volume`, one bar per
//! row, sorted by time, with ISO-8601 UTC timestamps (`2024-01-05T13:00:00Z`,
//! or a plain `2024-01-05` for daily bars). Lines starting with `#` before the
//! header are comments; a comment that says `SYNTHETIC` marks the data as
//! generated, and reports say so. The file is streamed, never loaded whole,
//! and every bad row is reported with its file and line; a line longer than
//! [`MAX_LINE_BYTES`] is refused (a row of bars is under 200 bytes), so a
//! file without line ends cannot fill the slice's memory. A UTF-8 byte order
//! mark before the header (Excel writes one) is skipped.
//!
//! Yahoo Finance's download format is read too, recognised by its header
//! `Date,Open,High,Low,Close,Adj Close,Volume`. `Close` is the close used;
//! `Adj Close` (adjusted for dividends) must be a number but is not used.
//! Rows Yahoo fills with `null` (a day without data) are skipped.
//!
//! With `follow = true` (paper mode) the file is a live feed that someone
//! else appends to: at its end the slice returns the bars it has and, on the
//! next call, whatever complete rows were appended since. A row still being
//! written (no line end yet) waits for its end. The feed never ends by itself.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use plugin_sdk::{
    Bar, Config, DataSource, Error, Manifest, Param, Result, SourceInfo, TimeRange, Timestamp, excerpt,
};

mod fast;
#[cfg(test)]
mod fuzz;
mod timestamp;

/// The longest line read. Rows of bars are under 200 bytes and headers and
/// comments a few hundred; anything longer is not a file of bars.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const HEADER: &str = "timestamp,open,high,low,close,volume";
const YAHOO_HEADER: &str = "Date,Open,High,Low,Close,Adj Close,Volume";

/// The two layouts a file may have, told apart by the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Strata,
    Yahoo,
}

pub struct CsvData {
    dir: String,
    follow: bool,
    reader: Option<Reader>,
}

struct Reader {
    path: String,
    lines: BufReader<File>,
    line_no: u64,
    range: TimeRange,
    previous: Option<Timestamp>,
    done: bool,
    /// The line being read, as bytes: checked as UTF-8 once it is whole, so a
    /// character split by a live feed's writer is not an error.
    line: Vec<u8>,
    format: Format,
    /// Following a growing file: the end of the file is "nothing yet", not the end.
    follow: bool,
    /// Following: the last read reached the current end of the file.
    at_end: bool,
    /// Following: `line` holds the start of a row whose end is not written yet.
    partial: bool,
    /// Following: bytes of complete lines read so far.
    consumed: u64,
}

impl DataSource for CsvData {
    fn manifest() -> Manifest {
        Manifest::new("Bars from <dir>/<SYMBOL>.csv (timestamp,open,high,low,close,volume)")
            .param(Param::text("dir", "/data", "directory of the CSV files, as granted to this slice"))
            .param(Param::bool(
                "follow",
                false,
                "treat the file as a live feed that grows: at its end, wait for more rows instead of ending",
            ))
    }

    fn new(config: &Config) -> Result<Self> {
        let dir = config.text("dir")?.trim_end_matches('/').to_owned();
        if dir.is_empty() {
            return Err(Error::new("`dir` must name a directory"));
        }
        Ok(CsvData { dir, follow: config.bool("follow")?, reader: None })
    }

    fn open(&mut self, symbol: &str, range: TimeRange) -> Result<SourceInfo> {
        let path = format!("{}/{symbol}.csv", self.dir);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(format!("no data file {path} for {symbol}; {}", self.available())));
            }
            Err(e) => return Err(Error::new(format!("cannot open {path}: {e}"))),
        };
        let mut reader = Reader {
            path,
            // Large enough that a row rarely straddles the end of the buffer.
            lines: BufReader::with_capacity(1 << 20, file),
            line_no: 0,
            range,
            previous: None,
            done: false,
            line: Vec::new(),
            format: Format::Strata,
            follow: self.follow,
            at_end: false,
            partial: false,
            consumed: 0,
        };
        let comments = reader.read_header()?;
        let synthetic = comments.iter().any(|c| c.to_ascii_uppercase().contains("SYNTHETIC"));
        let mut description = match comments.first() {
            Some(first) => format!("{} ({})", reader.path, excerpt(first)),
            None => reader.path.clone(),
        };
        if reader.format == Format::Yahoo {
            description.push_str(" [Yahoo Finance CSV: Close used, Adj Close ignored]");
        }
        self.reader = Some(reader);
        Ok(SourceInfo { description, synthetic })
    }

    fn next_batch(&mut self, max: usize, bars: &mut Vec<Bar>) -> Result<()> {
        let reader = self.reader.as_mut().ok_or_else(|| Error::new("next-batch before open"))?;
        if reader.at_end {
            reader.reopen()?;
        }
        while bars.len() < max && !reader.done && !reader.at_end {
            if let Some(bar) = reader.next_bar()? {
                bars.push(bar);
            }
        }
        Ok(())
    }
}

impl CsvData {
    /// "available: BTC-USD, ETH-USD" for the error message of a missing file.
    fn available(&self) -> String {
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                let mut symbols: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".csv").map(str::to_owned))
                    .collect();
                symbols.sort();
                if symbols.is_empty() {
                    format!("{} holds no .csv files", self.dir)
                } else {
                    format!("available: {}", symbols.join(", "))
                }
            }
            Err(e) => format!("cannot list {}: {e} (is it granted to this slice?)", self.dir),
        }
    }
}

impl Reader {
    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::new(format!("{} line {}: {message}", self.path, self.line_no))
    }

    /// The line just read, without its line end, as text.
    fn text(&self) -> Result<&str> {
        let mut bytes = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if self.line_no == 1 {
            bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        }
        std::str::from_utf8(bytes).map_err(|e| {
            self.error(format!("not UTF-8 text (a byte that is not UTF-8 at column {})", e.valid_up_to() + 1))
        })
    }

    /// The next row, parsed where it lies in the reader's buffer, if it is
    /// whole there and in the common form ([`fast`]); else `None`, leaving
    /// the row unread for the general path.
    fn next_common_row(&mut self) -> Result<Option<Bar>> {
        let buffer = match self.lines.fill_buf() {
            Ok(buffer) => buffer,
            // Left to the general path, which reports it with the line number.
            Err(_) => return Ok(None),
        };
        let Some(end) = buffer.iter().position(|&b| b == b'\n') else { return Ok(None) };
        if end >= MAX_LINE_BYTES {
            // The general path refuses it, naming the line.
            return Ok(None);
        }
        let Some(bar) = fast::parse_row(&buffer[..end]) else { return Ok(None) };
        self.lines.consume(end + 1);
        self.line_no += 1;
        self.consumed += (end + 1) as u64;
        Ok(Some(bar))
    }

    /// Reads the next line into `self.line`; false at end of file. When
    /// following, a last line without its line end is kept for the next call
    /// (its writer has not finished it) and counts as the end for now. A line
    /// of [`MAX_LINE_BYTES`] without its end is refused, whole or not.
    fn read_line(&mut self) -> Result<bool> {
        if !self.partial {
            self.line.clear();
        }
        // One byte past the limit tells a line at the limit from a longer one.
        let room = (MAX_LINE_BYTES + 1).saturating_sub(self.line.len()) as u64;
        let n = (&mut self.lines)
            .take(room)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| Error::new(format!("{} line {}: cannot read: {e}", self.path, self.line_no + 1)))?;
        let whole = self.line.ends_with(b"\n");
        if !whole && self.line.len() > MAX_LINE_BYTES {
            return Err(Error::new(format!(
                "{} line {}: longer than {MAX_LINE_BYTES} bytes (a row of bars is under 200): starts `{}`",
                self.path,
                self.line_no + 1,
                excerpt(&String::from_utf8_lossy(&self.line[..256]))
            )));
        }
        if self.follow && !whole {
            self.partial = !self.line.is_empty();
            return Ok(false);
        }
        self.partial = false;
        if n > 0 || !self.line.is_empty() {
            self.line_no += 1;
            self.consumed += self.line.len() as u64;
        }
        Ok(!self.line.is_empty())
    }

    /// Following: opens the file again after its end, where the last complete
    /// line ended. A reader at the end of a file does not see what is
    /// appended later in every sandbox (WASI file streams end for good), so
    /// the file is reopened rather than read again.
    fn reopen(&mut self) -> Result<()> {
        let mut file = File::open(&self.path).map_err(|e| self.error(format!("cannot reopen: {e}")))?;
        file.seek(SeekFrom::Start(self.consumed)).map_err(|e| self.error(format!("cannot seek: {e}")))?;
        self.lines = BufReader::with_capacity(1 << 16, file);
        self.line.clear();
        self.partial = false;
        self.at_end = false;
        Ok(())
    }

    /// Skips leading comments (returned) and checks the header.
    fn read_header(&mut self) -> Result<Vec<String>> {
        let mut comments = Vec::new();
        loop {
            if !self.read_line()? {
                return Err(Error::new(format!("{} is empty: expected the header `{HEADER}`", self.path)));
            }
            let line = self.text()?.trim();
            if let Some(comment) = line.strip_prefix('#') {
                comments.push(comment.trim().to_owned());
                continue;
            }
            if line.is_empty() {
                continue;
            }
            self.format = if line.eq_ignore_ascii_case(YAHOO_HEADER) {
                Format::Yahoo
            } else if line.eq_ignore_ascii_case(HEADER) {
                Format::Strata
            } else {
                return Err(self.error(format!("expected the header `{HEADER}`, found `{}`", excerpt(line))));
            };
            return Ok(comments);
        }
    }

    /// The next row inside the range; `None` for a row before the range or at the end.
    fn next_bar(&mut self) -> Result<Option<Bar>> {
        let fast = match self.format {
            // Not in the middle of a row a live feed has half written.
            Format::Strata if !self.partial => self.next_common_row()?,
            _ => None,
        };
        let bar = match fast {
            Some(bar) => bar,
            None => {
                if !self.read_line()? {
                    if self.follow {
                        self.at_end = true;
                    } else {
                        self.done = true;
                    }
                    return Ok(None);
                }
                let line = self.text()?;
                if line.trim().is_empty() {
                    return Err(self.error("empty line"));
                }
                let bar = match self.format {
                    Format::Strata => parse_row(line),
                    Format::Yahoo => match parse_yahoo_row(line) {
                        Ok(Some(bar)) => Ok(bar),
                        Ok(None) => return Ok(None),
                        Err(m) => Err(m),
                    },
                };
                bar.map_err(|m| self.error(m))?
            }
        };
        if let Some(prev) = self.previous
            && bar.ts <= prev
        {
            let what = if bar.ts == prev { "repeats" } else { "is before" };
            return Err(self.error(format!(
                "timestamp {} {what} the previous row's {} (rows must be in strictly increasing time order)",
                timestamp::format(bar.ts),
                timestamp::format(prev)
            )));
        }
        self.previous = Some(bar.ts);
        if self.range.end.is_some_and(|end| bar.ts > end) {
            self.done = true;
            return Ok(None);
        }
        Ok(self.range.contains(bar.ts).then_some(bar))
    }
}

fn parse_row(line: &str) -> std::result::Result<Bar, String> {
    let mut fields = line.split(',');
    let mut next = |name: &str| {
        fields
            .next()
            .map(str::trim)
            .ok_or_else(|| format!("missing field `{name}` (expected 6 fields: {HEADER})"))
    };
    let ts_text = next("timestamp")?;
    let ts = timestamp::parse(ts_text).map_err(|e| format!("field `timestamp`: {e}"))?;
    // Each number with its text, which messages quote as written (`1e308`,
    // not the 309 digits of the float).
    let mut number = |name: &str| -> std::result::Result<(f64, &str), String> {
        let text = next(name)?;
        let v: f64 =
            text.parse().map_err(|_| format!("field `{name}`: `{}` is not a number", excerpt(text)))?;
        if !v.is_finite() {
            return Err(format!("field `{name}`: `{}` is not finite", excerpt(text)));
        }
        Ok((v, text))
    };
    let (open, high, low, close, volume) =
        (number("open")?, number("high")?, number("low")?, number("close")?, number("volume")?);
    if fields.next().is_some() {
        return Err(format!("more than 6 fields (expected {HEADER})"));
    }
    for (name, (v, text)) in [("open", open), ("high", high), ("low", low), ("close", close)] {
        if v <= 0.0 {
            return Err(format!("field `{name}`: price {} is not positive", excerpt(text)));
        }
    }
    if volume.0 < 0.0 {
        return Err(format!("field `volume`: {} is negative", excerpt(volume.1)));
    }
    let [(open, o), (high, h), (low, l), (close, c)] = [open, high, low, close];
    if high < open.max(close) || low > open.min(close) || high < low {
        let [o, h, l, c] = [o, h, l, c].map(excerpt);
        return Err(format!(
            "inconsistent prices: open {o} high {h} low {l} close {c} (need low <= open, close <= high)"
        ));
    }
    Ok(Bar { ts, open, high, low, close, volume: volume.0 })
}

/// A row of a Yahoo download: `Date,Open,High,Low,Close,Adj Close,Volume`.
/// `None` for a row Yahoo filled with `null` (no data that day).
fn parse_yahoo_row(line: &str) -> std::result::Result<Option<Bar>, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != 7 {
        return Err(format!("{} fields, expected 7: {YAHOO_HEADER}", fields.len()));
    }
    if fields[1..].iter().all(|f| f.eq_ignore_ascii_case("null")) {
        return Ok(None);
    }
    let adj_close = fields[5];
    if !adj_close.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(format!("field `adj close`: `{}` is not a number", excerpt(adj_close)));
    }
    // The same checks and messages as the project's own layout.
    let [date, open, high, low, close, _, volume] = fields[..] else { unreachable!("seven fields") };
    parse_row(&format!("{date},{open},{high},{low},{close},{volume}")).map(Some)
}

plugin_sdk::export_data_source!(CsvData);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_row_of_the_shared_data() {
        let bar = parse_row("2014-09-18T00:00:00Z,456.8599853515625,456.8599853515625,413.10400390625,424.44000244140625,34483200.0").unwrap();
        assert_eq!(bar.ts, 1_410_998_400_000);
        assert_eq!(bar.open, 456.8599853515625);
        assert_eq!(bar.volume, 34_483_200.0);
    }

    #[test]
    fn yahoo_rows_use_close_and_skip_null_days() {
        let bar =
            parse_yahoo_row("2017-11-09,308.644989,329.451996,307.056000,320.884003,320.884003,893249984")
                .unwrap()
                .unwrap();
        assert_eq!(
            (bar.ts, bar.open, bar.close, bar.volume),
            (1_510_185_600_000, 308.644989, 320.884003, 893_249_984.0)
        );
        assert_eq!(parse_yahoo_row("2020-04-17,null,null,null,null,null,null").unwrap(), None);
        let cases = [
            ("2020-04-17,1,2,0.5,null,1,10", "field `close`: `null` is not a number"),
            ("2020-04-17,1,2,0.5,1,abc,10", "field `adj close`"),
            ("2020-04-17,1,2,0.5,1,1", "6 fields, expected 7"),
            ("2020-04-17,1,0.9,0.5,1,1,10", "inconsistent prices"),
        ];
        for (row, want) in cases {
            let err = parse_yahoo_row(row).unwrap_err();
            assert!(err.contains(want), "{row}: {err}");
        }
    }

    #[test]
    fn bad_rows_say_which_field() {
        let cases = [
            ("2024-01-01,1,2,0.5,abc,10", "field `close`: `abc` is not a number"),
            ("2024-01-01,1,2,0.5,1", "missing field `volume`"),
            ("2024-01-01,1,2,0.5,1,10,7", "more than 6 fields"),
            ("2024-13-01,1,2,0.5,1,10", "field `timestamp`"),
            ("2024-01-01,1,0.9,0.5,1,10", "inconsistent prices"),
            ("2024-01-01,-1,2,0.5,1,10", "field `open`: price -1 is not positive"),
        ];
        for (row, want) in cases {
            let err = parse_row(row).unwrap_err();
            assert!(err.contains(want), "{row}: {err}");
        }
    }

    #[test]
    fn following_a_growing_file_waits_for_complete_rows() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("csv-data-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("FEED.csv");
        std::fs::write(
            &path,
            "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1.5,2",
        )
        .unwrap();
        let config = plugin_sdk::Config::defaults(&CsvData::manifest())
            .with("dir", dir.to_str().unwrap())
            .with("follow", true);
        let mut data = CsvData::new(&config).unwrap();
        data.open("FEED", TimeRange::default()).unwrap();
        let mut bars = Vec::new();
        data.next_batch(10, &mut bars).unwrap();
        assert_eq!(bars.len(), 1, "the half-written second row waits");
        bars.clear();
        data.next_batch(10, &mut bars).unwrap();
        assert!(bars.is_empty(), "nothing new is not the end");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b",1,1.8,5\n2024-01-03,1.8,2,1,1.9,7\n").unwrap();
        data.next_batch(10, &mut bars).unwrap();
        assert_eq!(bars.iter().map(|b| b.close).collect::<Vec<_>>(), vec![1.8, 1.9]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
