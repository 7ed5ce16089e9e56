//! The scenarios, run end to end: the real `host` binary on generated
//! configs, one process per run (so peak memory is the run's own), and the
//! native floor in this process over the same configs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rust_decimal::Decimal;
use serde::Serialize;
use strata_host::clock::SimClock;
use strata_host::config::LoadedConfig;
use strata_host::model::{SliceKind, Symbol};
use strata_host::orchestrator::{Backtest, BacktestSettings, ChainSetup};
use strata_host::report::{RunWriter, Series, Tee};

use crate::native;
use crate::stats::{Spread, grouped};

/// What to run and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs of every measurement; figures are their median, min and max.
    pub runs: usize,
    /// Small sizes that check the benchmark works (its test), not the targets.
    pub quick: bool,
    /// Where configs, generated data, caches and run folders go.
    pub work: PathBuf,
    /// Where the figures are written as JSON.
    pub json: PathBuf,
}

pub const USAGE: &str = "usage: cargo bench -p strata-bench -- [--runs N] [--quick] [--json FILE]
  --runs N     runs of each measurement (default 5); figures are median [min - max]
  --quick      small sizes, to check the benchmark itself (seconds, not minutes)
  --json FILE  where to write the figures (default target/bench/chain.json)";

impl Options {
    /// Reads the benchmark's arguments (cargo's own `--bench` is ignored).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let target = repo().join("target");
        let mut options = Options {
            runs: 5,
            quick: false,
            work: target.join("bench"),
            json: target.join("bench/chain.json"),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => {}
                "--quick" => options.quick = true,
                "--runs" => {
                    let n = args.next().ok_or("--runs needs a number")?;
                    options.runs = n
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or(format!("--runs {n}: not a positive number"))?;
                }
                "--json" => options.json = args.next().ok_or("--json needs a file")?.into(),
                other => return Err(format!("unknown argument {other}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is inside the repository").to_owned()
}

/// The built host and components the benchmark runs.
struct Built {
    host: PathBuf,
    wasm: PathBuf,
}

const COMPONENTS: [&str; 7] = [
    "csv_data",
    "synthetic_data",
    "sma",
    "trend_vol_regime",
    "sma_crossover",
    "fixed_fraction",
    "sim_execution",
];

impl Built {
    fn locate() -> Result<Built, String> {
        let root = repo();
        let built =
            Built { host: root.join("target/release/host"), wasm: root.join("target/wasm32-wasip2/release") };
        let mut missing: Vec<PathBuf> =
            COMPONENTS.iter().map(|c| built.wasm.join(format!("{c}.wasm"))).collect();
        missing.push(built.host.clone());
        missing.retain(|p| !p.exists());
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            return Err(format!(
                "not built: {}; run ./scripts/bench.sh, which builds them first",
                list.join(", ")
            ));
        }
        Ok(built)
    }

    fn component(&self, name: &str) -> String {
        toml_string(&self.wasm.join(format!("{name}.wasm")).display().to_string())
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Where a scenario's bars come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The synthetic-data slice generates them.
    Generated,
    /// The csv-data slice reads them from a file (written beforehand by
    /// `host data export` from the generated series).
    Csv,
}

/// One end-to-end measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub source: Source,
    pub symbols: usize,
    pub bars_per_symbol: u64,
    /// Threads for the symbols' slices; 0 = one per core.
    pub threads: usize,
}

impl Scenario {
    /// S000, S001, ...: generated series differ by symbol; the CSV scenario
    /// reads S000's series written out as a file.
    fn symbols(&self) -> Vec<Symbol> {
        (0..self.symbols).map(|i| Symbol::new(&format!("S{i:03}")).expect("valid")).collect()
    }
}

const CSV_SYMBOL: &str = "S000";

/// The reference chain's config (`config/default.toml`'s settings) over
/// `source`, with absolute plugin paths.
fn config_text(built: &Built, source: Source, bars: u64, csv_dir: &Path) -> String {
    let data = match source {
        Source::Generated => format!(
            "plugin = {}\nconfig = {{ seed = 42, start = \"2019-01-01\", bars = {bars}, interval = \"1h\", start-price = 20000 }}",
            built.component("synthetic_data")
        ),
        Source::Csv => format!(
            "plugin = {}\nconfig = {{ dir = \"/data\" }}\ngrants.read-dirs = {{ \"/data\" = {} }}",
            built.component("csv_data"),
            toml_string(&csv_dir.display().to_string())
        ),
    };
    format!(
        r#"# Written by the benchmark (bench/src/suite.rs): the reference chain.
[run]
start-cash = 10000
seed = 42

# Every symbol trades as the single-symbol reference chain does, as in the
# benchmark's earlier figures: with many symbols that borrows, so the
# account is a margin one (no interest: the benchmark measures speed).
[account]
type = "margin"
max-leverage = 100

[risk]
max-position-fraction = 1
max-gross-exposure = 100
max-daily-loss = "none"

[slices.data]
{data}

[slices.analysis]
plugin = {}
config = {{ fast = 10, slow = 30 }}

[slices.regime]
plugin = {}

[slices.strategy]
plugin = {}

[slices.sizing]
plugin = {}
config = {{ fraction = 0.95 }}

[slices.execution]
plugin = {}
config = {{ fill = "next-open", taker-fee-bps = 10, maker-fee-bps = 10, slippage = "none" }}
"#,
        built.component("sma"),
        built.component("trend_vol_regime"),
        built.component("sma_crossover"),
        built.component("fixed_fraction"),
        built.component("sim_execution"),
    )
}

/// Time and boundary crossings of one slice kind, summed over symbols.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SliceTime {
    pub calls: u64,
    pub busy_ms: f64,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub bars: u64,
    /// The bar loop, reading the data included.
    pub run_ms: f64,
    /// Loading the components and instantiating every symbol's chain.
    pub load_ms: f64,
    pub instantiate_us_per_symbol: f64,
    /// The whole process, as a user waits for it (wasm runs only).
    pub wall_ms: Option<f64>,
    /// The process's peak resident memory (wasm runs only).
    pub peak_rss_mb: Option<f64>,
    pub trades: u64,
    pub final_equity: Decimal,
    pub slices: BTreeMap<String, SliceTime>,
}

