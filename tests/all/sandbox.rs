//! Hostile plugins (`tests/fixtures/hostile-*`) under each fault policy: the
//! host survives, names the culprit, applies the policy, writes the run's
//! files, and nothing a slice got wrong reaches the ledger.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use strata_tests::*;

/// Bar 60 of BAD carries the marker volume the fixtures react to; it opens on 2024-03-01.
const MARKED_BAR: &str = "2024-03-01T00:00:00Z";
const BAR_AFTER: &str = "2024-03-02T00:00:00Z";
const BARS: usize = 120;

/// Two symbols of daily bars from 2024-01-01; BAD's bar 60 has volume 666.
fn write_data(dir: &Path) {
    for symbol in ["GOOD", "BAD"] {
        let mut csv = String::from("timestamp,open,high,low,close,volume\n");
        let mut previous = 100.0;
        for i in 0..BARS {
            let close = ((100.0 + 10.0 * (i as f64 / 7.0).sin() + i as f64 * 0.1) * 100.0f64).round() / 100.0;
            let (high, low) = (f64::max(previous, close) + 0.5, f64::min(previous, close) - 0.5);
            let volume = if symbol == "BAD" && i == 60 { 666 } else { 10 };
            let ts = reference::format_ts(reference::parse_ts("2024-01-01") + i as i64 * 86_400_000);
            csv += &format!("{ts},{previous},{high},{low},{close},{volume}\n");
            previous = close;
        }
        std::fs::write(dir.join(format!("{symbol}.csv")), csv).unwrap();
    }
}

struct Hostile {
    dir: tempfile::TempDir,
    config: ConfigFile,
}

