//! The guest-independent translate-and-interpret engine of tci64.
//!
//! A guest front end translates a block of guest code into [`Op`]s with a [`Builder`]; the
//! optimizer ([`opt`]) folds constants, propagates copies, removes dead writes and fuses
//! common pairs; the encoder drops pseudo-ops and resolves branches; the resulting bytecode is
//! cached in the [`tb::TbCache`] and run by the interpreter ([`interp`]) with a software TLB
//! ([`mem`]) in front of guest RAM. The engine knows nothing about any guest architecture:
//! the [`Guest`] trait is the whole contract.

mod builder;
pub mod core;
pub mod debug;
pub mod exec;
pub mod guest;
pub mod interp;
pub mod ir;
pub mod mem;
pub mod opt;
pub mod stats;
pub mod tb;

pub use builder::{mk, Builder};
pub use core::{Core, Regs, Trace};
pub use debug::{DebugStop, WatchKind, Watchpoint};
pub use exec::Engine;
pub use guest::{Guest, HelperFn, MmioBus, PureFn, Stop, Trap};
pub use ir::{Cond, Op, Slot};
pub use mem::{Access, Memory, Translation};
pub use opt::SlotSet;
pub use stats::Stats;

use thiserror::Error;

/// Errors building an engine.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("RAM below the 4 GiB hole cannot exceed 4 GiB (asked for {0} bytes)")]
    RamLayout(u64),
    #[error("cannot allocate {0} bytes of guest RAM on this host")]
    RamTooLarge(u64),
}