impl Sample {
    fn bars_per_second(&self) -> f64 {
        self.bars as f64 / (self.run_ms / 1e3)
    }
}

/// Runs `host run` once; reads its summary and its peak memory.
fn run_host(built: &Built, config: &Path, scenario: &Scenario, work: &Path) -> Result<Sample, String> {
    let out = work.join("run");
    let _ = fs::remove_dir_all(&out);
    let symbols: Vec<String> = scenario.symbols().iter().map(|s| s.to_string()).collect();
    let mut command = Command::new(&built.host);
    command
        .args(["run", "--mode", "backtest", "--json", "--symbols", &symbols.join(",")])
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(&out)
        .args(["--threads", &scenario.threads.to_string()])
        .env("STRATA_CACHE_DIR", work.join("cache"));
    let (code, stdout, stderr, peak_rss_mb, wall_ms) = run_measured(command)?;
    let _ = fs::remove_dir_all(&out);
    if code != 0 {
        return Err(format!("host run exited with {code} for {}:\n{stderr}", scenario.name));
    }
    let summary: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| format!("host run printed no summary ({e}):\n{stderr}"))?;
    let timing = &summary["timing"];
    let number = |v: &serde_json::Value| v.as_f64().ok_or_else(|| format!("summary lacks a number: {v}"));
    let mut slices: BTreeMap<String, SliceTime> = BTreeMap::new();
    for h in summary["health"].as_array().ok_or("summary lacks health")? {
        let slice = slices.entry(h["slice"].as_str().unwrap_or("?").to_owned()).or_default();
        slice.calls += h["calls"].as_u64().unwrap_or(0);
        slice.busy_ms += h["busy_ms"].as_f64().unwrap_or(0.0);
    }
    Ok(Sample {
        bars: summary["bars"].as_u64().ok_or("summary lacks bars")?,
        run_ms: number(&timing["run_ms"])?,
        load_ms: number(&timing["load_ms"])?,
        instantiate_us_per_symbol: number(&timing["instantiate_us_per_symbol"])?,
        wall_ms: Some(wall_ms),
        peak_rss_mb: Some(peak_rss_mb),
        trades: summary["trade_count"].as_u64().ok_or("summary lacks trade_count")?,
        final_equity: summary["final_equity"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or("summary lacks final_equity")?,
        slices,
    })
}

