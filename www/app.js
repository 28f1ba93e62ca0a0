// The tci64 page: boots the bundled guest in an xterm.js terminal, or the user's own files.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { Tci64, detectBuild, bundledState } from './src/index.js';
import { runBenchmark, WORKLOADS, ICOUNT_SHIFT } from './bench.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const DEFAULT_CMDLINE = 'console=ttyS0 panic=-1 reboot=t';

const term = new Terminal({ convertEol: false, scrollback: 5000, fontSize: 14, cursorBlink: true, theme: { background: '#000000' } });
const fit = new FitAddon();
term.loadAddon(fit);
term.open($('terminal'));
fit.fit();
addEventListener('resize', () => fit.fit());

// What the next boot uses. Bytes are Uint8Arrays; names are for display.
const inputs = { kernel: null, initrd: null, disk: null, names: {} };
// The bundled guest as fetched (the benchmark always runs it, whatever the boot form holds).
let bundled = null;
let vm = null;
let paused = false;
let last = null; // last stats
let exited = null;
let build = '?';
let serialText = ''; // for tests and the boot timer
// Milliseconds since the page's navigation start: `prompt` when the first live shell prompt is
// on screen (restored: the VM runs after the state's console log is shown; booted: the guest
// printed `guest# `), `mode` 'restored' or 'booted'; `created`/`bootOk` time a boot; `fetched`
// when the shipped state and its disk had downloaded (and the disk was unpacked).
const timing = { created: 0, bootOk: 0, prompt: 0, mode: null, restoreMs: 0, fetched: 0 };
// The disk image the running VM was created with (what a state saved from it needs), the state
// saved last (Save state), and the shipped pre-booted guest ({ state, disk, console }).
let vmDisk = null;
let saved = null;
let preBooted = null;
// Benchmark mode: { workload, state: 'running' | 'done' | 'error', results, identical, error }.
let bench = null;
window.tci64Page = {
  timing, get serial() { return serialText; }, get vm() { return vm; }, get bench() { return bench; },
  get saved() { return saved; }, restore: (state, disk) => resume(state, disk ?? vmDisk, null),
};

$('cmdline').value = params.get('cmdline') ?? DEFAULT_CMDLINE;
$('memory').value = params.get('mem') ?? '128';
$('build').value = params.get('build') ?? 'auto';

term.onData((d) => vm?.serialWrite(d));
term.onBinary((d) => vm?.serialWrite(Uint8Array.from(d, (c) => c.charCodeAt(0))));

