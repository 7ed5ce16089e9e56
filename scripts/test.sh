#!/usr/bin/env bash
# Runs every test: formatting and lints, the unit tests of every crate, and
# the integration tests, which drive the real host binary on real components
# (built here first) and on the data in ../shared/data.
source "$(dirname "$0")/lib.sh"

build_all
build_host_next_interface
# The shipped configs read data/, which setup.sh fills; a fresh clone has none.
if ! ls data/*.csv >/dev/null 2>&1; then
  say "writing the sample data: data/BTC-USD.csv (SYNTHETIC, as setup.sh does)"
  mkdir -p data
  target/release/host data export --config config/synthetic.toml --symbols BTC-USD --out data >&2
fi
ensure_componentize_py

say "checking formatting"
cargo fmt --all -- --check

say "running clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets --release -- -D warnings

say "running the tests"
cargo test --locked --release --workspace "$@"
