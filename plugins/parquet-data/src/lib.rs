//! `parquet-data`: bars from `<dir>/<SYMBOL>.parquet` in a directory granted
//! to the slice.
//!
//! Columns are found by name, case-insensitively: the time in `timestamp`,
//! `date`, `datetime`, `time` or `open_time`, then `open`, `high`, `low`,
//! `close` and `volume`; any other column (`Adj Close`, `symbol`...) is
//! ignored. The time may be a Parquet TIMESTAMP (milli-, micro- or
//! nanoseconds; one without a time zone is read as UTC), a DATE, or a legacy
//! INT96 timestamp. Prices and volume may be doubles, floats or integers.
//! Rows must be in strictly increasing time; every bad row is reported with
//! its file, row number and column. The file is read row group by row group,
//! never whole.
//!
//! Reading Parquet here, inside the sandbox, means a malformed or hostile
//! file can at worst stop this slice: it has only its read-only grant, a CPU
//! deadline and a memory cap. The compression codecs are the pure-Rust ones
//! (uncompressed, snappy, gzip, LZ4, brotli); zstd's implementation is C and
//! does not build for wasm32-wasip2, so a zstd file gets a message saying so.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use parquet::basic::{LogicalType, TimeUnit};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use plugin_sdk::{
    Bar, Config, DataSource, Error, Manifest, Param, Result, SourceInfo, TimeRange, Timestamp, excerpt,
};

/// Names accepted for the time column, in order of preference.
const TIME_NAMES: [&str; 5] = ["timestamp", "date", "datetime", "time", "open_time"];
const VALUE_NAMES: [&str; 5] = ["open", "high", "low", "close", "volume"];

pub struct ParquetData {
    dir: String,
    reader: Option<Reader>,
}

/// How the time column encodes an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    /// The record reader hands back milli- or microsecond timestamps and dates as such.
    Typed,
    /// INT64 TIMESTAMP(NANOS), which the record reader hands back as a plain integer.
    Nanos,
}

struct Reader {
    path: String,
    rows: RowIter<'static>,
    time_kind: TimeKind,
    row_no: u64,
    range: TimeRange,
    previous: Option<Timestamp>,
    done: bool,
}

impl DataSource for ParquetData {
    fn manifest() -> Manifest {
        Manifest::new(
            "Bars from <dir>/<SYMBOL>.parquet (columns timestamp or date, open, high, low, close, volume)",
        )
        .param(Param::text(
            "dir",
            "/data",
            "directory of the Parquet files, as granted to this slice",
        ))
    }

    fn new(config: &Config) -> Result<Self> {
        let dir = config.text("dir")?.trim_end_matches('/').to_owned();
        if dir.is_empty() {
            return Err(Error::new("`dir` must name a directory"));
        }
        Ok(ParquetData { dir, reader: None })
    }

    fn open(&mut self, symbol: &str, range: TimeRange) -> Result<SourceInfo> {
        let path = format!("{}/{symbol}.parquet", self.dir);
        let file = match PathReader::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(format!("no data file {path} for {symbol}; {}", self.available())));
            }
            Err(e) => return Err(Error::new(format!("cannot open {path}: {e}"))),
        };
        let file_reader = SerializedFileReader::new(file)
            .map_err(|e| Error::new(format!("{path} is not a readable Parquet file: {e}")))?;
        let metadata = file_reader.metadata();
        let rows_total = metadata.file_metadata().num_rows();
        let schema = metadata.file_metadata().schema_descr_ptr();
        let root = schema.root_schema();
        let (projection, time_kind) = project(root).map_err(|m| Error::new(format!("{path}: {m}")))?;
        let rows = RowIter::from_file_into(Box::new(file_reader))
            .project(Some(projection))
            .map_err(|e| Error::new(format!("{path}: {e}")))?;
        let description = format!("{path} (Parquet, {rows_total} rows)");
        self.reader = Some(Reader { path, rows, time_kind, row_no: 0, range, previous: None, done: false });
        Ok(SourceInfo { description, synthetic: false })
    }

    fn next_batch(&mut self, max: usize, bars: &mut Vec<Bar>) -> Result<()> {
        let reader = self.reader.as_mut().ok_or_else(|| Error::new("next-batch before open"))?;
        while bars.len() < max && !reader.done {
            if let Some(bar) = reader.next_bar()? {
                bars.push(bar);
            }
        }
        Ok(())
    }
}

