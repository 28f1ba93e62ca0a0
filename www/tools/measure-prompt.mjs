#!/usr/bin/env node
// Page load -> first prompt in headless Chromium, with the shipped pre-booted state (the default
// page) and with a boot (?boot=fresh), per build; then the time `echo hi` takes to answer, and
// (restored runs) the page's Save state and Restore saved times.
//   node tools/measure-prompt.mjs [RUNS]     (after scripts/build-web.sh; prints JSON lines)
import { chromium } from 'playwright-core';
import { serve, copyGuest } from './serve.mjs';

const runs = Number(process.argv[2] ?? 3);
copyGuest();
const server = await serve(0);
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  for (const mode of ['restored', 'booted']) {
    for (const build of ['wasm64', 'wasm32']) {
      for (let i = 0; i < (mode === 'booted' ? 1 : runs); i++) {
        const page = await browser.newPage();
        await page.goto(`${base}?build=${build}${mode === 'booted' ? '&boot=fresh' : ''}`);
        await page.waitForFunction(() => window.tci64Page?.timing.prompt > 0, null, { timeout: 300_000 });
        const t = await page.evaluate(() => ({ ...window.tci64Page.timing }));
        const t0 = Date.now();
        await page.click('#terminal');
        await page.keyboard.type('echo hi\n');
        await page.waitForFunction(() => [...document.querySelectorAll('.xterm-rows > div')].some((r) => r.textContent.trim() === 'hi'), null, { timeout: 60_000 });
        const r = { build, mode: t.mode, promptMs: Math.round(t.prompt), createdMs: Math.round(t.created), fetchedMs: Math.round(t.fetched), restoreMs: Math.round(t.restoreMs), echoMs: Date.now() - t0 };
        if (mode === 'restored') {
          await Promise.all([page.waitForEvent('download'), page.click('#save-state')]);
          r.saveMs = Math.round(await page.evaluate(() => window.tci64Page.saved.ms));
          r.stateBytes = await page.evaluate(() => window.tci64Page.saved.state.length);
          const before = await page.evaluate(() => window.tci64Page.timing.created);
          await page.click('#restore-saved');
          await page.waitForFunction((b) => window.tci64Page.timing.created > b && window.tci64Page.vm, before, { timeout: 60_000 });
          r.restoreSavedMs = Math.round(await page.evaluate(() => window.tci64Page.timing.restoreMs));
        }
        console.log(JSON.stringify(r));
        await page.close();
      }
    }
  }
} finally {
  await browser.close();
  server.close();
}
