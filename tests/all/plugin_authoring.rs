//! Writing slices as a third party, end to end through the real binary:
//! scaffold, test natively, build, check, inspect, swap into a backtest; a
//! slice in Python; the compiled-component cache; and a host of a later
//! compatible interface version running the unchanged components.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_tests::*;

/// Where scaffolded crates build. Shared between tests and runs, so the SDK's
/// dependencies compile once rather than once per crate.
fn authoring_target() -> PathBuf {
    repo().join("target/plugin-authoring")
}

fn ran(cmd: &mut Command) -> Ran {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `bin` (a host binary) in `cwd`, with its compiled-component cache in `cache`.
fn host_with(bin: &Path, cwd: &Path, cache: &Path, args: &[&str]) -> Ran {
    ran(Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("STRATA_CACHE_DIR", cache)
        .env("CARGO_TARGET_DIR", authoring_target())
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("RUST_LOG"))
}

fn ok(ran: Ran, what: &str) -> Ran {
    assert!(ran.ok(), "{what} failed: {ran:#?}");
    ran
}

fn sha256_of(path: &Path) -> String {
    let out = ok(ran(Command::new("sha256sum").arg(path)), "sha256sum");
    out.stdout.split_whitespace().next().unwrap().to_owned()
}

/// Scaffolds a crate of `kind` in `dir/name`, runs its native tests, builds
/// it with `host plugin build`, and returns the component's path.
fn scaffold_test_and_build(dir: &Path, cache: &Path, kind: &str, name: &str) -> PathBuf {
    let crate_dir = dir.join(name);
    let made = ok(host_with(&host_bin(), dir, cache, &["plugin", "new", "--kind", kind, name]), "plugin new");
    assert!(made.stdout.contains(&format!("Created {kind} slice `{name}`")), "{}", made.stdout);
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let sdk = repo().join("plugin-sdk").canonicalize().unwrap();
    assert!(manifest.contains(&format!("plugin-sdk = {{ path = \"{}\" }}", sdk.display())), "{manifest}");
    assert!(manifest.contains("\n[workspace]\n"), "its own workspace: {manifest}");
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    assert!(readme.contains("plugin build"), "the README gives the build command: {readme}");

    let tests = ok(
        ran(Command::new("cargo")
            .arg("test")
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", authoring_target())),
        &format!("cargo test of the scaffolded {kind} slice"),
    );
    // The example's own unit tests ran (the first result line is theirs).
    let passed: u32 = tests
        .stdout
        .split("test result: ok. ")
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 1, "no unit test ran:\n{}", tests.stdout);

    let built = ok(
        host_with(&host_bin(), dir, cache, &["plugin", "build", crate_dir.to_str().unwrap()]),
        "plugin build",
    );
    let wasm = PathBuf::from(built.stdout.trim());
    assert!(wasm.is_file(), "plugin build printed {wasm:?}, which is not a file");
    assert_eq!(wasm.file_name().unwrap().to_str().unwrap(), format!("{}.wasm", name.replace('-', "_")));
    wasm
}

/// Runs a backtest of BTC-USD-1d from the shared data; returns the run folder.
fn backtest(bin: &Path, dir: &Path, cache: &Path, out: &str, extra: &[&str]) -> PathBuf {
    let config = ConfigFile::reference(&shared_data()).write(dir);
    let run_dir = dir.join(out);
    let mut args = vec!["run", "--symbols", "BTC-USD-1d", "--config", config.to_str().unwrap()];
    args.extend(["--out", run_dir.to_str().unwrap()]);
    args.extend(extra);
    ok(host_with(bin, dir, cache, &args), "backtest");
    run_dir
}

#[test]
fn a_stranger_scaffolds_builds_checks_inspects_and_swaps_in_a_strategy_without_rebuilding_the_host() {
    let host_hash = sha256_of(&host_bin());
    let dir = tempdir();
    let cache = dir.path().join("cache");

    let wasm = scaffold_test_and_build(dir.path(), &cache, "strategy", "my-breakout");
    let wasm_arg = wasm.to_str().unwrap();

    let check = ok(
        host_with(&host_bin(), dir.path(), &cache, &["plugin", "check", wasm_arg, "--kind", "strategy"]),
        "check",
    );
    assert!(check.stdout.contains("ok: my-breakout 0.1.0 fits the strategy slot"), "{}", check.stdout);
    // Initialised with the default chain's analysis outputs.
    assert!(check.stdout.contains("features      sma_fast, sma_slow"), "{}", check.stdout);

    let inspect =
        ok(host_with(&host_bin(), dir.path(), &cache, &["plugin", "inspect", wasm_arg, "--json"]), "inspect");
    let info: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(info["name"], "my-breakout");
    assert_eq!(info["kind"], "strategy");
    assert_eq!(info["export"], "strata:plugin/strategy@0.1.1");
    assert_eq!(info["describe_interface_version"], "0.1.1");
    assert_eq!(info["params"][1]["key"], "margin");
    assert_eq!(info["params"][1]["default"], 0.02);
    assert_eq!(info["size_bytes"].as_u64().unwrap(), std::fs::metadata(&wasm).unwrap().len());
    assert_eq!(info["sha256"].as_str().unwrap(), sha256_of(&wasm));
    assert_eq!(info["cache"]["status"], "hit", "check compiled it already");

    let reference = backtest(&host_bin(), dir.path(), &cache, "reference", &[]);
    let swapped =
        backtest(&host_bin(), dir.path(), &cache, "swapped", &["--slice", &format!("strategy={wasm_arg}")]);
    let summary = read_summary(&swapped);
    assert_eq!(summary["slices"]["strategy"]["name"], "my-breakout");
    assert_eq!(summary["slices"]["analysis"]["name"], "sma", "the other slices stay as configured");
    let (before, after) = (read_trades(&reference), read_trades(&swapped));
    assert!(!after.is_empty(), "the breakout strategy trades on a decade of BTC");
    assert_ne!(before, after, "another strategy makes other trades");

    assert_eq!(sha256_of(&host_bin()), host_hash, "the host binary was not rebuilt");
}

#[test]
fn every_slice_kind_scaffolds_into_a_crate_that_tests_builds_and_passes_check() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    for kind in ["data", "analysis", "regime", "strategy", "sizing", "execution"] {
        let name = format!("my-{kind}");
        let wasm = scaffold_test_and_build(dir.path(), &cache, kind, &name);
        let check = ok(
            host_with(
                &host_bin(),
                dir.path(),
                &cache,
                &["plugin", "check", wasm.to_str().unwrap(), "--kind", kind],
            ),
            &format!("check of the {kind} scaffold"),
        );
        assert!(check.stdout.contains(&format!("ok: {name} 0.1.0 fits the {kind} slot")), "{}", check.stdout);
    }
}

