//! Backtests against the reference semantics: an independent model on real
//! data, hand-checked small cases, several symbols, and determinism.

use std::path::Path;

use rust_decimal::Decimal;
use strata_tests::reference::{self, Params};
use strata_tests::*;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// Runs the reference chain over `symbols` in `data_dir`; returns the run folder.
fn run_reference(data_dir: &Path, symbols: &str, extra: &[&str]) -> tempfile::TempDir {
    let out = tempdir();
    let config = ConfigFile::reference(data_dir).write(out.path());
    let run_dir = out.path().join("run");
    let mut args = vec!["run", "--mode", "backtest", "--symbols", symbols, "--config"];
    let (config, run_dir_str) = (config.display().to_string(), run_dir.display().to_string());
    args.push(&config);
    args.extend(["--out", &run_dir_str]);
    args.extend(extra);
    let ran = host(&args);
    assert!(ran.ok(), "{ran:#?}");
    out
}

fn assert_matches_model(run_dir: &Path, model: &reference::Outcome) {
    let trades = read_trades(run_dir);
    assert_eq!(trades.len(), model.trades.len(), "trade count");
    for (i, (got, want)) in trades.iter().zip(&model.trades).enumerate() {
        assert_eq!(
            (
                &got.symbol,
                &got.entry_ts,
                got.entry_price,
                &got.exit_ts,
                got.exit_price,
                got.qty,
                got.fees,
                got.pnl
            ),
            (
                &want.symbol,
                &want.entry_ts,
                want.entry_price,
                &want.exit_ts,
                want.exit_price,
                want.qty,
                want.fees,
                want.pnl
            ),
            "trade {i}"
        );
    }
    let summary = read_summary(run_dir);
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary_decimal(&summary, "final_equity"), model.final_equity);
    assert_eq!(summary_decimal(&summary, "final_cash"), model.final_cash);
    assert_eq!(summary["bars"].as_u64().unwrap() as usize, model.bars);
    assert_eq!(summary["trade_count"].as_u64().unwrap() as usize, model.trades.len());
}

fn model_for(files: &[&str]) -> reference::Outcome {
    let symbols = files
        .iter()
        .map(|f| (f.to_string(), reference::read_csv(&shared_data().join(format!("{f}.csv")))))
        .collect();
    reference::simulate(symbols, &Params::default())
}

#[test]
fn btc_daily_matches_the_reference_model_exactly() {
    let out = run_reference(&shared_data(), "BTC-USD-1d", &[]);
    let model = model_for(&["BTC-USD-1d"]);
    assert!(model.trades.len() > 50, "a decade of daily bars crosses often");
    assert_matches_model(&out.path().join("run"), &model);
}

#[test]
fn btc_hourly_matches_the_reference_model_exactly() {
    let out = run_reference(&shared_data(), "BTC-USD-1h", &[]);
    let model = model_for(&["BTC-USD-1h"]);
    assert_eq!(model.bars, 37_386);
    assert_matches_model(&out.path().join("run"), &model);
}

#[test]
fn two_symbols_share_one_cash_balance_in_time_order() {
    // ETH's data starts three years after BTC's: the merge must cope.
    let out = run_reference(&shared_data(), "BTC-USD-1d,ETH-USD-1d", &[]);
    let model = model_for(&["BTC-USD-1d", "ETH-USD-1d"]);
    assert!(model.trades.iter().any(|t| t.symbol == "ETH-USD-1d"));
    // Both symbols want 95% of equity at times: the entries that would have
    // borrowed are refused, in the model and in the host alike.
    assert!(model.refused > 0, "the no-borrowing rule binds on BTC + ETH");
    assert_matches_model(&out.path().join("run"), &model);
    let summary = read_summary(&out.path().join("run"));
    assert_eq!(summary["symbols"], serde_json::json!(["BTC-USD-1d", "ETH-USD-1d"]));
    assert_eq!(
        summary["risk_refusals"]["total"].as_u64(),
        Some(model.refused as u64),
        "{:#}",
        summary["risk_refusals"]
    );
}

