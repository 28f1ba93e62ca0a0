//! Instruction family: shifts/rotates, multiply/divide, bit operations, BMI, exchange/compare-exchange, byte swaps, loops.

use super::operand::{gpr, size_ix, Loc};
use super::{Flow, Tr};
use crate::cpu::{raise, rflags, set_rflags};
use crate::flags::{cc, mask, CcKind, CC_EFLAGS};
use crate::helpers::{base, Bus, Helper};
use crate::regs::*;
use crate::state::vec;
use crate::X86;
use iced_x86::{ConditionCode, Mnemonic, OpKind, Register};
use tci64_engine::{mk, Cond, Core, Op, Slot, Trap};

helpers!(pub enum AluH @ base::ALU; {
    SHIFT => h_shift,
    SHXD => h_shxd,
    DIV => h_div,
    PDEP => h_pdep,
    PEXT => h_pext,
    BEXTR => h_bextr,
    CMPXCHG_NB => h_cmpxchg_nb,
    BCD => h_bcd,
    ARPL => h_arpl,
});

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::ALU, base::STRING, AluH::TABLE);

type HR = Result<u64, Trap>;

fn parity(v: u64) -> u64 {
    if (v as u8).count_ones() & 1 == 0 {
        fl::PF
    } else {
        0
    }
}

fn zsp(r: u64, bits: u32) -> u64 {
    let m = mask(size_ix((bits / 8) as usize));
    let r = r & m;
    (if r == 0 { fl::ZF } else { 0 })
        | (if (r >> (bits - 1)) & 1 != 0 {
            fl::SF
        } else {
            0
        })
        | parity(r)
}

/// The decimal and ASCII adjustments (`op`: [`Bcd`] in bits 0-7, AAM/AAD's base in bits
/// 8-15) of AX with arithmetic flags `f`: returns the new AX | the new flags << 16 (SDM vol.
/// 2: DAA, DAS, AAA, AAS, AAM, AAD). The flags the SDM leaves undefined: OF is cleared by
/// DAA/DAS/AAM/AAD, AAA/AAS keep OF/SF/ZF/PF; AAM/AAD clear CF and AF. AAM 0 is #DE.
fn h_bcd(c: &mut Core<X86>, _: &mut Bus, ax: u64, f: u64, op: u64) -> HR {
    let (al, ah) = (ax as u8, (ax >> 8) as u8);
    let af = f & fl::AF != 0;
    let cf = f & fl::CF != 0;
    let base = (op >> 8) as u8;
    let flag = |on: bool, b: u64| if on { b } else { 0 };
    let (nax, nf): (u16, u64) = match op as u8 {
        BCD_DAA | BCD_DAS => {
            let das = op as u8 == BCD_DAS;
            let mut a = al;
            let (mut ncf, mut naf) = (false, false);
            if al & 0xf > 9 || af {
                ncf = cf || if das { al < 6 } else { al > 0xf9 };
                a = if das {
                    a.wrapping_sub(6)
                } else {
                    a.wrapping_add(6)
                };
                naf = true;
            }
            if al > 0x99 || cf {
                a = if das {
                    a.wrapping_sub(0x60)
                } else {
                    a.wrapping_add(0x60)
                };
                ncf = true;
            }
            (
                (ax as u16 & 0xff00) | a as u16,
                flag(ncf, fl::CF) | flag(naf, fl::AF) | zsp(a as u64, 8),
            )
        }
        BCD_AAA | BCD_AAS => {
            let keep = f & (fl::OF | fl::SF | fl::ZF | fl::PF);
            if al & 0xf > 9 || af {
                let (l, h) = if op as u8 == BCD_AAA {
                    // AX = AX + 0x106 (the carry out of AL reaches AH, as on current parts).
                    let x = (ax as u16).wrapping_add(0x106);
                    (x as u8, (x >> 8) as u8)
                } else {
                    let x = (ax as u16).wrapping_sub(6);
                    (x as u8, ((x >> 8) as u8).wrapping_sub(1))
                };
                (((h as u16) << 8) | (l & 0xf) as u16, keep | fl::AF | fl::CF)
            } else {
                (((ah as u16) << 8) | (al & 0xf) as u16, keep)
            }
        }
        BCD_AAM => {
            if base == 0 {
                return Err(raise(c, vec::DE, None));
            }
            let l = al % base;
            ((((al / base) as u16) << 8) | l as u16, zsp(l as u64, 8))
        }
        _ => {
            let l = al.wrapping_add(ah.wrapping_mul(base));
            (l as u16, zsp(l as u64, 8))
        }
    };
    Ok(nax as u64 | nf << 16)
}

/// ARPL: raise the RPL of selector `d` to that of `s`; returns the new `d` | flags << 16
/// (ZF set when it changed, the other flags of `f` kept).
fn h_arpl(_: &mut Core<X86>, _: &mut Bus, d: u64, s: u64, f: u64) -> HR {
    let (d, s) = (d as u16, s as u16);
    let keep = f & !fl::ZF;
    Ok(if d & 3 < s & 3 {
        ((d & !3) | (s & 3)) as u64 | (keep | fl::ZF) << 16
    } else {
        d as u64 | keep << 16
    })
}

/// For the helpers that return a 16-bit result | flags << 16 ([`h_bcd`], [`h_arpl`]): set
/// the flags from `r` and return the result word.
fn word_then_flags(t: &mut Tr, r: Slot) -> Slot {
    let nf = t.b.temp();
    t.b.push(Op::Extract {
        d: nf,
        a: r,
        pos: 16,
        len: 16,
    });
    t.set_eflags(nf);
    t.b.un(mk::zx16, r)
}

const BCD_DAA: u8 = 0;
const BCD_DAS: u8 = 1;
const BCD_AAA: u8 = 2;
const BCD_AAS: u8 = 3;
const BCD_AAM: u8 = 4;
const BCD_AAD: u8 = 5;

/// Replace the flags in `m` with `f` (the rest of RFLAGS untouched).
fn put_flags(c: &mut Core<X86>, m: u64, f: u64) {
    let old = rflags(c);
    set_rflags(c, (old & !m) | (f & m));
}

