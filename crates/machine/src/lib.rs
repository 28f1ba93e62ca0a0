//! The tci64 PC machine: wires the x86-64 CPU to RAM and devices, loads a Linux bzImage,
//! keeps the virtual clock and runs the execution loop.
//!
//! The machine is host-independent: it uses no files, threads, clocks or stdin. Hosts (the CLI,
//! the web crate) hand it bytes and a [`HostClock`], and read serial output back.

pub mod acpi;
pub mod adapters;
pub mod board;
pub mod boot;
pub mod config;
pub mod debug;
pub mod error;
pub mod interrupts;
pub mod memmap;
pub mod pc;
pub mod registry;
pub mod snapshot;
pub mod wiring;

pub use config::{DiskConfig, MachineConfig, MachineType, PlatformConfig, TraceFlags};
pub use error::MachineError;
pub use snapshot::{RestoreOptions, SnapshotError};

use board::{Board, VirtualClock};
use memmap::MemoryMap;
use tci64_devices::virtio::{GuestMemory, MemError};
use tci64_x86::{Cpu, CpuExit, LongModeEntry};

/// Why [`Machine::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunExit {
    /// The instruction budget was used up; call `run` again.
    Budget,
    /// The CPU is halted waiting for an interrupt; nothing can happen before the virtual clock
    /// reaches `until_ns` (or serial input arrives). In real-time mode the host may sleep.
    Idle { until_ns: u64 },
    /// The guest asked for a reset (triple fault, 0xCF9, i8042 pulse). With `-no-reboot` the
    /// host exits with status 0, as QEMU does.
    Reset,
    /// The guest halted with interrupts disabled: nothing can ever wake it.
    Halted,
    /// The guest powered the machine off (ACPI S5). Hosts exit with status 0.
    PowerOff,
    /// A debugger breakpoint or watchpoint stopped the CPU, or [`Machine::step`] finished
    /// its instruction. Calling `run` (or `step`) again resumes exactly where it stopped: the
    /// current slice goes on, so a debugger stop changes nothing the guest computes.
    Debug(DebugStop),
}

pub use tci64_engine::{DebugStop, WatchKind, Watchpoint};
pub use tci64_x86::{DebugRegs, Mapping};

/// The host's monotonic clock, in nanoseconds since an arbitrary origin.
pub trait HostClock {
    fn now_ns(&self) -> u64;
}

/// Counters a host prints at exit (`--stats`) or shows in a status line.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Guest instructions executed.
    pub guest_instructions: u64,
    /// Bytecode ops executed by the interpreter.
    pub ops_executed: u64,
    /// Translation blocks translated.
    pub tbs_translated: u64,
    /// Translation blocks executed (entered), chained or not.
    pub tbs_executed: u64,
    /// Translation blocks invalidated (self-modifying code, reused code pages).
    pub tbs_invalidated: u64,
    /// TB lookups that followed a direct chain link.
    pub chain_hits: u64,
    /// TB lookups served by the virtual-PC jump cache.
    pub jump_cache_hits: u64,
    /// TB lookups that needed the physical hash table (or translation).
    pub tb_lookups: u64,
    /// Software-TLB refills through the guest's page walker (data and code fetches).
    pub tlb_misses: u64,
    /// Data accesses that left the interpreter's inline TLB fast path (a TLB miss, MMIO, a
    /// page-crossing access or a store to a code page). Fast-path hits are not counted.
    pub tlb_slow: u64,
    /// Data accesses served by the interpreter's inline TLB fast path (exact; all translated
    /// data accesses = `tlb_fast_hits + tlb_slow`).
    pub tlb_fast_hits: u64,
    /// Virtual time, nanoseconds since power-on.
    pub virtual_ns: u64,
}

/// A PC: one x86-64 CPU, RAM, and the devices.
pub struct Machine {
    cpu: Cpu,
    board: Board,
    /// The kernel's entry state, for reporting (`None` when restored from a snapshot).
    pub boot: Option<boot::BootInfo>,
    /// What the hardware is made of.
    shape: MachineShape,
}

