//! Integration tests: the real `host` binary on real components and real data.
//! Build everything first: `./scripts/test.sh` does, then runs these.

mod backtest;
mod bad_input;
mod cli;
mod data_fetch;
mod data_formats;
mod live;
mod optimize;
mod orders;
mod paper;
mod plugin_authoring;
mod report;
mod sandbox;
mod trust_inputs;
mod trust_money;
mod trust_records;
mod trust_sandbox;
mod trust_truth;
mod venue;
