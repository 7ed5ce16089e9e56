//! The run configuration: which component fills each slice, with what
//! settings and grants, and the run's own settings.
//!
//! Read from TOML with unknown keys refused, paths resolved against the
//! config file's directory (so `config/default.toml` works from any working
//! directory), and validated with every problem reported at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::excerpt::{excerpt, excerpt_of};
use crate::model::{ConfigParam, ConfigValue, MAX_START_CASH, SliceKind};

/// Default per-call CPU deadline of a slice.
pub const DEFAULT_DEADLINE_MS: u64 = 1_000;
/// Default cap on one slice instance's memory.
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Longest per-call deadline: a call that may run for an hour is a hang.
/// Each call adds the deadline to a clock reading, which a `u64` of
/// milliseconds overflows.
pub const MAX_DEADLINE_MS: u64 = 3_600_000;
/// Longest wait of paper mode's polling feed, a week: it sleeps this long,
/// and a sleep of 1e300 s is not a duration.
const MAX_CHECK_INTERVAL_S: f64 = 7.0 * 86_400.0;
/// Most timestamps of a safe-mode cool-down, more than any run has bars;
/// the cool-down's end is the fault's timestamp count plus this.
const MAX_COOLDOWN_BARS: u64 = 1_000_000_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunConfig {
    #[serde(default)]
    pub run: RunSection,
    /// What happens when a slice fails.
    #[serde(default)]
    pub faults: FaultSection,
    /// The host's risk gate; a config without this section gets its defaults.
    #[serde(default)]
    pub risk: crate::risk::RiskLimits,
    /// Cash (never borrows, the default) or margin (borrows at a rate).
    #[serde(default)]
    pub account: crate::account::AccountSection,
    /// Short selling, off by default (long only).
    #[serde(default)]
    pub shorting: ShortingSection,
    /// Paper mode: the operator's endpoint and the polling feed.
    #[serde(default)]
    pub paper: PaperSection,
    /// Live mode: the venue, its API key's location, the account rules.
    #[serde(default)]
    pub live: crate::live::config::LiveSection,
    /// Optimize mode: the search space, the sampler, the objective and
    /// walk-forward validation (docs/optimize.md). Other modes ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimize: Option<crate::optimize::OptimizeSection>,
    pub slices: Slices,
}

/// `[paper]`: settings only paper mode reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PaperSection {
    /// Port of the `/health` and `/metrics` endpoint on 127.0.0.1; off when
    /// absent, any free port when 0 (the address is written to `<out>/http.addr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    /// Polling feed: the shortest wait between checks, in seconds (fast markets).
    #[serde(default = "default_min_interval")]
    pub min_check_interval_s: f64,
    /// Polling feed: the longest wait between checks, in seconds (quiet markets).
    #[serde(default = "default_max_interval")]
    pub max_check_interval_s: f64,
    /// Polling feed: the volatility (standard deviation of log returns per bar)
    /// at or below which the market counts as quiet and checks are the rarest.
    #[serde(default = "default_quiet_volatility")]
    pub quiet_volatility: f64,
    /// Polling feed: bar length in seconds (Coinbase: 60, 300, 900, 3600, 21600 or 86400).
    #[serde(default = "default_granularity")]
    pub granularity_s: u32,
    /// Polling feed: bars fetched before the first check, so indicators are warm.
    #[serde(default = "default_history_bars")]
    pub history_bars: u32,
    /// Polling feed: base URL of the Coinbase Exchange REST API.
    #[serde(default = "default_coinbase_url")]
    pub coinbase_url: String,
}

impl Default for PaperSection {
    fn default() -> Self {
        PaperSection {
            http_port: None,
            min_check_interval_s: default_min_interval(),
            max_check_interval_s: default_max_interval(),
            quiet_volatility: default_quiet_volatility(),
            granularity_s: default_granularity(),
            history_bars: default_history_bars(),
            coinbase_url: default_coinbase_url(),
        }
    }
}

fn default_min_interval() -> f64 {
    15.0 * 60.0
}
fn default_max_interval() -> f64 {
    4.0 * 3600.0
}
fn default_quiet_volatility() -> f64 {
    0.002
}
fn default_granularity() -> u32 {
    3600
}
fn default_history_bars() -> u32 {
    300
}
fn default_coinbase_url() -> String {
    "https://api.exchange.coinbase.com".into()
}