/// What the hardware is made of: the part of a [`MachineConfig`] a snapshot records and a
/// restore rebuilds (kernel, initrd and command line only matter at power-on).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MachineShape {
    pub machine: MachineType,
    pub platform: PlatformConfig,
    pub ram_bytes: u64,
    pub icount_shift: Option<u32>,
    pub virtio_legacy: bool,
    /// One entry per disk: attached read-only.
    pub disks_read_only: Vec<bool>,
}

/// Guest RAM seen by devices (DMA), keeping translated code coherent.
struct DmaMemory<'a>(&'a mut Cpu);

impl GuestMemory for DmaMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if self.0.read_phys(addr, buf) {
            Ok(())
        } else {
            Err(MemError {
                addr,
                len: buf.len() as u64,
            })
        }
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        // Check first so a bad range writes nothing.
        let mut probe = [0u8; 1];
        let last = addr.wrapping_add(buf.len().saturating_sub(1) as u64);
        if !buf.is_empty()
            && (!self.0.read_phys(addr, &mut probe) || !self.0.read_phys(last, &mut probe))
        {
            return Err(MemError {
                addr,
                len: buf.len() as u64,
            });
        }
        if self.0.write_phys(addr, buf) {
            Ok(())
        } else {
            Err(MemError {
                addr,
                len: buf.len() as u64,
            })
        }
    }
}

/// Instructions per CPU slice: devices are updated between slices.
const SLICE: u64 = 50_000;
/// In `-icount` mode a slice ends at the next device deadline, but never runs fewer than this
/// many instructions (a deadline at or before "now" would otherwise make one-instruction
/// slices and crawl).
const MIN_ICOUNT_SLICE: u64 = 1000;

impl Machine {
    /// Build the machine, load the kernel and initrd, and put the CPU at the kernel's 64-bit entry.
    pub fn new(config: MachineConfig, clock: Box<dyn HostClock>) -> Result<Self, MachineError> {
        config.platform.check(config.machine)?;
        let shape = MachineShape {
            machine: config.machine,
            platform: config.platform,
            ram_bytes: config.ram_bytes,
            icount_shift: config.icount_shift,
            virtio_legacy: config.virtio_legacy,
            disks_read_only: config.disks.iter().map(|d| d.read_only).collect(),
        };
        let mut m = Machine::hardware(
            &shape,
            config.disks,
            clock,
            config.rtc_epoch_secs,
            config.trace,
        )?;
        let map = &m.board.map;
        // microvm with ACPI describes its transports in the DSDT, not on the command line.
        let announce = !(config.machine == MachineType::Microvm && config.platform.acpi);
        let cmdline = if announce {
            boot::kernel_cmdline(&config.cmdline, map)
        } else {
            config.cmdline.trim_end().to_string()
        };
        let info = boot::load_linux(
            m.cpu.core_mut().mem.ram_mut(),
            &config.kernel,
            config.initrd.as_deref(),
            &cmdline,
            map,
        )
        .map_err(|e| e.for_file(&config.kernel_name))?;
        m.cpu.enter_long_mode(&LongModeEntry {
            rip: info.entry_rip,
            rsi: info.rsi,
            rsp: info.rsp,
            cr3: info.cr3,
            gdt_base: info.gdt_base,
            gdt_limit: info.gdt_limit,
            cs: info.cs,
            ds: info.ds,
        });
        log::info!(
            "loaded {} ({:?}, protocol {:#x}) entry {:#x}, command line: {cmdline}",
            config.kernel_name,
            info.format,
            info.protocol,
            info.entry_rip
        );
        if config.platform.acpi {
            // boot_params.acpi_rsdp_addr (protocol 2.14); the tables were written with the RAM.
            let zp = boot::ZERO_PAGE_ADDR as usize + 0x70;
            m.cpu.core_mut().mem.ram_mut()[zp..zp + 8]
                .copy_from_slice(&acpi::TABLES_BASE.to_le_bytes());
        }
        m.boot = Some(info);
        Ok(m)
    }

