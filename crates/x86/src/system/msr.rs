//! RDMSR/WRMSR, RDTSC/RDTSCP.

use super::gp0;
use crate::helpers::Bus;
use crate::mmu::canonical;
use crate::regs::*;
use crate::state::cr;
use crate::X86;
use core::sync::atomic::{AtomicU32, Ordering};
use tci64_engine::{Core, Trap};

pub const TSC: u32 = 0x10;
pub const PLATFORM_ID: u32 = 0x17;
pub const APIC_BASE: u32 = 0x1b;
pub const UCODE_REV: u32 = 0x8b;
pub const MTRRCAP: u32 = 0xfe;
pub const SYSENTER_CS: u32 = 0x174;
pub const SYSENTER_ESP: u32 = 0x175;
pub const SYSENTER_EIP: u32 = 0x176;
pub const MISC_ENABLE: u32 = 0x1a0;
pub const MTRR_PHYS: u32 = 0x200;
pub const MTRR_FIX64K: u32 = 0x250;
pub const MTRR_FIX16K_80000: u32 = 0x258;
pub const MTRR_FIX16K_A0000: u32 = 0x259;
pub const MTRR_FIX4K: u32 = 0x268;
pub const PAT: u32 = 0x277;
pub const MTRR_DEF_TYPE: u32 = 0x2ff;
pub const EFER: u32 = 0xc000_0080;
pub const STAR: u32 = 0xc000_0081;
pub const LSTAR: u32 = 0xc000_0082;
pub const CSTAR: u32 = 0xc000_0083;
pub const SFMASK: u32 = 0xc000_0084;
pub const FS_BASE_MSR: u32 = 0xc000_0100;
pub const GS_BASE_MSR: u32 = 0xc000_0101;
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const TSC_AUX: u32 = 0xc000_0103;
/// IA32_TSC_DEADLINE: the LVT timer's deadline in TSC-deadline mode.
pub const TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC register MSRs.
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;

/// Is `msr` one the interrupt controller (the local APIC) answers?
fn is_apic_msr(msr: u32) -> bool {
    matches!(msr, APIC_BASE | TSC_DEADLINE | X2APIC_FIRST..=X2APIC_LAST)
}

/// The APIC base MSR's value: the default address, BSP, global enable clear (no APIC).
pub const APIC_BASE_VALUE: u64 = 0xfee0_0000 | (1 << 8);
/// MISC_ENABLE bits that may be written (fast strings, and everything Linux toggles is
/// stored as written).
const MISC_ENABLE_RW: u64 = u64::MAX;

/// Index into the fixed-range MTRR array.
fn fixed_mtrr(msr: u32) -> Option<usize> {
    match msr {
        MTRR_FIX64K => Some(0),
        MTRR_FIX16K_80000 => Some(1),
        MTRR_FIX16K_A0000 => Some(2),
        MTRR_FIX4K..=0x26f => Some(3 + (msr - MTRR_FIX4K) as usize),
        _ => None,
    }
}

/// A valid PAT value: every byte one of the types 0, 1, 4, 5, 6, 7.
fn pat_ok(v: u64) -> bool {
    v.to_le_bytes()
        .iter()
        .all(|&b| matches!(b, 0 | 1 | 4 | 5 | 6 | 7))
}

/// The value of MSR `msr`, or `None` if this CPU has no such MSR.
pub fn read(c: &mut Core<X86>, bus: &mut Bus, msr: u32) -> Option<u64> {
    if is_apic_msr(msr) && c.guest.model.apic {
        let v = bus.apic_msr_read(msr);
        // The deadline is kept in virtual time; the guest sees it on its own TSC scale.
        return match (msr, v) {
            (TSC_DEADLINE, Some(d)) if d != 0 => {
                Some((d as i64).wrapping_add(c.guest.tsc_offset) as u64)
            }
            (APIC_BASE, None) => Some(APIC_BASE_VALUE),
            _ => v,
        };
    }
    let g = &c.guest;
    Some(match msr {
        TSC => (bus.tsc(c.icount) as i64).wrapping_add(g.tsc_offset) as u64,
        PLATFORM_ID => 0,
        APIC_BASE => APIC_BASE_VALUE,
        UCODE_REV => 1 << 32,
        // 8 variable ranges, fixed ranges, write-combining.
        MTRRCAP => 0x508,
        SYSENTER_CS => g.sysenter_cs,
        SYSENTER_ESP => g.sysenter_esp,
        SYSENTER_EIP => g.sysenter_eip,
        MISC_ENABLE => g.misc_enable,
        MTRR_PHYS..=0x20f => g.mtrr_var[(msr - MTRR_PHYS) as usize & 15],
        PAT => g.pat,
        MTRR_DEF_TYPE => g.mtrr_def_type,
        EFER => g.efer,
        STAR => g.star,
        LSTAR => g.lstar,
        CSTAR => g.cstar,
        SFMASK => g.sfmask,
        FS_BASE_MSR => c.regs.0[FS_BASE as usize],
        GS_BASE_MSR => c.regs.0[GS_BASE as usize],
        KERNEL_GS_BASE => g.kernel_gs_base,
        TSC_AUX => g.tsc_aux,
        _ => return fixed_mtrr(msr).map(|i| g.mtrr_fixed[i]),
    })
}

