#!/usr/bin/env bash
# Measures how long the host takes to get each component ready: compiling it
# (cold: an empty compiled-component cache) and loading it from the cache
# (cached), as `host plugin inspect --json` reports it (`compile_ms`), for the
# six components of config/default.toml and the Python strategy; then the
# load phase of a whole backtest (`timing.load_ms` in summary.json), cold and
# cached. Prints the median of RUNS runs (default 5).
#
#   ./scripts/measure-start.sh [RUNS]
#
# Needs what ./scripts/test.sh builds and installs (host, components, componentize-py).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
host=target/release/host
release=target/wasm32-wasip2/release
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python="$work/py_dip_buyer.wasm"
tests/fixtures/python-strategy/build.sh "$python" target/python-venv/bin/componentize-py >/dev/null

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.1f}")' "$@"; }
compile_ms() { STRATA_CACHE_DIR="$1" "$host" plugin inspect --json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["compile_ms"])'; }

printf '%-26s %12s %12s   (median of %s runs, ms)\n' component cold cached "$runs"
for file in csv_data sma trend_vol_regime sma_crossover fixed_fraction sim_execution "$python"; do
  [ -f "$file" ] || file="$release/$file.wasm"
  cold=() cached=()
  for _ in $(seq "$runs"); do
    cache="$(mktemp -d -p "$work")"
    cold+=("$(compile_ms "$cache" "$file")")
    cached+=("$(compile_ms "$cache" "$file")")
  done
  printf '%-26s %12s %12s\n' "$(basename "$file")" "$(median "${cold[@]}")" "$(median "${cached[@]}")"
done

data="$(cd ../shared/data 2>/dev/null && pwd || true)"
if [ -n "$data" ]; then
  cold=() cached=()
  for i in $(seq "$runs"); do
    cache="$(mktemp -d -p "$work")"
    for phase in cold cached; do
      out="$work/run-$i-$phase"
      STRATA_CACHE_DIR="$cache" "$host" run --symbols BTC-USD-1d --data-dir "$data" --out "$out" >/dev/null
      ms="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timing"]["load_ms"])' "$out/summary.json")"
      if [ "$phase" = cold ]; then cold+=("$ms"); else cached+=("$ms"); fi
    done
  done
  printf '%-26s %12s %12s\n' "backtest load (6 slices)" "$(median "${cold[@]}")" "$(median "${cached[@]}")"
fi
