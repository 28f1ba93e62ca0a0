#!/usr/bin/env node
// Run the page's benchmark mode in headless Chromium and print its figures (one JSON line per
// build on stdout). scripts/bench.sh uses it for its web-test / web-bench workloads.
//   node tools/bench-browser.mjs [test|bench]      (after scripts/build-web.sh)
//   CHROMIUM=/usr/bin/chromium (default)
import { chromium } from 'playwright-core';
import { serve, copyGuest } from './serve.mjs';

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
  page.on('pageerror', (e) => console.error(`bench-browser: page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/?bench=${workload === 'bench' ? '1' : 'test'}`);
  await page.waitForFunction(() => ['done', 'error'].includes(window.tci64Page?.bench?.state), null, { timeout: 3_600_000, polling: 500 });
  const b = await page.evaluate(() => {
    const { state, error, identical, results } = window.tci64Page.bench;
    return { state, error, identical, userAgent: navigator.userAgent, results: results.map((r) => ({ ...r, serial: undefined })) };
  });
  if (b.state !== 'done') throw new Error(b.error ?? 'the benchmark failed');
  for (const r of b.results) console.log(JSON.stringify({ ...r, identical: b.identical, userAgent: b.userAgent }));
  if (b.results.some((r) => !r.skipped && !r.ok) || b.identical !== true) status = 1;
} catch (e) {
  console.error(`bench-browser: ${e.message}`);
  status = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(status);