#[test]
fn the_range_limits_bars_and_indicators_warm_up_inside_it() {
    let out = run_reference(&shared_data(), "BTC-USD-1d", &["--from", "2020-01-01", "--to", "2021-12-31"]);
    let bars: Vec<_> = reference::read_csv(&shared_data().join("BTC-USD-1d.csv"))
        .into_iter()
        .filter(|b| b.ts >= reference::parse_ts("2020-01-01") && b.ts < reference::parse_ts("2022-01-01"))
        .collect();
    assert_eq!(bars.len(), 731, "2020 is a leap year: 366 + 365 days, --to included");
    let model = reference::simulate(vec![("BTC-USD-1d".into(), bars)], &Params::default());
    let run = out.path().join("run");
    assert_matches_model(&run, &model);
    let summary = read_summary(&run);
    assert_eq!(summary["first_bar"], "2020-01-01T00:00:00Z");
    assert_eq!(summary["last_bar"], "2021-12-31T00:00:00Z");
}

/// Seven daily bars, checked by hand with SMA(2) and SMA(3):
///
/// | day | open | close | SMA2 | SMA3   | event                                  |
/// |-----|------|-------|------|--------|----------------------------------------|
/// | 0-2 | 10   | 10    | 10   | 10     | first bar with both averages (day 2)   |
/// | 3   | 10   | 13    | 11.5 | 11     | crosses above: enter                   |
/// | 4   | 12.5 | 12    | 12.5 | 11.667 | buy fills at 12.5                      |
/// | 5   | 12   | 9     | 10.5 | 11.333 | crosses below: exit                    |
/// | 6   | 9.5  | 9     |      |        | sell fills at 9.5                      |
///
/// Entry: floor(0.95 x 10000 / 13, 8) = 730.76923076; cost 9134.6153845 plus a
/// fee of 9.1346153845 leaves 856.2500001155 in cash. Exit: 6942.30769222 less
/// a fee of 6.94230769222 brings cash to 7791.61538464328. The round trip's
/// P&L is 6942.30769222 - 9134.6153845 - 16.07692307672 = -2208.38461535672.
const HAND_CHECKED: &str = "timestamp,open,high,low,close,volume
2024-01-01,10,10,10,10,1
2024-01-02,10,10,10,10,1
2024-01-03,10,10,10,10,1
2024-01-04,10,13,10,13,1
2024-01-05,12.5,12.5,12,12,1
2024-01-06,12,12,9,9,1
2024-01-07,9.5,9.5,9,9,1
";

fn hand_checked_run(csv: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("TEST.csv"), csv).unwrap();
    let config = ConfigFile::reference(&data).slice("analysis", |s| s.config = "fast = 2, slow = 3".into());
    let config = config.write(dir.path());
    let run = dir.path().join("run");
    let ran = host(&[
        "run",
        "--symbols",
        "TEST",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "{ran:#?}");
    (dir, run)
}

#[test]
fn a_hand_checked_round_trip() {
    let (_dir, run) = hand_checked_run(HAND_CHECKED);
    let trades = read_trades(&run);
    assert_eq!(trades.len(), 1);
    let t = &trades[0];
    assert_eq!((t.entry_ts.as_str(), t.exit_ts.as_str()), ("2024-01-05T00:00:00Z", "2024-01-07T00:00:00Z"));
    assert_eq!((t.entry_price, t.exit_price, t.qty), (d("12.5"), d("9.5"), d("730.76923076")));
    assert_eq!(t.fees, d("16.07692307672"));
    assert_eq!(t.pnl, d("-2208.38461535672"));
    let summary = read_summary(&run);
    assert_eq!(summary_decimal(&summary, "final_equity"), d("7791.61538464328"));
    // equity.csv: one row per bar; cash moves on fill days only.
    let equity = std::fs::read_to_string(run.join("equity.csv")).unwrap();
    let rows: Vec<&str> = equity.lines().collect();
    assert_eq!(rows[0], "timestamp,cash,equity");
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[4], "2024-01-04T00:00:00Z,10000,10000");
    // Day 4: holding 730.76923076 marked at the close of 12.
    assert_eq!(rows[5], "2024-01-05T00:00:00Z,856.2500001155,9625.4807692355");
    assert_eq!(rows[7], "2024-01-07T00:00:00Z,7791.61538464328,7791.61538464328");
}