/// Runs a command to the end: exit code, stdout, stderr, peak resident
/// memory in MiB (from the kernel's accounting of the child, `wait4`), and
/// wall time in ms.
fn run_measured(mut command: Command) -> Result<(i32, String, String, f64, f64), String> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    let _ = child.stdout.take().expect("piped").read_to_string(&mut stdout);
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, zero is a valid value; wait4 writes both
    // out-parameters for our own child, which std has not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    if reaped != pid {
        return Err(format!("cannot wait for {command:?}: {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let stderr = stderr_reader.join().unwrap_or_default();
    // Linux reports ru_maxrss in KiB.
    Ok((code, stdout, stderr, usage.ru_maxrss as f64 / 1024.0, wall_ms))
}

/// Runs the same chain compiled natively through the same host loop, in this
/// process, recording the same files.
fn run_native(config: &Path, scenario: &Scenario, work: &Path) -> Result<Sample, String> {
    let loaded = LoadedConfig::read(config).map_err(|e| e.to_string())?;
    let symbols = scenario.symbols();
    let started = Instant::now();
    let mut setups = Vec::with_capacity(symbols.len());
    for symbol in &symbols {
        let (slices, features) = native::reference_chain(&loaded.config, symbol)?;
        setups.push(ChainSetup {
            symbol: symbol.clone(),
            clock: SimClock::new(),
            slices,
            features,
            source: None,
        });
    }
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut settings = BacktestSettings::from_config(&loaded.config, None, None);
    settings.threads = scenario.threads;
    let out = work.join("native-run");
    let _ = fs::remove_dir_all(&out);
    let mut writer = RunWriter::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut series = Series::new(settings.start_cash, &symbols, 0.0);
    let mut backtest = Backtest::new(setups, settings, None);
    let run_started = Instant::now();
    backtest.run(&mut Tee(vec![&mut writer, &mut series])).map_err(|e| format!("native run: {e}"))?;
    let run_ms = run_started.elapsed().as_secs_f64() * 1e3;
    let mut slices: BTreeMap<String, SliceTime> = BTreeMap::new();
    for h in backtest.health() {
        let slice = slices.entry(h.slice.to_string()).or_default();
        slice.calls += h.calls;
        slice.busy_ms += h.busy_ms;
    }
    let sample = Sample {
        bars: backtest.stats().bars,
        run_ms,
        load_ms,
        instantiate_us_per_symbol: load_ms * 1e3 / symbols.len() as f64,
        wall_ms: None,
        peak_rss_mb: None,
        trades: backtest.ledger().round_trips().len() as u64,
        final_equity: backtest.ledger().equity(),
        slices,
    };
    drop(backtest);
    drop(writer);
    let _ = fs::remove_dir_all(&out);
    Ok(sample)
}

/// A scenario's runs, sandboxed and native.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    #[serde(flatten)]
    pub scenario: Scenario,
    pub bars: u64,
    pub wasm_bars_per_second: Spread,
    pub native_bars_per_second: Spread,
    /// Median wasm run time over median native run time.
    pub wasm_over_native: f64,
    pub wasm_run_ms: Spread,
    pub load_ms: Spread,
    pub instantiate_us_per_symbol: Spread,
    pub wall_ms: Spread,
    pub peak_rss_mb: Spread,
    pub trades: u64,
    pub final_equity: Decimal,
    /// The native chain made the same trades and ended with the same equity.
    pub native_agrees: bool,
    #[serde(skip)]
    wasm: Vec<Sample>,
    #[serde(skip)]
    native: Vec<Sample>,
}

