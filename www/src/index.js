// tci64: an x86-64 PC emulator in WebAssembly. The public API:
//   const vm = await Tci64.create({ kernel, initrd, cmdline, memoryMiB, disk, build, onSerial, onStats });
//   vm.start(); vm.serialWrite('ls\n'); await vm.stats(); await vm.disk(); vm.pause(); await vm.stop();
//   const state = await vm.saveState(); const vm2 = await Tci64.create({ state, disk });
// The VM runs in a module Web Worker (the page never freezes); `worker: false` runs it on the
// calling thread instead (Node, where Web Workers do not exist).
import { loadBuild, resolveBuild, detectBuild, supportsWasm64, DEFAULT_BASE_URL } from './loader.js';
import { Runner, createVm, toBytes } from './runner.js';

export { detectBuild, resolveBuild, supportsWasm64, loadBuild };

const hasWorkers = typeof Worker === 'function' && typeof window !== 'undefined';

function copyOpts(o) {
  const pick = (v) => (v === undefined || v === null ? undefined : toBytes(v));
  return {
    kernel: pick(o.kernel),
    initrd: pick(o.initrd),
    disk: pick(o.disk),
    state: pick(o.state),
    cmdline: o.cmdline,
    memoryMiB: o.memoryMiB,
    icountShift: o.icountShift,
    rtcEpochSecs: o.rtcEpochSecs,
    statsIntervalMs: o.statsIntervalMs,
  };
}

const BYTE_OPTIONS = ['kernel', 'initrd', 'disk', 'state'];

/** The options with every byte option that is a Promise (e.g. a fetch still running) awaited. */
async function settle(opts) {
  const o = { ...opts };
  await Promise.all(BYTE_OPTIONS.map(async (k) => { if (o[k] && typeof o[k].then === 'function') o[k] = await o[k]; }));
  return o;
}

export class Tci64 {
  /** @private use Tci64.create */
  constructor(impl, build, version) {
    this._impl = impl;
    /** The build that runs: 'wasm64' or 'wasm32'. */
    this.build = build;
    /** The tci64 version of the loaded module. */
    this.version = version;
  }

  /** Load a build, construct the machine and load the kernel. Rejects with an Error. */
  static async create(opts = {}) {
    const build = resolveBuild(opts.build);
    const baseUrl = opts.baseUrl ? new URL(opts.baseUrl, globalThis.location?.href).href : DEFAULT_BASE_URL;
    const useWorker = opts.worker ?? hasWorkers;
    if (useWorker) return createInWorker(opts, build, baseUrl);
    // Load the module while any byte option still downloads.
    const [glue, settled] = await Promise.all([loadBuild(build, baseUrl), settle(opts)]);
    opts = settled;
    const vm = createVm(glue, { ...opts, build });
    const runner = new Runner(vm, {
      statsIntervalMs: opts.statsIntervalMs,
      onSerial: opts.onSerial,
      onStats: opts.onStats,
      onExit: opts.onExit,
      deterministic: opts.icountShift !== undefined && opts.icountShift !== null,
    });
    return new Tci64(new InlineImpl(runner, vm), build, glue.version());
  }

  /** Type into the serial port (a string is sent as UTF-8). Bytes queue until the UART takes them. */
  serialWrite(data) { this._impl.serialWrite(toBytes(data)); }
  /** Start or resume running. */
  start() { this._impl.start(); }
  /** Pause (the machine keeps its state; `start()` resumes). */
  pause() { this._impl.pause(); }
  /** Stop for good and free the machine (terminates the worker). */
  stop() { return this._impl.stop(); }
  /** Counters: instructions, virtualNs, mips, uptimeMs, running, exited, and engine counters. */
  stats() { return this._impl.stats(); }
  /** The disk image as the guest has written it (a Uint8Array), or undefined without a disk. */
  disk() { return this._impl.disk(); }
  /**
   * The whole machine (CPU, devices, clock, RAM, what the guest wrote to the disk) as a
   * snapshot, a Uint8Array; `Tci64.create({ state, disk })` resumes it, on either build or the
   * native CLI (`-incoming file:PATH`). `disk` there is the image this VM was created with.
   */
  saveState() { return this._impl.saveState(); }
}

