//! Booting a guest: files in, [`Machine`] built, then the run loop between the machine and the
//! terminal until the guest resets, halts or the user types Ctrl-A x.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tci64_devices::block::{BlockBackend, CowBackend};
use tci64_machine::{
    DiskConfig, Machine, MachineConfig, MachineType, PlatformConfig, RestoreOptions, RunExit,
    TraceFlags,
};

use crate::cli::Options;
use crate::console::{EscapeAction, EscapeFilter, HELP};
use crate::host::clock::InstantClock;
use crate::host::disk::{DiskMode, FileBackend};
use crate::host::stdin::{Input, StdinReader};
use crate::host::terminal::RawModeGuard;
use crate::stats;

/// Guest instructions per `Machine::run` call: small enough to poll stdin often (a few ms).
const BUDGET: u64 = 1 << 20;
/// The longest the loop sleeps while the guest is idle before it looks again.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(100);
/// The kernel command line for the bundled guest when `-append` is not given.
pub const BUNDLED_APPEND: &str = "console=ttyS0 panic=-1 reboot=t";

/// A fatal error: printed as one `tci64: ...` line, exit status 1.
pub type Fatal = String;

/// Where the bundled guest lives: `guest/` in the source tree this binary was built from.
pub fn bundled_guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}

/// The kernel, initrd and command line to boot, after defaults.
#[derive(Debug, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// Apply the bundled-guest defaults when no `-kernel` is given.
pub fn boot_files(o: &Options, guest_dir: &Path) -> Result<BootFiles, Fatal> {
    if let Some(k) = &o.kernel {
        return Ok(BootFiles {
            kernel: k.clone(),
            initrd: o.initrd.clone(),
            cmdline: o.append.clone().unwrap_or_default(),
        });
    }
    let kernel = guest_dir.join("tiny.bzImage");
    let initrd = guest_dir.join("initramfs.cpio.gz");
    for f in [&kernel, &initrd] {
        if !f.is_file() {
            return Err(format!(
                "no -kernel given, and the bundled guest is missing ({} not found); pass -kernel FILE (see --help)",
                f.display()
            ));
        }
    }
    Ok(BootFiles {
        kernel,
        initrd: Some(initrd),
        cmdline: o
            .append
            .clone()
            .unwrap_or_else(|| BUNDLED_APPEND.to_string()),
    })
}

fn read_file(opt: &str, p: &Path) -> Result<Vec<u8>, Fatal> {
    std::fs::read(p).map_err(|e| format!("{opt} {}: {e}", p.display()))
}

fn any_trace(t: &TraceFlags) -> bool {
    *t != TraceFlags::default()
}

/// Boot and run; returns the process exit status.
pub fn run(o: Options) -> Result<i32, Fatal> {
    crate::logging::init(any_trace(&o.trace), o.log_file.as_deref())?;
    let mut disks = Vec::new();
    for d in &o.disks {
        let mode = if d.read_only {
            DiskMode::ReadOnly
        } else if d.snapshot {
            DiskMode::Snapshot
        } else {
            DiskMode::ReadWrite
        };
        let backend = FileBackend::open(&d.file, mode)
            .map_err(|e| format!("-drive file={}: {e}", d.file.display()))?;
        if let Some(w) = partial_sector_warning(&d.file, backend.size()) {
            eprintln!("tci64: warning: {w}");
        }
        // snapshot=on: the overlay lives in tci64's memory (not the kernel's private mapping)
        // so a machine snapshot can carry it.
        let backend: Box<dyn BlockBackend> = if mode == DiskMode::Snapshot {
            Box::new(CowBackend::new(backend))
        } else {
            Box::new(backend)
        };
        disks.push(DiskConfig {
            backend,
            read_only: d.read_only,
        });
    }
    if let Some(path) = &o.incoming {
        let file = read_file("-incoming", path)?;
        let t = Instant::now();
        let machine = Machine::restore(
            &file,
            RestoreOptions {
                disks,
                clock: Box::new(InstantClock::new()),
                trace: o.trace,
                max_ram_bytes: None,
            },
        )
        .map_err(|e| format!("-incoming {}: {e}", path.display()))?;
        log::info!("restored {} in {:?}", path.display(), t.elapsed());
        return run_machine(machine, &o);
    }
    let files = boot_files(&o, &bundled_guest_dir())?;
    let kernel = read_file("-kernel", &files.kernel)?;
    let initrd = match &files.initrd {
        Some(p) => Some(read_file("-initrd", p)?),
        None => None,
    };
    let microvm = o.machine == MachineType::Microvm;
    let platform = PlatformConfig {
        apic: o.cpu_apic,
        x2apic: o.cpu_x2apic,
        acpi: microvm && o.microvm.acpi,
        pic: !microvm || o.microvm.pic,
        pit: !microvm || o.microvm.pit,
        rtc: !microvm || o.microvm.rtc,
    };
    let config = MachineConfig {
        ram_bytes: o.ram_bytes,
        kernel,
        kernel_name: files.kernel.display().to_string(),
        initrd,
        cmdline: files.cmdline,
        disks,
        icount_shift: o.icount.map(|i| i.shift),
        rtc_epoch_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        trace: o.trace,
        virtio_legacy: o.virtio_mmio_force_legacy,
        machine: o.machine,
        platform,
    };
    let machine = Machine::new(config, Box::new(InstantClock::new())).map_err(|e| e.to_string())?;
    run_machine(machine, &o)
}

