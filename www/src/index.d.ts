// TypeScript declarations for the tci64 npm package.

/** Which WebAssembly build runs the machine. */
export type Build = 'wasm64' | 'wasm32';

/** Bytes as accepted by the API. */
export type Bytes = Uint8Array | ArrayBuffer | ArrayBufferView;
/** A byte option: bytes, or a Promise of them (the module then loads while they download). */
export type BytesOption = Bytes | PromiseLike<Bytes>;

/** Why the machine stopped by itself: the guest rebooted/exited (`reboot`, panic with
 * `panic=-1`, triple fault), or halted with interrupts off for good. */
export type ExitReason = 'reset' | 'poweroff' | 'halted';

export interface Tci64Stats {
  /** Guest instructions executed. */
  instructions: number;
  /** Virtual time since power-on, in nanoseconds. */
  virtualNs: number;
  /** Guest million instructions per second over the last stats interval. */
  mips: number;
  /** Wall time spent started (pauses excluded), in milliseconds. */
  uptimeMs: number;
  running: boolean;
  /** Set once the machine stopped for good. */
  exited: ExitReason | 'stopped' | null;
  opsExecuted: number;
  tbsTranslated: number;
  tbsInvalidated: number;
  /** Translation blocks entered (chained or not). */
  tbsExecuted: number;
  chainHits: number;
  jumpCacheHits: number;
  tbLookups: number;
  /** Software-TLB refills through the guest's page walker (data and code fetches). */
  tlbMisses: number;
  /** Data accesses that left the inline TLB fast path (misses, MMIO, page crossings, stores to
   * code pages). */
  tlbSlow: number;
  /** Data accesses served by the inline TLB fast path (all data accesses = tlbFastHits + tlbSlow). */
  tlbFastHits: number;
}

/** Boot options; with `state`, only `disk`, `build` and the host hooks apply (the snapshot
 * carries the kernel, RAM size, command line and time mode). */
export interface Tci64Options {
  /** A Linux bzImage (64-bit boot protocol). Required unless `state` is given. */
  kernel?: BytesOption;
  /** Resume from a snapshot (from `saveState()`, `bundledState()` or the native CLI's
   * `--save-on-output` / Ctrl-A S) instead of booting. `disk` must then be the image the saved
   * machine was created with (what the guest wrote since is in the snapshot); a different disk,
   * a corrupt or truncated file, another format version, or RAM the build cannot hold (the
   * wasm32 build: guest RAM plus the unpacked snapshot within 3584 MiB) rejects with an Error. */
  state?: BytesOption | null;
  /** An initramfs (cpio, optionally compressed). */
  initrd?: BytesOption | null;
  /** Kernel command line; default `'console=ttyS0'`. The serial console is ttyS0. */
  cmdline?: string;
  /** Guest RAM in MiB; default 256. The wasm32 build holds at most 4 GiB of linear memory in
   * total, so guest RAM must stay well below that; the wasm64 build is bounded by the browser. */
  memoryMiB?: number;
  /** A raw disk image, attached as virtio-blk (`/dev/vda`). It stays untouched: the guest's
   * writes go to an overlay (in the VM, and in its snapshots); read the written image back with
   * `disk()`. */
  disk?: BytesOption | null;
  /** `'auto'` (default): wasm64 where the engine has memory64 and table64, else wasm32. */
  build?: 'auto' | Build;
  /** Deterministic time: 2^N ns of virtual time per instruction (0..10), like `-icount shift=N`.
   * Serial output is then the same byte for byte as the native CLI's. Default: real time. */
  icountShift?: number;
  /** The RTC at power-on, seconds since the Unix epoch; default: now. */
  rtcEpochSecs?: number;
  /** Run in a module Web Worker (default where `Worker` exists in a window) or on the calling
   * thread (`false`; the only choice in Node). */
  worker?: boolean;
  /** Where the `pkg/` directory with both builds is served; default: next to this package's `src/`. */
  baseUrl?: string | URL;
  /** Serial output, batched (one call per run slice). */
  onSerial?: (bytes: Uint8Array) => void;
  /** Counters, about every `statsIntervalMs` (default 500) while running. */
  onStats?: (stats: Tci64Stats) => void;
  statsIntervalMs?: number;
  /** The guest stopped by itself. */
  onExit?: (reason: ExitReason) => void;
  /** An error after creation (worker mode). Default: console.error. */
  onError?: (error: Error) => void;
}

export declare class Tci64 {
  private constructor();
  /** Load a build, construct the machine and load the kernel. Rejects with an `Error` whose
   * message says what is wrong (corrupt kernel, RAM the build cannot hold, bad option). */
  static create(options: Tci64Options): Promise<Tci64>;
  /** The build that runs. */
  readonly build: Build;
  /** The tci64 version of the loaded module. */
  readonly version: string;
  /** Type into the serial port; strings are sent as UTF-8. Queued until the UART accepts them. */
  serialWrite(data: string | Bytes): void;
  /** Start, or resume after `pause()`. */
  start(): void;
  /** Pause; the machine keeps its state. */
  pause(): void;
  /** Stop for good and free the machine (terminates the worker). */
  stop(): Promise<void>;
  stats(): Promise<Tci64Stats>;
  /** The disk image as the guest has written it so far, or undefined without a disk. */
  disk(): Promise<Uint8Array | undefined>;
  /** The whole machine as a snapshot (format: docs/SNAPSHOT.md): CPU, devices, virtual clock,
   * RAM and what the guest wrote to the disk. Resume it with `Tci64.create({ state, disk })`
   * on either build, or natively with `tci64 -incoming file:PATH -drive file=DISK,snapshot=on,...`.
   * Serial input still queued in the host (not yet taken by the UART) is not in it. */
  saveState(): Promise<Uint8Array>;
}

/** The pre-booted bundled guest shipped in the package (`pkg/guest/`): a snapshot at the
 * shell prompt, the disk it needs, and the console output up to the save. */
export interface BundledState {
  state: Uint8Array;
  disk: Uint8Array;
  /** The serial output before the save (boot log and the prompt), to show in a terminal. */
  console: Uint8Array;
}
/** Load the shipped pre-booted guest; `Tci64.create({ state, disk })` resumes it. */
export declare function bundledState(baseUrl?: string | URL): Promise<BundledState>;

/** The build `'auto'` picks on this engine. */
export declare function detectBuild(): Build;
/** Whether this engine has memory64 and table64 (can run the wasm64 build). */
export declare function supportsWasm64(): boolean;
/** Resolve a `build` option; throws when `'wasm64'` is forced on an engine without memory64. */
export declare function resolveBuild(build?: 'auto' | Build): Build;
/** Load and instantiate one build's wasm-bindgen module (the low-level `Vm` class). */
export declare function loadBuild(build: Build, baseUrl?: string | URL): Promise<unknown>;

export default Tci64;
