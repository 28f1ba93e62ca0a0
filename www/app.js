// The tci64 page: boots the bundled guest in an xterm.js terminal, or the user's own files.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { Tci64, detectBuild } from './src/index.js';

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
let vm = null;
let paused = false;
let last = null; // last stats
let exited = null;
let build = '?';
let serialText = ''; // for tests and the boot timer
const timing = { created: 0, bootOk: 0 };
window.tci64Page = { timing, get serial() { return serialText; }, get vm() { return vm; } };

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

async function boot() {
  if (vm) { await vm.stop(); vm = null; }
  exited = null;
  paused = false;
  last = null;
  serialText = '';
  timing.bootOk = 0;
  term.reset();
  for (const b of ['pause', 'reset', 'download']) $(b).disabled = true;
  const want = $('build').value;
  build = want === 'auto' ? detectBuild() : want;
  showStatus(`build: ${build} · loading…`);
  const decoder = new TextDecoder();
  try {
    timing.created = performance.now();
    vm = await Tci64.create({
      kernel: inputs.kernel,
      initrd: inputs.initrd,
      disk: inputs.disk ? inputs.disk.slice() : undefined,
      cmdline: $('cmdline').value,
      memoryMiB: Number($('memory').value),
      build: want,
      onSerial(bytes) {
        term.write(bytes);
        serialText += decoder.decode(bytes, { stream: true });
        if (serialText.length > 1 << 20) serialText = serialText.slice(-(1 << 19));
        if (!timing.bootOk && serialText.includes('GUEST-BOOT-OK')) { timing.bootOk = performance.now(); showStatus(); }
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
    build = vm.build;
    vm.start();
    $('pause').textContent = 'Pause';
    for (const b of ['pause', 'reset']) $(b).disabled = false;
    $('download').disabled = !inputs.disk;
    showStatus();
    term.focus();
  } catch (e) {
    vm = null;
    showStatus(`build: ${build} · error: ${e.message}`);
    term.write(`\x1b[31m${e.message}\x1b[0m\r\n`);
    $('reset').disabled = false;
  }
}

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

// The bundled guest (copied to dist/guest/ by scripts/build-web.sh and `npm start`).
try {
  showStatus('loading the bundled guest…');
  const [kernel, initrd, disk] = await Promise.all([
    fetchBytes('dist/guest/tiny.bzImage'),
    fetchBytes('dist/guest/initramfs.cpio.gz'),
    fetchBytes('dist/guest/disk.ext2.gz', true).catch(() => null),
  ]);
  Object.assign(inputs, { kernel, initrd, disk });
  inputs.names = { kernel: 'tiny.bzImage', initrd: 'initramfs.cpio.gz', disk: disk ? 'disk.ext2' : undefined };
  await boot();
} catch (e) {
  showStatus(`could not load the bundled guest (${e.message}); pick a kernel below`);
  $('custom').open = true;
}
