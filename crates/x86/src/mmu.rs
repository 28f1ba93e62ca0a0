//! The page walker: guest-virtual to guest-physical translation as the x86 MMU does it,
//! with accessed/dirty bits written back and page faults with exact error codes.

use crate::helpers::Bus;
use crate::state::{cr, vec, Event, EventKind};
use crate::X86;
use tci64_engine::{Access, Core, Translation, Trap};

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
/// Bits 51:40 of an entry: reserved with a 40-bit physical address width (CPUID 0x80000008).
const RSVD_HI: u64 = 0x000f_ff00_0000_0000;
/// Physical-address bits of an entry (52-bit physical addresses).
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Page-fault error-code bits.
pub mod pf {
    pub const P: u32 = 1 << 0;
    pub const W: u32 = 1 << 1;
    pub const U: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const I: u32 = 1 << 4;
}

/// MMU-index bit: a CPL 3 access (user permissions apply).
pub const MMU_USER: u8 = 1;
/// MMU-index bit: a stack-segment reference (non-canonical → #SS instead of #GP). Stack
/// references get TLB entries of their own; permissions are the same.
pub const MMU_STACK: u8 = 2;

/// True if `va` is canonical for 48-bit virtual addresses.
pub fn canonical(va: u64) -> bool {
    ((va as i64) << 16 >> 16) as u64 == va
}

fn page_fault(c: &mut Core<X86>, va: u64, code: u32) -> Trap {
    c.guest.cr2 = va;
    c.guest.pending = Some(Event {
        vector: vec::PF,
        error_code: Some(code),
        kind: EventKind::Exception,
    });
    Trap::Exception
}

/// Why a walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// #PF with this error code (CR2 = the address).
    Page(u32),
    /// A non-canonical address: #GP(0), or #SS(0) for a stack reference.
    Canonical(u8),
}

/// A successful walk, before its side effects (accessed/dirty bits) are applied.
#[derive(Clone, Copy, Debug)]
struct Walked {
    /// Physical address of the 4 KiB frame holding `va`.
    frame: u64,
    /// The permissions allow writes (before the dirty-bit rule).
    write_ok: bool,
    executable: bool,
    /// Paging-structure entries used (address, value as read); their A bits get set.
    entries: [(u64, u64); 4],
    n: usize,
    /// The leaf entry's address and size in bytes (`None` without paging).
    leaf: Option<(u64, usize)>,
}

/// Walk the page tables for `va` without changing anything.
fn walk(c: &Core<X86>, va: u64, access: Access, mmu: u8) -> Result<Walked, Fault> {
    let g = &c.guest;
    if g.cr0 & cr::CR0_PG == 0 {
        return Ok(Walked {
            frame: va & 0xffff_ffff & !0xfff,
            write_ok: true,
            executable: true,
            entries: [(0, 0); 4],
            n: 0,
            leaf: None,
        });
    }
    if g.efer & cr::EFER_LMA == 0 {
        return walk_legacy(c, va, access, mmu);
    }
    if !canonical(va) {
        // A non-canonical stack reference is #SS(0); any other is #GP(0).
        return Err(Fault::Canonical(if mmu & MMU_STACK != 0 {
            vec::SS
        } else {
            vec::GP
        }));
    }
    let user = mmu & MMU_USER != 0;
    let write = access == Access::Write;
    let fetch = access == Access::Fetch;
    let nxe = g.efer & cr::EFER_NXE != 0;
    let wp = g.cr0 & cr::CR0_WP != 0;
    let mut err = 0u32;
    if write {
        err |= pf::W;
    }
    if user {
        err |= pf::U;
    }
    if fetch && nxe {
        err |= pf::I;
    }
    let mut table = g.cr3 & ADDR;
    let mut rw_all = true;
    let mut us_all = true;
    let mut nx_any = false;
    let mut entries: [(u64, u64); 4] = [(0, 0); 4];
    let mut levels = 0;
    let mut shift = 39u32;
    let (leaf, leaf_addr, page_shift) = loop {
        let idx = (va >> shift) & 511;
        let ea = table + idx * 8;
        let e = c.mem.read_phys_u(ea, 8);
        if e & P == 0 {
            return Err(Fault::Page(err));
        }
        // Reserved bits: NX without EFER.NXE, bits 51:M above the physical width, and the
        // low bits of a large page's frame address (bit 12 is PAT there).
        let large_rsvd = match shift {
            30 if e & PS != 0 => 0x3fff_e000,
            21 if e & PS != 0 => 0x1f_e000,
            _ => 0,
        };
        if (!nxe && e & NX != 0) || e & RSVD_HI != 0 || e & large_rsvd != 0 {
            return Err(Fault::Page(err | pf::P | pf::RSVD));
        }
        entries[levels] = (ea, e);
        levels += 1;
        rw_all &= e & RW != 0;
        us_all &= e & US != 0;
        nx_any |= nxe && e & NX != 0;
        if shift == 12 {
            break (e, ea, 12);
        }
        if e & PS != 0 {
            if shift == 39 {
                return Err(Fault::Page(err | pf::P | pf::RSVD));
            }
            break (e, ea, shift);
        }
        table = e & ADDR;
        shift -= 9;
    };
    // Permission checks.
    let deny = (user && !us_all) || (write && !rw_all && (user || wp)) || (fetch && nx_any);
    if deny {
        return Err(Fault::Page(err | pf::P));
    }
    let frame = if page_shift == 12 {
        leaf & ADDR
    } else {
        // Large page: bits above the page size from the entry (bit 12 is PAT there).
        let base = leaf & ADDR & !((1u64 << page_shift) - 1);
        base | (va & ((1u64 << page_shift) - 1) & !0xfff)
    };
    Ok(Walked {
        frame,
        write_ok: rw_all || (!user && !wp),
        executable: !nx_any,
        entries,
        n: levels,
        leaf: Some((leaf_addr, 8)),
    })
}