fn spread(samples: &[Sample], f: impl Fn(&Sample) -> Option<f64>) -> Spread {
    Spread::of(samples.iter().filter_map(f)).unwrap_or(Spread {
        median: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
    })
}

impl ScenarioResult {
    fn new(scenario: Scenario, wasm: Vec<Sample>, native: Vec<Sample>) -> ScenarioResult {
        let first = &wasm[0];
        let native_agrees = native
            .iter()
            .chain(&wasm)
            .all(|s| (s.bars, s.trades, s.final_equity) == (first.bars, first.trades, first.final_equity));
        let wasm_run_ms = spread(&wasm, |s| Some(s.run_ms));
        let native_run_ms = spread(&native, |s| Some(s.run_ms));
        ScenarioResult {
            bars: first.bars,
            wasm_bars_per_second: spread(&wasm, |s| Some(s.bars_per_second())),
            native_bars_per_second: spread(&native, |s| Some(s.bars_per_second())),
            wasm_over_native: wasm_run_ms.median / native_run_ms.median,
            wasm_run_ms,
            load_ms: spread(&wasm, |s| Some(s.load_ms)),
            instantiate_us_per_symbol: spread(&wasm, |s| Some(s.instantiate_us_per_symbol)),
            wall_ms: spread(&wasm, |s| s.wall_ms),
            peak_rss_mb: spread(&wasm, |s| s.peak_rss_mb),
            trades: first.trades,
            final_equity: first.final_equity,
            native_agrees,
            scenario,
            wasm,
            native,
        }
    }
}

/// Where one bar's time goes, per slice, in the one-symbol scenario.
#[derive(Debug, Clone, Serialize)]
pub struct SliceRow {
    pub slice: String,
    pub calls_per_bar: f64,
    pub wasm_ns_per_bar: f64,
    pub wasm_ns_per_call: f64,
    pub native_ns_per_bar: f64,
    pub share_of_run_pct: f64,
}

fn slice_rows(result: &ScenarioResult) -> Vec<SliceRow> {
    let median_of = |samples: &[Sample], kind: &str, f: &dyn Fn(&Sample, SliceTime) -> f64| {
        Spread::of(samples.iter().map(|s| f(s, s.slices.get(kind).copied().unwrap_or_default())))
            .map_or(f64::NAN, |s| s.median)
    };
    let mut kinds: Vec<String> = SliceKind::ALL.iter().map(|k| k.to_string()).collect();
    kinds.push(HOST_LOOP.to_owned());
    kinds
        .iter()
        .map(|kind| {
            let ns_per_bar = |s: &Sample, t: SliceTime| {
                let busy = if kind == HOST_LOOP {
                    s.run_ms - s.slices.values().map(|t| t.busy_ms).sum::<f64>()
                } else {
                    t.busy_ms
                };
                busy * 1e6 / s.bars as f64
            };
            let wasm_ns_per_bar = median_of(&result.wasm, kind, &ns_per_bar);
            let run_ns_per_bar = result.wasm_run_ms.median * 1e6 / result.bars as f64;
            SliceRow {
                slice: kind.clone(),
                calls_per_bar: median_of(&result.wasm, kind, &|s, t| t.calls as f64 / s.bars as f64),
                wasm_ns_per_bar,
                wasm_ns_per_call: median_of(&result.wasm, kind, &|_, t| {
                    t.busy_ms * 1e6 / t.calls.max(1) as f64
                }),
                native_ns_per_bar: median_of(&result.native, kind, &ns_per_bar),
                share_of_run_pct: 100.0 * wasm_ns_per_bar / run_ns_per_bar,
            }
        })
        .collect()
}

