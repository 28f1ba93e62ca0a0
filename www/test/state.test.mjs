// Snapshots through the JS API on the lowered wasm32 build in Node (`worker: false`):
//   - the shipped pre-booted state (pkg/guest/, built by scripts/build-web.sh with the native
//     CLI) resumes at the shell prompt and answers `echo hi`; saveState() of the running VM
//     resumes in a second VM, which answers too;
//   - bad states reject with clear errors, including one whose RAM does not fit the wasm32 build;
//   - native save -> wasm32 restore under icount gives the native CLI's serial output and disk
//     byte for byte (the CLI saves in the middle of the guest's disk test).
// Needs scripts/build-web.sh and the tci64 CLI: $TCI64_CLI (scripts/test.sh sets it), else the
// newer of tci64 under $CARGO_TARGET_DIR (or ../target) in release/ or debug/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { Tci64, bundledState } from '../src/index.js';

const www = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(www, '..');
const guestPath = (name) => join(repo, 'guest', name);
const targetDir = resolve(repo, process.env.CARGO_TARGET_DIR ?? 'target');
const cli = process.env.TCI64_CLI ?? [join(targetDir, 'release', 'tci64'), join(targetDir, 'debug', 'tci64')]
  .filter((p) => existsSync(p))
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];

function needBuilt() {
  for (const f of ['wasm32/tci64_web_bg.wasm', 'guest/tiny.snapshot', 'guest/disk.ext2.gz', 'guest/tiny.console']) {
    assert.ok(existsSync(join(www, 'pkg', f)), `pkg/${f} is missing: run scripts/build-web.sh first`);
  }
}
function needCli() {
  assert.ok(cli && existsSync(cli), `no tci64 CLI binary (${cli ?? 'none found'}): cargo build --bin tci64, or set TCI64_CLI`);
}
function runCli(args) {
  const r = spawnSync(cli, args, { maxBuffer: 1 << 26, timeout: 300_000, stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(r.status, 0, `${cli} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r;
}

/** A VM on the calling thread whose serial output is collected; `until(re)` waits for it. */
async function machine(opts) {
  let out = Buffer.alloc(0);
  const waiters = [];
  let exited;
  const exit = new Promise((ok) => { exited = ok; });
  const vm = await Tci64.create({
    worker: false, build: 'wasm32', ...opts,
    onSerial: (b) => {
      out = Buffer.concat([out, Buffer.from(b)]);
      for (const w of [...waiters]) if (w.re.test(out.toString('latin1'))) { waiters.splice(waiters.indexOf(w), 1); w.ok(); }
    },
    onExit: exited,
  });
  const until = (re, ms = 60_000) => new Promise((ok, fail) => {
    if (re.test(out.toString('latin1'))) return ok();
    const t = setTimeout(() => fail(new Error(`timed out waiting for ${re}; output:\n${out.toString('latin1').slice(-2000)}`)), ms);
    waiters.push({ re, ok: () => { clearTimeout(t); ok(); } });
  });
  return { vm, until, exit, get out() { return out; } };
}

test('the shipped state resumes at the prompt and answers; saveState() resumes in a second VM (wasm32)', { timeout: 180_000 }, async () => {
  needBuilt();
  const { state, disk, console: log } = await bundledState();
  assert.match(Buffer.from(log).toString('latin1'), /GUEST-BOOT-OK[\s\S]*guest# /);
  const t0 = performance.now();
  const a = await machine({ state, disk });
  const restoreMs = performance.now() - t0;
  assert.equal(a.vm.build, 'wasm32');
  a.vm.start();
  const t1 = performance.now();
  a.vm.serialWrite('echo hi\n');
  await a.until(/\nhi\r\n/);
  const answerMs = performance.now() - t1;
  assert.ok((await a.vm.stats()).instructions > 50_000_000, 'the restored VM does not continue the boot');

  // The running VM saves; a second VM resumes from that, with the same original disk.
  a.vm.pause();
  const t2 = performance.now();
  const again = await a.vm.saveState();
  const saveMs = performance.now() - t2;
  assert.ok(again instanceof Uint8Array && again.length > 1 << 20, `saveState returned ${again?.length} bytes`);
  assert.equal(Buffer.from(again.subarray(0, 8)).toString('latin1'), 'TCI64SNP');
  await a.vm.stop();
  const b = await machine({ state: again, disk });
  b.vm.start();
  b.vm.serialWrite('echo "two $((1+1))"\n');
  await b.until(/two 2\r?\n/);
  assert.ok(!b.out.includes('GUEST-BOOT-OK'), 'the second VM booted instead of resuming');
  await b.vm.stop();
  console.log(`# wasm32 in Node: shipped state ${state.length} bytes restored in ${restoreMs.toFixed(0)} ms, ` +
    `'echo hi' answered in ${answerMs.toFixed(0)} ms; saveState ${again.length} bytes in ${saveMs.toFixed(0)} ms`);
});

test('bad states reject with clear errors, and a state too large for the wasm32 build is refused', { timeout: 180_000 }, async () => {
  needBuilt();
  needCli();
  const { state, disk } = await bundledState();
  const reject = (opts, re) => assert.rejects(Tci64.create({ worker: false, build: 'wasm32', ...opts }),
    (e) => e instanceof Error && re.test(e.message) && /^tci64: cannot restore the state: /.test(e.message) ? true : assert.fail(e.message));
  await reject({ state: state.subarray(0, 1000), disk }, /truncated/);
  const flipped = state.slice();
  flipped[flipped.length >> 1] ^= 0x20;
  await reject({ state: flipped, disk }, /corrupt/);
  const other = state.slice();
  other.set([7, 0, 0, 0], 8);
  await reject({ state: other, disk }, /format version 7/);
  await reject({ state: new TextEncoder().encode('not a snapshot at all'), disk }, /not a tci64 snapshot/);
  const wrong = disk.slice();
  wrong[4096] ^= 1;
  await reject({ state, disk: wrong }, /disk 0: not the disk saved/);
  await reject({ state }, /1 disk\(s\), 0 given/);

  // A guest with 4 GiB of RAM saved by the native CLI at its first line of output (the early
  // console): more than the lowered build can hold. The error says so before anything is
  // allocated.
  const dir = mkdtempSync(join(tmpdir(), 'tci64-state-'));
  try {
    const big = join(dir, 'big.snapshot');
    runCli(['-M', 'microvm,acpi=off', '-m', '4G', '-nographic', '-icount', 'shift=3',
      '-kernel', guestPath('tiny.bzImage'), '-append', 'console=ttyS0 earlyprintk=ttyS0', '--save-on-output', 'Linux version', big]);
    const bigState = readFileSync(big);
    await reject({ state: bigState }, /the snapshot's guest has 4096 MiB of RAM; this build allows at most 3584 MiB \(the wasm32 build keeps guest RAM inside 4 GiB/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('icount: native save mid disk test -> wasm32 restore gives the native serial output and disk byte for byte', { timeout: 300_000 }, async () => {
  needBuilt();
  needCli();
  const image = gunzipSync(readFileSync(guestPath('disk.ext2.gz')));
  const dir = mkdtempSync(join(tmpdir(), 'tci64-state-'));
  try {
    // The web machine: microvm with the disk on the command line (acpi=off); a fixed RTC.
    const common = ['-M', 'microvm,acpi=off', '-m', '128M', '-nographic', '-no-reboot', '-icount', 'shift=3',
      '-rtc', 'base=2026-01-01T00:00:00', '-kernel', guestPath('tiny.bzImage'), '-initrd', guestPath('initramfs.cpio.gz'),
      '-append', 'console=ttyS0 panic=-1 reboot=t guest.test=1'];
    const drive = (file, extra = '') => ['-drive', `id=d0,file=${file},format=raw,if=none${extra}`, '-device', 'virtio-blk-device,drive=d0'];
    const straightImg = join(dir, 'straight.ext2');
    writeFileSync(straightImg, image);
    const straight = runCli([...common, ...drive(straightImg)]).stdout;
    assert.match(straight.toString(), /GUEST-TEST-DONE/);
    const straightDisk = readFileSync(straightImg);

    // Cut: the CLI saves once the guest has mounted the disk and read its first file (the
    // disk's overlay travels in the state), the lowered build runs the rest.
    const cutImg = join(dir, 'cut.ext2');
    writeFileSync(cutImg, image);
    const st = join(dir, 'cut.snapshot');
    const before = runCli([...common, ...drive(cutImg, ',snapshot=on'), '--save-on-output', 'DISK: ', st]).stdout;
    assert.ok(before.length < straight.length && straight.subarray(0, before.length).equals(before),
      'the saving run printed something else than the straight run');
    const r = await machine({ state: readFileSync(st), disk: image });
    r.vm.start();
    assert.equal(await r.exit, 'reset');
    const whole = Buffer.concat([before, r.out]);
    if (!whole.equals(straight)) {
      let i = 0;
      while (i < whole.length && whole[i] === straight[i]) i++;
      assert.fail(`serial output differs at byte ${i} (the cut is at ${before.length}):\n` +
        `cut:      ${JSON.stringify(whole.subarray(i, i + 120).toString())}\nstraight: ${JSON.stringify(straight.subarray(i, i + 120).toString())}`);
    }
    const webDisk = Buffer.from(await r.vm.disk());
    assert.ok(webDisk.equals(straightDisk), 'the disk images differ');
    assert.ok(webDisk.includes('written-by-guest'));
    await r.vm.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
