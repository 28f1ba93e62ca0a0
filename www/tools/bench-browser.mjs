#!/usr/bin/env node
// Run the page's benchmark mode in headless Chromium and print its figures (one JSON line per
// build on stdout, with `cpuSecs`: the browser's CPU time during that build's run, from /proc,
// which includes loading and compiling the module). scripts/bench.sh uses it for its web-test /
// web-bench workloads.
//   node tools/bench-browser.mjs [test|bench]      (after scripts/build-web.sh)
//   CHROMIUM=/usr/bin/chromium (default)
import { readFileSync, readdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { serve, copyGuest } from './serve.mjs';

/** CPU seconds (user + sys) of all descendants of process `root` (not `root` itself), from /proc
 * (Linux); null elsewhere. */
function treeCpuSecs(root) {
  try {
    const hz = 100; // USER_HZ on Linux
    const procs = new Map();
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = readFileSync(`/proc/${d}/stat`, 'utf8');
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        procs.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / hz });
      } catch { /* gone */ }
    }
    const inTree = (pid) => { for (let p = procs.get(pid)?.ppid ?? 0, n = 0; p > 1 && n < 64; p = procs.get(p)?.ppid ?? 0, n++) if (p === root) return true; return false; };
    let sum = 0;
    for (const [pid, p] of procs) if (inTree(pid)) sum += p.cpu;
    return sum;
  } catch {
    return null;
  }
}

const workload = process.argv[2] ?? 'test';
if (!['test', 'bench'].includes(workload)) {
  console.error(`bench-browser: unknown workload ${workload} (test, bench)`);
  process.exit(2);
}
copyGuest();
const server = await serve(0);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let status = 0;
try {
  const page = await browser.newPage();
  // The browser's CPU time (all its processes: the children of this node process) at the start,
  // when the first build's result is in, and at the end: each build's CPU seconds, to the 0.25 s
  // the polling allows.
  const rootPid = process.platform === 'linux' ? process.pid : null;
  const cpu0 = rootPid ? treeCpuSecs(rootPid) : null;
  page.on('pageerror', (e) => console.error(`bench-browser: page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/?bench=${workload === 'bench' ? '1' : 'test'}`);
  await page.waitForFunction(() => window.tci64Page?.bench?.results?.some((r) => r.build === 'wasm64' && !r.running) ||
    ['done', 'error'].includes(window.tci64Page?.bench?.state), null, { timeout: 3_600_000, polling: 250 });
  const cpu1 = rootPid ? treeCpuSecs(rootPid) : null;
  await page.waitForFunction(() => ['done', 'error'].includes(window.tci64Page?.bench?.state), null, { timeout: 3_600_000, polling: 250 });
  const cpu2 = rootPid ? treeCpuSecs(rootPid) : null;
  const b = await page.evaluate(() => {
    const { state, error, identical, results } = window.tci64Page.bench;
    return { state, error, identical, userAgent: navigator.userAgent, results: results.map((r) => ({ ...r, serial: undefined })) };
  });
  if (b.state !== 'done') throw new Error(b.error ?? 'the benchmark failed');
  const cpuSecs = { wasm64: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null, wasm32: cpu1 !== null && cpu2 !== null ? cpu2 - cpu1 : null };
  for (const r of b.results) console.log(JSON.stringify({ ...r, cpuSecs: cpuSecs[r.build], identical: b.identical, userAgent: b.userAgent }));
  if (b.results.some((r) => !r.skipped && !r.ok) || b.identical !== true) status = 1;
} catch (e) {
  console.error(`bench-browser: ${e.message}`);
  status = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(status);
