//! Inputs built to hurt: a data line or a config line of megabytes, and
//! config values at the edges of their types. The run fails with a short
//! message naming the file and line (or key), keeps its evidence small, and
//! never panics.

use std::path::Path;

use strata_tests::*;

const HEADER: &str = "timestamp,open,high,low,close,volume";

/// 10 MB: far past csv-data's line limit (64 KiB), as a file without line
/// ends, or a header pasted from elsewhere, would be.
const HUGE: usize = 10 * 1024 * 1024;

/// An error about one line, printed with its causes: well under a screenful.
const MAX_STDERR: usize = 16 * 1024;

/// summary.json of a failed run of four bars: its facts and the error.
const MAX_SUMMARY: u64 = 64 * 1024;

/// Runs the reference chain on `data/TEST.csv` holding `csv`, in a fresh folder.
fn run_on(dir: &Path, csv: &[u8]) -> Ran {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("TEST.csv"), csv).unwrap();
    let config = ConfigFile::reference(&data).write(dir);
    let out = dir.join("run");
    host(&["run", "--symbols", "TEST", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

fn assert_short(ran: &Ran) {
    assert!(
        ran.stderr.len() < MAX_STDERR,
        "stderr is {} bytes: {}...",
        ran.stderr.len(),
        &ran.stderr[..2000]
    );
}

#[test]
fn a_csv_header_of_10_mb_fails_naming_the_file_and_line_in_a_short_message() {
    let dir = tempdir();
    let mut csv = "h".repeat(HUGE).into_bytes();
    csv.extend(format!("\n{HEADER}\n2024-01-01,1,2,0.5,1.5,10\n").bytes());
    let ran = run_on(dir.path(), &csv);
    ran.assert_fails_with(&["TEST.csv line 1: longer than 65536 bytes", "starts `hhhh", "csv-data 0.1.0"]);
    assert_short(&ran);
}

#[test]
fn a_csv_row_of_10_mb_fails_naming_the_file_and_line_and_keeps_a_small_summary() {
    let dir = tempdir();
    let good = "2024-01-01T00:00:00Z,10,11,9,10,5\n2024-01-02T00:00:00Z,10,11,9,10.5,5\n";
    let csv = format!("{HEADER}\n{good}2024-01-03T00:00:00Z,{}\n", "9".repeat(HUGE));
    let ran = run_on(dir.path(), csv.as_bytes());
    ran.assert_fails_with(&["TEST.csv line 4: longer than 65536 bytes", "starts `2024-01-03T00:00:00Z,999"]);
    assert_short(&ran);
    // The run had started: the summary says why it stopped, and is small.
    let summary_path = dir.path().join("run/summary.json");
    let size = std::fs::metadata(&summary_path).unwrap().len();
    assert!(size < MAX_SUMMARY, "summary.json is {size} bytes");
    let summary = read_summary(&dir.path().join("run"));
    assert_eq!(summary["status"], "failed");
    assert!(summary["error"].as_str().unwrap().contains("TEST.csv line 4"), "{summary}");
}

#[test]
fn a_bad_field_quotes_an_excerpt_not_the_whole_field() {
    let dir = tempdir();
    // 60,000 characters: under the line limit, so the field itself is refused.
    let csv = format!("{HEADER}\n2024-01-01T00:00:00Z,10,11,9,{},5\n", "x".repeat(60_000));
    let ran = run_on(dir.path(), csv.as_bytes());
    ran.assert_fails_with(&["TEST.csv line 2: field `close`: `xxxx", "... (60000 bytes)` is not a number"]);
    assert_short(&ran);
}

#[test]
fn a_config_line_of_900_kb_is_refused_naming_the_line_in_a_short_message() {
    let dir = tempdir();
    let config = ConfigFile::reference(&shared_data()).to_toml();
    // An unterminated string on line 2, just under the 1 MiB config cap:
    // toml quotes the whole line in its own message.
    let text = config.replacen("[run]\n", &format!("[run]\nseed = \"{}\n", "z".repeat(900 * 1024)), 1);
    let path = dir.path().join("huge.toml");
    std::fs::write(&path, text).unwrap();
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&["huge.toml", "line 2, column", "seed = \"zzzz", "bytes)"]);
    assert_short(&ran);

    // Past the cap the file is not parsed at all: its size is the message.
    let text = config.replacen("[run]\n", &format!("[run]\nseed = \"{}\n", "z".repeat(5 * 1024 * 1024)), 1);
    std::fs::write(&path, text).unwrap();
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&["huge.toml", "more than the 1048576 allowed"]);
    assert_short(&ran);
}

#[test]
fn a_config_key_of_900_kb_is_refused_naming_the_line_in_a_short_message() {
    let dir = tempdir();
    let config = ConfigFile::reference(&shared_data()).to_toml();
    let text = config.replacen("[run]\n", &format!("[run]\n{} = 1\n", "k".repeat(900 * 1024)), 1);
    let path = dir.path().join("key.toml");
    std::fs::write(&path, text).unwrap();
    let ran = host(&["config", "check", path.to_str().unwrap()]);
    ran.assert_fails_with(&["key.toml", "line 2:", "unknown field `kkkk", "bytes)`"]);
    assert_short(&ran);
}

/// Values the config accepted and the run then panicked on, found by the
/// config loader's fuzz target (host/src/config_fuzz.rs); each is now
/// refused by `config check`, naming its key.
#[test]
fn values_past_what_the_run_can_use_are_refused_by_config_check_naming_the_key() {
    let dir = tempdir();
    let cases: [(&str, &str, &str); 3] = [
        (
            "[slices.analysis]",
            "limits.deadline-ms = 9223372036854775807",
            "slices.analysis.limits.deadline-ms",
        ),
        ("[paper]", "max-check-interval-s = 1e300", "paper.max-check-interval-s"),
        ("[faults]", "cooldown-bars = 9223372036854775807", "faults.cooldown-bars"),
    ];
    for (section, line, key) in cases {
        let mut config = ConfigFile::reference(&shared_data()).to_toml();
        if config.contains(&format!("{section}\n")) {
            config = config.replacen(&format!("{section}\n"), &format!("{section}\n{line}\n"), 1);
        } else {
            config = format!("{section}\n{line}\n\n{config}");
        }
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, config).unwrap();
        host(&["config", "check", path.to_str().unwrap()]).assert_fails_with(&["edge.toml", key]);
    }
}
