#!/usr/bin/env bash
# Trials per second of optimize mode on the reference chain (the components
# and settings of config/optimize.toml), over a grid of 1,606 SMA pairs:
# fast 2..60 step 1, slow 20..300 step 10, fast < slow. Two scenarios from
# ../shared/data: 4 years of daily BTC bars (2020-2023) and 1 year of hourly
# BTC bars (2021). Prints the median of --runs runs [min - max], both the
# trial phase (what `host optimize` reports) and the whole process.
#
#   ./scripts/bench-optimize.sh            # 5 runs of each
#   ./scripts/bench-optimize.sh --runs 3 --threads 1
source "$(dirname "$0")/lib.sh"

runs=5
threads=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--threads N]" >&2; exit 2 ;;
  esac
done

build_all
data="$(cd "$ROOT/.." && pwd)/shared/data"
[ -f "$data/BTC-USD-1d.csv" ] || { echo "no shared data at $data" >&2; exit 1; }
work="$(mktemp -d)"

config="$ROOT/config/.bench-optimize.toml.tmp"
trap 'rm -rf "$work" "$config"' EXIT
sed -e 's/^fast = .*/fast = { from = 2, to = 60, step = 1 }/' \
    -e 's/^slow = .*/slow = { from = 20, to = 300, step = 10 }/' \
    config/optimize.toml > "$config"

median() { sort -g | awk '{ a[NR] = $1 } END { printf "%.0f [%.0f - %.0f]", a[int((NR + 1) / 2)], a[1], a[NR] }'; }

scenario() {
  local name="$1" symbol="$2" from="$3" to="$4"
  local phase="$work/$name.phase" whole="$work/$name.whole"
  : > "$phase"; : > "$whole"
  for i in $(seq "$runs"); do
    rm -rf "$work/out"
    local t0 t1
    t0=$(date +%s.%N)
    target/release/host optimize --config "$config" --symbols "$symbol" --data-dir "$data" \
      --from "$from" --to "$to" --threads "$threads" --out "$work/out" --quiet
    t1=$(date +%s.%N)
    sed -n 's/.*"trials_per_second": \([0-9.e+]*\).*/\1/p' "$work/out/summary.json" >> "$phase"
    local trials
    trials=$(sed -n 's/.*"finished": \([0-9]*\).*/\1/p' "$work/out/summary.json" | head -1)
    awk -v n="$trials" -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }' >> "$whole"
  done
  printf '%-34s %6s trials  %-24s %s\n' "$name" "$trials" "$(median < "$phase")" "$(median < "$whole")"
}

say "optimize mode: $runs runs each, threads=$threads (0 = one per core), $(nproc) cores"
printf '%-34s %13s  %-24s %s\n' "scenario" "" "trials/s (trial phase)" "trials/s (whole process)"
scenario "BTC-USD-1d, 2020-2023 (daily)" BTC-USD-1d 2020-01-01 2023-12-31
scenario "BTC-USD-1h, 2021 (hourly)" BTC-USD-1h 2021-01-01 2021-12-31
