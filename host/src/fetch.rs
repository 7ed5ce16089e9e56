//! Candles from Coinbase Exchange's public market data into a bar file.
//!
//! `GET {base}/products/{product}/candles?granularity=G&start=ISO&end=ISO`
//! answers with at most 300 candles, `[[time, low, high, open, close,
//! volume], ...]`, newest first, where `time` is the bucket's start in Unix
//! seconds. This module pages through a range oldest window first, waits and
//! retries on rate limits (HTTP 429) and server errors, checks every candle,
//! and appends each page to `<dir>/<SYMBOL>.csv` as it arrives, so an
//! interrupted fetch keeps what it got and the next one carries on from the
//! last row instead of starting over. Hours with no trades have no candle on
//! Coinbase; such gaps are left as they are.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::barfile::{self, HEADER};
use crate::excerpt::excerpt;
use crate::model::Bar;
use crate::time::{Timestamp, iso};

/// The most candles Coinbase returns for one request.
pub const MAX_CANDLES_PER_REQUEST: i64 = 300;
/// Coinbase allows about 10 public requests a second; stay well under.
const MIN_REQUEST_INTERVAL: Duration = Duration::from_millis(150);
/// Waits double from here on each retry (unless the server says how long).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Candle sizes `host data fetch` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Granularity {
    #[value(name = "1h")]
    Hour,
    #[value(name = "1d")]
    Day,
}

impl Granularity {
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }

    fn ms(self) -> i64 {
        self.seconds() * 1000
    }

    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hour => "1h",
            Granularity::Day => "1d",
        }
    }
}

/// `3600` as `1h`, `86400` as `1d`, `60` as `1m`; other sizes in seconds.
fn granularity_name(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: HTTP {status}: {message}")]
    Status { url: String, status: u16, message: String },
    #[error("GET {url}: rate limited (HTTP 429) after {retries} retries; try again later")]
    RateLimited { url: String, retries: u32 },
    #[error("GET {url}: {error}")]
    Transport { url: String, error: Box<ureq::Error> },
    #[error(
        "GET {url}: the response is not a list of [time, low, high, open, close, volume] candles: {detail}"
    )]
    BadResponse { url: String, detail: String },
    #[error("GET {url}: candle at {} ({time}): {why}", iso(*time * 1000))]
    BadCandle { url: String, time: i64, why: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub product: String,
    pub granularity: Granularity,
    /// First bucket start to include.
    pub from: Timestamp,
    /// Last bucket start to include.
    pub to: Timestamp,
    pub file: PathBuf,
    /// For example `https://api.exchange.coinbase.com`.
    pub base_url: String,
}

/// What a fetch did.
#[derive(Debug, Default)]
pub struct FetchReport {
    pub requests: u32,
    pub rate_limited: u32,
    pub retried_errors: u32,
    /// Candles written by this fetch.
    pub new_candles: u64,
    /// Rows the file already had.
    pub kept_rows: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
}

/// One candle as a file row: its bucket start and the row's text.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    ts: Timestamp,
    text: String,
}

impl Row {
    fn of(bar: &Bar) -> Row {
        // f64's Display is the shortest text that reads back as the same number.
        let text =
            format!("{},{},{},{},{},{}", iso(bar.ts), bar.open, bar.high, bar.low, bar.close, bar.volume);
        Row { ts: bar.ts, text }
    }
}

/// The comment line that marks a file as this product's candles at this size.
fn marker(product: &str, granularity: Granularity) -> String {
    format!(
        "# Coinbase Exchange candles: product {product}, granularity {} ({} s), written by host data fetch",
        granularity.name(),
        granularity.seconds()
    )
}

