//! Fuzzing the config loader with proptest: a valid run config with
//! arbitrary TOML values put in its keys (huge and negative integers,
//! floats for integers, strings for numbers, 1e28 and 5e-324, NaN, nested
//! tables, unknown keys, empty strings, NUL in paths), and broken text.
//! [`LoadedConfig::read`] and [`LoadedConfig::validate`] must not panic;
//! a refusal names the key or the line, in a short message; and what they
//! accept, the run can use (a deadline it can add to a clock, an interval it
//! can sleep): a value that passes validation and then panics the run is a
//! missing check here.
//!
//! Seeded, so CI sees the same cases on every run. `PROPTEST_CASES` sets the
//! number of cases, `PROPTEST_RNG_SEED` another seed, for a longer hunt:
//! `PROPTEST_CASES=50000 cargo test --release -p host config_fuzz`.
//! An input found wrong this way is kept as a named test in `regressions`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, contextualize_config};

use crate::config::LoadedConfig;
use crate::model::SliceKind;

/// The seed CI runs with; any fixed value would do.
const SEED: u64 = 0x434f_4e46_4947;

fn fuzz_config(cases: u32) -> ProptestConfig {
    contextualize_config(ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// A refusal is a few lines per problem, whatever the file held: every key
/// set here at once, each quoted in a short excerpt, stays under this.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Every key of a run config, as a dotted path (`"slices.data.plugin"`),
/// and a few that do not exist.
const KEYS: &[&str] = &[
    "run.start-cash",
    "run.seed",
    "run.batch-size",
    "run.threads",
    "faults.policy",
    "faults.cooldown-bars",
    "faults.flatten",
    "faults.liquidation-fee-bps",
    "faults.max-faults-per-symbol",
    "risk.max-position-fraction",
    "risk.max-gross-exposure",
    "risk.max-daily-loss",
    "risk.max-drawdown",
    "risk.max-order-notional",
    "risk.max-orders-per-day",
    "risk.max-adjustments-per-position",
    "shorting.enabled",
    "shorting.borrow-bps-per-year",
    "paper.http-port",
    "paper.min-check-interval-s",
    "paper.max-check-interval-s",
    "paper.quiet-volatility",
    "paper.granularity-s",
    "paper.history-bars",
    "paper.coinbase-url",
    "optimize.sampler",
    "optimize.trials",
    "optimize.seed",
    "optimize.objective",
    "optimize.max-drawdown",
    "optimize.min-trades",
    "optimize.constraints",
    "optimize.heatmap",
    "optimize.batch",
    "optimize.startup-trials",
    "optimize.space.analysis.fast",
    "optimize.walk-forward.train-days",
    "optimize.walk-forward.test-days",
    "optimize.walk-forward.anchored",
    "slices.data.plugin",
    "slices.data.config.dir",
    "slices.data.grants.read-dirs./data",
    "slices.analysis.config.fast",
    "slices.analysis.limits.deadline-ms",
    "slices.analysis.limits.memory-mib",
    "slices.analysis.limits.budget-ms",
    "slices.execution.limits",
    "slices.sizing",
    "run",
    "bogus",
    "run.bogus",
    "slices.bogus",
    "slices.strategy.limits.bogus",
];

/// TOML values of every type, at the edges of what each key's type holds.
fn value() -> impl Strategy<Value = toml::Value> {
    use toml::Value::*;
    let texts = prop::sample::select(vec![
        "",
        " ",
        "10000.50",
        "1e28",
        "79228162514264337593543950336",
        "-0",
        "NaN",
        "abc",
        "a\0b",
        "/nul\0/x",
        "halt",
        "skip-symbol",
        "safe-mode",
        "grid",
        "random",
        "tpe",
        "sharpe",
        "analysis.fast < analysis.slow",
        "http://127.0.0.1:1",
        "ftp://x",
        "../../../../etc",
        "/",
        "/data",
        "\u{1b}[2J\nerror: forged",
    ]);
    let leaf = prop_oneof![
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            60,
            3600,
            65_535,
            65_536,
            1 << 20,
            (1 << 20) + 1,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Integer),
        any::<i64>().prop_map(Integer),
        prop::sample::select(vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            100.0,
            1e28,
            8e28,
            1e300,
            -1e300,
            5e-324,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ])
        .prop_map(Float),
        any::<f64>().prop_map(Float),
        texts.prop_map(|t| String(t.to_owned())),
        "\\PC{0,20}".prop_map(String),
        (1usize..20_000).prop_map(|n| String("x".repeat(n))),
        any::<bool>().prop_map(Boolean),
        Just(Datetime("1979-05-27T07:32:00Z".parse().unwrap())),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Array),
            prop::collection::btree_map("[a-z-]{1,6}", inner, 0..3)
                .prop_map(|m| Table(m.into_iter().collect())),
        ]
    })
}

