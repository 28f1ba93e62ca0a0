//! SSE3 arithmetic, SSSE3, SSE4.1 and SSE4.2 on `X86State::xmm`: one helper per instruction
//! with the same control word as the SSE/SSE2 helper ([`super::sse::ctl`]). Floating point
//! goes through the soft-float core (exact results and MXCSR flags); the SSE4.2 string
//! compares are in [`super::pcmpstr`].

use super::pcmpstr;
use super::soft::{self, Fmt, Rm, F32, F64};
use super::sse::{
    ctl, env_of, finish_fp, fmt_width, fp_lane, get, input, lane, lanes, mask, sat_s, sat_u, set,
    sx, FOp, CTL_GPR_DST,
};
use crate::helpers::Bus;
use crate::regs::fl;
use crate::state::vec;
use crate::X86;
use tci64_engine::{Core, Trap};

macro_rules! ext_ops {
    ($($name:ident),* $(,)?) => {
        /// Operations of the extension helper (named as iced's mnemonics).
        #[allow(clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum ExtOp { $($name),* }
        const ALL: &[ExtOp] = &[$(ExtOp::$name),*];
        impl ExtOp {
            /// The operation for an iced mnemonic.
            pub fn from_mnemonic(m: iced_x86::Mnemonic) -> Option<ExtOp> {
                match m {
                    $(iced_x86::Mnemonic::$name => Some(ExtOp::$name),)*
                    _ => None,
                }
            }
            /// From the control word's number.
            pub fn from_u16(x: u16) -> Option<ExtOp> {
                ALL.get(x as usize).copied()
            }
        }
    };
}

ext_ops!(
    // SSE3
    Addsubps,
    Addsubpd,
    Haddps,
    Haddpd,
    Hsubps,
    Hsubpd, // SSSE3
    Pshufb,
    Phaddw,
    Phaddd,
    Phaddsw,
    Phsubw,
    Phsubd,
    Phsubsw,
    Pmaddubsw,
    Pmulhrsw,
    Psignb,
    Psignw,
    Psignd,
    Pabsb,
    Pabsw,
    Pabsd,
    Palignr, // SSE4.1
    Pblendvb,
    Blendps,
    Blendpd,
    Blendvps,
    Blendvpd,
    Pblendw,
    Pminsb,
    Pminsd,
    Pminuw,
    Pminud,
    Pmaxsb,
    Pmaxsd,
    Pmaxuw,
    Pmaxud,
    Pmulld,
    Pmuldq,
    Pmovsxbw,
    Pmovsxbd,
    Pmovsxbq,
    Pmovsxwd,
    Pmovsxwq,
    Pmovsxdq,
    Pmovzxbw,
    Pmovzxbd,
    Pmovzxbq,
    Pmovzxwd,
    Pmovzxwq,
    Pmovzxdq,
    Ptest,
    Pcmpeqq,
    Packusdw,
    Pextrb,
    Pextrd,
    Pextrq,
    Pinsrb,
    Pinsrd,
    Pinsrq,
    Extractps,
    Insertps,
    Roundss,
    Roundsd,
    Roundps,
    Roundpd,
    Dpps,
    Dppd,
    Mpsadbw,
    Phminposuw,
    Movntdqa, // SSE4.2
    Pcmpgtq,
    Pcmpestri,
    Pcmpestri64,
    Pcmpestrm,
    Pcmpestrm64,
    Pcmpistri,
    Pcmpistrm,
);

impl ExtOp {
    /// The instruction sets RFLAGS (the translator must treat the lazy state as dynamic).
    pub fn sets_flags(self) -> bool {
        use ExtOp::*;
        matches!(
            self,
            Ptest | Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm
        )
    }
    /// The result goes to ECX.
    pub fn writes_ecx(self) -> bool {
        use ExtOp::*;
        matches!(self, Pcmpestri | Pcmpestri64 | Pcmpistri)
    }
    /// A 16-byte memory operand need not be aligned.
    pub fn unaligned_ok(self) -> bool {
        use ExtOp::*;
        matches!(
            self,
            Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm
        )
    }
}

