//! Every kind of bad input gets a clear error naming what is at fault, a
//! non-zero exit, and no panic.

use std::path::PathBuf;

use strata_tests::*;

const GOOD: &str = "timestamp,open,high,low,close,volume
2024-01-01T00:00:00Z,10,11,9,10,5
2024-01-02T00:00:00Z,10,11,9,10.5,5
2024-01-03T00:00:00Z,10.5,11,9,10,5
2024-01-04T00:00:00Z,10,11,9,10,5
";

/// A temp dir with `data/TEST.csv` holding `csv` and the reference config.
struct Setup {
    dir: tempfile::TempDir,
    config: ConfigFile,
}

impl Setup {
    fn new(csv: &str) -> Self {
        let dir = tempdir();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("TEST.csv"), csv).unwrap();
        let config = ConfigFile::reference(&data);
        Setup { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, extra: &[&str]) -> Ran {
        let config = self.config.write(self.dir.path());
        let out = self.path("run");
        let mut args = vec![
            "run",
            "--symbols",
            "TEST",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        host(&args)
    }
}

fn csv_with(line_4: &str) -> String {
    let mut lines: Vec<&str> = GOOD.lines().collect();
    lines[3] = line_4;
    lines.join("\n") + "\n"
}

#[test]
fn a_malformed_row_names_the_file_line_and_field_and_keeps_the_evidence() {
    let s = Setup::new(&csv_with("2024-01-03T00:00:00Z,10.5,11,9,ten,5"));
    let ran = s.run(&[]);
    ran.assert_fails_with(&[
        "/data/TEST.csv line 4",
        "field `close`: `ten` is not a number",
        "csv-data 0.1.0",
    ]);
    // The run had started: its files are there, and the summary says why it stopped.
    let summary = read_summary(&s.path("run"));
    assert_eq!(summary["status"], "failed");
    assert!(summary["error"].as_str().unwrap().contains("line 4"));
    assert!(s.path("run/equity.csv").exists());
}

#[test]
fn unsorted_rows_are_refused_with_the_line() {
    let s = Setup::new(&csv_with("2023-12-31T00:00:00Z,10.5,11,9,10,5"));
    s.run(&[]).assert_fails_with(&[
        "TEST.csv line 4",
        "timestamp 2023-12-31T00:00:00Z is before the previous row's 2024-01-02T00:00:00Z",
    ]);
}

#[test]
fn duplicate_timestamps_are_refused_with_the_line() {
    let s = Setup::new(&csv_with("2024-01-02T00:00:00Z,10.5,11,9,10,5"));
    s.run(&[]).assert_fails_with(&["TEST.csv line 4", "repeats the previous row's"]);
}

#[test]
fn a_missing_data_file_lists_what_is_available() {
    let s = Setup::new(GOOD);
    let config = s.config.write(s.dir.path());
    let ran = host(&["run", "--symbols", "ETH-USD", "--config", config.to_str().unwrap()]);
    ran.assert_fails_with(&["no data file /data/ETH-USD.csv for ETH-USD; available: TEST", "/data is "]);
}

#[test]
fn a_missing_plugin_names_the_config_key_and_path() {
    let s = Setup {
        config: Setup::new(GOOD).config.slice("strategy", |c| c.plugin = "/nowhere/strategy.wasm".into()),
        ..Setup::new(GOOD)
    };
    s.run(&[]).assert_fails_with(&["slices.strategy.plugin: /nowhere/strategy.wasm does not exist"]);
}

fn with_plugin_file(kind: &'static str, bytes: &[u8]) -> Setup {
    let mut s = Setup::new(GOOD);
    let file = s.path("plugin.wasm");
    std::fs::write(&file, bytes).unwrap();
    s.config = s.config.slice(kind, |c| c.plugin = file);
    s
}

#[test]
fn a_file_that_is_not_webassembly_is_refused() {
    let s = with_plugin_file("regime", b"#!/bin/sh\necho not wasm\n");
    s.run(&[]).assert_fails_with(&["slices.regime.plugin", "plugin.wasm is not a WebAssembly file"]);
}

#[test]
fn a_core_module_is_refused_with_how_to_make_a_component() {
    // The smallest valid core module: magic and version 1.
    let s = with_plugin_file("regime", b"\0asm\x01\0\0\0");
    s.run(&[]).assert_fails_with(&["is a core WebAssembly module, not a component", "wasm32-wasip2"]);
}

#[test]
fn a_component_of_the_wrong_kind_is_refused_naming_both_kinds() {
    let sma = std::fs::read(component("sma")).unwrap();
    let s = with_plugin_file("strategy", &sma);
    s.run(&[]).assert_fails_with(&[
        "slices.strategy.plugin",
        "is an analysis slice (it exports strata:plugin/analysis@0.1.1), but this slot needs a strategy slice",
    ]);
}

#[test]
fn an_incompatible_interface_version_names_both_versions() {
    let sma = std::fs::read(component("sma")).unwrap();
    let s = with_plugin_file("analysis", &with_interface_version(&sma, "0.1.1", "0.9.0"));
    s.run(&[]).assert_fails_with(&[
        "built against interface strata:plugin@0.9.0",
        "this host implements strata:plugin@0.1.1",
    ]);
}

#[test]
fn invalid_slice_config_shows_the_plugins_own_message() {
    let mut s = Setup::new(GOOD);
    s.config = s.config.slice("analysis", |c| c.config = "fast = 30, slow = 10".into());
    s.run(&[]).assert_fails_with(&[
        "analysis slice sma 0.1.0: rejected its config: `fast` (30) must be less than `slow` (10)",
    ]);
}

#[test]
fn unknown_and_mistyped_settings_are_all_reported() {
    let mut s = Setup::new(GOOD);
    s.config = s.config.slice("analysis", |c| c.config = "fsat = 5, slow = \"thirty\"".into());
    s.run(&[]).assert_fails_with(&[
        "slices.analysis.config.fsat: sma 0.1.0 has no setting `fsat` (it accepts: fast, slow)",
        "slices.analysis.config.slow: must be an integer (default 30), got \"thirty\"",
    ]);
}

#[test]
fn an_unknown_key_in_the_config_file_is_refused_with_its_line() {
    let s = Setup::new(GOOD);
    let path = s.path("typo.toml");
    let text = s.config.to_toml().replace("[run]\n", "[run]\nstart-csah = 5\n");
    std::fs::write(&path, text).unwrap();
    let ran = host(&["run", "--symbols", "TEST", "--config", path.to_str().unwrap()]);
    ran.assert_fails_with(&["typo.toml", "line 2", "unknown field `start-csah`"]);
}

#[test]
fn from_after_to_is_refused() {
    Setup::new(GOOD)
        .run(&["--from", "2024-02-01", "--to", "2024-01-01"])
        .assert_fails_with(&["--from 2024-02-01 is after --to 2024-01-01"]);
}

#[test]
fn a_malformed_date_is_refused() {
    Setup::new(GOOD)
        .run(&["--from", "2024-1-1"])
        .assert_fails_with(&["--from: `2024-1-1` is not a date in the form YYYY-MM-DD"]);
}

#[test]
fn an_empty_range_is_refused_naming_the_symbol() {
    Setup::new(GOOD)
        .run(&["--from", "2030-01-01", "--to", "2030-12-31"])
        .assert_fails_with(&["no bars for TEST in the requested range (2030-01-01 to 2030-12-31)"]);
}

#[test]
fn a_symbol_that_could_escape_the_data_folder_is_refused() {
    let s = Setup::new(GOOD);
    let config = s.config.write(s.dir.path());
    host(&["run", "--symbols", "../secrets", "--config", config.to_str().unwrap()])
        .assert_fails_with(&["`../secrets` is not a valid symbol"]);
}
