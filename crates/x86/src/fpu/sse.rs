//! SSE/SSE2 instruction semantics on `X86State::xmm`, run by one helper per instruction.
//!
//! The translator passes a control word ([`Ctl`]) naming the operation, the registers and the
//! immediate, and the source operand's value when it is not an XMM register (memory already
//! loaded by IR, or a GPR). Floating point goes through the soft-float core in
//! [`super::soft`], so results and MXCSR flags are exact in every rounding mode.

use super::soft::{self, Cmp, Env, Fmt, Rm, Val, F32, F64};
use crate::helpers::Bus;
use crate::state::{cr, vec};
use crate::X86;
use tci64_engine::{Core, Trap};

macro_rules! sse_ops {
    ($($name:ident),* $(,)?) => {
        /// Operations of the SSE helper (named as iced's mnemonics).
        #[allow(clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum SseOp { $($name),* }
        const ALL: &[SseOp] = &[$(SseOp::$name),*];
        impl SseOp {
            /// The operation for an iced mnemonic.
            pub fn from_mnemonic(m: iced_x86::Mnemonic) -> Option<SseOp> {
                match m {
                    $(iced_x86::Mnemonic::$name => Some(SseOp::$name),)*
                    _ => None,
                }
            }
            /// From the control word's number.
            pub fn from_u16(x: u16) -> Option<SseOp> {
                ALL.get(x as usize).copied()
            }
        }
    };
}

sse_ops!(
    Movaps, Movups, Movapd, Movupd, Movdqa, Movdqu, Lddqu, Movq, Movd, Movss, Movsd, Movhps,
    Movhpd, Movlps, Movlpd, Movhlps, Movlhps, Movddup, Movshdup, Movsldup, Pxor, Por, Pand, Pandn,
    Xorps, Xorpd, Andps, Andpd, Orps, Orpd, Andnps, Andnpd, Paddb, Paddw, Paddd, Paddq, Psubb,
    Psubw, Psubd, Psubq, Paddsb, Paddsw, Paddusb, Paddusw, Psubsb, Psubsw, Psubusb, Psubusw,
    Pcmpeqb, Pcmpeqw, Pcmpeqd, Pcmpgtb, Pcmpgtw, Pcmpgtd, Pminub, Pmaxub, Pminsw, Pmaxsw, Pavgb,
    Pavgw, Pmullw, Pmulhw, Pmulhuw, Pmuludq, Pmaddwd, Psadbw, Pmovmskb, Movmskps, Movmskpd, Pshufd,
    Pshuflw, Pshufhw, Punpcklbw, Punpcklwd, Punpckldq, Punpcklqdq, Punpckhbw, Punpckhwd, Punpckhdq,
    Punpckhqdq, Packsswb, Packuswb, Packssdw, Psllw, Pslld, Psllq, Psrlw, Psrld, Psrlq, Psraw,
    Psrad, Pslldq, Psrldq, Pinsrw, Pextrw, Shufps, Shufpd, Unpcklps, Unpckhps, Unpcklpd, Unpckhpd,
    Addps, Addss, Addpd, Addsd, Subps, Subss, Subpd, Subsd, Mulps, Mulss, Mulpd, Mulsd, Divps,
    Divss, Divpd, Divsd, Minps, Minss, Minpd, Minsd, Maxps, Maxss, Maxpd, Maxsd, Sqrtps, Sqrtss,
    Sqrtpd, Sqrtsd, Cmpps, Cmpss, Cmppd, Cmpsd, Comiss, Ucomiss, Comisd, Ucomisd, Cvtsi2ss,
    Cvtsi2sd, Cvtss2si, Cvtsd2si, Cvttss2si, Cvttsd2si, Cvtss2sd, Cvtsd2ss, Cvtdq2ps, Cvtps2dq,
    Cvttps2dq, Cvtpd2ps, Cvtps2pd, Cvtdq2pd, Cvtpd2dq, Cvttpd2dq, Rcpps, Rcpss, Rsqrtps, Rsqrtss,
);

/// Control word layout.
pub mod ctl {
    /// Operation number in bits 0-11.
    pub const OP_MASK: u64 = 0xfff;
    pub const DST_SHIFT: u32 = 16;
    pub const SRC_SHIFT: u32 = 20;
    /// The source value is in the helper's first two arguments (memory or GPR), not a register.
    pub const SRC_ARG: u64 = 1 << 24;
    /// The second operand is an immediate (shift-by-immediate forms): its value is IMM.
    pub const SRC_IMM: u64 = 1 << 25;
    pub const IMM_SHIFT: u32 = 32;
    /// 64-bit integer operand (CVTSI2SS r64, CVTSS2SI r64, MOVQ r64).
    pub const W64: u64 = 1 << 40;
}