/// Horizontal operation: pairs of adjacent lanes of `d` fill the low half of the result,
/// pairs of `s` the high half.
fn horiz(d: u128, s: u128, w: u32, mut f: impl FnMut(u64, u64) -> u64) -> u128 {
    let n = 128 / w;
    let mut r = 0u128;
    for i in 0..n / 2 {
        let a = f(lane(d, w, 2 * i), lane(d, w, 2 * i + 1)) & mask(w);
        let b = f(lane(s, w, 2 * i), lane(s, w, 2 * i + 1)) & mask(w);
        r |= (a as u128) << (i * w);
        r |= (b as u128) << ((i + n / 2) * w);
    }
    r
}

/// Per-lane select: lane `i` from `s` where `pick(i)`, else from `d`.
fn blend(d: u128, s: u128, w: u32, pick: impl Fn(u32) -> bool) -> u128 {
    let m = mask(w) as u128;
    let mut r = 0u128;
    for i in 0..128 / w {
        let src = if pick(i) { s } else { d };
        r |= src & (m << (i * w));
    }
    r
}

/// Sign- or zero-extend the low lanes of `s` from `from` to `to` bits.
fn extend(s: u128, from: u32, to: u32, signed: bool) -> u128 {
    let mut r = 0u128;
    for i in 0..128 / to {
        let x = lane(s, from, i);
        let v = if signed { sx(x, from) as u64 } else { x };
        r |= ((v & mask(to)) as u128) << (i * to);
    }
    r
}

/// ROUNDSS/SD/PS/PD on one lane.
fn round_lane(env: &mut soft::Env, daz: bool, fmt: Fmt, bits: u64, imm: u8, mx_rm: Rm) -> u64 {
    let v = input(env, daz, fmt, bits, false);
    if v.is_nan() {
        if v.is_snan() {
            env.flags |= soft::IE;
        }
        return soft::pack(fmt, v.quiet());
    }
    let rm = if imm & 4 != 0 {
        mx_rm
    } else {
        Rm::from_rc(imm as u32 & 3)
    };
    let mut e2 = soft::Env::new(rm);
    let r = soft::round_int(&mut e2, v, rm);
    if imm & 8 == 0 {
        env.flags |= e2.flags & soft::PE;
    }
    soft::pack(fmt, r)
}

/// DPPS / DPPD.
fn dot(env: &mut soft::Env, daz: bool, fmt: Fmt, d: u128, s: u128, imm: u8) -> u128 {
    let w = fmt_width(fmt);
    let n = 128 / w;
    let mut t = [0u64; 4];
    for (i, ti) in t.iter_mut().enumerate().take(n as usize) {
        if imm >> (4 + i) & 1 != 0 {
            *ti = fp_lane(
                env,
                daz,
                fmt,
                FOp::Mul,
                lane(d, w, i as u32),
                lane(s, w, i as u32),
            );
        }
    }
    // Each result lane sums in its own order (as hardware does: it only shows in which NaN
    // wins): DPPS lane i = (t[i^1] + t[i]) + (t[i^3] + t[i^2]); DPPD lane i = t[i] + t[i^1].
    let mut add = |a: u64, b: u64| fp_lane(env, daz, fmt, FOp::Add, a, b);
    let mut r = 0u128;
    for i in 0..n as usize {
        // Unselected lanes are still summed: their flags count.
        let sum = if n == 4 {
            let u = add(t[i ^ 1], t[i]);
            let v = add(t[i ^ 3], t[i ^ 2]);
            add(u, v)
        } else {
            add(t[i], t[i ^ 1])
        };
        if imm >> i & 1 != 0 {
            r |= (sum as u128) << (i as u32 * w);
        }
    }
    r
}