#[test]
fn an_open_position_at_the_end_is_marked_not_closed() {
    let csv: String = HAND_CHECKED.lines().take(6).map(|l| format!("{l}\n")).collect();
    let (_dir, run) = hand_checked_run(&csv);
    assert!(read_trades(&run).is_empty());
    let summary = read_summary(&run);
    // 856.2500001155 cash + 730.76923076 x 12.
    assert_eq!(summary_decimal(&summary, "final_equity"), d("9625.4807692355"));
    assert_eq!(summary["open_positions"][0]["quantity"], "730.76923076");
}

#[test]
fn the_same_run_twice_gives_identical_files() {
    let a = run_reference(&shared_data(), "BTC-USD-1h", &[]);
    let b = run_reference(&shared_data(), "BTC-USD-1h", &[]);
    for file in ["trades.csv", "equity.csv", "orders.csv"] {
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("run").join(file)).unwrap();
        assert!(read(&a) == read(&b), "{file} differs between identical runs");
    }
}

#[test]
fn symbols_run_in_parallel_give_the_same_files_as_one_thread() {
    // Five symbols' slices run on worker threads between timestamps; the
    // portfolio still sees their orders in one fixed order, so the thread
    // count changes nothing a user can see, and both match the model.
    let files = ["BTC-USD-1d", "ETH-USD-1d", "SOL-USD-1d", "XRP-USD-1d", "BTC-USD-1h"];
    let symbols = files.join(",");
    let symbols = symbols.as_str();
    let one = run_reference(&shared_data(), symbols, &["--threads", "1"]);
    let four = run_reference(&shared_data(), symbols, &["--threads", "4"]);
    for file in ["trades.csv", "equity.csv", "orders.csv", "fills.csv", "positions.csv"] {
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("run").join(file)).unwrap();
        assert!(read(&one) == read(&four), "{file} differs between 1 and 4 threads");
    }
    let model = model_for(&files);
    assert_matches_model(&four.path().join("run"), &model);
}

#[test]
fn the_summary_records_inputs_hashes_fill_rule_and_timing() {
    let out = run_reference(&shared_data(), "BTC-USD-1d", &[]);
    let s = read_summary(&out.path().join("run"));
    for kind in ["data", "analysis", "regime", "strategy", "sizing", "execution"] {
        let slice = &s["slices"][kind];
        assert_eq!(slice["sha256"].as_str().unwrap().len(), 64, "{kind}");
        assert!(Path::new(slice["path"].as_str().unwrap()).is_file(), "{kind}");
    }
    assert_eq!(s["slices"]["analysis"]["settings"], serde_json::json!({"fast": 10, "slow": 30}));
    assert_eq!(s["slices"]["data"]["grants"]["read-dirs"]["/data"], shared_data().display().to_string());
    assert!(s["execution"]["fill_model"].as_str().unwrap().contains("next bar's open"));
    assert_eq!(s["execution"]["settings"]["taker-fee-bps"], 10.0);
    assert!(s["timing"]["load_ms"].as_f64().unwrap() > 0.0);
    assert!(s["timing"]["run_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(s["synthetic_data"], false);
    assert_eq!(s["config"]["run"]["start-cash"], "10000");
}

#[test]
fn the_sample_data_is_labelled_synthetic_through_to_the_summary() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let ran = host(&[
        "data",
        "export",
        "--config",
        "config/synthetic.toml",
        "--symbols",
        "BTC-USD",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "{ran:#?}");
    let csv = std::fs::read_to_string(data.join("BTC-USD.csv")).unwrap();
    assert!(csv.starts_with("# SYNTHETIC DATA"), "{}", &csv[..200]);
    let config = ConfigFile::reference(&data).write(dir.path());
    let run = dir.path().join("run");
    let ran = host(&[
        "run",
        "--symbols",
        "BTC-USD",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "{ran:#?}");
    assert!(ran.stdout.contains("SYNTHETIC"), "{}", ran.stdout);
    let s = read_summary(&run);
    assert_eq!(s["synthetic_data"], true);
    assert_eq!(s["data"][0]["source"]["synthetic"], true);
}