/// Fetches `req`'s range into its file, keeping and extending what is there.
/// `now` cuts off candles whose period has not ended (they are still moving).
pub fn fetch(req: &FetchRequest, now: Timestamp) -> Result<FetchReport, FetchError> {
    let g = req.granularity.ms();
    // Bucket starts are multiples of the granularity.
    let from = req.from.div_euclid(g) * g + if req.from.rem_euclid(g) == 0 { 0 } else { g };
    let last_closed = (now - g).div_euclid(g) * g;
    let to = (req.to.div_euclid(g) * g).min(last_closed);
    let mut report = FetchReport::default();
    let mut client = Client::new(Duration::from_secs(60), Retries::PATIENT);

    let existing = read_existing(&req.file, &req.product, req.granularity)?;
    let mut first = existing.first().map(|r| r.ts);
    let mut last = existing.last().map(|r| r.ts);
    report.kept_rows = existing.len() as u64;
    if existing.is_empty() {
        write_file(&req.file, &req.product, req.granularity, &[])?;
    }

    // Earlier than the file: fetched whole, then written in front of it.
    if let Some(file_first) = first.filter(|&f| from < f) {
        let mut rows = Vec::new();
        for window in windows(from, file_first - g, g) {
            rows.extend(page(&mut client, req, window, &mut report)?);
        }
        if !rows.is_empty() {
            report.new_candles += rows.len() as u64;
            first = Some(rows[0].ts);
            rows.extend(existing);
            write_file(&req.file, &req.product, req.granularity, &rows)?;
        }
    }

    // Later than the file (or the whole range for a new file): page by page.
    let resume = last.map_or(from, |l| (l + g).max(from));
    for window in windows(resume, to, g) {
        let rows = page(&mut client, req, window, &mut report)?;
        let rows: Vec<Row> = rows.into_iter().filter(|r| last.is_none_or(|l| r.ts > l)).collect();
        if rows.is_empty() {
            continue;
        }
        append(&req.file, &rows)?;
        report.new_candles += rows.len() as u64;
        first.get_or_insert(rows[0].ts);
        last = Some(rows[rows.len() - 1].ts);
    }
    report.first = first;
    report.last = last;
    Ok(report)
}

/// Consecutive windows of at most 300 bucket starts covering [from, to].
fn windows(from: Timestamp, to: Timestamp, g: i64) -> Vec<(Timestamp, Timestamp)> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = (start + (MAX_CANDLES_PER_REQUEST - 1) * g).min(to);
        out.push((start, end));
        start = end + g;
    }
    out
}

/// One window's candles as file rows, oldest first.
fn page(
    client: &mut Client,
    req: &FetchRequest,
    window: (Timestamp, Timestamp),
    report: &mut FetchReport,
) -> Result<Vec<Row>, FetchError> {
    let bars = client.candles(&req.base_url, &req.product, req.granularity.seconds(), window, report)?;
    Ok(bars.iter().map(Row::of).collect())
}

/// How many times a request is tried again. `host data fetch` waits and
/// retries; paper mode's feed wants to hear at once and backs off at its own
/// pace (and reports the failure in its health).
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    pub rate_limited: u32,
    pub errors: u32,
}

impl Retries {
    pub const PATIENT: Retries = Retries { rate_limited: 8, errors: 4 };
    pub const NONE: Retries = Retries { rate_limited: 0, errors: 0 };
}

/// A client of Coinbase Exchange's public candles, shared by `host data
/// fetch` and paper mode's polling feed: pacing, retries, and the checks
/// every candle passes.
pub struct Client {
    agent: ureq::Agent,
    last_request: Option<Instant>,
    retries: Retries,
}

impl Client {
    pub fn new(timeout: Duration, retries: Retries) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("strata-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent, last_request: None, retries }
    }

    /// The candles of `product` whose periods of `granularity_s` seconds start
    /// in `[start, end]` (at most 300 periods), oldest first, every one
    /// checked. `base_url` is for example `https://api.exchange.coinbase.com`.
    pub fn candles(
        &mut self,
        base_url: &str,
        product: &str,
        granularity_s: i64,
        (start, end): (Timestamp, Timestamp),
        report: &mut FetchReport,
    ) -> Result<Vec<Bar>, FetchError> {
        let url = format!(
            "{}/products/{product}/candles?granularity={granularity_s}&start={}&end={}",
            base_url.trim_end_matches('/'),
            iso(start),
            iso(end)
        );
        let body = self.get(&url, report)?;
        parse_page(&url, &body, granularity_s, start, end)
    }