impl PaperSection {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let (min, max) = (self.min_check_interval_s, self.max_check_interval_s);
        if !(min.is_finite() && min > 0.0 && min <= MAX_CHECK_INTERVAL_S) {
            problems.push(format!(
                "paper.min-check-interval-s must be positive and at most {MAX_CHECK_INTERVAL_S} (a week), got {min}"
            ));
        }
        if !(max.is_finite() && max >= min && max <= MAX_CHECK_INTERVAL_S) {
            problems.push(format!(
                "paper.max-check-interval-s must be at least min-check-interval-s ({min}) and at most {MAX_CHECK_INTERVAL_S} (a week), got {max}"
            ));
        }
        if !(self.quiet_volatility.is_finite() && self.quiet_volatility > 0.0) {
            problems.push(format!("paper.quiet-volatility must be positive, got {}", self.quiet_volatility));
        }
        if ![60, 300, 900, 3600, 21600, 86400].contains(&self.granularity_s) {
            problems.push(format!(
                "paper.granularity-s must be one of 60, 300, 900, 3600, 21600, 86400 (what Coinbase serves), got {}",
                self.granularity_s
            ));
        }
        if !(self.coinbase_url.starts_with("http://") || self.coinbase_url.starts_with("https://")) {
            problems.push(format!(
                "paper.coinbase-url must start with http:// or https://, got \"{}\"",
                excerpt(&self.coinbase_url)
            ));
        }
        problems
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ShortingSection {
    /// Allow `enter-short` signals.
    #[serde(default)]
    pub enabled: bool,
    /// Cost of borrowing what is sold short, per year, in basis points of the
    /// short position's value, charged in cash as time passes.
    #[serde(default, deserialize_with = "exact_decimal")]
    pub borrow_bps_per_year: Decimal,
}

/// What the host does when a slice traps, errs, breaks the interface's rules
/// or runs over its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultPolicy {
    /// Stop the run, write its files up to the failure, exit non-zero.
    #[default]
    Halt,
    /// Drop the symbol; the host closes its position at the next bar.
    SkipSymbol,
    /// Open no new positions anywhere for a cool-down (optionally closing
    /// them all), then carry on with fresh instances.
    SafeMode,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FaultSection {
    #[serde(default)]
    pub policy: FaultPolicy,
    /// Safe mode: timestamps to wait before opening positions again.
    #[serde(default = "default_cooldown_bars")]
    pub cooldown_bars: u64,
    /// Safe mode: close every open position at its next bar.
    #[serde(default)]
    pub flatten: bool,
    /// Fee of the host's own closing trades (skip-symbol, flatten), in basis points of notional.
    #[serde(default = "default_liquidation_fee_bps", deserialize_with = "exact_decimal")]
    pub liquidation_fee_bps: Decimal,
    /// After this many faults a symbol is dropped, whatever the policy (except halt).
    #[serde(default = "default_max_faults_per_symbol")]
    pub max_faults_per_symbol: u32,
}

impl Default for FaultSection {
    fn default() -> Self {
        FaultSection {
            policy: FaultPolicy::Halt,
            cooldown_bars: default_cooldown_bars(),
            flatten: false,
            liquidation_fee_bps: default_liquidation_fee_bps(),
            max_faults_per_symbol: default_max_faults_per_symbol(),
        }
    }
}

fn default_cooldown_bars() -> u64 {
    24
}
fn default_liquidation_fee_bps() -> Decimal {
    Decimal::from(10)
}
fn default_max_faults_per_symbol() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunSection {
    /// Cash at the start of a backtest, in quote currency.
    #[serde(default = "default_start_cash", deserialize_with = "exact_decimal")]
    pub start_cash: Decimal,
    /// Seeds the random generator each slice sees in backtests.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Bars handed to the data, analysis, regime and strategy slices per call.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Threads that run several symbols' slices at once; 0 = one per core.
    #[serde(default)]
    pub threads: usize,
    /// Most bars the data slice may give one symbol in a run: a feed without
    /// end is refused at this bar instead of filling the disk.
    #[serde(default = "default_max_bars_per_symbol")]
    pub max_bars_per_symbol: u64,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            start_cash: default_start_cash(),
            seed: default_seed(),
            batch_size: default_batch_size(),
            threads: 0,
            max_bars_per_symbol: default_max_bars_per_symbol(),
        }
    }
}

