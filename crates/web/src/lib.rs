//! Browser bindings for tci64: a thin `wasm-bindgen` layer over [`tci64_machine::Machine`].
//!
//! [`Core`] is the host-independent part (plain Rust, tested natively by `cargo test`): it builds
//! a machine from bytes, keeps the disk behind a shared handle so the written image can be read
//! back, and turns machine exits into a small status. The `Vm` class exported to JavaScript
//! (`wasm` module below, compiled only for wasm) wraps it with a `performance.now()` clock and
//! JS-friendly types; errors become JS `Error` exceptions with a message.
//!
//! Built for `wasm64-unknown-unknown` (see `scripts/build-web.sh`); the same module is lowered to
//! wasm32 with binaryen for engines without memory64.

use tci64_devices::block::{CowBackend, MemBackend};
use tci64_machine::{DiskConfig, HostClock, Machine, MachineConfig, RunExit, Stats, TraceFlags};

#[cfg(target_family = "wasm")]
use wasm_bindgen::prelude::wasm_bindgen;

/// The tci64 version, e.g. `"0.1.0"`.
#[cfg_attr(target_family = "wasm", wasm_bindgen)]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// What a host asks for: the bytes and the few knobs a page exposes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub kernel: Vec<u8>,
    pub initrd: Option<Vec<u8>>,
    pub cmdline: String,
    pub memory_mib: u32,
    pub disk: Option<Vec<u8>>,
    /// `-icount shift=N` (deterministic time); `None` = real time from the host clock.
    pub icount_shift: Option<u32>,
    /// The RTC at power-on, seconds since the Unix epoch.
    pub rtc_epoch_secs: u64,
}

/// Why [`Core::run`] returned, flattened for JavaScript: `kind` is 0 = budget used up,
/// 1 = idle until `until_ns` of virtual time, 2 = the guest reset (its way of exiting),
/// 3 = halted for good, 4 = the guest powered off (ACPI S5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub kind: u32,
    pub until_ns: u64,
}

impl From<RunExit> for Status {
    fn from(e: RunExit) -> Self {
        match e {
            // The web page sets no breakpoints: a debug stop is just a short budget.
            RunExit::Budget | RunExit::Debug(_) => Status {
                kind: 0,
                until_ns: 0,
            },
            RunExit::Idle { until_ns } => Status { kind: 1, until_ns },
            RunExit::Reset => Status {
                kind: 2,
                until_ns: 0,
            },
            RunExit::Halted => Status {
                kind: 3,
                until_ns: 0,
            },
            RunExit::PowerOff => Status {
                kind: 4,
                until_ns: 0,
            },
        }
    }
}

/// A machine. Its disk (if any) is the image the host passed under a copy-on-write overlay
/// (the CLI's `snapshot=on`): the image stays untouched, a snapshot carries what the guest
/// wrote, and restoring needs only the original image.
pub struct Core {
    machine: Machine,
    has_disk: bool,
}

/// The disk as the machine gets it.
fn disk_config(image: Vec<u8>) -> DiskConfig {
    DiskConfig {
        backend: Box::new(CowBackend::new(MemBackend::new(image))),
        read_only: false,
    }
}

/// The most memory the wasm32 (lowered) build gives a restore for guest RAM plus the unpacked
/// snapshot: its whole linear memory is 4 GiB, and the emulator's heap, translated code, the
/// snapshot file itself and the disk need the rest.
pub const WASM32_RESTORE_MAX_BYTES: u64 = 3584 << 20;
const _: () = assert!(WASM32_RESTORE_MAX_BYTES < 4 << 30);

/// The cap a build puts on a restore ([`Core::restore`]'s `max_ram_bytes`): `"wasm32"` has
/// [`WASM32_RESTORE_MAX_BYTES`], `"wasm64"` (and native) only what the allocator grants.
pub fn restore_cap(build: &str) -> Result<Option<u64>, String> {
    match build {
        "wasm32" => Ok(Some(WASM32_RESTORE_MAX_BYTES)),
        "wasm64" | "native" => Ok(None),
        b => Err(format!(
            "unknown build '{b}' (expected 'wasm64' or 'wasm32')"
        )),
    }
}

