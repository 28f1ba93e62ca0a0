//! Booting a guest: files in, [`Machine`] built, then the run loop between the machine, the
//! terminal (serial console and monitor) and a debugger, until the guest resets, halts, the
//! user types Ctrl-A x or `quit`, or a debugger kills it.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use tci64_devices::block::{BlockBackend, CowBackend};
use tci64_machine::{
    DebugStop, DiskConfig, Machine, MachineConfig, MachineType, PlatformConfig, RestoreOptions,
    RunExit, TraceFlags,
};

use crate::cli::{MonitorMode, Options};
use crate::console::{EscapeAction, EscapeFilter, HELP};
use crate::gdb::{self, GdbSession, SessionEnd};
use crate::host::clock::InstantClock;
use crate::host::disk::{DiskMode, FileBackend};
use crate::host::events::{Events, HostEvent};
use crate::host::terminal::RawModeGuard;
use crate::monitor::{LineEditor, PROMPT};
use crate::stats;
use crate::vm::{DiskDesc, Exec, Request, Vm};

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

/// Build the machine the options describe (files are read, disks opened).
pub fn build_machine(o: &Options) -> Result<Machine, Fatal> {
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
        return Ok(machine);
    }
    let files = boot_files(o, &bundled_guest_dir())?;
    let kernel = read_file("-kernel", &files.kernel)?;
    let initrd = match &files.initrd {
        Some(p) => Some(read_file("-initrd", p)?),
        None => None,
    };
    let platform = platform_config(o);
    let config = MachineConfig {
        ram_bytes: o.ram_bytes,
        kernel,
        kernel_name: files.kernel.display().to_string(),
        initrd,
        cmdline: files.cmdline,
        disks,
        icount_shift: o.icount.map(|i| i.shift),
        rtc_epoch_secs: o.rtc_base.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        }),
        trace: o.trace,
        virtio_legacy: o.virtio_mmio_force_legacy,
        machine: o.machine,
        platform,
    };
    Machine::new(config, Box::new(InstantClock::new())).map_err(|e| e.to_string())
}

/// The platform devices `-M` and `-cpu` ask for. `-M pc` always has ACPI tables, the 8259,
/// the PIT and the RTC (as QEMU's pc); microvm's properties choose them. microvm's ACPI is on
/// unless `acpi=off`, as QEMU 7.2's, except for the bundled guest (no `-kernel`): its tiny
/// kernel has no ACPI and would not find a disk described only in the DSDT (QEMU puts
/// `virtio_mmio.device=` on the command line only with `acpi=off`), so it gets `acpi=off`
/// unless `acpi=on` is asked for.
pub fn platform_config(o: &Options) -> PlatformConfig {
    let microvm = o.machine == MachineType::Microvm;
    PlatformConfig {
        apic: o.cpu_apic,
        x2apic: o.cpu_x2apic,
        acpi: !microvm || o.microvm.acpi.unwrap_or(o.kernel.is_some()),
        pic: !microvm || o.microvm.pic,
        pit: !microvm || o.microvm.pit,
        rtc: !microvm || o.microvm.rtc,
    }
}

/// Boot and run; returns the process exit status.
pub fn run(o: Options) -> Result<i32, Fatal> {
    crate::logging::init(any_trace(&o.trace), o.log_file.as_deref())?;
    let machine = build_machine(&o)?;
    let disks = o
        .disks
        .iter()
        .map(|d| DiskDesc {
            file: d.file.display().to_string(),
            read_only: d.read_only,
            snapshot: d.snapshot,
        })
        .collect();
    let mut vm = Vm::new(machine, !o.start_stopped, disks);
    let mut events = Events::new();
    if let Some(addr) = &o.gdb {
        let at = gdb::listen(addr, events.sender())?;
        log::info!("gdbserver listening on {at}");
        vm.gdb_listening = Some(at);
    }

    let started = Instant::now();
    crate::host::signals::install();
    let (status, result) = {
        let _raw = RawModeGuard::new();
        events.spawn_stdin();
        let mut session = Session::new(&o);
        session.run_loop(&mut vm, &o, &mut events)
    };
    // The terminal is restored from here on.
    let flushed = vm
        .machine
        .flush_disks()
        .map_err(|e| format!("flushing the disks: {e}"));
    if o.stats {
        eprint!("{}", stats::report(&vm.machine.stats(), started.elapsed()));
    }
    log::logger().flush();
    result?;
    flushed?;
    Ok(status)
}

