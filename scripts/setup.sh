#!/usr/bin/env bash
# setup.sh: install what a fresh machine lacks for building and testing tci64. Idempotent and
# quick when everything is there already.
#   - the pinned Rust toolchain of rust-toolchain.toml (RUSTUP_AUTO_INSTALL=0 machines need this)
#   - wasm-bindgen-cli at the exact version the web crate pins (a ~5 minute build, only if missing)
#   - www/node_modules (binaryen's wasm-opt, xterm.js, playwright-core), from package-lock.json
#   - Debian's chromium for the browser tests (/usr/bin/chromium), only if missing
#   - Debian's acpica-tools (iasl: the DSDT test disassembles our tables), only if missing
#   - Debian's gdb for the GDB stub's tests, only if missing
#   - Debian's stock kernel + an initramfs with its modules in .cache/debian/ (the loader tests
#     and the Debian boot cases), through apt: scripts/fetch-debian-kernel.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WASM_BINDGEN_VERSION=0.2.130

rustup toolchain install --no-self-update

if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  echo "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (takes a few minutes)"
  # Not --locked: the registry copy here lacks one of its pinned dependency versions.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

if [ ! -x www/node_modules/.bin/wasm-opt ] || [ ! -d www/node_modules/playwright-core ] || [ www/package-lock.json -nt www/node_modules/.package-lock.json ]; then
  (cd www && npm ci --no-audit --no-fund)
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium (browser tests)"
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y chromium || { $sudo apt-get update && $sudo apt-get install -y chromium; }
fi

if ! command -v iasl >/dev/null; then
  echo "setup: installing acpica-tools (iasl, for the ACPI table tests)"
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y acpica-tools || { $sudo apt-get update && $sudo apt-get install -y acpica-tools; }
fi

if ! command -v gdb >/dev/null 2>&1; then
  echo "setup: installing gdb (the GDB stub's tests)"
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y gdb || { $sudo apt-get update && $sudo apt-get install -y gdb; }
fi

bash scripts/fetch-debian-kernel.sh
