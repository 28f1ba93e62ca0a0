// The JS API (src/index.js) on the lowered wasm32 build in Node (Node 20 lacks memory64), with
// `worker: false`: boot the bundled guest with guest.test=1 and its disk, see GUEST-TEST-DONE,
// read the disk back. Needs scripts/build-web.sh first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Tci64, detectBuild, resolveBuild } from '../src/index.js';

const www = join(dirname(fileURLToPath(import.meta.url)), '..');
const guest = (name) => readFileSync(join(www, '..', 'guest', name));
const built = existsSync(join(www, 'pkg', 'wasm32', 'tci64_web_bg.wasm'));

function contains(hay, needle) {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).includes(Buffer.from(needle));
}

test('Node 20 picks the lowered build; forcing wasm64 there is a clear error', () => {
  assert.equal(detectBuild(), 'wasm32');
  assert.equal(resolveBuild('wasm32'), 'wasm32');
  assert.throws(() => resolveBuild('wasm64'), /memory64/);
  assert.throws(() => resolveBuild('wasm16'), /unknown build/);
});

test('bad inputs reject with an Error and a message', { skip: !built && 'run scripts/build-web.sh' }, async () => {
  await assert.rejects(Tci64.create({ worker: false }), /kernel is required/);
  await assert.rejects(
    Tci64.create({ worker: false, kernel: new Uint8Array(8192).fill(0x55), memoryMiB: 64 }),
    (e) => e instanceof Error && /^tci64: /.test(e.message) && e.message.length > 10,
  );
  await assert.rejects(
    Tci64.create({ worker: false, build: 'wasm32', kernel: guest('tiny.bzImage'), memoryMiB: 8192 }),
    (e) => e instanceof Error && /4 GiB/.test(e.message),
  );
});

test('the tiny guest passes its disk test through the JS API (wasm32 build)', { skip: !built && 'run scripts/build-web.sh', timeout: 300_000 }, async () => {
  let out = '';
  let statsSeen = 0;
  const decoder = new TextDecoder();
  let exited;
  const done = new Promise((resolve) => { exited = resolve; });
  const vm = await Tci64.create({
    worker: false,
    build: 'auto',
    kernel: guest('tiny.bzImage'),
    initrd: guest('initramfs.cpio.gz'),
    disk: gunzipSync(guest('disk.ext2.gz')),
    cmdline: 'console=ttyS0 panic=-1 reboot=t guest.test=1',
    memoryMiB: 128,
    onSerial: (bytes) => { out += decoder.decode(bytes, { stream: true }); },
    onStats: () => { statsSeen++; },
    onExit: exited,
  });
  assert.equal(vm.build, 'wasm32');
  assert.match(vm.version, /^\d+\.\d+\.\d+$/);
  const t0 = performance.now();
  vm.start();
  let timer;
  const reason = await Promise.race([done, new Promise((r) => { timer = setTimeout(() => r('timeout'), 280_000); })]);
  clearTimeout(timer);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  assert.equal(reason, 'reset', `the guest did not exit (${reason}) after ${secs} s:\n${out}`);
  assert.match(out, /GUEST-BOOT-OK/);
  assert.match(out, /DISK: hello from virtio-blk/);
  assert.match(out, /GUEST-TEST-DONE/, out);
  const stats = await vm.stats();
  assert.ok(stats.instructions > 100_000_000, `instructions: ${stats.instructions}`);
  assert.equal(stats.exited, 'reset');
  assert.ok(statsSeen > 0);
  const disk = await vm.disk();
  assert.ok(disk instanceof Uint8Array);
  assert.equal(disk.length, 16 << 20);
  assert.ok(contains(disk, 'written-by-guest'), "written.txt's content is not in the disk image");
  await vm.stop();
  console.log(`# wasm32 in Node: guest test done in ${secs} s, ${(stats.instructions / 1e6).toFixed(0)} M instructions`);
});