/// The engine's `tlb_fill`: walk the page tables for `va`, set accessed/dirty bits, and
/// record a fault (CR2, the pending exception).
pub fn tlb_fill(
    c: &mut Core<X86>,
    _bus: &mut Bus,
    va: u64,
    access: Access,
    mmu: u8,
) -> Result<Translation, Trap> {
    let w = match walk(c, va, access, mmu) {
        Ok(w) => w,
        Err(Fault::Page(code)) => {
            let va = if c.guest.efer & cr::EFER_LMA == 0 {
                va & 0xffff_ffff
            } else {
                va
            };
            return Err(page_fault(c, va, code));
        }
        Err(Fault::Canonical(vector)) => {
            c.guest.pending = Some(Event {
                vector,
                error_code: Some(0),
                kind: EventKind::Exception,
            });
            return Err(Trap::Exception);
        }
    };
    let Some((leaf_addr, esize)) = w.leaf else {
        return Ok(Translation {
            paddr_page: w.frame,
            readable: true,
            writable: true,
            executable: true,
        });
    };
    // Accessed bits on every level, dirty on the leaf for writes.
    for &(ea, e) in &w.entries[..w.n] {
        if e & A == 0 {
            c.mem.write_phys_u(ea, esize, e | A);
        }
    }
    let write = access == Access::Write;
    let mut leaf_now = c.mem.read_phys_u(leaf_addr, esize);
    if write && leaf_now & D == 0 {
        leaf_now |= D;
        c.mem.write_phys_u(leaf_addr, esize, leaf_now);
    }
    let dirty = leaf_now & D != 0;
    Ok(Translation {
        paddr_page: w.frame,
        readable: true,
        writable: w.write_ok && (dirty || write),
        executable: w.executable,
    })
}

/// The physical address of `va` for a debugger or monitor: the current page tables walked
/// as a supervisor read, with no side effects at all (no TLB fill, no accessed/dirty bits,
/// no CR2 or pending exception). `None` if `va` is not mapped.
pub fn probe(c: &Core<X86>, va: u64) -> Option<u64> {
    let w = walk(c, va, Access::Read, 0).ok()?;
    Some(w.frame | (va & 0xfff))
}

/// 32-bit paging (non-PAE) and PAE paging outside long mode.
fn walk_legacy(c: &Core<X86>, va: u64, access: Access, mmu: u8) -> Result<Walked, Fault> {
    let va = va & 0xffff_ffff;
    let g = &c.guest;
    let user = mmu & MMU_USER != 0;
    let write = access == Access::Write;
    let wp = g.cr0 & cr::CR0_WP != 0;
    let mut err = 0u32;
    if write {
        err |= pf::W;
    }
    if user {
        err |= pf::U;
    }
    let pae = g.cr4 & cr::CR4_PAE != 0;
    let pse = g.cr4 & cr::CR4_PSE != 0;
    let (esize, mut table, mut shift): (u64, u64, u32) = if pae {
        (8, g.cr3 & 0xffff_ffe0, 30)
    } else {
        (4, g.cr3 & 0xffff_f000, 22)
    };
    let idx_bits = if pae { 9 } else { 10 };
    let mut rw_all = true;
    let mut us_all = true;
    let mut entries = [(0u64, 0u64); 4];
    let mut n = 0;
    let (leaf, leaf_addr, page_shift) = loop {
        let idx = if pae && shift == 30 {
            (va >> 30) & 3
        } else {
            (va >> shift) & ((1 << idx_bits) - 1)
        };
        let ea = table + idx * esize;
        let e = c.mem.read_phys_u(ea, esize as usize);
        if e & P == 0 {
            return Err(Fault::Page(err));
        }
        let top_pdpte = pae && shift == 30;
        if !top_pdpte {
            rw_all &= e & RW != 0;
            us_all &= e & US != 0;
            entries[n] = (ea, e);
            n += 1;
        }
        if shift == 12 {
            break (e, ea, 12);
        }
        if !top_pdpte && e & PS != 0 && (pae || pse) {
            break (e, ea, shift);
        }
        table = e & if pae { ADDR } else { 0xffff_f000 };
        shift -= if pae { 9 } else { 10 };
    };
    if (user && !us_all) || (write && !rw_all && (user || wp)) {
        return Err(Fault::Page(err | pf::P));
    }
    let frame = if page_shift == 12 {
        leaf & if pae { ADDR } else { 0xffff_f000 }
    } else {
        let base = leaf & (if pae { ADDR } else { 0xffff_f000 }) & !((1u64 << page_shift) - 1);
        base | (va & ((1u64 << page_shift) - 1) & !0xfff)
    };
    Ok(Walked {
        frame,
        write_ok: rw_all || (!user && !wp),
        executable: true,
        entries,
        n,
        leaf: Some((leaf_addr, esize as usize)),
    })
}

/// The page size (log2) mapping `va` in the current long-mode page tables, without side
/// effects (no A/D updates, no faults): 12, 21 or 30, or `None` if not mapped.
pub fn mapped_page_shift(c: &Core<X86>, va: u64) -> Option<u32> {
    let g = &c.guest;
    if g.cr0 & cr::CR0_PG == 0 || g.efer & cr::EFER_LMA == 0 {
        return None;
    }
    let mut table = g.cr3 & ADDR;
    let mut shift = 39u32;
    loop {
        let e = c.mem.read_phys_u(table + ((va >> shift) & 511) * 8, 8);
        if e & P == 0 {
            return None;
        }
        if shift == 12 || (shift < 39 && e & PS != 0) {
            return Some(shift);
        }
        table = e & ADDR;
        shift -= 9;
    }
}
