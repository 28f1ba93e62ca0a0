//! The x86-64 CPU of tci64: an iced-x86 based front end that translates guest code into the
//! engine's IR with lazy condition flags, the system architecture (paging, exceptions,
//! interrupts, MSRs, CPUID), and x87/SSE. It knows nothing about devices: the machine
//! supplies an [`X86Bus`].

pub mod bus;
pub mod cpu;
pub mod debug;
pub mod exception;
pub mod flags;
pub mod fpu;
#[macro_use]
pub mod helpers;
pub mod hflags;
pub mod mmu;
pub mod regs;
pub mod state;
pub mod system;
pub mod translate;

pub use bus::{InterruptController, X86Bus};
pub use cpu::{Cpu, CpuExit, CpuState, LongModeEntry};
pub use debug::{DebugRegs, Mapping, SelectorError};
pub use state::X86State;

/// The guest type the engine runs.
pub type X86 = X86State;

use thiserror::Error;

/// Errors building a CPU.
#[derive(Debug, Error)]
pub enum CpuError {
    #[error(transparent)]
    Engine(#[from] tci64_engine::EngineError),
    /// A saved CPU state that does not fit this CPU.
    #[error("CPU state: {0}")]
    StateMismatch(String),
}
