//! Optimize mode: the real host searching parameters of the real reference
//! chain on the shared BTC data, checked against `host run` backtests of
//! the same parameters, across thread counts, shards and interruptions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_tests::*;

const FROM: &str = "2020-01-01";
const TO: &str = "2023-12-31";

/// SMA periods: 4 x 3 = 12 pairs, of which 3 have fast >= slow.
const GRID: &str = r#"
[optimize]
objective = "sharpe"
constraints = ["analysis.fast < analysis.slow"]

[optimize.space.analysis]
fast = [5, 10, 20, 40]
slow = { from = 20, to = 60, step = 20 }
"#;

/// The reference chain (as config/default.toml) with `optimize` appended.
fn study_config(dir: &Path, optimize: &str) -> PathBuf {
    let path = dir.join("study.toml");
    std::fs::write(&path, ConfigFile::reference(&shared_data()).to_toml() + optimize).unwrap();
    path
}

fn optimize_args<'a>(
    config: &'a Path,
    out: &'a Path,
    symbols: &'a str,
    from: &'a str,
    to: &'a str,
) -> Vec<String> {
    ["optimize", "--config", config.to_str().unwrap(), "--symbols", symbols, "--from", from, "--to", to]
        .into_iter()
        .chain(["--out", out.to_str().unwrap()])
        .map(str::to_owned)
        .collect()
}

fn run_ok(args: &[String]) -> Ran {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = host(&args);
    assert!(ran.ok(), "host {}: {ran:#?}", args.join(" "));
    ran
}

/// A CSV file as rows of column -> text (quoted fields unquoted).
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap());
    lines
        .map(|line| {
            let fields = split_csv(line);
            assert_eq!(fields.len(), header.len(), "{line}");
            header.iter().cloned().zip(fields).collect()
        })
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// Whether a CSV cell says what a JSON value says (money is a string, a
/// figure with no meaning is null and an empty cell).
fn same(cell: &str, value: &Value) -> bool {
    match value {
        Value::Null => cell.is_empty(),
        Value::String(s) => cell == s,
        _ => serde_json::from_str::<Value>(cell).ok().as_ref() == Some(value),
    }
}

/// The metric columns of trials.csv: from `first` to `fees_paid`.
fn metric_columns(row: &BTreeMap<String, String>, header_order: &[String]) -> Vec<String> {
    let start = header_order.iter().position(|c| c == "first").unwrap();
    let end = header_order.iter().position(|c| c == "fees_paid").unwrap();
    assert!(row.contains_key("fees_paid"));
    header_order[start..=end].to_vec()
}

fn header(path: &Path) -> Vec<String> {
    split_csv(std::fs::read_to_string(path).unwrap().lines().next().unwrap())
}

/// `host run` of the reference chain with these SMA periods: its run folder.
fn backtest(dir: &Path, fast: &str, slow: &str, range: &[&str]) -> PathBuf {
    let config = ConfigFile::reference(&shared_data())
        .slice("analysis", |s| s.config = format!("fast = {fast}, slow = {slow}"))
        .write(dir);
    let out = dir.join(format!("run-{fast}-{slow}-{}", range.join("_")));
    let mut args =
        vec!["run", "--config", config.to_str().unwrap(), "--symbols", "BTC-USD-1d", "--threads", "1"];
    args.extend_from_slice(range);
    args.extend_from_slice(&["--out", out.to_str().unwrap(), "--quiet"]);
    let ran = host(&args);
    assert!(ran.ok(), "{ran:#?}");
    out
}

const OUTPUTS: [&str; 5] = ["trials.csv", "best.json", "report.html", "study.json", "best-curves.json"];