/// The host's own work between slice calls: merging symbols in time order,
/// the risk gate, the ledger, the recorders.
const HOST_LOOP: &str = "host loop";

/// Loading the six default components and instantiating one symbol's chain.
#[derive(Debug, Clone, Serialize)]
pub struct StartUp {
    /// Compiling the components (empty cache) and instantiating.
    pub cold_load_ms: Spread,
    pub cold_process_ms: Spread,
    /// From the compiled cache.
    pub warm_load_ms: Spread,
    pub warm_process_ms: Spread,
}

fn start_up(built: &Built, options: &Options, config: &Path) -> Result<StartUp, String> {
    let scenario = Scenario {
        name: "start-up".into(),
        source: Source::Generated,
        symbols: 1,
        bars_per_symbol: 100,
        threads: 1,
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for run in 0..options.runs {
        eprintln!("  start-up: run {}/{}", run + 1, options.runs);
        let dir = options.work.join("start-up");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // The first run compiles into the empty cache; the second reads it.
        cold.push(run_host(built, config, &scenario, &dir)?);
        warm.push(run_host(built, config, &scenario, &dir)?);
    }
    Ok(StartUp {
        cold_load_ms: spread(&cold, |s| Some(s.load_ms)),
        cold_process_ms: spread(&cold, |s| s.wall_ms),
        warm_load_ms: spread(&warm, |s| Some(s.load_ms)),
        warm_process_ms: spread(&warm, |s| s.wall_ms),
    })
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub commit: String,
}

fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or_else(|| std::env::consts::ARCH.to_owned(), |s| s.trim().to_owned());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        commit,
    }
}

/// A goal of issue #6 and whether the figures meet it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub runs: usize,
    pub quick: bool,
    pub scenarios: Vec<ScenarioResult>,
    /// Per slice, in the first (one symbol, generated) scenario.
    pub slices: Vec<SliceRow>,
    pub start_up: StartUp,
    /// The 100-symbol scenario on every core over the same on one thread.
    pub speedup_all_cores: f64,
    pub targets: Vec<Target>,
}

impl Report {
    /// Whether the sandboxed and native chains agreed everywhere.
    pub fn agrees(&self) -> bool {
        self.scenarios.iter().all(|s| s.native_agrees)
    }
}