#[test]
fn check_says_exactly_what_is_wrong() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let check = |args: &[&str]| {
        let mut all = vec!["plugin", "check"];
        all.extend(args);
        host_with(&host_bin(), dir.path(), &cache, &all)
    };
    let sma = component("sma");
    let sma = sma.to_str().unwrap();
    check(&[sma, "--kind", "strategy"]).assert_fails_with(&[
        "is an analysis slice (it exports strata:plugin/analysis@0.1.1), but this slot needs a strategy slice",
    ]);
    check(&[sma, "--kind", "analysis", "--config", "fsat=3"])
        .assert_fails_with(&["--config fsat: sma 0.1.0 has no setting `fsat` (it accepts: fast, slow)"]);
    check(&[sma, "--kind", "analysis", "--config", "fast=40"]).assert_fails_with(&[
        "init failed: analysis slice sma 0.1.0: rejected its config: `fast` (40) must be less than `slow` (30)",
    ]);
    check(&[component("sma-crossover").to_str().unwrap(), "--kind", "strategy", "--features", "rsi"])
        .assert_fails_with(&["init failed", "needs feature `sma_fast`", "(it produces: rsi)"]);

    let newer = dir.path().join("newer.wasm");
    std::fs::write(
        &newer,
        with_interface_version(&std::fs::read(component("sma")).unwrap(), "0.1.1", "0.2.0"),
    )
    .unwrap();
    check(&[newer.to_str().unwrap(), "--kind", "analysis"]).assert_fails_with(&[
        "built against interface strata:plugin@0.2.0",
        "this host implements strata:plugin@0.1.1",
    ]);

    let plain = dir.path().join("plain.wasm");
    std::fs::write(&plain, b"\0asm\x01\0\0\0").unwrap();
    check(&[plain.to_str().unwrap(), "--kind", "analysis"])
        .assert_fails_with(&["is a core WebAssembly module, not a component"]);

    let not_a_crate =
        host_with(&host_bin(), dir.path(), &cache, &["plugin", "build", dir.path().to_str().unwrap()]);
    not_a_crate.assert_fails_with(&["has no Cargo.toml"]);
    host_with(&host_bin(), dir.path(), &cache, &["plugin", "new", "--kind", "strategy", "My Strategy"])
        .assert_fails_with(&["`My Strategy` is not a usable plugin name"]);
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/file"), "").unwrap();
    host_with(&host_bin(), dir.path(), &cache, &["plugin", "new", "--kind", "sizing", "taken"])
        .assert_fails_with(&["already exists and is not empty"]);
    host_with(&host_bin(), dir.path(), &cache, &["run", "--symbols", "BTC-USD", "--slice", "strat=x.wasm"])
        .assert_fails_with(&["--slice strat=x.wasm: `strat` is not a slice kind"]);
}