/// A complete, valid config whose components and data folder exist in `dir`.
fn base_config(dir: &Path) -> toml::Table {
    let plugin = dir.join("slice.wasm");
    let text = SliceKind::ALL
        .iter()
        .map(|kind| format!("[slices.{kind}]\nplugin = {:?}\n", plugin.to_str().unwrap()))
        .collect::<String>();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    let data = dir.to_str().unwrap();
    let extra: toml::Table = toml::from_str(&format!(
        r#"
        [run]
        start-cash = 10000
        [faults]
        policy = "skip-symbol"
        [paper]
        http-port = 0
        [optimize]
        sampler = "grid"
        [optimize.space.analysis]
        fast = [5, 10]
        [optimize.walk-forward]
        train-days = 365
        test-days = 90
        [slices.data.config]
        dir = "/data"
        [slices.data.grants.read-dirs]
        "/data" = {data:?}
        [slices.analysis.limits]
        deadline-ms = 1000
        "#
    ))
    .unwrap();
    merge(&mut table, extra);
    table
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Puts `value` at a dotted `path`, making (or replacing) tables on the way.
fn set(table: &mut toml::Table, path: &str, value: toml::Value) {
    let (head, rest) = match path.split_once('.') {
        // A guest path such as `/data` is one key, dots or not.
        Some((head, rest)) if !head.starts_with('/') => (head, Some(rest)),
        _ => (path, None),
    };
    match rest {
        None => {
            table.insert(head.to_owned(), value);
        }
        Some(rest) => {
            let entry = table.entry(head).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set(inner, rest, value);
            }
        }
    }
}

/// A folder of its own per target, holding a stand-in component and the data folder.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-config-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("slice.wasm"), b"\0asm").unwrap();
    dir
}

/// Reads and validates `text` as the file `dir/run.toml`: the message of a
/// refusal, or the config.
fn load(dir: &Path, text: &str) -> Result<LoadedConfig, String> {
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    let config = LoadedConfig::read(&path).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// What the run does with an accepted config's values, without a panic.
fn check_usable(config: &LoadedConfig) -> Result<(), TestCaseError> {
    let now = Instant::now();
    for kind in SliceKind::ALL {
        let limits = config.config.slices.get(kind).limits;
        // Each call's deadline is a clock reading plus the deadline (runtime/instance.rs).
        let deadline = Duration::from_millis(limits.deadline_ms);
        prop_assert!(
            now.checked_add(deadline).is_some(),
            "slices.{kind}.limits.deadline-ms = {}",
            limits.deadline_ms
        );
    }
    let paper = &config.config.paper;
    for (key, seconds) in [
        ("min-check-interval-s", paper.min_check_interval_s),
        ("max-check-interval-s", paper.max_check_interval_s),
    ] {
        // The polling feed sleeps this long (paper/coinbase.rs).
        let wait = Duration::try_from_secs_f64(seconds);
        prop_assert!(wait.is_ok_and(|w| now.checked_add(w).is_some()), "paper.{key} = {seconds}");
    }
    // Safe mode's cool-down ends this many timestamps after the fault (orchestrator/faults.rs).
    let cooldown = config.config.faults.cooldown_bars;
    prop_assert!(cooldown.checked_add(u64::from(u32::MAX)).is_some(), "faults.cooldown-bars = {cooldown}");
    Ok(())
}

/// The refusal names one of the keys set, or the line at fault, in a short printable message.
fn check_refusal(message: &str, keys: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{} bytes: {}",
        message.len(),
        crate::excerpt::excerpt(message)
    );
    prop_assert!(
        !message.chars().any(|c| c.is_control() && c != '\n'),
        "a control character: {}",
        crate::excerpt::excerpt(message)
    );
    let named = message.contains("line ")
        || keys.iter().any(|k| message.contains(k.rsplit('.').next().unwrap_or(*k)));
    prop_assert!(named, "names neither a key of {keys:?} nor a line: {message}");
    Ok(())
}

