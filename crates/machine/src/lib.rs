//! The tci64 PC machine: wires the x86-64 CPU to RAM and devices, loads a Linux bzImage,
//! keeps the virtual clock and runs the execution loop.
//!
//! The machine is host-independent: it uses no files, threads, clocks or stdin. Hosts (the CLI,
//! the web crate) hand it bytes and a [`HostClock`], and read serial output back.

pub mod boot;
pub mod config;
pub mod error;
pub mod memmap;

pub use config::{DiskConfig, MachineConfig, TraceFlags};
pub use error::MachineError;

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
}

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
    /// Translation blocks invalidated (self-modifying code, reused code pages).
    pub tbs_invalidated: u64,
    /// TB lookups that followed a direct chain link.
    pub chain_hits: u64,
    /// TB lookups served by the virtual-PC jump cache.
    pub jump_cache_hits: u64,
    /// TB lookups that needed the physical hash table (or translation).
    pub tb_lookups: u64,
    /// Software-TLB misses.
    pub tlb_misses: u64,
    /// Software-TLB accesses (hits + misses).
    pub tlb_accesses: u64,
    /// Virtual time, nanoseconds since power-on.
    pub virtual_ns: u64,
}

/// A PC: one x86-64 CPU, RAM, and the devices.
pub struct Machine {
    _private: (),
}

impl Machine {
    /// Build the machine, load the kernel and initrd, and put the CPU at the kernel's 64-bit entry.
    pub fn new(_config: MachineConfig, _clock: Box<dyn HostClock>) -> Result<Self, MachineError> {
        Err(MachineError::Config(
            "the machine is not built yet (issue 7)".to_string(),
        ))
    }

    /// Run at most `budget` guest instructions, or until an event (see [`RunExit`]).
    pub fn run(&mut self, _budget: u64) -> RunExit {
        RunExit::Halted
    }

    /// Feed bytes typed by the user to the serial port; returns how many were accepted (the
    /// rest must be offered again later).
    pub fn serial_input(&mut self, _bytes: &[u8]) -> usize {
        0
    }

    /// Take the bytes the guest wrote to the serial port since the last call.
    pub fn take_serial_output(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        Stats::default()
    }

    /// Flush every disk backend (called at exit).
    pub fn flush_disks(&mut self) -> Result<(), MachineError> {
        Ok(())
    }
}
