//! Control and debug registers: MOV CRn/DRn, CLTS, LMSW, INVLPG.

use super::{gp0, ud};
use crate::helpers::Bus;
use crate::state::cr::*;
use crate::X86;
use tci64_engine::{Core, Trap};

/// CR4 bits this CPU supports (everything else is reserved: #GP).
pub const CR4_SUPPORTED: u64 = CR4_VME
    | CR4_PVI
    | CR4_TSD
    | CR4_DE
    | CR4_PSE
    | CR4_PAE
    | CR4_MCE
    | CR4_PGE
    | CR4_PCE
    | CR4_OSFXSR
    | CR4_OSXMMEXCPT;

/// Read CRn (n = 0, 2, 3, 4, 8).
pub fn read_cr(c: &mut Core<X86>, bus: &mut Bus, n: u64) -> Result<u64, Trap> {
    if n == 8 {
        if let Some(tpr) = bus.task_priority() {
            return Ok(tpr as u64 & 0xf);
        }
    }
    let g = &c.guest;
    Ok(match n {
        0 => g.cr0,
        2 => g.cr2,
        3 => g.cr3,
        4 => g.cr4,
        8 => g.cr8 & 0xf,
        _ => return Err(ud(c)),
    })
}

/// Write CR0 with the architectural checks; flushes the TLB when paging bits change and
/// enters/leaves long mode (EFER.LMA) when PG changes with EFER.LME.
pub fn write_cr0(c: &mut Core<X86>, v: u64) -> Result<(), Trap> {
    let old = c.guest.cr0;
    if v >> 32 != 0 {
        return Err(gp0(c));
    }
    let v = v | CR0_ET;
    if v & CR0_PG != 0 && v & CR0_PE == 0 {
        return Err(gp0(c));
    }
    if v & CR0_NW != 0 && v & CR0_CD == 0 {
        return Err(gp0(c));
    }
    let lme = c.guest.efer & EFER_LME != 0;
    let mut efer = c.guest.efer;
    if v & CR0_PG != 0 && old & CR0_PG == 0 && lme {
        // Activating long mode needs PAE and must not happen from a 64-bit code segment.
        if c.guest.cr4 & CR4_PAE == 0 {
            return Err(gp0(c));
        }
        efer |= EFER_LMA;
    }
    if v & CR0_PG == 0 && old & CR0_PG != 0 && efer & EFER_LMA != 0 {
        if super::long64(c) {
            return Err(gp0(c));
        }
        efer &= !EFER_LMA;
    }
    c.guest.cr0 = v;
    c.guest.efer = efer;
    if (old ^ v) & (CR0_PG | CR0_WP | CR0_PE) != 0 {
        c.tlb_flush_all();
    }
    Ok(())
}

/// Write CRn (n = 0, 2, 3, 4, 8).
pub fn write_cr(c: &mut Core<X86>, bus: &mut Bus, n: u64, v: u64) -> Result<(), Trap> {
    match n {
        0 => return write_cr0(c, v),
        2 => c.guest.cr2 = v,
        3 => {
            // Bits above MAXPHYADDR are reserved (no PCID: the low bits are PWT/PCD/ignored).
            let long = c.guest.efer & EFER_LMA != 0;
            if long && v >> super::cpuid::PHYS_BITS != 0 {
                return Err(gp0(c));
            }
            c.guest.cr3 = if long { v } else { v & 0xffff_ffff };
            c.tlb_flush_all();
        }
        4 => {
            let old = c.guest.cr4;
            if v & !CR4_SUPPORTED != 0 {
                return Err(gp0(c));
            }
            if c.guest.efer & EFER_LMA != 0 && v & CR4_PAE == 0 {
                return Err(gp0(c));
            }
            c.guest.cr4 = v;
            if (old ^ v) & (CR4_PGE | CR4_PAE | CR4_PSE) != 0 {
                c.tlb_flush_all();
            }
        }
        8 => {
            if v & !0xf != 0 {
                return Err(gp0(c));
            }
            c.guest.cr8 = v;
            bus.set_task_priority(v as u8);
        }
        _ => return Err(ud(c)),
    }
    Ok(())
}

/// The DR index after DR4/DR5 aliasing; #UD for DR4/5 with CR4.DE.
fn dr_index(c: &mut Core<X86>, n: u64) -> Result<usize, Trap> {
    match n {
        0..=3 | 6 | 7 => Ok(n as usize),
        4 | 5 if c.guest.cr4 & CR4_DE == 0 => Ok(n as usize + 2),
        _ => Err(ud(c)),
    }
}

/// Read DRn.
pub fn read_dr(c: &mut Core<X86>, n: u64) -> Result<u64, Trap> {
    let i = dr_index(c, n)?;
    Ok(c.guest.dr[i])
}

/// Write DRn (storage only: no hardware breakpoints).
pub fn write_dr(c: &mut Core<X86>, n: u64, v: u64) -> Result<(), Trap> {
    let i = dr_index(c, n)?;
    let v = match i {
        6 => {
            if v >> 32 != 0 {
                return Err(gp0(c));
            }
            (v & 0x0001_e00f) | 0xffff_0ff0
        }
        7 => {
            if v >> 32 != 0 {
                return Err(gp0(c));
            }
            (v & 0xffff_2bff) | 0x400
        }
        _ => v,
    };
    c.guest.dr[i] = v;
    Ok(())
}

/// LMSW: loads CR0 bits 0-3; PE can be set but not cleared.
pub fn lmsw(c: &mut Core<X86>, v: u64) -> Result<(), Trap> {
    let old = c.guest.cr0;
    let new = (old & !0xe) | (v & 0xf) | (old & CR0_PE);
    write_cr0(c, new)
}

/// INVLPG. The engine's TLB holds 4 KiB pieces of large pages: invalidating an address
/// mapped by a 2 MiB / 1 GiB page drops the whole TLB.
pub fn invlpg(c: &mut Core<X86>, addr: u64) {
    match crate::mmu::mapped_page_shift(c, addr) {
        Some(s) if s > 12 => c.tlb_flush_all(),
        _ => c.tlb_flush_page(addr),
    }
}
