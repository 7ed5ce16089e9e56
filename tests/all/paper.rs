//! Paper mode end to end: the real `host` binary as a long-running process
//! on a replay feed of the real BTC and ETH daily series, killed with
//! SIGKILL and restarted, reloaded while it runs, scraped over HTTP, and its
//! audit log replayed through the backtest engine. Every wait polls for a
//! condition with a deadline; every process is killed when its test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_tests::*;

const SYMBOLS: &str = "BTC-USD-1d,ETH-USD-1d";
/// 2021 and 2022: 730 daily bars per symbol in both files.
const FROM: &str = "2021-01-01";
const TO: &str = "2022-12-31";
const BARS: usize = 730;

/// A paper session in a folder of its own: config, run folder, state database.
struct Paper {
    dir: tempfile::TempDir,
    config: ConfigFile,
    speed: String,
    symbols: String,
    from: String,
    to: String,
    runs: std::cell::Cell<u32>,
}

impl Paper {
    /// The reference chain with fast moving averages (many signals), the
    /// endpoint on a free port, and the default risk limits, which refuse
    /// some orders (so refusals show in the metrics).
    fn new(speed: &str) -> Self {
        let mut config = ConfigFile::reference(&shared_data())
            .slice("analysis", |s| s.config = "fast = 3, slow = 8".into());
        config.paper.push(("http-port".into(), "0".into()));
        Paper {
            dir: tempdir(),
            config,
            speed: speed.into(),
            symbols: SYMBOLS.into(),
            from: FROM.into(),
            to: TO.into(),
            runs: std::cell::Cell::new(0),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("session")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("run.toml")
    }

    fn write_config(&self, text: &str) {
        // Write then rename, so the host never reads half a file.
        let partial = self.dir.path().join("run.toml.partial");
        std::fs::write(&partial, text).unwrap();
        std::fs::rename(&partial, self.config_path()).unwrap();
    }

    fn args(&self) -> Vec<String> {
        let out = self.out();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--mode".into(),
            "paper".into(),
            "--symbols".into(),
            self.symbols.clone(),
            "--config".into(),
            self.config_path().display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--speed".into(),
            self.speed.clone(),
        ];
        for (flag, value) in [("--from", &self.from), ("--to", &self.to)] {
            if !value.is_empty() {
                args.extend([flag.to_owned(), value.clone()]);
            }
        }
        args
    }

    /// Starts the host (writing the config first if there is none).
    fn start(&self) -> Running {
        if !self.config_path().exists() {
            self.write_config(&self.config.to_toml());
        }
        let _ = std::fs::remove_file(self.out().join("http.addr"));
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let stderr = self.dir.path().join(format!("stderr-{n}.txt"));
        let child = Command::new(host_bin())
            .args(self.args())
            .env_remove("STRATA_CONFIG")
            .env_remove("STRATA_DATA_DIR")
            .env("RUST_LOG", "warn")
            // A compiled-component cache of its own, so that a reload into a
            // new component compiles it, as the first reload into it does for a user.
            .env("STRATA_CACHE_DIR", self.dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path().join(format!("stdout-{n}.txt"))).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start host");
        Running { child: Some(child), stderr }
    }

    /// Starts the host and waits for it to end by itself.
    fn run_to_end(&self) -> String {
        let mut running = self.start();
        let code = running.wait(Duration::from_secs(120));
        let stderr = running.stderr();
        assert_eq!(code, Some(0), "the session failed:\n{stderr}");
        stderr
    }

