// The page's benchmark mode: the bundled guest's deterministic benchmark, on the wasm64 build and
// then on the lowered wasm32 build, in this browser. Deterministic (icount) time makes both runs
// execute exactly the same guest instructions and print exactly the same serial output, so the
// wall times compare the two builds and nothing else.
//
// Workloads:
//   bench  guest.bench=1: boot, then the three timed phases (a 200000-iteration shell loop,
//          sha256sum of 16 MiB, gzip | gunzip of 4 MiB). The page's Benchmark button and ?bench=1.
//   test   guest.test=1 with the bundled disk: boot, then the disk test (mount, sha256sum of 4 MiB,
//          write, sync). The short variant (?bench=test), used by the CI end-to-end test, and the
//          "deterministic disk test" compared with the native CLI in docs/PERFORMANCE.md.
// Phase times are host wall times between marker lines of the serial output (as it arrives in
// batches of one run slice, about 16 ms). A phase's guest instructions are derived from the guest's
// own `time` output, which under icount is virtual time: instructions x 2^shift ns.
import { Tci64, supportsWasm64 } from './src/index.js';

export const ICOUNT_SHIFT = 3; // as the parity test: 8 virtual ns per instruction (125 virtual MIPS)
export const RTC_EPOCH_SECS = 1_700_000_000; // the same RTC on both runs: same guest output
export const MEMORY_MIB = 256; // the CLI's default, as scripts/bench.sh

const BASE = 'console=ttyS0 panic=-1 reboot=t';
export const WORKLOADS = {
  bench: {
    title: 'guest.bench=1 (shell loop, sha256, gzip|gunzip)',
    cmdline: `${BASE} guest.bench=1`,
    disk: false,
    done: 'GUEST-BENCH-DONE',
    fail: /GUEST-BENCH-FAIL[^\r\n]*/,
    // [name, start marker (null = power-on), end marker, timed by the guest's `time`]
    phases: [
      ['boot', null, 'GUEST-BOOT-OK', false],
      ['shell loop', 'BENCH 1/3', /real\s+\d+m [\d.]+s/, true],
      ['sha256', 'BENCH 2/3', /real\s+\d+m [\d.]+s/, true],
      ['gzip|gunzip', 'BENCH 3/3', /real\s+\d+m [\d.]+s/, true],
    ],
  },
  test: {
    title: 'guest.test=1 (the disk test)',
    cmdline: `${BASE} guest.test=1`,
    disk: true,
    done: 'GUEST-TEST-DONE',
    fail: /GUEST-TEST-FAIL[^\r\n]*/,
    phases: [
      ['boot', null, 'GUEST-BOOT-OK', false],
      ['disk test', 'GUEST-BOOT-OK', 'GUEST-TEST-DONE', false],
    ],
  },
};

/** Where `m` (a string or a RegExp) first occurs in `text` at or after `from`: [index, length] or null. */
function find(text, m, from) {
  if (typeof m === 'string') {
    const i = text.indexOf(m, from);
    return i < 0 ? null : [i, m.length];
  }
  const re = new RegExp(m.source, 'g');
  re.lastIndex = from;
  const r = re.exec(text);
  return r ? [r.index, r[0].length] : null;
}

/** busybox `time`'s "real\t0m 3.50s" -> 3.5 */
function realSecs(s) {
  const r = /real\s+(\d+)m ([\d.]+)s/.exec(s);
  return r ? Number(r[1]) * 60 + Number(r[2]) : null;
}

/** 32-bit FNV-1a of a string, as 8 hex digits (to show that two outputs are the same). */
export function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/**
 * Run one workload on one build until the guest exits.
 * @param {{kernel, initrd, disk}} guest bytes (disk: the raw image, used by the 'test' workload)
 * @param {'bench'|'test'} workload
 * @param {'wasm64'|'wasm32'} build
 * @param {{onSerial?(bytes), onPhase?(name)}} hooks
 */
