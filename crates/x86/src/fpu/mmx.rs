//! MMX: MM0-7 alias the mantissas of the x87 physical registers R0-R7. Every MMX instruction
//! (except EMMS) sets TOP = 0 and marks all tags valid; a write to MMn also sets Rn's
//! sign/exponent field to 0xFFFF. EMMS marks all tags empty (and sets TOP = 0). The integer operations reuse the
//! 128-bit SSE helper on a 64-bit lane view where that is exact (lane-wise operations, shifts,
//! PSHUFLW for PSHUFW, PUNPCKL for PUNPCKH taking the high half, packs with the source placed
//! in the destination's high half).

use super::sse::{self as fs, ctl, CTL_GPR_DST};
use crate::helpers::Bus;
use crate::X86;
use tci64_engine::{Core, Trap};

/// Special operations (in the SSE op-number field).
pub const MOV_IN: u64 = 0x800;
pub const MOV_OUT: u64 = 0x801;
pub const EMMS: u64 = 0x802;
pub const MOVQ2DQ: u64 = 0x803;
pub const MOVDQ2Q: u64 = 0x804;
pub const MASKMOVQ: u64 = 0x805;
pub const TOUCH: u64 = 0x806;
/// The result is the high 64 bits of the 128-bit operation (PUNPCKH via PUNPCKL).
pub const HI_HALF: u64 = 1 << 27;
/// The source goes into the high half of the 128-bit destination (packs).
pub const PACK: u64 = 1 << 28;
/// The operation is an SSE3+ extension op (the SSE4 helper), not an SSE one.
pub const EXT: u64 = 1 << 30;
/// The destination is duplicated into the high half (PSHUFB: index bit 3 is ignored).
pub const DUP: u64 = 1 << 41;
/// PALIGNR: destination 0, source = mm source | mm destination << 64.
pub const ALIGN: u64 = 1 << 42;
/// The result goes to the low half of XMM `dst` (high half kept) — CVTPI2PS.
pub const XMM_LO: u64 = 1 << 43;
/// The result goes to all of XMM `dst` — CVTPI2PD.
pub const XMM_ALL: u64 = 1 << 44;
/// The source is XMM `src` (low half; both halves with `SRC128`).
pub const SRC_XMM: u64 = 1 << 45;
/// The source is 128 bits (the helper's second argument is the high half for memory).
pub const SRC128: u64 = 1 << 46;
/// Do not apply the x87 TOP/tag effects (a read before a store that may fault).
pub const PURE: u64 = 1 << 29;

const TMP: usize = 14;

fn mm(c: &Core<X86>, n: u64) -> u64 {
    c.guest.x87.regs[(n & 7) as usize].0
}

fn set_mm(c: &mut Core<X86>, n: u64, v: u64) {
    c.guest.x87.regs[(n & 7) as usize] = (v, 0xffff);
}

/// TOP = 0 and every register non-empty (the full tag word reflects the contents, as
/// FNSTENV/FSAVE compute it).
fn touch(c: &mut Core<X86>) {
    let x = &mut c.guest.x87;
    x.top = 0;
    x.ftw = (0..8).fold(0, |w, i| {
        let (m, se) = x.regs[i];
        w | super::fxsave::tag_of(m, se) << (2 * i)
    });
}

/// The MMX helper: `arg` is a memory/GPR source value (with `ctl::SRC_ARG`) or an address
/// (MASKMOVQ); returns a GPR/memory result for `CTL_GPR_DST` / `MOV_OUT`.
pub fn h_mmx(c: &mut Core<X86>, bus: &mut Bus, arg: u64, arg_hi: u64, k: u64) -> Result<u64, Trap> {
    let op = k & ctl::OP_MASK;
    let dr = (k >> ctl::DST_SHIFT) & 15;
    let sr = (k >> ctl::SRC_SHIFT) & 15;
    let from_arg = k & ctl::SRC_ARG != 0;
    let (s, s_hi) = if from_arg {
        (arg, arg_hi)
    } else if k & SRC_XMM != 0 {
        let x = c.guest.xmm[(sr & 15) as usize];
        (x[0], x[1])
    } else {
        (mm(c, sr), 0)
    };
    let s_hi = if k & SRC128 != 0 { s_hi } else { 0 };
    let mut ret = 0;
    match op {
        EMMS => {
            // All tags empty; TOP = 0 as well (what hardware does).
            c.guest.x87.ftw = 0xffff;
            c.guest.x87.top = 0;
            return Ok(0);
        }
        TOUCH => {}
        MOV_IN => set_mm(c, dr, s),
        MOV_OUT => ret = mm(c, sr),
        MOVQ2DQ => c.guest.xmm[(dr & 15) as usize] = [mm(c, sr), 0],
        MOVDQ2Q => {
            let v = c.guest.xmm[(sr & 15) as usize][0];
            set_mm(c, dr, v)
        }
        MASKMOVQ => {
            let save = (c.guest.xmm[TMP], c.guest.xmm[TMP + 1]);
            c.guest.xmm[TMP] = [mm(c, dr), 0];
            c.guest.xmm[TMP + 1] = [mm(c, sr), 0];
            let r = fs::h_maskmov(c, bus, arg, TMP as u64 | (TMP as u64 + 1) << 4, 0);
            (c.guest.xmm[TMP], c.guest.xmm[TMP + 1]) = save;
            r?;
        }
        _ => {
            let d = mm(c, dr);
            let save = c.guest.xmm[TMP];
            c.guest.xmm[TMP] = if k & PACK != 0 {
                [d, s]
            } else if k & DUP != 0 {
                [d, d]
            } else if k & ALIGN != 0 {
                [0, 0]
            } else {
                [d, 0]
            };
            let hi = if k & ALIGN != 0 { d } else { s_hi };
            let mut k2 = k & (ctl::OP_MASK | ctl::SRC_IMM | ctl::W64 | CTL_GPR_DST);
            k2 |= (k >> ctl::IMM_SHIFT & 0xff) << ctl::IMM_SHIFT;
            k2 |= (TMP as u64) << ctl::DST_SHIFT;
            if k & ctl::SRC_IMM != 0 {
                k2 |= (TMP as u64) << ctl::SRC_SHIFT;
            } else {
                k2 |= ctl::SRC_ARG;
            }
            let r = if k & EXT != 0 {
                super::sse4::h_ext(c, bus, s, hi, k2)
            } else {
                fs::h_sse(c, bus, s, hi, k2)
            };
            let out = c.guest.xmm[TMP];
            c.guest.xmm[TMP] = save;
            let r = r?;
            if k & CTL_GPR_DST != 0 {
                ret = r;
            } else if k & XMM_LO != 0 {
                c.guest.xmm[(dr & 15) as usize][0] = out[0];
            } else if k & XMM_ALL != 0 {
                c.guest.xmm[(dr & 15) as usize] = out;
            } else {
                let v = if k & HI_HALF != 0 { out[1] } else { out[0] };
                set_mm(c, dr, v);
            }
        }
    }
    if k & PURE == 0 {
        touch(c);
    }
    Ok(ret)
}
