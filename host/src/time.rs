//! Timestamps: milliseconds since the Unix epoch, UTC, as on the wire.
//!
//! Hand-written rather than pulled from a date crate because the run loop
//! formats one timestamp per bar into `equity.csv`, and this is the whole of
//! what is needed: proleptic Gregorian dates, no time zones, no leap seconds.

use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Timestamp = i64;

pub const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DD` into the timestamp of that day's midnight UTC.
pub fn parse_date(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("`{text}` is not a date in the form YYYY-MM-DD");
    let mut parts = text.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let year: i64 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    let day: u32 = d.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("`{text}` is not a valid calendar date"));
    }
    Ok(days_from_civil(year, month, day) * MS_PER_DAY)
}

/// Writes `2024-01-05T13:00:00Z` (with `.mmm` only when there are milliseconds).
pub fn write_iso(out: &mut impl fmt::Write, ts: Timestamp) -> fmt::Result {
    let days = ts.div_euclid(MS_PER_DAY);
    let ms_of_day = ts.rem_euclid(MS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
    if ms != 0 {
        write!(out, ".{ms:03}")?;
    }
    out.write_char('Z')
}

/// Appends `ts` as [`write_iso`] writes it, pushing digits directly for the
/// years 0 to 9999 instead of going through `core::fmt` (one per bar in
/// `equity.csv`).
pub fn push_iso(out: &mut String, ts: Timestamp) {
    let days = ts.div_euclid(MS_PER_DAY);
    let ms_of_day = ts.rem_euclid(MS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        write_iso(out, ts).expect("writing to a String cannot fail");
        return;
    }
    let (h, mi, s, ms) =
        (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60, ms_of_day / 1000 % 60, ms_of_day % 1000);
    let digit = |v: i64| char::from(b'0' + v as u8);
    let pair = |out: &mut String, v: i64| {
        out.push(digit(v / 10));
        out.push(digit(v % 10));
    };
    pair(out, y / 100);
    pair(out, y % 100);
    out.push('-');
    pair(out, i64::from(mo));
    out.push('-');
    pair(out, i64::from(d));
    out.push('T');
    pair(out, h);
    out.push(':');
    pair(out, mi);
    out.push(':');
    pair(out, s);
    if ms != 0 {
        out.push('.');
        out.push(digit(ms / 100));
        pair(out, ms % 100);
    }
    out.push('Z');
}

/// `ts` as an ISO-8601 UTC string.
pub fn iso(ts: Timestamp) -> String {
    let mut s = String::with_capacity(24);
    push_iso(&mut s, ts);
    s
}

/// `ts` as `YYYY-MM-DD`.
pub fn date(ts: Timestamp) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_round_trip() {
        let cases = [
            ("1970-01-01", 0),
            ("2000-02-29", 951_782_400_000),
            ("2024-01-01", 1_704_067_200_000),
            ("1969-12-31", -MS_PER_DAY),
        ];
        for (text, ts) in cases {
            assert_eq!(parse_date(text).unwrap(), ts, "{text}");
            assert_eq!(date(ts), text);
        }
    }

    #[test]
    fn iso_formats_hours_and_millis() {
        assert_eq!(iso(1_704_067_200_000 + 13 * 3_600_000), "2024-01-01T13:00:00Z");
        assert_eq!(iso(1_704_067_200_001), "2024-01-01T00:00:00.001Z");
    }

    #[test]
    fn push_iso_writes_what_write_iso_writes() {
        let mut x: i64 = 12345;
        for _ in 0..100_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let ts = x.rem_euclid(400 * 366 * MS_PER_DAY) - 100 * 365 * MS_PER_DAY;
            let (mut fast, mut general) = (String::new(), String::new());
            push_iso(&mut fast, ts);
            write_iso(&mut general, ts).unwrap();
            assert_eq!(fast, general);
        }
    }

    #[test]
    fn rejects_impossible_dates() {
        for bad in ["2023-02-29", "2024-13-01", "2024-1-01", "yesterday", "2024-01-01-01"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_day_for_four_centuries_round_trips() {
        for days in -146_097..146_097 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