    fn audit_steps(&self) -> Vec<Value> {
        audit(&self.out()).into_iter().filter(|l| l["kind"] == "step").collect()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn audit(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("audit.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Polls `f` until it gives a value, failing after `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// GET `path` from the session's endpoint; None while it is not serving.
fn get(out: &Path, path: &str) -> Option<(u16, String)> {
    let addr = std::fs::read_to_string(out.join("http.addr")).ok()?;
    let mut stream = TcpStream::connect(addr.trim()).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

fn health(out: &Path) -> Option<Value> {
    let (code, body) = get(out, "/health")?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// Bars processed so far for `symbol`, per /health.
fn bars_done(out: &Path, symbol: &str) -> u64 {
    health(out).and_then(|h| h["bars"][symbol].as_u64()).unwrap_or(0)
}

/// A tiny deterministic generator for kill times (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The files that make up the ledger's history.
const LEDGER_FILES: [&str; 5] = ["equity.csv", "fills.csv", "orders.csv", "trades.csv", "positions.csv"];

#[test]
fn killed_with_sigkill_24_times_the_session_ends_with_the_ledger_of_an_uninterrupted_run() {
    // An uninterrupted session, as fast as the host goes.
    let straight = Paper::new("max");
    straight.run_to_end();
    let summary: Value = serde_json::from_str(&straight.file("summary.json")).unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["bars"], 2 * BARS as u64);
    assert!(summary["fills"].as_u64().unwrap() > 20, "the strategy trades: {summary:#}");

    // The same session at about 70 days of bars per second, killed at random points.
    let killed = Paper::new("6000000x");
    // With the components it compiled already cached, as a user's restarts
    // find them: the kills are meant to land among the bars, and compiling
    // six components on a loaded 2-core machine can outlast every kill.
    copy_dir(&straight.dir.path().join("cache"), &killed.dir.path().join("cache"));
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut rng = Rng(seed);
    let mut kills_mid_run = 0;
    let mut progress = Vec::new();
    for _ in 0..24 {
        let mut running = killed.start();
        std::thread::sleep(Duration::from_millis(60 + rng.below(400)));
        if running.alive() {
            kills_mid_run += 1;
        }
        running.kill9();
        progress.push(killed.audit_steps().len());
    }
    println!("kill seed {seed}: {kills_mid_run} kills mid-run; steps logged after each: {progress:?}");
    assert!(kills_mid_run >= 20, "only {kills_mid_run} kills hit a running session (seed {seed})");
    assert!(
        progress.iter().filter(|&&p| p > 0 && p < BARS).count() >= 10,
        "most kills should land mid-session, after some bars: steps logged after each kill {progress:?} (seed {seed})"
    );
    let stderr = killed.run_to_end();
    for file in LEDGER_FILES {
        assert_eq!(
            killed.file(file),
            straight.file(file),
            "{file} differs from the uninterrupted run's (kill seed {seed}); last stderr:\n{stderr}"
        );
    }
    let summary_killed: Value = serde_json::from_str(&killed.file("summary.json")).unwrap();
    for key in ["final_cash", "final_equity", "fills", "bars", "trade_count"] {
        assert_eq!(summary_killed[key], summary[key], "{key} (seed {seed})");
    }
    // The audit trail has every bar exactly once, in order.
    let steps: Vec<String> =
        killed.audit_steps().iter().map(|s| s["ts"].as_str().unwrap().to_owned()).collect();
    let straight_steps: Vec<String> =
        straight.audit_steps().iter().map(|s| s["ts"].as_str().unwrap().to_owned()).collect();
    assert_eq!(steps, straight_steps);
    assert_eq!(steps.len(), BARS);
}

#[test]
fn paper_fills_are_the_backtests_fills_on_the_same_bars() {
    let paper = Paper::new("max");
    paper.run_to_end();
    let out = paper.dir.path().join("backtest");
    let ran = host(&[
        "run",
        "--symbols",
        SYMBOLS,
        "--config",
        paper.config_path().to_str().unwrap(),
        "--from",
        FROM,
        "--to",
        TO,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "{ran:#?}");
    let backtest = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    assert_eq!(paper.file("equity.csv"), backtest("equity.csv"));
    assert_eq!(paper.file("fills.csv"), backtest("fills.csv"));
    assert_eq!(paper.file("positions.csv"), backtest("positions.csv"));
    let trades = |text: String| -> Vec<String> {
        // trades.csv of a backtest adds return_pct; the rest of each row must match.
        text.lines().skip(1).map(|l| l.split(',').take(9).collect::<Vec<_>>().join(",")).collect()
    };
    assert_eq!(trades(paper.file("trades.csv")), trades(backtest("trades.csv")));
}

/// Runs the session to its end at full speed and checks its ledger files
/// against a session of the same config that nothing interrupted.
fn finish_and_compare_with_an_undisturbed_session(paper: &mut Paper) {
    paper.speed = "max".into();
    paper.run_to_end();
    let straight = Paper::new("max");
    straight.run_to_end();
    for file in LEDGER_FILES {
        assert_eq!(paper.file(file), straight.file(file), "{file}");
    }
}

#[test]
fn sigterm_finishes_the_bar_commits_and_a_restart_carries_on() {
    let mut paper = Paper::new("5000000x");
    let mut running = paper.start();
    let out = paper.out();
    wait_for(Duration::from_secs(60), "100 bars", || (bars_done(&out, "BTC-USD-1d") >= 100).then_some(()));
    running.signal("TERM");
    assert_eq!(running.wait(Duration::from_secs(30)), Some(0), "{}", running.stderr());
    let summary: Value = serde_json::from_str(&paper.file("summary.json")).unwrap();
    assert_eq!(summary["status"], "stopped");
    let bars = summary["bars"].as_u64().unwrap();
    assert!((200..2 * BARS as u64).contains(&bars), "stopped mid-session: {summary:#}");
    // The files match what was committed: one equity row per timestamp.
    assert_eq!(
        paper.file("equity.csv").lines().count() - 1,
        summary["timestamps"].as_u64().unwrap() as usize
    );

    // Two signals in a row: the second one ends the process at once.
    let mut running = paper.start();
    wait_for(Duration::from_secs(60), "the restarted session", || health(&out).map(|_| ()));
    running.signal("INT");
    running.signal("INT");
    assert!(running.wait(Duration::from_secs(30)).is_some(), "still running after two SIGINTs");

    finish_and_compare_with_an_undisturbed_session(&mut paper);
}

#[test]
fn a_second_process_on_the_same_state_is_refused_and_the_first_carries_on() {
    let mut paper = Paper::new("5000000x");
    let mut first = paper.start();
    let out = paper.out();
    wait_for(Duration::from_secs(60), "10 bars", || (bars_done(&out, "BTC-USD-1d") >= 10).then_some(()));

    let args = paper.args();
    let second = host(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let db = out.with_extension("db");
    second.assert_fails_with(&[
        &format!("state database {} is in use by another paper session (pid {})", db.display(), first.pid()),
        "give this one its own --out or --state",
    ]);
    // The refused process touched nothing: the first one runs on and ends
    // with the same files as a session that was never disturbed.
    assert!(first.alive(), "{}", first.stderr());
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(30)), Some(0), "{}", first.stderr());
    // Its lock went with it.
    finish_and_compare_with_an_undisturbed_session(&mut paper);
}

/// The signals of the steps after `after` (ISO; all steps when None) and up to `until`.
fn signals_between<'a>(steps: &'a [Value], after: &str, until: Option<&str>) -> Vec<&'a Value> {
    steps
        .iter()
        .filter(|s| s["ts"].as_str().unwrap() > after && until.is_none_or(|u| s["ts"].as_str().unwrap() <= u))
        .flat_map(|s| s["decisions"].as_array().unwrap())
        .map(|d| &d["signal"])
        .filter(|s| !s.is_null())
        .collect()
}

#[test]
fn reloads_swap_the_strategy_at_a_bar_boundary_refuse_a_bad_config_and_survive_a_restart() {
    let mut paper = Paper::new("3000000x");
    paper.to = "2021-12-31".into();
    let out = paper.out();
    let mut running = paper.start();
    let generation = |g: u64| {
        wait_for(Duration::from_secs(30), &format!("config generation {g}"), || {
            health(&out)
                .filter(|h| h["config_generation"] == g)
                .map(|h| h["bars"]["BTC-USD-1d"].as_u64().unwrap())
        })
    };
    wait_for(Duration::from_secs(30), "60 bars", || (bars_done(&out, "BTC-USD-1d") >= 60).then_some(()));

    // (b) The strategy's settings change: no more entries, exits only.
    let exit_only = "trending-up = \"exit-only\", trending-down = \"exit-only\", ranging = \"exit-only\", \
                     volatile = \"exit-only\", unknown = \"exit-only\"";
    let gen2 = paper.config.clone().slice("strategy", |s| s.config = exit_only.into());
    paper.write_config(&gen2.to_toml());
    let at2 = generation(2);
    wait_for(Duration::from_secs(30), "40 more bars", || {
        (bars_done(&out, "BTC-USD-1d") >= at2 + 40).then_some(())
    });

    // Then its component: a strategy that, warmed up, signals nothing.
    let gen3 = paper.config.clone().slice("strategy", |s| {
        s.plugin = component("hostile-slow");
        s.config = String::new();
    });
    paper.write_config(&gen3.to_toml());
    let at3 = generation(3);
    // The new component compiled on the side while the previous strategy kept trading.
    let applied = health(&out).unwrap()["reloads"]["last"].as_str().unwrap().to_owned();
    let ran_meanwhile: u64 = applied
        .split("while ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of bars in {applied:?}"));
    assert!(applied.contains("strategy") && ran_meanwhile >= 1, "{applied}");

    // (c) A config naming a component that does not exist is refused; the session carries on.
    let broken =
        paper.config.clone().slice("strategy", |s| s.plugin = PathBuf::from("/nowhere/strategy.wasm"));
    paper.write_config(&broken.to_toml());
    let refused = wait_for(Duration::from_secs(30), "the refusal", || {
        health(&out).filter(|h| h["reloads"]["refused"] == 1)
    });
    let why = refused["reloads"]["last"].as_str().unwrap();
    assert!(
        why.contains("still running the previous config") && why.contains("/nowhere/strategy.wasm"),
        "{why}"
    );
    assert!(why.contains("does not exist"), "{why}");
    assert_eq!(refused["config_generation"], 3);
    let then = refused["bars"]["BTC-USD-1d"].as_u64().unwrap();
    wait_for(Duration::from_secs(30), "bars after the refusal", || {
        (bars_done(&out, "BTC-USD-1d") >= then + 20).then_some(())
    });
    assert!(running.stderr().contains("config reload refused"), "{}", running.stderr());
    assert!(at3 > at2);

    // A crash after the reloads: the restart replays them at the same bars,
    // and refuses the broken file again without stopping.
    running.kill9();
    paper.speed = "max".into();
    let stderr = paper.run_to_end();
    assert!(stderr.contains("config reload refused"), "{stderr}");

    let lines = audit(&out);
    let configs: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "config").collect();
    assert_eq!(configs.iter().map(|c| c["generation"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    let after2 = configs[1]["after"].as_str().unwrap().to_owned();
    let after3 = configs[2]["after"].as_str().unwrap().to_owned();
    assert!(after2 < after3);

    // No gap and no bar twice: every day of 2021 once, for both symbols.
    let steps = paper.audit_steps();
    assert_eq!(steps.len(), 365);
    for (i, s) in steps.iter().enumerate() {
        let want = reference::format_ts(reference::parse_ts("2021-01-01") + i as i64 * 86_400_000);
        assert_eq!(s["ts"].as_str().unwrap(), want);
        assert_eq!(s["decisions"].as_array().unwrap().len(), 2, "{want}");
    }
    // The first config entered positions; from the bar after its swap the
    // second only exits; from the bar after the third's, nothing at all.
    let entry = |s: &&Value| s["action"] == "enter-long";
    assert!(signals_between(&steps, "", Some(&after2)).iter().any(entry), "the first config never entered");
    let second = signals_between(&steps, &after2, Some(&after3));
    assert!(!second.iter().any(entry), "an entry after the switch to exit-only: {second:?}");
    assert!(signals_between(&steps, &after3, None).is_empty(), "signals after the swap to a silent strategy");

    // (e) The backtest engine makes the same decisions on the logged bars,
    // with the same swaps at the same bars.
    let ran = host(&["replay", out.join("audit.jsonl").to_str().unwrap()]);
    assert!(ran.ok(), "{ran:#?}");
    assert!(
        ran.stdout.contains("Replayed 365 bars (730 decisions)")
            && ran.stdout.contains("3 config version(s)")
    );
    assert!(ran.stdout.contains("identical"), "{}", ran.stdout);

    // And it notices when they differ: a fill price changed in a copy of the log.
    let text = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let fill = steps.iter().find(|s| !s["fills"].as_array().unwrap().is_empty()).expect("a fill");
    let price = fill["fills"][0]["price"].as_str().unwrap();
    let line = text.lines().find(|l| l.contains(&format!("\"price\":\"{price}\""))).unwrap();
    let tampered_path = paper.dir.path().join("tampered.jsonl");
    let tampered = line.replace(&format!("\"price\":\"{price}\""), "\"price\":\"1\"");
    std::fs::write(&tampered_path, text.replace(line, &tampered)).unwrap();
    let ran = host(&["replay", tampered_path.to_str().unwrap()]);
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stdout.contains(&format!("fills[0].price: paper \"1\", backtest \"{price}\"")),
        "{}",
        ran.stdout
    );
}

#[test]
fn health_and_metrics_show_the_sessions_state_and_figures() {
    let mut paper = Paper::new("3000000x");
    // Entries at 95% of equity against a 50% limit: the risk gate refuses them.
    paper.config.risk = vec![("max-position-fraction".into(), "0.5".into())];
    let out = paper.out();
    let mut running = paper.start();
    wait_for(Duration::from_secs(30), "100 bars", || (bars_done(&out, "ETH-USD-1d") >= 100).then_some(()));

    let h = health(&out).unwrap();
    assert_eq!(h["state"], "running");
    assert_eq!(h["safe_mode"], false);
    assert_eq!(h["feed"]["kind"], "replay");
    assert_eq!(h["config_generation"], 1);
    for symbol in ["BTC-USD-1d", "ETH-USD-1d"] {
        let last = h["last_bar"][symbol].as_str().unwrap();
        assert!(last.starts_with("2021-"), "{last}");
    }
    let slices = h["slices"].as_array().unwrap();
    assert_eq!(slices.len(), 12, "six slices per symbol");
    for s in slices {
        assert_eq!(s["failures"], 0, "{s}");
        if ["data", "analysis", "regime", "strategy"].contains(&s["slice"].as_str().unwrap()) {
            assert!(s["calls"].as_u64().unwrap() > 0, "{s}");
        }
    }

    let (code, metrics) = get(&out, "/metrics").unwrap();
    assert_eq!(code, 200);
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("strata_state{state=\"running\"}"), 1.0);
    assert!(value("strata_bars_processed_total{symbol=\"BTC-USD-1d\"}") >= 100.0);
    assert!(value("strata_refusals_total{reason=\"risk: max-position-fraction\"}") >= 1.0);
    assert!(
        value("strata_orders_total")
            >= value("strata_refusals_total{reason=\"risk: max-position-fraction\"}")
    );
    assert_eq!(value("strata_fills_total"), 0.0, "every entry was refused");
    assert_eq!(value("strata_equity"), 10_000.0);
    assert_eq!(value("strata_drawdown_ratio"), 0.0);
    assert_eq!(value("strata_safe_mode"), 0.0);
    for family in [
        "strata_traps_total",
        "strata_slice_call_seconds",
        "strata_reloads_total",
        "strata_feed_errors_total",
    ] {
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{family} missing");
    }
    // The strategy's latency histogram: cumulative buckets up to +Inf = its call count.
    let labels = "symbol=\"BTC-USD-1d\",slice=\"strategy\"";
    let buckets: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("strata_slice_call_seconds_bucket{{{labels}")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 13);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets[12], value(&format!("strata_slice_call_seconds_count{{{labels}}}")));
    assert!(buckets[12] >= 1.0);

