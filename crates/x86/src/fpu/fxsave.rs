//! FXSAVE / FXRSTOR: the 512-byte x87+SSE state image (64-bit layout with REX.W, the legacy
//! 32-bit layout otherwise).

use super::sse::MXCSR_MASK;
use crate::helpers::Bus;
use crate::state::vec;
use crate::X86;
use tci64_engine::{Core, Trap};

/// Flag in the helper's second argument: REX.W (64-bit FIP/FDP layout).
pub const REXW: u64 = 1;
/// Flag: 64-bit mode (16 XMM registers instead of 8).
pub const MODE64: u64 = 2;

/// The tag of a physical register's contents (00 valid, 01 zero, 10 special).
pub fn tag_of(m: u64, se: u16) -> u16 {
    let e = se & 0x7fff;
    if e == 0x7fff {
        2
    } else if e == 0 {
        if m == 0 {
            1
        } else {
            2
        }
    } else if m & (1 << 63) == 0 {
        2
    } else {
        0
    }
}

/// The full status word (with TOP).
pub fn fsw(c: &Core<X86>) -> u16 {
    (c.guest.x87.fsw & !0x3800) | ((c.guest.x87.top as u16 & 7) << 11)
}

/// The 512-byte image of the current state.
pub fn image(c: &Core<X86>, flags: u64) -> [u8; 512] {
    let x = &c.guest.x87;
    let mut b = [0u8; 512];
    b[0..2].copy_from_slice(&x.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&fsw(c).to_le_bytes());
    let mut abr = 0u8;
    for i in 0..8 {
        if (x.ftw >> (2 * i)) & 3 != 3 {
            abr |= 1 << i;
        }
    }
    b[4] = abr;
    b[6..8].copy_from_slice(&(x.fop & 0x7ff).to_le_bytes());
    if flags & REXW != 0 {
        b[8..16].copy_from_slice(&x.fip.to_le_bytes());
        b[16..24].copy_from_slice(&x.fdp.to_le_bytes());
    } else {
        b[8..12].copy_from_slice(&(x.fip as u32).to_le_bytes());
        b[12..14].copy_from_slice(&x.fcs.to_le_bytes());
        b[16..20].copy_from_slice(&(x.fdp as u32).to_le_bytes());
        b[20..22].copy_from_slice(&x.fds.to_le_bytes());
    }
    b[24..28].copy_from_slice(&c.guest.mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&MXCSR_MASK.to_le_bytes());
    for i in 0..8 {
        let (m, se) = x.regs[(x.top as usize + i) & 7];
        let o = 32 + 16 * i;
        b[o..o + 8].copy_from_slice(&m.to_le_bytes());
        b[o + 8..o + 10].copy_from_slice(&se.to_le_bytes());
    }
    let n = if flags & MODE64 != 0 { 16 } else { 8 };
    for i in 0..n {
        let o = 160 + 16 * i;
        b[o..o + 8].copy_from_slice(&c.guest.xmm[i][0].to_le_bytes());
        b[o + 8..o + 16].copy_from_slice(&c.guest.xmm[i][1].to_le_bytes());
    }
    b
}

fn mmu(c: &Core<X86>) -> u8 {
    if c.guest.cpl == 3 {
        1
    } else {
        0
    }
}

/// FXSAVE to `addr` (must be 16-byte aligned).
pub fn h_fxsave(
    c: &mut Core<X86>,
    bus: &mut Bus,
    addr: u64,
    flags: u64,
    _: u64,
) -> Result<u64, Trap> {
    if addr & 15 != 0 {
        return Err(crate::cpu::raise(c, vec::GP, Some(0)));
    }
    let img = image(c, flags);
    // Like hardware, store only the architectural fields: the reserved bytes 416..463 (and
    // 288..415 outside 64-bit mode) and the software-available bytes 464..511 are left alone.
    let end = if flags & MODE64 != 0 { 416 } else { 288 };
    let m = mmu(c);
    c.write_bytes(bus, addr, &img[..end], m)?;
    Ok(0)
}

/// FXRSTOR from `addr`.
pub fn h_fxrstor(
    c: &mut Core<X86>,
    bus: &mut Bus,
    addr: u64,
    flags: u64,
    _: u64,
) -> Result<u64, Trap> {
    if addr & 15 != 0 {
        return Err(crate::cpu::raise(c, vec::GP, Some(0)));
    }
    let mut b = [0u8; 512];
    let m = mmu(c);
    c.read_bytes(bus, addr, &mut b[..416], m)?;
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let mxcsr = u32at(24);
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(crate::cpu::raise(c, vec::GP, Some(0)));
    }
    let g = &mut c.guest;
    g.mxcsr = mxcsr;
    let x = &mut g.x87;
    // Reserved FCW bits 7 and 13..15 read as zero, bit 6 as one; ES and B are recomputed from the exception
    // flags and masks (as hardware does).
    x.fcw = (u16at(0) & 0x1f3f) | 0x40;
    let mut sw = u16at(2) & !0x8080;
    if sw & !x.fcw & 0x3f != 0 {
        sw |= 0x8080;
    }
    x.top = ((sw >> 11) & 7) as u8;
    x.fsw = sw & !0x3800;
    x.fop = u16at(6) & 0x7ff;
    if flags & REXW != 0 {
        x.fip = u64at(8);
        x.fdp = u64at(16);
    } else {
        x.fip = u32at(8) as u64;
        x.fcs = u16at(12);
        x.fdp = u32at(16) as u64;
        x.fds = u16at(20);
    }
    for i in 0..8 {
        let o = 32 + 16 * i;
        x.regs[(x.top as usize + i) & 7] = (u64at(o), u16at(o + 8));
    }
    let abr = b[4];
    let mut ftw = 0u16;
    for p in 0..8 {
        let t = if abr & (1 << p) == 0 {
            3
        } else {
            let (m, se) = x.regs[p];
            tag_of(m, se)
        };
        ftw |= t << (2 * p);
    }
    x.ftw = ftw;
    let n = if flags & MODE64 != 0 { 16 } else { 8 };
    for i in 0..n {
        let o = 160 + 16 * i;
        g.xmm[i] = [u64at(o), u64at(o + 8)];
    }
    Ok(0)
}