/// Shifts and rotates with full flag semantics. `op` = kind (0 rol, 1 ror, 2 rcl, 3 rcr,
/// 4 shl, 5 shr, 6 sar) | size index << 4. Returns the result (zero-extended).
fn h_shift(c: &mut Core<X86>, _: &mut Bus, v: u64, count: u64, op: u64) -> HR {
    let s = ((op >> 4) & 3) as u32;
    let bits = 8u32 << s;
    let m = mask(s);
    let v = v & m;
    let cnt = (count & if s == 3 { 63 } else { 31 }) as u32;
    if cnt == 0 {
        return Ok(v);
    }
    let msb = |x: u64| (x >> (bits - 1)) & 1;
    let f = rflags(c);
    let cf_in = f & 1;
    match op & 15 {
        0 | 1 => {
            let n = cnt % bits;
            let r = if op & 15 == 0 {
                ((v << n) | (v >> ((bits - n) % bits))) & m
            } else {
                ((v >> n) | (v << ((bits - n) % bits))) & m
            };
            let r = if n == 0 { v } else { r };
            let (cf, of) = if op & 15 == 0 {
                let cf = r & 1;
                (cf, msb(r) ^ cf)
            } else {
                (msb(r), msb(r) ^ ((r >> (bits - 2)) & 1))
            };
            put_flags(c, fl::CF | fl::OF, cf | (of * fl::OF));
            Ok(r)
        }
        2 | 3 => {
            let n = match bits {
                8 => cnt % 9,
                16 => cnt % 17,
                _ => cnt,
            };
            let mut r = v;
            let mut cf = cf_in;
            let of;
            if op & 15 == 2 {
                for _ in 0..n {
                    let t = msb(r);
                    r = ((r << 1) | cf) & m;
                    cf = t;
                }
                of = msb(r) ^ cf;
            } else {
                of = msb(v) ^ cf_in;
                for _ in 0..n {
                    let t = r & 1;
                    r = (r >> 1) | (cf << (bits - 1));
                    cf = t;
                }
            }
            put_flags(c, fl::CF | fl::OF, cf | (of * fl::OF));
            Ok(r)
        }
        4 => {
            let r = if cnt >= 64 { 0 } else { (v << cnt) & m };
            let cf = if cnt > bits {
                0
            } else {
                (v >> (bits - cnt)) & 1
            };
            let of = msb(r) ^ cf;
            put_flags(c, fl::ARITH, cf | (of * fl::OF) | zsp(r, bits));
            Ok(r)
        }
        5 => {
            let r = v >> cnt;
            let cf = (v >> (cnt - 1)) & 1;
            let of = msb(v);
            put_flags(c, fl::ARITH, cf | (of * fl::OF) | zsp(r, bits));
            Ok(r)
        }
        _ => {
            let sv = ((v << (64 - bits)) as i64) >> (64 - bits);
            let r = (sv >> cnt) as u64 & m;
            let cf = ((sv >> (cnt - 1)) & 1) as u64;
            put_flags(c, fl::ARITH, cf | zsp(r, bits));
            Ok(r)
        }
    }
}

/// SHLD/SHRD: `a` = destination, `b` = source, `k` = count | size index << 8 | right << 16.
fn h_shxd(c: &mut Core<X86>, _: &mut Bus, a: u64, b: u64, k: u64) -> HR {
    let s = ((k >> 8) & 3) as u32;
    let bits = 8u32 << s;
    let m = mask(s);
    let (a, b) = (a & m, b & m);
    let cnt = (k & if s == 3 { 63 } else { 31 }) as u32;
    if cnt == 0 {
        return Ok(a);
    }
    let right = k & (1 << 16) != 0;
    let (r, cf) = if !right {
        let x = ((a as u128) << bits) | b as u128;
        // 16-bit counts above 16 pull in the destination again (as Intel does).
        let x = if bits == 16 {
            (x << 32) | (a as u128)
        } else {
            x
        };
        let tot = if bits == 16 { 64 } else { 2 * bits };
        let y = x << cnt;
        (
            ((y >> (tot - bits)) as u64) & m,
            ((x >> (tot - cnt)) & 1) as u64,
        )
    } else {
        let x = ((b as u128) << bits) | a as u128;
        let x = if bits == 16 {
            x | ((a as u128) << 32)
        } else {
            x
        };
        ((x >> cnt) as u64 & m, ((x >> (cnt - 1)) & 1) as u64)
    };
    let of = ((r ^ a) >> (bits - 1)) & 1;
    put_flags(c, fl::ARITH, cf | (of * fl::OF) | zsp(r, bits));
    Ok(r)
}

/// DIV/IDIV: `src` divisor, `k` = size index | signed << 4. Writes RAX/RDX.
fn h_div(c: &mut Core<X86>, _: &mut Bus, src: u64, k: u64, _: u64) -> HR {
    let s = (k & 3) as u32;
    let signed = k & 16 != 0;
    let bits = 8u32 << s;
    let m = mask(s);
    let rax = c.regs.0[RAX as usize];
    let rdx = c.regs.0[RDX as usize];
    let divisor = src & m;
    if divisor == 0 {
        return Err(raise(c, vec::DE, None));
    }
    let dividend: u128 = match s {
        0 => (rax & 0xffff) as u128,
        3 => ((rdx as u128) << 64) | rax as u128,
        _ => (((rdx & m) as u128) << bits) | (rax & m) as u128,
    };
    let (q, r) = if !signed {
        let q = dividend / divisor as u128;
        if q > m as u128 {
            return Err(raise(c, vec::DE, None));
        }
        (q as u64, (dividend % divisor as u128) as u64)
    } else {
        let dbits = 2 * bits;
        let sd = ((dividend << (128 - dbits)) as i128) >> (128 - dbits);
        let sv = ((divisor << (64 - bits)) as i64 >> (64 - bits)) as i128;
        let (Some(q), Some(r)) = (sd.checked_div(sv), sd.checked_rem(sv)) else {
            return Err(raise(c, vec::DE, None));
        };
        let lim = 1i128 << (bits - 1);
        if q >= lim || q < -lim {
            return Err(raise(c, vec::DE, None));
        }
        (q as u64 & m, r as u64 & m)
    };
    let regs = &mut c.regs.0;
    match s {
        0 => regs[RAX as usize] = (rax & !0xffff) | q | (r << 8),
        1 => {
            regs[RAX as usize] = (rax & !0xffff) | q;
            regs[RDX as usize] = (rdx & !0xffff) | r;
        }
        _ => {
            regs[RAX as usize] = q;
            regs[RDX as usize] = r;
        }
    }
    Ok(0)
}

