// End to end in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core), for
// both builds: the default page resumes the shipped pre-booted state and its shell answers
// `echo hi` (page load -> prompt timed); Save state / Restore saved / Restore state… go back to
// a saved state (wasm64). With ?boot=fresh the page boots the bundled guest in its worker, the terminal shows
// GUEST-BOOT-OK, typing `echo hi` + Enter shows `hi`, the status line names the build, pause
// and resume work; then (wasm64) the boot form runs the guest's disk test and "Download disk"
// returns the image the guest wrote. Benchmark mode: ?bench=test (the short deterministic
// variant: the disk test under icount) runs on wasm64 and then on wasm32, the figures appear in the
// table and both runs print the same guest output; the Benchmark button starts the real benchmark
// (guest.bench=1). TCI64_E2E_BENCH=full runs the real benchmark to the end instead of the short
// variant (about 2 x 2-4 minutes on a 2-core machine).
// Screenshots go to $TCI64_SCREENSHOT_DIR (default /tmp) as tci64-<build>.png.
//   node --test e2e/            (after scripts/build-web.sh)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serve, copyGuest } from '../tools/serve.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const shots = process.env.TCI64_SCREENSHOT_DIR ?? '/tmp';
let server;
let browser;
let base;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install -y chromium, or set CHROMIUM)`);
  copyGuest();
  server = await serve(0);
  base = `http://127.0.0.1:${server.address().port}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (server ? server.close(r) : r()));
});

/** The terminal's visible text, one string per row (xterm's DOM renderer). */
const screenRows = (page) => page.$$eval('.xterm-rows > div', (rows) => rows.map((r) => r.textContent));

/** Type a line into the terminal and wait for a row that is exactly `want`. */
async function typeAndSee(page, line, want, timeout = 30_000) {
  await page.click('#terminal');
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
  await page.waitForFunction(
    (w) => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent.trim() === w),
    want, { timeout });
}