/// The console, the monitor and the debugger around a running VM.
struct Session {
    /// Typed bytes the guest's serial port did not take yet.
    pending: VecDeque<u8>,
    escape: EscapeFilter,
    /// The monitor has the console (Ctrl-A c, `-monitor stdio`).
    monitor_focus: bool,
    monitor_enabled: bool,
    editor: LineEditor,
    /// Echo monitor input (the console is a raw terminal).
    echo: bool,
    gdb: Option<GdbSession>,
    out: std::io::Stdout,
    /// The serial output's tail, while waiting for `--save-on-output`'s string.
    seen: Vec<u8>,
}

/// How the loop ends: the exit status and any error.
type Ended = (i32, Result<(), Fatal>);

impl Session {
    fn new(o: &Options) -> Self {
        Session {
            pending: VecDeque::new(),
            escape: EscapeFilter::default(),
            monitor_focus: o.monitor == MonitorMode::Stdio,
            monitor_enabled: o.monitor != MonitorMode::None,
            editor: LineEditor::default(),
            echo: crate::host::terminal::stdin_is_tty(),
            gdb: None,
            out: std::io::stdout(),
            seen: Vec::new(),
        }
    }

    fn print(&mut self, bytes: &[u8]) -> Result<(), Fatal> {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.flush())
            .map_err(|e| format!("writing the console to stdout: {e}"))
    }

    /// Print the guest's serial output; true if `--save-on-output` saved and the run ends.
    fn print_serial(&mut self, vm: &mut Vm, o: &Options) -> Result<bool, Fatal> {
        let bytes = vm.machine.take_serial_output();
        if bytes.is_empty() {
            return Ok(false);
        }
        self.print(&bytes)?;
        if let Some((want, path)) = &o.save_on_output {
            self.seen.extend_from_slice(&bytes);
            if self.seen.windows(want.len()).any(|w| w == want.as_bytes()) {
                let msg = save_snapshot(&mut vm.machine, path)?;
                eprintln!("\r\ntci64: {msg}");
                return Ok(true);
            }
            let keep = self.seen.len().saturating_sub(want.len());
            self.seen.drain(..keep);
        }
        Ok(false)
    }

    /// The loop proper; returns the exit status and any error that ended it.
    fn run_loop(&mut self, vm: &mut Vm, o: &Options, events: &mut Events) -> Ended {
        if self.monitor_focus {
            if let Err(e) = self.print(
                format!("tci64 monitor - type 'help' for more information\n{PROMPT}").as_bytes(),
            ) {
                return (1, Err(e));
            }
        }
        loop {
            if let Some((n, name)) = crate::host::signals::received() {
                eprintln!("\r\ntci64: terminating on signal {n} ({name})");
                return (0, Ok(()));
            }
            let mut wait = MAX_IDLE_WAIT;
            if vm.running {
                let exit = match vm.exec {
                    Exec::Continue => vm.machine.run(BUDGET),
                    Exec::Step => vm.machine.step(),
                };
                match self.print_serial(vm, o) {
                    Ok(true) => return (0, Ok(())),
                    Ok(false) => {}
                    Err(e) => return (1, Err(e)),
                }
                match exit {
                    RunExit::Budget => wait = Duration::ZERO,
                    RunExit::Idle { until_ns } => wait = idle_wait(&vm.machine, until_ns),
                    RunExit::Reset => {
                        self.gdb_report(vm, SingleThreadStopReason::Exited(0));
                        if !o.no_reboot {
                            log::warn!(
                                "the guest asked for a reset; reboot is not implemented, so tci64 exits"
                            );
                        }
                        return (0, Ok(()));
                    }
                    RunExit::PowerOff => {
                        self.gdb_report(vm, SingleThreadStopReason::Exited(0));
                        log::info!("the guest powered off");
                        return (0, Ok(()));
                    }
                    RunExit::Halted => {
                        self.gdb_report(vm, SingleThreadStopReason::Exited(0));
                        eprintln!(
                            "tci64: the guest halted with interrupts off; nothing can wake it"
                        );
                        return (0, Ok(()));
                    }
                    RunExit::Debug(d) => {
                        wait = Duration::ZERO;
                        if d == DebugStop::Step && vm.step_then_continue {
                            // Stepped over the breakpoint we continued from.
                            vm.step_then_continue = false;
                            vm.exec = Exec::Continue;
                        } else {
                            vm.running = false;
                            let end = match &mut self.gdb {
                                Some(g) if g.target_running() => g.report_debug(vm, d),
                                _ => SessionEnd::Open,
                            };
                            if let Some(done) = self.session_end(vm, end) {
                                return done;
                            }
                        }
                    }
                }
            }
            // Input the guest did not take yet keeps the loop polling.
            if !self.pending.is_empty() {
                wait = wait.min(Duration::from_millis(5));
            }
            for ev in events.wait(wait) {
                if let Some(done) = self.event(vm, o, ev) {
                    return done;
                }
            }
            // A debugger waits for a stop the monitor caused (`stop`).
            if !vm.running {
                if let Some(g) = &mut self.gdb {
                    if g.target_running() {
                        let end = g.report(vm, SingleThreadStopReason::Signal(Signal::SIGINT));
                        if let Some(done) = self.session_end(vm, end) {
                            return done;
                        }
                    }
                }
            }
            if let Some(done) = self.requests(vm, o, events) {
                return done;
            }
            if !self.pending.is_empty() {
                let n = vm.machine.serial_input(self.pending.make_contiguous());
                self.pending.drain(..n.min(self.pending.len()));
            }
        }
    }

    /// Tell a waiting debugger the guest is gone.
    fn gdb_report(&mut self, vm: &mut Vm, why: SingleThreadStopReason<u64>) {
        if let Some(g) = &mut self.gdb {
            if g.target_running() {
                g.report(vm, why);
            }
        }
    }

    fn session_end(&mut self, vm: &mut Vm, end: SessionEnd) -> Option<Ended> {
        match end {
            SessionEnd::Open => None,
            SessionEnd::Detached => {
                // As QEMU: the guest runs on when the debugger goes.
                self.gdb = None;
                vm.running = true;
                vm.exec = Exec::Continue;
                None
            }
            SessionEnd::Killed => {
                self.gdb = None;
                eprintln!("tci64: terminated by the debugger");
                Some((0, Ok(())))
            }
        }
    }

    fn event(&mut self, vm: &mut Vm, o: &Options, ev: HostEvent) -> Option<Ended> {
        match ev {
            HostEvent::Stdin(typed) => self.typed(vm, o, &typed),
            HostEvent::StdinClosed => None,
            HostEvent::GdbConnected { id, writer, peer } => {
                if self.gdb.is_some() {
                    log::warn!("gdb: refusing a second debugger ({peer}): one is connected");
                    return None;
                }
                match GdbSession::new(id, writer, vm) {
                    Ok(g) => {
                        log::info!("gdb: debugger connected ({peer})");
                        self.gdb = Some(g);
                    }
                    Err(e) => log::warn!("gdb: {e}"),
                }
                None
            }
            HostEvent::GdbData { id, bytes } => {
                let end = match &mut self.gdb {
                    Some(g) if g.id == id => g.feed(vm, &bytes),
                    _ => return None,
                };
                self.session_end(vm, end)
            }
            HostEvent::GdbClosed { id } => {
                if self.gdb.as_ref().is_some_and(|g| g.id == id) {
                    vm.machine.clear_debug();
                    vm.hw_breakpoints.clear();
                    vm.phys_mem_mode = false;
                    return self.session_end(vm, SessionEnd::Detached);
                }
                None
            }
        }
    }

    /// Bytes typed on the console: escape keys, then the serial port or the monitor.
    fn typed(&mut self, vm: &mut Vm, o: &Options, typed: &[u8]) -> Option<Ended> {
        let (mut bytes, mut actions) = (Vec::new(), Vec::new());
        self.escape.feed(typed, &mut bytes, &mut actions);
        // Bytes before a focus switch belong to the old focus: the filter keeps order only
        // per kind, so a switch applies to everything typed in this batch after it. Typing
        // is slow enough for that.
        for a in actions {
            match a {
                EscapeAction::Exit => {
                    eprintln!("tci64: terminated");
                    return Some((0, Ok(())));
                }
                EscapeAction::Help => eprint!("\r\n{HELP}"),
                EscapeAction::FlushDisks => {
                    if let Err(e) = vm.machine.flush_disks() {
                        log::error!("flushing the disks: {e}");
                    }
                }
                EscapeAction::SaveSnapshot => match save_snapshot(&mut vm.machine, &o.save_file) {
                    Ok(msg) => eprint!("\r\ntci64: {msg}\r\n"),
                    Err(e) => eprint!("\r\ntci64: {e}\r\n"),
                },
                EscapeAction::SwitchMonitor => {
                    if self.monitor_enabled {
                        self.monitor_focus = !self.monitor_focus;
                        if self.monitor_focus {
                            let _ = self.print(format!("\r\n{PROMPT}").as_bytes());
                        }
                    }
                }
            }
        }
        if !self.monitor_focus {
            self.pending.extend(bytes);
            return None;
        }
        let (mut lines, mut echo) = (Vec::new(), Vec::new());
        self.editor.feed(&bytes, &mut lines, &mut echo);
        if self.echo && !echo.is_empty() {
            let _ = self.print(&echo);
        }
        for line in lines {
            let mut text = crate::monitor::execute(vm, &line);
            text.push_str(PROMPT);
            if let Err(e) = self.print(text.as_bytes()) {
                return Some((1, Err(e)));
            }
        }
        None
    }

    /// Carry out what the monitor or the debugger asked for.
    fn requests(&mut self, vm: &mut Vm, o: &Options, events: &Events) -> Option<Ended> {
        for r in std::mem::take(&mut vm.requests) {
            match r {
                Request::Quit(status) => {
                    self.gdb_report(vm, SingleThreadStopReason::Exited(0));
                    return Some((status, Ok(())));
                }
                Request::Reset => {
                    if let Err(e) = vm.machine.flush_disks() {
                        log::error!("flushing the disks: {e}");
                    }
                    match build_machine(o) {
                        Ok(mut m) => {
                            for &b in vm.machine.breakpoints() {
                                m.add_breakpoint(b);
                            }
                            for &w in vm.machine.watchpoints() {
                                m.add_watchpoint(w);
                            }
                            vm.machine = m;
                        }
                        Err(e) => return Some((1, Err(format!("system_reset: {e}")))),
                    }
                }
                Request::GdbServer(addr) => match gdb::listen(&addr, events.sender()) {
                    Ok(at) => vm.gdb_listening = Some(at),
                    Err(e) => {
                        let _ = self.print(format!("{e}\n").as_bytes());
                    }
                },
            }
        }
        None
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
pub(crate) fn save_snapshot(machine: &mut Machine, path: &Path) -> Result<String, Fatal> {
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

    fn platform_of(args: &[&str]) -> PlatformConfig {
        match crate::cli::parse(args.iter().copied()).unwrap() {
            crate::cli::Command::Run(o) => platform_config(&o),
            _ => panic!("not a run command"),
        }
    }

    #[test]
    fn machines_get_their_platform_devices() {
        let pc = platform_of(&["-M", "pc"]);
        assert!(pc.acpi, "-M pc has ACPI tables");
        assert!(pc.apic && pc.pic && pc.pit && pc.rtc, "{pc:?}");
        let legacy_pc = platform_of(&["-M", "pc", "-cpu", "qemu64,-apic"]);
        assert!(legacy_pc.acpi && !legacy_pc.apic, "{legacy_pc:?}");
        assert!(
            platform_of(&["-M", "microvm", "-kernel", "bz"]).acpi,
            "microvm defaults to acpi=on"
        );
        assert!(
            !platform_of(&["-M", "microvm"]).acpi,
            "the bundled guest's kernel has no ACPI: acpi=off unless asked"
        );
        assert!(platform_of(&["-M", "microvm,acpi=on"]).acpi);
        assert!(!platform_of(&["-M", "microvm,acpi=off", "-kernel", "bz"]).acpi);
        let off = platform_of(&["-M", "microvm,acpi=off,pic=off,pit=off,rtc=off"]);
        assert!(
            !off.acpi && !off.pic && !off.pit && !off.rtc && off.apic,
            "{off:?}"
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
