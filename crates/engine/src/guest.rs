//! The contract between the engine and a guest architecture.

use crate::core::Core;
use crate::ir::Slot;
use crate::mem::{Access, Translation};
use crate::opt::SlotSet;
use crate::Builder;

/// Why a memory access, helper or translation could not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// The guest recorded an exception in its own state (page fault, #GP, ...): the engine
    /// restores the faulting instruction's state and calls [`Guest::on_trap`].
    Exception,
    /// Re-run the current instruction from its start with no exception (a long `rep` string
    /// operation yielding to interrupts, or a helper that changed what later code depends on).
    Restart,
}

/// The device side of memory: everything that is not RAM.
pub trait MmioBus {
    /// Read `size` (1, 2, 4 or 8) bytes at physical address `paddr`.
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64;
    /// Write `size` bytes at `paddr`.
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64);
}

/// A helper function the front end can call from IR ([`crate::Op::Call`]).
pub type HelperFn<G> = fn(&mut Core<G>, &mut <G as Guest>::Bus, u64, u64, u64) -> Result<u64, Trap>;

/// A pure helper ([`crate::Op::CallPure`]): a function of its three arguments only.
pub type PureFn = fn(u64, u64, u64) -> u64;

/// Why the run loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The instruction budget is used up.
    Budget,
    /// A guest-defined reason (halt, reset, ...).
    Guest(u32),
    /// A breakpoint, watchpoint or single-step ([`crate::debug`]).
    Debug(crate::debug::DebugStop),
}

/// A guest architecture: its translator, page walker and exception model.
pub trait Guest: Sized + 'static {
    /// What helpers and MMIO see: the machine's devices.
    type Bus: MmioBus + ?Sized;

    /// The slot holding the guest's program counter (virtual).
    const PC_SLOT: Slot;
    /// Slots below this are the guest's globals.
    const FIRST_TEMP: Slot;
    /// Globals that must be architecturally current wherever a memory op may trap.
    fn trap_live() -> SlotSet;
    /// The helper table indexed by [`crate::Op::Call`]'s `f`.
    fn helpers() -> &'static [HelperFn<Self>];
    /// The pure helper table indexed by [`crate::Op::CallPure`]'s `f`.
    fn pure_helpers() -> &'static [PureFn] {
        &[]
    }

    /// The name of a global slot for `-d op` listings (`RAX`, `CC_DST`, ...); `None` prints
    /// it by number.
    fn slot_name(_slot: Slot) -> Option<&'static str> {
        None
    }

    /// Mode bits that key translation blocks (privilege, operand size, ...).
    fn tb_flags(core: &Core<Self>) -> u32;
    /// The MMU index instruction fetches use under `flags`.
    fn fetch_mmu(flags: u32) -> u8;

    /// Translate the block at virtual `pc` under `flags` into `b`. Fetch code with
    /// [`Core::fetch_code`]. An error means the very first fetch faulted.
    fn translate(
        core: &mut Core<Self>,
        bus: &mut Self::Bus,
        pc: u64,
        flags: u32,
        b: &mut Builder,
    ) -> Result<(), Trap>;

    /// Walk the guest page tables for `vaddr`. On a fault, record the exception in the
    /// guest state and return `Err(Trap::Exception)`.
    fn tlb_fill(
        core: &mut Core<Self>,
        bus: &mut Self::Bus,
        vaddr: u64,
        access: Access,
        mmu: u8,
    ) -> Result<Translation, Trap>;

    /// Put the state back to the start of the instruction at `pc` after a trap, using the
    /// `aux` word the front end gave [`Builder::insn_start`] for it (e.g. the static
    /// condition-code state at that instruction).
    fn restore(core: &mut Core<Self>, pc: u64, aux: u32);

    /// Deliver the exception recorded by the trap (or do nothing for `Restart`).
    fn on_trap(core: &mut Core<Self>, bus: &mut Self::Bus, trap: Trap) -> Option<Stop>;

    /// Called before a block: deliver pending interrupts, etc.
    fn poll(core: &mut Core<Self>, bus: &mut Self::Bus) -> Option<Stop>;

    /// Blocks run between two polls while blocks keep leaving through chainable or indirect
    /// exits (any other exit — a guest exit code or a trap — makes the next block poll).
    /// Interrupts are asynchronous, so a guest may trade a few blocks of delivery latency
    /// for fewer polls.
    const POLL_INTERVAL: u32 = 1;

    /// A block executed `Op::Exit { code }`.
    fn on_exit(core: &mut Core<Self>, bus: &mut Self::Bus, code: u32) -> Option<Stop>;

    /// The architectural state as text, for `-d cpu` (logged before each block runs).
    fn dump_state(core: &Core<Self>) -> String {
        let _ = core;
        String::new()
    }
}
