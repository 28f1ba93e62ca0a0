//! The x87 FPU, one helper call per instruction.
//!
//! Registers hold exact 80-bit values; the basic arithmetic (add, sub, mul, div, sqrt,
//! conversions, rounding) runs in the soft-float core at the precision FCW.PC selects, so it is
//! exact. Limits: transcendental functions (FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X,
//! FYL2XP1) are computed with host f64 functions (about 53 bits); unmasked exceptions set ES/B in the status word
//! but #MF is not delivered.

use super::fxsave::tag_of;
use super::soft::{self, Cmp, Env, Fmt, Rm, Val, F32, F64, F80};
use crate::helpers::Bus;
use crate::regs::fl;
use crate::X86;
use tci64_engine::{Core, Trap};

macro_rules! x87_ops {
    ($($name:ident),* $(,)?) => {
        /// Operations of the x87 helper (named as iced's mnemonics).
        #[allow(clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum X87Op { $($name),* }
        const ALL: &[X87Op] = &[$(X87Op::$name),*];
        impl X87Op {
            pub fn from_mnemonic(m: iced_x86::Mnemonic) -> Option<X87Op> {
                match m {
                    $(iced_x86::Mnemonic::$name => Some(X87Op::$name),)*
                    _ => None,
                }
            }
            pub fn from_u16(x: u16) -> Option<X87Op> {
                ALL.get(x as usize).copied()
            }
        }
    };
}

x87_ops!(
    Fld, Fst, Fstp, Fild, Fist, Fistp, Fisttp, Fld1, Fldz, Fldpi, Fldl2e, Fldln2, Fldl2t, Fldlg2,
    Fadd, Faddp, Fiadd, Fsub, Fsubp, Fisub, Fsubr, Fsubrp, Fisubr, Fmul, Fmulp, Fimul, Fdiv, Fdivp,
    Fidiv, Fdivr, Fdivrp, Fidivr, Fcom, Fcomp, Fcompp, Fucom, Fucomp, Fucompp, Ficom, Ficomp,
    Fcomi, Fcomip, Fucomi, Fucomip, Ftst, Fxam, Fxch, Fchs, Fabs, Fsqrt, Frndint, Fscale, Fxtract,
    Fprem, Fprem1, Fsin, Fcos, Fsincos, Fptan, Fpatan, F2xm1, Fyl2x, Fyl2xp1, Fldcw, Fnstcw,
    Fnstsw, Fninit, Fnclex, Ffree, Ffreep, Fincstp, Fdecstp, Fcmovb, Fcmove, Fcmovbe, Fcmovu,
    Fcmovnb, Fcmovne, Fcmovnbe, Fcmovnu, Fnop, Fnstenv, Fldenv, Fnsave, Frstor,
);

/// Control word layout.
pub mod ctl {
    pub const OP_MASK: u64 = 0xfff;
    /// First register operand ST(i) in bits 16-18, second in 19-21.
    pub const R0_SHIFT: u32 = 16;
    pub const R1_SHIFT: u32 = 19;
    /// Memory operand kind in bits 24-27 (see [`super::MemKind`]).
    pub const MEM_SHIFT: u32 = 24;
    /// The register form has ST(0) as the destination (`fadd st, st(i)`) — else ST(i).
    pub const DST_ST0: u64 = 1 << 28;
    /// 32-bit (not 16-bit) environment layout / operand size for FNSTENV etc.
    pub const OP32: u64 = 1 << 29;
    /// 64-bit mode.
    pub const MODE64: u64 = 1 << 30;
}

/// Memory operand kinds.
pub mod mem {
    pub const NONE: u64 = 0;
    pub const F32: u64 = 1;
    pub const F64: u64 = 2;
    pub const F80: u64 = 3;
    pub const I16: u64 = 4;
    pub const I32: u64 = 5;
    pub const I64: u64 = 6;
    pub const M16: u64 = 7;
    /// 18-digit packed BCD (m80bcd: FBLD/FBSTP).
    pub const BCD: u64 = 8;
}

/// The largest magnitude an m80bcd holds: 18 nines.
const BCD_MAX: u64 = 999_999_999_999_999_999;

/// An m80bcd's value: 18 digits, two per byte (the low nibble the lower digit), sign in bit 7
/// of byte 9. Nibbles above 9 are undefined operands for Intel; they count with their value.
fn bcd_to_int(b: &[u8; 10]) -> i64 {
    let mut x: i64 = 0;
    for &byte in b[..9].iter().rev() {
        x = x * 100 + (byte >> 4) as i64 * 10 + (byte & 0xf) as i64;
    }
    if b[9] & 0x80 != 0 {
        -x
    } else {
        x
    }
}