    /// GET with pacing, and retries on 429, 5xx and connection failures.
    fn get(&mut self, url: &str, report: &mut FetchReport) -> Result<String, FetchError> {
        let (mut rate_limits, mut errors) = (0u32, 0u32);
        loop {
            if let Some(wait) = self.last_request.map(|t| MIN_REQUEST_INTERVAL.saturating_sub(t.elapsed())) {
                std::thread::sleep(wait);
            }
            self.last_request = Some(Instant::now());
            report.requests += 1;
            let response = match self.agent.get(url).header("Accept", "application/json").call() {
                Ok(response) => response,
                Err(e) => {
                    errors += 1;
                    if errors > self.retries.errors {
                        return Err(FetchError::Transport { url: url.into(), error: Box::new(e) });
                    }
                    report.retried_errors += 1;
                    std::thread::sleep(backoff(errors));
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut response = response;
            let body = response.body_mut().read_to_string().unwrap_or_default();
            match status {
                200..=299 => return Ok(body),
                429 => {
                    rate_limits += 1;
                    if rate_limits > self.retries.rate_limited {
                        return Err(FetchError::RateLimited {
                            url: url.into(),
                            retries: self.retries.rate_limited,
                        });
                    }
                    report.rate_limited += 1;
                    std::thread::sleep(retry_after.unwrap_or_else(|| backoff(rate_limits)).min(MAX_BACKOFF));
                }
                500..=599 if errors < self.retries.errors => {
                    errors += 1;
                    report.retried_errors += 1;
                    std::thread::sleep(backoff(errors));
                }
                _ => {
                    return Err(FetchError::Status {
                        url: url.into(),
                        status,
                        message: error_message(&body),
                    });
                }
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    (FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1))).min(MAX_BACKOFF)
}

/// Coinbase explains errors as `{"message": "..."}`.
fn error_message(body: &str) -> String {
    // An excerpt either way: the server's text ends up on a terminal.
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned));
    excerpt(message.as_deref().unwrap_or(body))
}

/// Parses and checks one page; returns its candles oldest first.
fn parse_page(
    url: &str,
    body: &str,
    granularity_s: i64,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<Bar>, FetchError> {
    let bad = |detail: String| FetchError::BadResponse { url: url.into(), detail };
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| bad(format!("not JSON ({e})")))?;
    let list = value.as_array().ok_or_else(|| bad(format!("expected a list, got {}", kind(&value))))?;
    let mut candles = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let fields = item
            .as_array()
            .filter(|a| a.len() == 6)
            .ok_or_else(|| bad(format!("item {i} is not 6 numbers")))?;
        let numbers: Vec<f64> = fields
            .iter()
            .map(|f| f.as_f64())
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("item {i} holds something other than numbers")))?;
        // Whole seconds; written `1700000000` by Coinbase, `1700000000.0` by some stand-ins.
        let time = fields[0]
            .as_i64()
            .or_else(|| numbers[0].fract().eq(&0.0).then_some(numbers[0] as i64))
            .ok_or_else(|| bad(format!("item {i}: time is not whole seconds")))?;
        let [_, low, high, open, close, volume] = numbers[..] else { unreachable!("six fields") };
        let candle_err = |why: String| FetchError::BadCandle { url: url.into(), time, why };
        let ts = time * 1000;
        if ts.rem_euclid(granularity_s * 1000) != 0 {
            return Err(candle_err(format!("not on a {} boundary", granularity_name(granularity_s))));
        }
        if ts < start || ts > end {
            return Err(candle_err(format!("outside the requested window {} to {}", iso(start), iso(end))));
        }
        for (name, v) in [("low", low), ("high", high), ("open", open), ("close", close)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(candle_err(format!("{name} {v} is not a positive price")));
            }
        }
        if !(volume.is_finite() && volume >= 0.0) {
            return Err(candle_err(format!("volume {volume} is negative")));
        }
        if high < low || high < open.max(close) || low > open.min(close) {
            return Err(candle_err(format!(
                "inconsistent prices: open {open} high {high} low {low} close {close} (need low <= open, close <= high)"
            )));
        }
        candles.push(Bar { ts, open, high, low, close, volume });
    }
    // Newest first on the wire, but nothing relies on it.
    candles.sort_by_key(|c| c.ts);
    let mut bars: Vec<Bar> = Vec::with_capacity(candles.len());
    for bar in candles {
        if let Some(previous) = bars.last()
            && previous.ts == bar.ts
        {
            if *previous != bar {
                return Err(FetchError::BadCandle {
                    url: url.into(),
                    time: bar.ts / 1000,
                    why: "listed twice with different values".into(),
                });
            }
            continue;
        }
        bars.push(bar);
    }
    Ok(bars)
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        _ => "something else",
    }
}

