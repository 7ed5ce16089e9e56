//! RFC3339 <-> unix seconds, UTC only. Hand-written (Howard Hinnant's civil-day algorithm)
//! because the simulator only ever needs `YYYY-MM-DDTHH:MM:SS[.f]Z`, which is not worth a
//! date-time dependency on a shared 2-core machine.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock unix seconds; JWT validity is checked against this, never against sim time.
pub fn wall_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Wall-clock time as RFC3339 with microseconds, for WS envelope timestamps.
pub fn wall_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format_micros(d.as_secs() as i64, d.subsec_micros())
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `2018-05-15T06:00:00Z` for a unix second.
pub fn format(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// Like [`format`] with a microsecond fraction; fills use it so that sequence timestamps
/// are distinct and ordered even when several fills share a bar.
pub fn format_micros(secs: i64, micros: u32) -> String {
    let base = format(secs);
    format!("{}.{micros:06}Z", &base[..base.len() - 1])
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` to (unix seconds, microseconds).
/// Only UTC offsets are accepted: every timestamp in this protocol is UTC.
pub fn parse(s: &str) -> Option<(i64, u32)> {
    let s = s.trim();
    let body = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once(['T', ' '])?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let mo: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next()?.parse().ok()?;
    let se: i64 = tp.next()?.parse().ok()?;
    if tp.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let micros = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            digits.parse().ok()?
        }
        Some(_) => return None,
    };
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_instants() {
        // 1526364000 is the first row of the BTC-USD hourly file.
        assert_eq!(parse("2018-05-15T06:00:00Z"), Some((1_526_364_000, 0)));
        assert_eq!(format(1_526_364_000), "2018-05-15T06:00:00Z");
        assert_eq!(parse("1970-01-01T00:00:00.5+00:00"), Some((0, 500_000)));
        assert_eq!(format_micros(0, 7), "1970-01-01T00:00:00.000007Z");
        assert_eq!(
            parse("2024-02-29T23:59:59Z").map(|p| format(p.0)).as_deref(),
            Some("2024-02-29T23:59:59Z")
        );
        assert_eq!(parse("2018-05-15T06:00:00+02:00"), None);
        assert_eq!(parse("garbage"), None);
    }
}