impl ParquetData {
    /// "available: BTC-USD, ETH-USD" for the error message of a missing file.
    fn available(&self) -> String {
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                let mut symbols: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".parquet").map(str::to_owned))
                    .collect();
                symbols.sort();
                if symbols.is_empty() {
                    format!("{} holds no .parquet files", self.dir)
                } else {
                    format!("available: {}", symbols.join(", "))
                }
            }
            Err(e) => format!("cannot list {}: {e} (is it granted to this slice?)", self.dir),
        }
    }
}

/// The file, opened afresh for each chunk the reader asks for. Parquet's own
/// `File` reader clones the handle (`try_clone`), which WASI does not offer.
struct PathReader {
    path: String,
    len: u64,
}

impl PathReader {
    fn open(path: &str) -> std::io::Result<Self> {
        let len = File::open(path)?.metadata()?.len();
        Ok(PathReader { path: path.to_owned(), len })
    }

    fn at(&self, start: u64) -> std::io::Result<File> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(start))?;
        Ok(file)
    }
}

impl Length for PathReader {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for PathReader {
    type T = std::io::BufReader<File>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::BufReader::new(self.at(start).map_err(|e| ParquetError::External(Box::new(e)))?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let mut buffer = vec![0; length];
        self.at(start)
            .and_then(|mut f| f.read_exact(&mut buffer))
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(buffer.into())
    }
}

/// The six columns to read, in bar order, and how the time is encoded.
fn project(root: &Type) -> std::result::Result<(Type, TimeKind), String> {
    let fields = root.get_fields();
    // A file may have thousands of columns, with names of any length: quoted short.
    let names = || excerpt(&fields.iter().map(|f| f.name().to_owned()).collect::<Vec<_>>().join(", "));
    let find = |wanted: &str| fields.iter().find(|f| f.name().trim().eq_ignore_ascii_case(wanted));
    let time = TIME_NAMES.iter().find_map(|n| find(n)).ok_or_else(|| {
        format!("no time column (looked for {}; the file has {})", TIME_NAMES.join(", "), names())
    })?;
    let mut chosen = vec![time.clone()];
    for name in VALUE_NAMES {
        let column = find(name).ok_or_else(|| format!("no `{name}` column (the file has {})", names()))?;
        if !column.is_primitive() {
            return Err(format!("column `{}` is nested; expected a number", excerpt(column.name())));
        }
        chosen.push(column.clone());
    }
    if !time.is_primitive() {
        return Err(format!("column `{}` is nested; expected a timestamp or date", excerpt(time.name())));
    }
    let time_kind = match time.get_basic_info().logical_type_ref() {
        Some(LogicalType::Timestamp(t)) if t.unit == TimeUnit::NANOS => TimeKind::Nanos,
        _ => TimeKind::Typed,
    };
    let projection = Type::group_type_builder(root.name())
        .with_fields(chosen)
        .build()
        .map_err(|e| format!("cannot select the columns: {e}"))?;
    Ok((projection, time_kind))
}

impl Reader {
    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::new(format!("{} row {}: {message}", self.path, self.row_no))
    }