/// Run a built (or restored) machine on the terminal until it ends.
fn run_machine(mut machine: Machine, o: &Options) -> Result<i32, Fatal> {
    let o = o.clone();

    let started = Instant::now();
    crate::host::signals::install();
    let (status, result) = {
        let _raw = RawModeGuard::new();
        let mut stdin = StdinReader::spawn();
        run_loop(&mut machine, &o, &mut stdin)
    };
    // The terminal is restored from here on.
    let flushed = machine
        .flush_disks()
        .map_err(|e| format!("flushing the disks: {e}"));
    if o.stats {
        eprint!("{}", stats::report(&machine.stats(), started.elapsed()));
    }
    log::logger().flush();
    result?;
    flushed?;
    Ok(status)
}

/// The loop proper; returns the exit status and any error that ended it.
fn run_loop(
    machine: &mut Machine,
    o: &Options,
    stdin: &mut StdinReader,
) -> (i32, Result<(), Fatal>) {
    let mut pending: VecDeque<u8> = VecDeque::new();
    let mut escape = EscapeFilter::default();
    let mut out = std::io::stdout();
    // The serial output's tail, while waiting for --save-on-output's string.
    let mut seen: Vec<u8> = Vec::new();
    loop {
        if let Some((n, name)) = crate::host::signals::received() {
            eprintln!("\r\ntci64: terminating on signal {n} ({name})");
            return (0, Ok(()));
        }
        let exit = machine.run(BUDGET);
        let bytes = machine.take_serial_output();
        if !bytes.is_empty() {
            if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                return (1, Err(format!("writing the console to stdout: {e}")));
            }
            if let Some((want, path)) = &o.save_on_output {
                seen.extend_from_slice(&bytes);
                if seen.windows(want.len()).any(|w| w == want.as_bytes()) {
                    return match save_snapshot(machine, path) {
                        Ok(msg) => {
                            eprintln!("\r\ntci64: {msg}");
                            (0, Ok(()))
                        }
                        Err(e) => (1, Err(e)),
                    };
                }
                let keep = seen.len().saturating_sub(want.len());
                seen.drain(..keep);
            }
        }
        let wait = match exit {
            RunExit::Budget => Duration::ZERO,
            RunExit::Idle { until_ns } => idle_wait(machine, until_ns),
            RunExit::Reset => {
                if !o.no_reboot {
                    log::warn!(
                        "the guest asked for a reset; reboot is not implemented, so tci64 exits"
                    );
                }
                return (0, Ok(()));
            }
            RunExit::PowerOff => {
                log::info!("the guest powered off");
                return (0, Ok(()));
            }
            RunExit::Halted => {
                eprintln!("tci64: the guest halted with interrupts off; nothing can wake it");
                return (0, Ok(()));
            }
        };
        // Input the guest did not take yet keeps the loop polling.
        let wait = if pending.is_empty() {
            wait
        } else {
            wait.min(Duration::from_millis(5))
        };
        if let Input::Bytes(typed) = stdin.wait(wait) {
            let (mut to_guest, mut actions) = (Vec::new(), Vec::new());
            escape.feed(&typed, &mut to_guest, &mut actions);
            pending.extend(to_guest);
            for a in actions {
                match a {
                    EscapeAction::Exit => {
                        eprintln!("tci64: terminated");
                        return (0, Ok(()));
                    }
                    EscapeAction::Help => eprint!("\r\n{HELP}"),
                    EscapeAction::FlushDisks => {
                        if let Err(e) = machine.flush_disks() {
                            log::error!("flushing the disks: {e}");
                        }
                    }
                    EscapeAction::SaveSnapshot => match save_snapshot(machine, &o.save_file) {
                        Ok(msg) => eprint!("\r\ntci64: {msg}\r\n"),
                        Err(e) => eprint!("\r\ntci64: {e}\r\n"),
                    },
                }
            }
        }
        if !pending.is_empty() {
            let n = machine.serial_input(pending.make_contiguous());
            pending.drain(..n.min(pending.len()));
        }
    }
}

