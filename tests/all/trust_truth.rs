//! Issue #12, class 4: backtests that tell the truth. The default account
//! never borrows, a margin account pays for what it borrows, every run states
//! its leverage, refusals by the risk gate are loud, and `config check`
//! catches what `run` would refuse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rust_decimal::Decimal;
use strata_tests::reference::{self, Params};
use strata_tests::*;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Rows of a run's CSV file, split on commas (the files read here have no
/// quoted fields).
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

fn run(config: &Path, symbols: &str, data: &Path, out: &Path) -> Ran {
    host(&[
        "run",
        "--symbols",
        symbols,
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Each symbol's closes by bar time, and the close of the bar before each.
struct Closes {
    close: BTreeMap<String, BTreeMap<i64, Decimal>>,
    previous: BTreeMap<(String, i64), Decimal>,
}

impl Closes {
    /// The symbol's latest close at or before `ts`: what it is marked at.
    fn at(&self, symbol: &str, ts: i64) -> Decimal {
        *self.close[symbol].range(..=ts).next_back().unwrap().1
    }
}

fn closes(data: &Path, symbols: &[&str]) -> Closes {
    let mut close = BTreeMap::new();
    let mut previous = BTreeMap::new();
    for s in symbols {
        let bars = reference::read_csv(&data.join(format!("{s}.csv")));
        for (i, b) in bars.iter().enumerate() {
            close.entry(s.to_string()).or_insert_with(BTreeMap::new).insert(b.ts, reference::dec(b.close));
            if i > 0 {
                previous.insert((s.to_string(), b.ts), reference::dec(bars[i - 1].close));
            }
        }
    }
    Closes { close, previous }
}

#[test]
fn three_symbols_on_the_default_config_never_borrow() {
    // The run of issue #12: with the old 100x gross limit it went to 6.3x
    // leverage, cash -12.9M, a 105,434% return.
    let symbols = ["ETH-USD-1d", "SOL-USD-1d", "XRP-USD-1d"];
    let dir = tempdir();
    let out = dir.path().join("run");
    let config = repo().join("config/default.toml");
    let ran = run(&config, &symbols.join(","), &shared_data(), &out);
    assert!(ran.ok(), "{ran:#?}");
    let data = closes(&shared_data(), &symbols);

    // Positions and cash over time, from the fills and the equity curve.
    let fills = csv_rows(&out.join("fills.csv"));
    let equity: BTreeMap<i64, (Decimal, Decimal)> = csv_rows(&out.join("equity.csv"))
        .iter()
        .map(|r| (reference::parse_ts(&r[0]), (d(&r[1]), d(&r[2]))))
        .collect();
    // symbol, is a buy, quantity, price, fee
    type FillRow = (String, bool, Decimal, Decimal, Decimal);
    let mut fills_at: BTreeMap<i64, Vec<FillRow>> = BTreeMap::new();
    for f in &fills {
        // ts,order_id,symbol,side,qty,price,fee
        let entry = (f[2].clone(), f[3] == "buy", d(&f[4]), d(&f[5]), d(&f[6]));
        fills_at.entry(reference::parse_ts(&f[0])).or_default().push(entry);
    }
    assert!(fills_at.values().flatten().filter(|f| f.1).count() > 20, "the chain trades");

    let day = 86_400_000;
    let mut held: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut checked_entries = 0;
    // The allowance for the latest entries' next-open gap: cash may dip below
    // zero by what their fills cost above the close they were checked at.
    let mut gap_allowance = Decimal::ZERO;
    let mut min_cash_seen = Decimal::MAX;
    for (&ts, &(cash, eq)) in &equity {
        if let Some(fs) = fills_at.get(&ts) {
            let entries: Vec<_> = fs.iter().filter(|f| f.1).collect();
            if !entries.is_empty() {
                gap_allowance = entries
                    .iter()
                    .map(|(s, _, qty, price, fee)| {
                        let signal_close = data.previous[&(s.clone(), ts)];
                        *qty * (*price - signal_close).max(Decimal::ZERO) + *fee
                    })
                    .sum();
            }
            for (s, buy, qty, ..) in fs {
                *held.entry(s.clone()).or_default() += if *buy { *qty } else { -*qty };
            }
        }
        assert!(
            cash >= -gap_allowance,
            "cash {cash} at {} is below zero by more than the next-open gap of {gap_allowance}",
            reference::format_ts(ts)
        );
        min_cash_seen = min_cash_seen.min(cash);
        // The signal bar of tomorrow's entries is today's close: held
        // positions plus every entry signalled now, at today's closes, must
        // stay within equity.
        let Some(next) = fills_at.get(&(ts + day)) else { continue };
        let signalled: Decimal =
            next.iter().filter(|f| f.1).map(|(s, _, qty, ..)| *qty * data.at(s, ts)).sum();
        if signalled.is_zero() {
            continue;
        }
        let holding: Decimal = held.iter().map(|(s, q)| (*q * data.at(s, ts)).abs()).sum();
        assert!(
            holding + signalled <= eq,
            "at {} positions {holding} plus entries {signalled} exceed equity {eq}",
            reference::format_ts(ts)
        );
        checked_entries += 1;
    }
    assert!(checked_entries > 20, "{checked_entries} entry signals checked");

    let s = read_summary(&out);
    let e = &s["exposure"];
    assert_eq!(e["account"], "cash");
    assert_eq!(summary_decimal(e, "min_cash"), min_cash_seen);
    // Only the next-open gap takes leverage over 1, and 24/7 markets open
    // where they closed: 1% over is already far more than that.
    let max = e["max_leverage"].as_f64().unwrap();
    let avg = e["average_leverage"].as_f64().unwrap();
    assert!(max > 0.9 && max < 1.01, "max leverage {max}");
    assert!(avg > 0.0 && avg <= max, "average leverage {avg}");
    assert!(s["risk_refusals"]["by_rule"]["max-gross-exposure"]["count"].as_u64().unwrap() > 0, "{s:#}");
    let printed = format!("max {max:.2}x");
    assert!(ran.stdout.contains("leverage") && ran.stdout.contains(&printed), "{}", ran.stdout);
    assert!(ran.stdout.contains("REFUSED") && ran.stdout.contains("max-gross-exposure"), "{}", ran.stdout);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Max leverage") && html.contains("Avg leverage"), "report.html lacks leverage");
}

/// Two symbols with the same hand-made daily bars: flat at 100, a dip to 90
/// on 01-03 and back to 100 (an SMA(1)/SMA(2) cross up at 2024-01-04's
/// close, filled at 01-05's open of 100), four days at 100, then a fall to 90
/// (a cross down at 01-08's close, filled at 01-09's open of 90).
/// Open = high = low = close, so every price of a bar is its close.
fn twin_data() -> tempfile::TempDir {
    let dir = tempdir();
    let closes = [100, 100, 90, 100, 100, 100, 100, 90, 90, 90];
    let mut csv = String::from("timestamp,open,high,low,close,volume\n");
    for (i, c) in closes.iter().enumerate() {
        csv += &format!("2024-01-{:02}T00:00:00Z,{c},{c},{c},{c},1000\n", i + 1);
    }
    for symbol in ["AAA-USD", "BBB-USD"] {
        std::fs::write(dir.path().join(format!("{symbol}.csv")), &csv).unwrap();
    }
    dir
}

fn twin_config(dir: &Path, data: &Path, account: &str, gross: &str) -> PathBuf {
    let mut config = ConfigFile::reference(data)
        .slice("analysis", |s| s.config = "fast = 1, slow = 2".into())
        .slice("execution", |s| s.config = "taker-fee-bps = 0".into());
    config.risk.retain(|(k, _)| k != "max-gross-exposure");
    config.risk.push(("max-gross-exposure".into(), gross.into()));
    let path = dir.join("run.toml");
    std::fs::write(&path, format!("{}\n[account]\n{account}\n", config.to_toml())).unwrap();
    path
}

#[test]
fn a_margin_account_pays_interest_on_what_it_borrows() {
    let data = twin_data();
    let dir = tempdir();
    // 0.365 a year is 0.1% a day on a 365-day year: each day's interest is
    // exactly a thousandth of what is owed, so the figures are exact.
    let account = "type = \"margin\"\nmax-leverage = 2\nborrow-rate = 0.365";
    let config = twin_config(dir.path(), data.path(), account, "2");
    let out = dir.path().join("run");
    let ran = run(&config, "AAA-USD,BBB-USD", data.path(), &out);
    assert!(ran.ok(), "{ran:#?}");

    // By hand: both symbols signal at 2024-01-04's close of 100 with equity
    // 10000, each sized at 95% (95 units), together 1.9x equity, inside
    // max-leverage 2. Both fill at 01-05's open: cash 10000 - 2 x 9500 = -9000.
    let mut cash = d("-9000");
    let mut interest = Decimal::ZERO;
    // Interest for the days 01-05..01-06, ..., 01-08..01-09, charged at the
    // start of 01-06 ... 01-09, each on the cash carried over the day.
    for _ in 0..4 {
        let owed = -cash * d("0.001");
        interest += owed;
        cash -= owed;
    }
    // Then both positions sell at 01-09's open of 90.
    cash += d("2") * d("95") * d("90");
    assert_eq!(interest, d("36.054036009"), "hand computation");
    let s = read_summary(&out);
    assert_eq!(summary_decimal(&s, "margin_interest"), interest);
    assert_eq!(summary_decimal(&s, "borrow_paid"), interest);
    assert_eq!(summary_decimal(&s, "final_cash"), cash);
    assert_eq!(summary_decimal(&s, "final_equity"), cash);
    assert_eq!(s["trade_count"], 2);
    // Leverage is 1.9 at 01-05's close (19000 on equity 10000) and highest
    // at 01-08's close of 90, after three days' interest: 17100 of positions
    // on equity 17100 - 9027.027009 (no margin call is modelled).
    let cash_0108 = d("-9027.027009");
    let at_0108 = d("17100") / (d("17100") + cash_0108);
    let max = s["exposure"]["max_leverage"].as_f64().unwrap();
    assert_eq!(max.to_string(), at_0108.round_dp(4).to_string());
    assert_eq!(s["exposure"]["max_leverage_at"], "2024-01-08T00:00:00Z");
    assert_eq!(summary_decimal(&s["exposure"], "min_cash"), cash_0108);
    assert_eq!(s["exposure"]["account"], "margin");
    assert!(ran.stdout.contains("borrow cost   36.05 (margin interest 36.05)"), "{}", ran.stdout);
    assert!(ran.stdout.contains("max 2.12x on 2024-01-08"), "{}", ran.stdout);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Borrow cost") && html.contains("36.05"), "report.html lacks the borrow cost");
}

#[test]
fn a_binding_limit_is_reported_with_its_rule_and_an_example() {
    // The same bars on a cash account: the second 95% entry would borrow, so
    // the gate refuses it, and says so where the result is read.
    let data = twin_data();
    let dir = tempdir();
    let config = twin_config(dir.path(), data.path(), "type = \"cash\"", "1");
    let out = dir.path().join("run");
    let ran = run(&config, "AAA-USD,BBB-USD", data.path(), &out);
    assert!(ran.ok(), "{ran:#?}");
    let s = read_summary(&out);
    assert_eq!(s["trade_count"], 1, "only AAA-USD trades");
    assert_eq!(summary_decimal(&s, "borrow_paid"), Decimal::ZERO);
    let refusals = &s["risk_refusals"];
    assert_eq!(refusals["total"], 1, "{refusals:#}");
    let rule = &refusals["by_rule"]["max-gross-exposure"];
    assert_eq!(rule["count"], 1);
    assert_eq!(rule["example"]["symbol"], "BBB-USD");
    assert_eq!(rule["example"]["at"], "2024-01-04T00:00:00Z");
    // AAA-USD's pending 9500 plus BBB-USD's 9500 against equity 10000.
    let detail = rule["example"]["detail"].as_str().unwrap();
    assert!(detail.contains("19000") && detail.contains("equity 10000"), "{detail}");
    for needle in [
        "REFUSED       1 entries by the risk gate",
        "max-gross-exposure: 1",
        "BBB-USD at 2024-01-04T00:00:00Z",
    ] {
        assert!(ran.stdout.contains(needle), "stdout lacks {needle:?}:\n{}", ran.stdout);
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("id=\"refusals\"") && html.contains("BBB-USD at 2024-01-04T00:00:00Z"),
        "report.html"
    );
    // Cash never went below zero: fills at the closes they were checked at.
    assert!(summary_decimal(&s["exposure"], "min_cash") >= Decimal::ZERO, "{:#}", s["exposure"]);
}

#[test]
fn without_a_risk_section_the_reference_chain_trades_as_documented() {
    // The defaults agree with the default sizer: no refusal, the reference
    // model's trades exactly.
    let dir = tempdir();
    let mut config = ConfigFile::reference(&shared_data());
    config.risk.clear();
    let text = config.to_toml().replace("\n[risk]\n", "\n");
    assert!(!text.contains("[risk]"));
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("run");
    let ran = run(&path, "BTC-USD-1d", &shared_data(), &out);
    assert!(ran.ok(), "{ran:#?}");
    let bars = reference::read_csv(&shared_data().join("BTC-USD-1d.csv"));
    let model = reference::simulate(vec![("BTC-USD-1d".into(), bars)], &Params::default());
    let s = read_summary(&out);
    assert_eq!(s["trade_count"].as_u64(), Some(model.trades.len() as u64));
    assert_eq!(summary_decimal(&s, "final_equity"), model.final_equity);
    assert_eq!(s["risk_refusals"]["total"], 0);
    assert_eq!(s["config"]["risk"]["max-position-fraction"], "1");
    assert_eq!(s["config"]["risk"]["max-gross-exposure"], "1");
    assert_eq!(s["config"]["risk"]["max-daily-loss"], "none");
}

#[test]
fn borrowing_above_one_without_a_margin_account_is_a_config_error() {
    let dir = tempdir();
    let mut config = ConfigFile::reference(&shared_data());
    config.risk.retain(|(k, _)| k != "max-gross-exposure");
    config.risk.push(("max-gross-exposure".into(), "100".into()));
    let path = config.write(dir.path());
    let out = dir.path().join("run");
    let ran = run(&path, "BTC-USD-1d", &shared_data(), &out);
    ran.assert_fails_with(&["risk.max-gross-exposure = 100", "[account] type = \"margin\""]);
    assert!(!out.exists(), "nothing ran");
}

fn host_with_env(args: &[&str], env: &[(&str, &Path)]) -> Ran {
    let mut cmd = Command::new(host_bin());
    cmd.args(args).current_dir(repo()).env_remove("STRATA_CONFIG").env_remove("STRATA_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn config_check_runs_every_slices_init_and_reports_every_problem() {
    let dir = tempdir();
    let config = ConfigFile::reference(&shared_data())
        .slice("analysis", |s| s.config = "fast = 30, slow = 10".into())
        .slice("strategy", |s| s.config = "volatile = \"flatt\"".into())
        .slice("sizing", |s| s.extra.push("limits.memory-mib = 1".into()))
        .slice("execution", |s| s.config = "fill = \"next_open\"".into());
    let path = config.write(dir.path());
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&[
        "4 problem(s)",
        "slices.analysis: init failed",
        "`fast` (30) must be less than `slow` (10)",
        "slices.strategy: init failed",
        "flatt",
        "slices.sizing",
        "slices.execution: init failed",
        "next_open",
    ]);
    // The effective limits are shown even when the config is refused.
    for section in ["[run]", "[risk]", "[account]", "[faults]", "max-gross-exposure = \"1\""] {
        assert!(ran.stdout.contains(section), "stdout lacks {section}:\n{}", ran.stdout);
    }
    // And `run` refuses the same config.
    let out = dir.path().join("run");
    assert!(!run(&path, "BTC-USD-1d", &shared_data(), &out).ok());

    let negative_fee =
        ConfigFile::reference(&shared_data()).slice("execution", |s| s.config = "taker-fee-bps = -5".into());
    let path = negative_fee.write(dir.path());
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&["slices.execution: init failed", "taker-fee-bps"]);
}

#[test]
fn config_check_names_every_unknown_key_at_once() {
    let dir = tempdir();
    let mut config = ConfigFile::reference(&shared_data());
    config.risk.push(("max-leverage".into(), "2".into()));
    let text = format!("colour = \"blue\"\nflavour = 1\n{}", config.to_toml());
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).unwrap();
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&["3 problem(s)", "`colour`", "`flavour`", "[risk] unknown field `max-leverage`"]);
}