fn h_pdep(_: &mut Core<X86>, _: &mut Bus, src: u64, msk: u64, _: u64) -> HR {
    let (mut r, mut k, mut mm) = (0u64, 0u32, msk);
    while mm != 0 {
        let b = mm.trailing_zeros();
        if (src >> k) & 1 != 0 {
            r |= 1 << b;
        }
        k += 1;
        mm &= mm - 1;
    }
    Ok(r)
}

fn h_pext(_: &mut Core<X86>, _: &mut Bus, src: u64, msk: u64, _: u64) -> HR {
    let (mut r, mut k, mut mm) = (0u64, 0u32, msk);
    while mm != 0 {
        let b = mm.trailing_zeros();
        if (src >> b) & 1 != 0 {
            r |= 1 << k;
        }
        k += 1;
        mm &= mm - 1;
    }
    Ok(r)
}

/// BEXTR (src zero-extended, ctl, bits).
fn h_bextr(_: &mut Core<X86>, _: &mut Bus, src: u64, ctl: u64, bits: u64) -> HR {
    let start = ctl & 0xff;
    let len = (ctl >> 8) & 0xff;
    if start >= bits {
        return Ok(0);
    }
    let v = src >> start;
    Ok(if len >= 64 {
        v
    } else {
        v & ((1u64 << len) - 1)
    })
}

/// CMPXCHG8B (`w` = 0) / CMPXCHG16B (`w` = 1) at linear address `addr`.
fn h_cmpxchg_nb(c: &mut Core<X86>, bus: &mut Bus, addr: u64, w: u64, _: u64) -> HR {
    let mmu = if c.guest.cpl == 3 { 1 } else { 0 };
    let regs = c.regs.0;
    let (rax, rdx, rbx, rcx) = (
        regs[RAX as usize],
        regs[RDX as usize],
        regs[RBX as usize],
        regs[RCX as usize],
    );
    let eq;
    if w == 0 {
        let v = c.read(bus, addr, 8, mmu)?;
        let cmp = (rax & 0xffff_ffff) | (rdx << 32);
        eq = v == cmp;
        let new = if eq {
            (rbx & 0xffff_ffff) | (rcx << 32)
        } else {
            v
        };
        c.write(bus, addr, 8, mmu, new)?;
        if !eq {
            c.regs.0[RAX as usize] = v & 0xffff_ffff;
            c.regs.0[RDX as usize] = v >> 32;
        }
    } else {
        if addr & 15 != 0 {
            return Err(raise(c, vec::GP, Some(0)));
        }
        let lo = c.read(bus, addr, 8, mmu)?;
        let hi = c.read(bus, addr.wrapping_add(8), 8, mmu)?;
        eq = lo == rax && hi == rdx;
        let (nl, nh) = if eq { (rbx, rcx) } else { (lo, hi) };
        // Same 16-byte aligned block: one page, so the second write cannot fault after the first.
        c.write(bus, addr, 8, mmu, nl)?;
        c.write(bus, addr.wrapping_add(8), 8, mmu, nh)?;
        if !eq {
            c.regs.0[RAX as usize] = lo;
            c.regs.0[RDX as usize] = hi;
        }
    }
    put_flags(c, fl::ZF, if eq { fl::ZF } else { 0 });
    Ok(0)
}

impl Tr<'_> {
    fn k(&mut self, v: u64) -> Slot {
        self.b.konst(v)
    }

    /// A copy of `s` that later register writes cannot change.
    fn snap(&mut self, s: Slot) -> Slot {
        if s < FIRST_TEMP {
            let d = self.b.temp();
            self.b.mov(d, s);
            d
        } else {
            s
        }
    }

    /// Write `v` to `loc` only when `cnd` != 0 (registers untouched otherwise, including
    /// the 32-bit zero-extension; memory is always written back).
    fn cond_write(&mut self, loc: Loc, size: usize, cnd: Slot, v: Slot) {
        match loc {
            Loc::Reg { slot, hi8: false } if size >= 4 => {
                let nv = if size == 4 { self.b.un(mk::zx32, v) } else { v };
                let d = self.b.temp();
                self.b.push(Op::Select {
                    d,
                    c: cnd,
                    a: nv,
                    b: slot,
                });
                self.b.mov(slot, d);
            }
            _ => {
                let old = self.read_raw(loc, size);
                let d = self.b.temp();
                self.b.push(Op::Select {
                    d,
                    c: cnd,
                    a: v,
                    b: old,
                });
                self.write(loc, size, d);
            }
        }
    }

    /// Set the lazy state to explicit flags `f` (all six arithmetic flags).
    fn set_eflags(&mut self, f: Slot) {
        let z = self.b.konst(0);
        self.set_cc(CC_EFLAGS, z, f, None);
    }
}

fn reg_loc(slot: Slot) -> Loc {
    Loc::Reg { slot, hi8: false }
}