/// The environment of a SIMD FP operation from MXCSR.
pub(crate) fn env_of(mxcsr: u32) -> (Env, bool) {
    let mut e = Env::new(Rm::from_rc(mxcsr >> 13));
    e.um_masked = mxcsr & (1 << 11) != 0;
    e.ftz = mxcsr & (1 << 15) != 0 && e.um_masked;
    (e, mxcsr & (1 << 6) != 0)
}

/// Unpack a lane applying DAZ and noting denormal inputs.
pub(crate) fn input(env: &mut Env, daz: bool, fmt: Fmt, bits: u64, de: bool) -> Val {
    let (v, den) = soft::unpack(fmt, bits);
    if den {
        if daz {
            return Val::Zero(v.sign());
        }
        if de {
            env.flags |= soft::DE;
        }
    }
    v
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FOp {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Sqrt,
}

pub(crate) fn fp_lane(env: &mut Env, daz: bool, fmt: Fmt, op: FOp, a: u64, b: u64) -> u64 {
    let va = input(env, daz, fmt, a, false);
    let vb = input(env, daz, fmt, b, false);
    if op == FOp::Sqrt {
        if vb.is_nan() {
            if vb.is_snan() {
                env.flags |= soft::IE;
            }
            return soft::pack(fmt, vb.quiet());
        }
        if !vb.sign() || matches!(vb, Val::Zero(_)) {
            let _ = input(env, daz, fmt, b, true);
        }
        return soft::pack(fmt, soft::sqrt(env, fmt, vb));
    }
    if va.is_nan() || vb.is_nan() {
        if va.is_snan() || vb.is_snan() || matches!(op, FOp::Min | FOp::Max) {
            env.flags |= soft::IE;
        }
        if matches!(op, FOp::Min | FOp::Max) {
            // The second operand (after DAZ) whatever it is.
            return soft::pack(fmt, vb);
        }
        return soft::pack(fmt, if va.is_nan() { va.quiet() } else { vb.quiet() });
    }
    if !(op == FOp::Div && matches!(vb, Val::Zero(_))) {
        let _ = input(env, daz, fmt, a, true);
        let _ = input(env, daz, fmt, b, true);
    }
    let r = match op {
        FOp::Add => soft::add(env, fmt, va, vb),
        FOp::Sub => soft::add(env, fmt, va, vb.negate()),
        FOp::Mul => soft::mul(env, fmt, va, vb),
        FOp::Div => soft::div(env, fmt, va, vb),
        FOp::Min => {
            return if soft::compare(va, vb) == Cmp::Lt {
                soft::pack(fmt, va)
            } else {
                soft::pack(fmt, vb)
            }
        }
        FOp::Max => {
            return if soft::compare(va, vb) == Cmp::Gt {
                soft::pack(fmt, va)
            } else {
                soft::pack(fmt, vb)
            }
        }
        FOp::Sqrt => unreachable!(),
    };
    soft::pack(fmt, r)
}

fn cmp_lane(env: &mut Env, daz: bool, fmt: Fmt, pred: u8, a: u64, b: u64) -> bool {
    let (va, vb) = cmp_inputs(env, daz, fmt, a, b);
    let signaling = matches!(pred & 7, 1 | 2 | 5 | 6);
    if va.is_snan() || vb.is_snan() || (signaling && (va.is_nan() || vb.is_nan())) {
        env.flags |= soft::IE;
    }
    let c = soft::compare(va, vb);
    match pred & 7 {
        0 => c == Cmp::Eq,
        1 => c == Cmp::Lt,
        2 => c == Cmp::Lt || c == Cmp::Eq,
        3 => c == Cmp::Un,
        4 => c != Cmp::Eq,
        5 => c != Cmp::Lt,
        6 => !(c == Cmp::Lt || c == Cmp::Eq),
        _ => c != Cmp::Un,
    }
}

/// Comparison inputs: a NaN in either operand suppresses the denormal flag.
pub(crate) fn cmp_inputs(env: &mut Env, daz: bool, fmt: Fmt, a: u64, b: u64) -> (Val, Val) {
    let va = input(env, daz, fmt, a, false);
    let vb = input(env, daz, fmt, b, false);
    if !va.is_nan() && !vb.is_nan() {
        input(env, daz, fmt, a, true);
        input(env, daz, fmt, b, true);
    }
    (va, vb)
}

/// Float to integer lane with the x86 "integer indefinite" on failure.
fn cvt_to_int(env: &mut Env, daz: bool, fmt: Fmt, bits: u64, trunc: bool, w: u32) -> u64 {
    let v = input(env, daz, fmt, bits, false);
    let rm = if trunc { Rm::Zero } else { env.rm };
    match soft::to_int(env, v, rm, w) {
        Some(x) => x as u64 & mask(w),
        None => 1u64 << (w - 1),
    }
}

fn cvt_fp(env: &mut Env, daz: bool, from: Fmt, to: Fmt, bits: u64) -> u64 {
    let v = input(env, daz, from, bits, true);
    if v.is_nan() {
        if v.is_snan() {
            env.flags |= soft::IE;
        }
        return soft::pack(to, v.quiet());
    }
    soft::pack(to, soft::round_val(env, to, v))
}

fn int_to_fp(env: &mut Env, to: Fmt, x: i64) -> u64 {
    soft::pack(to, soft::from_int(env, to, x))
}

pub(crate) fn mask(w: u32) -> u64 {
    if w >= 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

pub(crate) fn sx(x: u64, w: u32) -> i64 {
    let sh = 64 - w;
    ((x << sh) as i64) >> sh
}

/// Apply `f` lane-wise to lanes of `w` bits.
pub(crate) fn lanes(a: u128, b: u128, w: u32, mut f: impl FnMut(u64, u64) -> u64) -> u128 {
    let m = mask(w) as u128;
    let mut r = 0u128;
    for i in 0..128 / w {
        let x = ((a >> (i * w)) & m) as u64;
        let y = ((b >> (i * w)) & m) as u64;
        r |= (f(x, y) as u128 & m) << (i * w);
    }
    r
}

pub(crate) fn lane(a: u128, w: u32, i: u32) -> u64 {
    ((a >> (i * w)) & mask(w) as u128) as u64
}

pub(crate) fn sat_s(x: i64, w: u32) -> u64 {
    let lo = -(1i64 << (w - 1));
    let hi = (1i64 << (w - 1)) - 1;
    x.clamp(lo, hi) as u64
}

pub(crate) fn sat_u(x: i64, w: u32) -> u64 {
    x.clamp(0, mask(w) as i64) as u64
}

fn interleave(a: u128, b: u128, w: u32, high: bool) -> u128 {
    let n = 64 / w;
    let off = if high { n } else { 0 };
    let mut r = 0u128;
    for i in 0..n {
        r |= (lane(a, w, off + i) as u128) << (2 * i * w);
        r |= (lane(b, w, off + i) as u128) << ((2 * i + 1) * w);
    }
    r
}

fn pack_lanes(a: u128, b: u128, w: u32, f: impl Fn(i64) -> u64) -> u128 {
    let n = 128 / w;
    let mut r = 0u128;
    let ow = w / 2;
    for i in 0..n {
        r |= (f(sx(lane(a, w, i), w)) as u128 & mask(ow) as u128) << (i * ow);
        r |= (f(sx(lane(b, w, i), w)) as u128 & mask(ow) as u128) << ((i + n) * ow);
    }
    r
}

fn shift(a: u128, w: u32, count: u64, kind: u8) -> u128 {
    lanes(a, 0, w, |x, _| match kind {
        0 => {
            if count >= w as u64 {
                0
            } else {
                x << count
            }
        }
        1 => {
            if count >= w as u64 {
                0
            } else {
                x >> count
            }
        }
        _ => (sx(x, w) >> count.min(w as u64 - 1)) as u64,
    })
}

fn fp_map(env: &mut Env, daz: bool, fmt: Fmt, op: FOp, d: u128, s: u128, scalar: bool) -> u128 {
    let w = fmt_width(fmt);
    if scalar {
        let r = fp_lane(env, daz, fmt, op, lane(d, w, 0), lane(s, w, 0));
        (d & !(mask(w) as u128)) | r as u128
    } else {
        lanes(d, s, w, |x, y| fp_lane(env, daz, fmt, op, x, y))
    }
}

pub(crate) fn fmt_width(fmt: Fmt) -> u32 {
    if fmt.p == 24 {
        32
    } else {
        64
    }
}

/// Approximate reciprocal (RCPPS): Intel's tables guarantee a relative error of at most
/// 1.5 * 2^-12; this returns the correctly rounded single-precision reciprocal, which is
/// within that bound but not bit-identical to hardware. Denormal inputs act as zero and
/// denormal results flush to zero, as on hardware. No flags.
fn rcp(bits: u32, rsqrt: bool) -> u32 {
    let x = f32::from_bits(bits);
    if x.is_nan() {
        return bits | 0x0040_0000;
    }
    let xs = if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    };
    let r = if rsqrt {
        if xs == 0.0 {
            f32::INFINITY.copysign(xs)
        } else if xs < 0.0 {
            return 0xffc0_0000;
        } else {
            (1.0 / (xs as f64).sqrt()) as f32
        }
    } else {
        (1.0 / xs as f64) as f32
    };
    if r.is_subnormal() {
        0.0f32.copysign(r).to_bits()
    } else {
        r.to_bits()
    }
}

pub(crate) fn get(c: &Core<X86>, r: u64) -> u128 {
    let x = c.guest.xmm[(r & 15) as usize];
    x[0] as u128 | (x[1] as u128) << 64
}

pub(crate) fn set(c: &mut Core<X86>, r: u64, v: u128) {
    c.guest.xmm[(r & 15) as usize] = [v as u64, (v >> 64) as u64];
}

/// Raise #XM (or #UD without CR4.OSXMMEXCPT) if an unmasked exception occurred; merge flags.
pub(crate) fn finish_fp(c: &mut Core<X86>, env: &Env) -> Result<(), Trap> {
    let fl = env.flags & 0x3f;
    c.guest.mxcsr |= fl;
    let masked = (c.guest.mxcsr >> 7) & 0x3f;
    if fl & !masked != 0 {
        let v = if c.guest.cr4 & cr::CR4_OSXMMEXCPT != 0 {
            vec::XM
        } else {
            vec::UD
        };
        return Err(crate::cpu::raise(c, v, None));
    }
    Ok(())
}

/// The SSE helper: `lo`/`hi` hold the source operand when `ctl::SRC_ARG` is set.
pub fn h_sse(c: &mut Core<X86>, _: &mut Bus, lo: u64, hi: u64, k: u64) -> Result<u64, Trap> {
    use SseOp::*;
    let Some(op) = SseOp::from_u16((k & ctl::OP_MASK) as u16) else {
        return Err(crate::cpu::raise(c, vec::UD, None));
    };
    let dr = (k >> ctl::DST_SHIFT) & 15;
    let sr = (k >> ctl::SRC_SHIFT) & 15;
    let from_arg = k & ctl::SRC_ARG != 0;
    let imm = (k >> ctl::IMM_SHIFT) as u8;
    let w64 = k & ctl::W64 != 0;
    let d = get(c, dr);
    let s = if from_arg {
        lo as u128 | (hi as u128) << 64
    } else {
        get(c, sr)
    };
    let (mut env, daz) = env_of(c.guest.mxcsr);
    let lo64 = |x: u128| x as u64 as u128;
    let hi64 = |x: u128| x >> 64;
    let mut ret = 0u64;
    let r: Option<u128> = match op {
        Movaps | Movups | Movapd | Movupd | Movdqa | Movdqu | Lddqu => Some(s),
        Movq => {
            if k & (1 << 26) != 0 {
                // GPR destination.
                ret = s as u64;
                None
            } else {
                Some(lo64(s))
            }
        }
        Movd => {
            if k & (1 << 26) != 0 {
                ret = s as u32 as u64;
                None
            } else {
                Some(s & 0xffff_ffff)
            }
        }
        Movss => Some(if from_arg {
            s & 0xffff_ffff
        } else {
            (d & !0xffff_ffffu128) | (s & 0xffff_ffff)
        }),
        Movsd => Some(if from_arg {
            lo64(s)
        } else {
            (d & !(u64::MAX as u128)) | lo64(s)
        }),
        Movhps | Movhpd => Some(lo64(d) | (lo64(s) << 64)),
        Movlps | Movlpd => Some((d & !(u64::MAX as u128)) | lo64(s)),
        Movhlps => Some((d & !(u64::MAX as u128)) | hi64(s)),
        Movlhps => Some(lo64(d) | (lo64(s) << 64)),
        Movddup => Some(lo64(s) | (lo64(s) << 64)),
        Movshdup => Some(lanes(s, 0, 64, |x, _| (x >> 32) | (x & !0xffff_ffff))),
        Movsldup => Some(lanes(s, 0, 64, |x, _| (x & 0xffff_ffff) | (x << 32))),
        Pxor | Xorps | Xorpd => Some(d ^ s),
        Por | Orps | Orpd => Some(d | s),
        Pand | Andps | Andpd => Some(d & s),
        Pandn | Andnps | Andnpd => Some(!d & s),
        Paddb => Some(lanes(d, s, 8, |x, y| x.wrapping_add(y))),
        Paddw => Some(lanes(d, s, 16, |x, y| x.wrapping_add(y))),
        Paddd => Some(lanes(d, s, 32, |x, y| x.wrapping_add(y))),
        Paddq => Some(lanes(d, s, 64, |x, y| x.wrapping_add(y))),
        Psubb => Some(lanes(d, s, 8, |x, y| x.wrapping_sub(y))),
        Psubw => Some(lanes(d, s, 16, |x, y| x.wrapping_sub(y))),
        Psubd => Some(lanes(d, s, 32, |x, y| x.wrapping_sub(y))),
        Psubq => Some(lanes(d, s, 64, |x, y| x.wrapping_sub(y))),
        Paddsb => Some(lanes(d, s, 8, |x, y| sat_s(sx(x, 8) + sx(y, 8), 8))),
        Paddsw => Some(lanes(d, s, 16, |x, y| sat_s(sx(x, 16) + sx(y, 16), 16))),
        Psubsb => Some(lanes(d, s, 8, |x, y| sat_s(sx(x, 8) - sx(y, 8), 8))),
        Psubsw => Some(lanes(d, s, 16, |x, y| sat_s(sx(x, 16) - sx(y, 16), 16))),
        Paddusb => Some(lanes(d, s, 8, |x, y| sat_u(x as i64 + y as i64, 8))),
        Paddusw => Some(lanes(d, s, 16, |x, y| sat_u(x as i64 + y as i64, 16))),
        Psubusb => Some(lanes(d, s, 8, |x, y| sat_u(x as i64 - y as i64, 8))),
        Psubusw => Some(lanes(d, s, 16, |x, y| sat_u(x as i64 - y as i64, 16))),
        Pcmpeqb => Some(lanes(d, s, 8, |x, y| if x == y { !0 } else { 0 })),
        Pcmpeqw => Some(lanes(d, s, 16, |x, y| if x == y { !0 } else { 0 })),
        Pcmpeqd => Some(lanes(d, s, 32, |x, y| if x == y { !0 } else { 0 })),
        Pcmpgtb => Some(lanes(
            d,
            s,
            8,
            |x, y| if sx(x, 8) > sx(y, 8) { !0 } else { 0 },
        )),
        Pcmpgtw => Some(lanes(
            d,
            s,
            16,
            |x, y| {
                if sx(x, 16) > sx(y, 16) {
                    !0
                } else {
                    0
                }
            },
        )),
        Pcmpgtd => Some(lanes(
            d,
            s,
            32,
            |x, y| {
                if sx(x, 32) > sx(y, 32) {
                    !0
                } else {
                    0
                }
            },
        )),
        Pminub => Some(lanes(d, s, 8, |x, y| x.min(y))),
        Pmaxub => Some(lanes(d, s, 8, |x, y| x.max(y))),
        Pminsw => Some(lanes(d, s, 16, |x, y| sx(x, 16).min(sx(y, 16)) as u64)),
        Pmaxsw => Some(lanes(d, s, 16, |x, y| sx(x, 16).max(sx(y, 16)) as u64)),
        Pavgb => Some(lanes(d, s, 8, |x, y| (x + y + 1) >> 1)),
        Pavgw => Some(lanes(d, s, 16, |x, y| (x + y + 1) >> 1)),
        Pmullw => Some(lanes(d, s, 16, |x, y| x.wrapping_mul(y))),
        Pmulhw => Some(lanes(d, s, 16, |x, y| {
            ((sx(x, 16) * sx(y, 16)) >> 16) as u64
        })),
        Pmulhuw => Some(lanes(d, s, 16, |x, y| (x * y) >> 16)),
        Pmuludq => Some(lanes(d, s, 64, |x, y| {
            (x & 0xffff_ffff) * (y & 0xffff_ffff)
        })),
        Pmaddwd => Some(lanes(d, s, 32, |x, y| {
            let p0 = sx(x & 0xffff, 16) * sx(y & 0xffff, 16);
            let p1 = sx(x >> 16, 16) * sx(y >> 16, 16);
            p0.wrapping_add(p1) as u64
        })),
        Psadbw => Some(lanes(d, s, 64, |x, y| {
            (0..8)
                .map(|i| ((x >> (8 * i)) as u8).abs_diff((y >> (8 * i)) as u8) as u64)
                .sum()
        })),
        Pmovmskb => {
            ret = (0..16).map(|i| ((s >> (8 * i + 7)) as u64 & 1) << i).sum();
            None
        }
        Movmskps => {
            ret = (0..4).map(|i| ((s >> (32 * i + 31)) as u64 & 1) << i).sum();
            None
        }
        Movmskpd => {
            ret = (0..2).map(|i| ((s >> (64 * i + 63)) as u64 & 1) << i).sum();
            None
        }
        Pshufd => Some((0..4).fold(0u128, |r, i| {
            r | (lane(s, 32, ((imm >> (2 * i)) & 3) as u32) as u128) << (32 * i)
        })),
        Pshuflw => Some((0..4).fold(s & !(u64::MAX as u128), |r, i| {
            r | (lane(s, 16, ((imm >> (2 * i)) & 3) as u32) as u128) << (16 * i)
        })),
        Pshufhw => Some((0..4).fold(lo64(s), |r, i| {
            r | (lane(s, 16, 4 + ((imm >> (2 * i)) & 3) as u32) as u128) << (64 + 16 * i)
        })),
        Punpcklbw => Some(interleave(d, s, 8, false)),
        Punpcklwd => Some(interleave(d, s, 16, false)),
        Punpckldq | Unpcklps => Some(interleave(d, s, 32, false)),
        Punpcklqdq | Unpcklpd => Some(interleave(d, s, 64, false)),
        Punpckhbw => Some(interleave(d, s, 8, true)),
        Punpckhwd => Some(interleave(d, s, 16, true)),
        Punpckhdq | Unpckhps => Some(interleave(d, s, 32, true)),
        Punpckhqdq | Unpckhpd => Some(interleave(d, s, 64, true)),
        Packsswb => Some(pack_lanes(d, s, 16, |x| sat_s(x, 8))),
        Packssdw => Some(pack_lanes(d, s, 32, |x| sat_s(x, 16))),
        Packuswb => Some(pack_lanes(d, s, 16, |x| sat_u(x, 8))),
        Psllw | Pslld | Psllq | Psrlw | Psrld | Psrlq | Psraw | Psrad => {
            let count = if k & ctl::SRC_IMM != 0 {
                imm as u64
            } else {
                s as u64
            };
            let (w, kind) = match op {
                Psllw => (16, 0),
                Pslld => (32, 0),
                Psllq => (64, 0),
                Psrlw => (16, 1),
                Psrld => (32, 1),
                Psrlq => (64, 1),
                Psraw => (16, 2),
                _ => (32, 2),
            };
            Some(shift(d, w, count, kind))
        }
        Pslldq => Some(if imm > 15 { 0 } else { d << (8 * imm as u32) }),
        Psrldq => Some(if imm > 15 { 0 } else { d >> (8 * imm as u32) }),
        Pinsrw => {
            let i = (imm & 7) as u32 * 16;
            Some((d & !(0xffffu128 << i)) | ((s & 0xffff) << i))
        }
        Pextrw => {
            ret = lane(s, 16, (imm & 7) as u32);
            None
        }
        Shufps => {
            let sel = |x: u128, n: u8| lane(x, 32, (n & 3) as u32) as u128;
            Some(
                sel(d, imm)
                    | sel(d, imm >> 2) << 32
                    | sel(s, imm >> 4) << 64
                    | sel(s, imm >> 6) << 96,
            )
        }
        Shufpd => Some(
            lane(d, 64, (imm & 1) as u32) as u128
                | (lane(s, 64, ((imm >> 1) & 1) as u32) as u128) << 64,
        ),
        Addps | Addss | Addpd | Addsd | Subps | Subss | Subpd | Subsd | Mulps | Mulss | Mulpd
        | Mulsd | Divps | Divss | Divpd | Divsd | Minps | Minss | Minpd | Minsd | Maxps | Maxss
        | Maxpd | Maxsd | Sqrtps | Sqrtss | Sqrtpd | Sqrtsd => {
            let (f, fmt, scalar) = fp_kind(op);
            Some(fp_map(&mut env, daz, fmt, f, d, s, scalar))
        }
        Cmpps | Cmpss | Cmppd | Cmpsd => {
            let (fmt, scalar) = match op {
                Cmpps => (F32, false),
                Cmpss => (F32, true),
                Cmppd => (F64, false),
                _ => (F64, true),
            };
            let w = fmt_width(fmt);
            let f = |env: &mut Env, x: u64, y: u64| {
                if cmp_lane(env, daz, fmt, imm, x, y) {
                    mask(w)
                } else {
                    0
                }
            };
            Some(if scalar {
                (d & !(mask(w) as u128)) | f(&mut env, lane(d, w, 0), lane(s, w, 0)) as u128
            } else {
                lanes(d, s, w, |x, y| f(&mut env, x, y))
            })
        }
        Comiss | Ucomiss | Comisd | Ucomisd => {
            let fmt = if matches!(op, Comiss | Ucomiss) {
                F32
            } else {
                F64
            };
            let w = fmt_width(fmt);
            let (va, vb) = cmp_inputs(&mut env, daz, fmt, lane(d, w, 0), lane(s, w, 0));
            let ordered = matches!(op, Comiss | Comisd);
            if va.is_snan() || vb.is_snan() || (ordered && (va.is_nan() || vb.is_nan())) {
                env.flags |= soft::IE;
            }
            use crate::regs::fl;
            let f = match soft::compare(va, vb) {
                Cmp::Un => fl::ZF | fl::PF | fl::CF,
                Cmp::Lt => fl::CF,
                Cmp::Eq => fl::ZF,
                Cmp::Gt => 0,
            };
            finish_fp(c, &env)?;
            let rf = crate::cpu::rflags(c);
            crate::cpu::set_rflags(c, (rf & !fl::ARITH) | f);
            return Ok(0);
        }
        Cvtsi2ss | Cvtsi2sd => {
            let x = if w64 {
                s as u64 as i64
            } else {
                s as u32 as i32 as i64
            };
            let (fmt, w) = if op == Cvtsi2ss { (F32, 32) } else { (F64, 64) };
            let r = int_to_fp(&mut env, fmt, x);
            Some((d & !(mask(w) as u128)) | r as u128)
        }
        Cvtss2si | Cvttss2si | Cvtsd2si | Cvttsd2si => {
            let fmt = if matches!(op, Cvtss2si | Cvttss2si) {
                F32
            } else {
                F64
            };
            let trunc = matches!(op, Cvttss2si | Cvttsd2si);
            ret = cvt_to_int(
                &mut env,
                daz,
                fmt,
                lane(s, fmt_width(fmt), 0),
                trunc,
                if w64 { 64 } else { 32 },
            );
            None
        }
        Cvtss2sd => Some(
            (d & !(u64::MAX as u128)) | cvt_fp(&mut env, daz, F32, F64, lane(s, 32, 0)) as u128,
        ),
        Cvtsd2ss => {
            Some((d & !0xffff_ffffu128) | cvt_fp(&mut env, daz, F64, F32, lane(s, 64, 0)) as u128)
        }
        Cvtps2pd => Some(
            cvt_fp(&mut env, daz, F32, F64, lane(s, 32, 0)) as u128
                | (cvt_fp(&mut env, daz, F32, F64, lane(s, 32, 1)) as u128) << 64,
        ),
        Cvtpd2ps => Some(
            cvt_fp(&mut env, daz, F64, F32, lane(s, 64, 0)) as u128
                | (cvt_fp(&mut env, daz, F64, F32, lane(s, 64, 1)) as u128) << 32,
        ),
        Cvtdq2ps => Some(lanes(s, 0, 32, |x, _| int_to_fp(&mut env, F32, sx(x, 32)))),
        Cvtdq2pd => Some(
            int_to_fp(&mut env, F64, sx(lane(s, 32, 0), 32)) as u128
                | (int_to_fp(&mut env, F64, sx(lane(s, 32, 1), 32)) as u128) << 64,
        ),
        Cvtps2dq | Cvttps2dq => {
            let t = op == Cvttps2dq;
            Some(lanes(s, 0, 32, |x, _| {
                cvt_to_int(&mut env, daz, F32, x, t, 32)
            }))
        }
        Cvtpd2dq | Cvttpd2dq => {
            let t = op == Cvttpd2dq;
            Some(
                cvt_to_int(&mut env, daz, F64, lane(s, 64, 0), t, 32) as u128
                    | (cvt_to_int(&mut env, daz, F64, lane(s, 64, 1), t, 32) as u128) << 32,
            )
        }
        Rcpps => Some(lanes(s, 0, 32, |x, _| rcp(x as u32, false) as u64)),
        Rsqrtps => Some(lanes(s, 0, 32, |x, _| rcp(x as u32, true) as u64)),
        Rcpss => Some((d & !0xffff_ffffu128) | rcp(s as u32, false) as u128),
        Rsqrtss => Some((d & !0xffff_ffffu128) | rcp(s as u32, true) as u128),
    };
    finish_fp(c, &env)?;
    if let Some(r) = r {
        set(c, dr, r);
    }
    Ok(ret)
}

fn fp_kind(op: SseOp) -> (FOp, Fmt, bool) {
    use SseOp::*;
    let f = match op {
        Addps | Addss | Addpd | Addsd => FOp::Add,
        Subps | Subss | Subpd | Subsd => FOp::Sub,
        Mulps | Mulss | Mulpd | Mulsd => FOp::Mul,
        Divps | Divss | Divpd | Divsd => FOp::Div,
        Minps | Minss | Minpd | Minsd => FOp::Min,
        Maxps | Maxss | Maxpd | Maxsd => FOp::Max,
        _ => FOp::Sqrt,
    };
    let (fmt, scalar) = match op {
        Addps | Subps | Mulps | Divps | Minps | Maxps | Sqrtps => (F32, false),
        Addss | Subss | Mulss | Divss | Minss | Maxss | Sqrtss => (F32, true),
        Addpd | Subpd | Mulpd | Divpd | Minpd | Maxpd | Sqrtpd => (F64, false),
        _ => (F64, true),
    };
    (f, fmt, scalar)
}

/// Bit of the control word: the destination is a GPR (MOVD/MOVQ r, xmm).
pub const CTL_GPR_DST: u64 = 1 << 26;

/// Read one XMM register half (`b` = 0 low, 1 high) for IR stores.
pub fn h_xmm_get(c: &mut Core<X86>, _: &mut Bus, r: u64, half: u64, _: u64) -> Result<u64, Trap> {
    Ok(c.guest.xmm[(r & 15) as usize][(half & 1) as usize])
}

/// LDMXCSR: reserved bits set → #GP(0).
pub fn h_ldmxcsr(c: &mut Core<X86>, _: &mut Bus, v: u64, _: u64, _: u64) -> Result<u64, Trap> {
    if v & !(MXCSR_MASK as u64) != 0 {
        return Err(crate::cpu::raise(c, vec::GP, Some(0)));
    }
    c.guest.mxcsr = v as u32;
    Ok(0)
}

/// STMXCSR: the value to store.
pub fn h_stmxcsr(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> Result<u64, Trap> {
    Ok(c.guest.mxcsr as u64)
}

/// The writable MXCSR bits (DAZ supported).
pub const MXCSR_MASK: u32 = 0xffff;

/// MASKMOVDQU: store the bytes of XMM `a & 15` selected by the sign bits of XMM `(a >> 4) & 15`
/// to `addr`.
pub fn h_maskmov(
    c: &mut Core<X86>,
    bus: &mut Bus,
    addr: u64,
    regs: u64,
    _: u64,
) -> Result<u64, Trap> {
    let v = get(c, regs & 15);
    let m = get(c, (regs >> 4) & 15);
    let mmu = if c.guest.cpl == 3 { 1 } else { 0 };
    // Check every selected byte is writable before writing any.
    for i in 0..16u64 {
        if (m >> (8 * i + 7)) & 1 != 0 {
            c.translate_addr(bus, addr.wrapping_add(i), tci64_engine::Access::Write, mmu)?;
        }
    }
    for i in 0..16u64 {
        if (m >> (8 * i + 7)) & 1 != 0 {
            c.write(
                bus,
                addr.wrapping_add(i),
                1,
                mmu,
                (v >> (8 * i)) as u64 & 0xff,
            )?;
        }
    }
    Ok(0)
}

/// Store `size` (4, 8, 16) bytes of XMM `r & 15` (from its high half if `r & 16`) to `addr`.
pub fn h_xmm_store(
    c: &mut Core<X86>,
    bus: &mut Bus,
    addr: u64,
    r: u64,
    size: u64,
) -> Result<u64, Trap> {
    let x = c.guest.xmm[(r & 15) as usize];
    let mmu = if c.guest.cpl == 3 { 1 } else { 0 };
    match size {
        16 => {
            if (addr & 0xfff) + 16 > 0x1000 {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&x[0].to_le_bytes());
                b[8..].copy_from_slice(&x[1].to_le_bytes());
                c.write_bytes(bus, addr, &b, mmu)?;
            } else {
                c.write(bus, addr, 8, mmu, x[0])?;
                c.write(bus, addr.wrapping_add(8), 8, mmu, x[1])?;
            }
        }
        _ => {
            let v = if r & 16 != 0 { x[1] } else { x[0] };
            c.write(bus, addr, (size as usize).clamp(1, 8), mmu, v)?;
        }
    }
    Ok(0)
}
