#!/usr/bin/env bash
# test.sh: everything CI checks, in order. Run from anywhere: bash scripts/test.sh
#   fmt -> clippy (deny warnings) -> wasm64 build of every crate -> web package + node tests
#   (smoke + the JS API booting the guest on the lowered build) -> headless Chromium end to end
#   on both builds -> cargo test --workspace (last, so its summary closes the output)
#   bash scripts/test.sh [PHASE...]   only the named phases
#     (fmt clippy wasm64 web node-test browser cargo-test)
# Set TCI64_SKIP_SETUP=1 to skip scripts/setup.sh (CI runs it first itself).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ "${TCI64_SKIP_SETUP:-}" = 1 ] || bash scripts/setup.sh
export TCI64_SKIP_SETUP=1

only=" $* "
timings=()
phase() {
  local name=$1; shift
  [ "$only" = "  " ] || [[ $only == *" $name "* ]] || return 0
  echo "==> $name: $*"
  local t0=$SECONDS
  "$@"
  timings+=("$(printf '%-14s %4ds' "$name" $((SECONDS - t0)))")
}

phase fmt cargo fmt --all --check
phase clippy cargo clippy --workspace --all-targets -- -D warnings
phase wasm64 cargo build-wasm64 -p tci64-engine -p tci64-x86 -p tci64-devices -p tci64-machine -p tci64-web
phase web bash scripts/build-web.sh
# node-test builds the CLI first (the same binary cargo-test builds) for the parity test.
export TCI64_CLI="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/tci64"
phase node-test bash -c 'cargo build --bin tci64 && cd www && npm test --silent'
phase browser bash -c 'cd www && npm run --silent test:browser'
phase cargo-test cargo test --workspace

echo "==> phase timings"
printf '  %s\n' "${timings[@]}"