/// The counter register width of LOOP/JrCXZ (from the address size).
fn counter_size(t: &Tr) -> usize {
    match t.insn.mnemonic() {
        Mnemonic::Jrcxz => return 8,
        Mnemonic::Jecxz => return 4,
        Mnemonic::Jcxz => return 2,
        _ => {}
    }
    let name = format!("{:?}", t.insn.code());
    if name.ends_with("RCX") {
        8
    } else if name.ends_with("ECX") {
        4
    } else {
        2
    }
}

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let i = t.insn;
    let m = i.mnemonic();
    use Mnemonic as M;
    Some(match m {
        M::Shl | M::Sal | M::Shr | M::Sar => shift(t, m),
        M::Rol | M::Ror if rotate_imm(t, m) => Flow::Next,
        M::Rol | M::Ror | M::Rcl | M::Rcr => {
            let size = t.op_size(0);
            let s = size_ix(size);
            let kind = match m {
                M::Rol => 0,
                M::Ror => 1,
                M::Rcl => 2,
                _ => 3,
            };
            let cnt = count_operand(t);
            let dst = t.loc(0);
            let v = t.read(dst, size);
            let op = t.k(kind | (s as u64) << 4);
            let r = t.call(AluH::SHIFT.id(), v, cnt, op);
            t.write(dst, size, r);
            t.cc_dynamic();
            Flow::Next
        }
        M::Shld | M::Shrd => {
            let size = t.op_size(0);
            let s = size_ix(size) as u64;
            let cnt = count_operand(t);
            let src = t.loc(1);
            let b = t.read(src, size);
            let dst = t.loc(0);
            let a = t.read(dst, size);
            let kk = t.k((s << 8) | if m == M::Shrd { 1 << 16 } else { 0 });
            let c = t.b.bin(mk::or, cnt, kk);
            let r = t.call(AluH::SHXD.id(), a, b, c);
            t.write(dst, size, r);
            t.cc_dynamic();
            Flow::Next
        }
        M::Mul | M::Imul if i.op_count() == 1 => mul1(t, m == M::Imul),
        M::Imul => {
            let size = t.op_size(0);
            let (l1, l2) = if i.op_count() == 2 { (0, 1) } else { (1, 2) };
            let la = t.loc(l1);
            let lb = t.loc(l2);
            let a = t.read_sx(la, size);
            let b = t.read_sx(
                lb,
                if matches!(lb, Loc::Imm(_)) {
                    t.op_size(l2).min(size)
                } else {
                    size
                },
            );
            let lo = t.b.bin(mk::mul, a, b);
            let ovf = if size == 8 {
                let hi = t.b.bin(mk::mulhs, a, b);
                let sg = t.b.temp();
                t.b.push(Op::SarI {
                    d: sg,
                    a: lo,
                    imm: 63,
                });
                t.b.bin(mk::sub, hi, sg)
            } else {
                let sl = t.sx(lo, size);
                t.b.bin(mk::sub, lo, sl)
            };
            let dst = t.loc(0);
            let d = t.write(dst, size, lo);
            t.set_cc(cc(CcKind::Mul, size_ix(size)), d, ovf, None);
            Flow::Next
        }
        M::Div | M::Idiv => {
            let size = t.op_size(0);
            let l = t.loc(0);
            let v = t.read(l, size);
            let k = t.k(size_ix(size) as u64 | if m == M::Idiv { 16 } else { 0 });
            let z = t.k(0);
            t.call(AluH::DIV.id(), v, k, z);
            Flow::Next
        }
        M::Bt | M::Bts | M::Btr | M::Btc => bt(t, m),
        M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt | M::Popcnt => {
            let size = t.op_size(0);
            let bits = (size * 8) as u64;
            let src = t.loc(1);
            let v0 = t.read(src, size);
            let v = t.snap(v0);
            let dst = t.loc(0);
            let z = t.k(0);
            match m {
                M::Bsf | M::Bsr => {
                    let r = if m == M::Bsf {
                        t.b.un(mk::ctz, v)
                    } else {
                        let c = t.b.un(mk::clz, v);
                        let k63 = t.k(63);
                        t.b.bin(mk::sub, k63, c)
                    };
                    let nz = t.b.setcond(Cond::Ne, v, z);
                    t.cond_write(dst, size, nz, r);
                    let zr = t.zx(r, size);
                    t.set_cc(cc(CcKind::Popcnt, size_ix(size)), zr, v, None);
                }
                M::Popcnt => {
                    let r = t.b.un(mk::popcnt, v);
                    let d = t.write(dst, size, r);
                    t.set_cc(cc(CcKind::Popcnt, size_ix(size)), d, v, None);
                }
                _ => {
                    let r = if m == M::Tzcnt {
                        let c = t.b.un(mk::ctz, v);
                        let kb = t.k(bits);
                        let is0 = t.b.setcond(Cond::Eq, v, z);
                        let d = t.b.temp();
                        t.b.push(Op::Select {
                            d,
                            c: is0,
                            a: kb,
                            b: c,
                        });
                        d
                    } else {
                        let c = t.b.un(mk::clz, v);
                        t.b.addi(c, bits as i64 - 64)
                    };
                    let cf = t.b.setcond(Cond::Eq, v, z);
                    let d = t.write(dst, size, r);
                    t.set_cc(cc(CcKind::Bmi, size_ix(size)), d, cf, None);
                }
            }
            Flow::Next
        }
        M::Bswap => {
            let size = t.op_size(0);
            let dst = t.loc(0);
            let Loc::Reg { slot, .. } = dst else {
                return None;
            };
            match size {
                8 => {
                    let r = t.b.un(mk::bswap64, slot);
                    t.b.mov(slot, r);
                }
                4 => {
                    let r = t.b.un(mk::bswap32, slot);
                    t.b.mov(slot, r);
                }
                _ => {
                    let z = t.k(0);
                    t.write(dst, 2, z);
                }
            }
            Flow::Next
        }
        M::Xchg => {
            let size = t.op_size(0);
            let l0 = t.loc(0);
            let l1 = t.loc(1);
            let a = t.read_raw(l0, size);
            let b = t.read_raw(l1, size);
            // Copy the register value first (the memory store below may reuse nothing).
            let a2 = t.b.temp();
            t.b.mov(a2, a);
            let b2 = t.b.temp();
            t.b.mov(b2, b);
            if matches!(l1, Loc::Mem { .. }) {
                t.write(l1, size, a2);
                t.write(l0, size, b2);
            } else {
                t.write(l0, size, b2);
                t.write(l1, size, a2);
            }
            Flow::Next
        }
        M::Cmpxchg => {
            let size = t.op_size(0);
            let dst = t.loc(0);
            let src = t.loc(1);
            let d0 = t.read(dst, size);
            let d = t.snap(d0);
            let s = t.read_raw(src, size);
            let acc = reg_loc(RAX);
            let a0 = t.read(acc, size);
            let a = t.snap(a0);
            let eq = t.b.setcond(Cond::Eq, a, d);
            let ne = t.b.setcond(Cond::Ne, a, d);
            let r = t.b.bin(mk::sub, a, d);
            let rz = t.zx(r, size);
            // Memory is written back either way; registers only when chosen.
            t.cond_write(dst, size, eq, s);
            t.cond_write(acc, size, ne, d);
            t.set_cc(cc(CcKind::Sub, size_ix(size)), rz, d, Some(a));
            Flow::Next
        }
        M::Cmpxchg8b | M::Cmpxchg16b => {
            let (a, disp) = t.ea();
            let ad = t.b.addi(a, disp as i64);
            let w = t.k((m == M::Cmpxchg16b) as u64);
            let z = t.k(0);
            t.call(AluH::CMPXCHG_NB.id(), ad, w, z);
            t.cc_dynamic();
            Flow::Next
        }
        M::Xadd => {
            let size = t.op_size(0);
            let dst = t.loc(0);
            let src = t.loc(1);
            let d = t.read(dst, size);
            let s = t.read_raw(src, size);
            let sum = t.b.bin(mk::add, d, s);
            let sz = t.zx(s, size);
            let sz2 = t.b.temp();
            t.b.mov(sz2, sz);
            let dz = if matches!(dst, Loc::Mem { .. }) {
                let dz = t.write(dst, size, sum);
                t.write(src, size, d);
                dz
            } else {
                t.write(src, size, d);
                t.write(dst, size, sum)
            };
            t.set_cc(cc(CcKind::Add, size_ix(size)), dz, sz2, None);
            Flow::Next
        }
        M::Movbe => {
            let size = t.op_size(0);
            let src = t.loc(1);
            let v = t.read(src, size);
            let r = match size {
                8 => t.b.un(mk::bswap64, v),
                4 => t.b.un(mk::bswap32, v),
                _ => {
                    let x = t.b.un(mk::bswap64, v);
                    let d = t.b.temp();
                    t.b.push(Op::ShrI { d, a: x, imm: 48 });
                    d
                }
            };
            let dst = t.loc(0);
            t.write(dst, size, r);
            Flow::Next
        }
        M::Lahf => {
            let f = t.arith_flags();
            let ah = t.b.temp();
            t.b.push(Op::OrI {
                d: ah,
                a: f,
                imm: 2,
            });
            t.b.push(Op::Deposit {
                d: RAX,
                a: RAX,
                b: ah,
                pos: 8,
                len: 8,
            });
            Flow::Next
        }
        M::Daa | M::Das | M::Aaa | M::Aas | M::Aam | M::Aad => {
            let op = match m {
                M::Daa => BCD_DAA,
                M::Das => BCD_DAS,
                M::Aaa => BCD_AAA,
                M::Aas => BCD_AAS,
                M::Aam => BCD_AAM,
                _ => BCD_AAD,
            } as u64;
            let base = if matches!(m, M::Aam | M::Aad) {
                i.immediate(0) & 0xff
            } else {
                0
            };
            let f = t.arith_flags();
            let ax = t.read_reg(Register::AX);
            let k = t.b.konst(op | base << 8);
            let r = t.call(AluH::BCD.id(), ax, f, k);
            let nax = word_then_flags(t, r);
            t.write_reg(Register::AX, nax);
            Flow::Next
        }
        M::Arpl => {
            if t.hf & crate::hflags::PE == 0 {
                return Some(t.raise(vec::UD, None));
            }
            let dst = t.loc(0);
            let d = t.read(dst, 2);
            let src = t.read_reg(i.op1_register());
            let f = t.arith_flags();
            let r = t.call(AluH::ARPL.id(), d, src, f);
            let nd = word_then_flags(t, r);
            t.write(dst, 2, nd);
            Flow::Next
        }
        M::Sahf => {
            let f = t.arith_flags();
            let ah = t.b.temp();
            t.b.push(Op::Extract {
                d: ah,
                a: RAX,
                pos: 8,
                len: 8,
            });
            let ah2 = t.b.temp();
            t.b.push(Op::AndI {
                d: ah2,
                a: ah,
                imm: 0xd5,
            });
            let of = t.b.temp();
            t.b.push(Op::AndI {
                d: of,
                a: f,
                imm: fl::OF as i32,
            });
            let nf = t.b.bin(mk::or, ah2, of);
            t.set_eflags(nf);
            Flow::Next
        }
        M::Xlatb => {
            let base = i.memory_base();
            let (bs, _) = gpr(base)?;
            let asz = base.size();
            let al = t.b.un(mk::zx8, RAX);
            let sum = t.b.bin(mk::add, bs, al);
            let mut a = t.zx(sum, asz);
            let seg = match i.memory_segment() {
                Register::FS => Some(FS_BASE),
                Register::GS => Some(GS_BASE),
                _ if t.long64() || t.hf & crate::hflags::ADDSEG == 0 => None,
                Register::ES => Some(ES_BASE),
                Register::CS => Some(CS_BASE),
                Register::SS => Some(SS_BASE),
                _ => Some(DS_BASE),
            };
            if let Some(sg) = seg {
                a = t.b.bin(mk::add, a, sg);
                if !t.long64() {
                    a = t.b.un(mk::zx32, a);
                }
            }
            let v = t.ld(1, a, 0);
            t.write(
                Loc::Reg {
                    slot: RAX,
                    hi8: false,
                },
                1,
                v,
            );
            Flow::Next
        }
        M::Enter => enter(t),
        M::Loop | M::Loope | M::Loopne | M::Jrcxz | M::Jecxz | M::Jcxz => {
            let w = counter_size(t);
            let z = t.k(0);
            let target = i.near_branch_target();
            let test = if matches!(m, M::Jrcxz | M::Jecxz | M::Jcxz) {
                let c = t.zx(RCX, w);
                super::base::Test {
                    a: c,
                    b: z,
                    cond: Cond::Eq,
                }
            } else {
                let zf = match m {
                    M::Loope => Some(t.setcc_value(ConditionCode::e)),
                    M::Loopne => Some(t.setcc_value(ConditionCode::ne)),
                    _ => None,
                };
                let n = t.b.addi(RCX, -1);
                let d = t.write(reg_loc(RCX), w, n);
                let nz = t.b.setcond(Cond::Ne, d, z);
                let c = match zf {
                    Some(f) => t.b.bin(mk::and, nz, f),
                    None => nz,
                };
                super::base::Test {
                    a: c,
                    b: z,
                    cond: Cond::Ne,
                }
            };
            t.branch(test, target)
        }
        M::Adcx | M::Adox => {
            let size = t.op_size(0);
            let bit = if m == M::Adcx { 0 } else { 11 };
            let f = t.arith_flags();
            let cin = t.b.temp();
            t.b.push(Op::Extract {
                d: cin,
                a: f,
                pos: bit,
                len: 1,
            });
            let src = t.loc(1);
            let b = t.read(src, size);
            let dst = t.loc(0);
            let a = t.read(dst, size);
            let s1 = t.b.bin(mk::add, a, b);
            let r = t.b.bin(mk::add, s1, cin);
            let cout = if size == 8 {
                let c1 = t.b.setcond(Cond::LtU, s1, a);
                let c2 = t.b.setcond(Cond::LtU, r, s1);
                t.b.bin(mk::or, c1, c2)
            } else {
                let d = t.b.temp();
                t.b.push(Op::ShrI { d, a: r, imm: 32 });
                d
            };
            t.write(dst, size, r);
            let nf = t.b.temp();
            t.b.push(Op::Deposit {
                d: nf,
                a: f,
                b: cout,
                pos: bit,
                len: 1,
            });
            t.set_eflags(nf);
            Flow::Next
        }
        M::Andn | M::Bextr | M::Blsi | M::Blsmsk | M::Blsr | M::Bzhi => bmi(t, m),
        M::Mulx => {
            let size = t.op_size(0);
            let src = t.loc(2);
            let b = t.read(src, size);
            let a = t.zx(RDX, size);
            let (lo, hi) = if size == 8 {
                (t.b.bin(mk::mul, a, b), t.b.bin(mk::mulhu, a, b))
            } else {
                let p = t.b.bin(mk::mul, a, b);
                let h = t.b.temp();
                t.b.push(Op::ShrI {
                    d: h,
                    a: p,
                    imm: 32,
                });
                (p, h)
            };
            let l1 = t.loc(1);
            t.write(l1, size, lo);
            let l0 = t.loc(0);
            t.write(l0, size, hi);
            Flow::Next
        }
        M::Pdep | M::Pext => {
            let size = t.op_size(0);
            let l1 = t.loc(1);
            let a = t.read(l1, size);
            let l2 = t.loc(2);
            let b = t.read(l2, size);
            let z = t.k(0);
            let id = if m == M::Pdep { AluH::PDEP } else { AluH::PEXT };
            let r = t.call(id.id(), a, b, z);
            let l0 = t.loc(0);
            t.write(l0, size, r);
            Flow::Next
        }
        M::Rorx | M::Sarx | M::Shlx | M::Shrx => {
            let size = t.op_size(0);
            let l1 = t.loc(1);
            let cm = if size == 8 { 63 } else { 31 };
            let r = if m == M::Rorx {
                let v = t.read(l1, size);
                let n = (i.immediate(2) & cm) as u8;
                let x = if size == 4 {
                    let h = t.b.temp();
                    t.b.push(Op::ShlI {
                        d: h,
                        a: v,
                        imm: 32,
                    });
                    t.b.bin(mk::or, v, h)
                } else {
                    v
                };
                let n = t.k(n as u64);
                t.b.bin(mk::rotr, x, n)
            } else {
                let v = if m == M::Sarx {
                    t.read_sx(l1, size)
                } else {
                    t.read(l1, size)
                };
                let l2 = t.loc(2);
                let c = t.read_raw(l2, size);
                let cmk = t.b.temp();
                t.b.push(Op::AndI {
                    d: cmk,
                    a: c,
                    imm: cm as i32,
                });
                let f = match m {
                    M::Sarx => mk::sar,
                    M::Shlx => mk::shl,
                    _ => mk::shr,
                };
                t.b.bin(f, v, cmk)
            };
            let l0 = t.loc(0);
            t.write(l0, size, r);
            Flow::Next
        }
        _ => return None,
    })
}