#[test]
fn config_check_honours_the_environment_like_run() {
    let dir = tempdir();
    let mut config = ConfigFile::reference(&shared_data());
    config.risk.retain(|(k, _)| k != "max-gross-exposure");
    config.risk.push(("max-gross-exposure".into(), "3".into()));
    let path = config.write(dir.path());
    // $STRATA_CONFIG picks the file, as for `run`.
    let ran = host_with_env(&["config", "check"], &[("STRATA_CONFIG", &path)]);
    ran.assert_fails_with(&["risk.max-gross-exposure = 3", "run.toml"]);

    // $STRATA_DATA_DIR moves the data grant, as for `run`: a missing folder is named.
    let good = ConfigFile::reference(&shared_data()).write(dir.path());
    let missing = dir.path().join("no-such-data");
    let ran = host_with_env(&["config", "check", good.to_str().unwrap()], &[("STRATA_DATA_DIR", &missing)]);
    ran.assert_fails_with(&["no-such-data", "is not a directory"]);
    let ran =
        host_with_env(&["config", "check", good.to_str().unwrap()], &[("STRATA_DATA_DIR", &shared_data())]);
    assert!(ran.ok(), "{ran:#?}");
    assert!(
        ran.stdout.contains("is valid") && ran.stdout.contains(shared_data().to_str().unwrap()),
        "{}",
        ran.stdout
    );
}
