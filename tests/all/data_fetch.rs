//! `host data fetch` against a local server that speaks Coinbase Exchange's
//! candles protocol: at most 300 candles a request, `[[time, low, high, open,
//! close, volume], ...]` newest first, `{"message": ...}` errors, and the
//! faults a real venue throws (429 rate limits, 5xx, pages out of order, bad
//! candles). The server's candles are the real series in ../shared/data.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use strata_tests::*;

use crate::report::day_number;

/// One candle: bucket start in seconds and the data file's text of
/// open, high, low, close, volume.
type Candle = (i64, [String; 5]);

#[derive(Debug, Clone)]
enum Fault {
    /// HTTP 429, optionally with Retry-After seconds.
    RateLimit(Option<u32>),
    ServerError(u16),
    /// A 200 with this body instead of the candles.
    Body(String),
}

#[derive(Debug, Default, Clone)]
struct Script {
    /// Faults by request number (0-based, in arrival order).
    faults: HashMap<usize, Fault>,
    /// Every request whose window starts at or after this (seconds) gets a 500.
    down_from: Option<i64>,
}

/// What the client asked: product, granularity, window start and end (seconds).
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    product: String,
    granularity: i64,
    start: i64,
    end: i64,
}

struct Exchange {
    url: String,
    asked: Arc<Mutex<Vec<Asked>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn iso_to_secs(text: &str) -> Option<i64> {
    if text.len() != 20 || !text.ends_with('Z') {
        return None;
    }
    Some((day_number(text) * 86_400.0).round() as i64)
}

/// The candles of a shared data file, keyed by bucket start.
fn candles_of(file: &str) -> Vec<Candle> {
    let text = std::fs::read_to_string(shared_data().join(file)).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let secs = (day_number(f[0]) * 86_400.0).round() as i64;
            (secs, [f[1], f[2], f[3], f[4], f[5]].map(str::to_owned))
        })
        .collect()
}

fn json_error(status: u16, message: &str) -> (u16, String) {
    (status, format!("{{\"message\":\"{message}\"}}"))
}

impl Exchange {
    /// BTC-USD at 1d (the Yahoo daily series) and 1h (the Bitstamp hourly series).
    fn start(script: Script) -> Exchange {
        let mut book: BTreeMap<(String, i64), Vec<Candle>> = BTreeMap::new();
        book.insert(("BTC-USD".into(), 86_400), candles_of("BTC-USD-1d.csv"));
        book.insert(("BTC-USD".into(), 3_600), candles_of("BTC-USD-1h.csv"));
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (asked2, stop2) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop2.load(Ordering::SeqCst) {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else { continue };
                let (status, body, retry_after) = answer(&book, &script, n, request.url(), &asked2);
                n += 1;
                let mut response =
                    tiny_http::Response::from_string(body).with_status_code(status).with_header(
                        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                            .unwrap(),
                    );
                if let Some(secs) = retry_after {
                    response = response.with_header(
                        tiny_http::Header::from_bytes(&b"Retry-After"[..], secs.to_string()).unwrap(),
                    );
                }
                let _ = request.respond(response);
            }
        });
        Exchange { url, asked, stop, thread: Some(thread) }
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