/// The count operand of a shift/rotate (op 1 or 2: CL, an immediate, or 1), as a slot.
fn count_operand(t: &mut Tr) -> Slot {
    let i = t.insn;
    if i.op_count() < 2 {
        return t.k(1);
    }
    let idx = i.op_count() - 1;
    match i.op_kind(idx) {
        OpKind::Register => t.b.un(mk::zx8, RCX),
        _ => t.k(i.immediate(idx) & 0xff),
    }
}

/// ROL/ROR by an immediate count, inline (the helper's semantics: only CF and OF change;
/// OF is computed with the count-1 formula for every count). False for a count in CL.
fn rotate_imm(t: &mut Tr, m: Mnemonic) -> bool {
    let i = t.insn;
    if i.op_count() >= 2 && i.op_kind(1) == OpKind::Register {
        return false;
    }
    let size = t.op_size(0);
    let bits = 8 * size as u64;
    let cnt = if i.op_count() < 2 {
        1
    } else {
        i.immediate(1) & 0xff & if size == 8 { 63 } else { 31 }
    };
    let dst = t.loc(0);
    let v = t.read(dst, size);
    if cnt == 0 {
        // Nothing changes but the zero-extension of a 32-bit destination.
        t.write(dst, size, v);
        return true;
    }
    let n = cnt % bits;
    let left = m == Mnemonic::Rol;
    let r = if n == 0 {
        v
    } else if size >= 4 {
        let d = t.b.temp();
        let imm = if left { n } else { bits - n } as u8;
        t.b.push(if size == 8 {
            Op::RotlI { d, a: v, imm }
        } else {
            Op::Rotl32I { d, a: v, imm }
        });
        d
    } else {
        let (ls, rs) = if left { (n, bits - n) } else { (bits - n, n) };
        let hi = t.b.temp();
        t.b.push(Op::ShlI {
            d: hi,
            a: v,
            imm: ls as u8,
        });
        let lo = t.b.temp();
        t.b.push(Op::ShrI {
            d: lo,
            a: v,
            imm: rs as u8,
        });
        // Bits above `size` are junk: the write and the flag bits below only look at the
        // low `size` bytes.
        t.b.bin(mk::or, hi, lo)
    };
    t.write(dst, size, r);
    if t.flags_dead {
        // Later instructions of the block overwrite all flags before anything sees them.
        return true;
    }
    // New CF and OF from the result.
    let msb = t.b.temp();
    t.b.push(Op::Extract {
        d: msb,
        a: r,
        pos: (bits - 1) as u8,
        len: 1,
    });
    let (cf, other) = if left {
        let cf = t.b.temp();
        t.b.push(Op::AndI {
            d: cf,
            a: r,
            imm: 1,
        });
        (cf, cf)
    } else {
        let b2 = t.b.temp();
        t.b.push(Op::Extract {
            d: b2,
            a: r,
            pos: (bits - 2) as u8,
            len: 1,
        });
        (msb, b2)
    };
    let of = t.b.bin(mk::xor, msb, other);
    let of_bit = t.b.temp();
    t.b.push(Op::ShlI {
        d: of_bit,
        a: of,
        imm: 11,
    });
    let old = t.arith_flags();
    let kept = t.b.temp();
    t.b.push(Op::AndI {
        d: kept,
        a: old,
        imm: !((fl::CF | fl::OF) as i32),
    });
    let f1 = t.b.bin(mk::or, kept, cf);
    let f2 = t.b.bin(mk::or, f1, of_bit);
    t.b.mov(CC_SRC, f2);
    t.cc = Some(crate::flags::CC_EFLAGS);
    t.cc_dirty = true;
    true
}

