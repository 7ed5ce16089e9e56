//! `cargo bench -p strata-bench [-- --runs N --quick --json FILE]`: the
//! default chain end to end, sandboxed and native (see `bench/src/lib.rs`).

use std::process::ExitCode;

use strata_bench::suite::{self, Options};

fn main() -> ExitCode {
    let options = match Options::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match suite::run(&options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", suite::render(&report));
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    if let Err(e) = std::fs::write(&options.json, json) {
        eprintln!("error: cannot write {}: {e}", options.json.display());
        return ExitCode::FAILURE;
    }
    println!("\nfigures written to {}", options.json.display());
    if !report.agrees() {
        eprintln!("error: the sandboxed and native chains made different trades");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
