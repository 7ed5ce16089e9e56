//! Issue #12, class 1: values the ledger's decimal cannot hold (prices,
//! quantities, fees, start cash) and feeds without end are named refusals
//! where they enter, under the run's fault policy, never a panic; and the
//! run's evidence (summary.json, equity.csv, fills.csv) is still written.

use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_tests::*;

/// Daily bars from 2024-01-01; bar 60 (2024-03-01) is where BAD goes wrong.
const BARS: usize = 120;
const BAD_BAR: usize = 60;
const BAD_BAR_TS: &str = "2024-03-01T00:00:00Z";

fn ts(i: usize) -> String {
    reference::format_ts(reference::parse_ts("2024-01-01") + i as i64 * 86_400_000)
}

/// A CSV of `BARS` bars whose closes are `close(i)`; `row(i)` may replace a
/// whole row (open, high, low, close, volume) for one bar.
fn write_csv(dir: &Path, symbol: &str, close: impl Fn(usize) -> f64, row: impl Fn(usize) -> Option<String>) {
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    let mut previous = close(0);
    for i in 0..BARS {
        let c = close(i);
        let line = row(i).unwrap_or_else(|| {
            format!("{previous},{},{},{c},10", f64::max(previous, c) * 1.01, f64::min(previous, c) * 0.99)
        });
        csv += &format!("{},{line}\n", ts(i));
        previous = c;
    }
    std::fs::write(dir.join(format!("{symbol}.csv")), csv).unwrap();
}

/// A wavy price around 100 that the SMA 2/3 crossover trades on.
fn wave(i: usize) -> f64 {
    ((100.0 + 10.0 * (i as f64 / 7.0).sin() + i as f64 * 0.1) * 100.0).round() / 100.0
}

struct Setup {
    dir: tempfile::TempDir,
    config: ConfigFile,
}