#[test]
fn a_strategy_written_in_python_passes_check_and_runs_a_backtest() {
    let componentize_py = repo().join("target/python-venv/bin/componentize-py");
    assert!(
        componentize_py.is_file(),
        "{} is missing: ./scripts/test.sh installs it from PyPI",
        componentize_py.display()
    );
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let wasm = dir.path().join("py_dip_buyer.wasm");
    ok(
        ran(Command::new(repo().join("tests/fixtures/python-strategy/build.sh"))
            .arg(&wasm)
            .arg(&componentize_py)),
        "componentize-py",
    );
    let wasm_arg = wasm.to_str().unwrap();

    let check = ok(
        host_with(&host_bin(), dir.path(), &cache, &["plugin", "check", wasm_arg, "--kind", "strategy"]),
        "check",
    );
    assert!(check.stdout.contains("ok: py-dip-buyer 0.1.0 fits the strategy slot"), "{}", check.stdout);
    host_with(
        &host_bin(),
        dir.path(),
        &cache,
        &["plugin", "check", wasm_arg, "--kind", "strategy", "--config", "dip=2"],
    )
    .assert_fails_with(&["rejected its config: `dip` must be between 0 and 1, got 2"]);

    let inspect =
        ok(host_with(&host_bin(), dir.path(), &cache, &["plugin", "inspect", wasm_arg, "--json"]), "inspect");
    let info: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let imports: Vec<&str> =
        info["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    // componentize-py's runtime asks for files and sockets; it gets none of them.
    assert!(imports.iter().any(|i| i.starts_with("wasi:filesystem/")), "{imports:?}");
    assert!(imports.contains(&"strata:plugin/host@0.1.1"), "{imports:?}");

    // Swapped in through the config this time.
    let config = ConfigFile::reference(&shared_data())
        .slice("strategy", |s| s.plugin = wasm.clone())
        .write(dir.path());
    let run_dir = dir.path().join("python-run");
    let args = [
        "run",
        "--symbols",
        "BTC-USD-1d",
        "--config",
        config.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
    ];
    ok(host_with(&host_bin(), dir.path(), &cache, &args), "backtest with the Python strategy");
    let summary = read_summary(&run_dir);
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["slices"]["strategy"]["name"], "py-dip-buyer");
    let reference = backtest(&host_bin(), dir.path(), &cache, "reference", &[]);
    let trades = read_trades(&run_dir);
    assert!(trades.len() > 10, "buying dips over a decade of BTC trades often: {}", trades.len());
    assert_ne!(trades, read_trades(&reference));
}