fn default_start_cash() -> Decimal {
    Decimal::from(10_000)
}
fn default_seed() -> u64 {
    42
}
fn default_batch_size() -> u32 {
    4096
}
/// Two million: 228 years of hourly bars, 3.8 years of minute bars, twice
/// the largest series the benchmark runs (1,000,000 hourly bars). A data
/// slice that never stops is cut off there: MEASURED with synthetic-data
/// asked for 100M minute bars, at the former 10M the run took 26 s, 803 MiB
/// and wrote a 529 MB `equity.csv`; a fifth of that is the bound now. Real
/// data past it is a config line away, and the message names the key.
fn default_max_bars_per_symbol() -> u64 {
    2_000_000
}

/// One section per slice kind; all six are required.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slices {
    pub data: SliceSection,
    pub analysis: SliceSection,
    pub regime: SliceSection,
    pub strategy: SliceSection,
    pub sizing: SliceSection,
    pub execution: SliceSection,
}

impl Slices {
    pub fn get(&self, kind: SliceKind) -> &SliceSection {
        match kind {
            SliceKind::Data => &self.data,
            SliceKind::Analysis => &self.analysis,
            SliceKind::Regime => &self.regime,
            SliceKind::Strategy => &self.strategy,
            SliceKind::Sizing => &self.sizing,
            SliceKind::Execution => &self.execution,
        }
    }

