//! The project's bar files (`timestamp,open,high,low,close,volume`, the
//! format `csv-data` reads) as the host sees them: `host data fetch` writes
//! and extends them, and `host run` peeks at their last row to size its
//! progress bar. Timestamps are parsed the way `csv-data` parses them.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::excerpt::excerpt;
use crate::time::{Timestamp, parse_date};

pub const HEADER: &str = "timestamp,open,high,low,close,volume";

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS[.fff]]` ending in `Z` or
/// `+00:00` (a space may replace the `T`), the forms `csv-data` accepts.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("`{}` is not an ISO-8601 UTC timestamp such as 2024-01-05T13:00:00Z", excerpt(text));
    if text.len() < 10 || !text.is_char_boundary(10) {
        return Err(bad());
    }
    let (day, rest) = text.split_at(10);
    let day = parse_date(day).map_err(|_| bad())?;
    if rest.is_empty() {
        return Ok(day);
    }
    let time = rest
        .strip_prefix(['T', ' '])
        .and_then(|r| r.strip_suffix('Z').or_else(|| r.strip_suffix("+00:00")))
        .ok_or_else(bad)?;
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':').map(|p| if p.len() == 2 { p.parse::<i64>().ok() } else { None });
    let (h, m, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Some(h)), Some(Some(m)), None, None) => (h, m, 0),
        (Some(Some(h)), Some(Some(m)), Some(Some(s)), None) => (h, m, s),
        _ => return Err(bad()),
    };
    if h > 23 || m > 59 || s > 59 {
        return Err(bad());
    }
    let ms = match fraction {
        "" => 0,
        f if f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = &f[..f.len().min(3)];
            digits.parse::<i64>().map_err(|_| bad())? * 10i64.pow(3 - digits.len() as u32)
        }
        _ => return Err(bad()),
    };
    Ok(day + (h * 3600 + m * 60 + s) * 1000 + ms)
}

/// The timestamp of the last row of a bar file, read from its tail; `None`
/// when the file has no data row. Yahoo-style files work too (the timestamp is
/// the first field either way).
pub fn last_timestamp(path: &Path) -> io::Result<Option<Timestamp>> {
    // Only the tail is read, so any size will do; a FIFO or device is refused.
    let (mut file, len) = crate::files::open_regular(path, u64::MAX, "bar file").map_err(io::Error::other)?;
    let tail = len.min(4096);
    file.seek(SeekFrom::Start(len - tail))?;
    let mut bytes = Vec::with_capacity(tail as usize);
    file.take(tail).read_to_end(&mut bytes)?;
    // The tail may start inside a multi-byte character; only the last line matters.
    let text = String::from_utf8_lossy(&bytes);
    let last = text.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    Ok(last.and_then(|line| parse_timestamp(line.split(',').next()?.trim()).ok()))
}

#[cfg(test)]
fn ymd(year: i64, month: u32, day: u32) -> Timestamp {
    crate::time::days_from_civil(year, month, day) * crate::time::MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_forms_csv_data_reads() {
        let day = ymd(2024, 1, 1);
        assert_eq!(parse_timestamp("2024-01-01"), Ok(day));
        assert_eq!(parse_timestamp("2024-01-01T13:30:00Z"), Ok(day + 48_600_000));
        assert_eq!(parse_timestamp("2024-01-01 13:30+00:00"), Ok(day + 48_600_000));
        assert_eq!(parse_timestamp("2024-01-01T00:00:00.5Z"), Ok(day + 500));
        for bad in
            ["2024-01-01T13:30:00", "2024-01-01T25:00:00Z", "2024-02-30", "01/01/2024", "2024-01-01T1:00Z"]
        {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn last_timestamp_reads_the_tail() {
        let dir = std::env::temp_dir().join(format!("strata-barfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("X.csv");
        std::fs::write(
            &path,
            format!("# c\n{HEADER}\n2024-01-01,1,1,1,1,0\n2024-01-02T00:00:00Z,1,1,1,1,0\n\n"),
        )
        .unwrap();
        assert_eq!(last_timestamp(&path).unwrap(), Some(ymd(2024, 1, 2)));
        std::fs::write(&path, format!("{HEADER}\n")).unwrap();
        assert_eq!(last_timestamp(&path).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
