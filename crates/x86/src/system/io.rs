//! Port I/O: IN/OUT/INS/OUTS with the IOPL / TSS I/O-bitmap permission check.

use super::{data_mmu, gp0, iopl};
use crate::helpers::Bus;
use crate::regs::*;
use crate::X86;
use tci64_engine::{Core, Trap};

/// Check that the current privilege may access `size` bytes at `port` (protected mode:
/// CPL <= IOPL, or the TSS I/O bitmap allows every byte). `Err` = #GP(0).
pub fn check(c: &mut Core<X86>, bus: &mut Bus, port: u16, size: u8) -> Result<(), Trap> {
    let g = &c.guest;
    let pe = g.cr0 & crate::state::cr::CR0_PE != 0;
    let vm86 = c.regs.0[RFLAGS as usize] & fl::VM != 0;
    if !pe || (!vm86 && g.cpl <= iopl(c)) {
        return Ok(());
    }
    // The TSS must be a 32/64-bit TSS with limit >= 0x67 and the bitmap offset at 0x66.
    let tr = g.tr;
    let ty = tr.attr & 0xf;
    if !(ty == 0x9 || ty == 0xb) || tr.limit < 0x67 {
        return Err(gp0(c));
    }
    let off = c.read(bus, tr.base.wrapping_add(0x66), 2, 0)? as u32;
    let byte = off + (port as u32 >> 3);
    if byte + 1 > tr.limit {
        return Err(gp0(c));
    }
    let bits = c.read(bus, tr.base.wrapping_add(byte as u64), 2, 0)?;
    let mask = ((1u64 << size) - 1) << (port & 7);
    if bits & mask != 0 {
        return Err(gp0(c));
    }
    Ok(())
}

/// IN: read `size` bytes from `port`.
pub fn port_in(c: &mut Core<X86>, bus: &mut Bus, port: u16, size: u8) -> Result<u64, Trap> {
    check(c, bus, port, size)?;
    Ok(bus.pio_read(port, size) as u64 & size_mask(size))
}

/// OUT: write `size` bytes of `v` to `port`.
pub fn port_out(c: &mut Core<X86>, bus: &mut Bus, port: u16, size: u8, v: u64) -> Result<(), Trap> {
    check(c, bus, port, size)?;
    bus.pio_write(port, size, (v & size_mask(size)) as u32);
    Ok(())
}

fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// The mask of an address size (2, 4, 8 bytes).
fn amask(asize: u64) -> u64 {
    match asize {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Write back a register under the address size (16-bit merges, 32-bit zero-extends).
fn set_areg(c: &mut Core<X86>, slot: u8, asize: u64, v: u64) {
    super::write_gpr(c, slot, asize as usize, v);
}

/// Iterations of a REP string I/O instruction done per helper call before yielding.
const REP_CHUNK: u64 = 4096;

/// INS/OUTS (with or without REP). `flags`: bits 0-3 size, bits 4-7 address size,
/// bit 8 REP, bit 9 OUTS (else INS), bits 16-18 source segment of OUTS (DS default).
pub fn string_io(c: &mut Core<X86>, bus: &mut Bus, flags: u64) -> Result<(), Trap> {
    let size = (flags & 0xf) as u8;
    let asize = (flags >> 4) & 0xf;
    let rep = flags & 0x100 != 0;
    let outs = flags & 0x200 != 0;
    let seg = ((flags >> 16) & 7) as usize;
    let am = amask(asize);
    let port = c.regs.0[RDX as usize] as u16;
    check(c, bus, port, size)?;
    let mmu = data_mmu(c);
    let step = if c.regs.0[RFLAGS as usize] & fl::DF != 0 {
        (size as u64).wrapping_neg()
    } else {
        size as u64
    };
    let long64 = super::long64(c);
    let mut n = 0u64;
    loop {
        if rep && c.regs.0[RCX as usize] & am == 0 {
            return Ok(());
        }
        if n == REP_CHUNK {
            // Let interrupts in; the instruction re-runs with its progress in RCX/RSI/RDI.
            return Err(Trap::Restart);
        }
        if outs {
            let off = c.regs.0[RSI as usize] & am;
            let base = if long64 && seg != FS && seg != GS {
                0
            } else {
                c.regs.0[SEG_BASE as usize + seg]
            };
            let mut a = base.wrapping_add(off);
            if !long64 {
                a &= 0xffff_ffff;
            }
            let v = c.read(bus, a, size as usize, mmu)?;
            bus.pio_write(port, size, v as u32);
            let nv = off.wrapping_add(step);
            set_areg(c, RSI, asize, nv);
        } else {
            let off = c.regs.0[RDI as usize] & am;
            let base = if long64 {
                0
            } else {
                c.regs.0[ES_BASE as usize]
            };
            let mut a = base.wrapping_add(off);
            if !long64 {
                a &= 0xffff_ffff;
            }
            // Check the destination before reading the port (a read may have side effects).
            c.translate_addr(bus, a, tci64_engine::Access::Write, mmu)?;
            if (a & 0xfff) + size as u64 > 0x1000 {
                c.translate_addr(
                    bus,
                    a.wrapping_add(size as u64 - 1),
                    tci64_engine::Access::Write,
                    mmu,
                )?;
            }
            let v = bus.pio_read(port, size) as u64 & size_mask(size);
            c.write(bus, a, size as usize, mmu, v)?;
            let nv = off.wrapping_add(step);
            set_areg(c, RDI, asize, nv);
        }
        if !rep {
            return Ok(());
        }
        let cx = (c.regs.0[RCX as usize] & am).wrapping_sub(1);
        set_areg(c, RCX, asize, cx);
        n += 1;
    }
}
