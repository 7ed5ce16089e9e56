#!/usr/bin/env bash
# Runs every test: formatting and lints, the unit tests of every crate, and
# the integration tests, which drive the real host binary on real components
# (built here first) and on the data in ../shared/data.
source "$(dirname "$0")/lib.sh"

build_all

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
cargo test --locked --release --workspace "$@"