impl Hostile {
    /// The reference chain (SMA 2/3) on GOOD and BAD, with `fixture` in slot `kind`.
    fn new(kind: &'static str, fixture: &str, settings: &str, limits: &str) -> Self {
        let dir = tempdir();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        write_data(&data);
        let plugin = component(fixture);
        // GOOD and BAD move together and enter together: 45% each fits the
        // cash account, so BAD holds a position when its fixture strikes.
        let config = ConfigFile::reference(&data)
            .slice("analysis", |s| s.config = "fast = 2, slow = 3".into())
            .slice("sizing", |s| s.config = "fraction = 0.45".into())
            .slice(kind, |s| {
                s.plugin = plugin;
                s.config = settings.into();
                if !limits.is_empty() {
                    s.extra.push(format!("limits = {{ {limits} }}"));
                }
            });
        Hostile { dir, config }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, policy: &str) -> (Ran, PathBuf) {
        let text =
            format!("[faults]\npolicy = \"{policy}\"\ncooldown-bars = 10\n\n{}", self.config.to_toml());
        let config = self.dir.path().join(format!("{policy}.toml"));
        std::fs::write(&config, text).unwrap();
        let out = self.dir.path().join(format!("run-{policy}"));
        let ran = host(&[
            "run",
            "--symbols",
            "GOOD,BAD",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        (ran, out)
    }
}

fn summary(out: &Path) -> Value {
    read_summary(out)
}

fn fault(s: &Value) -> &Value {
    let faults = s["faults"].as_array().expect("faults");
    assert!(!faults.is_empty(), "no fault recorded: {s:#}");
    &faults[0]
}

fn bars_of(s: &Value, symbol: &str) -> u64 {
    s["data"].as_array().unwrap().iter().find(|d| d["symbol"] == symbol).unwrap()["bars"].as_u64().unwrap()
}

fn orders(out: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(out.join("orders.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

/// Every equity row is a finite decimal, and cash + positions was never NaN.
fn assert_equity_is_sane(out: &Path) {
    let text = std::fs::read_to_string(out.join("equity.csv")).unwrap();
    for line in text.lines().skip(1) {
        for field in line.split(',').skip(1) {
            field.parse::<rust_decimal::Decimal>().unwrap_or_else(|e| panic!("equity.csv row {line}: {e}"));
        }
    }
}

/// The checks every policy shares: the host stopped cleanly or carried on,
/// and the fault names plugin, slice, symbol and bar.
fn assert_contained(h: &Hostile, plugin: &str, slice: &str, at: &str, reason: &str) {
    // halt: stop, keep the evidence, exit non-zero.
    let (ran, out) = h.run("halt");
    ran.assert_fails_with(&[plugin, &format!("{slice} slice"), "symbol BAD", &format!("bar {at}"), reason]);
    let s = summary(&out);
    assert_eq!(s["status"], "failed");
    assert_eq!(fault(&s)["action"], "halted");
    assert_eq!(fault(&s)["symbol"], "BAD");
    assert_eq!(fault(&s)["at"], at);
    assert!(out.join("equity.csv").exists() && out.join("trades.csv").exists());
    assert_equity_is_sane(&out);

    // skip-symbol: BAD is dropped and closed by the host; GOOD runs to the end.
    let (ran, out) = h.run("skip-symbol");
    assert!(ran.ok(), "{ran:#?}");
    let s = summary(&out);
    assert_eq!(s["status"], "completed-with-faults");
    assert_eq!(fault(&s)["action"], "dropped-symbol");
    assert_eq!(bars_of(&s, "GOOD"), BARS as u64);
    assert!(bars_of(&s, "BAD") < BARS as u64, "BAD went on after it was dropped");
    assert!(s["open_positions"].as_array().unwrap().iter().all(|p| p["symbol"] != "BAD"));
    assert_equity_is_sane(&out);

    // safe-mode: no new positions for the cool-down, then fresh instances carry on.
    let (ran, out) = h.run("safe-mode");
    assert!(ran.ok(), "{ran:#?}");
    let s = summary(&out);
    assert_eq!(fault(&s)["action"], "safe-mode");
    assert_eq!(bars_of(&s, "GOOD"), BARS as u64);
    // A data slice's unusable bar is lost for the symbol; every other bar is used.
    let lost = u64::from(slice == "data");
    assert_eq!(bars_of(&s, "BAD"), BARS as u64 - lost, "safe mode resumes the symbol");
    let replaced = s["health"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["symbol"] == "BAD" && h["replacements"].as_u64() > Some(0));
    assert!(replaced, "the failed slice was not replaced: {:#}", s["health"]);
    assert_equity_is_sane(&out);
}

#[test]
fn a_slice_that_loops_forever_is_stopped_at_its_deadline() {
    let h = Hostile::new("strategy", "hostile-loop", "", "deadline-ms = 200");
    assert_contained(&h, "hostile-loop 0.1.0", "strategy", MARKED_BAR, "ran past its deadline of 200 ms");
    // The host closed BAD's position itself, at the open of the bar after the fault.
    let (_, out) = h.run("skip-symbol");
    let liquidation =
        orders(&out).into_iter().find(|o| o.last().unwrap().starts_with("host liquidation")).unwrap();
    assert_eq!((liquidation[1].as_str(), liquidation[3].as_str()), ("BAD", "sell"));
    assert_eq!(liquidation[13], BAR_AFTER);
    // Stopped within about the deadline: the slowest call is the one that was cut off.
    let slowest = summary(&out)["health"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["slowest_call_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((200.0..2_000.0).contains(&slowest), "slowest call {slowest} ms");
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let h = Hostile::new("strategy", "hostile-panic", "", "");
    assert_contained(&h, "hostile-panic 0.1.0", "strategy", MARKED_BAR, "hostile-panic: refusing the bar");
    let (_, out) = h.run("halt");
    let backtrace = fault(&summary(&out))["backtrace"].as_str().unwrap_or_default().to_owned();
    assert!(backtrace.contains("hostile_panic"), "guest backtrace: {backtrace}");
}

#[test]
fn unbounded_allocation_stops_at_the_memory_cap() {
    let h = Hostile::new("analysis", "hostile-alloc", "", "memory-mib = 32");
    assert_contained(&h, "hostile-alloc 0.1.0", "analysis", MARKED_BAR, "memory allocation");
}

#[test]
fn a_huge_list_is_refused_naming_the_count() {
    let h = Hostile::new("analysis", "hostile-lists", "mode = \"values\"", "");
    assert_contained(&h, "hostile-lists 0.1.0", "analysis", MARKED_BAR, "values for 1 bars x 2 features");
}

#[test]
fn absurd_output_names_are_refused_before_the_run() {
    let h = Hostile::new("analysis", "hostile-lists", "mode = \"outputs\"", "");
    h.run("skip-symbol").0.assert_fails_with(&["hostile-lists 0.1.0", "declares 5000 outputs"]);
}

#[test]
fn a_nan_price_never_reaches_the_ledger() {
    let h = Hostile::new("data", "hostile-data", "mode = \"nan\"", "");
    assert_contained(
        &h,
        "hostile-data 0.1.0",
        "data",
        MARKED_BAR,
        "`close` is NaN, not a positive finite price",
    );
}

#[test]
fn bars_out_of_order_are_refused() {
    let h = Hostile::new("data", "hostile-data", "mode = \"unsorted\"", "");
    let (ran, _) = h.run("halt");
    ran.assert_fails_with(&["hostile-data 0.1.0", "is not after the previous bar's", "symbol BAD"]);
}

#[test]
fn an_enormous_quantity_is_refused_and_never_traded() {
    let h = Hostile::new("sizing", "hostile-sizer", "mode = \"huge\"", "");
    let (ran, out) = h.run("halt");
    ran.assert_fails_with(&["sizing slice hostile-sizer 0.1.0", "over 100 times the equity", "symbol BAD"]);
    assert!(orders(&out).iter().all(|o| o[1] != "BAD"), "an order for BAD was placed");
    let (ran, out) = h.run("skip-symbol");
    assert!(ran.ok(), "{ran:#?}");
    assert!(orders(&out).iter().all(|o| o[1] != "BAD"));
    assert!(orders(&out).iter().any(|o| o[1] == "GOOD"), "GOOD still trades");
}

#[test]
fn a_negative_quantity_is_refused() {
    let h = Hostile::new("sizing", "hostile-sizer", "mode = \"negative\"", "");
    h.run("halt").0.assert_fails_with(&["hostile-sizer 0.1.0", "quantities cannot be negative"]);
}

#[test]
fn a_spinning_slice_is_cut_off_and_a_merely_slow_one_runs_out_of_budget() {
    let h = Hostile::new("strategy", "hostile-slow", "spin = 20000000000", "deadline-ms = 100");
    h.run("halt").0.assert_fails_with(&[
        "hostile-slow 0.1.0",
        "ran past its deadline of 100 ms",
        &format!("bar {MARKED_BAR}"),
    ]);
    // Each call well under the deadline, but the total over the budget.
    let h = Hostile::new("strategy", "hostile-slow", "spin = 3000000, every-bar = true", "budget-ms = 20");
    h.run("halt").0.assert_fails_with(&["hostile-slow 0.1.0", "over its budget of 20 ms for the run"]);
}

#[test]
fn sleeping_takes_no_time_in_a_backtest() {
    // Ten minutes of sleep on every bar: the host would hang for twenty hours
    // if a sleep were real. In simulated time it is over at once.
    let h = Hostile::new("strategy", "hostile-slow", "sleep-ms = 600000, every-bar = true", "");
    let started = Instant::now();
    let (ran, out) = h.run("halt");
    assert!(ran.ok(), "{ran:#?}");
    assert!(started.elapsed().as_secs() < 120, "sleeping held the host for {:?}", started.elapsed());
    assert_eq!(summary(&out)["status"], "completed");
}

#[test]
fn files_outside_the_grant_are_out_of_reach() {
    let mut h = Hostile::new("strategy", "hostile-fs", "", "");
    let data = h.data_dir();
    std::fs::write(h.dir.path().join("outside.txt"), "secret").unwrap();
    std::fs::write(data.join("inside.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(h.dir.path().join("outside.txt"), data.join("escape-link")).unwrap();
    let grant = format!("grants.read-dirs = {{ \"/data\" = {:?} }}", data.display().to_string());
    h.config = h.config.slice("strategy", |s| s.extra.push(grant));
    let (ran, out) = h.run("halt");
    assert!(ran.ok(), "{ran:#?}");
    for attempt in [
        "contained: read /etc/passwd",
        "contained: read /proc/self/environ",
        "contained: read /data/../outside.txt",
        "contained: read /data/escape-link",
        "contained: read outside.txt (relative)",
        "contained: write /data/written-by-plugin.txt",
        "contained: list /",
        "granted: read /data/inside.txt (4 bytes)",
    ] {
        assert!(ran.stderr.contains(attempt), "missing {attempt:?} in:\n{}", ran.stderr);
    }
    assert!(!data.join("written-by-plugin.txt").exists());
    // The grant is listed in the summary, for the strategy slice only.
    let s = summary(&out);
    assert_eq!(s["slices"]["strategy"]["grants"]["read-dirs"]["/data"], data.display().to_string());
}

/// Lines a plugin logged that contain `needle`, per symbol.
fn logged(stderr: &str, needle: &str) -> Vec<String> {
    stderr.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

#[test]
fn a_backtest_shows_slices_simulated_time_and_seeded_randomness() {
    let h = Hostile::new("strategy", "hostile-fs", "", "");
    std::fs::write(h.data_dir().join("inside.txt"), "fine").unwrap();
    let grant = format!("grants.read-dirs = {{ \"/data\" = {:?} }}", h.data_dir().display().to_string());
    let h = Hostile { config: h.config.clone().slice("strategy", |s| s.extra.push(grant)), ..h };
    let (first, _) = h.run("halt");
    let (second, _) = h.run("skip-symbol");
    assert!(first.ok() && second.ok(), "{first:#?}");
    // The clock shows the last bar of the batch the strategy is deciding on,
    // not the machine's time: 120 daily bars from 2024-01-01 end on 2024-04-29.
    let last_bar = reference::parse_ts("2024-04-29");
    let clocks = logged(&first.stderr, "clock shows");
    assert_eq!(clocks.len(), 2, "one probe per symbol: {clocks:?}");
    for line in &clocks {
        assert!(line.contains(&format!("clock shows {last_bar} ms")), "{line}");
    }
    // Random draws repeat from run to run, and differ between the two symbols.
    let draws = |ran: &Ran| {
        let mut lines: Vec<String> = logged(&ran.stderr, "random draws")
            .iter()
            .map(|l| l[l.find("random draws").unwrap()..].to_owned())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(draws(&first), draws(&second));
    assert_ne!(draws(&first)[0], draws(&first)[1]);
}

#[test]
fn network_and_environment_are_out_of_reach() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let h = Hostile::new("strategy", "hostile-net", &format!("address = {address:?}"), "");
    let text = format!("[faults]\npolicy = \"halt\"\n\n{}", h.config.to_toml());
    let config = h.dir.path().join("net.toml");
    std::fs::write(&config, text).unwrap();
    let ran = std::process::Command::new(host_bin())
        .args(["run", "--symbols", "GOOD,BAD", "--config", config.to_str().unwrap(), "--out"])
        .arg(h.dir.path().join("run"))
        // A secret in the host's environment must not reach the slice.
        .env("STRATA_TEST_SECRET", "hunter2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{stderr}");
    for attempt in [
        "contained: tcp connect",
        "contained: udp bind",
        "contained: dns lookup",
        "contained: no environment variables",
        "contained: no arguments",
    ] {
        assert!(stderr.contains(attempt), "missing {attempt:?} in:\n{stderr}");
    }
    assert!(listener.accept().is_err(), "a slice connected to {address}");
}

#[test]
fn the_reference_chain_reports_healthy_slices() {
    let dir = tempdir();
    let config = ConfigFile::reference(&shared_data()).write(dir.path());
    let out = dir.path().join("run");
    let ran = host(&[
        "run",
        "--symbols",
        "BTC-USD-1d",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "{ran:#?}");
    let s = summary(&out);
    assert_eq!(s["faults"].as_array().unwrap().len(), 0);
    let health = s["health"].as_array().unwrap();
    assert_eq!(health.len(), 6);
    for h in health {
        assert_eq!(h["failures"], 0, "{h}");
        assert!(h["calls"].as_u64().unwrap() > 0, "{h}");
    }
    assert_eq!(s["fault_policy"]["policy"], "halt");
}
