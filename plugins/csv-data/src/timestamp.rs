//! ISO-8601 UTC timestamps to and from milliseconds since the epoch.

use plugin_sdk::{Timestamp, excerpt};

const MS_PER_DAY: i64 = 86_400_000;

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Accepts `YYYY-MM-DD`, and `YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by `Z` or
/// `+00:00` (a space may replace the `T`). Other offsets are refused rather
/// than guessed at.
pub fn parse(text: &str) -> Result<Timestamp, String> {
    let bad = |why: &str| format!("`{}` is not an ISO-8601 UTC timestamp ({why})", excerpt(text));
    if text.len() < 10 || !text.is_char_boundary(10) {
        return Err(bad("expected YYYY-MM-DD first"));
    }
    let (date, rest) = text.split_at(10);
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return Err(bad("expected YYYY-MM-DD first"));
    }
    let (y, m, d) = match (digits(&date[..4]), digits(&date[5..7]), digits(&date[8..])) {
        (Some(y), Some(m), Some(d)) => (y as i64, m, d),
        _ => return Err(bad("expected YYYY-MM-DD first")),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > month_days[m as usize - 1] {
        return Err(bad("no such date"));
    }
    let mut ts = days_from_civil(y, m, d) * MS_PER_DAY;
    if rest.is_empty() {
        return Ok(ts);
    }
    let rest = rest.strip_prefix(['T', ' ']).ok_or_else(|| bad("expected `T` after the date"))?;
    let time = rest
        .strip_suffix('Z')
        .or_else(|| rest.strip_suffix("+00:00"))
        .ok_or_else(|| bad("must end in `Z` or `+00:00`"))?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let h = parts.next().and_then(digits).filter(|&h| h < 24).ok_or_else(|| bad("bad hour"))?;
    let mi = parts.next().and_then(digits).filter(|&m| m < 60).ok_or_else(|| bad("bad minute"))?;
    let s = match parts.next() {
        Some(s) => digits(s).filter(|&s| s < 60).ok_or_else(|| bad("bad second"))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(bad("too many `:`"));
    }
    // Milliseconds: digits past the third are allowed (and dropped), other characters are not.
    let ms = if frac.is_empty() {
        0
    } else if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("bad fraction"));
    } else {
        let f = digits(&frac[..frac.len().min(3)]).ok_or_else(|| bad("bad fraction"))?;
        f * 10u32.pow(3 - frac.len().min(3) as u32)
    };
    ts += (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1000 + ms as i64;
    Ok(ts)
}

/// `2024-01-05T13:00:00Z`.
pub fn format(ts: Timestamp) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(MS_PER_DAY));
    let t = ts.rem_euclid(MS_PER_DAY) / 1000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let day = 1_704_067_200_000;
        assert_eq!(parse("2024-01-01").unwrap(), day);
        assert_eq!(parse("2024-01-01T00:00:00Z").unwrap(), day);
        assert_eq!(parse("2024-01-01 13:30:00+00:00").unwrap(), day + 48_600_000);
        assert_eq!(parse("2024-01-01T13:30Z").unwrap(), day + 48_600_000);
        assert_eq!(parse("2024-01-01T00:00:00.5Z").unwrap(), day + 500);
        assert_eq!(format(day + 48_600_000), "2024-01-01T13:30:00Z");
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "2024-02-30",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00+02:00",
            "01/02/2024",
            "2024-01-01T10:00:00",
            // The milliseconds' digits were checked, and what followed them ignored.
            "2024-01-01T10:00:00.123abcZ",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