    // Risk limits change without a restart: entries now pass and fill.
    let mut relaxed = paper.config.clone();
    relaxed.risk = vec![("max-position-fraction".into(), "1".into())];
    paper.write_config(&relaxed.to_toml());
    let h = wait_for(Duration::from_secs(30), "fills under the new limit", || {
        health(&out).filter(|h| h["fills"].as_u64() > Some(0))
    });
    assert_eq!(h["config_generation"], 2);
    assert!(h["reloads"]["last"].as_str().unwrap().contains(": risk limits (loaded in "), "{h:#}");
    assert_eq!(h["reloads"]["loading"], false);

    assert_eq!(get(&out, "/nothing").unwrap().0, 404);
    let ran = host(&["status", "--out", out.to_str().unwrap()]);
    assert!(ran.ok() && ran.stdout.contains("\"state\": \"running\""), "{ran:#?}");
    let ran = host(&["status", "--out", out.to_str().unwrap(), "--metrics"]);
    assert!(ran.ok() && ran.stdout.contains("strata_reloads_total{outcome=\"applied\"} 1"), "{ran:#?}");

    running.signal("TERM");
    assert_eq!(running.wait(Duration::from_secs(30)), Some(0), "{}", running.stderr());
    let ran = host(&["status", "--out", out.to_str().unwrap()]);
    ran.assert_fails_with(&["cannot reach the session"]);
}