/// `x` (|x| <= BCD_MAX) as an m80bcd.
fn int_to_bcd(x: i64) -> [u8; 10] {
    let mut b = [0u8; 10];
    let mut m = x.unsigned_abs();
    for byte in b[..9].iter_mut() {
        let lo = (m % 10) as u8;
        m /= 10;
        let hi = (m % 10) as u8;
        m /= 10;
        *byte = hi << 4 | lo;
    }
    if x < 0 {
        b[9] = 0x80;
    }
    b
}

/// The packed-BCD indefinite that a masked invalid FBSTP stores.
const BCD_INDEFINITE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff];

const SF: u16 = 1 << 6;
const ES: u16 = 1 << 7;
const C0: u16 = 1 << 8;
const C1: u16 = 1 << 9;
const C2: u16 = 1 << 10;
const C3: u16 = 1 << 14;
const B: u16 = 1 << 15;

fn mmu(c: &Core<X86>) -> u8 {
    if c.guest.cpl == 3 {
        1
    } else {
        0
    }
}

struct Fpu<'a> {
    c: &'a mut Core<X86>,
    env: Env,
}

impl Fpu<'_> {
    fn phys(&self, i: u64) -> usize {
        (self.c.guest.x87.top as usize + i as usize) & 7
    }
    fn tag(&self, p: usize) -> u16 {
        (self.c.guest.x87.ftw >> (2 * p)) & 3
    }
    fn set_tag(&mut self, p: usize, t: u16) {
        let x = &mut self.c.guest.x87;
        x.ftw = (x.ftw & !(3 << (2 * p))) | (t << (2 * p));
    }
    fn empty(&self, i: u64) -> bool {
        self.tag(self.phys(i)) == 3
    }
    /// ST(i), or the stack-underflow response (IE|SF, indefinite).
    fn st(&mut self, i: u64) -> Val {
        if self.empty(i) {
            self.env.flags |= soft::IE;
            self.c.guest.x87.fsw |= SF;
            self.c.guest.x87.fsw &= !C1;
            return soft::DEFAULT_NAN;
        }
        let (m, se) = self.c.guest.x87.regs[self.phys(i)];
        let (v, den) = soft::unpack80(m, se);
        if den {
            self.env.flags |= soft::DE;
        }
        v
    }
    fn set_st(&mut self, i: u64, v: Val) {
        let p = self.phys(i);
        let (m, se) = soft::pack80(v);
        self.c.guest.x87.regs[p] = (m, se);
        self.set_tag(p, tag_of(m, se));
    }
    fn push(&mut self, v: Val) {
        let top = (self.c.guest.x87.top.wrapping_sub(1)) & 7;
        let v = if self.tag(top as usize) != 3 {
            self.env.flags |= soft::IE;
            self.c.guest.x87.fsw |= SF | C1;
            soft::DEFAULT_NAN
        } else {
            v
        };
        self.c.guest.x87.top = top;
        self.set_st(0, v);
    }
    fn pop(&mut self) {
        let p = self.phys(0);
        self.set_tag(p, 3);
        self.c.guest.x87.top = (self.c.guest.x87.top + 1) & 7;
    }
    /// Merge exception flags into FSW (ES/B when unmasked).
    fn finish(&mut self) {
        let x = &mut self.c.guest.x87;
        let f = (self.env.flags & 0x3f) as u16;
        x.fsw |= f;
        if f & !(x.fcw & 0x3f) != 0 {
            x.fsw |= ES | B;
        }
    }
    fn set_cc(&mut self, c3: bool, c2: bool, c1: bool, c0: bool) {
        let x = &mut self.c.guest.x87;
        x.fsw &= !(C0 | C1 | C2 | C3);
        x.fsw |= (c3 as u16 * C3) | (c2 as u16 * C2) | (c1 as u16 * C1) | (c0 as u16 * C0);
    }
    /// Propagate NaN operands (x87 rule: the one with the larger significand if both are NaN).
    fn nan2(&mut self, a: Val, b: Val) -> Option<Val> {
        if !a.is_nan() && !b.is_nan() {
            return None;
        }
        if a.is_snan() || b.is_snan() {
            self.env.flags |= soft::IE;
        }
        Some(match (a, b) {
            (Val::Nan { m: ma, .. }, Val::Nan { m: mb, .. }) => {
                if (ma << 1) >= (mb << 1) {
                    a.quiet()
                } else {
                    b.quiet()
                }
            }
            (Val::Nan { .. }, _) => a.quiet(),
            _ => b.quiet(),
        })
    }
    fn read_mem(&mut self, bus: &mut Bus, addr: u64, kind: u64) -> Result<Val, Trap> {
        let m = mmu(self.c);
        Ok(match kind {
            mem::F32 => {
                let b = self.c.read(bus, addr, 4, m)?;
                let (v, den) = soft::unpack(F32, b);
                if den {
                    self.env.flags |= soft::DE;
                }
                v
            }
            mem::F64 => {
                let b = self.c.read(bus, addr, 8, m)?;
                let (v, den) = soft::unpack(F64, b);
                if den {
                    self.env.flags |= soft::DE;
                }
                v
            }
            mem::F80 => {
                let lo = self.c.read(bus, addr, 8, m)?;
                let hi = self.c.read(bus, addr.wrapping_add(8), 2, m)?;
                soft::unpack80(lo, hi as u16).0
            }
            mem::I16 => {
                let x = self.c.read(bus, addr, 2, m)? as u16 as i16 as i64;
                soft::from_int(&mut self.env, F80, x)
            }
            mem::I32 => {
                let x = self.c.read(bus, addr, 4, m)? as u32 as i32 as i64;
                soft::from_int(&mut self.env, F80, x)
            }
            mem::BCD => {
                let mut b = [0u8; 10];
                self.c.read_bytes(bus, addr, &mut b, m)?;
                let x = bcd_to_int(&b);
                // -0 stays negative zero.
                if x == 0 && b[9] & 0x80 != 0 {
                    Val::Zero(true)
                } else {
                    soft::from_int(&mut self.env, F80, x)
                }
            }
            _ => {
                let x = self.c.read(bus, addr, 8, m)? as i64;
                soft::from_int(&mut self.env, F80, x)
            }
        })
    }
    /// Convert for a store to memory of `kind`; returns (low bits, high 16 bits for m80).
    fn conv_mem(&mut self, v: Val, kind: u64, trunc: bool) -> (u64, u64) {
        match kind {
            mem::F32 | mem::F64 => {
                let fmt = if kind == mem::F32 { F32 } else { F64 };
                let r = if v.is_nan() {
                    if v.is_snan() {
                        self.env.flags |= soft::IE;
                    }
                    v.quiet()
                } else {
                    soft::round_val(&mut self.env, fmt, v)
                };
                (soft::pack(fmt, r), 0)
            }
            mem::F80 => {
                let (m, se) = soft::pack80(v);
                (m, se as u64)
            }
            _ => {
                let bits = match kind {
                    mem::I16 => 16,
                    mem::I32 => 32,
                    _ => 64,
                };
                let rm = if trunc { Rm::Zero } else { self.env.rm };
                let x = soft::to_int(&mut self.env, v, rm, bits)
                    .map(|x| x as u64)
                    .unwrap_or(1u64 << (bits - 1));
                (x, 0)
            }
        }
    }
}

