#!/usr/bin/env bash
# Runs every test: formatting and lints, the unit tests of every crate, and
# the integration tests, which drive the real host binary on real components
# (built here first) and on the data in ../shared/data.
source "$(dirname "$0")/lib.sh"

build_all
build_host_next_interface
ensure_componentize_py

say "checking formatting"
cargo fmt --all -- --check

say "running clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets --release -- -D warnings

say "running the tests"
cargo test --locked --release --workspace "$@"