/// A clock that never moves (deterministic mode does not read it).
struct StillClock;
impl HostClock for StillClock {
    fn now_ns(&self) -> u64 {
        0
    }
}

/// The most RAM a build can ask for: the lowered build cannot address more than 4 GiB of linear
/// memory at all, and the allocator reports failure for anything the engine refuses.
const MAX_MEMORY_MIB: u32 = 1 << 20;

impl Core {
    /// Build a machine. `clock` is the host's monotonic clock (ignored with `icount_shift`).
    pub fn new(opts: Options, clock: Box<dyn HostClock>) -> Result<Core, String> {
        if opts.kernel.is_empty() {
            return Err("no kernel: pass the bytes of a bzImage".into());
        }
        if opts.memory_mib == 0 || opts.memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "memoryMiB must be between 1 and {MAX_MEMORY_MIB}, not {}",
                opts.memory_mib
            ));
        }
        if let Some(shift) = opts.icount_shift {
            if shift > 10 {
                return Err(format!("icount shift must be 0..=10, not {shift}"));
            }
        }
        let has_disk = opts.disk.is_some();
        let clock: Box<dyn HostClock> = if opts.icount_shift.is_some() {
            Box::new(StillClock)
        } else {
            clock
        };
        let config = MachineConfig {
            ram_bytes: u64::from(opts.memory_mib) << 20,
            kernel: opts.kernel,
            kernel_name: "kernel".into(),
            initrd: opts.initrd,
            cmdline: opts.cmdline,
            disks: opts.disk.into_iter().map(disk_config).collect(),
            icount_shift: opts.icount_shift,
            rtc_epoch_secs: opts.rtc_epoch_secs,
            trace: TraceFlags::default(),
            // QEMU's microvm default, as the CLI.
            virtio_legacy: true,
            machine: Default::default(),
            // microvm with the APIC; the disk is announced on the command line (acpi=off).
            platform: tci64_machine::PlatformConfig {
                acpi: false,
                ..Default::default()
            },
        };
        let machine = Machine::new(config, clock).map_err(|e| e.to_string())?;
        Ok(Core { machine, has_disk })
    }

    /// Run at most `budget` guest instructions.
    pub fn run(&mut self, budget: u64) -> Status {
        self.machine.run(budget).into()
    }

    /// Offer typed bytes to the serial port; returns how many it took.
    pub fn serial_write(&mut self, bytes: &[u8]) -> usize {
        self.machine.serial_input(bytes)
    }

    /// The serial output since the last call.
    pub fn take_serial(&mut self) -> Vec<u8> {
        self.machine.take_serial_output()
    }

    pub fn stats(&self) -> Stats {
        self.machine.stats()
    }

    /// Virtual time, nanoseconds since power-on.
    pub fn now_ns(&self) -> u64 {
        self.machine.now_ns()
    }

    /// The whole machine as a snapshot (`docs/SNAPSHOT.md`): the same bytes the native CLI
    /// writes, restorable by any build.
    pub fn save_state(&mut self) -> Result<Vec<u8>, String> {
        self.machine.save().map_err(|e| e.to_string())
    }

    /// A machine resumed from a snapshot; `disk` must be the image the saved machine started
    /// with (its overlay, what the guest wrote, is in the snapshot), or for a snapshot of a
    /// read-write disk the image as saved. `max_ram_bytes` is the most memory this build gives
    /// guest RAM plus the unpacked snapshot ([`restore_cap`]; `None`: what the allocator
    /// grants). `clock` is used unless the snapshot is in deterministic (`-icount`) mode.
    pub fn restore(
        state: &[u8],
        disk: Option<Vec<u8>>,
        clock: Box<dyn HostClock>,
        max_ram_bytes: Option<u64>,
    ) -> Result<Core, String> {
        let has_disk = disk.is_some();
        let machine = Machine::restore(
            state,
            tci64_machine::RestoreOptions {
                disks: disk.into_iter().map(disk_config).collect(),
                clock,
                trace: TraceFlags::default(),
                max_ram_bytes,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(Core { machine, has_disk })
    }

    /// A copy of the disk image as the guest left it (flushed first); `None` without a disk.
    pub fn disk(&mut self) -> Option<Vec<u8>> {
        if !self.has_disk {
            return None;
        }
        let _ = self.machine.flush_disks();
        let d = self.machine.disk_mut(0)?;
        let mut out = vec![0u8; usize::try_from(d.size()).ok()?];
        d.read_at(0, &mut out).ok()?;
        Some(out)
    }
}

#[cfg(target_family = "wasm")]
mod wasm {
    use super::{Core, HostClock, Options};
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = console)]
        fn error(msg: &str);
        /// `performance.now()` in windows and workers alike.
        #[wasm_bindgen(js_namespace = performance, js_name = now)]
        fn performance_now() -> f64;
    }

    /// Runs when the module is instantiated: panics go to `console.error` (the
    /// console_error_panic_hook crate does nothing on wasm64), `log` records to the console.
    #[wasm_bindgen(start)]
    pub fn start() {
        std::panic::set_hook(Box::new(|info| error(&format!("tci64 panicked: {info}"))));
        let _ = console_log::init_with_level(log::Level::Warn);
    }

    struct PerfClock;
    impl HostClock for PerfClock {
        fn now_ns(&self) -> u64 {
            (performance_now() * 1e6) as u64
        }
    }

    /// A tci64 virtual machine (microvm board, one CPU, an optional virtio-blk disk).
    #[wasm_bindgen]
    pub struct Vm {
        core: Core,
    }

    /// What `Vm.run` returned: `kind` 0 = budget used up, 1 = idle (nothing happens before
    /// virtual time `untilNs`), 2 = the guest reset (exited), 3 = halted for good, 4 = powered off.
    #[wasm_bindgen]
    pub struct RunStatus {
        pub kind: u32,
        #[wasm_bindgen(js_name = untilNs)]
        pub until_ns: f64,
    }

    #[wasm_bindgen]
    impl Vm {
        /// Build a VM and load the kernel. Throws an `Error` for a corrupt kernel, RAM the build
        /// cannot hold, or a bad option. `icountShift` (0..=10) selects deterministic time;
        /// `rtcEpochSecs` sets the RTC (defaults to the host's time).
        #[wasm_bindgen(constructor)]
        #[allow(clippy::too_many_arguments)]
        pub fn new(
            kernel: Vec<u8>,
            initrd: Option<Vec<u8>>,
            cmdline: String,
            memory_mib: u32,
            disk: Option<Vec<u8>>,
            icount_shift: Option<u32>,
            rtc_epoch_secs: Option<f64>,
        ) -> Result<Vm, JsError> {
            let rtc = rtc_epoch_secs.unwrap_or_else(|| js_sys::Date::now() / 1000.0);
            let opts = Options {
                kernel,
                initrd,
                cmdline,
                memory_mib,
                disk,
                icount_shift,
                rtc_epoch_secs: rtc.max(0.0) as u64,
            };
            Core::new(opts, Box::new(PerfClock))
                .map(|core| Vm { core })
                .map_err(|e| JsError::new(&e))
        }

        /// Run at most `budget` guest instructions (a JS number).
        pub fn run(&mut self, budget: f64) -> RunStatus {
            let s = self.core.run(budget.max(1.0) as u64);
            RunStatus {
                kind: s.kind,
                until_ns: s.until_ns as f64,
            }
        }

        /// Offer bytes to the serial port; returns how many it accepted (offer the rest later).
        #[wasm_bindgen(js_name = serialWrite)]
        pub fn serial_write(&mut self, bytes: &[u8]) -> u32 {
            self.core.serial_write(bytes) as u32
        }

        /// The serial output since the last call (a `Uint8Array`, possibly empty).
        #[wasm_bindgen(js_name = takeSerial)]
        pub fn take_serial(&mut self) -> Vec<u8> {
            self.core.take_serial()
        }

        /// Virtual time in nanoseconds since power-on.
        #[wasm_bindgen(js_name = nowNs)]
        pub fn now_ns(&self) -> f64 {
            self.core.now_ns() as f64
        }

        /// Counters as a plain object: `{ instructions, virtualNs, tbsTranslated, ... }`.
        pub fn stats(&self) -> js_sys::Object {
            let s = self.core.stats();
            let o = js_sys::Object::new();
            let set = |k: &str, v: u64| {
                let _ = js_sys::Reflect::set(&o, &k.into(), &JsValue::from_f64(v as f64));
            };
            set("instructions", s.guest_instructions);
            set("virtualNs", s.virtual_ns);
            set("opsExecuted", s.ops_executed);
            set("tbsTranslated", s.tbs_translated);
            set("tbsInvalidated", s.tbs_invalidated);
            set("tbsExecuted", s.tbs_executed);
            set("chainHits", s.chain_hits);
            set("jumpCacheHits", s.jump_cache_hits);
            set("tbLookups", s.tb_lookups);
            set("tlbMisses", s.tlb_misses);
            set("tlbSlow", s.tlb_slow);
            set("tlbFastHits", s.tlb_fast_hits);
            o
        }

        /// The disk image as the guest left it, or `undefined` without a disk.
        pub fn disk(&mut self) -> Option<Vec<u8>> {
            self.core.disk()
        }

        /// The whole machine as a snapshot (a `Uint8Array`), between `run` calls.
        #[wasm_bindgen(js_name = saveState)]
        pub fn save_state(&mut self) -> Result<Vec<u8>, JsError> {
            self.core.save_state().map_err(|e| JsError::new(&e))
        }

        /// A VM resumed from a snapshot (from `saveState` or the native CLI's
        /// `--save-on-output`); `disk` must be the image the saved machine was created with.
        /// `build` is the build this module runs as (`'wasm64'` or `'wasm32'`: the lowered
        /// module cannot tell by itself), which sets the memory cap. Throws a clear `Error` for
        /// a corrupt, truncated or foreign file, another format version, RAM the build cannot
        /// hold, or a different disk.
        #[wasm_bindgen(js_name = fromState)]
        pub fn from_state(state: &[u8], disk: Option<Vec<u8>>, build: &str) -> Result<Vm, JsError> {
            let cap = super::restore_cap(build).map_err(|e| JsError::new(&e))?;
            let core = Core::restore(state, disk, Box::new(PerfClock), cap)
                .map_err(|e| JsError::new(&e))?;
            Ok(Vm { core })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Zero;
    impl HostClock for Zero {
        fn now_ns(&self) -> u64 {
            0
        }
    }

    fn opts(kernel: Vec<u8>) -> Options {
        Options {
            kernel,
            cmdline: "console=ttyS0".into(),
            memory_mib: 64,
            ..Default::default()
        }
    }

    #[test]
    fn version_is_the_package_version() {
        assert_eq!(super::version(), env!("CARGO_PKG_VERSION"));
        assert!(super::version().split('.').count() == 3);
    }

    #[test]
    fn bad_inputs_are_clean_errors() {
        let e = Core::new(opts(Vec::new()), Box::new(Zero)).err().unwrap();
        assert!(e.contains("no kernel"), "{e}");
        let e = Core::new(opts(vec![0x55; 4096]), Box::new(Zero))
            .err()
            .unwrap();
        assert!(!e.is_empty());
        let mut o = opts(vec![0x55; 4096]);
        o.memory_mib = 0;
        let e = Core::new(o, Box::new(Zero)).err().unwrap();
        assert!(e.contains("memoryMiB"), "{e}");
        let mut o = opts(vec![0x55; 4096]);
        o.icount_shift = Some(99);
        let e = Core::new(o, Box::new(Zero)).err().unwrap();
        assert!(e.contains("icount"), "{e}");
    }

    fn guest(name: &str) -> Option<Vec<u8>> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../guest")
                .join(name),
        )
        .ok()
    }

    /// The bundled guest boots deterministically through `Core` (the same path the browser
    /// takes), and two runs print the same bytes.
    #[test]
    fn tiny_guest_boots_deterministically() {
        let (Some(kernel), Some(initrd)) = (guest("tiny.bzImage"), guest("initramfs.cpio.gz"))
        else {
            return;
        };
        let boot = || {
            let mut o = opts(kernel.clone());
            o.initrd = Some(initrd.clone());
            o.cmdline = "console=ttyS0 panic=-1 reboot=t".into();
            o.icount_shift = Some(3);
            o.rtc_epoch_secs = 1_700_000_000;
            let mut c = Core::new(o, Box::new(Zero)).expect("core");
            let mut out = Vec::new();
            for _ in 0..2000 {
                let s = c.run(1_000_000);
                out.extend(c.take_serial());
                if out.windows(13).any(|w| w == b"GUEST-BOOT-OK") || s.kind >= 2 {
                    break;
                }
            }
            (out, c.stats().guest_instructions)
        };
        let (a, ia) = boot();
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("GUEST-BOOT-OK"), "{text}");
        let (b, ib) = boot();
        assert_eq!(a, b);
        assert_eq!(ia, ib);
    }

    #[test]
    fn restore_caps_per_build() {
        assert_eq!(restore_cap("wasm32"), Ok(Some(WASM32_RESTORE_MAX_BYTES)));
        assert_eq!(restore_cap("wasm64"), Ok(None));
        assert!(restore_cap("wasm16").unwrap_err().contains("unknown build"));
    }

    /// What the guest writes goes to the overlay: `disk()` shows it, a snapshot carries it,
    /// and a restore over the original image sees it again.
    #[test]
    fn disk_writes_travel_in_the_state() {
        let kernel = guest("tiny.bzImage").expect("the bundled guest is missing");
        let mut o = opts(kernel);
        o.icount_shift = Some(3);
        o.disk = Some(vec![7u8; 1 << 20]);
        let mut c = Core::new(o, Box::new(Zero)).expect("core");
        c.machine
            .disk_mut(0)
            .unwrap()
            .write_at(4096 * 3 + 10, b"guest wrote")
            .unwrap();
        let mut want = vec![7u8; 1 << 20];
        want[4096 * 3 + 10..4096 * 3 + 21].copy_from_slice(b"guest wrote");
        assert_eq!(c.disk().unwrap(), want);
        let state = c.save_state().unwrap();
        let mut r = Core::restore(&state, Some(vec![7u8; 1 << 20]), Box::new(Zero), None).unwrap();
        assert_eq!(r.disk().unwrap(), want);
        // The image passed in is the base, not what the guest wrote.
        let e = Core::restore(&state, Some(want), Box::new(Zero), None)
            .err()
            .unwrap();
        assert!(e.contains("not the disk saved"), "{e}");
    }

    /// `save_state` / `restore` round trip through `Core` (what `Vm.saveState` and
    /// `Vm.fromState` call), and a bad state or a RAM cap is a clean error.
    #[test]
    fn state_round_trip_through_core() {
        let kernel = guest("tiny.bzImage").expect("the bundled guest is missing");
        let mut o = opts(kernel);
        o.icount_shift = Some(3);
        o.disk = Some(vec![7u8; 1 << 20]);
        let mut c = Core::new(o, Box::new(Zero)).expect("core");
        c.run(300_000);
        let at = c.stats().guest_instructions;
        let state = c.save_state().unwrap();
        let mut r = Core::restore(&state, Some(vec![7u8; 1 << 20]), Box::new(Zero), None).unwrap();
        assert_eq!(r.stats().guest_instructions, at);
        assert_eq!(r.save_state().unwrap(), state);
        let e = Core::restore(&state, Some(vec![8u8; 1 << 20]), Box::new(Zero), None)
            .err()
            .unwrap();
        assert!(e.contains("not the disk saved"), "{e}");
        let e = Core::restore(
            &state,
            Some(vec![7u8; 1 << 20]),
            Box::new(Zero),
            Some(32 << 20),
        )
        .err()
        .unwrap();
        assert!(e.contains("this build allows at most 32 MiB"), "{e}");
        // The guest's RAM fits, but not with the unpacked snapshot beside it.
        let e = Core::restore(
            &state,
            Some(vec![7u8; 1 << 20]),
            Box::new(Zero),
            Some(65 << 20),
        )
        .err()
        .unwrap();
        assert!(e.starts_with("restoring needs "), "{e}");
        assert!(e.contains("this build allows at most 65 MiB"), "{e}");
        let e = Core::restore(&state[..100], None, Box::new(Zero), None)
            .err()
            .unwrap();
        assert!(e.contains("truncated"), "{e}");
    }
}