/// The exchange's answer to request number `n`.
fn answer(
    book: &BTreeMap<(String, i64), Vec<Candle>>,
    script: &Script,
    n: usize,
    url: &str,
    asked: &Mutex<Vec<Asked>>,
) -> (u16, String, Option<u32>) {
    let plain = |(status, body): (u16, String)| (status, body, None);
    let Some(rest) = url.strip_prefix("/products/") else { return plain(json_error(404, "NotFound")) };
    let Some((product, query)) = rest.split_once("/candles?") else {
        return plain(json_error(404, "NotFound"));
    };
    let params: HashMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    let granularity: i64 = params.get("granularity").and_then(|g| g.parse().ok()).unwrap_or(0);
    if ![60, 300, 900, 3_600, 21_600, 86_400].contains(&granularity) {
        return plain(json_error(400, "Unsupported granularity"));
    }
    let (Some(start), Some(end)) =
        (params.get("start").and_then(|s| iso_to_secs(s)), params.get("end").and_then(|s| iso_to_secs(s)))
    else {
        return plain(json_error(400, "Invalid start or end"));
    };
    asked.lock().unwrap().push(Asked { product: product.into(), granularity, start, end });
    if (end - start) / granularity + 1 > 300 {
        return plain(json_error(
            400,
            "granularity too small for the requested time range. Count of aggregations requested exceeds 300",
        ));
    }
    match script.faults.get(&n) {
        Some(Fault::RateLimit(after)) => {
            return (429, "{\"message\":\"Public rate limit exceeded\"}".into(), *after);
        }
        Some(Fault::ServerError(status)) => return plain(json_error(*status, "Internal server error")),
        Some(Fault::Body(body)) => return (200, body.clone(), None),
        None => {}
    }
    if script.down_from.is_some_and(|d| start >= d) {
        return plain(json_error(500, "Internal server error"));
    }
    let Some(candles) = book.get(&(product.to_owned(), granularity)) else {
        return plain(json_error(404, "NotFound"));
    };
    let mut page: Vec<&Candle> = candles.iter().filter(|c| c.0 >= start && c.0 <= end).collect();
    // Newest first, as Coinbase sends them; every other page arrives shuffled.
    page.reverse();
    if n % 2 == 1 {
        let half = page.len() / 2;
        page.rotate_left(half);
        let last = page.len().saturating_sub(1);
        page.swap(0, last);
    }
    let items: Vec<String> = page
        .iter()
        .map(|(t, [open, high, low, close, volume])| format!("[{t},{low},{high},{open},{close},{volume}]"))
        .collect();
    (200, format!("[{}]", items.join(",")), None)
}

/// Runs `host data fetch` into `out` against `exchange`.
fn fetch(exchange: &Exchange, out: &Path, args: &[&str]) -> Ran {
    let out = out.display().to_string();
    let mut all = vec!["data", "fetch"];
    all.extend(args);
    all.extend(["--out", &out, "--base-url", &exchange.url]);
    host(&all)
}

/// (seconds, [open, high, low, close, volume]) rows of a written file, after
/// checking its marker and header.
fn rows_of(file: &Path) -> Vec<(i64, [f64; 5])> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("# Coinbase Exchange candles: product BTC-USD"), "{text:.200}");
    assert_eq!(lines.next().unwrap(), "timestamp,open,high,low,close,volume");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert!(f[0].ends_with('Z') && f[0].len() == 20, "ISO-8601 UTC: {l}");
            let v = |i: usize| f[i].parse::<f64>().unwrap();
            ((day_number(f[0]) * 86_400.0).round() as i64, [v(1), v(2), v(3), v(4), v(5)])
        })
        .collect()
}

/// The source file's candles with bucket starts in [from, to] (dates, inclusive).
fn expected(file: &str, from: &str, to: &str) -> Vec<(i64, [f64; 5])> {
    let (a, b) = ((day_number(from) * 86_400.0) as i64, (day_number(to) * 86_400.0) as i64 + 86_399);
    candles_of(file)
        .into_iter()
        .filter(|c| c.0 >= a && c.0 <= b)
        .map(|(t, v)| (t, [0, 1, 2, 3, 4].map(|i| v[i].parse::<f64>().unwrap())))
        .collect()
}

fn day(date: &str) -> i64 {
    (day_number(date) * 86_400.0) as i64
}