const fmt = (n, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
function showStatus(msg) {
  if (msg) { $('status').textContent = msg; return; }
  const s = last;
  const state = exited ? `guest ${exited === 'reset' ? 'exited' : exited}` : paused ? 'paused' : 'running';
  const parts = [`build: ${build}`, state];
  if (s) {
    parts.push(`${fmt(s.mips)} MIPS`, `uptime ${fmt(s.uptimeMs / 1000)} s`,
      `${Math.round(s.instructions).toLocaleString('en-US')} instructions`);
  }
  if (timing.bootOk) parts.push(`boot ${fmt((timing.bootOk - timing.created) / 1000, 2)} s`);
  $('status').textContent = parts.join(' · ');
}

async function fetchBytes(url, gunzip = false) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${r.statusText}`);
  if (gunzip && typeof DecompressionStream === 'function') {
    return new Uint8Array(await new Response(r.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
  }
  return new Uint8Array(await r.arrayBuffer());
}

/** Stop the current VM and start another from `opts` (Tci64.create options without hooks; byte
 * options may be Promises, so the module loads while they download). */
async function launch(opts, { log = null, restoring = false } = {}) {
  if (vm) { await vm.stop(); vm = null; }
  exited = null;
  paused = false;
  last = null;
  serialText = '';
  timing.bootOk = 0;
  term.reset();
  for (const b of ['pause', 'reset', 'download', 'save-state']) $(b).disabled = true;
  $('bench-button').disabled = !bundled;
  const want = $('build').value;
  build = want === 'auto' ? detectBuild() : want;
  showStatus(`build: ${build} · ${restoring ? 'restoring' : 'loading'}…`);
  const decoder = new TextDecoder();
  try {
    timing.created = performance.now();
    vm = await Tci64.create({
      ...opts,
      build: want,
      onSerial(bytes) {
        term.write(bytes);
        serialText += decoder.decode(bytes, { stream: true });
        if (serialText.length > 1 << 20) serialText = serialText.slice(-(1 << 19));
        if (!timing.bootOk && !restoring && serialText.includes('GUEST-BOOT-OK')) { timing.bootOk = performance.now(); showStatus(); }
        if (!timing.prompt && serialText.includes('guest# ')) { timing.prompt = performance.now(); timing.mode = 'booted'; }
      },
      onStats(s) { last = s; showStatus(); },
      onExit(reason) {
        exited = reason;
        term.write(`\r\n\x1b[33m[tci64: the guest ${reason === 'reset' ? 'rebooted/exited' : 'halted'}; press Reset to boot again]\x1b[0m\r\n`);
        $('pause').disabled = true;
        showStatus();
      },
      onError(e) { term.write(`\r\n\x1b[31m${e.message}\x1b[0m\r\n`); },
    });
    vmDisk = (await opts.disk) ?? null;
    build = vm.build;
    if (restoring) timing.restoreMs = performance.now() - timing.created;
    log = await log;
    if (log) {
      // What the guest printed before the save: the terminal then looks as after a boot.
      term.write(log);
      serialText = decoder.decode(log);
    }
    vm.start();
    if (restoring && !timing.prompt) { timing.prompt = performance.now(); timing.mode = 'restored'; }
    $('pause').textContent = 'Pause';
    for (const b of ['pause', 'reset', 'save-state']) $(b).disabled = false;
    $('download').disabled = !vmDisk;
    showStatus();
    term.focus();
  } catch (e) {
    vm = null;
    showStatus(`build: ${build} · error: ${e.message}`);
    term.write(`\x1b[31m${e.message}\x1b[0m\r\n`);
    $('reset').disabled = false;
  }
}

/** Boot the kernel, initrd and disk of the boot form (the bundled guest by default). */
function boot() {
  return launch({
    kernel: inputs.kernel,
    initrd: inputs.initrd,
    disk: inputs.disk ? inputs.disk.slice() : undefined,
    cmdline: $('cmdline').value,
    memoryMiB: Number($('memory').value),
  });
}

/** Resume a saved state with `disk` (the image the saved VM was created with); `log` is shown
 * first. Each may be a Promise. */
function resume(state, disk, log) {
  return launch({ state, disk: disk ?? undefined }, { log, restoring: true });
}

$('save-state').onclick = async () => {
  if (!vm) return;
  try {
    const t0 = performance.now();
    const state = await vm.saveState();
    saved = { state, disk: vmDisk, ms: performance.now() - t0 };
    $('restore-saved').disabled = false;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([state], { type: 'application/octet-stream' }));
    a.download = `tci64-${new Date().toISOString().replace(/[:.]/g, '-')}.snapshot`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    showStatus(`build: ${build} · state saved: ${(state.length / 2 ** 20).toFixed(1)} MiB in ${Math.round(saved.ms)} ms (downloaded; Restore saved goes back to it)`);
  } catch (e) {
    showStatus(`build: ${build} · ${e.message}`);
  }
  term.focus();
};
$('restore-saved').onclick = () => { if (saved) resume(saved.state, saved.disk, null); };
$('restore-state').onclick = () => $('state-file').click();
$('state-file').onchange = async (ev) => {
  const f = ev.target.files[0];
  ev.target.value = '';
  if (!f) return;
  const state = new Uint8Array(await f.arrayBuffer());
  // The disk a state needs is the image its VM was created with: the current VM's, else the
  // bundled guest's (the shipped state's and every fresh boot's of the bundled guest).
  await resume(state, vmDisk ?? bundled?.disk ?? null, null);
  if (!vm && bundled?.disk && vmDisk !== bundled.disk) await resume(state, bundled.disk, null);
};

$('pause').onclick = () => {
  if (!vm || exited) return;
  paused = !paused;
  paused ? vm.pause() : vm.start();
  $('pause').textContent = paused ? 'Resume' : 'Pause';
  showStatus();
  term.focus();
};

$('reset').onclick = async () => {
  // A reset keeps what the guest wrote to its disk, as on a real machine.
  if (vm && inputs.disk) {
    try { inputs.disk = await vm.disk() ?? inputs.disk; } catch { /* keep the old one */ }
  }
  boot();
};

$('download').onclick = async () => {
  if (!vm) return;
  const d = await vm.disk();
  if (!d) return;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([d], { type: 'application/octet-stream' }));
  a.download = inputs.names.disk ? inputs.names.disk.replace(/\.gz$/, '') : 'disk.img';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
};

// --- Benchmark mode (the button, ?bench=1, or ?bench=test for the short variant) ---------------
const benchRows = (w) => [
  ['total', 'total time'], ['mips', 'MIPS'], ['ops', 'ops per guest insn'], ['insns', 'guest instructions'],
  ['pertb', 'guest insns per block'],
  ...WORKLOADS[w].phases.map(([name], i) => [`phase${i}`, name]),
  ['hash', 'guest output (FNV-1a)'],
];
function benchCell(r, key) {
  if (!r) return '';
  if (r.skipped) return key === 'total' ? 'not run' : '';
  if (r.running) {
    if (key === 'total') return 'running…';
    const i = key.startsWith('phase') ? Number(key.slice(5)) : -1;
    if (i >= 0 && r.phaseNow === WORKLOADS[bench.workload].phases[i][0]) return 'running…';
    return '';
  }
  switch (key) {
    case 'total': return `${fmt(r.wallMs / 1000, 2)} s`;
    case 'mips': return fmt(r.mips);
    case 'ops': return r.opsPerInsn === null ? '-' : fmt(r.opsPerInsn, 2);
    case 'insns': return Math.round(r.instructions).toLocaleString('en-US');
    case 'pertb': return r.tbsExecuted ? fmt(r.instructions / r.tbsExecuted) : '-';
    case 'hash': return r.serialHash;
    default: {
      const p = r.phases[Number(key.slice(5))];
      if (!p || p.ms === null) return '-';
      return `${fmt(p.ms / 1000, 2)} s` + (p.mips !== null ? ` (${fmt(p.mips)} MIPS)` : '');
    }
  }
}
function benchRatio(a, b, key) {
  if (!a || !b || a.skipped || b.skipped || a.running || b.running) return '';
  const v = (r) => {
    if (key === 'total') return r.wallMs;
    if (key.startsWith('phase')) return r.phases[Number(key.slice(5))]?.ms ?? null;
    return null;
  };
  const x = v(a), y = v(b);
  return x && y ? `${fmt(y / x, 2)}x` : '';
}
function showBench() {
  const sec = $('bench');
  sec.hidden = false;
  const w = bench.workload;
  $('bench-title').textContent = `Benchmark: ${WORKLOADS[w].title}, icount shift ${ICOUNT_SHIFT}` +
    (bench.state === 'running' ? ' (running)' : bench.state === 'error' ? ' (failed)' : '');
  const byBuild = Object.fromEntries(bench.results.map((r) => [r.build, r]));
  const a = byBuild.wasm64, b = byBuild.wasm32;
  let html = '<thead><tr><th></th><th>wasm64</th><th>wasm32 (lowered)</th><th>wasm32 ÷ wasm64</th></tr></thead><tbody>';
  for (const [key, label] of benchRows(w)) {
    html += `<tr data-row="${key}"><td>${label}</td>` +
      `<td data-build="wasm64">${benchCell(a, key)}</td><td data-build="wasm32">${benchCell(b, key)}</td>` +
      `<td>${benchRatio(a, b, key)}</td></tr>`;
  }
  $('bench-table').innerHTML = html + '</tbody>';
  const notes = [];
  if (bench.state === 'done') {
    const bad = bench.results.filter((r) => !r.skipped && !r.ok);
    if (bad.length) notes.push(`<span class="bad">${bad.map((r) => `${r.build}: ${r.failure}`).join('; ')}</span>`);
    if (bench.identical === true) notes.push('The guest output is identical on both builds.');
    else if (bench.identical === false) notes.push('<span class="bad">The guest output differs between the builds.</span>');
  }
  if (bench.error) notes.push(`<span class="bad">${bench.error}</span>`);
  notes.push('Phase times are host wall time between the guest\'s marker lines; a phase\'s MIPS counts the instructions its `time` reports (virtual time under icount).',
    'Each build runs in a Web Worker; the figures depend on this machine and its load.', navigator.userAgent);
  $('bench-note').innerHTML = notes.join('<br>');
}
async function startBench(workload) {
  if (bench?.state === 'running') return;
  if (!bundled) return;
  if (vm) { await vm.stop(); vm = null; }
  for (const b of ['pause', 'reset', 'download', 'save-state', 'bench-button']) $(b).disabled = true;
  bench = { workload, state: 'running', results: [], identical: null, error: null };
  const decoder = new TextDecoder();
  let current = null;
  showBench();
  try {
    const out = await runBenchmark(bundled, workload, {
      onRun(b) {
        current = { build: b, running: true, phaseNow: null };
        bench.results.push(current);
        build = b;
        term.reset();
        term.write(`\x1b[36m[tci64 benchmark: ${WORKLOADS[workload].title} on ${b}]\x1b[0m\r\n`);
        serialText = '';
        showStatus(`benchmark: ${b} running…`);
        showBench();
      },
      onSerial(bytes) {
        term.write(bytes);
        serialText += decoder.decode(bytes, { stream: true });
        if (serialText.length > 1 << 20) serialText = serialText.slice(-(1 << 19));
      },
      onPhase(name) {
        if (current) current.phaseNow = name;
        showStatus(`benchmark: ${current?.build} running, phase: ${name}`);
        showBench();
      },
      onResult(r) {
        const i = bench.results.indexOf(current);
        if (i >= 0) bench.results[i] = r; else bench.results.push(r);
        current = null;
        showBench();
      },
    });
    Object.assign(bench, { results: out.results, identical: out.identical, state: 'done' });
    showStatus('benchmark done');
  } catch (e) {
    Object.assign(bench, { state: 'error', error: e.message });
    showStatus(`benchmark failed: ${e.message}`);
  }
  showBench();
  $('bench-button').disabled = false;
  $('reset').disabled = false;
}
$('bench-button').onclick = () => startBench('bench');
$('bench-button').disabled = true; // until the bundled guest is loaded

async function takeFile(kind, file) {
  let bytes = new Uint8Array(await file.arrayBuffer());
  if (kind === 'disk' && file.name.endsWith('.gz') && typeof DecompressionStream === 'function') {
    bytes = new Uint8Array(await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
  }
  inputs[kind] = bytes;
  inputs.names[kind] = file.name;
  $('chosen').textContent = ' Next boot: ' + ['kernel', 'initrd', 'disk']
    .map((k) => `${k} = ${inputs.names[k] ?? '(none)'}`).join(', ');
}

for (const kind of ['kernel', 'initrd', 'disk']) {
  $(`${kind}-file`).onchange = (ev) => { const f = ev.target.files[0]; if (f) takeFile(kind, f); };
}
$('boot-form').onsubmit = (ev) => { ev.preventDefault(); boot(); };

function kindOf(name) {
  const n = name.toLowerCase();
  if (/initr|cpio/.test(n)) return 'initrd';
  if (/\.(img|ext2|ext3|ext4|raw|qcow)(\.gz)?$|disk/.test(n)) return 'disk';
  return 'kernel';
}
const drop = document.body;
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); $('drop').classList.add('dragging'); });
drop.addEventListener('dragleave', () => $('drop').classList.remove('dragging'));
drop.addEventListener('drop', async (ev) => {
  ev.preventDefault();
  $('drop').classList.remove('dragging');
  const files = [...ev.dataTransfer.files];
  for (const f of files) await takeFile(kindOf(f.name), f);
  if (files.length) { $('custom').open = true; boot(); }
});

// The bundled guest (copied to dist/guest/ by scripts/build-web.sh and `npm start`), and the
// shipped pre-booted state of it (pkg/guest/): the default page resumes that at the shell prompt,
// unless ?boot=fresh (or a benchmark) asks for a boot.
const fresh = params.get('boot') === 'fresh';
const b = params.get('bench');
const benchMode = b && b !== '0';
try {
  showStatus('loading the bundled guest…');
  if (!fresh && !benchMode) {
    // Hand the downloads to create() as Promises: the worker compiles the module meanwhile.
    const pending = bundledState();
    pending.then(() => { timing.fetched = performance.now(); }, () => {});
    await resume(pending.then((p) => p.state), pending.then((p) => p.disk), pending.then((p) => p.console).catch(() => null));
    preBooted = vm ? await pending : null;
    if (!vm) console.warn('no pre-booted state (run scripts/build-web.sh); booting');
  }
  // The files of a fresh boot (Reset, the benchmark), fetched after the restore so they do not
  // compete with it; the restored VM's disk is the same image.
  const guest = Promise.all([
    fetchBytes('dist/guest/tiny.bzImage'),
    fetchBytes('dist/guest/initramfs.cpio.gz'),
    preBooted ? preBooted.disk : fetchBytes('dist/guest/disk.ext2.gz', true).catch(() => null),
  ]);
  const [kernel, initrd, disk] = await guest;
  Object.assign(inputs, { kernel, initrd, disk: preBooted?.disk ?? disk });
  bundled = { kernel, initrd, disk: inputs.disk };
  $('bench-button').disabled = false;
  inputs.names = { kernel: 'tiny.bzImage', initrd: 'initramfs.cpio.gz', disk: disk ? 'disk.ext2' : undefined };
  if (benchMode) await startBench(b === 'test' ? 'test' : 'bench');
  else if (!vm) await boot();
} catch (e) {
  showStatus(`could not load the bundled guest (${e.message}); pick a kernel below`);
  $('custom').open = true;
}
