//! The benchmark: how fast the default six-slice chain runs, sandboxed, and
//! what the sandbox costs against the same logic compiled natively.
//!
//! `./scripts/bench.sh` builds everything and runs it (`cargo bench -p
//! strata-bench`). It prints a table and writes the figures to
//! `target/bench/chain.json`, so runs can be compared.
//!
//! - [`suite`] runs the real `host` binary on generated configs, one process
//!   per run, and reads each run's `summary.json` timing and slice health;
//! - [`native`] runs the same host loop in this process over the plugin crates
//!   compiled natively: the floor.

pub mod native;
pub mod stats;
pub mod suite;