#[test]
fn fetches_a_range_through_rate_limits_server_errors_and_shuffled_pages() {
    let script = Script {
        faults: HashMap::from([
            (1, Fault::RateLimit(None)),
            (2, Fault::RateLimit(Some(1))),
            (4, Fault::ServerError(500)),
            (5, Fault::ServerError(503)),
        ]),
        down_from: None,
    };
    let exchange = Exchange::start(script);
    let out = tempdir();
    let ran = fetch(&exchange, out.path(), &["BTC-USD", "--from", "2020-01-01", "--to", "2021-12-31"]);
    assert!(ran.ok(), "{ran:#?}");
    // 731 days: pages of 300, 300 and 131, plus two 429s and two 5xx retried.
    assert!(
        ran.stdout.contains("731 1d candles, 2020-01-01T00:00:00Z to 2021-12-31T00:00:00Z (731 new, 0 already in the file); 7 requests, 2 rate-limited and retried, 2 errors retried"),
        "{}",
        ran.stdout
    );
    let asked = exchange.asked();
    assert_eq!(asked.len(), 7);
    assert!(asked.iter().all(|a| a.granularity == 86_400 && (a.end - a.start) / 86_400 < 300));
    let file = out.path().join("BTC-USD.csv");
    assert_eq!(rows_of(&file), expected("BTC-USD-1d.csv", "2020-01-01", "2021-12-31"));

    // The file is ready for a backtest, which names where it came from.
    let run = out.path().join("run");
    let config = ConfigFile::reference(out.path()).write(out.path());
    let ran = host(&[
        "run",
        "--symbols",
        "BTC-USD",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ran.ok(), "{ran:#?}");
    let summary = read_summary(&run);
    assert_eq!(summary["bars"], 731);
    let source = summary["data"][0]["source"]["description"].as_str().unwrap();
    assert!(source.contains("Coinbase Exchange candles: product BTC-USD, granularity 1d"), "{source}");
}

#[test]
fn an_interrupted_fetch_resumes_where_it_stopped() {
    let out = tempdir();
    let file = out.path().join("BTC-USD.csv");
    let range = ["BTC-USD", "--from", "2020-01-01", "--to", "2021-12-31"];
    {
        // The exchange goes down for good before the third page (2021-08-23 on).
        let exchange = Exchange::start(Script { down_from: Some(day("2021-01-01")), ..Script::default() });
        let ran = fetch(&exchange, out.path(), &range);
        ran.assert_fails_with(&[
            "HTTP 500: Internal server error",
            "start=2021-08-23T00:00:00Z",
            "BTC-USD.csv",
        ]);
        // The two pages that arrived are kept.
        assert_eq!(rows_of(&file), expected("BTC-USD-1d.csv", "2020-01-01", "2021-08-22"));
    }
    let exchange = Exchange::start(Script::default());
    let ran = fetch(&exchange, out.path(), &range);
    assert!(ran.ok(), "{ran:#?}");
    assert!(ran.stdout.contains("(131 new, 600 already in the file)"), "{}", ran.stdout);
    // Only what was missing was asked for.
    let asked = exchange.asked();
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].start, asked[0].end), (day("2021-08-23"), day("2021-12-31")));
    assert_eq!(rows_of(&file), expected("BTC-USD-1d.csv", "2020-01-01", "2021-12-31"));

    // A wider range fetches only the days before and after the file.
    let ran = fetch(&exchange, out.path(), &["BTC-USD", "--from", "2019-12-01", "--to", "2022-01-10"]);
    assert!(ran.ok(), "{ran:#?}");
    let asked = exchange.asked();
    let windows: Vec<(i64, i64)> = asked[1..].iter().map(|a| (a.start, a.end)).collect();
    assert_eq!(windows, [(day("2019-12-01"), day("2019-12-31")), (day("2022-01-01"), day("2022-01-10"))]);
    assert_eq!(rows_of(&file), expected("BTC-USD-1d.csv", "2019-12-01", "2022-01-10"));
    // Nothing missing: nothing asked.
    let ran = fetch(&exchange, out.path(), &["BTC-USD", "--from", "2020-06-01", "--to", "2020-06-30"]);
    assert!(ran.ok() && ran.stdout.contains("(0 new,"), "{ran:#?}");
    assert_eq!(exchange.asked().len(), 3);
}

