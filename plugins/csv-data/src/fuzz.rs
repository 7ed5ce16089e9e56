//! Fuzzing the reader with proptest: arbitrary bytes, and files of bars
//! built right and then broken (edge numbers and dates, BOM, CRLF, comments,
//! non-UTF-8 bytes, lines past [`MAX_LINE_BYTES`]), read through the same
//! `open` and `next_batch` calls the host makes. A panic here is a trap in
//! the sandbox, which data must never cause.
//!
//! Seeded, so CI sees the same cases on every run. `PROPTEST_CASES` sets the
//! number of cases of every target (the defaults below take about a second
//! each in release), `PROPTEST_RNG_SEED` another seed, for a longer hunt:
//! `PROPTEST_CASES=100000 cargo test --release -p csv-data fuzz`.
//! A failing input found this way is kept as a named test in `regressions`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, contextualize_config};

use super::*;

/// The seed CI runs with; any fixed value would do.
const SEED: u64 = 0x0057_4241_5441_3132;

/// The default config for a target of `cases` cases, with the environment's
/// overrides (`PROPTEST_CASES`, `PROPTEST_RNG_SEED`), writing no files.
fn fuzz_config(cases: u32) -> ProptestConfig {
    contextualize_config(ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// A host log record is capped at 4 KiB; an error message about one bad
/// line should fit in one too, whatever the line held.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Numbers as data files hold them, and as they should not.
fn number_text() -> impl Strategy<Value = String> {
    let edges = prop::sample::select(vec![
        "0",
        "-0",
        "0.0",
        "1",
        "1e308",
        "1.7976931348623157e308",
        "1e309",
        "5e-324",
        "2.2250738585072014e-308",
        "1e-7",
        "79228162514264337593543950335",
        "79228162514264337593543950336",
        "1e28",
        "1e-28",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "infinity",
        "+1",
        "1.",
        ".5",
        "1e",
        "0x10",
        "1_000",
        " 2 ",
        "",
        "null",
        "١",
        "00000000000000000000000000000000000001",
        "9007199254740993",
        "0.30000000000000004",
    ]);
    prop_oneof![
        3 => edges.prop_map(str::to_owned),
        3 => (0u64..1_000_000_000, 0u32..12).prop_map(|(m, scale)| format!("{}", m as f64 / 10f64.powi(scale as i32))),
        1 => any::<f64>().prop_map(|v| format!("{v}")),
        1 => any::<f64>().prop_map(|v| format!("{v:e}")),
        1 => "[0-9.eE+-]{0,30}",
        1 => "\\PC{0,12}",
        1 => prop::collection::vec(b'0'..=b'9', 300..2000).prop_map(|d| String::from_utf8(d).unwrap()),
    ]
}

/// Timestamps: the accepted forms around the calendar's edges, and near misses.
fn timestamp_text() -> impl Strategy<Value = String> {
    let edges = prop::sample::select(vec![
        "9999-12-31",
        "9999-12-31T23:59:59Z",
        "0000-01-01",
        "0000-02-29",
        "1900-02-29",
        "2000-02-29",
        "2016-12-31T23:59:60Z",
        "1970-01-01T00:00:00.999Z",
        "1970-01-01T00:00:00.1234567890123Z",
        "2024-01-01T00:00:00.12xZ",
        "2024-01-01 00:00+00:00",
        "2024-01-01T24:00:00Z",
        "-001-01-01",
        "+2024-01-01",
        "2024-1-1",
        "2024-01-01T00:00:00+01:00",
        "20240101",
        "2024-01-01é",
        "é024-01-01",
        "2024-01-0é",
        "9223372036854775807",
        "-9223372036854775808",
    ]);
    let parts = (0i64..=10_000, 0u32..=13, 0u32..=32, 0u32..=25, 0u32..=61, 0u32..=61, 0u32..4);
    let built = parts.prop_map(|(y, mo, d, h, mi, s, form)| match form {
        0 => format!("{y:04}-{mo:02}-{d:02}"),
        1 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        2 => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}+00:00"),
        _ => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{mi}{s}Z"),
    });
    prop_oneof![2 => edges.prop_map(str::to_owned), 6 => built, 1 => "\\PC{0,24}"]
}

/// A row of 4 to 8 fields (6 is right), timestamp first.
fn row_text() -> impl Strategy<Value = String> {
    (timestamp_text(), prop::collection::vec(number_text(), 3..8))
        .prop_map(|(ts, numbers)| std::iter::once(ts).chain(numbers).collect::<Vec<_>>().join(","))
}

/// A sound row in increasing time, so most files get past their first rows.
fn sound_row(day: u32) -> String {
    let date = timestamp::format(1_704_067_200_000 + i64::from(day) * 86_400_000);
    let (open, close) = (100.0 + f64::from(day % 7), 100.5 + f64::from(day % 5));
    let (high, low) = (open.max(close) + 1.0, open.min(close) - 1.0);
    format!("{},{open},{high},{low},{close},{day}", &date[..10])
}

/// A file: maybe a BOM, comments, a header, rows sound and not, line ends
/// `\n` or `\r\n`, then a few bytes overwritten (anything, non-UTF-8
/// included) and maybe one line past the length limit.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = prop::sample::select(vec![
        HEADER,
        YAHOO_HEADER,
        "\u{feff}timestamp,open,high,low,close,volume",
        "TIMESTAMP,OPEN,HIGH,LOW,CLOSE,VOLUME",
        "timestamp,open,high,low,close",
        "",
        "# SYNTHETIC\ntimestamp,open,high,low,close,volume",
        "# a comment\n\n# another\nDate,Open,High,Low,Close,Adj Close,Volume",
    ]);
    let rows =
        prop::collection::vec(prop_oneof![3 => (0u32..400).prop_map(sound_row), 1 => row_text()], 0..30);
    let crlf = any::<bool>();
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4);
    let long_line =
        prop::option::weighted(0.1, (any::<prop::sample::Index>(), MAX_LINE_BYTES - 8..MAX_LINE_BYTES + 8));
    (header, rows, crlf, edits, long_line).prop_map(|(header, rows, crlf, edits, long_line)| {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut lines = vec![header.replace('\n', end)];
        lines.extend(rows);
        if let Some((at, len)) = long_line {
            let at = at.index(lines.len() + 1);
            lines.insert(at, "7".repeat(len));
        }
        let mut bytes = (lines.join(end) + end).into_bytes();
        for (at, byte) in edits {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
        }
        bytes
    })
}