fn shift(t: &mut Tr, m: Mnemonic) -> Flow {
    let size = t.op_size(0);
    let s = size_ix(size);
    let cmask: u64 = if size == 8 { 63 } else { 31 };
    let i = t.insn;
    let imm = if i.op_count() < 2 {
        Some(1)
    } else if i.op_kind(1) == OpKind::Register {
        None
    } else {
        Some(i.immediate(1) & cmask)
    };
    let dst = t.loc(0);
    let right = m == Mnemonic::Shr || m == Mnemonic::Sar;
    let v = if m == Mnemonic::Sar {
        t.read_sx(dst, size)
    } else {
        t.read(dst, size)
    };
    let kind = if right { CcKind::Sar } else { CcKind::Shl };
    let f = match m {
        Mnemonic::Shr => mk::shr,
        Mnemonic::Sar => mk::sar,
        _ => mk::shl,
    };
    match imm {
        Some(0) => {
            t.write(dst, size, v);
        }
        Some(n) => {
            let kn = t.k(n);
            let r = t.b.bin(f, v, kn);
            let kn1 = t.k(n - 1);
            let pre = t.b.bin(f, v, kn1);
            let d = t.write(dst, size, r);
            t.set_cc(cc(kind, s), d, pre, None);
        }
        None => {
            let cnt = t.b.temp();
            t.b.push(Op::AndI {
                d: cnt,
                a: RCX,
                imm: cmask as i32,
            });
            let r = t.b.bin(f, v, cnt);
            let c1 = t.b.addi(cnt, -1);
            // count 0 → c1 = -1 (mod 64 = 63): unused, the flags stay.
            let pre = t.b.bin(f, v, c1);
            let d = t.write(dst, size, r);
            t.sync_cc();
            let z = t.k(0);
            let nz = t.b.setcond(Cond::Ne, cnt, z);
            let op = t.k(cc(kind, s) as u64);
            for (slot, val) in [(CC_DST, d), (CC_SRC, pre), (CC_OP, op)] {
                let x = t.b.temp();
                t.b.push(Op::Select {
                    d: x,
                    c: nz,
                    a: val,
                    b: slot,
                });
                t.b.mov(slot, x);
            }
            t.cc_dynamic();
        }
    }
    Flow::Next
}

