//! The fast path for the rows almost every file consists of: a whole line in
//! the reader's buffer, fields split by byte, a fixed-position timestamp and
//! plain decimal numbers. It returns `None` for anything else, and the caller
//! falls back to the general parser, which also words the error message: the
//! fast path never decides that a row is bad.

use plugin_sdk::{Bar, Timestamp};

const MS_PER_DAY: i64 = 86_400_000;

/// 10^0 to 10^22: every one is exactly representable as an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// A valid row, if it is in the common form; `None` sends it to the general parser.
pub fn parse_row(line: &[u8]) -> Option<Bar> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&b| b == b',');
    let ts = timestamp(fields.next()?)?;
    let open = number(fields.next()?)?;
    let high = number(fields.next()?)?;
    let low = number(fields.next()?)?;
    let close = number(fields.next()?)?;
    let volume = number(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    let sound = open > 0.0
        && high > 0.0
        && low > 0.0
        && close > 0.0
        && high >= open.max(close)
        && low <= open.min(close)
        && high >= low;
    sound.then_some(Bar { ts, open, high, low, close, volume })
}

/// A plain decimal (`123`, `0.5`, `456.8599853515625`) as the nearest f64,
/// exactly as `str::parse` gives it: when the digits fit in 2^53 and the
/// fraction has at most 22 digits, one IEEE division of two exact values is
/// correctly rounded (Clinger's fast path); longer plain decimals go to
/// `str::parse` itself. Anything else (a sign, an exponent) is `None`.
pub fn number(text: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut fraction_digits: usize = 0;
    let mut seen_point = false;
    let mut digits = 0;
    let mut fits = true;
    for &b in text {
        match b {
            b'0'..=b'9' => {
                match mantissa.checked_mul(10).and_then(|m| m.checked_add(u64::from(b - b'0'))) {
                    Some(m) => mantissa = m,
                    None => fits = false,
                }
                digits += 1;
                fraction_digits += usize::from(seen_point);
            }
            b'.' if !seen_point => seen_point = true,
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    if fits && mantissa <= (1 << 53) && fraction_digits < POW10.len() {
        return Some(mantissa as f64 / POW10[fraction_digits]);
    }
    // A plain decimal with too many digits for the fast path; 309 digits or
    // more are infinite as an f64, which the general parser refuses.
    std::str::from_utf8(text).ok()?.parse().ok().filter(|v: &f64| v.is_finite())
}

fn two(b: &[u8], at: usize) -> Option<u32> {
    let (h, l) = (b[at].wrapping_sub(b'0'), b[at + 1].wrapping_sub(b'0'));
    (h < 10 && l < 10).then(|| u32::from(h) * 10 + u32::from(l))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`.
fn timestamp(b: &[u8]) -> Option<Timestamp> {
    if (b.len() != 10 && b.len() != 20) || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two(b, 0)? as i64 * 100 + two(b, 2)? as i64;
    let (month, day) = (two(b, 5)?, two(b, 8)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month[month as usize - 1] {
        return None;
    }
    let mut ts = days_from_civil(year, month, day) * MS_PER_DAY;
    if b.len() == 20 {
        if b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
            return None;
        }
        let (h, m, s) = (two(b, 11)?, two(b, 14)?, two(b, 17)?);
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        ts += (i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)) * 1000;
    }
    Some(ts)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_equal_what_str_parse_gives() {
        // A deterministic spread of magnitudes and precisions, printed the ways data files print them.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..200_000i32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let value = (x % 10_000_000_000) as f64 / 10f64.powi(i % 12);
            for text in [format!("{value}"), format!("{value:.2}"), format!("{}", value as f32)] {
                let want: f64 = text.parse().unwrap();
                match number(text.as_bytes()) {
                    Some(got) => assert_eq!(got.to_bits(), want.to_bits(), "{text}"),
                    None => assert!(text.contains('e'), "no fast path for {text}"),
                }
            }
        }
    }

    #[test]
    fn unusual_forms_are_left_to_the_general_parser() {
        for text in ["", ".", "-1", "1e5", "1.2.3", " 1"] {
            assert_eq!(number(text.as_bytes()), None, "{text:?}");
        }
        // Too long for the fast path, still exact.
        for text in ["12345678901234567890", "0.00000000000000000000001", "424.44000244140625"] {
            assert_eq!(number(text.as_bytes()), text.parse().ok(), "{text:?}");
        }
        assert_eq!(parse_row(b"2024-01-01 00:00:00,1,1,1,1,1"), None);
        assert_eq!(parse_row(b"2024-02-30,1,1,1,1,1"), None);
        assert_eq!(
            parse_row(b"2024-01-01,1,0.5,1,1,1"),
            None,
            "inconsistent rows get the general parser's message"
        );
    }

    #[test]
    fn rows_match_the_general_parser() {
        let lines = [
            "2014-09-18T00:00:00Z,456.8599853515625,456.8599853515625,413.10400390625,424.44000244140625,34483200.0",
            "2024-01-05,42000,43000.5,41000.25,42500,12.5\r",
            "2020-02-29T23:59:59Z,1,2,0.5,1.5,0",
        ];
        for line in lines {
            let fast = parse_row(line.as_bytes()).unwrap();
            let slow = crate::parse_row(line.trim_end_matches('\r')).unwrap();
            assert_eq!(fast, slow, "{line}");
        }
    }
}
