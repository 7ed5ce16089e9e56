//! `host config`: check a run configuration without running it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::config::LoadedConfig;
use crate::model::SliceKind;
use crate::session::Session;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse a config, load its six components and check every slice's
    /// settings against what the component declares, and the [optimize]
    /// section's search space if there is one; runs nothing.
    Check {
        /// The config [default: config/default.toml].
        file: Option<PathBuf>,
    },
}

pub fn execute(cmd: ConfigCommand) -> Result<ExitCode> {
    let ConfigCommand::Check { file } = cmd;
    let path = super::resolve_config(file, "default.toml")?;
    let config = LoadedConfig::read(&path)?;
    config.validate()?;
    let session = Session::open(config, &SliceKind::ALL)?;
    println!("{} is valid:", session.config.path.display());
    for kind in SliceKind::ALL {
        let plugin = session.plugin(kind);
        let settings: Vec<String> = session.settings[&kind].iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  {:<10} {:<24} {}", kind.as_str(), plugin.label(), settings.join(" "));
        for (guest, host) in &session.config.config.slices.get(kind).grants.read_dirs {
            println!("  {:<10} {:<24} reads {} as {guest}", "", "", host.display());
        }
    }
    if let Some(search) = crate::optimize::check(&session)? {
        println!("  {:<10} {search}", "optimize");
    }
    Ok(ExitCode::SUCCESS)
}