#[test]
fn hourly_candles_come_in_pages_of_300_hours() {
    let exchange = Exchange::start(Script::default());
    let out = tempdir();
    // 16 days of hours (the March 2020 crash): 384 candles in two requests.
    let ran = fetch(
        &exchange,
        out.path(),
        &["BTC-USD", "--from", "2020-03-10", "--to", "2020-03-25", "--granularity", "1h"],
    );
    assert!(ran.ok(), "{ran:#?}");
    let asked = exchange.asked();
    assert_eq!(asked.len(), 2);
    assert_eq!((asked[0].granularity, asked[0].end - asked[0].start), (3_600, 299 * 3_600));
    assert_eq!(
        rows_of(&out.path().join("BTC-USD.csv")),
        expected("BTC-USD-1h.csv", "2020-03-10", "2020-03-25")
    );
    // The same file cannot be extended with daily candles.
    let ran = fetch(&exchange, out.path(), &["BTC-USD", "--from", "2020-03-01", "--to", "2020-03-30"]);
    ran.assert_fails_with(&["BTC-USD.csv", "was not written by `host data fetch` for BTC-USD at 1d"]);
}

#[test]
fn bad_candles_unknown_products_and_foreign_files_are_refused() {
    let out = tempdir();
    let file = out.path().join("BTC-USD.csv");
    // high below low on 2020-01-02.
    let bad = Fault::Body("[[1577923200,7000,6900,6950,6980,10],[1577836800,7100,7300,7200,7250,12]]".into());
    let exchange = Exchange::start(Script { faults: HashMap::from([(0, bad)]), ..Script::default() });
    let ran = fetch(&exchange, out.path(), &["BTC-USD", "--from", "2020-01-01", "--to", "2020-01-05"]);
    ran.assert_fails_with(&["candle at 2020-01-02T00:00:00Z", "inconsistent prices", "high 6900 low 7000"]);
    assert!(rows_of(&file).is_empty(), "nothing from a bad page is written");
    // An unknown product: the exchange's own message.
    let ran = fetch(&exchange, out.path(), &["NOPE-USD", "--from", "2020-01-01", "--to", "2020-01-05"]);
    ran.assert_fails_with(&["HTTP 404: NotFound", "products/NOPE-USD/candles"]);
    // A file from elsewhere is never mixed with.
    let foreign = out.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::copy(shared_data().join("BTC-USD-1d.csv"), foreign.join("BTC-USD.csv")).unwrap();
    let ran = fetch(&exchange, &foreign, &["BTC-USD", "--from", "2020-01-01", "--to", "2020-01-05"]);
    ran.assert_fails_with(&["was not written by `host data fetch`", "choose another --out"]);
    assert_eq!(
        std::fs::read(foreign.join("BTC-USD.csv")).unwrap(),
        std::fs::read(shared_data().join("BTC-USD-1d.csv")).unwrap()
    );
    // Bad arguments.
    host(&["data", "fetch", "BTC-USD", "--from", "2020-02-01", "--to", "2020-01-01"])
        .assert_fails_with(&["--from 2020-02-01 is after --to 2020-01-01"]);
    host(&["data", "fetch", "../x", "--from", "2020-01-01", "--to", "2020-01-02"])
        .assert_fails_with(&["not a valid symbol"]);
}

#[test]
fn the_exchange_url_can_come_from_the_environment() {
    let exchange = Exchange::start(Script::default());
    let out = tempdir();
    let output = std::process::Command::new(host_bin())
        .args(["data", "fetch", "BTC-USD", "--from", "2024-01-01", "--to", "2024-01-31", "--out"])
        .arg(out.path())
        .env("STRATA_COINBASE_URL", &exchange.url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        rows_of(&out.path().join("BTC-USD.csv")),
        expected("BTC-USD-1d.csv", "2024-01-01", "2024-01-31")
    );
}