proptest! {
    #![proptest_config(fuzz_config(1500))]

    /// Arbitrary values in one to four keys of a valid config.
    #[test]
    fn any_value_in_any_key_is_refused_by_name_or_usable(
        edits in prop::collection::vec((prop::sample::select(KEYS), value()), 1..5)
    ) {
        let dir = folder("values");
        let mut table = base_config(&dir);
        for (key, value) in &edits {
            set(&mut table, key, value.clone());
        }
        // A few shapes (a table in a list of numbers) have no TOML text.
        let Ok(text) = toml::to_string(&table) else { return Ok(()) };
        let keys: Vec<&str> = edits.iter().map(|(k, _)| *k).collect();
        match load(&dir, &text) {
            Ok(config) => check_usable(&config)?,
            Err(message) => check_refusal(&message, &keys)?,
        }
    }

    /// A valid config's text with bytes overwritten and lines repeated or cut.
    #[test]
    fn broken_text_is_refused_with_its_line(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        long_line in prop::option::weighted(0.2, 1usize..200_000),
    ) {
        let dir = folder("text");
        let mut bytes = toml::to_string(&base_config(&dir)).unwrap().into_bytes();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Some(n) = long_line {
            bytes.extend(format!("\nbogus = \"{}", "y".repeat(n)).bytes());
        }
        // toml reads text: bytes that are not UTF-8 stop at the read, with the file's name.
        let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
        match load(&dir, &text) {
            Ok(config) => check_usable(&config)?,
            Err(message) => check_refusal(&message, KEYS)?,
        }
    }
}

/// Inputs the fuzz targets found wrong, kept as they were found.
mod regressions {
    use super::*;

    /// The base config with `value` at `key`.
    fn with(dir: &Path, key: &str, value: toml::Value) -> String {
        let mut table = base_config(dir);
        set(&mut table, key, value);
        toml::to_string(&table).unwrap()
    }

    /// Each value passed validation and panicked the run: a deadline added
    /// to a clock reading overflows it, a sleep of 1e300 s is no duration,
    /// a cool-down of i64::MAX overflows its end.
    #[test]
    fn values_the_run_cannot_use_are_refused_naming_the_key() {
        use toml::Value::{Float, Integer};
        let dir = folder("regressions");
        let cases = [
            ("slices.analysis.limits.deadline-ms", Integer(i64::MAX)),
            ("paper.max-check-interval-s", Float(1e300)),
            ("paper.min-check-interval-s", Float(1e300)),
            ("faults.cooldown-bars", Integer(i64::MAX)),
        ];
        for (key, value) in cases {
            let message = load(&dir, &with(&dir, key, value)).unwrap_err();
            assert!(message.contains(&format!("{key} must be")), "{key}: {message}");
        }
        // The largest deadline still accepted is usable.
        let text = with(&dir, "slices.analysis.limits.deadline-ms", Integer(3_600_000));
        check_usable(&load(&dir, &text).unwrap()).unwrap();
    }

    /// toml's message quoted the whole offending line: 900 KB in (under
    /// the 1 MiB cap on a config file), 900 KB out.
    #[test]
    fn a_parse_error_in_a_long_line_is_quoted_short() {
        let dir = folder("regressions-long");
        let text = toml::to_string(&base_config(&dir)).unwrap();
        let seed_line = text[..text.find("[run]\n").unwrap()].lines().count() + 2;
        let text = text.replacen("[run]\n", &format!("[run]\nseed = \"{}\n", "z".repeat(900 << 10)), 1);
        let message = load(&dir, &text).unwrap_err();
        assert!(message.contains(&format!("line {seed_line}, column")), "{message}");
        assert!(message.contains("seed = \"zzz"), "{message}");
        assert!(message.len() < 1024, "{} bytes", message.len());
    }
}
