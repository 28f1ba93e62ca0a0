//! Lazy condition flags.
//!
//! A flag-setting instruction stores its result and sources in `CC_DST`, `CC_SRC`, `CC_SRC2`
//! and records which operation produced them ([`CcOp`]); the six arithmetic flags are computed
//! only when something reads them. The translator knows the `CcOp` statically inside a block
//! and emits direct comparisons for common conditions (e.g. `cmp`+`jb` becomes one unsigned
//! compare); otherwise [`arith_flags`] computes them exactly, AF and PF included.
//!
//! Conventions: `CC_DST` holds the result zero-extended to the operation size; `CC_SRC` and
//! `CC_SRC2` may hold garbage above the operation size (every use masks them).

use crate::regs::fl;

/// Operand size index: 0 = 8, 1 = 16, 2 = 32, 3 = 64 bits.
pub type SizeIx = u32;

/// The kinds of flag-producing operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CcKind {
    /// `CC_SRC` holds the arithmetic flags themselves.
    Eflags = 0,
    /// dst = src2 + src
    Add = 1,
    /// dst = src2 + src + carry-in (`CC_SRC2` = carry-in in bit 0; src1 recovered)
    Adc = 2,
    /// dst = src2 - src (CC_SRC2 = first operand)
    Sub = 3,
    /// dst = src2 - src - borrow (CC_SRC2 = first operand, borrow in bit 63 of nothing: see `sbb`)
    Sbb = 4,
    /// AND/OR/XOR/TEST: CF = OF = 0
    Logic = 5,
    /// INC: CF preserved in CC_SRC bit 0
    Inc = 6,
    /// DEC: CF preserved in CC_SRC bit 0
    Dec = 7,
    /// SHL: CC_SRC = operand shifted by count-1
    Shl = 8,
    /// SHR/SAR: CC_SRC = operand shifted by count-1
    Sar = 9,
    /// MUL/IMUL: CC_SRC != 0 means CF = OF = 1
    Mul = 10,
    /// BMI group (ANDN, BLSR, ...): ZF/SF from dst, CF = CC_SRC != 0, OF = 0
    Bmi = 11,
    /// `xor r, r` and friends: ZF = PF = 1, rest 0
    Clr = 12,
    /// POPCNT: ZF from src == 0, others 0
    Popcnt = 13,
}

/// A `CcOp` value: kind * 4 + size index.
pub type CcOp = u32;

/// Make a `CcOp`.
pub const fn cc(kind: CcKind, size: SizeIx) -> CcOp {
    (kind as u32) * 4 + size
}

/// The `CcOp` meaning "the flags are in CC_SRC".
pub const CC_EFLAGS: CcOp = 0;

/// Split a `CcOp`.
pub fn split(op: CcOp) -> (u32, SizeIx) {
    (op / 4, op & 3)
}

/// Bits of operand size index `s`.
#[inline]
pub fn bits(s: SizeIx) -> u32 {
    8 << s
}

/// Mask of operand size index `s`.
#[inline]
pub fn mask(s: SizeIx) -> u64 {
    if s >= 3 {
        u64::MAX
    } else {
        (1u64 << (8 << s)) - 1
    }
}

#[inline]
fn sign(s: SizeIx) -> u64 {
    1u64 << ((8 << s) - 1)
}

#[inline]
fn parity(v: u64) -> u64 {
    if (v as u8).count_ones().is_multiple_of(2) {
        fl::PF
    } else {
        0
    }
}

/// ZF | SF | PF of a zero-extended result.
#[inline]
fn zsp(dst: u64, s: SizeIx) -> u64 {
    let d = dst & mask(s);
    (if d == 0 { fl::ZF } else { 0 }) | (if d & sign(s) != 0 { fl::SF } else { 0 }) | parity(d)
}