    pub fn get_mut(&mut self, kind: SliceKind) -> &mut SliceSection {
        match kind {
            SliceKind::Data => &mut self.data,
            SliceKind::Analysis => &mut self.analysis,
            SliceKind::Regime => &mut self.regime,
            SliceKind::Strategy => &mut self.strategy,
            SliceKind::Sizing => &mut self.sizing,
            SliceKind::Execution => &mut self.execution,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SliceSection {
    /// The component file; relative paths are relative to the config file.
    pub plugin: PathBuf,
    /// Settings handed to the slice's `init`, checked against what it declares.
    #[serde(default)]
    pub config: toml::Table,
    /// What the slice may touch beyond computing. Nothing by default.
    #[serde(default)]
    pub grants: Grants,
    /// CPU and memory limits of each instance of the slice.
    #[serde(default)]
    pub limits: Limits,
    /// `[slices.execution.venue]` only: the simulated venue that an
    /// execution slice importing `strata:plugin/venue` sends its child orders
    /// to in backtests and paper trading (live mode sends them to the
    /// exchange instead). Itself an execution slice that fills orders, such
    /// as the reference `sim-execution`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<Box<SliceSection>>,
}

impl SliceSection {
    /// Makes the plugin and granted directories relative to `dir` absolute.
    fn resolve_paths(&mut self, dir: &Path) {
        self.plugin = resolve(dir, &self.plugin);
        for host_dir in self.grants.read_dirs.values_mut() {
            *host_dir = resolve(dir, host_dir);
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    /// Directories the slice may read: guest path (as the slice sees it, for
    /// example `/data`) = host directory.
    #[serde(default)]
    pub read_dirs: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Longest a single call into the slice may run.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest the slice instance's memory may grow.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// CPU time one instance may use over the whole run; unlimited when absent.
    /// Catches a slice that is merely slow, which the per-call deadline does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_ms: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { deadline_ms: DEFAULT_DEADLINE_MS, memory_mib: DEFAULT_MEMORY_MIB, budget_ms: None }
    }
}

fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}
/// Smallest `limits.memory-mib`: the cap covers every memory and table of
/// an instance, and a Rust slice's memory starts at 17 pages (1.06 MiB: its
/// stack and static data, as wasmtime reports when the cap is 1 MiB) before
/// it allocates anything; the reference chain runs a whole BTC backtest with
/// every slice at 4 (`tests/all/trust_sandbox.rs`).
pub const MIN_MEMORY_MIB: u64 = 4;

fn default_memory_mib() -> u64 {
    DEFAULT_MEMORY_MIB
}

/// A config file that could not be used, with every problem found in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing, unreadable, not a regular file, or larger than [`crate::files::CONFIG_MAX`].
    #[error(transparent)]
    Read(#[from] crate::files::ReadError),
    #[error("config file {} is not valid: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("config file {} has {} problem(s):\n{}", path.display(), problems.len(), Problems(problems))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A parsed config with its origin.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// Absolute path of the file.
    pub path: PathBuf,
    pub config: RunConfig,
}

impl LoadedConfig {
    /// Reads and parses `path`, resolving relative paths in it against the
    /// file's directory. Checks that files and directories exist with
    /// [`LoadedConfig::validate`], after command-line overrides are applied.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        Self::read_with_text(path).map(|(config, _)| config)
    }

    /// Like [`LoadedConfig::read`], also handing back the file's text (paper
    /// mode records it), so the file is read once. Reads through
    /// [`crate::files::read_text_bounded`]: a FIFO, a device or a huge file
    /// named as the config is refused, never waited on or read whole.
    pub fn read_with_text(path: &Path) -> Result<(Self, String), ConfigError> {
        let text = crate::files::read_text_bounded(path, crate::files::CONFIG_MAX, "config file")?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut config: RunConfig = toml::from_str(&text).map_err(|e| {
            // toml stops at the first problem; every unknown key is named
            // at once, with the parse error itself unless it is one of them.
            let message = parse_message(&text, &e);
            let mut problems = section_problems(&text);
            if problems.is_empty() {
                return ConfigError::Parse { path: path.clone(), message };
            }
            if !e.message().starts_with("unknown field") {
                problems.insert(0, message);
            }
            ConfigError::Invalid { path: path.clone(), problems }
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(key_file) = &mut config.live.key_file {
            *key_file = resolve(dir, key_file);
        }
        for kind in SliceKind::ALL {
            let section = config.slices.get_mut(kind);
            section.resolve_paths(dir);
            if let Some(venue) = &mut section.venue {
                venue.resolve_paths(dir);
            }
        }
        Ok((LoadedConfig { path, config }, text))
    }

    /// Checks everything that can be checked without loading components.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let run = &self.config.run;
        if run.start_cash <= Decimal::ZERO || run.start_cash > MAX_START_CASH {
            // The upper bound keeps every amount of the run far inside what the
            // ledger's decimal holds (see `model::MAX_START_CASH`).
            problems.push(format!(
                "run.start-cash must be positive and at most {MAX_START_CASH} (1e15), got {}",
                run.start_cash
            ));
        }
        if run.max_bars_per_symbol == 0 {
            problems.push("run.max-bars-per-symbol must be at least 1".to_owned());
        }
        let faults = &self.config.faults;
        if faults.liquidation_fee_bps < Decimal::ZERO || faults.liquidation_fee_bps > Decimal::from(10_000) {
            problems.push(format!(
                "faults.liquidation-fee-bps must be between 0 and 10000, got {}",
                faults.liquidation_fee_bps
            ));
        }
        problems.extend(self.config.risk.problems());
        problems.extend(self.config.account.problems(&self.config.risk));
        problems.extend(self.config.paper.problems());
        problems.extend(self.config.live.problems());
        let borrow = self.config.shorting.borrow_bps_per_year;
        if borrow < Decimal::ZERO || borrow > Decimal::from(100_000) {
            problems.push(format!("shorting.borrow-bps-per-year must be between 0 and 100000, got {borrow}"));
        }
        if faults.cooldown_bars > MAX_COOLDOWN_BARS {
            problems.push(format!(
                "faults.cooldown-bars must be at most {MAX_COOLDOWN_BARS}, got {}",
                faults.cooldown_bars
            ));
        }
        if faults.max_faults_per_symbol == 0 {
            problems.push("faults.max-faults-per-symbol must be at least 1".to_owned());
        }
        if run.batch_size == 0 || run.batch_size > 1 << 20 {
            problems.push(format!("run.batch-size must be between 1 and 1048576, got {}", run.batch_size));
        }
        for kind in SliceKind::ALL {
            let section = self.config.slices.get(kind);
            let key = format!("slices.{kind}");
            self.section_problems(&key, section, &mut problems);
            match (&section.venue, kind) {
                (None, _) => {}
                (Some(venue), SliceKind::Execution) => {
                    if venue.venue.is_some() {
                        problems
                            .push(format!("{key}.venue.venue: a simulated venue has no venue of its own"));
                    }
                    self.section_problems(&format!("{key}.venue"), venue, &mut problems);
                }
                (Some(_), _) => problems.push(format!(
                    "{key}.venue: only [slices.execution] has a venue (the simulated venue its orders go to)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { path: self.path.clone(), problems })
        }
    }

    /// What can be wrong with one slice section (`key` names it in messages).
    fn section_problems(&self, key: &str, section: &SliceSection, problems: &mut Vec<String>) {
        // Opened as the loader will open it (without blocking, regular
        // files only, within the size cap), so a FIFO or a huge file is
        // named here rather than found when the run starts.
        match crate::files::open_regular(&section.plugin, crate::files::PLUGIN_MAX, "plugin") {
            Ok(_) => {}
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => problems.push(format!(
                "{key}.plugin: {} does not exist{}",
                excerpt(&section.plugin.to_string_lossy()),
                if section.plugin.starts_with(built_plugins_hint_dir(&self.path)) {
                    " (build the plugins first: ./scripts/setup.sh)"
                } else {
                    ""
                }
            )),
            Err(e) => problems.push(format!("{key}.plugin: {e}")),
        }
        for (guest, host) in &section.grants.read_dirs {
            if !guest.starts_with('/') {
                problems.push(format!(
                    "{key}.grants.read-dirs: guest path `{}` must be absolute, like `/data`",
                    excerpt(guest)
                ));
            }
            if !host.is_dir() {
                problems.push(format!(
                    "{key}.grants.read-dirs.\"{}\": {} is not a directory",
                    excerpt(guest),
                    excerpt(&host.to_string_lossy())
                ));
            }
        }
        if !(1..=MAX_DEADLINE_MS).contains(&section.limits.deadline_ms) {
            problems.push(format!(
                "{key}.limits.deadline-ms must be between 1 and {MAX_DEADLINE_MS} (an hour), got {}",
                section.limits.deadline_ms
            ));
        }
        if section.limits.budget_ms == Some(0) {
            problems.push(format!("{key}.limits.budget-ms must be positive"));
        }
        if !(MIN_MEMORY_MIB..=65_536).contains(&section.limits.memory_mib) {
            problems.push(format!(
                "{key}.limits.memory-mib must be between {MIN_MEMORY_MIB} and 65536, got {} \
                 (it caps all of an instance's memories and tables together; below \
                 {MIN_MEMORY_MIB} MiB not even the smallest reference slice can start)",
                section.limits.memory_mib
            ));
        }
        for (name, value) in &section.config {
            if let Err(e) = scalar(value) {
                problems.push(format!("{key}.config.{}: {e}", excerpt(name)));
            }
        }
    }
}

/// Every problem of a config that does not deserialize, section by section,
/// so a user fixes them in one pass rather than one per run: each unknown
/// key (at the top level and in every section) and each section's first
/// other error. Empty when the text is not TOML at all or when the
/// sections are fine on their own (the caller then reports the parser's
/// own error, with its line).
fn section_problems(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    let mut problems = Vec::new();
    const SECTIONS: &str = "run, faults, risk, account, shorting, paper, live, optimize, slices";
    for (key, value) in &table {
        match key.as_str() {
            "run" => check_section::<RunSection>(text, "run", value, &mut problems),
            "faults" => check_section::<FaultSection>(text, "faults", value, &mut problems),
            "risk" => check_section::<crate::risk::RiskLimits>(text, "risk", value, &mut problems),
            "account" => {
                check_section::<crate::account::AccountSection>(text, "account", value, &mut problems)
            }
            "shorting" => check_section::<ShortingSection>(text, "shorting", value, &mut problems),
            "paper" => check_section::<PaperSection>(text, "paper", value, &mut problems),
            "live" => check_section::<crate::live::config::LiveSection>(text, "live", value, &mut problems),
            "optimize" => {
                check_section::<crate::optimize::OptimizeSection>(text, "optimize", value, &mut problems)
            }
            "slices" => slices_problems(text, value, &mut problems),
            other => problems.push(format!(
                "{}unknown top-level key `{}` (the sections are {SECTIONS})",
                line_prefix(text, "", other),
                excerpt(other)
            )),
        }
    }
    if !table.contains_key("slices") {
        problems.push("missing [slices.*]: every config names the six slices' components".to_owned());
    }
    problems
}

fn slices_problems(text: &str, value: &toml::Value, problems: &mut Vec<String>) {
    let Some(slices) = value.as_table() else {
        problems.push("slices must be a table of [slices.<kind>] sections".to_owned());
        return;
    };
    for (kind, section) in slices {
        match SliceKind::from_name(kind) {
            Some(_) => check_section::<SliceSection>(text, &format!("slices.{kind}"), section, problems),
            None => {
                let kinds: Vec<&str> = SliceKind::ALL.iter().map(|k| k.as_str()).collect();
                problems.push(format!(
                    "unknown slice kind [slices.{}] (one of {})",
                    excerpt(kind),
                    kinds.join(", ")
                ));
            }
        }
    }
    for kind in SliceKind::ALL {
        if !slices.contains_key(kind.as_str()) {
            problems.push(format!("missing [slices.{kind}]"));
        }
    }
}

/// How many unknown keys of one section a parse error names.
const MAX_UNKNOWN_KEYS_NAMED: usize = 20;

/// Deserializes one section on its own; each unknown key is reported and
/// removed, and the section tried again, so every unknown key is named.
fn check_section<T: serde::de::DeserializeOwned>(
    text: &str,
    name: &str,
    value: &toml::Value,
    problems: &mut Vec<String>,
) {
    let mut value = value.clone();
    // Bounded: each pass removes one key, and a file of nothing but unknown
    // keys is cut short after a screenful of them.
    for _ in 0..MAX_UNKNOWN_KEYS_NAMED {
        let Err(e) = value.clone().try_into::<T>() else { return };
        let message = e.message().trim().to_owned();
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, rest)| (field.to_owned(), rest.to_owned()));
        let removed = match (&unknown, value.as_table_mut()) {
            (Some((field, _)), Some(table)) => table.remove(field).is_some(),
            _ => false,
        };
        match unknown.filter(|_| removed) {
            // The key is quoted as an excerpt: a key can be as long as the file.
            Some((field, expected)) => problems.push(format!(
                "{}[{name}] unknown field `{}`{expected}",
                line_prefix(text, name, &field),
                excerpt(&field)
            )),
            // Any other problem is the parse error's to report, with its
            // line and column: a section deserialized on its own can fail
            // in ways the whole file does not (spanned values).
            None => return,
        }
    }
}

/// `line N: ` for the line that sets `key` in section `section` (`""` for
/// the top level), as a plain `key = ...` line under a `[section]` header;
/// empty when the key is written another way (an inline table).
fn line_prefix(text: &str, section: &str, key: &str) -> String {
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = header.trim();
            continue;
        }
        let Some((name, _)) = line.split_once('=') else { continue };
        let first = name.trim().split('.').next().unwrap_or_default().trim().trim_matches('"');
        if current == section && first == key {
            return format!("line {}: ", i + 1);
        }
    }
    String::new()
}

/// Plugins built by this repository live under `<repo>/target`; a missing file
/// there most likely means the build has not run.
fn built_plugins_hint_dir(config_path: &Path) -> PathBuf {
    config_path.parent().and_then(Path::parent).map(|repo| repo.join("target")).unwrap_or_default()
}

fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { normalize(&dir.join(path)) }
}

/// Removes `.` and `..` components without touching the file system, so that
/// paths in messages and summaries read naturally.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn scalar(value: &toml::Value) -> Result<ConfigValue, String> {
    match value {
        toml::Value::Boolean(b) => Ok(ConfigValue::Bool(*b)),
        toml::Value::Integer(i) => Ok(ConfigValue::Int(*i)),
        toml::Value::Float(f) => Ok(ConfigValue::Float(*f)),
        toml::Value::String(s) => Ok(ConfigValue::Text(s.clone())),
        other => Err(format!("must be a boolean, integer, number or string, not {}", other.type_str())),
    }
}