/// A stand-in for Coinbase Exchange's candles endpoint on 127.0.0.1: candles
/// of one minute whose prices follow from their time, newest first, at most
/// 300 per answer; the first request is answered 429 (rate limited).
struct FakeVenue {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The candle the fake venue serves for the minute starting at `t` (seconds).
fn fake_candle(t: i64) -> [f64; 6] {
    let open = 100.0 + ((t / 60) % 17) as f64;
    let close = open + 0.5;
    [t as f64, open - 1.0, close + 1.0, open, close, 3.0]
}

impl FakeVenue {
    fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stopping) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).replace("%3A", ":");
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(target.clone());
                    seen.len() == 1
                };
                let query = |key: &str| {
                    target
                        .split(['?', '&'])
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                        .unwrap_or("")
                        .to_owned()
                };
                let (status, body) = if first {
                    ("429 Too Many Requests", "{\"message\":\"slow down\"}".to_owned())
                } else {
                    let g: i64 = query("granularity").parse().unwrap();
                    let start = reference::parse_ts(&query("start")) / 1000;
                    let end = reference::parse_ts(&query("end")) / 1000;
                    let mut rows: Vec<String> = (0..)
                        .map(|i| start + i * g)
                        .take_while(|t| *t <= end)
                        .take(300)
                        .map(|t| format!("{:?}", fake_candle(t)))
                        .collect();
                    rows.reverse();
                    ("200 OK", format!("[{}]", rows.join(",")))
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeVenue { url, requests, stop, thread: Some(thread) }
    }
}