/// The six arithmetic flags from a lazy state.
#[inline]
pub fn arith_flags(op: CcOp, dst: u64, src: u64, src2: u64) -> u64 {
    let (kind, s) = split(op);
    let m = mask(s);
    let sb = sign(s);
    let dst = dst & m;
    match kind {
        0 => src & fl::ARITH,
        1 => {
            // add: src1 = dst - src
            let b = src & m;
            let a = dst.wrapping_sub(b) & m;
            let cf = (dst < b) as u64;
            let af = (dst ^ a ^ b) & 0x10;
            let of = ((a ^ dst) & (b ^ dst) & sb != 0) as u64;
            cf | af | (of * fl::OF) | zsp(dst, s)
        }
        2 => {
            // adc: CC_SRC2 bit 0 = carry in
            let b = src & m;
            let cin = src2 & 1;
            let a = dst.wrapping_sub(b).wrapping_sub(cin) & m;
            let cf = if cin != 0 { dst <= b } else { dst < b } as u64;
            let af = (dst ^ a ^ b) & 0x10;
            let of = ((a ^ dst) & (b ^ dst) & sb != 0) as u64;
            cf | af | (of * fl::OF) | zsp(dst, s)
        }
        3 => {
            // sub: CC_SRC2 = first operand
            let a = src2 & m;
            let b = src & m;
            let cf = (a < b) as u64;
            let af = (dst ^ a ^ b) & 0x10;
            let of = ((a ^ b) & (a ^ dst) & sb != 0) as u64;
            cf | af | (of * fl::OF) | zsp(dst, s)
        }
        4 => {
            // sbb: CC_SRC2 = first operand; borrow-in recovered from the result
            let a = src2 & m;
            let b = src & m;
            let bin = (a.wrapping_sub(b).wrapping_sub(dst) & m != 0) as u64;
            let cf = if bin != 0 { a <= b } else { a < b } as u64;
            let af = (dst ^ a ^ b) & 0x10;
            let of = ((a ^ b) & (a ^ dst) & sb != 0) as u64;
            cf | af | (of * fl::OF) | zsp(dst, s)
        }
        5 => zsp(dst, s),
        6 => {
            // inc
            let a = dst.wrapping_sub(1) & m;
            let af = (dst ^ a ^ 1) & 0x10;
            let of = ((dst == sb) as u64) * fl::OF;
            (src & 1) | af | of | zsp(dst, s)
        }
        7 => {
            // dec
            let a = dst.wrapping_add(1) & m;
            let af = (dst ^ a ^ 1) & 0x10;
            let of = ((dst == sb - 1) as u64) * fl::OF;
            (src & 1) | af | of | zsp(dst, s)
        }
        8 => {
            // shl: CF = top bit of src (operand << (count-1)); OF = CF ^ SF
            let cf = ((src & sb) != 0) as u64;
            let sf = ((dst & sb) != 0) as u64;
            cf | ((cf ^ sf) * fl::OF) | zsp(dst, s)
        }
        9 => {
            // shr/sar: CF = bit 0 of src (operand >> (count-1)); OF = top bit of (src ^ dst)
            // (for count 1: SHR gives the original sign, SAR gives 0)
            let cf = src & 1;
            let of = ((((src ^ dst) & m) & sb) != 0) as u64;
            cf | (of * fl::OF) | zsp(dst, s)
        }
        10 => {
            let c = (src != 0) as u64;
            c | (c * fl::OF) | zsp(dst, s)
        }
        11 => {
            let c = (src != 0) as u64;
            c | (zsp(dst, s) & !fl::PF)
        }
        12 => fl::ZF | fl::PF,
        13 if src & m == 0 => fl::ZF,
        _ => 0,
    }
}

/// Just CF of a lazy state (for ADC/SBB/RCL/RCR, CMC, SETC...).
pub fn carry(op: CcOp, dst: u64, src: u64, src2: u64) -> u64 {
    arith_flags(op, dst, src, src2) & fl::CF
}

/// `arith_flags` specialized for one static `CcOp` (a pure helper: `(dst, src, src2)`).
fn flags_of<const OP: u32>(dst: u64, src: u64, src2: u64) -> u64 {
    arith_flags(OP, dst, src, src2)
}

macro_rules! flags_table {
    ($($op:literal)*) => { [$(flags_of::<$op> as tci64_engine::PureFn),*] };
}

/// Pure helpers: index `op` (a `CcOp`) computes the six arithmetic flags of that lazy state
/// from `(CC_DST, CC_SRC, CC_SRC2)`.
pub static PURE_FLAGS: [tci64_engine::PureFn; 56] = flags_table!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
    28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_flags() {
        // 0xff + 1 (8-bit) = 0: CF, ZF, AF, PF
        let f = arith_flags(cc(CcKind::Add, 0), 0, 1, 0);
        assert_eq!(f, fl::CF | fl::ZF | fl::AF | fl::PF);
        // 0x7f + 1 = 0x80: OF, SF, AF
        let f = arith_flags(cc(CcKind::Add, 0), 0x80, 1, 0);
        assert_eq!(f, fl::OF | fl::SF | fl::AF);
    }

    #[test]
    fn sub_flags() {
        // 1 - 2 (32-bit) = 0xffffffff: CF, SF, AF, PF
        let f = arith_flags(cc(CcKind::Sub, 2), 0xffff_ffff, 2, 1);
        assert_eq!(f, fl::CF | fl::SF | fl::AF | fl::PF);
        // 0x80000000 - 1 = 0x7fffffff: OF, AF
        let f = arith_flags(cc(CcKind::Sub, 2), 0x7fff_ffff, 1, 0x8000_0000);
        assert_eq!(f, fl::OF | fl::AF | fl::PF);
    }

    #[test]
    fn logic_and_clr() {
        assert_eq!(arith_flags(cc(CcKind::Logic, 3), 0, 0, 0), fl::ZF | fl::PF);
        assert_eq!(arith_flags(cc(CcKind::Clr, 2), 0, 0, 0), fl::ZF | fl::PF);
        assert_eq!(
            arith_flags(CC_EFLAGS, 0, fl::CF | fl::OF | fl::IF, 0),
            fl::CF | fl::OF
        );
    }
}
