//! `host config`: check a run configuration without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::config::{ConfigError, LoadedConfig};
use crate::model::SliceKind;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Everything `host run` checks before its first bar, all problems at
    /// once: the file's keys, the limits, each component's settings against
    /// what it declares, each slice's own `init` in a throwaway instance
    /// (with the config's grants and limits), and the [optimize] section's
    /// search space if there is one. Honours $STRATA_CONFIG and
    /// $STRATA_DATA_DIR as `host run` does, prints the effective [run],
    /// [risk], [account] and [faults], and exits non-zero on any problem.
    Check {
        /// The config [default: $STRATA_CONFIG, else config/default.toml].
        file: Option<PathBuf>,
        /// Point the data slice's directory grant here, as `host run
        /// --data-dir` does (overrides $STRATA_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn execute(cmd: ConfigCommand) -> Result<ExitCode> {
    let ConfigCommand::Check { file, data_dir } = cmd;
    let path = super::resolve_config(file, "default.toml")?;
    let mut config = LoadedConfig::read(&path)?;
    let mut problems = Vec::new();
    let data_dir = data_dir.or_else(|| std::env::var_os("STRATA_DATA_DIR").map(PathBuf::from));
    if let Some(dir) = &data_dir
        && let Err(e) = super::run::override_data_dir(&mut config, dir)
    {
        problems.push(e.to_string());
    }
    match config.validate() {
        Ok(()) => {}
        Err(ConfigError::Invalid { problems: found, .. }) => problems.extend(found),
        Err(other) => problems.push(other.to_string()),
    }
    let refused: Vec<SliceKind> = SliceKind::ALL
        .into_iter()
        .filter(|kind| problems.iter().any(|p| p.starts_with(&format!("slices.{kind}."))))
        .collect();
    let (found, session) = crate::session::check_components(&config, &refused);
    problems.extend(found);
    let search = match &session {
        Some(session) => crate::optimize::check(session).unwrap_or_else(|e| {
            problems.push(format!("[optimize] {e:#}"));
            None
        }),
        None => None,
    };
    print_effective(&config);
    if !problems.is_empty() {
        bail!(
            "config file {} has {} problem(s):\n{}",
            config.path.display(),
            problems.len(),
            problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
        );
    }
    let Some(session) = session else {
        bail!("config file {}: the components could not be checked", config.path.display());
    };
    println!("{} is valid:", session.config.path.display());
    for kind in SliceKind::ALL {
        let plugin = session.plugin(kind);
        let settings: Vec<String> = session.settings[&kind].iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {:<10} {:<24} {}", kind.as_str(), plugin.label(), settings.join(" "));
        for (guest, host) in &session.config.config.slices.get(kind).grants.read_dirs {
            println!("  {:<10} {:<24} reads {} as {guest}", "", "", host.display());
        }
    }
    if let Some(search) = search {
        println!("  {:<10} {search}", "optimize");
    }
    Ok(ExitCode::SUCCESS)
}

/// The sections that decide what a run may do, defaults filled in, so a
/// reader sees the limits in force rather than only what the file says.
fn print_effective(config: &LoadedConfig) {
    let c = &config.config;
    println!("{} as the run would use it:", config.path.display());
    let section = |name: &str, value: Result<String, toml::ser::Error>| {
        println!("[{name}]");
        match value {
            Ok(text) => print!("{text}"),
            Err(e) => println!("# cannot show: {e}"),
        }
        println!();
    };
    section("run", toml::to_string(&c.run));
    section("risk", toml::to_string(&c.risk));
    section("account", toml::to_string(&c.account));
    section("faults", toml::to_string(&c.faults));
}