fn mem_size(kind: u64) -> usize {
    match kind {
        mem::F32 | mem::I32 => 4,
        mem::F64 | mem::I64 => 8,
        mem::F80 | mem::BCD => 10,
        _ => 2,
    }
}

fn konst(op: X87Op, rm: Rm) -> Val {
    // Constants as 66-bit-ish significands rounded per RC (Intel rounds the internal constant).
    let (m, se, lo_round_up): (u64, u16, bool) = match op {
        X87Op::Fld1 => (1 << 63, 0x3fff, false),
        X87Op::Fldz => return Val::Zero(false),
        X87Op::Fldpi => (0xc90f_daa2_2168_c234, 0x4000, true),
        X87Op::Fldl2e => (0xb8aa_3b29_5c17_f0bb, 0x3fff, true),
        X87Op::Fldln2 => (0xb172_17f7_d1cf_79ab, 0x3ffe, true),
        X87Op::Fldl2t => (0xd49a_784b_cd1b_8afe, 0x4000, false),
        _ => (0x9a20_9a84_fbcf_f798, 0x3ffd, true),
    };
    // `lo_round_up`: the exact constant lies above the truncated significand by more than half
    // an ulp, so round-to-nearest uses m+1; every constant but 1 is inexact, so round-up does.
    let up = match rm {
        Rm::Near => lo_round_up,
        Rm::Up => op != X87Op::Fld1,
        _ => false,
    };
    let m = if up { m + 1 } else { m };
    soft::unpack80(m, se).0
}

