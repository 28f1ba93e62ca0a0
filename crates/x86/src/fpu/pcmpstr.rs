//! The SSE4.2 string compares (PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM): the comparison
//! matrix, the four aggregations, the polarities and the flags, per the Intel SDM vol. 2
//! section 4.1 ("Imm8 control byte operation for PCMPESTRI / PCMPESTRM / PCMPISTRI /
//! PCMPISTRM").

use crate::regs::fl;

/// The outcome of one compare.
pub struct StrRes {
    /// IntRes2: one bit per element.
    pub bits: u32,
    /// Elements per operand (16 bytes or 8 words).
    pub n: u32,
    /// CF/ZF/SF/OF (AF and PF are clear).
    pub flags: u64,
}

impl StrRes {
    /// PCMPxSTRI's ECX: the least (imm bit 6 clear) or most significant set bit of IntRes2,
    /// or the element count when none is set.
    pub fn index(&self, imm: u8) -> u64 {
        if self.bits == 0 {
            self.n as u64
        } else if imm & 0x40 != 0 {
            31 - self.bits.leading_zeros() as u64
        } else {
            self.bits.trailing_zeros() as u64
        }
    }

    /// PCMPxSTRM's XMM0: the bit mask (imm bit 6 clear) or the mask expanded to elements.
    pub fn mask(&self, imm: u8) -> u128 {
        if imm & 0x40 == 0 {
            return self.bits as u128;
        }
        let w = 128 / self.n;
        let m = if w == 8 { 0xffu128 } else { 0xffff };
        (0..self.n)
            .filter(|i| self.bits >> i & 1 != 0)
            .fold(0, |r, i| r | m << (i * w))
    }
}

/// Element `i` of `x` (bytes or words, signed or not), as i32.
fn elem(x: u128, i: u32, words: bool, signed: bool) -> i32 {
    if words {
        let v = (x >> (16 * i)) as u16;
        if signed {
            v as i16 as i32
        } else {
            v as i32
        }
    } else {
        let v = (x >> (8 * i)) as u8;
        if signed {
            v as i8 as i32
        } else {
            v as i32
        }
    }
}

/// Length of an operand: explicit (|value| saturated to `n`) or up to the first zero element.
fn length(x: u128, explicit: Option<i64>, n: u32, words: bool) -> u32 {
    match explicit {
        Some(v) => v.unsigned_abs().min(n as u64) as u32,
        None => (0..n).find(|&i| elem(x, i, words, false) == 0).unwrap_or(n),
    }
}

/// Compare `a` (the register operand, "src1") with `b` (the r/m operand, "src2").
pub fn compare(a: u128, b: u128, la: Option<i64>, lb: Option<i64>, imm: u8) -> StrRes {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let n = if words { 8 } else { 16 };
    let la = length(a, la, n, words);
    let lb = length(b, lb, n, words);
    let ea = |j: u32| elem(a, j, words, signed);
    let eb = |i: u32| elem(b, i, words, signed);
    let mut r1 = 0u32;
    for i in 0..n {
        let bit = match (imm >> 2) & 3 {
            // Equal any: b[i] is one of a's valid elements.
            0 => i < lb && (0..la).any(|j| ea(j) == eb(i)),
            // Ranges: a holds (low, high) pairs.
            1 => i < lb && (0..la / 2).any(|k| eb(i) >= ea(2 * k) && eb(i) <= ea(2 * k + 1)),
            // Equal each: both invalid counts as equal.
            2 => match (i < la, i < lb) {
                (true, true) => ea(i) == eb(i),
                (false, false) => true,
                _ => false,
            },
            // Equal ordered: a occurs in b starting at i (invalid a elements match anything).
            _ => (0..n - i).all(|j| {
                if j >= la {
                    true
                } else if i + j >= lb {
                    false
                } else {
                    ea(j) == eb(i + j)
                }
            }),
        };
        r1 |= (bit as u32) << i;
    }
    let all = (1u32 << n) - 1;
    let valid_b = (1u32 << lb) - 1;
    let r2 = match (imm >> 4) & 3 {
        1 => !r1 & all,
        3 => r1 ^ valid_b,
        _ => r1,
    };
    let mut flags = 0;
    if r2 != 0 {
        flags |= fl::CF;
    }
    if lb < n {
        flags |= fl::ZF;
    }
    if la < n {
        flags |= fl::SF;
    }
    if r2 & 1 != 0 {
        flags |= fl::OF;
    }
    StrRes { bits: r2, n, flags }
}
