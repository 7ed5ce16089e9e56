//! The strategy host: runs trading strategies built from six sandboxed
//! WebAssembly slices. The `host` binary is [`main`]; so is
//! `host-next-interface`, the same program built against the next compatible
//! interface version (docs/versioning.md).
//!
//! The public modules are the backtest loop and its domain types, for the
//! benchmark's native floor (`bench/`), which runs the same loop over the
//! plugin crates compiled natively. They are not a stable API.

pub mod account;
mod barfile;
mod bindings;
mod cli;
pub mod clock;
pub mod config;
#[cfg(test)]
mod config_fuzz;
mod excerpt;
mod fetch;
pub mod files;
mod live;
mod metrics;
pub mod model;
mod optimize;
pub mod orchestrator;
mod paper;
pub mod portfolio;
pub mod report;
pub mod risk;
mod runtime;
mod session;
pub mod slice;
pub mod text;
pub mod time;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Parses the command line, runs the command, and prints the error chain on
/// failure. Both binaries are this function.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();

    match cli::execute(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