/// The full settings a slice's `init` receives: the config's values checked
/// against the keys the plugin declares, with defaults for the rest.
/// Every problem is reported, each naming its key.
pub fn slice_settings(
    kind: SliceKind,
    plugin: &str,
    table: &toml::Table,
    params: &[ConfigParam],
) -> Result<Vec<(String, ConfigValue)>, Vec<String>> {
    let mut problems = Vec::new();
    for key in table.keys() {
        if !params.iter().any(|p| &p.key == key) {
            let accepted: Vec<&str> = params.iter().map(|p| p.key.as_str()).collect();
            let key = excerpt(key);
            problems.push(format!(
                "slices.{kind}.config.{key}: {plugin} has no setting `{key}` (it accepts: {})",
                if accepted.is_empty() { "none".to_owned() } else { accepted.join(", ") }
            ));
        }
    }
    let mut settings = Vec::with_capacity(params.len());
    for param in params {
        let value = match table.get(&param.key) {
            None => param.default.clone(),
            Some(v) => match scalar(v).and_then(|v| coerce(v, &param.default)) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("slices.{kind}.config.{}: {e}", param.key));
                    continue;
                }
            },
        };
        settings.push((param.key.clone(), value));
    }
    if problems.is_empty() { Ok(settings) } else { Err(problems) }
}