impl Drop for FakeVenue {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn the_polling_feed_backs_off_when_rate_limited_pages_its_history_and_feeds_the_loop() {
    let venue = FakeVenue::start();
    let mut paper = Paper::new("max");
    paper.symbols = "BTC-USD".into();
    paper.from = String::new();
    paper.to = String::new();
    for (k, v) in [
        ("granularity-s", "60"),
        ("history-bars", "400"),
        ("min-check-interval-s", "0.5"),
        ("max-check-interval-s", "2"),
        ("quiet-volatility", "0.002"),
    ] {
        paper.config.paper.push((k.into(), v.into()));
    }
    paper.config.paper.push(("coinbase-url".into(), format!("{:?}", venue.url)));
    paper.write_config(&paper.config.to_toml());
    let mut args = paper.args();
    args.extend(["--feed".into(), "coinbase".into()]);
    let stderr_path = paper.dir.path().join("stderr.txt");
    let child = Command::new(host_bin())
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running { child: Some(child), stderr: stderr_path };
    let out = paper.out();

    // 400 closed one-minute candles of history, fetched in two pages after one 429.
    let h = wait_for(Duration::from_secs(30), "the history", || {
        health(&out).filter(|h| h["bars"]["BTC-USD"].as_u64().unwrap_or(0) >= 400)
    });
    assert_eq!(h["feed"]["kind"], "coinbase");
    assert!(h["feed"]["errors"].as_u64().unwrap() >= 1, "the 429 counts as an error: {h:#}");
    assert!(h["feed"]["last_error"].as_str().unwrap().contains("429"), "{h:#}");
    let wait = h["feed"]["next_check_seconds"].as_f64().unwrap();
    assert!((0.5..=2.0).contains(&wait), "the check interval stays within its bounds: {wait}");
    assert!(h["feed"]["volatility"].as_f64().unwrap() > 0.002, "these candles move: {h:#}");
    assert!(running.stderr().contains("rate limited"), "{}", running.stderr());
    let requests = venue.requests.lock().unwrap().clone();
    assert!(requests.len() >= 3, "{requests:?}");
    assert!(
        requests.iter().all(|r| r.starts_with("/products/BTC-USD/candles?granularity=60&start=")),
        "{requests:?}"
    );

