// Native parity: in deterministic mode (-icount shift=3 / icountShift: 3) the lowered wasm
// build prints exactly the native CLI's serial output and leaves exactly the same disk image.
// Needs the CLI binary built from the same source: $TCI64_CLI (scripts/test.sh sets it), else the
// newer of tci64 under $CARGO_TARGET_DIR (or ../target) in release/ or debug/; skipped when none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { Tci64 } from '../src/index.js';

const www = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(www, '..');
const guestPath = (name) => join(repo, 'guest', name);
const targetDir = resolve(repo, process.env.CARGO_TARGET_DIR ?? 'target');
const cli = process.env.TCI64_CLI
  ? (existsSync(process.env.TCI64_CLI) ? process.env.TCI64_CLI : undefined)
  : [join(targetDir, 'release', 'tci64'), join(targetDir, 'debug', 'tci64')]
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
const built = existsSync(join(www, 'pkg', 'wasm32', 'tci64_web_bg.wasm'));
const CMDLINE = 'console=ttyS0 panic=-1 reboot=t guest.test=1';
const SHIFT = 3;

const skip = !built ? 'run scripts/build-web.sh' : !cli ? 'no tci64 CLI binary built (set TCI64_CLI)' : false;

test('deterministic mode: wasm32 serial output and disk equal the native CLI byte for byte', { skip, timeout: 600_000 }, async () => {
  const disk = gunzipSync(readFileSync(guestPath('disk.ext2.gz')));
  const dir = mkdtempSync(join(tmpdir(), 'tci64-parity-'));
  try {
    const img = join(dir, 'disk.ext2');
    writeFileSync(img, disk);
    // The CLI's RTC starts at its wall-clock second; the guest's instruction count depends on
    // the date, so try the seconds around the spawn.
    const before = Math.floor(Date.now() / 1000);
    // The web machine is microvm with the disks on the command line (acpi=off): the same here.
    const r = spawnSync(cli, ['-M', 'microvm,acpi=off', '-m', '128M', '-nographic', '-no-reboot', '-icount', `shift=${SHIFT}`,
      '-kernel', guestPath('tiny.bzImage'), '-initrd', guestPath('initramfs.cpio.gz'), '-append', CMDLINE,
      '-drive', `id=d0,file=${img},format=raw,if=none`, '-device', 'virtio-blk-device,drive=d0'],
    { maxBuffer: 1 << 26, timeout: 500_000 });
    assert.equal(r.status, 0, `${cli} failed: ${r.stderr}`);
    const native = r.stdout;
    const nativeDisk = readFileSync(img);
    const after = Math.floor(Date.now() / 1000);

    const boot = async (rtcEpochSecs) => {
      const chunks = [];
      let exited;
      const done = new Promise((ok) => { exited = ok; });
      const vm = await Tci64.create({
        worker: false, build: 'wasm32', kernel: readFileSync(guestPath('tiny.bzImage')),
        initrd: readFileSync(guestPath('initramfs.cpio.gz')), disk, cmdline: CMDLINE, memoryMiB: 128,
        icountShift: SHIFT, rtcEpochSecs, onSerial: (b) => chunks.push(Buffer.from(b)), onExit: exited,
      });
      vm.start();
      assert.equal(await done, 'reset');
      const out = { web: Buffer.concat(chunks), webDisk: Buffer.from(await vm.disk()) };
      await vm.stop();
      return out;
    };
    let web, webDisk;
    for (let t = before; t <= after; t++) {
      ({ web, webDisk } = await boot(t));
      if (web.equals(native)) break;
    }
    assert.ok(web.includes('GUEST-TEST-DONE'), web.toString());
    if (!web.equals(native)) {
      let i = 0;
      while (i < web.length && web[i] === native[i]) i++;
      assert.fail(`serial output differs at byte ${i}:\nweb:    ${JSON.stringify(web.subarray(i, i + 120).toString())}\nnative: ${JSON.stringify(native.subarray(i, i + 120).toString())}`);
    }
    assert.ok(webDisk.equals(nativeDisk), 'the disk images differ');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
