#!/usr/bin/env bash
# build-web.sh: build the browser package.
#   cargo (wasm64, std built from source) -> wasm-bindgen --target web -> binaryen wasm-opt:
#     www/pkg/wasm64/  -O3                                   (Chromium with memory64 + table64)
#     www/pkg/wasm32/  --memory64-lowering --table64-lowering -O3  (every other engine, Node 20)
# Both directories hold the same JS glue (tci64_web.js); only the .wasm differs.
# Lowering must come after wasm-bindgen: a module lowered before it fails to compile.
# It also copies the bundled guest into www/dist/guest/ (gitignored) for the page, and builds the
# pre-booted state the package ships in www/pkg/guest/ (see below).
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

# The pre-booted state: the native CLI boots the bundled guest on exactly the machine the page
# creates (www/app.js: microvm with the disk announced on the command line, 128 MiB, the page's
# default command line, the disk as virtio-blk; the web build keeps the disk under a
# copy-on-write overlay, as snapshot=on does here) and saves at the shell prompt. Real time, as
# the page runs. pkg/guest/: tiny.snapshot, the disk it needs, and the console output up to the
# save (the page shows it, so the restored terminal looks like a fresh boot's).
cargo build --bin tci64
cli=$target_dir/debug/tci64
state_dir=$out/guest
rm -rf "$state_dir"
mkdir -p "$state_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gzip -dc guest/disk.ext2.gz > "$work/disk.ext2"
t0=$(date +%s.%N)
"$cli" -M microvm,acpi=off -m 128M -nographic \
  -kernel guest/tiny.bzImage -initrd guest/initramfs.cpio.gz -append 'console=ttyS0 panic=-1 reboot=t' \
  -drive "id=d0,file=$work/disk.ext2,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=d0 \
  --save-on-output 'guest# ' "$state_dir/tiny.snapshot" < /dev/null > "$state_dir/tiny.console" 2> "$work/stderr" || {
    cat "$work/stderr" >&2; echo "build-web: the pre-booted state could not be built" >&2; exit 1; }
grep -q 'guest# ' "$state_dir/tiny.console" && [ -s "$state_dir/tiny.snapshot" ] || {
  cat "$work/stderr" >&2; echo "build-web: the CLI did not save at the prompt" >&2; exit 1; }
echo "build-web: pre-booted state: boot + save $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $t0 }") s; $(tr -d '\r' < "$work/stderr" | grep -v '^$' | tail -1)"
cp guest/disk.ext2.gz "$state_dir/"

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
size "$state_dir/tiny.snapshot"
