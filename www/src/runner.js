// The run loop around one wasm `Vm`: slices of guest execution between host events, batched
// serial output, idle sleeps until the next device deadline. Used inside the Web Worker and,
// with `worker: false`, directly on the calling thread (Node, tests).

const SLICE_MS = 16; // run this long before yielding to the event loop
const BUDGET = 200_000; // instructions per Vm.run call inside a slice
// In deterministic (icount) mode use the native CLI's budget. The guest does not depend on it
// (slice ends are machine state, so any budget gives the same bytes); it only sets how often
// the host regains control, as in the CLI.
export const CLI_BUDGET = 1 << 20;
const MAX_IDLE_MS = 10;

const encoder = new TextEncoder();

/** A zero-delay macrotask (setTimeout clamps to 4 ms after a few nested calls). */
function makeYield() {
  if (typeof setImmediate === 'function') return (fn) => { setImmediate(fn); };
  const ch = new MessageChannel();
  const queue = [];
  ch.port1.onmessage = () => queue.shift()?.();
  return (fn) => { queue.push(fn); ch.port2.postMessage(0); };
}

export function toBytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError('tci64: expected a string, a Uint8Array or an ArrayBuffer');
}

const WASM32_HINT = ' (the wasm32 build keeps guest RAM inside 4 GiB of linear memory; use the wasm64 build for more)';

/**
 * Create the wasm Vm from create() options; throws a JS Error with the reason. With `state`
 * (a snapshot) the machine resumes from it and the boot options (kernel, memoryMiB, cmdline,
 * icountShift, rtcEpochSecs) are not used: the snapshot has them.
 */
export function createVm(glue, opts) {
  const bytes = (v, what, required) => {
    if (v === undefined || v === null) {
      if (required) throw new Error(`tci64: ${what} is required`);
      return undefined;
    }
    return toBytes(v);
  };
  if (opts.state !== undefined && opts.state !== null) {
    try {
      return glue.Vm.fromState(toBytes(opts.state), bytes(opts.disk, 'disk', false), opts.build);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const err = new Error(`tci64: cannot restore the state: ${msg}`);
      if (/this build allows at most/.test(msg) && opts.build === 'wasm32') err.message += WASM32_HINT;
      throw err;
    }
  }
  const memoryMiB = opts.memoryMiB ?? 256;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 1) {
    throw new Error(`tci64: memoryMiB must be a positive integer, not ${memoryMiB}`);
  }
  try {
    return new glue.Vm(
      bytes(opts.kernel, 'kernel', true),
      bytes(opts.initrd, 'initrd', false),
      opts.cmdline ?? 'console=ttyS0',
      memoryMiB,
      bytes(opts.disk, 'disk', false),
      opts.icountShift ?? undefined,
      opts.rtcEpochSecs ?? undefined,
    );
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const err = new Error(`tci64: ${msg}`);
    if (/cannot allocate/.test(msg) && opts.build === 'wasm32') {
      err.message += WASM32_HINT;
    }
    throw err;
  }
}

export class Runner {
  /**
   * @param vm a wasm-bindgen `Vm`
   * @param hooks { onSerial(bytes), onStats(stats), onExit(reason), statsIntervalMs, deterministic }
   */
  constructor(vm, hooks = {}) {
    this.vm = vm;
    this.hooks = hooks;
    this.running = false;
    this.exited = null;
    this.pending = [];
    this.timer = null;
    this.scheduled = false;
    this.yieldNow = makeYield();
    this.statsEvery = hooks.statsIntervalMs ?? 500;
    this.budget = hooks.deterministic ? CLI_BUDGET : BUDGET;
    this.lastStats = { t: performance.now(), instructions: 0 };
    this.upMs = 0; // wall time spent started (uptime, not counting pauses)
    this.since = null;
    this.mips = 0;
    this.lastStatsAt = 0;
  }

  start() {
    if (this.exited || this.running) return;
    this.running = true;
    this.since = performance.now();
    this.lastStats = { t: performance.now(), instructions: this.vm.stats().instructions };
    this.schedule(0);
  }

  halt() {
    if (this.since !== null) this.upMs += performance.now() - this.since;
    this.since = null;
    this.running = false;
  }

  pause() {
    this.halt();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.emitStats();
  }

  stop() {
    this.pause();
    this.exited ??= 'stopped';
  }

  write(data) {
    const b = toBytes(data);
    if (b.length) this.pending.push(b.slice());
    this.feed();
    if (this.running && this.timer !== null) {
      // Idle: wake up now.
      clearTimeout(this.timer);
      this.timer = null;
      this.schedule(0);
    }
  }

  feed() {
    while (this.pending.length) {
      const head = this.pending[0];
      const n = this.vm.serialWrite(head);
      if (n === head.length) this.pending.shift();
      else {
        this.pending[0] = head.subarray(n);
        break;
      }
    }
  }

  stats() {
    const s = this.vm.stats();
    s.mips = this.mips;
    s.uptimeMs = this.upMs + (this.since === null ? 0 : performance.now() - this.since);
    s.running = this.running;
    s.exited = this.exited;
    return s;
  }

  disk() {
    return this.vm.disk();
  }

  /** The whole machine as a snapshot (between run slices; queued serial input is not in it). */
  saveState() {
    try {
      return this.vm.saveState();
    } catch (e) {
      throw new Error(`tci64: cannot save the state: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  emitStats() {
    const now = performance.now();
    const s = this.vm.stats();
    const dt = now - this.lastStats.t;
    if (dt > 0 && this.running) this.mips = (s.instructions - this.lastStats.instructions) / dt / 1000;
    this.lastStats = { t: now, instructions: s.instructions };
    this.lastStatsAt = now;
    this.hooks.onStats?.(this.stats());
  }

  schedule(ms) {
    if (this.scheduled) return;
    if (ms > 0) {
      this.timer = setTimeout(() => { this.timer = null; this.tick(); }, ms);
    } else {
      this.scheduled = true;
      this.yieldNow(() => { this.scheduled = false; this.tick(); });
    }
  }

  tick() {
    if (!this.running) return;
    const t0 = performance.now();
    const chunks = [];
    let sleepMs = 0;
    let exit = null;
    for (;;) {
      this.feed();
      const s = this.vm.run(this.budget);
      const kind = s.kind;
      const untilNs = s.untilNs;
      s.free();
      const out = this.vm.takeSerial();
      if (out.length) chunks.push(out);
      if (kind === 1) {
        sleepMs = Math.min(MAX_IDLE_MS, Math.max(0, (untilNs - this.vm.nowNs()) / 1e6));
        if (sleepMs > 0 && !this.pending.length) break;
      } else if (kind >= 2) {
        exit = kind === 2 ? 'reset' : kind === 4 ? 'poweroff' : 'halted';
        break;
      }
      if (performance.now() - t0 >= SLICE_MS) break;
    }
    const t1 = performance.now();
    if (chunks.length) {
      let out = chunks[0];
      if (chunks.length > 1) {
        out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let o = 0;
        for (const c of chunks) { out.set(c, o); o += c.length; }
      }
      this.hooks.onSerial?.(out);
    }
    if (exit) {
      this.halt();
      this.exited = exit;
      this.emitStats();
      this.hooks.onExit?.(exit);
      return;
    }
    if (t1 - this.lastStatsAt >= this.statsEvery) this.emitStats();
    this.schedule(sleepMs > 0 && !this.pending.length ? sleepMs : 0);
  }
}