fn slice_cache_statuses(run_dir: &Path) -> Vec<(String, String)> {
    let summary = read_summary(run_dir);
    summary["slices"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(kind, s)| (kind.clone(), s["cache"]["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn compile_ms(run_dir: &Path) -> f64 {
    read_summary(run_dir)["slices"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["compile_ms"].as_f64().unwrap())
        .sum()
}

#[test]
fn the_second_run_compiles_nothing_and_a_damaged_cache_entry_is_rebuilt() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let all = |status: &str| -> Vec<(String, String)> {
        ["analysis", "data", "execution", "regime", "sizing", "strategy"]
            .iter()
            .map(|k| (k.to_string(), status.to_owned()))
            .collect()
    };
    let cold = backtest(&host_bin(), dir.path(), &cache, "cold", &[]);
    assert_eq!(slice_cache_statuses(&cold), all("miss"));
    let warm = backtest(&host_bin(), dir.path(), &cache, "warm", &[]);
    assert_eq!(slice_cache_statuses(&warm), all("hit"), "the second run compiles nothing");
    let (cold_ms, warm_ms) = (compile_ms(&cold), compile_ms(&warm));
    eprintln!("six components: compiled in {cold_ms:.1} ms, loaded from the cache in {warm_ms:.1} ms");
    assert!(warm_ms < cold_ms, "loading compiled code ({warm_ms} ms) beats compiling ({cold_ms} ms)");

    // Damage the strategy's entry: one flipped byte at the end of the code.
    let entry = PathBuf::from(
        read_summary(&warm)["slices"]["strategy"]["cache"]["entry"]
            .as_str()
            .expect("the entry's path")
            .to_owned(),
    );
    let mut bytes = std::fs::read(&entry).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    std::fs::write(&entry, &bytes).unwrap();
    let repaired = backtest(&host_bin(), dir.path(), &cache, "repaired", &[]);
    let summary = read_summary(&repaired);
    assert_eq!(summary["slices"]["strategy"]["cache"]["status"], "rebuilt");
    assert_eq!(
        summary["slices"]["strategy"]["cache"]["note"],
        "the entry's checksum does not match its contents"
    );
    assert_eq!(summary["slices"]["analysis"]["cache"]["status"], "hit");
    assert_eq!(read_trades(&repaired), read_trades(&cold), "same trades from cached and fresh code");
    let again = backtest(&host_bin(), dir.path(), &cache, "again", &[]);
    assert_eq!(slice_cache_statuses(&again), all("hit"), "the rebuilt entry is trusted once verified");

    let inspect = ok(
        host_with(
            &host_bin(),
            dir.path(),
            &cache,
            &["plugin", "inspect", component("sma").to_str().unwrap()],
        ),
        "inspect",
    );
    assert!(inspect.stdout.contains("cache hit"), "{}", inspect.stdout);

    // STRATA_CACHE_DIR=off: compiled every time, nothing written.
    let off = dir.path().join("off-run");
    let config = ConfigFile::reference(&shared_data()).write(dir.path());
    let args = [
        "run",
        "--symbols",
        "BTC-USD-1d",
        "--config",
        config.to_str().unwrap(),
        "--out",
        off.to_str().unwrap(),
    ];
    ok(host_with(&host_bin(), dir.path(), Path::new("off"), &args), "run without a cache");
    assert_eq!(slice_cache_statuses(&off), all("off"));
}

fn host_next_interface() -> PathBuf {
    let bin = repo().join("target/release/host-next-interface");
    assert!(bin.is_file(), "{} is missing: ./scripts/test.sh builds it", bin.display());
    bin
}

#[test]
fn a_host_of_the_next_compatible_interface_runs_the_unchanged_components() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let next = host_next_interface();
    let today = backtest(&host_bin(), dir.path(), &cache, "today", &[]);
    let bumped = backtest(&next, dir.path(), &cache, "bumped", &[]);
    let summary = read_summary(&bumped);
    assert_eq!(summary["interface_version"], "0.1.2", "the bumped host implements 0.1.2");
    for kind in ["data", "analysis", "regime", "strategy", "sizing", "execution"] {
        assert_eq!(summary["slices"][kind]["built_against"], "0.1.1", "{kind}");
    }
    assert_eq!(read_trades(&bumped), read_trades(&today), "the same components make the same trades");

    // Components as built before 0.1.1 (their interface names say 0.1.0)
    // run on today's host with the same trades.
    let mut older = ConfigFile::reference(&shared_data());
    for (kind, slice) in older.slices.iter_mut() {
        let relabelled = dir.path().join(format!("{kind}-0.1.0.wasm"));
        std::fs::write(
            &relabelled,
            with_interface_version(&std::fs::read(&slice.plugin).unwrap(), "0.1.1", "0.1.0"),
        )
        .unwrap();
        slice.plugin = relabelled;
    }
    let older_config = dir.path().join("older.toml");
    std::fs::write(&older_config, older.to_toml()).unwrap();
    let older_run = dir.path().join("older");
    ok(
        host_with(
            &host_bin(),
            dir.path(),
            &cache,
            &[
                "run",
                "--symbols",
                "BTC-USD-1d",
                "--config",
                older_config.to_str().unwrap(),
                "--out",
                older_run.to_str().unwrap(),
            ],
        ),
        "0.1.0 components on today's host",
    );
    let summary = read_summary(&older_run);
    for kind in ["data", "analysis", "regime", "strategy", "sizing", "execution"] {
        assert_eq!(summary["slices"][kind]["built_against"], "0.1.0", "{kind}");
    }
    assert_eq!(read_trades(&older_run), read_trades(&today), "0.1.0 components make the same trades");

    // A component that claims 0.2.0 is refused by both, naming both versions.
    let newer = dir.path().join("newer.wasm");
    std::fs::write(
        &newer,
        with_interface_version(&std::fs::read(component("sma")).unwrap(), "0.1.1", "0.2.0"),
    )
    .unwrap();
    for (bin, host_version) in [(host_bin(), "0.1.1"), (next, "0.1.2")] {
        host_with(
            &bin,
            dir.path(),
            &cache,
            &["plugin", "check", newer.to_str().unwrap(), "--kind", "analysis"],
        )
        .assert_fails_with(&[
            "built against interface strata:plugin@0.2.0",
            &format!("this host implements strata:plugin@{host_version}"),
        ]);
    }
}

#[test]
fn concurrent_runs_share_one_cache_safely() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let strategy = component("sma-crossover");
    // Four hosts compile the same component into an empty cache at once.
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(host_bin())
                .args(["plugin", "inspect", "--json", strategy.to_str().unwrap()])
                .env("STRATA_CACHE_DIR", &cache)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let status = info["cache"]["status"].as_str().unwrap().to_owned();
        assert!(
            status == "miss" || status == "hit",
            "a racing writer never leaves a damaged entry: {status}"
        );
    }
    let after = ok(
        host_with(
            &host_bin(),
            dir.path(),
            &cache,
            &["plugin", "inspect", "--json", strategy.to_str().unwrap()],
        ),
        "inspect",
    );
    let info: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(info["cache"]["status"], "hit");
    // Every writer renamed its temporary file into place: none is left behind.
    let entry = PathBuf::from(info["cache"]["entry"].as_str().unwrap());
    let files: Vec<String> = std::fs::read_dir(entry.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![entry.file_name().unwrap().to_string_lossy().into_owned()]);
}
