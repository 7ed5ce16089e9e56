//! `host plugin`: for people writing slices. Scaffold a crate, build it to a
//! component, see what a component says about itself, and check that it fits
//! a slot, all without a backtest and without reading the host's code.

mod scaffold;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::clock::SimClock;
use crate::config::{LoadedConfig, slice_settings};
use crate::model::{ConfigParam, ConfigValue, SliceKind, Symbol};
use crate::runtime::{CacheOutcome, ClockSource, INTERFACE_VERSION, Plugin, Runtime, Sandbox};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a plugin crate for one slice kind, with a working example and a
    /// unit test, in a new folder outside any other Cargo workspace.
    New(NewArgs),
    /// Build a plugin crate into a WebAssembly component and print where it is.
    Build {
        /// The plugin crate's folder.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Show what a component is: name, version, kind, interface version,
    /// settings with defaults, imports, size and sha256.
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check that a component fits a slot: its kind, exports and interface
    /// version, the settings given, and its `init` on them. Runs no backtest.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The slice kind to implement.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The crate's name, like `my-strategy`; it names the component file too.
    pub name: String,
    /// Folder to create [default: ./<NAME>].
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// The plugin-sdk folder to depend on [default: the one in this host's repository].
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub file: PathBuf,
    /// The slot to check it for.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// A setting as in a run config's `config = { ... }`: `--config fast=5`.
    /// Values are TOML (`5`, `0.5`, `true`, `"text"`); anything else is text.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Feature names a regime or strategy slice is initialised with
    /// [default: the outputs of the default config's analysis slice].
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// A directory to grant read-only, as a run config's `grants.read-dirs`:
    /// `--read-dir /data=./data`.
    #[arg(long = "read-dir", value_name = "GUEST=DIR")]
    pub read_dirs: Vec<String>,
}

/// The slice kinds, as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Data,
    Analysis,
    Regime,
    Strategy,
    Sizing,
    Execution,
}

impl From<Kind> for SliceKind {
    fn from(kind: Kind) -> SliceKind {
        match kind {
            Kind::Data => SliceKind::Data,
            Kind::Analysis => SliceKind::Analysis,
            Kind::Regime => SliceKind::Regime,
            Kind::Strategy => SliceKind::Strategy,
            Kind::Sizing => SliceKind::Sizing,
            Kind::Execution => SliceKind::Execution,
        }
    }
}

pub fn execute(cmd: PluginCommand) -> Result<ExitCode> {
    match cmd {
        PluginCommand::New(args) => new(args),
        PluginCommand::Build { path } => build(&path),
        PluginCommand::Inspect { file, json } => inspect(&file, json),
        PluginCommand::Check(args) => check(args),
    }
}

fn host_binary() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.canonicalize().ok()).unwrap_or_else(|| PathBuf::from("host"))
}

fn new(args: NewArgs) -> Result<ExitCode> {
    let kind = SliceKind::from(args.kind);
    let sdk = match args.sdk {
        Some(dir) if dir.join("Cargo.toml").is_file() => {
            dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?
        }
        Some(dir) => bail!("--sdk {}: no Cargo.toml there; pass the plugin-sdk folder", dir.display()),
        None => scaffold::find_sdk()?,
    };
    let dir = args.path.unwrap_or_else(|| PathBuf::from(&args.name));
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let made = scaffold::create(kind, &args.name, &dir, &sdk, &host_binary())?;
    println!("Created {} slice `{}` in {}", kind, args.name, made.dir.display());
    println!("  depends on    plugin-sdk at {}", sdk.display());
    println!("  test it       cd {} && cargo test", made.dir.display());
    println!("  build it      host plugin build {}", made.dir.display());
    println!("  check it      host plugin check {} --kind {kind}", made.wasm.display());
    Ok(ExitCode::SUCCESS)
}

