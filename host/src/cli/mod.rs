//! The command line: one module per subcommand, each with an `execute`.

pub mod config;
pub mod ctl;
pub mod data;
pub mod optimize;
pub mod paper;
pub mod plugin;
mod progress;
pub mod replay;
pub mod run;
pub mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

/// Run trading strategies built from sandboxed WebAssembly slices.
#[derive(Debug, Parser)]
#[command(name = "host", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output: -v for debug, -vv for trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a strategy over bars: `host run --mode backtest --symbols BTC-USD`.
    Run(run::RunArgs),
    /// Work with market data files.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Check run configurations.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Write, build, inspect and check slices: `host plugin new --kind strategy my-strategy`.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Search a parameter space: `host optimize --symbols BTC-USD --config config/optimize.toml`,
    /// or merge shards: `host optimize merge DIR...` (docs/optimize.md).
    Optimize(optimize::OptimizeCommand),
    /// Show a running paper session's health: `host status --out runs/paper-BTC-USD`.
    Status(status::StatusArgs),
    /// Control a running live session: `host ctl pause --out runs/live-BTC-USD`
    /// (status, pause, resume, cancel-all, flatten).
    Ctl(ctl::CtlArgs),
    /// Replay a paper session's audit log through the backtest engine and
    /// compare decision by decision.
    Replay(replay::ReplayArgs),
}

pub fn execute(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::execute(args),
        Command::Data(cmd) => data::execute(cmd),
        Command::Config(cmd) => config::execute(cmd),
        Command::Plugin(cmd) => plugin::execute(cmd),
        Command::Optimize(cmd) => optimize::execute(cmd),
        Command::Status(args) => status::execute(args),
        Command::Replay(args) => replay::execute(args),
        Command::Ctl(args) => ctl::execute(args),
    }
}

/// The config to use: `--config`, else `$STRATA_CONFIG`, else `config/<name>`
/// in the current directory, else the one in the repository the host binary
/// was built in (`target/release/host` -> `config/<name>`).
pub fn resolve_config(flag: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    if let Some(path) = flag.or_else(|| std::env::var_os("STRATA_CONFIG").map(PathBuf::from)) {
        return Ok(path);
    }
    let local = Path::new("config").join(name);
    if local.is_file() {
        return Ok(local);
    }
    if let Some(repo) =
        std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
    {
        let beside = repo.join("config").join(name);
        if beside.is_file() {
            return Ok(beside);
        }
    }
    bail!(
        "no config file given and none found: pass --config FILE (looked for config/{name} here and next to the host binary)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