/// The rows of a file this command wrote before, or none if there is no file.
/// Any other file is refused rather than mixed with.
fn read_existing(path: &Path, product: &str, g: Granularity) -> Result<Vec<Row>, FetchError> {
    let file_err = |message: String| FetchError::File { path: path.into(), message };
    // Read as every file the user names is: a FIFO or device in its place is
    // refused without waiting, and the size is capped.
    let file = match crate::files::open_regular(path, crate::files::RECORD_MAX, "data file") {
        Ok((f, _)) => f,
        Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => return Ok(Vec::new()),
        Err(e) => return Err(file_err(e.to_string())),
    };
    let want = marker(product, g);
    let mut rows: Vec<Row> = Vec::new();
    let mut marked = false;
    let mut header = false;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| FetchError::Io { path: path.into(), source })?;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if !header {
            if line.starts_with('#') {
                marked |= line == want;
                continue;
            }
            if !marked {
                return Err(file_err(format!(
                    "exists but was not written by `host data fetch` for {product} at {}; move it or choose another --out",
                    g.name()
                )));
            }
            if !line.eq_ignore_ascii_case(HEADER) {
                return Err(file_err(format!("line {}: expected the header `{HEADER}`", i + 1)));
            }
            header = true;
            continue;
        }
        let ts_text = line.split(',').next().unwrap_or_default();
        let ts = barfile::parse_timestamp(ts_text).map_err(|e| file_err(format!("line {}: {e}", i + 1)))?;
        if let Some(prev) = rows.last()
            && ts <= prev.ts
        {
            return Err(file_err(format!("line {}: {} is not after the previous row", i + 1, iso(ts))));
        }
        rows.push(Row { ts, text: line.to_owned() });
    }
    if !header && marked {
        return Err(file_err("has no header line".into()));
    }
    Ok(rows)
}

/// Writes the whole file (marker, header, rows) through a temporary file, so
/// a failure never leaves half a file.
fn write_file(path: &Path, product: &str, g: Granularity, rows: &[Row]) -> Result<(), FetchError> {
    let io_err = |source| FetchError::Io { path: path.into(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let tmp = path.with_extension("csv.partial");
    let mut out = io::BufWriter::new(File::create(&tmp).map_err(io_err)?);
    writeln!(out, "{}", marker(product, g)).map_err(io_err)?;
    writeln!(out, "{HEADER}").map_err(io_err)?;
    for row in rows {
        writeln!(out, "{}", row.text).map_err(io_err)?;
    }
    out.into_inner().map_err(|e| io_err(e.into_error()))?.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}

fn append(path: &Path, rows: &[Row]) -> Result<(), FetchError> {
    let io_err = |source| FetchError::Io { path: path.into(), source };
    let mut text = String::with_capacity(rows.len() * 80);
    for row in rows {
        text.push_str(&row.text);
        text.push('\n');
    }
    let mut file = OpenOptions::new().append(true).open(path).map_err(io_err)?;
    file.write_all(text.as_bytes()).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_quoted_as_one_short_line() {
        let huge = format!("{{\"message\":\"{}\"}}", "m".repeat(1_000_000));
        assert_eq!(error_message(&huge), format!("{}... (1000000 bytes)", "m".repeat(80)));
        assert_eq!(error_message("<html>\nBad gateway"), "<html>\\nBad gateway");
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn windows_hold_at_most_300_candles_and_cover_the_range() {
        let w = windows(0, 700 * DAY, DAY);
        assert_eq!(w, [(0, 299 * DAY), (300 * DAY, 599 * DAY), (600 * DAY, 700 * DAY)]);
        assert_eq!(windows(5 * DAY, 4 * DAY, DAY), []);
    }

    #[test]
    fn pages_are_sorted_deduplicated_and_checked() {
        let body = "[[172800,9,11,10,10.5,3],[86400.0,8,12,9,11,2.5],[172800,9,11,10,10.5,3]]";
        let bars = parse_page("u", body, 86_400, DAY, 2 * DAY).unwrap();
        assert_eq!(
            bars.iter().map(|b| Row::of(b).text).collect::<Vec<_>>(),
            ["1970-01-02T00:00:00Z,9,12,8,11,2.5", "1970-01-03T00:00:00Z,10,11,9,10.5,3"]
        );
        let cases = [
            ("[[86400,12,11,10,10.5,3]]", "inconsistent prices"),
            ("[[86401,9,11,10,10.5,3]]", "not on a 1d boundary"),
            ("[[864000,9,11,10,10.5,3]]", "outside the requested window"),
            ("[[86400,9,11,10,10.5,-3]]", "volume -3 is negative"),
            ("[[86400,9,11,10,10.5]]", "item 0 is not 6 numbers"),
            ("{\"message\":\"x\"}", "expected a list, got an object"),
            ("[[86400,9,11,10,10.5,3],[86400,9,11,10,10.6,3]]", "listed twice with different values"),
            ("[[86400.5,9,11,10,10.5,3]]", "time is not whole seconds"),
        ];
        for (body, want) in cases {
            let err = parse_page("u", body, 86_400, DAY, 2 * DAY).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn granularities_are_named_as_traders_write_them() {
        assert_eq!(
            [60, 300, 3_600, 21_600, 86_400, 90].map(granularity_name),
            ["1m", "5m", "1h", "6h", "1d", "90s"].map(String::from)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_millis(1000));
        assert_eq!(backoff(20), MAX_BACKOFF);
    }
}