/// Write MSR `msr`. `Err` = #GP (recorded).
pub fn write(c: &mut Core<X86>, bus: &mut Bus, msr: u32, v: u64) -> Result<(), Trap> {
    let canon = |c: &mut Core<X86>| if canonical(v) { Ok(()) } else { Err(gp0(c)) };
    if is_apic_msr(msr) && c.guest.model.apic {
        let v = match msr {
            TSC_DEADLINE if v != 0 => v.wrapping_sub(c.guest.tsc_offset as u64).max(1),
            _ => v,
        };
        return match bus.apic_msr_write(msr, v) {
            Some(true) => Ok(()),
            Some(false) => Err(gp0(c)),
            None if msr == APIC_BASE => Ok(()),
            None => Err(unknown(c, msr, "wrmsr")),
        };
    }
    match msr {
        TSC => {
            let now = bus.tsc(c.icount);
            c.guest.tsc_offset = v.wrapping_sub(now) as i64;
        }
        APIC_BASE | PLATFORM_ID => {}
        UCODE_REV => {}
        SYSENTER_CS => c.guest.sysenter_cs = v & 0xffff,
        SYSENTER_ESP => {
            canon(c)?;
            c.guest.sysenter_esp = v
        }
        SYSENTER_EIP => {
            canon(c)?;
            c.guest.sysenter_eip = v
        }
        MISC_ENABLE => c.guest.misc_enable = v & MISC_ENABLE_RW,
        MTRR_PHYS..=0x20f => {
            if v >> super::cpuid::PHYS_BITS != 0 {
                return Err(gp0(c));
            }
            c.guest.mtrr_var[(msr - MTRR_PHYS) as usize & 15] = v;
        }
        PAT => {
            if !pat_ok(v) {
                return Err(gp0(c));
            }
            c.guest.pat = v;
        }
        MTRR_DEF_TYPE => {
            if v & !0xcff != 0 {
                return Err(gp0(c));
            }
            c.guest.mtrr_def_type = v;
        }
        EFER => {
            let g = &c.guest;
            let allowed = cr::EFER_SCE | cr::EFER_LME | cr::EFER_LMA | cr::EFER_NXE;
            if v & !allowed != 0 {
                return Err(gp0(c));
            }
            // LME cannot change while paging is on.
            if g.cr0 & cr::CR0_PG != 0 && (v ^ g.efer) & cr::EFER_LME != 0 {
                return Err(gp0(c));
            }
            let old = g.efer;
            let new = (v & !cr::EFER_LMA) | (old & cr::EFER_LMA);
            c.guest.efer = new;
            if (old ^ new) & cr::EFER_NXE != 0 {
                c.tlb_flush_all();
            }
        }
        STAR => c.guest.star = v,
        LSTAR => {
            canon(c)?;
            c.guest.lstar = v
        }
        CSTAR => {
            canon(c)?;
            c.guest.cstar = v
        }
        SFMASK => c.guest.sfmask = v & 0xffff_ffff,
        FS_BASE_MSR => {
            canon(c)?;
            c.regs.0[FS_BASE as usize] = v;
        }
        GS_BASE_MSR => {
            canon(c)?;
            c.regs.0[GS_BASE as usize] = v;
        }
        KERNEL_GS_BASE => {
            canon(c)?;
            c.guest.kernel_gs_base = v
        }
        TSC_AUX => c.guest.tsc_aux = v & 0xffff_ffff,
        _ => match fixed_mtrr(msr) {
            Some(i) => c.guest.mtrr_fixed[i] = v,
            None => return Err(unknown(c, msr, "wrmsr")),
        },
    }
    Ok(())
}

/// Unknown MSRs already logged (`-d unimp` logs each one once).
static LOGGED: [AtomicU32; 32] = [const { AtomicU32::new(u32::MAX) }; 32];

/// True the first time `msr` is seen (a small table; later MSRs beyond it log every time).
fn first_time(msr: u32) -> bool {
    for slot in &LOGGED {
        match slot.compare_exchange(u32::MAX, msr, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(v) if v == msr => return false,
            Err(_) => {}
        }
    }
    true
}

fn unknown(c: &mut Core<X86>, msr: u32, what: &str) -> Trap {
    if c.trace.unimp && first_time(msr) {
        log::warn!(target: "tci64::trace", "{what} of unknown MSR {msr:#x} at {:#x}: #GP", c.regs.0[RIP as usize]);
    } else {
        log::debug!("{what} of unknown MSR {msr:#x}: #GP");
    }
    gp0(c)
}

/// RDMSR: ECX selects; result in EDX:EAX.
pub fn rdmsr(c: &mut Core<X86>, bus: &mut Bus) -> Result<(), Trap> {
    let msr = c.regs.0[RCX as usize] as u32;
    match read(c, bus, msr) {
        Some(v) => {
            c.regs.0[RAX as usize] = v & 0xffff_ffff;
            c.regs.0[RDX as usize] = v >> 32;
            Ok(())
        }
        None => Err(unknown(c, msr, "rdmsr")),
    }
}

/// WRMSR: ECX selects; value in EDX:EAX.
pub fn wrmsr(c: &mut Core<X86>, bus: &mut Bus) -> Result<(), Trap> {
    let r = &c.regs.0;
    let msr = r[RCX as usize] as u32;
    let v = (r[RAX as usize] & 0xffff_ffff) | (r[RDX as usize] << 32);
    write(c, bus, msr, v)
}

/// RDTSC (and RDTSCP with `aux`): #GP at CPL > 0 when CR4.TSD.
pub fn rdtsc(c: &mut Core<X86>, bus: &mut Bus, aux: bool) -> Result<(), Trap> {
    if c.guest.cr4 & cr::CR4_TSD != 0 && c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    let t = (bus.tsc(c.icount) as i64).wrapping_add(c.guest.tsc_offset) as u64;
    c.regs.0[RAX as usize] = t & 0xffff_ffff;
    c.regs.0[RDX as usize] = t >> 32;
    if aux {
        c.regs.0[RCX as usize] = c.guest.tsc_aux & 0xffff_ffff;
    }
    Ok(())
}