fn mul1(t: &mut Tr, signed: bool) -> Flow {
    let size = t.op_size(0);
    let s = size_ix(size);
    let src = t.loc(0);
    let (b, a) = if signed {
        (t.read_sx(src, size), t.sx(RAX, size))
    } else {
        (t.read(src, size), t.zx(RAX, size))
    };
    let lo;
    let ovf;
    let hi;
    if size == 8 {
        lo = t.b.bin(mk::mul, a, b);
        hi = t.b.bin(if signed { mk::mulhs } else { mk::mulhu }, a, b);
        ovf = if signed {
            let sg = t.b.temp();
            t.b.push(Op::SarI {
                d: sg,
                a: lo,
                imm: 63,
            });
            t.b.bin(mk::sub, hi, sg)
        } else {
            hi
        };
    } else {
        let p = t.b.bin(mk::mul, a, b);
        lo = p;
        let h = t.b.temp();
        t.b.push(Op::ShrI {
            d: h,
            a: p,
            imm: (size * 8) as u8,
        });
        hi = h;
        ovf = if signed {
            let sl = t.sx(p, size);
            t.b.bin(mk::sub, p, sl)
        } else {
            h
        };
    }
    let d = t.zx(lo, size);
    if size == 1 {
        t.write(reg_loc(RAX), 2, lo);
    } else {
        t.write(reg_loc(RAX), size, lo);
        t.write(reg_loc(RDX), size, hi);
    }
    t.set_cc(cc(CcKind::Mul, s), d, ovf, None);
    Flow::Next
}