class InlineImpl {
  constructor(runner, vm) { this.runner = runner; this.vm = vm; }
  serialWrite(b) { this.runner.write(b); }
  start() { this.runner.start(); }
  pause() { this.runner.pause(); }
  async stop() {
    this.runner.stop();
    this.vm.free();
    this.vm = null;
  }
  async stats() { return this.runner.stats(); }
  async disk() { return this.runner.disk(); }
  async saveState() { return this.runner.saveState(); }
}

class WorkerImpl {
  constructor(worker) {
    this.worker = worker;
    this.nextId = 1;
    this.waiting = new Map();
    this.stopped = false;
  }
  request(type) {
    if (this.stopped) return Promise.reject(new Error('tci64: the VM was stopped'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ type, id });
    });
  }
  serialWrite(bytes) { if (!this.stopped) this.worker.postMessage({ type: 'serial', bytes }); }
  start() { if (!this.stopped) this.worker.postMessage({ type: 'start' }); }
  pause() { if (!this.stopped) this.worker.postMessage({ type: 'pause' }); }
  async stop() {
    this.stopped = true;
    this.worker.terminate();
    for (const w of this.waiting.values()) w.reject(new Error('tci64: the VM was stopped'));
    this.waiting.clear();
  }
  stats() { return this.request('stats'); }
  disk() { return this.request('disk'); }
  saveState() { return this.request('saveState'); }
}

function createInWorker(opts, build, baseUrl) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: `tci64-${build}` });
  const impl = new WorkerImpl(worker);
  return new Promise((resolve, reject) => {
    let ready = false;
    worker.onmessage = (ev) => {
      const m = ev.data;
      switch (m.type) {
        case 'ready':
          ready = true;
          resolve(new Tci64(impl, m.build, m.version));
          break;
        case 'serial': opts.onSerial?.(m.bytes); break;
        case 'stats': opts.onStats?.(m.stats); break;
        case 'exit': opts.onExit?.(m.reason); break;
        case 'reply': {
          const w = impl.waiting.get(m.id);
          impl.waiting.delete(m.id);
          w?.resolve(m.value);
          break;
        }
        case 'error': {
          const err = new Error(m.message);
          if (!ready) {
            worker.terminate();
            reject(err);
          } else if (m.id !== undefined && impl.waiting.has(m.id)) {
            impl.waiting.get(m.id).reject(err);
            impl.waiting.delete(m.id);
          } else {
            opts.onError ? opts.onError(err) : console.error(err);
          }
          break;
        }
      }
    };
    worker.onerror = (ev) => {
      const err = new Error(`tci64: worker failed: ${ev.message || 'could not load the worker script'}`);
      if (!ready) { worker.terminate(); reject(err); } else if (opts.onError) opts.onError(err); else console.error(err);
    };
    // The worker loads and compiles the module while any byte option still downloads.
    worker.postMessage({ type: 'load', build, baseUrl });
    settle(opts).then((o) => {
      if (impl.stopped) return;
      worker.postMessage({ type: 'init', build, baseUrl, opts: copyOpts(o) });
    }, (e) => { worker.terminate(); reject(e instanceof Error ? e : new Error(String(e))); });
  });
}

async function readBytes(url, gunzip) {
  if (url.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    const b = await readFile(url);
    if (!gunzip) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    const { gunzipSync } = await import('node:zlib');
    const g = gunzipSync(b);
    return new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
  }
  const r = await fetch(url);
  if (!r.ok) throw new Error(`tci64: ${url.href}: ${r.status} ${r.statusText}`);
  if (gunzip) return new Uint8Array(await new Response(r.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
  return new Uint8Array(await r.arrayBuffer());
}

/**
 * The pre-booted bundled guest this package ships in `pkg/guest/` (built by
 * scripts/build-web.sh with the native CLI at the guest's shell prompt): `{ state, disk,
 * console }`, where `console` is the serial output up to the save (the boot log and the
 * prompt). `Tci64.create({ state, disk })` resumes it at the prompt.
 */
export async function bundledState(baseUrl = DEFAULT_BASE_URL) {
  const dir = new URL('guest/', new URL(baseUrl, globalThis.location?.href));
  const [state, disk, console] = await Promise.all([
    readBytes(new URL('tiny.snapshot', dir), false),
    readBytes(new URL('disk.ext2.gz', dir), true),
    readBytes(new URL('tiny.console', dir), false),
  ]);
  return { state, disk, console };
}

export default Tci64;