    /// The next row inside the range; `None` for a row before the range or at the end.
    fn next_bar(&mut self) -> Result<Option<Bar>> {
        let row = match self.rows.next() {
            None => {
                self.done = true;
                return Ok(None);
            }
            Some(Err(e)) => return Err(Error::new(explain(&self.path, self.row_no + 1, &e.to_string()))),
            Some(Ok(row)) => row,
        };
        self.row_no += 1;
        let bar = parse_row(&row, self.time_kind).map_err(|m| self.error(m))?;
        if let Some(prev) = self.previous
            && bar.ts <= prev
        {
            let what = if bar.ts == prev { "repeats" } else { "is before" };
            return Err(self.error(format!(
                "time {} {what} the previous row's {} (rows must be in strictly increasing time order)",
                iso(bar.ts),
                iso(prev)
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

/// A reader error in words a user can act on.
fn explain(path: &str, row: u64, error: &str) -> String {
    if error.to_ascii_lowercase().contains("zstd") {
        format!(
            "{path} row {row}: the file is compressed with zstd, which parquet-data cannot read (only uncompressed, snappy, gzip, lz4 and brotli); rewrite it with another codec, for example compression='snappy' in pandas or pyarrow"
        )
    } else {
        format!("{path} row {row}: cannot read: {}", excerpt(error))
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// `2024-01-05T13:00:00Z` (Howard Hinnant's civil-from-days).
fn iso(ts: Timestamp) -> String {
    let z = ts.div_euclid(MS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let t = ts.rem_euclid(MS_PER_DAY) / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

fn parse_row(row: &Row, time_kind: TimeKind) -> std::result::Result<Bar, String> {
    let mut columns = row.get_column_iter();
    let (time_name, time) = columns.next().ok_or("the row has no columns")?;
    let ts = match (time, time_kind) {
        (Field::TimestampMillis(ms), _) => *ms,
        (Field::TimestampMicros(us), _) => us.div_euclid(1000),
        (Field::Long(ns), TimeKind::Nanos) => ns.div_euclid(1_000_000),
        (Field::Date(days), _) => *days as i64 * MS_PER_DAY,
        (Field::Null, _) => return Err(format!("column `{}`: no time (null)", excerpt(time_name))),
        (other, _) => {
            return Err(format!(
                "column `{}`: {} is not a timestamp or date (store the time as a Parquet TIMESTAMP or DATE)",
                excerpt(time_name),
                excerpt(&other.to_string())
            ));
        }
    };
    let mut values = [0f64; 5];
    for (slot, (name, field)) in values.iter_mut().zip(columns) {
        *slot = match field {
            Field::Double(v) => *v,
            Field::Float(v) => *v as f64,
            Field::Int(v) => *v as f64,
            Field::Long(v) => *v as f64,
            Field::UInt(v) => *v as f64,
            Field::ULong(v) => *v as f64,
            Field::Short(v) => *v as f64,
            Field::Null => return Err(format!("column `{}`: no value (null)", excerpt(name))),
            other => {
                return Err(format!(
                    "column `{}`: {} is not a number",
                    excerpt(name),
                    excerpt(&other.to_string())
                ));
            }
        };
        if !slot.is_finite() {
            return Err(format!("column `{}`: {slot} is not finite", excerpt(name)));
        }
    }
    let [open, high, low, close, volume] = values;
    for (name, v) in [("open", open), ("high", high), ("low", low), ("close", close)] {
        if v <= 0.0 {
            return Err(format!("column `{name}`: price {v} is not positive"));
        }
    }
    if volume < 0.0 {
        return Err(format!("column `volume`: {volume} is negative"));
    }
    if high < open.max(close) || low > open.min(close) || high < low {
        return Err(format!(
            "inconsistent prices: open {open} high {high} low {low} close {close} (need low <= open, close <= high)"
        ));
    }
    Ok(Bar { ts, open, high, low, close, volume })
}

plugin_sdk::export_data_source!(ParquetData);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formats_utc() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_704_067_200_000 + 13 * 3_600_000), "2024-01-01T13:00:00Z");
    }

    #[test]
    fn zstd_files_get_advice() {
        let message =
            explain("/data/X.parquet", 1, "Disabled feature at compile time: ZSTD is not supported");
        assert!(message.contains("rewrite it with another codec"), "{message}");
        assert_eq!(explain("/data/X.parquet", 7, "EOF"), "/data/X.parquet row 7: cannot read: EOF");
    }
}