/// Runs every scenario and the start-up measurement.
pub fn run(options: &Options) -> Result<Report, String> {
    let built = Built::locate()?;
    let work = &options.work;
    fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let (one, many) = if options.quick { (20_000, 2_000) } else { (1_000_000, 100_000) };

    let config_for = |source: Source, bars: u64| -> Result<PathBuf, String> {
        let path = work.join(format!("{source:?}-{bars}.toml").to_lowercase());
        fs::write(&path, config_text(&built, source, bars, &work.join("data")))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };

    // The CSV scenario reads the generated series written out as a file.
    eprintln!("writing {one} bars to {}", work.join("data").display());
    let _ = fs::remove_dir_all(work.join("data"));
    let mut export = Command::new(&built.host);
    export.args(["data", "export", "--symbols", CSV_SYMBOL, "--out"]).arg(work.join("data"));
    export.arg("--config").arg(config_for(Source::Generated, one)?);
    let (code, _, stderr, _, _) = run_measured(export)?;
    if code != 0 {
        return Err(format!("host data export failed:\n{stderr}"));
    }

    let scenario = |name: String, source, symbols, bars, threads| Scenario {
        name,
        source,
        symbols,
        bars_per_symbol: bars,
        threads,
    };
    let scenarios = [
        scenario(format!("1 x {} generated", grouped(one as f64)), Source::Generated, 1, one, 1),
        scenario(format!("1 x {} from CSV", grouped(one as f64)), Source::Csv, 1, one, 1),
        scenario(format!("10 x {} generated", grouped(many as f64)), Source::Generated, 10, many, 0),
        scenario(
            format!("100 x {} generated, 1 thread", grouped(many as f64)),
            Source::Generated,
            100,
            many,
            1,
        ),
        scenario(
            format!("100 x {} generated, all cores", grouped(many as f64)),
            Source::Generated,
            100,
            many,
            0,
        ),
    ];

    // Compile every component into the cache, and read the CSV file once,
    // so that every measured run starts warm.
    let warm_up = config_for(Source::Generated, 100)?;
    run_host(&built, &warm_up, &scenario("warm-up".into(), Source::Generated, 1, 100, 1), work)?;
    let csv = config_for(Source::Csv, one)?;
    run_host(&built, &csv, &scenario("warm-up".into(), Source::Csv, 1, one, 1), work)?;

    let mut results = Vec::new();
    for scenario in scenarios {
        let config = config_for(scenario.source, scenario.bars_per_symbol)?;
        let (mut wasm, mut native) = (Vec::new(), Vec::new());
        for run in 0..options.runs {
            eprintln!("  {}: run {}/{}", scenario.name, run + 1, options.runs);
            // Alternating the two spreads any drift of the machine over both.
            wasm.push(run_host(&built, &config, &scenario, work)?);
            native.push(run_native(&config, &scenario, work)?);
        }
        results.push(ScenarioResult::new(scenario, wasm, native));
    }
    let start_up = start_up(&built, options, &warm_up)?;

    let slices = slice_rows(&results[0]);
    let speedup_all_cores = results[3].wasm_run_ms.median / results[4].wasm_run_ms.median;
    let targets = vec![
        Target {
            goal: "one symbol, one core, default chain: >= 1,000,000 bars/s".into(),
            measured: format!(
                "{} bars/s generated, {} from CSV",
                grouped(results[0].wasm_bars_per_second.median),
                grouped(results[1].wasm_bars_per_second.median)
            ),
            met: results[0].wasm_bars_per_second.median >= 1e6
                && results[1].wasm_bars_per_second.median >= 1e6,
        },
        Target {
            goal: "wasm chain within 10x of the native floor".into(),
            measured: format!("{:.1}x (one symbol, generated)", results[0].wasm_over_native),
            met: results[0].wasm_over_native <= 10.0,
        },
        Target {
            goal: "100 symbols: >= 1,000,000 bars/s in total".into(),
            measured: format!("{} bars/s", grouped(results[4].wasm_bars_per_second.median)),
            met: results[4].wasm_bars_per_second.median >= 1e6,
        },
        Target {
            goal: "100 symbols: peak memory under 500 MB".into(),
            measured: format!("{:.0} MiB", results[4].peak_rss_mb.max),
            met: results[4].peak_rss_mb.max * 1.048_576 < 500.0,
        },
        Target {
            goal: "warm start of the six components under 50 ms".into(),
            measured: format!("{:.1} ms", start_up.warm_load_ms.median),
            met: start_up.warm_load_ms.median < 50.0,
        },
        Target {
            goal: "instantiation under 100 us per symbol".into(),
            measured: format!("{:.0} us (100 symbols)", results[4].instantiate_us_per_symbol.median),
            met: results[4].instantiate_us_per_symbol.median < 100.0,
        },
    ];
    Ok(Report {
        machine: machine(),
        runs: options.runs,
        quick: options.quick,
        scenarios: results,
        slices,
        start_up,
        speedup_all_cores,
        targets,
    })
}

