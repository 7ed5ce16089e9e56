#!/usr/bin/env bash
# Runs every test: formatting and lints, the unit tests of every crate, and
# the integration tests, which drive the real host binary on real components
# (built here first) and on the data in ../shared/data.
source "$(dirname "$0")/lib.sh"

build_all
build_host_next_interface
ensure_componentize_py

# config/default.toml grants ../data, which setup.sh fills with the sample
# data; a fresh clone that only runs this script needs it too.
if [ ! -f data/BTC-USD.csv ]; then
  say "writing the sample data: data/BTC-USD.csv (SYNTHETIC)"
  mkdir -p data
  target/release/host data export --config config/synthetic.toml --symbols BTC-USD --out data >&2
fi

# The report test opens report.html in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null; then
  say "installing Debian's chromium for the report test"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
fi

say "checking formatting"
cargo fmt --all -- --check

say "running clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets --release -- -D warnings

say "running the tests"
cargo test --locked --release --workspace --no-fail-fast "$@"
