//! The command line itself: modes, help, and the shipped configs.

use strata_tests::*;

#[test]
fn modes_not_built_yet_say_so_and_exit_non_zero() {
    // `paper` exists since issue 7 (tests/all/paper.rs), `optimize` since
    // issue 8 (tests/all/optimize.rs).
    host(&["run", "--mode", "live", "--symbols", "BTC-USD"])
        .assert_fails_with(&["mode `live` is not available yet"]);
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