fn bt(t: &mut Tr, m: Mnemonic) -> Flow {
    let size = t.op_size(0);
    let s = size_ix(size);
    let bits = (size * 8) as u64;
    let i = t.insn;
    let off = match t.loc(1) {
        Loc::Imm(v) => Err(v & (bits - 1)),
        l => Ok(t.read_raw(l, size)),
    };
    let dst = match (t.loc(0), off) {
        (Loc::Mem { a, disp }, Ok(o)) => {
            // The bit offset may reach outside the operand: move the address.
            let so = t.sx(o, size);
            let idx = t.b.temp();
            t.b.push(Op::SarI {
                d: idx,
                a: so,
                imm: (3 + s) as u8,
            });
            let by = t.b.temp();
            t.b.push(Op::ShlI {
                d: by,
                a: idx,
                imm: s as u8,
            });
            let na = t.b.bin(mk::add, a, by);
            let _ = i;
            Loc::Mem { a: na, disp }
        }
        (l, _) => l,
    };
    let pos = match off {
        Err(v) => t.k(v),
        Ok(o) => {
            let d = t.b.temp();
            t.b.push(Op::AndI {
                d,
                a: o,
                imm: (bits - 1) as i32,
            });
            d
        }
    };
    let v = t.read(dst, size);
    let sh = t.b.bin(mk::shr, v, pos);
    let bit = t.b.temp();
    t.b.push(Op::AndI {
        d: bit,
        a: sh,
        imm: 1,
    });
    if m != Mnemonic::Bt {
        let one = t.k(1);
        let mb = t.b.bin(mk::shl, one, pos);
        let r = match m {
            Mnemonic::Bts => t.b.bin(mk::or, v, mb),
            Mnemonic::Btc => t.b.bin(mk::xor, v, mb),
            _ => {
                let nm = t.b.un(mk::not, mb);
                t.b.bin(mk::and, v, nm)
            }
        };
        t.write(dst, size, r);
    }
    let f = t.arith_flags();
    let nf = t.b.temp();
    t.b.push(Op::Deposit {
        d: nf,
        a: f,
        b: bit,
        pos: 0,
        len: 1,
    });
    t.set_eflags(nf);
    Flow::Next
}

fn bmi(t: &mut Tr, m: Mnemonic) -> Flow {
    use Mnemonic as M;
    let size = t.op_size(0);
    let s = size_ix(size);
    let bits = (size * 8) as u64;
    let z = t.k(0);
    let (r, cf) = match m {
        M::Andn => {
            let l1 = t.loc(1);
            let a = t.read(l1, size);
            let l2 = t.loc(2);
            let b = t.read(l2, size);
            let na = t.b.un(mk::not, a);
            (t.b.bin(mk::and, na, b), z)
        }
        M::Bextr => {
            let l1 = t.loc(1);
            let a = t.read(l1, size);
            let l2 = t.loc(2);
            let c = t.read(l2, size);
            let kb = t.k(bits);
            (t.call(AluH::BEXTR.id(), a, c, kb), z)
        }
        M::Bzhi => {
            let l1 = t.loc(1);
            let a = t.read(l1, size);
            let l2 = t.loc(2);
            let c = t.read(l2, size);
            let n = t.b.un(mk::zx8, c);
            let one = t.k(1);
            let mb = t.b.bin(mk::shl, one, n);
            let mm = t.b.addi(mb, -1);
            let masked = t.b.bin(mk::and, a, mm);
            let kb = t.k(bits);
            let inr = t.b.setcond(Cond::LtU, n, kb);
            let d = t.b.temp();
            t.b.push(Op::Select {
                d,
                c: inr,
                a: masked,
                b: a,
            });
            let kb1 = t.k(bits - 1);
            (d, t.b.setcond(Cond::GtU, n, kb1))
        }
        _ => {
            let l1 = t.loc(1);
            let a = t.read(l1, size);
            let am1 = t.b.addi(a, -1);
            match m {
                M::Blsi => {
                    let na = t.b.un(mk::neg, a);
                    (t.b.bin(mk::and, na, a), t.b.setcond(Cond::Ne, a, z))
                }
                M::Blsmsk => (t.b.bin(mk::xor, am1, a), t.b.setcond(Cond::Eq, a, z)),
                _ => (t.b.bin(mk::and, am1, a), t.b.setcond(Cond::Eq, a, z)),
            }
        }
    };
    let l0 = t.loc(0);
    let d = t.write(l0, size, r);
    t.set_cc(cc(CcKind::Bmi, s), d, cf, None);
    Flow::Next
}

fn enter(t: &mut Tr) -> Flow {
    let i = t.insn;
    // (iced's stack increment for ENTER includes the allocation: use the operand size.)
    let name = format!("{:?}", i.code());
    let size = if name.starts_with("Enterq") {
        8
    } else if name.starts_with("Enterd") {
        4
    } else {
        2
    };
    let alloc = i.immediate(0) & 0xffff;
    let level = i.immediate(1) & 31;
    let w = t.stack_width();
    // Loads of the outer frame pointers first (they may fault), then the pushes.
    let mut outer = Vec::new();
    for k in 1..level {
        let a = t.b.addi(RBP, -((k * size as u64) as i64));
        let a = t.zx(a, w);
        outer.push(t.ld(size, a, 0));
    }
    let rbp = t.b.temp();
    t.b.mov(rbp, RBP);
    t.push(rbp, size);
    let frame = t.b.temp();
    t.b.mov(frame, RSP);
    for v in outer {
        t.push(v, size);
    }
    if level > 0 {
        t.push(frame, size);
    }
    t.write(reg_loc(RBP), size, frame);
    t.add_sp(-(alloc as i64));
    Flow::Next
}