/// The x87 helper. `addr` is the memory operand's address, `aux` RFLAGS (FCMOV) or the
/// instruction's address (FIP), `k` the control word.
pub fn h_x87(c: &mut Core<X86>, bus: &mut Bus, addr: u64, aux: u64, k: u64) -> Result<u64, Trap> {
    use X87Op::*;
    let Some(op) = X87Op::from_u16((k & ctl::OP_MASK) as u16) else {
        return Err(crate::cpu::raise(c, crate::state::vec::UD, None));
    };
    let r0 = (k >> ctl::R0_SHIFT) & 7;
    let r1 = (k >> ctl::R1_SHIFT) & 7;
    let mk = (k >> ctl::MEM_SHIFT) & 15;
    let fcw = c.guest.x87.fcw;
    let mut env = Env::new(Rm::from_rc((fcw >> 10) as u32));
    env.um_masked = fcw & 0x10 != 0;
    let p = match (fcw >> 8) & 3 {
        0 => 24,
        2 => 53,
        _ => 64,
    };
    let fmt = Fmt { p, ..F80 };
    let mut f = Fpu { c, env };
    // Non-control instructions clear C1 unless they set it; control ones handle their own.
    match op {
        Fld => {
            let v = if mk != mem::NONE {
                f.read_mem(bus, addr, mk)?
            } else {
                f.st(r0)
            };
            let v = if mk == mem::F32 || mk == mem::F64 {
                if v.is_snan() {
                    f.env.flags |= soft::IE;
                }
                v.quiet()
            } else {
                v
            };
            f.c.guest.x87.fsw &= !C1;
            f.push(v);
        }
        Fild => {
            let v = f.read_mem(bus, addr, mk)?;
            f.c.guest.x87.fsw &= !C1;
            f.push(v);
        }
        Fst | Fstp | Fist | Fistp | Fisttp => {
            let v = f.st(0);
            // Stores do not report denormal operands.
            f.env.flags &= !soft::DE;
            if mk != mem::NONE {
                let m = mmu(f.c);
                if mk == mem::BCD {
                    // Rounded per RC; beyond 18 digits (or NaN, infinity) it is invalid.
                    let rm = f.env.rm;
                    let x =
                        soft::to_int(&mut f.env, v, rm, 64).filter(|x| x.unsigned_abs() <= BCD_MAX);
                    let b = match x {
                        Some(x) => {
                            let mut b = int_to_bcd(x);
                            if x == 0 && v.sign() {
                                b[9] = 0x80;
                            }
                            b
                        }
                        None => {
                            f.env.flags |= soft::IE;
                            BCD_INDEFINITE
                        }
                    };
                    f.c.write_bytes(bus, addr, &b, m)?;
                } else if mk == mem::F80 {
                    let (lo, hi) = f.conv_mem(v, mk, false);
                    let mut b = [0u8; 10];
                    b[..8].copy_from_slice(&lo.to_le_bytes());
                    b[8..].copy_from_slice(&(hi as u16).to_le_bytes());
                    f.c.write_bytes(bus, addr, &b, m)?;
                } else {
                    let (lo, _) = f.conv_mem(v, mk, op == Fisttp);
                    let sz = mem_size(mk);
                    if (addr & 0xfff) as usize + sz > 0x1000 {
                        f.c.write_bytes(bus, addr, &lo.to_le_bytes()[..sz], m)?;
                    } else {
                        f.c.write(bus, addr, sz, m, lo)?;
                    }
                }
            } else {
                f.set_st(r0, v);
            }
            let c1 = f.env.rounded_up && f.env.flags & soft::PE != 0;
            f.c.guest.x87.fsw = (f.c.guest.x87.fsw & !C1) | if c1 { C1 } else { 0 };
            if matches!(op, Fstp | Fistp | Fisttp) {
                f.pop();
            }
        }
        Fld1 | Fldz | Fldpi | Fldl2e | Fldln2 | Fldl2t | Fldlg2 => {
            let v = konst(op, f.env.rm);
            f.c.guest.x87.fsw &= !C1;
            f.push(v);
        }
        Fadd | Faddp | Fiadd | Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr | Fmul | Fmulp
        | Fimul | Fdiv | Fdivp | Fidiv | Fdivr | Fdivrp | Fidivr => {
            // dst op= src; the R forms compute src op dst.
            let (di, a, b) = if mk != mem::NONE {
                let m = f.read_mem(bus, addr, mk)?;
                (0, f.st(0), m)
            } else if k & ctl::DST_ST0 != 0 {
                (0, f.st(0), f.st(r1))
            } else {
                (r0, f.st(r0), f.st(0))
            };
            let rev = matches!(op, Fsubr | Fsubrp | Fisubr | Fdivr | Fdivrp | Fidivr);
            let (x, y) = if rev { (b, a) } else { (a, b) };
            let r = match f.nan2(x, y) {
                Some(n) => n,
                None => match op {
                    Fadd | Faddp | Fiadd => soft::add(&mut f.env, fmt, x, y),
                    Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr => {
                        soft::add(&mut f.env, fmt, x, y.negate())
                    }
                    Fmul | Fmulp | Fimul => soft::mul(&mut f.env, fmt, x, y),
                    _ => soft::div(&mut f.env, fmt, x, y),
                },
            };
            let c1 = f.env.rounded_up;
            f.set_st(di, r);
            f.set_cc(false, false, c1, false);
            if matches!(op, Faddp | Fsubp | Fsubrp | Fmulp | Fdivp | Fdivrp) {
                f.pop();
            }
        }
        Fcom | Fcomp | Fcompp | Fucom | Fucomp | Fucompp | Ficom | Ficomp | Ftst | Fcomi
        | Fcomip | Fucomi | Fucomip => {
            let a = f.st(0);
            let b = if op == Ftst {
                Val::Zero(false)
            } else if mk != mem::NONE {
                f.read_mem(bus, addr, mk)?
            } else {
                f.st(r1)
            };
            let unordered_ok = matches!(op, Fucom | Fucomp | Fucompp | Fucomi | Fucomip);
            if a.is_snan() || b.is_snan() || (!unordered_ok && (a.is_nan() || b.is_nan())) {
                f.env.flags |= soft::IE;
            }
            let cmp = soft::compare(a, b);
            let (c3, c2, c0) = match cmp {
                Cmp::Un => (true, true, true),
                Cmp::Lt => (false, false, true),
                Cmp::Eq => (true, false, false),
                Cmp::Gt => (false, false, false),
            };
            if matches!(op, Fcomi | Fcomip | Fucomi | Fucomip) {
                let rf = crate::cpu::rflags(f.c) & !fl::ARITH;
                let v = rf
                    | if c3 { fl::ZF } else { 0 }
                    | if c2 { fl::PF } else { 0 }
                    | if c0 { fl::CF } else { 0 };
                crate::cpu::set_rflags(f.c, v);
                f.c.guest.x87.fsw &= !C1;
            } else {
                f.set_cc(c3, c2, false, c0);
            }
            if matches!(op, Fcomp | Fucomp | Ficomp | Fcomip | Fucomip) {
                f.pop();
            }
            if matches!(op, Fcompp | Fucompp) {
                f.pop();
                f.pop();
            }
        }
        Fxam => {
            let p0 = f.phys(0);
            let (m, se) = f.c.guest.x87.regs[p0];
            let s = se & 0x8000 != 0;
            let (c3, c2, c0) = if f.tag(p0) == 3 {
                (true, false, true)
            } else {
                match soft::unpack80(m, se) {
                    (Val::Zero(_), _) => (true, false, false),
                    (Val::Inf(_), _) => (false, true, true),
                    (Val::Nan { .. }, _) if m & (1 << 63) == 0 => (false, false, false),
                    (Val::Nan { .. }, _) => (false, false, true),
                    (_, true) => (true, true, false),
                    _ => (false, true, false),
                }
            };
            f.set_cc(c3, c2, s, c0);
        }
        Fxch => {
            let a = f.st(0);
            let b = f.st(r1.max(r0));
            let i = r1.max(r0);
            f.set_st(0, b);
            f.set_st(i, a);
            f.c.guest.x87.fsw &= !C1;
        }
        Fchs | Fabs => {
            let a = f.st(0);
            let r = if op == Fchs { a.negate() } else { a.abs() };
            f.set_st(0, r);
            f.c.guest.x87.fsw &= !C1;
        }
        Fsqrt | Frndint => {
            let a = f.st(0);
            let r = if a.is_nan() {
                f.nan2(a, a).unwrap_or(a)
            } else if op == Fsqrt {
                soft::sqrt(&mut f.env, fmt, a)
            } else {
                let rm = f.env.rm;
                soft::round_int(&mut f.env, a, rm)
            };
            let c1 = f.env.rounded_up;
            f.set_st(0, r);
            f.set_cc(false, false, c1, false);
        }
        Fscale => {
            let a = f.st(0);
            let b = f.st(1);
            let r = match f.nan2(a, b) {
                Some(n) => n,
                None => match (a, b) {
                    (Val::Fin { s, e, m }, Val::Fin { .. } | Val::Zero(_)) => {
                        let mut e2 = Env::new(Rm::Zero);
                        let n = soft::to_int(&mut e2, b, Rm::Zero, 64)
                            .unwrap_or(if b.sign() { i64::MIN } else { i64::MAX })
                            .clamp(-100_000, 100_000) as i32;
                        soft::round(&mut f.env, F80, s, e - 63 + n, m as u128, false)
                    }
                    (Val::Zero(s), Val::Inf(false)) | (Val::Inf(s), Val::Inf(true)) => {
                        let _ = s;
                        f.env.flags |= soft::IE;
                        soft::DEFAULT_NAN
                    }
                    (Val::Fin { s, .. }, Val::Inf(neg)) => {
                        if neg {
                            Val::Zero(s)
                        } else {
                            Val::Inf(s)
                        }
                    }
                    (x, _) => x,
                },
            };
            f.set_st(0, r);
        }
        Fxtract => {
            let a = f.st(0);
            match a {
                Val::Fin { s, e, m } => {
                    let ex = soft::from_int(&mut f.env, F80, e as i64);
                    f.set_st(0, ex);
                    f.push(Val::Fin { s, e: 0, m });
                }
                Val::Zero(s) => {
                    f.env.flags |= soft::ZE;
                    f.set_st(0, Val::Inf(true));
                    f.push(Val::Zero(s));
                }
                Val::Inf(s) => {
                    f.set_st(0, Val::Inf(false));
                    f.push(Val::Inf(s));
                }
                n => {
                    let q = f.nan2(n, n).unwrap_or(n);
                    f.set_st(0, q);
                    f.push(q);
                }
            }
        }
        Fprem | Fprem1 => {
            let a = f.st(0);
            let b = f.st(1);
            if let Some(n) = f.nan2(a, b) {
                f.set_st(0, n);
            } else {
                match (a, b) {
                    (Val::Inf(_), _) | (_, Val::Zero(_)) => {
                        f.env.flags |= soft::IE;
                        f.set_st(0, soft::DEFAULT_NAN);
                    }
                    (Val::Fin { s, e: ea, m: ma }, Val::Fin { e: eb, m: mb, .. }) => {
                        let d = ea - eb;
                        if d < 0 && !(op == Fprem1 && d == -1) {
                            f.set_cc(false, false, false, false);
                        } else if d < 64 {
                            // Exact: (ma << d) = q * mb + r, with r < mb.
                            let (num, sh) = if d >= 0 {
                                ((ma as u128) << d, 0)
                            } else {
                                (ma as u128, 1)
                            };
                            let den = (mb as u128) << sh;
                            let mut q = num / den;
                            let mut r = num % den;
                            let mut neg = false;
                            if op == Fprem1 {
                                // Round the quotient to nearest even.
                                let twice = r * 2;
                                if twice > den || (twice == den && q & 1 == 1) {
                                    q += 1;
                                    r = den - r;
                                    neg = true;
                                }
                            }
                            let rs = s != neg;
                            let rv = soft::round(&mut f.env, F80, rs, eb - 63 - sh, r, false);
                            let rv = if r == 0 { Val::Zero(s) } else { rv };
                            f.set_st(0, rv);
                            f.set_cc(q & 2 != 0, false, q & 1 != 0, q & 4 != 0);
                        } else {
                            // Partial remainder: reduce the exponent difference by 32..63.
                            let n = 32 + (d % 32);
                            let shift = d - n;
                            let num = (ma as u128) << n;
                            let r = num % mb as u128;
                            let rv = if r == 0 {
                                Val::Zero(s)
                            } else {
                                soft::round(&mut f.env, F80, s, eb - 63 + shift, r, false)
                            };
                            f.set_st(0, rv);
                            f.set_cc(false, true, false, false);
                        }
                    }
                    _ => {
                        f.set_cc(false, false, false, false);
                    }
                }
            }
        }
        Fsin | Fcos | Fsincos | Fptan | F2xm1 => {
            let a = f.st(0);
            if a.is_nan() {
                let q = f.nan2(a, a).unwrap_or(a);
                f.set_st(0, q);
                if op == Fsincos || op == Fptan {
                    f.push(q);
                }
            } else if matches!(a, Val::Inf(_)) && op != F2xm1 {
                f.env.flags |= soft::IE;
                f.set_st(0, soft::DEFAULT_NAN);
                if op == Fsincos || op == Fptan {
                    f.push(soft::DEFAULT_NAN);
                }
            } else {
                let x = soft::to_f64(a);
                if op != F2xm1 && x.abs() >= 9.223_372_036_854_776e18 {
                    f.set_cc(false, true, false, false);
                } else {
                    let mut r = |v: f64| soft::round_val(&mut f.env, fmt, soft::from_f64(v));
                    match op {
                        Fsin => {
                            let v = r(x.sin());
                            f.set_st(0, v);
                        }
                        Fcos => {
                            let v = r(x.cos());
                            f.set_st(0, v);
                        }
                        F2xm1 => {
                            let v = r(x.exp2() - 1.0);
                            f.set_st(0, v);
                        }
                        Fsincos => {
                            let (sn, cs) = (r(x.sin()), r(x.cos()));
                            f.set_st(0, sn);
                            f.push(cs);
                        }
                        _ => {
                            let v = r(x.tan());
                            f.set_st(0, v);
                            f.push(Val::Fin {
                                s: false,
                                e: 0,
                                m: 1 << 63,
                            });
                        }
                    }
                    f.env.flags |= soft::PE;
                    f.set_cc(false, false, false, false);
                }
            }
        }
        Fpatan | Fyl2x | Fyl2xp1 => {
            let x0 = f.st(0);
            let y1 = f.st(1);
            let r = match f.nan2(y1, x0) {
                Some(n) => n,
                None => {
                    let (x, y) = (soft::to_f64(x0), soft::to_f64(y1));
                    let v = match op {
                        Fpatan => y.atan2(x),
                        Fyl2x => {
                            if x < 0.0 {
                                f.env.flags |= soft::IE;
                                f64::NAN
                            } else {
                                if x == 0.0 && y != 0.0 && y.is_finite() {
                                    f.env.flags |= soft::ZE;
                                }
                                y * x.log2()
                            }
                        }
                        _ => y * x.ln_1p() / core::f64::consts::LN_2,
                    };
                    if v.is_nan() {
                        f.env.flags |= soft::IE;
                        soft::DEFAULT_NAN
                    } else {
                        f.env.flags |= soft::PE;
                        soft::round_val(&mut f.env, fmt, soft::from_f64(v))
                    }
                }
            };
            f.set_st(1, r);
            f.pop();
        }
        Fldcw => {
            let m = mmu(f.c);
            let v = f.c.read(bus, addr, 2, m)? as u16;
            f.c.guest.x87.fcw = v | 0x40;
            let x = &mut f.c.guest.x87;
            if x.fsw & 0x3f & !(x.fcw & 0x3f) != 0 {
                x.fsw |= ES | B;
            } else {
                x.fsw &= !(ES | B);
            }
            return Ok(0);
        }
        Fnstcw => {
            let m = mmu(f.c);
            let v = f.c.guest.x87.fcw as u64;
            f.c.write(bus, addr, 2, m, v)?;
            return Ok(0);
        }
        Fnstsw => {
            let v = super::fxsave::fsw(f.c) as u64;
            if mk != mem::NONE {
                let m = mmu(f.c);
                f.c.write(bus, addr, 2, m, v)?;
            }
            return Ok(v);
        }
        Fninit => {
            f.c.guest.x87 = crate::state::X87::default();
            return Ok(0);
        }
        Fnclex => {
            f.c.guest.x87.fsw &= !(0xff | B);
            return Ok(0);
        }
        Ffree | Ffreep => {
            let p = f.phys(r0);
            f.set_tag(p, 3);
            if op == Ffreep {
                f.pop();
            }
        }
        Fincstp | Fdecstp => {
            let x = &mut f.c.guest.x87;
            x.top = if op == Fincstp {
                (x.top + 1) & 7
            } else {
                x.top.wrapping_sub(1) & 7
            };
            x.fsw &= !C1;
        }
        Fcmovb | Fcmove | Fcmovbe | Fcmovu | Fcmovnb | Fcmovne | Fcmovnbe | Fcmovnu => {
            let rf = aux;
            let (cf, zf, pf) = (rf & fl::CF != 0, rf & fl::ZF != 0, rf & fl::PF != 0);
            let cond = match op {
                Fcmovb => cf,
                Fcmove => zf,
                Fcmovbe => cf || zf,
                Fcmovu => pf,
                Fcmovnb => !cf,
                Fcmovne => !zf,
                Fcmovnbe => !cf && !zf,
                _ => !pf,
            };
            let v = f.st(r1);
            let _ = f.st(0);
            if cond {
                f.set_st(0, v);
            }
        }
        Fnop => {}
        Fnstenv | Fnsave => {
            let img = env_image(f.c, k & ctl::OP32 != 0);
            let m = mmu(f.c);
            let n = if k & ctl::OP32 != 0 { 28 } else { 14 };
            let mut buf = [0u8; 108];
            buf[..n].copy_from_slice(&img[..n]);
            let total = if op == Fnsave {
                for i in 0..8 {
                    let (rm_, se) = f.c.guest.x87.regs[f.phys(i)];
                    let o = n + 10 * i as usize;
                    buf[o..o + 8].copy_from_slice(&rm_.to_le_bytes());
                    buf[o + 8..o + 10].copy_from_slice(&se.to_le_bytes());
                }
                n + 80
            } else {
                n
            };
            f.c.write_bytes(bus, addr, &buf[..total], m)?;
            if op == Fnsave {
                f.c.guest.x87 = crate::state::X87::default();
            } else {
                f.c.guest.x87.fcw |= 0x3f;
            }
            return Ok(0);
        }
        Fldenv | Frstor => {
            let m = mmu(f.c);
            let op32 = k & ctl::OP32 != 0;
            let n = if op32 { 28 } else { 14 };
            let total = if op == Frstor { n + 80 } else { n };
            let mut buf = [0u8; 108];
            f.c.read_bytes(bus, addr, &mut buf[..total], m)?;
            let w = |o: usize| u16::from_le_bytes([buf[o], buf[o + 1]]);
            let st = if op32 { 4 } else { 2 };
            let x = &mut f.c.guest.x87;
            x.fcw = w(0);
            let sw = w(st);
            x.top = ((sw >> 11) & 7) as u8;
            x.fsw = sw & !0x3800;
            x.ftw = w(2 * st);
            if op == Frstor {
                for i in 0..8 {
                    let o = n + 10 * i;
                    let mm = u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
                    let p = (x.top as usize + i) & 7;
                    x.regs[p] = (mm, w(o + 8));
                }
            }
            if x.fsw & 0x3f & !(x.fcw & 0x3f) != 0 {
                x.fsw |= ES | B;
            }
            return Ok(0);
        }
    }
    f.finish();
    if !matches!(op, Fnop) {
        let x = &mut f.c.guest.x87;
        x.fip = aux;
        if mk != mem::NONE {
            x.fdp = addr;
        }
    }
    Ok(0)
}

