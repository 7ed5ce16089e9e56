//! Live mode end to end: the real `host` binary trading against
//! `coinbase-sim`, a local exchange that speaks Coinbase Advanced Trade's
//! REST and WebSocket protocol, checks every request's JWT as the venue
//! does, and replays the real hourly BTC series as its market. The tests
//! start it themselves, step its market bar by bar, kill the host with
//! SIGKILL (once while an order request is in flight), move the account
//! behind the session's back, and compare the ledger with the venue's
//! account. Every wait has a deadline; every process dies with its test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use strata_tests::*;

/// USD the venue account holds at the start; the session trades 10,000 of it.
const ACCOUNT_USD: &str = "100000";

/// `target/release/coinbase-sim`.
fn sim_bin() -> PathBuf {
    let path = repo().join("target/release/coinbase-sim");
    assert!(path.exists(), "{} is missing: run ./scripts/test.sh, which builds it", path.display());
    path
}

/// A running simulator; killed (its stdin closed) when dropped.
struct Sim {
    child: Child,
    _stdin: ChildStdin,
    rest: String,
    ws_market: String,
    ws_user: String,
}

impl Sim {
    fn start(dir: &Path, key: &Path) -> Sim {
        let candles = format!("BTC-USD={}", shared_data().join("BTC-USD-1h.csv").display());
        let mut child = Command::new(sim_bin())
            .args(["serve", "--key"])
            .arg(key)
            .args(["--candles", &candles, "--warm", "60", "--balances", &format!("USD={ACCOUNT_USD},BTC=0")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("sim-stderr.txt")).unwrap())
            .spawn()
            .expect("start coinbase-sim");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("sim said {line:?}: {e}"));
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        Sim { rest: s("rest"), ws_market: s("ws_market"), ws_user: s("ws_user"), child, _stdin: stdin }
    }

    /// One HTTP/1.1 request to the simulator's REST port; the JSON answer
    /// (Null if it is not JSON). A plain socket, so the tests need no curl.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let addr = self.rest.trim_start_matches("http://");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(addr).expect("connect to coinbase-sim");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut answer = vec![0; length];
        reader.read_exact(&mut answer).unwrap();
        serde_json::from_slice(&answer).unwrap_or(Value::Null)
    }

    fn account(&self) -> Value {
        self.call("GET", "/sim/account", None)
    }

    /// The start of the candle forming now, in unix seconds.
    fn now(&self) -> i64 {
        self.account()["now"].as_i64().expect("sim time")
    }

    fn faults(&self, faults: Value) {
        self.call("POST", "/sim/faults", Some(faults));
    }

    /// Closes the forming candle; returns its start (unix s).
    fn advance(&self) -> i64 {
        let closing = self.now();
        self.call("POST", "/sim/advance", Some(json!({"bars": 1})));
        closing
    }

    fn balance(&self, currency: &str) -> Decimal {
        self.account()["balances"][currency].as_str().unwrap_or("0").parse().unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A live session's folder: key, config, run folder, state database.
struct Live {
    dir: tempfile::TempDir,
    sim: Sim,
    runs: u32,
}

impl Live {
    fn new() -> Live {
        let dir = tempdir();
        let key = dir.path().join("cdp_api_key.json");
        let made = Command::new(sim_bin()).args(["keygen", "--out"]).arg(&key).status().unwrap();
        assert!(made.success(), "coinbase-sim keygen");
        let sim = Sim::start(dir.path(), &key);
        Live { dir, sim, runs: 0 }
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("cdp_api_key.json")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("session")
    }

    fn config(&self) -> ConfigFile {
        let mut config = ConfigFile::reference(&shared_data())
            .slice("analysis", |s| s.config = "fast = 3, slow = 8".into());
        config.live = vec![
            ("key-file".into(), format!("{:?}", self.key().display().to_string())),
            ("rest-url".into(), format!("{:?}", self.sim.rest)),
            ("ws-market-url".into(), format!("{:?}", self.sim.ws_market)),
            ("ws-user-url".into(), format!("{:?}", self.sim.ws_user)),
            ("history-bars".into(), "20".into()),
            ("poll-interval-s".into(), "0.05".into()),
            ("request-timeout-s".into(), "30".into()),
        ];
        config
    }

    fn write_config(&self, config: &ConfigFile) -> PathBuf {
        let path = self.dir.path().join("run.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        path
    }

    fn start(&mut self, extra: &[&str]) -> Running {
        let config = self.dir.path().join("run.toml");
        if !config.exists() {
            self.write_config(&self.config());
        }
        self.runs += 1;
        // The endpoint's address is written anew by each process.
        let _ = std::fs::remove_file(self.out().join("http.addr"));
        let stderr = self.dir.path().join(format!("stderr-{}.txt", self.runs));
        let child = Command::new(host_bin())
            .args(["run", "--mode", "live", "--symbols", "BTC-USD", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(self.out())
            .args(extra)
            .env_remove("STRATA_CONFIG")
            .env_remove("STRATA_DATA_DIR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path().join(format!("stdout-{}.txt", self.runs))).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start host");
        Running { child: Some(child), stderr }
    }

    /// Timestamps (ms) of the bars the session committed, from its audit log.
    fn committed(&self) -> Vec<i64> {
        let text = std::fs::read_to_string(self.out().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "step")
            .filter_map(|v| v["ts"].as_str().map(iso_ms))
            .collect()
    }

    /// Closes one candle at the venue and waits for the session to commit it.
    fn step(&self, host: &mut Running) {
        let closed = self.sim.advance() * 1000;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.committed().contains(&closed) {
            assert!(host.alive(), "the session ended:\n{}", host.stderr());
            assert!(
                Instant::now() < deadline,
                "the session did not commit the bar of {closed}:\n{}",
                host.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the session has committed its history (the candles closed before it started).
    fn warmed_up(&self, host: &mut Running) {
        let newest = (self.sim.now() - 3600) * 1000;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.committed().contains(&newest) {
            assert!(host.alive(), "the session ended:\n{}", host.stderr());
            assert!(Instant::now() < deadline, "the session did not start:\n{}", host.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn summary(&self) -> Value {
        serde_json::from_str(&self.file("summary.json")).unwrap()
    }

    fn stop(&self, host: &mut Running) {
        host.signal("TERM");
        let code = host.wait(Duration::from_secs(30));
        assert_eq!(code, Some(0), "the session did not stop cleanly:\n{}", host.stderr());
    }
}

/// `2018-05-15T06:00:00Z` as milliseconds.
fn iso_ms(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 { (d[0] - 1, d[1] + 9) } else { (d[0], d[1] - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000
}

/// Rows of a CSV file after its header, split on commas (no quoted commas in these columns).
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

/// The venue's orders of this session, each checked to be there once.
fn venue_orders(sim: &Sim) -> Vec<Value> {
    let orders = sim.account()["orders"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<&str> = orders.iter().map(|o| o["client_order_id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a client order id reached the venue twice: {orders:#?}");
    orders
}

/// The ledger must be the venue's account: cash moved by exactly what USD
/// moved, and the BTC position is the BTC balance.
fn assert_ledger_is_the_account(live: &Live) {
    let s = live.summary();
    let cash: Decimal = s["final_cash"].as_str().unwrap().parse().unwrap();
    let start: Decimal = s["start_cash"].as_str().unwrap().parse().unwrap();
    let usd_moved = live.sim.balance("USD") - ACCOUNT_USD.parse::<Decimal>().unwrap();
    assert_eq!(
        cash - start,
        usd_moved,
        "the ledger's cash moved by {}, the venue's USD by {usd_moved}",
        cash - start
    );
    let mut position = Decimal::ZERO;
    for f in rows(&live.file("fills.csv")) {
        let qty: Decimal = f[4].parse().unwrap();
        position += if f[3] == "buy" { qty } else { -qty };
    }
    assert_eq!(
        position,
        live.sim.balance("BTC"),
        "the ledger holds {position} BTC, the venue {}",
        live.sim.balance("BTC")
    );
}

#[test]
fn live_mode_without_a_key_refuses_naming_what_is_missing() {
    let mut live = Live::new();
    // No key named at all.
    let mut config = live.config();
    config.live.retain(|(k, _)| k != "key-file");
    let path = live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    assert_ne!(host.wait(Duration::from_secs(60)), Some(0));
    let err = host.stderr();
    assert!(err.contains("live mode needs the venue's API key"), "{err}");
    assert!(
        err.contains(&path.display().to_string()) && err.contains("key-file") && err.contains("key-env"),
        "{err}"
    );
    // A key file that is not there is named.
    let mut config = live.config();
    config.live[0].1 = format!("{:?}", live.dir.path().join("nowhere.json").display().to_string());
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    assert_ne!(host.wait(Duration::from_secs(60)), Some(0));
    assert!(host.stderr().contains("nowhere.json"), "{}", host.stderr());
    // An environment variable that is not set is named.
    let mut config = live.config();
    config.live[0] = ("key-env".into(), "\"STRATA_TEST_NO_SUCH_KEY\"".into());
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    assert_ne!(host.wait(Duration::from_secs(60)), Some(0));
    assert!(host.stderr().contains("STRATA_TEST_NO_SUCH_KEY"), "{}", host.stderr());
    // A config a spot venue cannot follow (selling what the account does not hold) is refused.
    let text = format!("[shorting]\nenabled = true\n\n{}", live.config().to_toml());
    std::fs::write(live.dir.path().join("run.toml"), text).unwrap();
    let mut host = live.start(&["--yes"]);
    assert_ne!(host.wait(Duration::from_secs(60)), Some(0));
    assert!(host.stderr().contains("shorting.enabled: Coinbase spot"), "{}", host.stderr());
    // A key, but no confirmation and no terminal to ask on: nothing is sent.
    live.write_config(&live.config());
    let mut host = live.start(&[]);
    assert_ne!(host.wait(Duration::from_secs(60)), Some(0));
    assert!(host.stderr().contains("pass --yes"), "{}", host.stderr());
    assert!(venue_orders(&live.sim).is_empty());
}

#[test]
fn a_live_session_trades_at_the_venue_and_two_kill_9s_neither_double_nor_lose_an_order() {
    let mut live = Live::new();
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);

    // Trade until the venue has filled two orders, then kill -9 right after a candle closes.
    let mut bars = 0;
    while venue_orders(&live.sim).iter().filter(|o| o["status"] == "FILLED").count() < 2 {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no trades after {bars} bars:\n{}", host.stderr());
    }
    live.sim.advance();
    host.kill9();

    // The restart replays its journal (no venue call for what it committed)
    // and picks up the bar the kill interrupted.
    let mut host = live.start(&["--yes"]);
    for _ in 0..3 {
        live.step(&mut host);
    }
    // Kill it between sending an order and the venue's answer: the venue
    // takes the order and holds the answer back.
    let known: Vec<String> =
        venue_orders(&live.sim).iter().map(|o| o["client_order_id"].as_str().unwrap().to_owned()).collect();
    live.sim.faults(json!({"stall_next_create": 5}));
    let stalled_id = 'bars: {
        for _ in 0..200 {
            let closed = live.sim.advance() * 1000;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let new = venue_orders(&live.sim)
                    .into_iter()
                    .map(|o| o["client_order_id"].as_str().unwrap().to_owned())
                    .find(|id| !known.contains(id));
                if let Some(id) = new {
                    break 'bars id;
                }
                if live.committed().contains(&closed) {
                    break;
                }
                assert!(host.alive(), "the session ended:\n{}", host.stderr());
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        panic!("no order was sent:\n{}", host.stderr());
    };
    host.kill9();

    // The restart finds the order at the venue and adopts it: not sent again.
    let mut host = live.start(&["--yes"]);
    for _ in 0..12 {
        live.step(&mut host);
    }
    live.stop(&mut host);
    let third = host.stderr();
    assert!(third.contains("adopted, not sent again") && third.contains(&stalled_id), "{third}");

    let orders = venue_orders(&live.sim);
    assert_eq!(orders.iter().filter(|o| o["client_order_id"] == stalled_id.as_str()).count(), 1);
    // Every order the ledger sent is at the venue once, sent on the bar it
    // was decided on (history and stale decisions are never traded), and
    // the venue has no other.
    let sent: Vec<Vec<String>> = rows(&live.file("orders.csv"))
        .into_iter()
        .filter(|o| !o.iter().any(|c| c.contains("not sent")))
        .collect();
    assert_eq!(sent.len(), orders.len(), "ledger orders {sent:?}\nvenue orders {orders:#?}");
    for o in &sent {
        let at_venue = orders
            .iter()
            .find(|v| v["client_order_id"].as_str().unwrap().ends_with(&format!("-{}", o[0])))
            .unwrap_or_else(|| panic!("ledger order {o:?} is not at the venue"));
        let created = iso_ms(at_venue["created_time"].as_str().unwrap());
        assert_eq!(created, iso_ms(&o[2]) + 3_600_000, "order {o:?} went out late: {at_venue}");
    }
    let venue_fills = live.sim.account()["fills"].as_array().unwrap().len();
    assert_eq!(rows(&live.file("fills.csv")).len(), venue_fills);
    assert!(venue_fills >= 3, "too few fills to tell: {venue_fills}");
    assert_ledger_is_the_account(&live);
    let summary = live.summary();
    assert_eq!(summary["mode"], "live");
    assert_eq!(summary["venue"]["name"], "coinbase");
    assert_eq!(summary["venue"]["baseline"]["balances"]["USD"], ACCOUNT_USD, "{summary:#}");
}

#[test]
fn the_venues_refusals_are_recorded_rate_limits_waited_out_and_a_moved_account_stops_the_session() {
    let mut live = Live::new();
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    // The next order is refused for funds, and the next two requests after it are rate limited.
    live.sim.faults(json!({"reject_next": {"count": 1, "error": "INSUFFICIENT_FUND", "message": "Insufficient balance in source account"}}));
    let mut bars = 0;
    while !live
        .committed_orders()
        .iter()
        .any(|o| o["reason"].as_str().unwrap_or("").contains("the venue refused"))
    {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no order after {bars} bars:\n{}", host.stderr());
    }
    // Then: two 429s; the next order placed but its answer lost (the router
    // re-sends it with the same client order id and gets the same order);
    // and its fill split across two bars.
    live.sim.faults(json!({"rate_limit_next": 2, "swallow_next_create": true, "partial_fill_next": "0.5"}));
    let mut bars = 0;
    while venue_orders(&live.sim).iter().filter(|o| o["status"] == "FILLED").count() < 1 {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no fill after {bars} bars:\n{}", host.stderr());
    }
    live.step(&mut host);
    live.stop(&mut host);
    let err = host.stderr();
    assert!(err.contains("no answer from the venue (attempt 1 of 3)"), "{err}");
    let fills = rows(&live.file("fills.csv"));
    let first = &fills[0][1];
    assert_eq!(
        fills.iter().filter(|f| &f[1] == first).count(),
        2,
        "the first order's fill was not split: {fills:?}"
    );
    let orders = live.file("orders.csv");
    assert!(
        orders.contains("the venue refused it: INSUFFICIENT_FUND (Insufficient balance in source account)"),
        "{orders}"
    );
    assert_ledger_is_the_account(&live);

    // Something outside the session takes 5 USD: the restart refuses to trade, saying what differs.
    live.sim.faults(json!({"balance_drift": {"USD": "-5"}}));
    let mut host = live.start(&["--yes"]);
    assert_ne!(host.wait(Duration::from_secs(60)), Some(0), "{}", host.stderr());
    let err = host.stderr();
    assert!(
        err.contains("disagrees with the session's ledger")
            && err.contains("USD:")
            && err.contains("off by -5"),
        "{err}"
    );
    assert!(err.contains("start a new session"), "{err}");
    let before = venue_orders(&live.sim).len();
    live.sim.advance();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(venue_orders(&live.sim).len(), before, "an order went out after the refusal");
}

#[test]
fn a_dry_run_sends_nothing_and_no_key_material_reaches_a_slice_or_a_file() {
    let mut live = Live::new();
    // The key's secret part: what must appear in no file of the session.
    let key: Value = serde_json::from_str(&std::fs::read_to_string(live.key()).unwrap()).unwrap();
    let pem = key["privateKey"].as_str().unwrap().to_owned();
    let secret_lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 16).collect();
    assert!(!secret_lines.is_empty());

    // The key sits beside a directory granted to a hostile strategy that
    // tries to read outside its grant and its process's environment.
    let grant = live.dir.path().join("grant");
    std::fs::create_dir(&grant).unwrap();
    std::fs::write(grant.join("inside.txt"), "fine").unwrap();
    std::fs::copy(live.key(), live.dir.path().join("outside.txt")).unwrap();
    std::os::unix::fs::symlink(live.key(), grant.join("escape-link")).unwrap();
    let mut config = live.config().slice("strategy", |s| {
        s.plugin = component("hostile-fs");
        s.config = String::new();
        s.extra.push(format!("grants.read-dirs = {{ \"/data\" = {:?} }}", grant.display().to_string()));
    });
    config.live[0] = ("key-env".into(), "\"STRATA_TEST_CDP_KEY\"".into());
    live.write_config(&config);
    let config_path = live.dir.path().join("run.toml");
    let mut host = {
        live.runs += 1;
        let stderr = live.dir.path().join("stderr-dry.txt");
        let child = Command::new(host_bin())
            .args(["run", "--mode", "live", "--dry-run", "--symbols", "BTC-USD", "--config"])
            .arg(&config_path)
            .arg("--out")
            .arg(live.out())
            .env("STRATA_TEST_CDP_KEY", std::fs::read_to_string(live.key()).unwrap())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running { child: Some(child), stderr }
    };
    live.warmed_up(&mut host);
    for _ in 0..10 {
        live.step(&mut host);
    }
    live.stop(&mut host);
    let err = host.stderr();
    let mut files_to_check = vec![host.stderr.clone()];
    for attempt in [
        "contained: read /proc/self/environ",
        "contained: read /data/../outside.txt",
        "contained: read /data/escape-link",
        "granted: read /data/inside.txt (4 bytes)",
    ] {
        assert!(err.contains(attempt), "missing {attempt:?} in:\n{err}");
    }
    assert!(!err.contains("ESCAPED"), "{err}");
    assert_eq!(live.summary()["mode"], "live (dry run)");
    assert!(venue_orders(&live.sim).is_empty(), "a dry run sent an order");

    // The reference strategy in a dry run: orders are built, checked against
    // the venue's rules and logged, the config's execution slice fills them,
    // and the venue sees none.
    let dry = live.dir.path().join("dry");
    std::fs::create_dir(&dry).unwrap();
    // Its execution slice (which fills the orders in a dry run, next to a
    // host holding a real key) hunts for the key: environment, the key file,
    // the state database, the venue's address, its own memory.
    let venue_addr = live.sim.rest.trim_start_matches("http://").to_owned();
    let paths = format!("{},{}", live.key().display(), live.dir.path().join("session.db").display());
    let mut reference = live.config().slice("execution", |s| {
        s.plugin = component("hostile-keys");
        s.config = format!("paths = {paths:?}, venue = {venue_addr:?}");
    });
    reference.live.retain(|(k, _)| k != "key-file");
    reference.live.push(("key-env".into(), "\"STRATA_TEST_CDP_KEY\"".into()));
    let reference_path = dry.join("run.toml");
    std::fs::write(&reference_path, reference.to_toml()).unwrap();
    let dry_out = dry.join("session");
    let dry_stderr = dry.join("stderr.txt");
    let mut host = Running {
        child: Some(
            Command::new(host_bin())
                .args(["run", "--mode", "live", "--dry-run", "--symbols", "BTC-USD", "--config"])
                .arg(&reference_path)
                .arg("--out")
                .arg(&dry_out)
                .env("STRATA_TEST_CDP_KEY", std::fs::read_to_string(live.key()).unwrap())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&dry_stderr).unwrap())
                .spawn()
                .unwrap(),
        ),
        stderr: dry_stderr,
    };
    let mut bars = 0;
    while !host.stderr().contains("dry run: would send") {
        live.sim.advance();
        std::thread::sleep(Duration::from_millis(100));
        bars += 1;
        assert!(bars < 200 && host.alive(), "no order in a dry run:\n{}", host.stderr());
    }
    for _ in 0..5 {
        live.sim.advance();
        std::thread::sleep(Duration::from_millis(100));
    }
    host.signal("TERM");
    assert_eq!(host.wait(Duration::from_secs(30)), Some(0), "{}", host.stderr());
    assert!(venue_orders(&live.sim).is_empty(), "a dry run sent an order");
    let err = host.stderr();
    for attempt in [
        "contained: no environment variables",
        &format!("contained: read {}", live.key().display()),
        "contained: read /proc/self/environ",
        &format!("contained: tcp connect {venue_addr}"),
        "contained: no private key in this instance's linear memory",
    ] {
        assert!(err.contains(attempt), "missing {attempt:?} in:\n{err}");
    }
    assert!(!err.contains("ESCAPED"), "{err}");
    let intents = std::fs::read_to_string(dry.join("session.intents.jsonl")).unwrap();
    assert!(intents.lines().all(|l| l.contains("\"dry_run\":true")), "{intents}");
    let fills = std::fs::read_to_string(dry_out.join("fills.csv")).unwrap();
    assert!(fills.lines().count() > 1, "the simulated fills are missing: {fills}");
    files_to_check.push(dry.join("session.intents.jsonl"));
    files_to_check.push(dry.join("stderr.txt"));

    // No file the sessions wrote, and nothing they printed, holds the key.
    let mut files = files_to_check;
    files.push(live.dir.path().join("session.db"));
    let mut stack = vec![live.out(), dry.join("session")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    for entry in std::fs::read_dir(live.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("session.")) {
            files.push(path);
        }
    }
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for line in &secret_lines {
            assert!(!text.contains(line), "{} holds key material", file.display());
        }
    }
}

impl Live {
    /// Orders of the steps committed so far, from the audit log.
    fn committed_orders(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.out().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "step")
            .flat_map(|v| v["orders"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

#[test]
fn closed_candles_arrive_over_the_websocket_and_a_dropped_stream_is_filled_over_rest() {
    let mut live = Live::new();
    let mut config = live.config();
    // The REST poll is a ten-minute fallback: bars can only come this fast through the stream.
    for (k, v) in &mut config.live {
        if k == "poll-interval-s" {
            *v = "600".into();
        }
    }
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    for _ in 0..5 {
        live.step(&mut host);
    }
    // The venue drops every WebSocket and a candle closes meanwhile: the
    // reconnect triggers a REST check that fills it in.
    live.sim.faults(json!({"drop_ws": true}));
    for _ in 0..3 {
        live.step(&mut host);
    }
    live.stop(&mut host);
    let err = host.stderr();
    assert!(err.contains("venue stream Market") && err.contains("reconnecting"), "{err}");
}

/// `host ctl ACTION --out DIR`.
fn ctl(live: &Live, action: &str) -> Ran {
    host(&["ctl", action, "--out", &live.out().display().to_string()])
}

#[test]
fn an_operator_pauses_resumes_and_cancels_working_orders_with_host_ctl() {
    let mut live = Live::new();
    let mut config = live.config();
    config.paper.push(("http-port".into(), "0".into()));
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    let paused = ctl(&live, "pause");
    assert!(paused.ok() && paused.stdout.contains("queued"), "{paused:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctl(&live, "status").stdout.contains("\"paused\": true") {
        assert!(Instant::now() < deadline, "the pause did not take: {}", host.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Paused: decisions are recorded as not sent, and the venue gets nothing.
    let mut bars = 0;
    while !live.committed_orders().iter().any(|o| o["reason"].as_str().unwrap_or("").contains("paused")) {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no decision while paused:\n{}", host.stderr());
    }
    assert!(venue_orders(&live.sim).is_empty(), "an order went out while paused");
    // A pause outlives a restart.
    live.stop(&mut host);
    let mut host = live.start(&["--yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host.stderr().contains("still paused") {
        assert!(
            Instant::now() < deadline && host.alive(),
            "the restart forgot the pause:\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Resumed: the next order goes out; cancel-all takes it back before it fills.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctl(&live, "resume").ok() {
        assert!(Instant::now() < deadline, "the restarted session does not answer: {}", host.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut bars = 0;
    while venue_orders(&live.sim).is_empty() {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no order after resuming:\n{}", host.stderr());
    }
    assert!(ctl(&live, "cancel-all").ok());
    let deadline = Instant::now() + Duration::from_secs(10);
    while venue_orders(&live.sim)[0]["status"] != "CANCELLED" {
        assert!(Instant::now() < deadline, "the order was not cancelled: {:#?}", venue_orders(&live.sim));
        std::thread::sleep(Duration::from_millis(20));
    }
    live.step(&mut host);
    let cancelled = live.committed_orders();
    assert!(cancelled.iter().any(|o| o["status"] == "cancelled"), "{cancelled:#?}");
    live.stop(&mut host);
    assert_ledger_is_the_account(&live);
}

/// Steps until the venue account holds BTC that the session bought.
fn hold_a_position(live: &Live, host: &mut Running) {
    let mut bars = 0;
    while live.sim.balance("BTC").is_zero() {
        live.step(host);
        bars += 1;
        assert!(bars < 200, "no position after {bars} bars:\n{}", host.stderr());
    }
}

#[test]
fn an_operator_flattens_at_the_venue_and_a_kill_9_neither_sends_it_again_nor_lifts_the_pause() {
    let mut live = Live::new();
    let mut config = live.config();
    config.paper.push(("http-port".into(), "0".into()));
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    hold_a_position(&live, &mut host);
    let held = live.sim.balance("BTC");

    // The flatten goes out between bars, at once: kill -9 the moment the
    // venue has the closing order, before the session commits another bar.
    let before = venue_orders(&live.sim).len();
    let flattened = ctl(&live, "flatten");
    assert!(flattened.ok() && flattened.stdout.contains("queued"), "{flattened:#?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let closing = loop {
        let orders = venue_orders(&live.sim);
        if let Some(o) = orders.iter().skip(before).find(|o| o["side"] == "SELL") {
            break o.clone();
        }
        assert!(Instant::now() < deadline, "no closing order at the venue: {orders:#?}\n{}", host.stderr());
        std::thread::sleep(Duration::from_millis(5));
    };
    let size = &closing["order_configuration"]["market_market_ioc"]["base_size"];
    assert_eq!(size.as_str().unwrap().parse::<Decimal>().unwrap(), held, "{closing}");
    host.kill9();
    let sent = venue_orders(&live.sim).len();

    // The restart re-applies the flatten at the bar it took effect after:
    // the venue already has the order, so it is adopted, not sent again.
    let mut host = live.start(&["--yes"]);
    live.step(&mut host);
    live.step(&mut host);
    let err = host.stderr();
    assert!(err.contains("still paused") && err.contains("adopted, not sent again"), "{err}");
    assert!(live.sim.balance("BTC").is_zero(), "the venue still holds {} BTC", live.sim.balance("BTC"));
    assert!(ctl(&live, "status").stdout.contains("\"paused\": true"));
    live.stop(&mut host);

    // A clean restart replays the committed flatten from the journal: still
    // flat, still paused, nothing sent.
    let mut host = live.start(&["--yes"]);
    live.step(&mut host);
    live.stop(&mut host);
    assert_eq!(venue_orders(&live.sim).len(), sent, "an order went out after the flatten");
    assert!(live.sim.balance("BTC").is_zero());
    let orders = rows(&live.file("orders.csv"));
    let liquidation: Vec<&Vec<String>> = orders
        .iter()
        .filter(|o| o.last().is_some_and(|r| r.starts_with("host liquidation: operator flatten")))
        .collect();
    assert_eq!(liquidation.len(), 1, "{orders:?}");
    assert_eq!(liquidation[0][9], "filled", "{orders:?}");
    assert!(closing["client_order_id"].as_str().unwrap().ends_with(&format!("-{}", liquidation[0][0])));
    assert_ledger_is_the_account(&live);
    assert_eq!(live.summary()["venue"]["paused"], true);
}

#[test]
fn the_drawdown_kill_switch_closes_the_position_at_the_venue_and_ends_the_session() {
    let mut live = Live::new();
    let mut config = live.config();
    // Any dip below the peak, the entry's fee included, fires it (a hundredth of a percent).
    config.risk.push(("max-drawdown".into(), "0.0001".into()));
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    hold_a_position(&live, &mut host);
    // The switch fires at the bar that marks the position; the closing order
    // fills with the next candle; the session ends once it is flat.
    let mut bars = 0;
    while host.alive() {
        let closed = live.sim.advance() * 1000;
        let deadline = Instant::now() + Duration::from_secs(30);
        while host.alive() && !live.committed().contains(&closed) {
            assert!(Instant::now() < deadline, "the session did not commit {closed}:\n{}", host.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        bars += 1;
        assert!(bars < 20, "the session did not end after {bars} bars:\n{}", host.stderr());
    }
    assert_eq!(host.wait(Duration::from_secs(30)), Some(0), "{}", host.stderr());
    assert!(live.sim.balance("BTC").is_zero(), "the venue still holds {} BTC", live.sim.balance("BTC"));
    let summary = live.summary();
    assert_eq!(summary["status"], "completed", "{summary:#}");
    assert!(summary["risk_stop"].as_str().unwrap_or("").contains("drawdown kill switch"), "{summary:#}");
    assert_eq!(summary["positions_left_open"], json!([]), "{summary:#}");
    let orders = live.file("orders.csv");
    let closing: Vec<Vec<String>> = rows(&orders)
        .into_iter()
        .filter(|o| o.last().is_some_and(|r| r.starts_with("host liquidation: drawdown kill switch")))
        .collect();
    assert_eq!(closing.len(), 1, "{orders}");
    assert_eq!((closing[0][3].as_str(), closing[0][9].as_str()), ("sell", "filled"), "{orders}");
    assert_ledger_is_the_account(&live);
}

#[test]
fn the_daily_loss_limit_closes_positions_at_the_venue_and_the_session_trades_on() {
    let mut live = Live::new();
    let mut config = live.config();
    config.risk.retain(|(k, _)| k != "max-daily-loss");
    config.risk.push(("max-daily-loss".into(), "0.0001".into()));
    config.risk.push(("daily-loss-closes".into(), "true".into()));
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    hold_a_position(&live, &mut host);
    let mut bars = 0;
    while !live.sim.balance("BTC").is_zero() {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 30, "still holding after {bars} bars:\n{}", host.stderr());
    }
    // Not a kill switch: the session goes on.
    live.step(&mut host);
    live.step(&mut host);
    live.stop(&mut host);
    let orders = live.file("orders.csv");
    let closing: Vec<Vec<String>> = rows(&orders)
        .into_iter()
        .filter(|o| o.last().is_some_and(|r| r.starts_with("host liquidation: max-daily-loss")))
        .collect();
    assert!(!closing.is_empty(), "{orders}");
    assert!(closing.iter().all(|o| o[3] == "sell" && o[9] == "filled"), "{orders}");
    assert_ne!(live.summary()["status"], "stopped-by-risk");
    assert_ledger_is_the_account(&live);
}

#[test]
fn a_closing_order_the_venue_refuses_is_reported_as_left_open_and_not_sent_again() {
    let mut live = Live::new();
    let mut config = live.config();
    config.paper.push(("http-port".into(), "0".into()));
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    hold_a_position(&live, &mut host);
    let held = live.sim.balance("BTC");
    live.sim.faults(json!({"reject_next": {"count": 1, "error": "INSUFFICIENT_FUND", "message": "Insufficient balance in source account"}}));
    let before = venue_orders(&live.sim).len();
    assert!(ctl(&live, "flatten").ok());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host.stderr().contains("remains open at the venue") {
        assert!(Instant::now() < deadline && host.alive(), "no refusal reported:\n{}", host.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..3 {
        live.step(&mut host);
    }
    live.stop(&mut host);
    assert_eq!(venue_orders(&live.sim).len(), before, "the refused closing order was sent again");
    assert_eq!(live.sim.balance("BTC"), held);
    let orders = live.file("orders.csv");
    assert!(
        orders.contains(
            "host liquidation: operator flatten (host ctl flatten); the venue refused it: INSUFFICIENT_FUND"
        ),
        "{orders}"
    );
    let left = live.summary()["positions_left_open"].clone();
    assert!(
        left[0].as_str().is_some_and(|m| m.contains("BTC-USD") && m.contains("remains open at the venue")),
        "{left}"
    );
    let printed = std::fs::read_to_string(live.dir.path().join("stdout-1.txt")).unwrap();
    assert!(printed.contains("LEFT OPEN"), "{printed}");
    assert_ledger_is_the_account(&live);
}

#[test]
fn an_execution_algorithm_works_orders_at_the_exchange_through_the_host_and_survives_a_kill_9() {
    let mut live = Live::new();
    let mut config = live.config().slice("execution", |s| {
        s.plugin = component("twap-execution");
        s.config = "slices = 3".into();
        s.extra
            .push(format!("venue = {{ plugin = {:?} }}", component("sim-execution").display().to_string()));
    });
    config.paper.push(("http-port".into(), "0".into()));
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);

    // Trade until the venue has filled an order's three children, then
    // kill -9 with the next order's children perhaps half placed.
    let third_child_filled = |live: &Live| {
        venue_orders(&live.sim).iter().any(|o| {
            o["status"] == "FILLED"
                && o["client_order_id"].as_str().unwrap().rsplit('-').next().unwrap().ends_with("003")
        })
    };
    let mut bars = 0;
    while !third_child_filled(&live) {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no order worked after {bars} bars:\n{}", host.stderr());
    }
    live.step(&mut host);
    live.sim.advance();
    host.kill9();
    let mut host = live.start(&["--yes"]);
    for _ in 0..8 {
        live.step(&mut host);
    }
    // The operator flattens: the host's closing order goes to the exchange
    // as it is, one order for the whole position, not through the algorithm.
    hold_a_position(&live, &mut host);
    assert!(ctl(&live, "flatten").ok());
    live.step(&mut host);
    live.step(&mut host);
    assert!(live.sim.balance("BTC").is_zero(), "the venue still holds {} BTC", live.sim.balance("BTC"));
    live.stop(&mut host);

    // Each order the ledger filled is three orders at the venue, with the
    // client order ids of its children (order id * 1000 + 1..3), whose
    // sizes add up to it; no client order id went out twice.
    let venue = venue_orders(&live.sim);
    let all = rows(&live.file("orders.csv"));
    let is_liquidation = |o: &Vec<String>| o.last().is_some_and(|r| r.starts_with("host liquidation"));
    let liquidation: Vec<&Vec<String>> = all.iter().filter(|o| is_liquidation(o)).collect();
    assert_eq!(liquidation.len(), 1, "{all:?}");
    let id: u64 = liquidation[0][0].parse().unwrap();
    let sent: Vec<&Value> = venue
        .iter()
        .filter(|v| {
            v["client_order_id"].as_str().unwrap().rsplit('-').next() == Some(&(id * 1000 + 1).to_string())
        })
        .collect();
    assert_eq!(sent.len(), 1, "the liquidation {:?} went out as one order: {venue:#?}", liquidation[0]);
    assert_eq!(liquidation[0][9], "filled", "{all:?}");
    let filled: Vec<Vec<String>> =
        all.iter().filter(|o| o[9] == "filled" && !is_liquidation(o)).cloned().collect();
    assert!(!filled.is_empty());
    for order in &filled {
        let id: u64 = order[0].parse().unwrap();
        let children: Vec<&Value> = venue
            .iter()
            .filter(|v| {
                let client = v["client_order_id"].as_str().unwrap();
                (1..=3).any(|n| client.ends_with(&format!("-{}", id * 1000 + n)))
            })
            .collect();
        assert_eq!(children.len(), 3, "order {order:?} at the venue: {children:#?}");
        let sizes: Decimal = children
            .iter()
            .map(|c| {
                c["order_configuration"]["market_market_ioc"]["base_size"]
                    .as_str()
                    .unwrap()
                    .parse::<Decimal>()
                    .unwrap()
            })
            .sum();
        assert_eq!(sizes, order[6].parse::<Decimal>().unwrap(), "order {order:?}");
    }
    assert!(venue.len() >= 3 * filled.len());
    let venue_fills = live.sim.account()["fills"].as_array().unwrap().len();
    assert_eq!(rows(&live.file("fills.csv")).len(), venue_fills, "every venue fill is in the ledger once");
    assert_ledger_is_the_account(&live);
}

#[test]
fn a_hostile_algorithm_trading_for_real_finds_no_key_in_the_venue_its_memory_or_anywhere() {
    let mut live = Live::new();
    let venue_addr = live.sim.rest.trim_start_matches("http://").to_owned();
    let paths = format!("{},{}", live.key().display(), live.dir.path().join("session.db").display());
    let config = live.config().slice("execution", |s| {
        s.plugin = component("hostile-venue");
        s.config = format!("attack = \"keys\", from-order = 1, paths = {paths:?}, venue = {venue_addr:?}");
        s.extra
            .push(format!("venue = {{ plugin = {:?} }}", component("sim-execution").display().to_string()));
    });
    live.write_config(&config);
    let mut host = live.start(&["--yes"]);
    live.warmed_up(&mut host);
    // Real orders: the hunt runs right after the venue answered its first child.
    let mut bars = 0;
    while venue_orders(&live.sim).is_empty() || !host.stderr().contains("linear memory") {
        live.step(&mut host);
        bars += 1;
        assert!(bars < 200, "no order reached the venue after {bars} bars:\n{}", host.stderr());
    }
    live.step(&mut host);
    live.stop(&mut host);
    let err = host.stderr();
    assert!(!err.contains("ESCAPED"), "{err}");
    for attempt in [
        "contained: the venue answers with order states only",
        "contained: no environment variables",
        &format!("contained: read {}", live.key().display()),
        "contained: read /proc/self/environ",
        &format!("contained: tcp connect {venue_addr}"),
        "contained: no private key in this instance's linear memory",
    ] {
        assert!(err.contains(attempt), "missing {attempt:?} in:\n{err}");
    }
    assert_ledger_is_the_account(&live);
}