    /// The powered-on hardware of `shape` with empty RAM and the CPU in its reset state.
    fn hardware(
        shape: &MachineShape,
        disks: Vec<DiskConfig>,
        clock: Box<dyn HostClock>,
        rtc_epoch_secs: u64,
        t: TraceFlags,
    ) -> Result<Self, MachineError> {
        let map = MemoryMap::for_machine(shape.machine, shape.ram_bytes, disks.len())
            .map_err(|e| MachineError::Config(format!("-m {}: {e}", shape.ram_bytes)))?;
        let mut cpu = Cpu::new(map.low_ram_end(), map.high_ram_bytes())
            .map_err(|e| MachineError::Config(e.to_string()))?;
        cpu.core_mut().trace = tci64_engine::Trace {
            in_asm: t.in_asm,
            op: t.op,
            op_opt: t.op_opt,
            exec: t.exec,
            cpu: t.cpu,
            int: t.int,
            unimp: t.unimp,
        };
        if shape.platform.apic {
            cpu.core_mut().guest.model = tci64_x86::system::cpuid::CpuModel {
                apic: true,
                x2apic: shape.platform.x2apic,
                tsc_deadline: true,
            };
        }
        let vclock = VirtualClock::new(clock, shape.icount_shift);
        let w = wiring::build(
            shape.machine,
            &shape.platform,
            &map,
            vclock.now(),
            rtc_epoch_secs,
            disks,
            shape.virtio_legacy,
        )?;
        if shape.platform.acpi {
            let t = acpi::build(
                shape.machine,
                &shape.platform,
                &w.intc,
                &w.devices,
                &w.pci_routes,
            );
            let ram = cpu.core_mut().mem.ram_mut();
            let at = t.base as usize;
            ram[at..at + t.bytes.len()].copy_from_slice(&t.bytes);
        }
        let board = Board::new(vclock, map, w.intc, w.devices, w.serial);
        Ok(Machine {
            cpu,
            board,
            boot: None,
            shape: shape.clone(),
        })
    }

    /// Finish device work that needed guest memory, and refresh interrupt lines.
    fn service_devices(&mut self) {
        self.board.clock.slice_icount = self.cpu.icount();
        self.board.service(&mut DmaMemory(&mut self.cpu));
        let now = self.board.clock.now();
        self.board.update_irqs(now);
    }

    /// Run at most `budget` guest instructions, or until an event (see [`RunExit`]).
    ///
    /// The CPU runs in slices; devices catch up and interrupt lines are refreshed between
    /// slices. A slice's end is fixed when it starts, from the machine's own state (in
    /// `-icount` mode: the next device deadline), never from `budget`: a budget that ends
    /// mid-slice only pauses it. So virtual time, and everything the guest sees, is the same
    /// however the host slices its calls (and across a snapshot taken between two calls).
    pub fn run(&mut self, budget: u64) -> RunExit {
        let end = self.cpu.icount().saturating_add(budget);
        loop {
            if let Some(exit) = self.slice_boundary() {
                return exit;
            }
            let now_icount = self.cpu.icount();
            if now_icount >= end {
                return RunExit::Budget;
            }
            let slice = self.board.clock.slice_end.min(end) - now_icount;
            let exit = self.cpu.run(&mut self.board, slice);
            if let Some(e) = self.after_cpu(exit) {
                return e;
            }
        }
    }

    /// Run one guest instruction for a debugger: `RunExit::Debug(DebugStop::Step)` when done
    /// (a pending interrupt is delivered first and the step ends at its handler). A halted
    /// CPU returns `Idle` (real time) until an interrupt wakes it; with `-icount` the step
    /// skips idle time itself.
    pub fn step(&mut self) -> RunExit {
        loop {
            if let Some(exit) = self.slice_boundary() {
                return exit;
            }
            let exit = self.cpu.step(&mut self.board);
            if let Some(e) = self.after_cpu(exit) {
                return e;
            }
        }
    }

