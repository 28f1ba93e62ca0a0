//! The system architecture's helpers, split by topic: CPUID, MSRs, control/debug registers,
//! segments (descriptor loads, far transfers, IRET, SYSCALL), port I/O and RFLAGS.
//! The translator side is `translate/system.rs`; these are the slow paths it calls.

pub mod cpuid;
pub mod ctrl;
pub mod io;
pub mod msr;
pub mod seg;

use crate::regs::*;
use crate::state::vec;
use crate::X86;
use tci64_engine::{Core, Slot, Trap};

/// Record #GP(0).
pub fn gp0(c: &mut Core<X86>) -> Trap {
    crate::cpu::raise(c, vec::GP, Some(0))
}

/// Record #GP(code).
pub fn gp(c: &mut Core<X86>, code: u32) -> Trap {
    crate::cpu::raise(c, vec::GP, Some(code))
}

/// Record #UD.
pub fn ud(c: &mut Core<X86>) -> Trap {
    crate::cpu::raise(c, vec::UD, None)
}

/// True in 64-bit mode (EFER.LMA and CS.L).
pub fn long64(c: &Core<X86>) -> bool {
    c.guest.efer & crate::state::cr::EFER_LMA != 0
        && c.guest.segs[CS].attr & crate::state::Segment::ATTR_L != 0
}

/// RFLAGS.IOPL.
pub fn iopl(c: &Core<X86>) -> u8 {
    ((c.regs.0[RFLAGS as usize] >> 12) & 3) as u8
}

/// The MMU index of data accesses at the current CPL.
pub fn data_mmu(c: &Core<X86>) -> u8 {
    if c.guest.cpl == 3 {
        1
    } else {
        0
    }
}

/// Write a GPR from a helper with x86 semantics (32-bit zero-extends, 8/16 merge).
pub fn write_gpr(c: &mut Core<X86>, slot: Slot, size: usize, v: u64) {
    let r = &mut c.regs.0[(slot & 15) as usize];
    *r = match size {
        8 => v,
        4 => v & 0xffff_ffff,
        2 => (*r & !0xffff) | (v & 0xffff),
        _ => (*r & !0xff) | (v & 0xff),
    };
}

/// Set or clear ZF in the (materialized) flags, leaving the others.
pub fn set_zf(c: &mut Core<X86>, on: bool) {
    let f = crate::cpu::rflags(c);
    let f = if on { f | fl::ZF } else { f & !fl::ZF };
    crate::cpu::set_rflags(c, f);
}