/// A value for a setting whose default is `default`, checked as
/// [`slice_settings`] checks the config's (optimisation search spaces list
/// such values).
pub fn setting_value(value: &toml::Value, default: &ConfigValue) -> Result<ConfigValue, String> {
    scalar(value).and_then(|v| coerce(v, default))
}

/// A value must have its default's type; integers are accepted for numbers.
fn coerce(value: ConfigValue, default: &ConfigValue) -> Result<ConfigValue, String> {
    match (value, default) {
        (ConfigValue::Int(i), ConfigValue::Float(_)) => Ok(ConfigValue::Float(i as f64)),
        (v, d) if std::mem::discriminant(&v) == std::mem::discriminant(d) => Ok(v),
        (v, d) => Err(format!("must be {} (default {d}), got {}", d.type_name(), excerpt(&v.to_string()))),
    }
}

/// A TOML error as a short message: its line and column, what is wrong, and
/// the start of the line. toml's own message quotes the whole line, which
/// can be megabytes; so can a key that serde quotes in "unknown field".
fn parse_message(text: &str, error: &toml::de::Error) -> String {
    let what: Vec<String> = error.message().lines().map(|line| excerpt_of(line, 240)).collect();
    let what = what.join("; ");
    let Some(start) = error.span().map(|s| s.start).filter(|&s| text.is_char_boundary(s)) else {
        return what;
    };
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    // The start of the line shows the key; far into a long line, the place too.
    let mut quote = format!("\n    {line} | {}", excerpt(&text[line_start..line_end]));
    if column > crate::excerpt::EXCERPT_CHARS {
        quote.push_str(&format!("\n    column {column} | {}", excerpt(&text[start..line_end])));
    }
    format!("line {line}, column {column}: {what}{quote}")
}