    /// At the end of a slice: service devices and start the next one (`Some` if the run
    /// must return instead).
    fn slice_boundary(&mut self) -> Option<RunExit> {
        if self.cpu.icount() >= self.board.clock.slice_end {
            self.service_devices();
            if self.board.events.reset {
                self.board.events.reset = false;
                return Some(RunExit::Reset);
            }
            if self.board.events.poweroff {
                self.board.events.poweroff = false;
                return Some(RunExit::PowerOff);
            }
            self.board.clock.slice_end = self.next_slice_end();
        }
        None
    }

    /// How the CPU returned; `Some` if the run returns.
    fn after_cpu(&mut self, exit: CpuExit) -> Option<RunExit> {
        match exit {
            CpuExit::Budget => None,
            // Device work that needs guest memory, or a reset: end the slice here.
            CpuExit::Attention => {
                self.board.clock.slice_end = self.cpu.icount();
                None
            }
            CpuExit::Reset => Some(RunExit::Reset),
            // The slice stays open: resuming finishes it before devices are serviced.
            CpuExit::Debug(d) => Some(RunExit::Debug(d)),
            CpuExit::Halted { interrupts_enabled } => {
                self.service_devices();
                // Time moves on while halted: the next slice starts afresh.
                self.board.clock.slice_end = self.cpu.icount();
                if self.board.events.reset || self.board.events.poweroff {
                    return None;
                }
                if self.board.intc.intr_pending() && interrupts_enabled {
                    return None;
                }
                if !interrupts_enabled && !self.board.events.service {
                    return Some(RunExit::Halted);
                }
                let now = self.board.clock.now();
                let until = self.board.next_deadline(now).unwrap_or(now + 10_000_000);
                if self.board.clock.icount_shift.is_some() {
                    // Idle time passes at once in deterministic mode.
                    self.board.clock.idle_ns += until.saturating_sub(now);
                    return None;
                }
                Some(RunExit::Idle { until_ns: until })
            }
        }
    }

    /// Where a slice starting now ends: [`SLICE`] instructions on, and in `-icount` mode no
    /// later than the next device deadline.
    fn next_slice_end(&self) -> u64 {
        let mut len = SLICE;
        if let Some(shift) = self.board.clock.icount_shift {
            let now = self.board.clock.now();
            if let Some(dl) = self.board.next_deadline(now) {
                len = len.min((dl.saturating_sub(now) >> shift).max(MIN_ICOUNT_SLICE));
            }
        }
        self.cpu.icount().saturating_add(len)
    }

    /// Feed bytes typed by the user to the serial port; returns how many were accepted (the
    /// rest must be offered again later).
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        self.board.serial_input(bytes)
    }

    /// Take the bytes the guest wrote to the serial port since the last call.
    pub fn take_serial_output(&mut self) -> Vec<u8> {
        self.board.uart().take_output()
    }

    /// Virtual time now, in nanoseconds since power-on.
    pub fn now_ns(&self) -> u64 {
        self.board.clock.now_at(self.cpu.icount())
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let s = &self.cpu.core().stats;
        Stats {
            guest_instructions: self.cpu.icount(),
            ops_executed: s.ops_executed,
            tbs_translated: s.tbs_translated,
            tbs_executed: s.tbs_executed,
            tbs_invalidated: s.tbs_invalidated,
            chain_hits: s.chain_hits,
            jump_cache_hits: s.jump_cache_hits,
            tb_lookups: s.hash_lookups,
            tlb_misses: s.tlb_misses,
            tlb_slow: s.tlb_slow,
            tlb_fast_hits: s.tlb_fast_hits,
            virtual_ns: self.now_ns(),
        }
    }

    /// Flush every disk backend (called at exit).
    pub fn flush_disks(&mut self) -> Result<(), MachineError> {
        self.board
            .flush()
            .map_err(|e| MachineError::Config(format!("flushing a disk: {e}")))
    }

    /// The board (devices, interrupt controllers), for inspection.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The CPU (for tests and debugging).
    pub fn cpu(&self) -> &Cpu {
        &self.cpu
    }
}
