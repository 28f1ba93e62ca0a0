//! The tci64 PC machine: wires the x86-64 CPU to RAM and devices, loads a Linux bzImage,
//! keeps the virtual clock and runs the execution loop.
//!
//! The machine is host-independent: it uses no files, threads, clocks or stdin. Hosts (the CLI,
//! the web crate) hand it bytes and a [`HostClock`], and read serial output back.

pub mod config;
pub mod error;

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
