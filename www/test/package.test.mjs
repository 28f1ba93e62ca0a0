// `npm pack` makes an installable tarball holding src/, both builds and the pre-booted state;
// installed into a fresh folder, `import 'tci64'` works in Node, picks the lowered build and
// finds the shipped state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const www = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = existsSync(join(www, 'pkg', 'wasm32', 'tci64_web_bg.wasm'));
const npm = (args, cwd) => spawnSync('npm', args, { cwd, encoding: 'utf8' });

test('npm pack holds both builds and installs', { skip: !built && 'run scripts/build-web.sh', timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tci64-pack-'));
  try {
    const p = npm(['pack', '--json', '--pack-destination', dir], www);
    assert.equal(p.status, 0, p.stderr);
    const [info] = JSON.parse(p.stdout);
    const files = info.files.map((f) => f.path);
    for (const f of ['src/index.js', 'src/index.d.ts', 'src/loader.js', 'src/runner.js', 'src/worker.js',
      'pkg/wasm64/tci64_web_bg.wasm', 'pkg/wasm64/tci64_web.js', 'pkg/wasm32/tci64_web_bg.wasm', 'pkg/wasm32/tci64_web.js',
      'pkg/guest/tiny.snapshot', 'pkg/guest/tiny.console', 'pkg/guest/disk.ext2.gz']) {
      assert.ok(files.includes(f), `${f} is not in the tarball: ${files.join(', ')}`);
    }
    assert.ok(!files.some((f) => f.startsWith('node_modules/') || f.startsWith('dist/') || f.startsWith('e2e/')));
    const app = join(dir, 'app');
    writeFileSync(join(dir, 'package.json'), '{}');
    const i = npm(['install', '--no-audit', '--no-fund', '--offline', '--prefix', app, join(dir, info.filename)], dir);
    assert.equal(i.status, 0, i.stderr);
    writeFileSync(join(app, 'check.mjs'), `
      import { Tci64, detectBuild, bundledState } from 'tci64';
      const err = await Tci64.create({ worker: false, kernel: new Uint8Array(4096) }).catch((e) => e);
      const { state, disk } = await bundledState();
      const head = new TextDecoder().decode(state.subarray(0, 8));
      console.log(JSON.stringify({ build: detectBuild(), error: err instanceof Error ? err.message : null, head, disk: disk.length }));
    `);
    const r = spawnSync(process.execPath, ['check.mjs'], { cwd: app, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop());
    assert.equal(out.build, 'wasm32');
    assert.match(out.error ?? '', /^tci64: /);
    assert.equal(out.head, 'TCI64SNP');
    assert.equal(out.disk, 16 << 20);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
