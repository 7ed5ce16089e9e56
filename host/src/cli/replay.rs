//! `host replay`: a paper session's audit log through the backtest engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The session's audit log (`<run folder>/audit.jsonl`).
    pub audit: PathBuf,
    /// Differences to print at most.
    #[arg(long, default_value_t = 10)]
    pub show: usize,
}

pub fn execute(args: ReplayArgs) -> Result<ExitCode> {
    let report = crate::paper::replay::replay(&args.audit)?;
    println!(
        "Replayed {} bars ({} decisions) of {} through the backtest engine, {} config version(s)",
        report.steps, report.decisions, report.symbols, report.generations
    );
    if report.differences.is_empty() {
        println!("  identical: every decision, order, fill and equity value matches the paper session");
        return Ok(ExitCode::SUCCESS);
    }
    println!("  {} step(s) differ:", report.differing_steps);
    for d in report.differences.iter().take(args.show) {
        println!("  - {d}");
    }
    Ok(ExitCode::FAILURE)
}