/// The report as a person reads it.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "\nStrata benchmark: {} cores ({}), {:.0} GiB, commit {}; {} runs each, median [min - max]{}",
        m.cores,
        m.cpu,
        m.memory_gib,
        m.commit,
        report.runs,
        if report.quick { "; QUICK sizes, not the targets' scale" } else { "" }
    );
    let _ = writeln!(
        out,
        "\nEnd to end, default six-slice chain: bars per second over the bar loop, reading the data included"
    );
    let _ = writeln!(
        out,
        "{:<38} {:>11} {:>25} {:>11} {:>6} {:>8} {:>9} {:>8}",
        "scenario", "wasm", "[min - max]", "native", "x", "load ms", "process", "peak MiB"
    );
    for r in &report.scenarios {
        let range =
            format!("[{} - {}]", grouped(r.wasm_bars_per_second.min), grouped(r.wasm_bars_per_second.max));
        let _ = writeln!(
            out,
            "{:<38} {:>11} {:>25} {:>11} {:>5.1}x {:>8.1} {:>7.0}ms {:>8.0}{}",
            r.scenario.name,
            grouped(r.wasm_bars_per_second.median),
            range,
            grouped(r.native_bars_per_second.median),
            r.wasm_over_native,
            r.load_ms.median,
            r.wall_ms.median,
            r.peak_rss_mb.median,
            if r.native_agrees { "" } else { "  NATIVE AND WASM DISAGREE" }
        );
    }
    let _ = writeln!(
        out,
        "(wasm and native made the same {} trades in the first scenario; x = wasm time / native time; \
         100 symbols on {} cores run {:.2}x as fast as on one)",
        report.scenarios[0].trades, m.cores, report.speedup_all_cores
    );

    let _ = writeln!(out, "\nWhere a bar's time goes ({}):", report.scenarios[0].scenario.name);
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>12} {:>12} {:>14} {:>8}",
        "slice", "calls/bar", "wasm ns/bar", "ns/call", "native ns/bar", "share"
    );
    for row in &report.slices {
        let calls = if row.slice == HOST_LOOP { "-".to_owned() } else { format!("{:.4}", row.calls_per_bar) };
        let per_call =
            if row.slice == HOST_LOOP { "-".to_owned() } else { format!("{:.0}", row.wasm_ns_per_call) };
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>12.1} {:>12} {:>14.1} {:>7.1}%",
            row.slice, calls, row.wasm_ns_per_bar, per_call, row.native_ns_per_bar, row.share_of_run_pct
        );
    }
    let crossings: f64 = report.slices.iter().filter(|r| r.slice != HOST_LOOP).map(|r| r.calls_per_bar).sum();
    let _ = writeln!(out, "boundary crossings per bar: {crossings:.4}");

    let s = &report.start_up;
    let _ = writeln!(out, "\nStart-up (six default components, one symbol):");
    let _ = writeln!(
        out,
        "  cold (compile + instantiate): {:.1} ms [{:.1} - {:.1}]; whole process {:.0} ms",
        s.cold_load_ms.median, s.cold_load_ms.min, s.cold_load_ms.max, s.cold_process_ms.median
    );
    let _ = writeln!(
        out,
        "  warm (compiled cache):        {:.1} ms [{:.1} - {:.1}]; whole process {:.0} ms",
        s.warm_load_ms.median, s.warm_load_ms.min, s.warm_load_ms.max, s.warm_process_ms.median
    );
    let mut per_symbol: Vec<String> = Vec::new();
    for r in &report.scenarios {
        let text = format!("{:.0} us at {} symbols", r.instantiate_us_per_symbol.median, r.scenario.symbols);
        if r.scenario.source == Source::Generated
            && !per_symbol.iter().any(|p| p.ends_with(&format!(" {} symbols", r.scenario.symbols)))
        {
            per_symbol.push(text);
        }
    }
    let _ = writeln!(out, "  instantiation per symbol: {}", per_symbol.join(", "));

    let _ = writeln!(out, "\nTargets:");
    for t in &report.targets {
        let _ = writeln!(out, "  [{}] {}: {}", if t.met { "met" } else { "NOT MET" }, t.goal, t.measured);
    }
    out
}