export async function runOne(guest, workload, build, hooks = {}) {
  const w = WORKLOADS[workload];
  if (!w) throw new Error(`unknown benchmark workload ${workload}`);
  if (w.disk && !guest.disk) throw new Error('the disk test needs the bundled disk image (dist/guest/disk.ext2.gz)');
  const decoder = new TextDecoder();
  let text = '';
  let phase = 0; // index of the phase being timed
  let phaseStart = null; // [time, index after the start marker]
  const phases = w.phases.map(([name, , , timed]) => ({ name, ms: null, guestSecs: null, instructions: null, mips: null, timed }));
  let exited;
  const done = new Promise((ok) => { exited = ok; });
  let t0 = 0;
  const advance = (now) => {
    while (phase < w.phases.length) {
      const [, startM, endM, timed] = w.phases[phase];
      if (!phaseStart) {
        if (startM === null) phaseStart = [t0, 0];
        else {
          const s = find(text, startM, 0);
          if (!s) return;
          phaseStart = [now, s[0] + s[1]];
        }
        hooks.onPhase?.(w.phases[phase][0]);
      }
      const e = find(text, endM, phaseStart[1]);
      if (!e) return;
      const p = phases[phase];
      p.ms = now - phaseStart[0];
      if (timed) {
        p.guestSecs = realSecs(text.slice(e[0], e[0] + e[1]));
        if (p.guestSecs !== null) {
          p.instructions = (p.guestSecs * 1e9) / 2 ** ICOUNT_SHIFT;
          if (p.ms > 0) p.mips = p.instructions / p.ms / 1000;
        }
      }
      phase++;
      phaseStart = null;
    }
  };
  const vm = await Tci64.create({
    kernel: guest.kernel,
    initrd: guest.initrd,
    disk: w.disk ? guest.disk.slice() : undefined,
    cmdline: w.cmdline,
    memoryMiB: MEMORY_MIB,
    icountShift: ICOUNT_SHIFT,
    rtcEpochSecs: RTC_EPOCH_SECS,
    build,
    statsIntervalMs: 1000,
    onSerial(bytes) {
      const now = performance.now();
      text += decoder.decode(bytes, { stream: true });
      hooks.onSerial?.(bytes);
      advance(now);
    },
    onExit: (reason) => exited(reason),
  });
  try {
    t0 = performance.now();
    vm.start();
    const reason = await done;
    const wallMs = performance.now() - t0;
    const s = await vm.stats();
    text += decoder.decode();
    const failed = w.fail.exec(text);
    return {
      build: vm.build,
      workload,
      exit: reason,
      ok: !failed && text.includes(w.done),
      failure: failed ? failed[0] : (text.includes(w.done) ? null : `no ${w.done}`),
      wallMs,
      instructions: s.instructions,
      opsExecuted: s.opsExecuted,
      tbsExecuted: s.tbsExecuted,
      mips: s.instructions / wallMs / 1000,
      opsPerInsn: s.instructions ? s.opsExecuted / s.instructions : null,
      phases,
      serial: text,
      serialHash: fnv1a(text),
    };
  } finally {
    await vm.stop();
  }
}

/**
 * The benchmark: `workload` on wasm64 (when this engine has memory64) and then on wasm32.
 * hooks.onRun(build) before each run, hooks.onResult(result) after each.
 * Resolves to { workload, results, identical, userAgent }.
 */
export async function runBenchmark(guest, workload = 'bench', hooks = {}) {
  const builds = ['wasm64', 'wasm32'];
  const results = [];
  for (const build of builds) {
    if (build === 'wasm64' && !supportsWasm64()) {
      const r = { build, skipped: 'this engine has no memory64 (or no 64-bit tables)' };
      results.push(r);
      hooks.onResult?.(r);
      continue;
    }
    hooks.onRun?.(build);
    const r = await runOne(guest, workload, build, hooks);
    results.push(r);
    hooks.onResult?.(r);
  }
  const ran = results.filter((r) => !r.skipped);
  const identical = ran.length === 2 ? ran[0].serial === ran[1].serial : null;
  return { workload, results, identical, userAgent: navigator.userAgent };
}