fn assert_same_outputs(a: &Path, b: &Path) {
    for name in OUTPUTS {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        assert!(x == y, "{name} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
fn grid_trials_equal_host_run_backtests_of_the_same_parameters() {
    let dir = tempdir();
    let config = study_config(dir.path(), GRID);
    let out = dir.path().join("study");
    let ran = run_ok(&optimize_args(&config, &out, "BTC-USD-1d", FROM, TO));
    assert!(
        ran.stdout.contains("9 finished") && ran.stdout.contains("3 skipped by constraints"),
        "{}",
        ran.stdout
    );
    // Not a terminal: no progress bar.
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);

    let rows = read_csv(&out.join("trials.csv"));
    let columns = header(&out.join("trials.csv"));
    assert_eq!(rows.len(), 9);
    let pairs: Vec<(String, String)> =
        rows.iter().map(|r| (r["analysis.fast"].clone(), r["analysis.slow"].clone())).collect();
    // The grid in order, the first parameter varying slowest; fast < slow only.
    let want: Vec<(String, String)> =
        [(5, 20), (5, 40), (5, 60), (10, 20), (10, 40), (10, 60), (20, 40), (20, 60), (40, 60)]
            .iter()
            .map(|(f, s)| (f.to_string(), s.to_string()))
            .collect();
    assert_eq!(pairs, want);

    for row in &rows {
        assert_eq!(row["status"], "completed");
        let run =
            backtest(dir.path(), &row["analysis.fast"], &row["analysis.slow"], &["--from", FROM, "--to", TO]);
        let summary = read_summary(&run);
        let portfolio = &summary["metrics"]["portfolio"];
        for column in metric_columns(row, &columns) {
            assert!(
                same(&row[&column], &portfolio[&column]),
                "trial {} {column}: trials.csv says {:?}, host run says {}",
                row["trial"],
                row[&column],
                portfolio[&column]
            );
        }
        assert_eq!(row["final_equity"], summary["final_equity"].as_str().unwrap());
        assert_eq!(row["trades"], read_trades(&run).len().to_string());
        assert!(same(&row["objective"], &portfolio["sharpe"]));
    }

    // best.json names the highest Sharpe ratio, with the settings to paste.
    let best = json(&out.join("best.json"));
    let top = rows
        .iter()
        .max_by(|a, b| a["sharpe"].parse::<f64>().unwrap().total_cmp(&b["sharpe"].parse::<f64>().unwrap()))
        .unwrap();
    assert_eq!(best["best"]["trial"].to_string(), top["trial"]);
    assert_eq!(best["best"]["settings"]["analysis"]["fast"].to_string(), top["analysis.fast"]);
    assert_eq!(best["trials"]["skipped_by_constraints"], 3);

    // The page: self-contained, with the ranking and a heat map of fast by slow.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    for remote in ["http://", "https://", "<script src", "<link"] {
        assert!(!page.contains(remote), "report.html fetches something: {remote}");
    }
    let ranking = &page[page.find("id=\"ranking-table\"").unwrap()..];
    let ranking = &ranking[..ranking.find("</table>").unwrap()];
    assert_eq!(ranking.matches("<tr><td>").count(), 9);
    let heatmap = &page[page.find("id=\"heatmap-svg\"").unwrap()..];
    let heatmap = &heatmap[..heatmap.find("</svg>").unwrap()];
    // 4 fast x 3 slow cells, 3 of them empty (the constraint), the best one marked.
    assert_eq!(heatmap.matches("<rect").count(), 12);
    assert_eq!(heatmap.matches("no trial</title>").count(), 3);
    assert!(heatmap.contains(&format!(
        "analysis.fast = {}, analysis.slow = {}: sharpe",
        top["analysis.fast"], top["analysis.slow"]
    )));
    assert!(page.contains("9 parameter sets were backtested"), "the multiple-testing note");
}

#[test]
fn a_study_of_many_symbols_runs_every_trial_as_host_run_does() {
    // Twelve symbols (the four daily series, each under three names), two
    // threads: 24 chains of six instances at once, every trial on the pool.
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let series = ["BTC-USD-1d", "ETH-USD-1d", "SOL-USD-1d", "XRP-USD-1d"];
    let symbols: Vec<String> = (0..12).map(|i| format!("S{i:02}-{}", series[i % 4])).collect();
    for (i, symbol) in symbols.iter().enumerate() {
        let source = shared_data().join(format!("{}.csv", series[i % 4]));
        // Copies: the sandbox rightly refuses a symlink out of the data slice's grant.
        std::fs::copy(source, data.join(format!("{symbol}.csv"))).unwrap();
    }
    let symbols = symbols.join(",");
    let config = study_config(dir.path(), GRID);
    let out = dir.path().join("study");
    let mut args = optimize_args(&config, &out, &symbols, "2021-01-01", "2022-12-31");
    args.extend(["--data-dir", data.to_str().unwrap(), "--threads", "2"].map(str::to_owned));
    let ran = run_ok(&args);
    assert!(ran.stdout.contains("9 finished") && ran.stdout.contains(" 0 failed"), "{}", ran.stdout);

    // The best trial, as `host run` of the same settings on the same twelve symbols.
    let best = json(&out.join("best.json"));
    let (fast, slow) =
        (&best["best"]["settings"]["analysis"]["fast"], &best["best"]["settings"]["analysis"]["slow"]);
    let run_config = ConfigFile::reference(&shared_data())
        .slice("analysis", |s| s.config = format!("fast = {fast}, slow = {slow}"))
        .write(dir.path());
    let run = dir.path().join("run");
    let ran = host(&[
        "run",
        "--config",
        run_config.to_str().unwrap(),
        "--symbols",
        &symbols,
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "2021-01-01",
        "--to",
        "2022-12-31",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ran.ok(), "{ran:#?}");
    let best_trial = best["best"]["trial"].to_string();
    let trial = read_csv(&out.join("trials.csv")).into_iter().find(|r| r["trial"] == best_trial).unwrap();
    assert_eq!(trial["status"], "completed");
    assert_eq!(trial["final_equity"], read_summary(&run)["final_equity"].as_str().unwrap());
    assert_eq!(trial["trades"], read_trades(&run).len().to_string());
}

#[test]
fn without_room_for_the_instance_pool_trials_run_on_demand_with_the_same_results() {
    // The pool reserves its slots' address space up front (hundreds of GiB
    // of it, never touched). Under a 40 GiB address-space limit it cannot,
    // so the study says so and runs on on-demand instances instead.
    let dir = tempdir();
    let config = study_config(dir.path(), GRID);
    let (pooled, limited) = (dir.path().join("pooled"), dir.path().join("limited"));
    let mut args = optimize_args(&config, &pooled, "BTC-USD-1d", FROM, TO);
    args.extend(["--threads", "1"].map(str::to_owned));
    let ran = run_ok(&args);
    assert!(!ran.stderr.contains("on-demand"), "{}", ran.stderr);

    let mut args = optimize_args(&config, &limited, "BTC-USD-1d", FROM, TO);
    args.extend(["--threads", "1"].map(str::to_owned));
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -v $((40 * 1024 * 1024)) && exec "$0" "$@""#)
        .arg(host_bin())
        .args(&args)
        .current_dir(repo())
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trials use on-demand instances, which is slower"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("9 finished"));
    assert_same_outputs(&pooled, &limited);
}

/// A TPE study over the periods and the sizing fraction (a distribution).
const TPE: &str = r#"
[optimize]
sampler = "tpe"
trials = 24
batch = 6
startup-trials = 6
seed = 3
objective = "calmar"
max-drawdown = 0.6
constraints = ["analysis.slow >= 2 * analysis.fast"]

[optimize.space.analysis]
fast = { from = 3, to = 30, step = 1 }
slow = { from = 20, to = 120, step = 5 }

[optimize.space.sizing]
fraction = { uniform = [0.3, 1.0] }
"#;

#[test]
fn the_same_config_gives_the_same_trials_on_one_thread_and_on_all() {
    let dir = tempdir();
    let config = study_config(dir.path(), TPE);
    let (one, all) = (dir.path().join("one"), dir.path().join("all"));
    let mut args = optimize_args(&config, &one, "BTC-USD-1d", FROM, TO);
    args.extend(["--threads".into(), "1".into()]);
    run_ok(&args);
    let mut args = optimize_args(&config, &all, "BTC-USD-1d", FROM, TO);
    args.extend(["--threads".into(), "4".into()]);
    run_ok(&args);
    assert_same_outputs(&one, &all);

    let rows = read_csv(&one.join("trials.csv"));
    assert_eq!(rows.len(), 24);
    for row in &rows {
        let (fast, slow): (i64, i64) =
            (row["analysis.fast"].parse().unwrap(), row["analysis.slow"].parse().unwrap());
        let fraction: f64 = row["sizing.fraction"].parse().unwrap();
        assert!(slow >= 2 * fast && (3..=30).contains(&fast) && slow % 5 == 0, "{row:?}");
        assert!((0.3..=1.0).contains(&fraction), "{row:?}");
    }
    // No trial twice.
    let mut sets: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r["analysis.fast"].clone(), r["analysis.slow"].clone(), r["sizing.fraction"].clone()))
        .collect();
    sets.sort();
    sets.dedup();
    assert_eq!(sets.len(), 24);
}