for (const build of ['wasm64', 'wasm32']) {
  test(`the default page resumes the shipped state at the prompt and its shell answers (${build})`, { timeout: 120_000 }, async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    try {
      await page.goto(`${base}?build=${build}`);
      await page.waitForFunction(() => window.tci64Page?.timing.prompt > 0, null, { timeout: 60_000 });
      const t = await page.evaluate(() => window.tci64Page.timing);
      assert.equal(t.mode, 'restored');
      const t0 = Date.now();
      await typeAndSee(page, 'echo hi', 'hi');
      const answerMs = Date.now() - t0;
      const rows = await screenRows(page);
      assert.ok(rows.some((r) => r.includes('echo hi')), rows.join('\n'));
      // The guest resumed: it did not boot again.
      const serial = await page.evaluate(() => window.tci64Page.serial);
      assert.equal(serial.split('GUEST-BOOT-OK').length, 2, 'GUEST-BOOT-OK printed again: the guest booted');
      assert.match(await page.textContent('#status'), new RegExp(`build: ${build}\\b`));
      console.log(`# ${build}: page load -> prompt (shipped state) ${(t.prompt / 1000).toFixed(2)} s ` +
        `(restore ${t.restoreMs.toFixed(0)} ms); 'echo hi' answered in ${answerMs} ms`);

      if (build === 'wasm64') {
        // Save state keeps and downloads the state; Restore saved and Restore state… go back to it.
        await typeAndSee(page, 'A=before; echo "A is $A"', 'A is before');
        const [download] = await Promise.all([page.waitForEvent('download'), page.click('#save-state')]);
        const file = await download.path();
        const head = (await import('node:fs')).readFileSync(file).subarray(0, 8).toString('latin1');
        assert.equal(head, 'TCI64SNP');
        assert.match(download.suggestedFilename(), /\.snapshot$/);
        const saved = await page.evaluate(() => ({ bytes: window.tci64Page.saved.state.length, ms: window.tci64Page.saved.ms }));
        await typeAndSee(page, 'A=after; echo "A is $A"', 'A is after');
        // Wait for the new VM (created after the click), not the old one still running.
        const created = await page.evaluate(() => window.tci64Page.timing.created);
        await page.click('#restore-saved');
        await page.waitForFunction((c) => window.tci64Page.timing.created > c && window.tci64Page.vm &&
          /running/.test(document.getElementById('status').textContent), created, { timeout: 30_000 });
        const r0 = await page.evaluate(() => window.tci64Page.timing.restoreMs);
        await typeAndSee(page, 'echo "A was $A"', 'A was before');
        const created2 = await page.evaluate(() => window.tci64Page.timing.created);
        await page.setInputFiles('#state-file', file);
        await page.waitForFunction((c) => window.tci64Page.timing.created > c && window.tci64Page.vm &&
          /running/.test(document.getElementById('status').textContent), created2, { timeout: 30_000 });
        await typeAndSee(page, 'echo "A is still $A"', 'A is still before');
        console.log(`# wasm64: Save state ${(saved.bytes / 2 ** 20).toFixed(2)} MiB in ${saved.ms.toFixed(0)} ms; Restore saved in ${r0.toFixed(0)} ms`);
      }
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test(`the page boots the guest and its shell answers (${build})`, { timeout: 180_000 }, async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    try {
      await page.goto(`${base}?build=${build}&boot=fresh`);
      await page.waitForFunction(() => window.tci64Page?.timing.bootOk > 0, null, { timeout: 150_000 });
      const t = await page.evaluate(() => window.tci64Page.timing);
      const bootSecs = (t.bootOk - t.created) / 1000;
      // Wait for the shell prompt, then type like a user.
      await page.waitForFunction(() => /# (\x1b\[6n)?$/.test(window.tci64Page.serial), null, { timeout: 60_000 });
      await page.click('#terminal');
      await page.keyboard.type('echo hi');
      await page.keyboard.press('Enter');
      await page.waitForFunction(
        () => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent.trim() === 'hi'),
        null, { timeout: 30_000 });
      const rows = await screenRows(page);
      assert.ok(rows.some((r) => r.includes('GUEST-BOOT-OK')) || (await page.evaluate(() => window.tci64Page.serial)).includes('GUEST-BOOT-OK'));
      assert.ok(rows.some((r) => r.includes('echo hi')), rows.join('\n'));
      // Let one stats update land so the status line shows MIPS and uptime.
      await page.waitForFunction(() => /MIPS/.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
      const status = await page.textContent('#status');
      assert.match(status, new RegExp(`build: ${build}\\b`));
      const shot = join(shots, `tci64-${build}.png`);
      await page.screenshot({ path: shot });
      const prompt = await page.evaluate(() => window.tci64Page.timing);
      assert.equal(prompt.mode, 'booted');
      console.log(`# ${build}: boot to GUEST-BOOT-OK ${bootSecs.toFixed(2)} s; page load -> prompt (boot) ${(prompt.prompt / 1000).toFixed(2)} s; status: ${status}; screenshot ${shot}`);

      // Pause stops the instruction counter; Resume restarts it.
      await page.click('#pause');
      await page.waitForFunction(() => /paused/.test(document.getElementById('status').textContent));
      const n0 = (await page.evaluate(() => window.tci64Page.vm.stats())).instructions;
      await page.waitForTimeout(300);
      const n1 = (await page.evaluate(() => window.tci64Page.vm.stats())).instructions;
      assert.equal(n1, n0, 'instructions ran while paused');
      assert.equal(await page.textContent('#pause'), 'Resume');
      await page.click('#pause');
      await page.waitForFunction(() => /running/.test(document.getElementById('status').textContent));
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
}

test('the boot form runs the guest disk test; Download disk returns the written image; Reset boots again; dropped files boot (wasm64)', { timeout: 180_000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  try {
    await page.goto(`${base}?build=wasm64`);
    await page.waitForFunction(() => window.tci64Page?.timing.prompt > 0, null, { timeout: 150_000 });
    await page.click('#custom > summary');
    await page.fill('#cmdline', 'console=ttyS0 panic=-1 reboot=t guest.test=1');
    await page.click('#boot');
    await page.waitForFunction(() => /GUEST-TEST-DONE|GUEST-TEST-FAIL/.test(window.tci64Page.serial), null, { timeout: 150_000 });
    assert.match(await page.evaluate(() => window.tci64Page.serial), /GUEST-TEST-DONE/);
    await page.waitForFunction(() => /guest exited/.test(document.getElementById('status').textContent), null, { timeout: 30_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    const path = await download.path();
    const bytes = (await import('node:fs')).readFileSync(path);
    assert.equal(bytes.length, 16 << 20);
    assert.ok(bytes.includes('written-by-guest'), "written.txt's content is not in the downloaded disk");
    // Reset boots again (keeping the written disk).
    await page.click('#reset');
    await page.waitForFunction(() => window.tci64Page.timing.bootOk > 0 && /running/.test(document.getElementById('status').textContent), null, { timeout: 150_000 });
    assert.match(await page.evaluate(() => window.tci64Page.serial), /GUEST-BOOT-OK/);
    // Dropping files on the page sorts them by name and boots them.
    await page.fill('#cmdline', 'console=ttyS0 panic=-1 reboot=t');
    await page.evaluate(async () => {
      const dt = new DataTransfer();
      for (const [url, name] of [['dist/guest/tiny.bzImage', 'my-bzImage'], ['dist/guest/initramfs.cpio.gz', 'my-initrd.cpio.gz']]) {
        dt.items.add(new File([await (await fetch(url)).arrayBuffer()], name));
      }
      window.tci64Page.timing.bootOk = 0;
      document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await page.waitForFunction(() => window.tci64Page.timing.bootOk > 0, null, { timeout: 150_000 });
    assert.match(await page.textContent('#chosen'), /kernel = my-bzImage, initrd = my-initrd\.cpio\.gz/);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

const fullBench = process.env.TCI64_E2E_BENCH === 'full';
test(`benchmark mode (${fullBench ? '?bench=1, the full guest benchmark' : '?bench=test, the short deterministic variant'}): wasm64 then wasm32, the figures appear, both give the same guest output`, { timeout: fullBench ? 1_800_000 : 600_000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  try {
    await page.goto(`${base}?bench=${fullBench ? '1' : 'test'}`);
    await page.waitForFunction(() => ['done', 'error'].includes(window.tci64Page?.bench?.state), null, { timeout: fullBench ? 1_700_000 : 540_000 });
    const b = await page.evaluate(() => {
      const { workload, state, identical, error, results } = window.tci64Page.bench;
      return { workload, state, identical, error, results: results.map((r) => ({ ...r, serial: undefined, done: r.serial?.includes('GUEST-TEST-DONE') || r.serial?.includes('GUEST-BENCH-DONE') })) };
    });
    assert.equal(b.state, 'done', b.error ?? '');
    assert.equal(b.workload, fullBench ? 'bench' : 'test');
    assert.deepEqual(b.results.map((r) => r.build), ['wasm64', 'wasm32']);
    for (const r of b.results) {
      assert.ok(r.ok, `${r.build}: ${r.failure}`);
      assert.ok(r.done, `${r.build}: no done marker`);
      assert.equal(r.exit, 'reset');
      assert.ok(r.mips > 0 && r.opsPerInsn > 0 && r.wallMs > 0, JSON.stringify(r));
      for (const p of r.phases) assert.ok(p.ms > 0, `${r.build}: phase ${p.name} has no time`);
      if (fullBench) for (const p of r.phases.filter((q) => q.timed)) assert.ok(p.mips > 0, `${r.build}: phase ${p.name} has no MIPS`);
    }
    // Deterministic time: the same guest instructions, the same ops, the same output.
    assert.equal(b.identical, true, 'the guest output differs between wasm64 and wasm32');
    assert.equal(b.results[0].serialHash, b.results[1].serialHash);
    assert.equal(b.results[0].instructions, b.results[1].instructions);
    assert.equal(b.results[0].opsExecuted, b.results[1].opsExecuted);
    // The table shows the figures for both builds.
    for (const row of ['total', 'mips', 'ops', 'insns', 'pertb', ...b.results[0].phases.map((_, i) => `phase${i}`)]) {
      for (const build of ['wasm64', 'wasm32']) {
        const cell = await page.textContent(`#bench-table tr[data-row="${row}"] td[data-build="${build}"]`);
        assert.match(cell, /\d/, `row ${row}, ${build}: "${cell}"`);
      }
    }
    assert.match(await page.textContent('#bench-note'), /identical on both builds/);
    await page.screenshot({ path: join(shots, 'tci64-bench.png'), fullPage: true });
    for (const r of b.results) {
      console.log(`# bench ${b.workload} ${r.build}: ${(r.wallMs / 1000).toFixed(2)} s, ${r.mips.toFixed(1)} MIPS, ${r.opsPerInsn.toFixed(2)} ops/insn, ${r.instructions} insns; ` +
        r.phases.map((p) => `${p.name} ${(p.ms / 1000).toFixed(2)} s${p.mips ? ` (${p.mips.toFixed(1)} MIPS)` : ''}`).join(', '));
    }

    // The Benchmark button starts the real benchmark (guest.bench=1) on wasm64 first.
    await page.click('#bench-button');
    await page.waitForFunction(() => window.tci64Page.bench?.workload === 'bench' && window.tci64Page.bench.state === 'running' &&
      /GUEST-BOOT-OK/.test(window.tci64Page.serial), null, { timeout: 150_000 });
    assert.match(await page.textContent('#bench-title'), /guest\.bench=1/);
    assert.match(await page.textContent('#status'), /benchmark: wasm64 running/);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