/// The extension helper: `lo`/`hi` hold the source operand when `ctl::SRC_ARG` is set.
pub fn h_ext(c: &mut Core<X86>, _: &mut Bus, lo: u64, hi: u64, k: u64) -> Result<u64, Trap> {
    use ExtOp::*;
    let Some(op) = ExtOp::from_u16((k & ctl::OP_MASK) as u16) else {
        return Err(crate::cpu::raise(c, vec::UD, None));
    };
    let dr = (k >> ctl::DST_SHIFT) & 15;
    let sr = (k >> ctl::SRC_SHIFT) & 15;
    let from_arg = k & ctl::SRC_ARG != 0;
    let imm = (k >> ctl::IMM_SHIFT) as u8;
    let d = if k & CTL_GPR_DST != 0 { 0 } else { get(c, dr) };
    let s = if from_arg {
        lo as u128 | (hi as u128) << 64
    } else {
        get(c, sr)
    };
    let x0 = get(c, 0);
    let (mut env, daz) = env_of(c.guest.mxcsr);
    let mx_rm = env.rm;
    let mut ret = 0u64;
    let sgn = |x: u64, w: u32| sx(x, w);
    let sel = |c: bool| if c { !0u64 } else { 0 };
    let r: Option<u128> = match op {
        Addsubps | Addsubpd => {
            let (fmt, w) = if op == Addsubps { (F32, 32) } else { (F64, 64) };
            let mut r = 0u128;
            for i in 0..128 / w {
                let f = if i & 1 == 0 { FOp::Sub } else { FOp::Add };
                let v = fp_lane(&mut env, daz, fmt, f, lane(d, w, i), lane(s, w, i));
                r |= (v as u128) << (i * w);
            }
            Some(r)
        }
        Haddps | Haddpd | Hsubps | Hsubpd => {
            let (fmt, w) = if matches!(op, Haddps | Hsubps) {
                (F32, 32)
            } else {
                (F64, 64)
            };
            let f = if matches!(op, Haddps | Haddpd) {
                FOp::Add
            } else {
                FOp::Sub
            };
            Some(horiz(d, s, w, |a, b| fp_lane(&mut env, daz, fmt, f, a, b)))
        }
        Pshufb => Some((0..16).fold(0u128, |r, i| {
            let m = lane(s, 8, i);
            let b = if m & 0x80 != 0 {
                0
            } else {
                lane(d, 8, (m & 15) as u32)
            };
            r | (b as u128) << (8 * i)
        })),
        Phaddw => Some(horiz(d, s, 16, |a, b| a.wrapping_add(b))),
        Phaddd => Some(horiz(d, s, 32, |a, b| a.wrapping_add(b))),
        Phaddsw => Some(horiz(d, s, 16, |a, b| sat_s(sgn(a, 16) + sgn(b, 16), 16))),
        Phsubw => Some(horiz(d, s, 16, |a, b| a.wrapping_sub(b))),
        Phsubd => Some(horiz(d, s, 32, |a, b| a.wrapping_sub(b))),
        Phsubsw => Some(horiz(d, s, 16, |a, b| sat_s(sgn(a, 16) - sgn(b, 16), 16))),
        Pmaddubsw => Some(lanes(d, s, 16, |x, y| {
            let p0 = (x & 0xff) as i64 * sgn(y & 0xff, 8);
            let p1 = (x >> 8) as i64 * sgn(y >> 8, 8);
            sat_s(p0 + p1, 16)
        })),
        Pmulhrsw => Some(lanes(d, s, 16, |x, y| {
            let p = sgn(x, 16) * sgn(y, 16);
            (((p >> 14) + 1) >> 1) as u64
        })),
        Psignb | Psignw | Psignd => {
            let w = match op {
                Psignb => 8,
                Psignw => 16,
                _ => 32,
            };
            Some(lanes(d, s, w, |x, y| match sgn(y, w).signum() {
                -1 => x.wrapping_neg(),
                0 => 0,
                _ => x,
            }))
        }
        Pabsb => Some(lanes(s, 0, 8, |x, _| sgn(x, 8).unsigned_abs())),
        Pabsw => Some(lanes(s, 0, 16, |x, _| sgn(x, 16).unsigned_abs())),
        Pabsd => Some(lanes(s, 0, 32, |x, _| sgn(x, 32).unsigned_abs())),
        Palignr => {
            let sh = imm as u32 * 8;
            Some(if sh >= 256 {
                0
            } else if sh >= 128 {
                d >> (sh - 128)
            } else if sh == 0 {
                s
            } else {
                (s >> sh) | (d << (128 - sh))
            })
        }
        Pblendvb => Some(blend(d, s, 8, |i| lane(x0, 8, i) >> 7 != 0)),
        Blendvps => Some(blend(d, s, 32, |i| lane(x0, 32, i) >> 31 != 0)),
        Blendvpd => Some(blend(d, s, 64, |i| lane(x0, 64, i) >> 63 != 0)),
        Blendps => Some(blend(d, s, 32, |i| imm >> i & 1 != 0)),
        Blendpd => Some(blend(d, s, 64, |i| imm >> i & 1 != 0)),
        Pblendw => Some(blend(d, s, 16, |i| imm >> i & 1 != 0)),
        Pminsb => Some(lanes(d, s, 8, |x, y| sgn(x, 8).min(sgn(y, 8)) as u64)),
        Pminsd => Some(lanes(d, s, 32, |x, y| sgn(x, 32).min(sgn(y, 32)) as u64)),
        Pmaxsb => Some(lanes(d, s, 8, |x, y| sgn(x, 8).max(sgn(y, 8)) as u64)),
        Pmaxsd => Some(lanes(d, s, 32, |x, y| sgn(x, 32).max(sgn(y, 32)) as u64)),
        Pminuw => Some(lanes(d, s, 16, |x, y| x.min(y))),
        Pminud => Some(lanes(d, s, 32, |x, y| x.min(y))),
        Pmaxuw => Some(lanes(d, s, 16, |x, y| x.max(y))),
        Pmaxud => Some(lanes(d, s, 32, |x, y| x.max(y))),
        Pmulld => Some(lanes(d, s, 32, |x, y| x.wrapping_mul(y))),
        Pmuldq => Some(lanes(d, s, 64, |x, y| {
            sgn(x & 0xffff_ffff, 32).wrapping_mul(sgn(y & 0xffff_ffff, 32)) as u64
        })),
        Pmovsxbw => Some(extend(s, 8, 16, true)),
        Pmovsxbd => Some(extend(s, 8, 32, true)),
        Pmovsxbq => Some(extend(s, 8, 64, true)),
        Pmovsxwd => Some(extend(s, 16, 32, true)),
        Pmovsxwq => Some(extend(s, 16, 64, true)),
        Pmovsxdq => Some(extend(s, 32, 64, true)),
        Pmovzxbw => Some(extend(s, 8, 16, false)),
        Pmovzxbd => Some(extend(s, 8, 32, false)),
        Pmovzxbq => Some(extend(s, 8, 64, false)),
        Pmovzxwd => Some(extend(s, 16, 32, false)),
        Pmovzxwq => Some(extend(s, 16, 64, false)),
        Pmovzxdq => Some(extend(s, 32, 64, false)),
        Ptest => {
            let mut f = 0;
            if d & s == 0 {
                f |= fl::ZF;
            }
            if !d & s == 0 {
                f |= fl::CF;
            }
            let rf = crate::cpu::rflags(c);
            crate::cpu::set_rflags(c, (rf & !fl::ARITH) | f);
            None
        }
        Pcmpeqq => Some(lanes(d, s, 64, |x, y| sel(x == y))),
        Pcmpgtq => Some(lanes(d, s, 64, |x, y| sel((x as i64) > (y as i64)))),
        Packusdw => {
            let mut r = 0u128;
            for i in 0..4 {
                r |= (sat_u(sgn(lane(d, 32, i), 32), 16) as u128) << (16 * i);
                r |= (sat_u(sgn(lane(s, 32, i), 32), 16) as u128) << (16 * (i + 4));
            }
            Some(r)
        }
        Pextrb => {
            ret = lane(s, 8, (imm & 15) as u32);
            None
        }
        Pextrd | Extractps => {
            ret = lane(s, 32, (imm & 3) as u32);
            None
        }
        Pextrq => {
            ret = lane(s, 64, (imm & 1) as u32);
            None
        }
        Pinsrb | Pinsrd | Pinsrq => {
            let (w, n) = match op {
                Pinsrb => (8, imm & 15),
                Pinsrd => (32, imm & 3),
                _ => (64, imm & 1),
            };
            let sh = w * n as u32;
            let m = (mask(w) as u128) << sh;
            Some((d & !m) | ((s & mask(w) as u128) << sh))
        }
        Insertps => {
            let v = if from_arg {
                s as u32
            } else {
                lane(s, 32, (imm >> 6) as u32) as u32
            };
            let sh = 32 * ((imm >> 4) & 3) as u32;
            let mut r = (d & !(0xffff_ffffu128 << sh)) | (v as u128) << sh;
            for i in 0..4 {
                if imm >> i & 1 != 0 {
                    r &= !(0xffff_ffffu128 << (32 * i));
                }
            }
            Some(r)
        }
        Roundss => Some(
            (d & !0xffff_ffffu128)
                | round_lane(&mut env, daz, F32, lane(s, 32, 0), imm, mx_rm) as u128,
        ),
        Roundsd => Some(
            (d & !(u64::MAX as u128))
                | round_lane(&mut env, daz, F64, lane(s, 64, 0), imm, mx_rm) as u128,
        ),
        Roundps => Some(lanes(s, 0, 32, |x, _| {
            round_lane(&mut env, daz, F32, x, imm, mx_rm)
        })),
        Roundpd => Some(lanes(s, 0, 64, |x, _| {
            round_lane(&mut env, daz, F64, x, imm, mx_rm)
        })),
        Dpps => Some(dot(&mut env, daz, F32, d, s, imm)),
        Dppd => Some(dot(&mut env, daz, F64, d, s, imm)),
        Mpsadbw => {
            let b2 = 4 * (imm & 3) as u32;
            let b1 = 4 * ((imm >> 2) & 1) as u32;
            let mut r = 0u128;
            for i in 0..8 {
                let sum: u64 = (0..4)
                    .map(|j| {
                        (lane(d, 8, b1 + i + j) as u8).abs_diff(lane(s, 8, b2 + j) as u8) as u64
                    })
                    .sum();
                r |= (sum as u128) << (16 * i);
            }
            Some(r)
        }
        Phminposuw => {
            let (mut m, mut ix) = (lane(s, 16, 0), 0);
            for i in 1..8 {
                let v = lane(s, 16, i);
                if v < m {
                    m = v;
                    ix = i;
                }
            }
            Some(m as u128 | (ix as u128) << 16)
        }
        Movntdqa => Some(s),
        Pcmpestri | Pcmpestri64 | Pcmpestrm | Pcmpestrm64 | Pcmpistri | Pcmpistrm => {
            let explicit = !matches!(op, Pcmpistri | Pcmpistrm);
            let (la, lb) = if explicit {
                let w64 = matches!(op, Pcmpestri64 | Pcmpestrm64);
                let rd = |r: u8| {
                    let v = c.regs.0[r as usize];
                    if w64 {
                        v as i64
                    } else {
                        v as i32 as i64
                    }
                };
                (Some(rd(crate::regs::RAX)), Some(rd(crate::regs::RDX)))
            } else {
                (None, None)
            };
            let res = pcmpstr::compare(d, s, la, lb, imm);
            let rf = crate::cpu::rflags(c);
            crate::cpu::set_rflags(c, (rf & !fl::ARITH) | res.flags);
            if matches!(op, Pcmpestrm | Pcmpestrm64 | Pcmpistrm) {
                set(c, 0, res.mask(imm));
            } else {
                ret = res.index(imm);
            }
            None
        }
    };
    finish_fp(c, &env)?;
    if let Some(r) = r {
        set(c, dr, r);
    }
    Ok(ret)
}

/// The CRC-32C (Castagnoli, reflected 0x82F63B78) byte table.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut j = 0;
        while j < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            j += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC32 (SSE4.2): accumulate the low `size` bytes of `v` into `crc`.
pub fn h_crc32(_: &mut Core<X86>, _: &mut Bus, crc: u64, v: u64, size: u64) -> Result<u64, Trap> {
    let mut c = crc as u32;
    for i in 0..size.min(8) {
        let b = (v >> (8 * i)) as u8;
        c = (c >> 8) ^ CRC_TABLE[((c ^ b as u32) & 0xff) as usize];
    }
    Ok(c as u64)
}