/// The FNSTENV image (protected-mode layout; 28 bytes for 32-bit operand size, 14 for 16).
fn env_image(c: &Core<X86>, op32: bool) -> [u8; 28] {
    let x = &c.guest.x87;
    let mut b = [0u8; 28];
    let fsw = super::fxsave::fsw(c);
    if op32 {
        b[0..2].copy_from_slice(&x.fcw.to_le_bytes());
        b[2..4].copy_from_slice(&0xffffu16.to_le_bytes());
        b[4..6].copy_from_slice(&fsw.to_le_bytes());
        b[6..8].copy_from_slice(&0xffffu16.to_le_bytes());
        b[8..10].copy_from_slice(&x.ftw.to_le_bytes());
        b[10..12].copy_from_slice(&0xffffu16.to_le_bytes());
        b[12..16].copy_from_slice(&(x.fip as u32).to_le_bytes());
        b[16..18].copy_from_slice(&x.fcs.to_le_bytes());
        b[18..20].copy_from_slice(&(x.fop & 0x7ff).to_le_bytes());
        b[20..24].copy_from_slice(&(x.fdp as u32).to_le_bytes());
        b[24..26].copy_from_slice(&x.fds.to_le_bytes());
        b[26..28].copy_from_slice(&0xffffu16.to_le_bytes());
    } else {
        b[0..2].copy_from_slice(&x.fcw.to_le_bytes());
        b[2..4].copy_from_slice(&fsw.to_le_bytes());
        b[4..6].copy_from_slice(&x.ftw.to_le_bytes());
        b[6..8].copy_from_slice(&(x.fip as u16).to_le_bytes());
        b[8..10].copy_from_slice(&x.fcs.to_le_bytes());
        b[10..12].copy_from_slice(&(x.fdp as u16).to_le_bytes());
        b[12..14].copy_from_slice(&x.fds.to_le_bytes());
    }
    b
}
