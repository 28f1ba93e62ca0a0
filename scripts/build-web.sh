#!/usr/bin/env bash
# build-web.sh: build the browser package.
#   cargo (wasm64, std built from source) -> wasm-bindgen --target web -> binaryen wasm-opt:
#     www/pkg/wasm64/  -O3                                   (Chromium with memory64 + table64)
#     www/pkg/wasm32/  --memory64-lowering --table64-lowering -O3  (every other engine, Node 20)
# Both directories hold the same JS glue (tci64_web.js); only the .wasm differs.
# Lowering must come after wasm-bindgen: a module lowered before it fails to compile.
# It also copies the bundled guest into www/dist/guest/ (gitignored) for the page.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

[ "${TCI64_SKIP_SETUP:-}" = 1 ] || bash scripts/setup.sh

target_dir=${CARGO_TARGET_DIR:-target}
cargo build-wasm64 -p tci64-web
raw=$target_dir/wasm64-unknown-unknown/release/tci64_web.wasm

out=www/pkg
rm -rf "$out/wasm64" "$out/wasm32"
mkdir -p "$out/wasm64" "$out/wasm32"
wasm-bindgen --target web --out-dir "$out/wasm64" "$raw"

wasm_opt=www/node_modules/.bin/wasm-opt
bg=tci64_web_bg.wasm
cp "$out/wasm64/tci64_web.js" "$out/wasm32/"
cp "$out/wasm64/tci64_web.d.ts" "$out/wasm32/" 2>/dev/null || true
"$wasm_opt" --memory64-lowering --table64-lowering -O3 "$out/wasm64/$bg" -o "$out/wasm32/$bg"
"$wasm_opt" -O3 "$out/wasm64/$bg" -o "$out/wasm64/$bg.opt"
mv "$out/wasm64/$bg.opt" "$out/wasm64/$bg"

mkdir -p www/dist/guest
cp guest/tiny.bzImage guest/initramfs.cpio.gz guest/disk.ext2.gz www/dist/guest/

size() { printf '%-36s %9d bytes, %8d gzipped\n' "$1" "$(wc -c < "$1")" "$(gzip -9 -c "$1" | wc -c)"; }
echo "build-web: wasm artifacts"
size "$raw"
size "$out/wasm64/$bg"
size "$out/wasm32/$bg"
size "$out/wasm64/tci64_web.js"
size www/src/index.js
size www/src/loader.js
size www/src/runner.js
size www/src/worker.js
