// Smoke test of the built web package (scripts/build-web.sh first).
// Node 20 cannot run wasm64 (its V8 lacks 64-bit tables), so: the lowered wasm32 module runs
// through the wasm-bindgen glue; the wasm64 module is checked structurally and by binaryen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const www = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = (flavor, file) => join(www, 'pkg', flavor, file);
const cargoVersion = readFileSync(join(www, '..', 'Cargo.toml'), 'utf8')
  .match(/\[workspace\.package\][^[]*?version\s*=\s*"([^"]+)"/)[1];

function needBuild(path) {
  assert.ok(existsSync(path), `${path} is missing: run scripts/build-web.sh first`);
}

// Limits flags of the first memory the module defines or imports (bit 2 = 64-bit).
function memoryFlags(bytes) {
  const u = new Uint8Array(bytes);
  let p = 8;
  const leb = () => {
    let r = 0, s = 0, b;
    do { b = u[p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
    return r;
  };
  const name = () => { const n = leb(); p += n; };
  while (p < u.length) {
    const id = u[p++];
    const size = leb();
    const end = p + size;
    if (id === 2) { // imports
      for (let n = leb(); n > 0; n--) {
        name(); name();
        const kind = u[p++];
        if (kind === 2) return u[p];
        if (kind === 0) leb();
        else if (kind === 1) { p++; const f = u[p++]; leb(); if (f & 1) leb(); }
        else if (kind === 3) p += 2;
        else if (kind === 4) { p++; leb(); }
      }
    } else if (id === 5 && leb() > 0) { // memories
      return u[p];
    }
    p = end;
  }
  return undefined;
}

test('the lowered (wasm32) module runs through the wasm-bindgen glue', async () => {
  const wasm = pkg('wasm32', 'tci64_web_bg.wasm');
  needBuild(wasm);
  const bytes = readFileSync(wasm);
  assert.equal(memoryFlags(bytes) & 4, 0, 'the lowered module still has a 64-bit memory');
  const glue = await import(pkg('wasm32', 'tci64_web.js'));
  glue.initSync({ module: bytes });
  assert.equal(glue.version(), cargoVersion);
});

test('the wasm64 module is a valid memory64 module', () => {
  const wasm = pkg('wasm64', 'tci64_web_bg.wasm');
  needBuild(wasm);
  const bytes = readFileSync(wasm);
  assert.equal(memoryFlags(bytes) & 4, 4, 'expected a 64-bit memory');
  const wasmOpt = join(www, 'node_modules', '.bin', 'wasm-opt');
  const r = spawnSync(wasmOpt, [wasm, '-o', '/dev/null'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `wasm-opt rejected it:\n${r.stderr}`);
});

test('both flavours share one glue file', () => {
  const a = readFileSync(pkg('wasm64', 'tci64_web.js'), 'utf8');
  const b = readFileSync(pkg('wasm32', 'tci64_web.js'), 'utf8');
  assert.equal(a, b);
});