/// A seeded random search: every shard draws the same plan.
const RANDOM: &str = r#"
[optimize]
sampler = "random"
trials = 20
seed = 11
objective = "sortino"
constraints = ["analysis.fast < analysis.slow"]

[optimize.space.analysis]
fast = { from = 2, to = 40, step = 2 }
slow = { from = 20, to = 200, step = 10 }
"#;

#[test]
fn shards_run_as_separate_processes_merge_into_the_single_runs_outputs() {
    let dir = tempdir();
    let config = study_config(dir.path(), RANDOM);
    let single = dir.path().join("single");
    run_ok(&optimize_args(&config, &single, "BTC-USD-1d", FROM, TO));

    // Three shards at once, as a Kubernetes Indexed Job would start them:
    // through deploy/optimize-shard.sh, told their index by JOB_COMPLETION_INDEX.
    let results = dir.path().join("shards");
    let children: Vec<Child> = (0..3)
        .map(|i| {
            Command::new(repo().join("deploy/optimize-shard.sh"))
                .args([
                    "--config",
                    config.to_str().unwrap(),
                    "--symbols",
                    "BTC-USD-1d",
                    "--from",
                    FROM,
                    "--to",
                    TO,
                ])
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env("SHARDS", "3")
                .env("RESULTS_DIR", &results)
                .env("STRATA_HOST", host_bin())
                .env_remove("STRATA_CONFIG")
                .env_remove("STRATA_DATA_DIR")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for i in 0..3u64 {
        let rows = read_csv(&results.join(format!("shard-{i}/trials.csv")));
        assert!(!rows.is_empty());
        assert!(
            rows.iter().all(|r| r["trial"].parse::<u64>().unwrap() % 3 == i),
            "shard {i} ran another's trial"
        );
    }

    let shard = |i: u32| results.join(format!("shard-{i}")).to_str().unwrap().to_owned();
    let merged = dir.path().join("merged");
    let ran = run_ok(&[
        "optimize".into(),
        "merge".into(),
        shard(2),
        shard(0),
        shard(1),
        "--out".into(),
        merged.to_str().unwrap().into(),
    ]);
    assert!(ran.stdout.contains("merged from 3 shards"), "{}", ran.stdout);
    assert_same_outputs(&single, &merged);
    assert_eq!(read_csv(&merged.join("trials.csv")).len(), 20);

    // A shard missing, or named twice, is refused.
    let elsewhere = dir.path().join("merged-2").to_str().unwrap().to_owned();
    host(&["optimize", "merge", &shard(0), &shard(2), "--out", &elsewhere])
        .assert_fails_with(&["shard(s) 1/3 missing: give the folders of all 3 shards"]);
    host(&["optimize", "merge", &shard(0), &shard(0), &shard(1), "--out", &elsewhere])
        .assert_fails_with(&["shard 0/3 is named twice"]);
}

#[test]
fn walk_forward_tests_each_windows_best_on_the_window_after_it() {
    let dir = tempdir();
    let config = study_config(
        dir.path(),
        r#"
[optimize]
objective = "sharpe"
[optimize.space.analysis]
fast = [5, 10, 20]
slow = [30, 60, 100]
[optimize.walk-forward]
train-days = 731
test-days = 365
"#,
    );
    let out = dir.path().join("wf");
    let ran = run_ok(&optimize_args(&config, &out, "BTC-USD-1d", "2019-01-01", "2023-12-31"));
    assert!(ran.stdout.contains("3 walk-forward windows, 9 trials each"), "{}", ran.stdout);

    let best = json(&out.join("best.json"));
    let windows = best["walk_forward"]["windows"].as_array().unwrap();
    // Train 2019-2020 (731 days), then test years 2021, 2022 and 2023.
    let tests: Vec<(&str, &str)> = windows
        .iter()
        .map(|w| (w["test"]["from"].as_str().unwrap(), w["test"]["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tests,
        [
            ("2021-01-01T00:00:00Z", "2021-12-31T23:59:59.999Z"),
            ("2022-01-01T00:00:00Z", "2022-12-31T23:59:59.999Z"),
            ("2023-01-01T00:00:00Z", "2023-12-31T23:59:59.999Z"),
        ]
    );
    let rows = read_csv(&out.join("trials.csv"));
    assert_eq!(rows.len(), 27);
    let mut stitched = 1.0;
    for w in windows {
        let index = w["window"].as_u64().unwrap().to_string();
        // The parameters chosen are the best in sample among the window's trials...
        let mine: Vec<_> = rows.iter().filter(|r| r["window"] == index).collect();
        let top = mine
            .iter()
            .max_by(|a, b| {
                a["sharpe"].parse::<f64>().unwrap().total_cmp(&b["sharpe"].parse::<f64>().unwrap())
            })
            .unwrap();
        assert_eq!(w["trial"].to_string(), top["trial"]);
        assert_eq!(&w["train"]["to"].as_str().unwrap()[..10], &top["train_to"][..10]);
        // ... and their test is a backtest of the window after it, warmed
        // up on the training window: what host run --warm-up-from does.
        let (fast, slow) = (top["analysis.fast"].as_str(), top["analysis.slow"].as_str());
        let test = &w["test"];
        let run = backtest(
            dir.path(),
            fast,
            slow,
            &[
                "--from",
                &test["from"].as_str().unwrap()[..10],
                "--to",
                &test["to"].as_str().unwrap()[..10],
                "--warm-up-from",
                &w["train"]["from"].as_str().unwrap()[..10],
            ],
        );
        let summary = read_summary(&run);
        assert_eq!(w["out_of_sample"]["metrics"], summary["metrics"]["portfolio"], "window {index}");
        assert_eq!(top["test_final_equity"], summary["final_equity"].as_str().unwrap());
        stitched *= top["test_final_equity"].parse::<f64>().unwrap() / 10_000.0;
    }
    // The stitched out-of-sample curve compounds the test windows.
    let oos = best["walk_forward"]["out_of_sample"]["total_return_pct"].as_f64().unwrap();
    assert!(
        (oos - (stitched - 1.0) * 100.0).abs() < 1e-3,
        "stitched {oos}% against {}%",
        (stitched - 1.0) * 100.0
    );

    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("id=\"oos-equity\"") && page.contains("id=\"windows\""));
    assert!(
        page.contains("in sample,") && page.contains("out of sample."),
        "in-sample against out-of-sample"
    );
    assert!(page.contains("27 parameter sets were backtested"), "the multiple-testing note");
}

/// The host's trials.jsonl: finished trials, one per line.
fn finished(out: &Path) -> usize {
    std::fs::read_to_string(out.join("trials.jsonl")).map_or(0, |t| t.lines().count())
}

fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_interrupted_study_resumes_and_skips_its_finished_trials() {
    let dir = tempdir();
    // 295 trials of a year of hourly bars: long enough to interrupt on one thread.
    let config = study_config(
        dir.path(),
        "\n[optimize]\n[optimize.space.analysis]\nfast = { from = 2, to = 60, step = 1 }\nslow = [70, 100, 130, 160, 200]\n",
    );
    let range = ("2021-01-01", "2021-12-31");
    let whole = dir.path().join("whole");
    run_ok(&optimize_args(&config, &whole, "BTC-USD-1h", range.0, range.1));
    let total = finished(&whole);
    assert_eq!(total, 295);

    let out = dir.path().join("interrupted");
    let args = optimize_args(&config, &out, "BTC-USD-1h", range.0, range.1);
    let start = || {
        Command::new(host_bin())
            .args(&args)
            .args(["--threads", "1"])
            .current_dir(repo())
            .env_remove("STRATA_CONFIG")
            .env_remove("STRATA_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Ctrl-C: the trials running finish, the outputs are written, exit 130.
    let child = start();
    wait_until(Duration::from_secs(60), "10 finished trials", || finished(&out) >= 10);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let stopped = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("run the same command again to finish it"), "{stderr}");
    let first = finished(&out);
    assert!(first < total, "the study finished before the interruption");
    assert_eq!(read_csv(&out.join("trials.csv")).len(), first);
    assert_eq!(json(&out.join("best.json"))["complete"], false);
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("id=\"incomplete\""));

    // Killed outright: no chance to write anything but the trials so far.
    let mut child = start();
    wait_until(Duration::from_secs(60), "10 more trials", || finished(&out) >= first + 10);
    child.kill().unwrap();
    child.wait().unwrap();
    let second = finished(&out);
    assert!(second < total, "the study finished before it was killed");

    // The same command finishes the study, running only what is missing.
    let ran = run_ok(&args);
    assert!(ran.stdout.contains(&format!("{} now, {second} resumed", total - second)), "{}", ran.stdout);
    assert_eq!(finished(&out), total);
    assert_same_outputs(&whole, &out);
}

#[test]
fn bad_input_is_refused_with_the_file_line_and_parameter_at_fault() {
    let dir = tempdir();
    let config = study_config(
        dir.path(),
        r#"
[optimize]
sampler = "random"
constraints = ["analysis.fast < analysis.slwo"]
[optimize.space.analysis]
fsat = [5, 10]
slow = { from = 60, to = 20, step = 10 }
[optimize.space.sizing]
fraction = { normal = [0.5, 0.1] }
"#,
    );
    let config_text = std::fs::read_to_string(&config).unwrap();
    let line = |needle: &str| config_text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let out = dir.path().join("out");
    let args = optimize_args(&config, &out, "BTC-USD-1d", FROM, TO);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host(&args).assert_fails_with(&[
        &format!("config file {} has 5 problem(s)", config.display()),
        "optimize.trials: sampler = \"random\" needs a trial budget",
        &format!(
            "optimize.space.analysis.fsat (line {}): sma 0.1.0 has no setting `fsat` (it accepts: fast, slow)",
            line("fsat")
        ),
        &format!("optimize.space.analysis.slow (line {}): the range is empty: from (60) is greater than to (20)", line("slow")),
        &format!("optimize.space.sizing.fraction (line {}): unknown shape {{ normal }}", line("fraction")),
        &format!(
            "optimize.constraints (line {}): `analysis.fast < analysis.slwo`: `analysis.slwo` is unknown",
            line("constraints")
        ),
    ]);
    assert!(!out.exists(), "nothing runs, nothing is written");

    // A grid cannot enumerate a distribution; TPE cannot be sharded.
    let config = study_config(
        dir.path(),
        "\n[optimize]\n[optimize.space.sizing]\nfraction = { uniform = [0.5, 1] }\n",
    );
    let args = optimize_args(&config, &out, "BTC-USD-1d", FROM, TO);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host(&args).assert_fails_with(&[
        "optimize.space.sizing.fraction: a distribution cannot be enumerated by the grid sampler",
    ]);
    let config = study_config(dir.path(), TPE);
    let mut tpe_args = optimize_args(&config, &out, "BTC-USD-1d", FROM, TO);
    tpe_args.extend(["--shard".into(), "0/2".into()]);
    let tpe_args: Vec<&str> = tpe_args.iter().map(String::as_str).collect();
    host(&tpe_args).assert_fails_with(&[
        "optimize.sampler: tpe chooses each round from the results of the rounds before",
    ]);

    // Shard specs, and flags that belong to optimize mode.
    let config = study_config(dir.path(), GRID);
    let c = config.to_str().unwrap();
    for (spec, want) in [
        ("3/2", "shard 3 does not exist when there are 2 (they are 0 to 1)"),
        ("1/0", "the number of shards must be at least 1"),
        ("half", "expected I/N"),
    ] {
        host(&["optimize", "--config", c, "--symbols", "BTC-USD-1d", "--shard", spec])
            .assert_fails_with(&[want]);
    }
    host(&["run", "--config", c, "--symbols", "BTC-USD-1d", "--shard", "0/2"])
        .assert_fails_with(&["--shard splits an optimisation's trials: it needs --mode optimize"]);
    host(&[
        "optimize",
        "--config",
        repo().join("config/default.toml").to_str().unwrap(),
        "--symbols",
        "BTC-USD-1d",
    ])
    .assert_fails_with(&["has no [optimize] section"]);

    // A folder holding another study is not resumed with this one.
    let ran = run_ok(&optimize_args(&config, &out, "BTC-USD-1d", FROM, TO));
    assert!(ran.ok());
    let args = optimize_args(&config, &out, "BTC-USD-1d", FROM, "2022-12-31");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    host(&args).assert_fails_with(&["holds another study (its to differs)"]);
}

#[test]
fn run_mode_optimize_is_host_optimize() {
    let dir = tempdir();
    let config = study_config(dir.path(), GRID);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run_ok(&optimize_args(&config, &a, "BTC-USD-1d", FROM, TO));
    let mut args = optimize_args(&config, &b, "BTC-USD-1d", FROM, TO);
    args[0] = "run".into();
    args.extend(["--mode".into(), "optimize".into()]);
    run_ok(&args);
    assert_same_outputs(&a, &b);
}