impl Setup {
    /// GOOD on the wavy path; BAD's bar 60 replaced by `bad_row` if given.
    fn new(bad_row: Option<&str>) -> Self {
        let dir = tempdir();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        write_csv(&data, "GOOD", wave, |_| None);
        let bad_row = bad_row.map(str::to_owned);
        write_csv(&data, "BAD", wave, |i| bad_row.clone().filter(|_| i == BAD_BAR));
        let config =
            ConfigFile::reference(&data).slice("analysis", |s| s.config = "fast = 2, slow = 3".into());
        Setup { dir, config }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, policy: &str, symbols: &str) -> (Ran, PathBuf) {
        let text = format!("[faults]\npolicy = \"{policy}\"\n\n{}", self.config.to_toml());
        let config = self.dir.path().join(format!("{policy}.toml"));
        std::fs::write(&config, text).unwrap();
        let out = self.dir.path().join(format!("run-{policy}"));
        let args = [
            "run",
            "--symbols",
            symbols,
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        (host(&args), out)
    }
}

fn csv_rows(out: &Path, file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

fn assert_no_panic(ran: &Ran) {
    assert!(!ran.stderr.contains("panicked"), "the host panicked:\n{}", ran.stderr);
    assert_ne!(ran.code, Some(101), "exit 101 is a panic: {ran:#?}");
}

/// Halt: a non-zero exit naming what is given, summary.json `failed` with the
/// fault, and equity.csv holding every bar before the failure.
fn assert_halted(ran: &Ran, out: &Path, fragments: &[&str], rows_before: usize) -> Value {
    ran.assert_fails_with(fragments);
    assert_no_panic(ran);
    let summary = read_summary(out);
    assert_eq!(summary["status"], "failed", "{summary:#}");
    let error = summary["error"].as_str().unwrap_or_default();
    for f in fragments {
        assert!(error.contains(f), "summary error lacks {f:?}: {error}");
    }
    assert_eq!(csv_rows(out, "equity.csv").len(), rows_before, "equity rows before the failure");
    summary
}

#[test]
fn prices_outside_the_supported_range_are_refused_at_the_bar_not_a_panic() {
    // Each row is finite and positive, so it passed before; none is a price
    // the ledger's decimal can hold exactly (range [1e-12, 1e12]).
    let cases = [
        ("1e30 close", "100,1e30,99,1e30,10"),
        ("subnormal low", "100,101,5e-324,100,10"),
        ("1e-13 everywhere", "1e-13,1e-13,1e-13,1e-13,10"),
        ("just over the top", "100,1000000000001,99,100,10"),
    ];
    for (name, row) in cases {
        let setup = Setup::new(Some(row));
        let (ran, out) = setup.run("halt", "GOOD,BAD");
        // Both symbols processed every bar before BAD's bad one: 60 timestamps.
        let summary = assert_halted(
            &ran,
            &out,
            &["csv-data", "symbol BAD", &format!("bar {BAD_BAR_TS}"), "outside the supported price range"],
            BAD_BAR,
        );
        assert_eq!(summary["faults"][0]["slice"], "data", "{name}");
        // skip-symbol: BAD is dropped at the bad bar, GOOD runs to the end.
        let (ran, out) = setup.run("skip-symbol", "GOOD,BAD");
        assert!(ran.ok(), "{name}: {ran:#?}");
        assert_no_panic(&ran);
        assert_eq!(read_summary(&out)["status"], "completed-with-faults", "{name}");
        assert_eq!(csv_rows(&out, "equity.csv").len(), BARS, "{name}: GOOD's every bar");
    }
}

#[test]
fn steady_growth_stops_at_the_top_of_the_range_with_the_bar_named() {
    // x3 per bar from 1: bar 26 closes at 3^26 = 2.5e12, the first over 1e12.
    let setup = Setup::new(None);
    write_csv(&setup.data(), "UP", |i| 3f64.powi(i as i32), |_| None);
    let (ran, out) = setup.run("halt", "UP");
    assert_halted(&ran, &out, &["csv-data", "symbol UP", &format!("bar {}", ts(26)), "outside"], 26);
    // Every row written is an exact decimal: the ledger was never handed an overflow.
    for row in csv_rows(&out, "equity.csv") {
        for field in &row[1..] {
            field.parse::<rust_decimal::Decimal>().unwrap_or_else(|e| panic!("equity.csv {row:?}: {e}"));
        }
    }
}

#[test]
fn start_cash_beyond_the_supported_range_is_refused_by_config_check_and_run() {
    let mut setup = Setup::new(None);
    // 1e28 (a decimal holds it, but 1e15 is the supported most).
    setup.config.run = vec![("start-cash".into(), "\"10000000000000000000000000000\"".into())];
    let path = setup.config.write(setup.dir.path());
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&["run.start-cash", "at most 1000000000000000"]);
    assert_no_panic(&ran);
    let (ran, _) = setup.run("halt", "GOOD");
    ran.assert_fails_with(&["run.start-cash", "at most 1000000000000000"]);
    assert_no_panic(&ran);
}

#[test]
fn a_sizer_answering_the_largest_decimal_is_a_named_fault() {
    let mut setup = Setup::new(None);
    setup.config = setup.config.clone().slice("sizing", |s| {
        s.plugin = component("hostile-sizer");
        s.config = "mode = \"max\"".into();
    });
    let (ran, out) = setup.run("halt", "GOOD,BAD");
    ran.assert_fails_with(&["sizing slice hostile-sizer 0.1.0", "symbol BAD", "over 100 times the equity"]);
    assert_no_panic(&ran);
    assert_eq!(read_summary(&out)["status"], "failed");
    assert!(csv_rows(&out, "orders.csv").iter().all(|o| o[1] != "BAD"), "an order for BAD was placed");
}

#[test]
fn an_absurd_fee_is_refused_and_never_reaches_the_ledger() {
    for fee in ["max", "huge"] {
        let mut setup = Setup::new(None);
        setup.config = setup
            .config
            .clone()
            .slice("execution", |s| {
                s.plugin = component("hostile-execution");
                s.config = format!("fee = \"{fee}\"");
            })
            // GOOD and BAD enter together: 45% each fits the cash account,
            // so BAD's entry reaches the execution slice and its fee.
            .slice("sizing", |s| s.config = "fraction = 0.45".into());
        let (ran, out) = setup.run("halt", "GOOD,BAD");
        ran.assert_fails_with(&[
            "execution slice hostile-execution 0.1.0",
            "symbol BAD",
            "more than the fill's notional",
        ]);
        assert_no_panic(&ran);
        assert_eq!(read_summary(&out)["status"], "failed", "{fee}");
        assert!(
            csv_rows(&out, "fills.csv").iter().all(|f| !f.contains(&"BAD".to_owned())),
            "{fee}: a BAD fill was recorded"
        );
        // skip-symbol: BAD dropped, GOOD trades on, every equity row exact and sane.
        let (ran, out) = setup.run("skip-symbol", "GOOD,BAD");
        assert!(ran.ok(), "{fee}: {ran:#?}");
        let summary = read_summary(&out);
        assert_eq!(summary["status"], "completed-with-faults");
        let equity: rust_decimal::Decimal = summary["final_equity"].as_str().unwrap().parse().unwrap();
        // Fees of zero for GOOD: equity stays near the 10,000 start, nowhere near 1e27.
        assert!(
            equity > rust_decimal::Decimal::from(5_000) && equity < rust_decimal::Decimal::from(20_000),
            "{equity}"
        );
    }
}

#[test]
fn a_feed_past_max_bars_per_symbol_stops_at_the_cap_with_the_key_named() {
    let mut setup = Setup::new(None);
    // 50 of the 120 bars: the 51st (index 50) is refused.
    setup.config.run.push(("max-bars-per-symbol".into(), "50".into()));
    let (ran, out) = setup.run("halt", "GOOD");
    assert_halted(
        &ran,
        &out,
        &[
            "csv-data",
            "symbol GOOD",
            &format!("bar {}", ts(50)),
            "more than 50 bars",
            "run.max-bars-per-symbol",
        ],
        50,
    );
}
