//! The command line itself: modes, help, and the shipped configs.

use strata_tests::*;

#[test]
fn live_mode_without_a_key_says_what_is_missing_and_writes_nothing() {
    // tests/all/live.rs trades against a local exchange; here, the shipped
    // config names no key, so nothing may start or be written.
    let dir = tempdir();
    let out = dir.path().join("live-run");
    host(&["run", "--mode", "live", "--symbols", "BTC-USD", "--out", out.to_str().unwrap()])
        .assert_fails_with(&["live mode needs the venue's API key", "key-file", "key-env"]);
    assert!(!out.exists() && !out.with_extension("db").exists(), "a refused session left files behind");
}

#[test]
fn every_shipped_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let ran = host(&["config", "check", path.to_str().unwrap()]);
            assert!(ran.ok(), "{}: {ran:#?}", path.display());
            assert!(ran.stdout.contains("execution"), "{}", ran.stdout);
            checked += 1;
        }
    }
    assert!(checked >= 2, "config/ holds default.toml and synthetic.toml at least");
}

#[test]
fn help_lists_the_commands() {
    let ran = host(&["--help"]);
    assert!(ran.ok());
    for command in ["run", "data", "config"] {
        assert!(ran.stdout.contains(command), "{}", ran.stdout);
    }
}