/// A folder of its own per target: the targets run in parallel.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("csv-data-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the host gets from the file: every bar, or the error that stopped it.
fn read_file(dir: &Path, bytes: &[u8], follow: bool) -> (Vec<Bar>, Option<String>) {
    std::fs::write(dir.join("F.csv"), bytes).unwrap();
    let config = plugin_sdk::Config::defaults(&CsvData::manifest())
        .with("dir", dir.to_str().unwrap())
        .with("follow", follow);
    let mut data = CsvData::new(&config).unwrap();
    if let Err(e) = data.open("F", TimeRange::default()) {
        return (Vec::new(), Some(e.message().to_owned()));
    }
    let mut bars = Vec::new();
    // Every call reads at least one line or ends, so a call per line is enough.
    for _ in 0..=bytes.len() {
        // A batch of 7: the batch boundary falls at every place in a file of rows.
        let mut batch = Vec::new();
        let result = data.next_batch(7, &mut batch);
        bars.append(&mut batch);
        if let Err(e) = result {
            return (bars, Some(e.message().to_owned()));
        }
        let reader = data.reader.as_ref().unwrap();
        if reader.done || reader.at_end {
            return (bars, None);
        }
    }
    panic!("the reader neither ended nor failed after one call per byte");
}

/// What every outcome must be: sound bars in order; an error that names the
/// file and a line of it, in one short printable line.
fn check_outcome(
    dir: &Path,
    bytes: &[u8],
    bars: &[Bar],
    error: Option<&str>,
) -> std::result::Result<(), TestCaseError> {
    for pair in bars.windows(2) {
        prop_assert!(pair[0].ts < pair[1].ts, "bars out of order: {pair:?}");
    }
    for bar in bars {
        let prices = [bar.open, bar.high, bar.low, bar.close];
        prop_assert!(prices.iter().all(|p| p.is_finite() && *p > 0.0), "{bar:?}");
        prop_assert!(bar.low <= bar.open.min(bar.close) && bar.high >= bar.open.max(bar.close), "{bar:?}");
        prop_assert!(bar.volume.is_finite() && bar.volume >= 0.0, "{bar:?}");
    }
    let Some(message) = error else { return Ok(()) };
    let path = format!("{}/F.csv", dir.display());
    prop_assert!(message.starts_with(&path), "does not name the file: {message}");
    prop_assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes: {}", message.len(), excerpt(message));
    prop_assert!(!message.chars().any(char::is_control), "a control character: {message:?}");
    if message != format!("{path} is empty: expected the header `{HEADER}`") {
        let lines = bytes.split(|&b| b == b'\n').count() as u64;
        let line: u64 = message[path.len()..]
            .strip_prefix(" line ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| TestCaseError::fail(format!("does not name the line: {message}")))?;
        prop_assert!((1..=lines).contains(&line), "line {line} of {lines}: {message}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(2000))]

    /// One row, both parsers: the fast path never accepts what the general
    /// parser refuses, nor reads it differently; refusals name the field.
    #[test]
    fn rows_parse_the_same_on_both_paths_or_are_refused_by_field(row in row_text(), crlf in any::<bool>()) {
        let general = parse_row(&row);
        let with_end = if crlf { format!("{row}\r") } else { row.clone() };
        if let Some(fast) = fast::parse_row(with_end.as_bytes()) {
            prop_assert_eq!(Ok(fast), general.clone(), "{}", row);
        }
        if let Err(message) = general {
            prop_assert!(message.len() <= MAX_MESSAGE_BYTES && !message.chars().any(char::is_control), "{message:?}");
            prop_assert!(message.contains("field") || message.contains("prices"), "names no field: {message}");
        }
    }

    /// Yahoo rows: the same checks, with `null` days skipped.
    #[test]
    fn yahoo_rows_are_read_or_refused_by_field(fields in prop::collection::vec(prop_oneof![number_text(), Just("null".to_owned())], 5..9), ts in timestamp_text()) {
        let row = format!("{ts},{}", fields.join(","));
        if let Err(message) = parse_yahoo_row(&row) {
            prop_assert!(message.len() <= MAX_MESSAGE_BYTES && !message.chars().any(char::is_control), "{message:?}");
            prop_assert!(message.contains("field") || message.contains("prices"), "names no field: {message}");
        }
    }
}

proptest! {
    #![proptest_config(fuzz_config(300))]

    /// Whole files built right and then broken.
    #[test]
    fn mutated_files_give_sound_bars_or_an_error_naming_the_line(bytes in file_bytes(), follow in any::<bool>()) {
        let dir = folder("mutated");
        let (bars, error) = read_file(&dir, &bytes, follow);
        check_outcome(&dir, &bytes, &bars, error.as_deref())?;
    }

    /// Anything at all after a valid header.
    #[test]
    fn arbitrary_bytes_give_sound_bars_or_an_error_naming_the_line(tail in prop::collection::vec(any::<u8>(), 0..512), yahoo in any::<bool>()) {
        let dir = folder("bytes");
        let mut bytes = format!("{}\n", if yahoo { YAHOO_HEADER } else { HEADER }).into_bytes();
        bytes.extend(tail);
        let (bars, error) = read_file(&dir, &bytes, false);
        check_outcome(&dir, &bytes, &bars, error.as_deref())?;
    }
}

/// Inputs the fuzz targets found wrong, kept as they were found.
mod regressions {
    use super::*;

    fn read(name: &str, bytes: &[u8]) -> (Vec<Bar>, Option<String>) {
        read_file(&folder(name), bytes, false)
    }

    /// A plain decimal of 309 digits is infinite as an f64; the fast path
    /// took it as a price of `inf` and handed the host an infinite high.
    #[test]
    fn a_number_too_long_for_an_f64_is_refused_not_read_as_infinite() {
        let high = format!("18{}", "0".repeat(307));
        let row = format!("0000-01-01,443,{high},1,79228162514264337593543950335,0");
        assert_eq!(fast::parse_row(row.as_bytes()), None);
        let (bars, error) = read("too-long", format!("{HEADER}\n{row}\n").as_bytes());
        assert!(bars.is_empty());
        let error = error.unwrap();
        assert!(error.contains("F.csv line 2: field `high`: `18000"), "{error}");
        assert!(error.ends_with("... (309 bytes)` is not finite"), "{error}");
    }

    /// A byte that is not UTF-8 was reported against the line before it.
    #[test]
    fn a_line_that_is_not_utf8_is_named_by_its_own_number() {
        let mut bytes = format!("{HEADER}\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1,2,0.5,").into_bytes();
        bytes.extend(b"\xff,10\n");
        let (bars, error) = read("utf8", &bytes);
        assert_eq!(bars.len(), 1);
        let error = error.unwrap();
        assert!(
            error.ends_with("F.csv line 3: not UTF-8 text (a byte that is not UTF-8 at column 20)"),
            "{error}"
        );
    }

    /// A file without line ends was read whole into one line, however large,
    /// and quoted whole in the error.
    #[test]
    fn a_line_past_the_limit_is_refused_with_a_short_quote() {
        let row = format!("2024-01-01,{}", "1".repeat(MAX_LINE_BYTES));
        let (bars, error) = read("long", format!("{HEADER}\n{row}\n").as_bytes());
        assert!(bars.is_empty());
        let error = error.unwrap();
        assert!(error.contains("F.csv line 2: longer than 65536 bytes"), "{error}");
        assert!(error.len() < 300, "{error}");
        // A row just under the limit is still a row (refused for its value, not its length).
        let row = format!("2024-01-01,{}", "1".repeat(MAX_LINE_BYTES - 20));
        let (_, error) = read("long", format!("{HEADER}\n{row}\n").as_bytes());
        assert!(error.unwrap().contains("F.csv line 2: field `open`"));
    }

    /// Excel writes a byte order mark before the header.
    #[test]
    fn a_byte_order_mark_before_the_header_is_skipped() {
        let (bars, error) =
            read("bom", format!("\u{feff}{HEADER}\r\n2024-01-01,1,2,0.5,1.5,10\r\n").as_bytes());
        assert_eq!((bars.len(), error), (1, None));
    }
}