fn build(path: &Path) -> Result<ExitCode> {
    let toolchain = toolchain::Toolchain::find()?;
    eprintln!("building {} with {}", path.display(), toolchain.name());
    let wasm = toolchain::build(path, toolchain)?;
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or_default();
    println!("{}", wasm.display());
    eprintln!(
        "built a {} byte component; next: host plugin check {} --kind <KIND>",
        group(size),
        wasm.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Everything `inspect` reports, also its `--json` form.
#[derive(Debug, Serialize)]
struct Inspection {
    file: String,
    name: String,
    version: String,
    kind: SliceKind,
    description: String,
    /// The slice interface the component exports, with its version.
    export: String,
    /// Whether it also exports the optional `snapshot` interface: its own
    /// state as bytes, which paper sessions persist and hand back on restart.
    snapshot: bool,
    /// An execution slice that imports `strata:plugin/venue`: it works orders
    /// through the host's venue, which the config names for backtests.
    uses_venue: bool,
    /// The interface version in that export's name: what the host checks.
    built_against: String,
    /// The interface version `describe()` reports.
    describe_interface_version: String,
    /// The interface version this host implements.
    host_interface_version: &'static str,
    params: Vec<ConfigParam>,
    /// Everything it imports: what it could ask the host for (it gets only its grants).
    imports: Vec<String>,
    size_bytes: u64,
    sha256: String,
    compile_ms: f64,
    cache: CacheOutcome,
}

fn inspect(file: &Path, json: bool) -> Result<ExitCode> {
    let runtime = Runtime::new().context("cannot start the WebAssembly runtime")?;
    let plugin = runtime.load_any(None, file)?;
    let report = Inspection {
        file: plugin.path.display().to_string(),
        name: plugin.info.name.clone(),
        version: plugin.info.version.clone(),
        kind: plugin.kind,
        description: plugin.info.description.clone(),
        export: format!("strata:plugin/{}@{}", plugin.kind, plugin.built_against),
        snapshot: plugin.exports_snapshot(),
        uses_venue: plugin.uses_venue,
        built_against: plugin.built_against.to_string(),
        describe_interface_version: plugin.info.interface_version.clone(),
        host_interface_version: INTERFACE_VERSION,
        params: plugin.info.params.clone(),
        imports: plugin.imports.clone(),
        size_bytes: plugin.size_bytes,
        sha256: plugin.sha256.clone(),
        compile_ms: plugin.compile_time.as_secs_f64() * 1e3,
        cache: plugin.cache.clone(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &report;
    println!("{} {}: {} {} slice", r.name, r.version, article(r.kind), r.kind);
    println!("  description   {}", r.description);
    println!("  file          {}", r.file);
    println!("  size          {} bytes", group(r.size_bytes));
    println!("  sha256        {}", r.sha256);
    println!("  exports       {}", r.export);
    if r.snapshot {
        println!(
            "                strata:plugin/snapshot@{} (its own state: paper sessions persist it and hand it back on restart)",
            r.built_against
        );
    }
    if r.uses_venue {
        println!(
            "  works orders  through the host's venue (strata:plugin/venue): backtests and paper trading \
             need [slices.execution.venue]; live mode sends its orders to the exchange"
        );
    }
    println!(
        "  interface     built against {}, describe() says {}; this host implements {}",
        r.built_against, r.describe_interface_version, r.host_interface_version
    );
    if r.params.is_empty() {
        println!("  config        (no settings)");
    }
    let width = r.params.iter().map(|p| p.key.len() + p.default.to_string().len() + 3).max().unwrap_or(0);
    for (i, p) in r.params.iter().enumerate() {
        let setting = format!("{} = {}", p.key, p.default);
        let label = if i == 0 { "config" } else { "" };
        println!("  {label:<13} {setting:<width$}  {} ({})", p.description, p.default.type_name());
    }
    for (i, import) in r.imports.iter().enumerate() {
        println!("  {:<13} {import}", if i == 0 { "imports" } else { "" });
    }
    println!("  compiled      {:.1} ms, cache {}", r.compile_ms, r.cache);
    Ok(ExitCode::SUCCESS)
}

fn article(kind: SliceKind) -> &'static str {
    if matches!(kind, SliceKind::Analysis | SliceKind::Execution) { "an" } else { "a" }
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let kind = SliceKind::from(args.kind);
    let runtime = Runtime::new().context("cannot start the WebAssembly runtime")?;
    let plugin = runtime.load(kind, &args.file)?;
    let label = plugin.label();
    println!(
        "{}: {label}, {} {kind} slice built against strata:plugin@{} (this host: {INTERFACE_VERSION})",
        plugin.path.display(),
        article(kind),
        plugin.built_against
    );

    let table = settings_table(&args.settings)?;
    let settings = slice_settings(kind, &label, &table, &plugin.info.params).map_err(|problems| {
        anyhow::anyhow!(
            "the settings do not fit {label}:\n{}",
            problems
                .iter()
                .map(|p| format!("  - {}", p.replace(&format!("slices.{kind}.config."), "--config ")))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let shown: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  settings      {}", if shown.is_empty() { "(none)".to_owned() } else { shown.join(" ") });

    let features = match (kind, args.features) {
        (SliceKind::Regime | SliceKind::Strategy, Some(f)) => f,
        (SliceKind::Regime | SliceKind::Strategy, None) => default_features(&runtime)
            .context("cannot find the features to start it with; pass them with --features a,b")?,
        (_, Some(_)) => bail!("--features is for regime and strategy slices, not {kind} slices"),
        (_, None) => Vec::new(),
    };
    if !features.is_empty() {
        println!("  features      {}", features.join(", "));
    }
    let sandbox = Sandbox {
        symbol: Some(Symbol::new("CHECK").expect("a valid symbol")),
        read_dirs: read_dirs(&args.read_dirs)?,
        clock: ClockSource::Simulated(SimClock::new()),
        seed: 0,
        limits: Default::default(),
    };
    init(&runtime, &plugin, &sandbox, &settings, &features)?;
    println!("  init          ok");
    println!("ok: {label} fits the {kind} slot");
    Ok(ExitCode::SUCCESS)
}

/// Starts one instance, which runs its `init` on the settings (and features).
fn init(
    runtime: &Runtime,
    plugin: &Plugin,
    sandbox: &Sandbox,
    settings: &[(String, ConfigValue)],
    features: &[String],
) -> Result<()> {
    match plugin.kind {
        SliceKind::Data => runtime.data_slice(plugin, sandbox, settings).map(drop),
        SliceKind::Analysis => runtime.analysis_slice(plugin, sandbox, settings).map(drop),
        SliceKind::Regime => runtime.regime_slice(plugin, sandbox, settings, features).map(drop),
        SliceKind::Strategy => runtime.strategy_slice(plugin, sandbox, settings, features).map(drop),
        SliceKind::Sizing => runtime.sizing_slice(plugin, sandbox, settings).map(drop),
        SliceKind::Execution => runtime.check_execution(plugin, sandbox, settings),
    }
    .map_err(|e| anyhow::anyhow!("init failed: {e}"))
}

/// The outputs of the analysis slice in the default config, which is what a
/// regime or strategy slice meets when swapped into the default chain.
fn default_features(runtime: &Runtime) -> Result<Vec<String>> {
    let path = super::resolve_config(None, "default.toml")?;
    let config = LoadedConfig::read(&path)?;
    let section = &config.config.slices.analysis;
    let plugin = runtime
        .load(SliceKind::Analysis, &section.plugin)
        .with_context(|| format!("slices.analysis.plugin in {}", path.display()))?;
    let settings = slice_settings(SliceKind::Analysis, &plugin.label(), &section.config, &plugin.info.params)
        .map_err(|p| anyhow::anyhow!("{} has invalid analysis settings: {}", path.display(), p.join("; ")))?;
    let sandbox = Sandbox {
        symbol: None,
        read_dirs: Default::default(),
        clock: ClockSource::Simulated(SimClock::new()),
        seed: 0,
        limits: section.limits,
    };
    let mut analysis = runtime.analysis_slice(&plugin, &sandbox, &settings)?;
    Ok(analysis.outputs()?)
}

/// `--config key=value` as the TOML table a run config's `config = {...}` is.
fn settings_table(pairs: &[String]) -> Result<toml::Table> {
    let mut table = toml::Table::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            bail!("--config {pair}: expected KEY=VALUE, for example --config fast=5");
        };
        let (key, raw) = (key.trim(), raw.trim());
        // A bare word like `crossover` is text, as the shell would have eaten the quotes.
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
        if table.insert(key.to_owned(), value).is_some() {
            bail!("--config {key} is given twice");
        }
    }
    Ok(table)
}

fn read_dirs(pairs: &[String]) -> Result<std::collections::BTreeMap<String, PathBuf>> {
    let mut dirs = std::collections::BTreeMap::new();
    for pair in pairs {
        let Some((guest, host)) = pair.split_once('=') else {
            bail!("--read-dir {pair}: expected GUEST=DIR, for example --read-dir /data=./data");
        };
        if !guest.starts_with('/') {
            bail!("--read-dir {pair}: the guest path `{guest}` must be absolute, like /data");
        }
        let host = Path::new(host);
        if !host.is_dir() {
            bail!("--read-dir {pair}: {} is not a directory", host.display());
        }
        dirs.insert(guest.to_owned(), std::path::absolute(host).unwrap_or_else(|_| host.to_owned()));
    }
    Ok(dirs)
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_toml_values_or_else_text() {
        let table =
            settings_table(&["fast=5".into(), "margin=0.5".into(), "volatile=flat".into(), "on=true".into()])
                .unwrap();
        assert_eq!(table["fast"], toml::Value::Integer(5));
        assert_eq!(table["margin"], toml::Value::Float(0.5));
        assert_eq!(table["volatile"], toml::Value::String("flat".into()));
        assert_eq!(table["on"], toml::Value::Boolean(true));
        assert!(settings_table(&["fast".into()]).unwrap_err().to_string().contains("expected KEY=VALUE"));
    }
}