    // Each bar the loop processed is the venue's candle, oldest first, once.
    let steps = paper.audit_steps();
    let mut previous = 0;
    for s in steps.iter().take(400) {
        let bar = &s["decisions"][0]["bar"];
        let ts = reference::parse_ts(bar["ts"].as_str().unwrap());
        assert!(ts > previous);
        previous = ts;
        let [_, low, high, open, close, _] = fake_candle(ts / 1000);
        assert_eq!((bar["open"].as_f64(), bar["close"].as_f64()), (Some(open), Some(close)));
        assert_eq!((bar["low"].as_f64(), bar["high"].as_f64()), (Some(low), Some(high)));
    }
    running.signal("TERM");
    assert_eq!(running.wait(Duration::from_secs(30)), Some(0), "{}", running.stderr());
}

/// The `born <nanoseconds>` an instance of the snapshot fixture logged at `init`.
fn births(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split("born ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn a_slice_that_exports_its_state_gets_it_back_after_a_restart() {
    // `host plugin inspect` tells an operator which slices keep their state.
    let inspect = |name: &str| {
        let ran = host(&["plugin", "inspect", component(name).to_str().unwrap(), "--json"]);
        assert!(ran.ok(), "{ran:#?}");
        serde_json::from_str::<Value>(&ran.stdout).unwrap()["snapshot"].clone()
    };
    assert_eq!(inspect("snapshot-strategy"), true);
    assert_eq!(inspect("sma-crossover"), false);

    let with_fixture = |speed: &str| {
        let mut paper = Paper::new(speed);
        paper.symbols = "BTC-USD-1d".into();
        paper.config = paper.config.clone().slice("strategy", |s| {
            s.plugin = component("snapshot-strategy");
            s.config = "period = 20".into();
        });
        paper.config.run.push(("seed".into(), "7".into()));
        paper
    };
    let mut paper = with_fixture("3000000x");
    let out = paper.out();
    let mut running = paper.start();
    let h = wait_for(Duration::from_secs(30), "a persisted state", || {
        health(&out).filter(|h| {
            h["snapshots"]["BTC-USD-1d/strategy"] == 16 && h["bars"]["BTC-USD-1d"].as_u64() > Some(50)
        })
    });
    assert_eq!(h["snapshots"].as_object().unwrap().len(), 1, "only the fixture exports its state: {h:#}");
    running.kill9();
    let first = births(&running.stderr());
    assert_eq!(first.len(), 1, "one instance was born: {}", running.stderr());

    paper.speed = "max".into();
    let stderr = paper.run_to_end();
    // The fresh instance was born again, later, and was handed its first birth.
    let restored = format!("restored: born {} after ", first[0]);
    assert!(stderr.contains(&restored), "wanted {restored:?} in\n{stderr}");
    let born_again = births(&stderr);
    assert!(born_again.iter().any(|b| b != &first[0]), "{stderr}");

    let straight = with_fixture("max");
    straight.run_to_end();
    for file in LEDGER_FILES {
        assert_eq!(paper.file(file), straight.file(file), "{file}");
    }
    let fills = paper.file("fills.csv").lines().count() - 1;
    assert!(fills > 40, "the fixture trades every 20 bars: {fills} fills");
}

#[test]
fn a_new_execution_slice_starts_clean_the_host_cancels_the_orders_working_at_the_old_one() {
    let mut paper = Paper::new("3000000x");
    paper.symbols = "BTC-USD-1d".into();
    paper.to = "2021-12-31".into();
    // Limit entries half the price away: once placed, an entry stays working.
    paper.config = paper.config.clone().slice("strategy", |s| {
        s.config = "entry-order = \"limit\", entry-offset = 0.5".into();
    });
    let out = paper.out();
    let mut running = paper.start();
    wait_for(Duration::from_secs(30), "a working order", || {
        health(&out).filter(|h| h["orders"].as_u64() > Some(0) && h["bars"]["BTC-USD-1d"].as_u64() > Some(60))
    });
    let higher_fees = paper.config.clone().slice("execution", |s| s.config = "taker-fee-bps = 20".into());
    paper.write_config(&higher_fees.to_toml());
    let h = wait_for(Duration::from_secs(30), "generation 2", || {
        health(&out).filter(|h| h["config_generation"] == 2)
    });
    assert!(h["reloads"]["last"].as_str().unwrap().contains("execution settings (sim-execution"), "{h:#}");
    assert_eq!(running.wait(Duration::from_secs(60)), Some(0), "{}", running.stderr());

    let after =
        audit(&out).into_iter().find(|l| l["generation"] == 2).unwrap()["after"].as_str().unwrap().to_owned();
    let reason = "cancelled by the host: the execution slice was replaced by a config reload";
    let orders = paper.file("orders.csv");
    let cancelled: Vec<&str> = orders.lines().filter(|l| l.ends_with(reason)).collect();
    assert_eq!(cancelled.len(), 1, "the one working entry is cancelled:\n{orders}");
    assert!(
        cancelled[0].contains(&format!(",cancelled,0,,0,{after},")),
        "closed at the swap's bar {after}: {}",
        cancelled[0]
    );
    let ran = host(&["replay", out.join("audit.jsonl").to_str().unwrap()]);
    assert!(ran.ok() && ran.stdout.contains("identical"), "{ran:#?}");
}

/// Issue #12: a bar with a price the ledger cannot hold (1e30) used to panic
/// the session on that bar at every restart. Now it is a named fault of the
/// data slice: the session halts cleanly, and a restart does the same
/// instead of panicking.
#[test]
fn an_out_of_range_bar_faults_cleanly_and_a_restart_does_not_panic() {
    let mut paper = Paper::new("max");
    let data = paper.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for i in 0..40_i64 {
        let ts = reference::format_ts(reference::parse_ts("2024-01-01") + i * 86_400_000);
        // Bar 30 (2024-01-31) closes at 1e30, outside the supported range [1e-12, 1e12].
        let close = if i == 30 { "1e30".to_owned() } else { format!("{}", 100 + i % 7) };
        csv += &format!("{ts},100,{},90,{close},10\n", if i == 30 { "1e30" } else { "110" });
    }
    std::fs::write(data.join("BAD.csv"), csv).unwrap();
    paper.config = ConfigFile::reference(&data).slice("analysis", |s| s.config = "fast = 2, slow = 3".into());
    paper.config.paper.push(("http-port".into(), "0".into()));
    (paper.symbols, paper.from, paper.to) = ("BAD".into(), "2024-01-01".into(), "2024-02-09".into());
    for attempt in ["first run", "restart"] {
        let mut running = paper.start();
        let code = running.wait(Duration::from_secs(60));
        let stderr = running.stderr();
        assert!(code.is_some_and(|c| c != 0 && c != 101), "{attempt}: exit {code:?}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{attempt}: the host panicked:\n{stderr}");
        for fragment in ["csv-data", "symbol BAD", "2024-01-31", "outside the supported price range"] {
            assert!(stderr.contains(fragment), "{attempt}: stderr lacks {fragment:?}:\n{stderr}");
        }
    }
}

/// A session of 2022 only (365 bars a symbol: fills and round trips enough,
/// and seconds to run), at full speed.
fn short_session() -> Paper {
    let mut paper = Paper::new("max");
    paper.from = "2022-01-01".into();
    paper.to = "2022-12-31".into();
    paper
}

/// Runs the session's command once more (a restart) and waits for it to end.
fn restart(paper: &Paper) -> Ran {
    let args = paper.args();
    host(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A database put back to `pristine`, its write-ahead log and index gone with it.
fn restore_db(db: &Path, pristine: &[u8]) {
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    std::fs::write(db, pristine).unwrap();
}

fn sql(db: &Path, statement: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(statement).unwrap();
}

#[test]
fn a_restart_refuses_committed_history_that_changed() {
    let paper = short_session();
    paper.run_to_end();
    let db = paper.out().with_extension("db");
    let pristine = std::fs::read(&db).unwrap();
    let files: Vec<String> = LEDGER_FILES.iter().map(|f| paper.file(f)).collect();
    assert!(files[3].lines().count() > 3, "the session needs round trips to tamper with");

    // Untouched, a restart resumes and changes nothing.
    let ran = restart(&paper);
    assert!(ran.ok(), "{ran:#?}");

    // One past fill's price edited: the step that committed it is named.
    restore_db(&db, &pristine);
    sql(&db, "UPDATE fills SET price = '1' WHERE seq = 3");
    restart(&paper).assert_fails_with(&[
        "damaged committed history at step",
        "fills table",
        "restore a backup",
    ]);

    // Every round trip deleted: the count is part of the chain.
    restore_db(&db, &pristine);
    sql(&db, "DELETE FROM round_trips");
    restart(&paper).assert_fails_with(&["damaged committed history", "round_trips table holds 0"]);

    // A past step's equity edited.
    restore_db(&db, &pristine);
    sql(&db, "UPDATE steps SET equity = '1000000' WHERE ts = (SELECT MIN(ts) FROM steps) + 86400000 * 10");
    restart(&paper).assert_fails_with(&["damaged committed history at step 11", "steps table"]);

    // Truncated to nothing: not a new session, a refusal naming the file.
    restore_db(&db, &pristine);
    std::fs::write(&db, b"").unwrap();
    restart(&paper).assert_fails_with(&[&db.display().to_string(), "is empty", "another --state"]);
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the refused database was left as it was");

    // Random bit flips: each is refused cleanly, or changes nothing the session shows.
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    for _ in 0..6 {
        let mut bytes = pristine.clone();
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] ^= 1 << rng.below(8);
        restore_db(&db, &bytes);
        let ran = restart(&paper);
        if ran.ok() {
            for (name, before) in LEDGER_FILES.iter().zip(&files) {
                assert_eq!(
                    &paper.file(name),
                    before,
                    "flipping a bit at byte {at} changed {name} with exit 0"
                );
            }
        } else {
            ran.assert_fails_with(&[&db.display().to_string()]);
        }
    }
}

/// Real BTC daily bars of 2022 with the marker volume (666) on three bars.
fn marked_feed(dir: &Path) -> PathBuf {
    let data = dir.join("marked");
    std::fs::create_dir_all(&data).unwrap();
    for symbol in SYMBOLS.split(',') {
        let text = std::fs::read_to_string(shared_data().join(format!("{symbol}.csv"))).unwrap();
        let marked: Vec<String> = text
            .lines()
            .map(|line| match line.split_once(',') {
                // Bars 50, 100 and 148 of 2022 (the session's range) for BTC.
                Some((ts, _)) if symbol == "BTC-USD-1d" && MARKED_2022.contains(&ts) => {
                    format!("{},666", line.rsplit_once(',').unwrap().0)
                }
                _ => line.to_owned(),
            })
            .collect();
        std::fs::write(data.join(format!("{symbol}.csv")), marked.join("\n") + "\n").unwrap();
    }
    data
}

const MARKED_2022: [&str; 3] = ["2022-02-20T00:00:00Z", "2022-04-11T00:00:00Z", "2022-05-29T00:00:00Z"];

/// A short session on the marked feed, with hostile-panic as the strategy.
fn hostile_session(faults: &str) -> Paper {
    let mut paper = short_session();
    let data = marked_feed(paper.dir.path());
    let grant = format!("grants.read-dirs = {{ \"/data\" = {:?} }}", data.display().to_string());
    paper.config = paper
        .config
        .clone()
        .slice("data", |s| s.extra = vec![grant])
        .slice("strategy", |s| s.plugin = component("hostile-panic"));
    paper.write_config(&format!("[faults]\n{faults}\n\n{}", paper.config.to_toml()));
    paper
}

#[test]
fn paper_records_faults_as_a_backtest_does() {
    let paper = hostile_session("policy = \"safe-mode\"\ncooldown-bars = 5\nmax-faults-per-symbol = 3");
    paper.run_to_end();
    let summary = read_summary(&paper.out());
    assert_eq!(summary["status"], "completed-with-faults", "{summary:#}");
    let faults = summary["faults"].as_array().unwrap();
    let at: Vec<&str> = faults.iter().map(|f| f["at"].as_str().unwrap()).collect();
    assert_eq!(at, MARKED_2022, "{faults:#?}");
    let actions: Vec<&str> = faults.iter().map(|f| f["action"].as_str().unwrap()).collect();
    // The third fault reaches max-faults-per-symbol: the symbol is dropped, and recorded so.
    assert_eq!(actions, ["safe-mode", "safe-mode", "dropped-symbol"]);
    assert_eq!(summary["dropped_symbols"], serde_json::json!(["BTC-USD-1d"]));
    let logged: Vec<Value> = audit(&paper.out()).into_iter().filter(|l| l["kind"] == "fault").collect();
    assert_eq!(logged.len(), 3, "one audit line per fault: {logged:#?}");
    assert_eq!(logged[2]["action"], "dropped-symbol");
    assert!(logged.iter().all(|l| l["symbol"] == "BTC-USD-1d" && l["slice"] == "strategy"));

    // A restart replays the faults without logging them twice.
    let ran = restart(&paper);
    assert!(ran.ok(), "{ran:#?}");
    assert_eq!(audit(&paper.out()).iter().filter(|l| l["kind"] == "fault").count(), 3);
    assert_eq!(read_summary(&paper.out())["faults"].as_array().unwrap().len(), 3);
}

#[test]
fn a_failed_session_that_cannot_write_its_files_reports_both_errors() {
    // The loop stops at the first fault (halt); equity.csv then hits a full disk.
    let paper = hostile_session("policy = \"halt\"");
    std::fs::create_dir_all(paper.out()).unwrap();
    std::os::unix::fs::symlink("/dev/full", paper.out().join("equity.csv")).unwrap();
    let mut running = paper.start();
    let code = running.wait(Duration::from_secs(120));
    let stderr = running.stderr();
    assert!(code.is_some_and(|c| c != 0), "{code:?}\n{stderr}");
    for needed in [
        "hostile-panic", // the loop's own error
        "symbol BTC-USD-1d",
        "bar 2022-02-20T00:00:00Z",
        "equity.csv", // and the write error
        "No space left on device",
        "every bar up to 2022-02-19T00:00:00Z is committed", // and what was saved
    ] {
        assert!(stderr.contains(needed), "stderr lacks {needed:?}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked at host") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
}
