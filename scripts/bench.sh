#!/usr/bin/env bash
# Builds the host and the components, then runs the benchmark: the default
# six-slice chain end to end (1 symbol x 1,000,000 bars generated and from
# CSV, 10 and 100 symbols x 100,000 bars), the same logic compiled natively as
# the floor, where each bar's time goes per slice, cold and warm start-up, and
# peak memory. Prints the figures and writes them to target/bench/chain.json.
#
#   ./scripts/bench.sh [--runs N] [--quick] [--json FILE]
#
# About 4 minutes on 2 cores with the default 5 runs, after the build.
source "$(dirname "$0")/lib.sh"

build_all

say "running the benchmark"
cargo bench --locked -p strata-bench -- "$@"