/// The rule for an image whose size is not a multiple of 512 bytes: the guest sees the whole
/// sectors only (virtio-blk's capacity is in 512-byte sectors), the tail is never read or
/// written, and the user is told once.
fn partial_sector_warning(file: &Path, size: u64) -> Option<String> {
    let tail = size % 512;
    (tail != 0).then(|| {
        let sectors = size / 512;
        format!(
            "-drive file={}: {size} bytes is not a multiple of 512; the guest sees {sectors} sector{} and the last {tail} bytes are never read or written",
            file.display(),
            if sectors == 1 { "" } else { "s" }
        )
    })
}

/// Save a snapshot of `machine` to `path`; returns what to tell the user.
fn save_snapshot(machine: &mut Machine, path: &Path) -> Result<String, Fatal> {
    let t = Instant::now();
    let bytes = machine
        .save()
        .map_err(|e| format!("saving a snapshot: {e}"))?;
    std::fs::write(path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(format!(
        "saved a snapshot to {} ({} KiB in {} ms); resume with -incoming file:{}",
        path.display(),
        bytes.len() >> 10,
        t.elapsed().as_millis(),
        path.display()
    ))
}

/// How long to sleep while the CPU is halted until `until_ns` of virtual time. In real-time mode
/// virtual time is the host clock since power-on; in `-icount` mode the machine skips idle time
/// itself and does not return `Idle`, but if it did, sleeping until the deadline is still right.
fn idle_wait(machine: &Machine, until_ns: u64) -> Duration {
    Duration::from_nanos(until_ns.saturating_sub(machine.now_ns())).min(MAX_IDLE_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_kernel_uses_the_given_files() {
        let o = Options {
            kernel: Some("bz".into()),
            initrd: Some("rd".into()),
            ..Options::default()
        };
        let f = boot_files(&o, Path::new("/nonexistent")).unwrap();
        assert_eq!(
            f,
            BootFiles {
                kernel: "bz".into(),
                initrd: Some("rd".into()),
                cmdline: String::new()
            }
        );
    }

    #[test]
    fn bundled_guest_defaults_or_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("tci64-guest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = boot_files(&Options::default(), &dir).unwrap_err();
        assert!(
            e.starts_with("no -kernel given, and the bundled guest is missing"),
            "{e}"
        );
        assert!(e.contains("tiny.bzImage"), "{e}");
        std::fs::write(dir.join("tiny.bzImage"), b"k").unwrap();
        std::fs::write(dir.join("initramfs.cpio.gz"), b"i").unwrap();
        let f = boot_files(&Options::default(), &dir).unwrap();
        assert_eq!(f.cmdline, BUNDLED_APPEND);
        assert_eq!(f.initrd, Some(dir.join("initramfs.cpio.gz")));
        let o = Options {
            append: Some("quiet".into()),
            ..Options::default()
        };
        assert_eq!(boot_files(&o, &dir).unwrap().cmdline, "quiet");
    }
}
