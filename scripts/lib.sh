# Shared by setup.sh and test.sh: make sure a wasm32-wasip2 toolchain exists,
# then build the host and every component. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The plugin crates and the test fixtures, built as components.
COMPONENT_PACKAGES=(
  csv-data parquet-data synthetic-data sma trend-vol-regime sma-crossover fixed-fraction sim-execution
  twap-execution
)
if [ -d tests/fixtures ]; then
  for manifest in tests/fixtures/*/Cargo.toml; do
    [ -f "$manifest" ] || continue
    COMPONENT_PACKAGES+=("$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)")
  done
fi

# How to build for wasm32-wasip2: rustup's target if it can be installed,
# otherwise Debian's Rust with the std sources (see ../shared/TOOLCHAIN.md).
WASM_MODE=""
ensure_wasm_toolchain() {
  if [ -z "${STRATA_FORCE_TOOLCHAIN_FALLBACK:-}" ] && command -v rustup >/dev/null; then
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 \
       || rustup target add wasm32-wasip2 >&2; then
      WASM_MODE=rustup
      return
    fi
    say "rustup could not install wasm32-wasip2; falling back to Debian's Rust toolchain"
  fi
  if [ ! -x /usr/bin/cargo ] || [ ! -d /usr/lib/wasm32-wasi ] || ! dpkg -s rust-web-src >/dev/null 2>&1; then
    say "installing Debian's rustc-web, rust-web-src, lld and wasi-libc"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc >&2
  fi
  WASM_MODE=debian
}

build_components() {
  local args=()
  for p in "${COMPONENT_PACKAGES[@]}"; do args+=(-p "$p"); done
  say "building ${#COMPONENT_PACKAGES[@]} components for wasm32-wasip2 ($WASM_MODE toolchain)"
  if [ "$WASM_MODE" = rustup ]; then
    cargo build --locked --release --target wasm32-wasip2 "${args[@]}"
  else
    # Rustup's cargo and rustc proxies come first on PATH: name Debian's explicitly.
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
      /usr/bin/cargo build --locked --release --target wasm32-wasip2 \
      -Zbuild-std=std,panic_abort "${args[@]}"
  fi
}

build_host() {
  say "building the host (release; the first build compiles wasmtime, a few minutes on 2 cores)"
  cargo build --locked --release -p host
  # The local Coinbase Advanced Trade the live-mode tests trade against.
  cargo build --locked --release -p coinbase-sim
}

build_all() {
  ensure_wasm_toolchain
  build_components
  build_host
}

# The rehearsal of the next compatible interface (docs/versioning.md): wit/
# with its version bumped to NEXT_INTERFACE_VERSION and one interface added,
# written to target/next-interface/wit, and the host built against it as
# target/release/host-next-interface (only the host crate is recompiled).
# host/src/bindings.rs and host/src/runtime/mod.rs name the same version.
NEXT_INTERFACE_VERSION=0.1.2
build_host_next_interface() {
  local out=target/next-interface/wit staging
  staging="$(mktemp -d)"
  local current
  current="$(sed -n 's/^package strata:plugin@\(.*\);$/\1/p' wit/types.wit)"
  for f in wit/*.wit; do
    sed "s/^package strata:plugin@$current;\$/package strata:plugin@$NEXT_INTERFACE_VERSION;/" "$f" >"$staging/$(basename "$f")"
  done
  cat >"$staging/progress.wit" <<WIT
package strata:plugin@$NEXT_INTERFACE_VERSION;

/// New in $NEXT_INTERFACE_VERSION: a compatible change adds interfaces and
/// leaves every existing one as it was.
interface progress {
    /// How much of a long \`init\` is done, from 0 to 1.
    report: func(fraction: f64);
}
WIT
  mkdir -p "$out"
  # Rewrite only what changed, so cargo does not rebuild the host for nothing.
  for f in "$staging"/*.wit; do
    cmp -s "$f" "$out/$(basename "$f")" || cp "$f" "$out/"
  done
  rm -rf "$staging"
  say "building host-next-interface (the host against strata:plugin@$NEXT_INTERFACE_VERSION)"
  cargo build --locked --release -p host --features next-interface --bin host-next-interface
}

# componentize-py, from PyPI into a virtualenv under target/, for the test
# that builds a slice written in Python (tests/fixtures/python-strategy).
COMPONENTIZE_PY_VERSION=0.25.1
PYTHON_VENV=target/python-venv
ensure_componentize_py() {
  if "$PYTHON_VENV/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
    return
  fi
  say "installing componentize-py $COMPONENTIZE_PY_VERSION into $PYTHON_VENV"
  if ! python3 -m venv --clear "$PYTHON_VENV" >&2; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
    python3 -m venv --clear "$PYTHON_VENV" >&2
  fi
  "$PYTHON_VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
}