/// Money in config may be written as a number or a string; either way it is
/// read exactly (`0.1` is one tenth, not the nearest binary fraction).
pub(crate) fn exact_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    let parsed = match Raw::deserialize(d)? {
        Raw::Int(i) => Some(Decimal::from(i)),
        Raw::Float(f) => crate::model::price_to_decimal(f),
        Raw::Text(s) => Decimal::from_str(s.trim()).ok(),
    };
    parsed.ok_or_else(|| serde::de::Error::custom("expected an exact decimal such as 10000 or \"10000.50\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<ConfigParam> {
        vec![
            ConfigParam { key: "fast".into(), description: String::new(), default: ConfigValue::Int(10) },
            ConfigParam { key: "fee".into(), description: String::new(), default: ConfigValue::Float(1.0) },
        ]
    }

    #[test]
    fn settings_fill_defaults_and_coerce_integers_to_numbers() {
        let table: toml::Table = toml::from_str("fee = 3").unwrap();
        let settings = slice_settings(SliceKind::Analysis, "sma 0.1.0", &table, &params()).unwrap();
        assert_eq!(
            settings,
            vec![("fast".into(), ConfigValue::Int(10)), ("fee".into(), ConfigValue::Float(3.0))]
        );
    }

    #[test]
    fn settings_report_every_problem_with_its_key() {
        let table: toml::Table = toml::from_str("fsat = 5\nfast = \"ten\"").unwrap();
        let problems = slice_settings(SliceKind::Analysis, "sma 0.1.0", &table, &params()).unwrap_err();
        assert_eq!(
            problems,
            vec![
                "slices.analysis.config.fsat: sma 0.1.0 has no setting `fsat` (it accepts: fast, fee)",
                "slices.analysis.config.fast: must be an integer (default 10), got \"ten\"",
            ]
        );
    }

    #[test]
    fn normalize_removes_dot_segments() {
        assert_eq!(normalize(Path::new("/a/config/../target/./x.wasm")), PathBuf::from("/a/target/x.wasm"));
    }

    #[test]
    fn start_cash_is_exact_from_numbers_and_strings() {
        for (text, want) in [("10000", "10000"), ("0.1", "0.1"), ("\"2500.25\"", "2500.25")] {
            let run: RunSection = toml::from_str(&format!("start-cash = {text}")).unwrap();
            assert_eq!(run.start_cash.to_string(), want);
        }
    }
}
