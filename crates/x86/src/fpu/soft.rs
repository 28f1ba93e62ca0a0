//! A small soft-float core shared by SSE and the x87: values are unpacked to
//! (sign, exponent, 64-bit significand), operated on exactly in integer arithmetic, and rounded
//! once with IEEE 754 rules (four rounding modes, tininess detected after rounding as x86 does,
//! flush-to-zero, the six x86 exception flags).
//!
//! The precision `p` and the exponent range are independent ([`Fmt`]), so the same code serves
//! single/double (SSE) and extended precision with the x87's precision control.

/// Exception flag bits, in the MXCSR / x87 status word order.
pub const IE: u32 = 1;
pub const DE: u32 = 2;
pub const ZE: u32 = 4;
pub const OE: u32 = 8;
pub const UE: u32 = 16;
pub const PE: u32 = 32;

/// Rounding mode (the RC field of MXCSR / FCW).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rm {
    Near,
    Down,
    Up,
    Zero,
}

impl Rm {
    pub fn from_rc(rc: u32) -> Rm {
        match rc & 3 {
            0 => Rm::Near,
            1 => Rm::Down,
            2 => Rm::Up,
            _ => Rm::Zero,
        }
    }
}

/// A format: precision (significand bits including the integer bit) and exponent range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    pub p: u32,
    pub emin: i32,
    pub emax: i32,
    pub bias: i32,
}

pub const F32: Fmt = Fmt {
    p: 24,
    emin: -126,
    emax: 127,
    bias: 127,
};
pub const F64: Fmt = Fmt {
    p: 53,
    emin: -1022,
    emax: 1023,
    bias: 1023,
};
pub const F80: Fmt = Fmt {
    p: 64,
    emin: -16382,
    emax: 16383,
    bias: 16383,
};

/// An unpacked value. Finite nonzero: `m * 2^(e-63)` with bit 63 of `m` set.
/// NaN: `m` is the significand with the integer bit set; bit 62 is the quiet bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    Zero(bool),
    Fin { s: bool, e: i32, m: u64 },
    Inf(bool),
    Nan { s: bool, m: u64 },
}

/// The default ("indefinite") QNaN.
pub const DEFAULT_NAN: Val = Val::Nan {
    s: true,
    m: 0xc000_0000_0000_0000,
};

impl Val {
    pub fn sign(self) -> bool {
        match self {
            Val::Zero(s) | Val::Inf(s) => s,
            Val::Fin { s, .. } | Val::Nan { s, .. } => s,
        }
    }
    pub fn is_nan(self) -> bool {
        matches!(self, Val::Nan { .. })
    }
    pub fn is_snan(self) -> bool {
        matches!(self, Val::Nan { m, .. } if m & (1 << 62) == 0)
    }
    pub fn quiet(self) -> Val {
        match self {
            Val::Nan { s, m } => Val::Nan {
                s,
                m: m | (3 << 62),
            },
            v => v,
        }
    }
    pub fn negate(self) -> Val {
        match self {
            Val::Zero(s) => Val::Zero(!s),
            Val::Inf(s) => Val::Inf(!s),
            Val::Fin { s, e, m } => Val::Fin { s: !s, e, m },
            Val::Nan { s, m } => Val::Nan { s: !s, m },
        }
    }
    pub fn abs(self) -> Val {
        if self.sign() {
            self.negate()
        } else {
            self
        }
    }
}

/// Rounding environment and accumulated flags.
#[derive(Clone, Copy, Debug)]
pub struct Env {
    pub rm: Rm,
    /// Flush tiny results to zero (MXCSR.FZ with underflow masked).
    pub ftz: bool,
    /// Underflow is masked (decides whether an exact tiny result signals UE).
    pub um_masked: bool,
    pub flags: u32,
    /// Set by rounding: the result was rounded up in magnitude (the x87's C1).
    pub rounded_up: bool,
}

impl Env {
    pub fn new(rm: Rm) -> Env {
        Env {
            rm,
            ftz: false,
            um_masked: true,
            flags: 0,
            rounded_up: false,
        }
    }
}

/// Unpack an IEEE binary32/64 bit pattern. Returns the value and whether it was denormal.
pub fn unpack(fmt: Fmt, bits: u64) -> (Val, bool) {
    let (fbits, ebits) = if fmt.p == 24 { (23, 8) } else { (52, 11) };
    let s = (bits >> (fbits + ebits)) & 1 != 0;
    let ef = ((bits >> fbits) & ((1 << ebits) - 1)) as i32;
    let frac = bits & ((1u64 << fbits) - 1);
    let top = frac << (63 - fbits);
    if ef == 0 {
        if frac == 0 {
            return (Val::Zero(s), false);
        }
        let lz = top.leading_zeros() as i32;
        return (
            Val::Fin {
                s,
                e: fmt.emin - lz,
                m: top << lz,
            },
            true,
        );
    }
    if ef == (1 << ebits) - 1 {
        if frac == 0 {
            return (Val::Inf(s), false);
        }
        return (
            Val::Nan {
                s,
                m: (1 << 63) | top,
            },
            false,
        );
    }
    (
        Val::Fin {
            s,
            e: ef - fmt.bias,
            m: (1 << 63) | top,
        },
        false,
    )
}

/// Pack a value (already rounded to `fmt`) into binary32/64 bits.
pub fn pack(fmt: Fmt, v: Val) -> u64 {
    let (fbits, ebits) = if fmt.p == 24 { (23u32, 8u32) } else { (52, 11) };
    let emask = (1u64 << ebits) - 1;
    let fmask = (1u64 << fbits) - 1;
    let sb = |s: bool| (s as u64) << (fbits + ebits);
    match v {
        Val::Zero(s) => sb(s),
        Val::Inf(s) => sb(s) | (emask << fbits),
        Val::Nan { s, m } => sb(s) | (emask << fbits) | ((m >> (63 - fbits)) & fmask),
        Val::Fin { s, e, m } => {
            if e < fmt.emin {
                let sh = (fmt.emin - e) as u32;
                let q = if sh >= 64 { 0 } else { m >> sh };
                sb(s) | ((q >> (63 - fbits)) & fmask)
            } else {
                sb(s) | (((e + fmt.bias) as u64 & emask) << fbits) | ((m >> (63 - fbits)) & fmask)
            }
        }
    }
}

/// Unpack an 80-bit extended value (significand, sign+exponent). Unsupported encodings
/// (unnormals, pseudo-NaN/infinity) come back as a signaling NaN, which makes them invalid
/// operands. Returns whether it was a denormal.
pub fn unpack80(m: u64, se: u16) -> (Val, bool) {
    let s = se & 0x8000 != 0;
    let ef = (se & 0x7fff) as i32;
    if ef == 0 {
        if m == 0 {
            return (Val::Zero(s), false);
        }
        let lz = m.leading_zeros() as i32;
        return (
            Val::Fin {
                s,
                e: F80.emin - lz,
                m: m << lz,
            },
            true,
        );
    }
    if m & (1 << 63) == 0 {
        return (Val::Nan { s, m: 1 << 63 }, false);
    }
    if ef == 0x7fff {
        if m << 1 == 0 {
            return (Val::Inf(s), false);
        }
        return (Val::Nan { s, m }, false);
    }
    (
        Val::Fin {
            s,
            e: ef - F80.bias,
            m,
        },
        false,
    )
}

/// Pack into 80-bit extended (significand, sign+exponent).
pub fn pack80(v: Val) -> (u64, u16) {
    let sb = |s: bool| (s as u16) << 15;
    match v {
        Val::Zero(s) => (0, sb(s)),
        Val::Inf(s) => (1 << 63, sb(s) | 0x7fff),
        Val::Nan { s, m } => (m | (1 << 63), sb(s) | 0x7fff),
        Val::Fin { s, e, m } => {
            if e < F80.emin {
                let sh = (F80.emin - e) as u32;
                (if sh >= 64 { 0 } else { m >> sh }, sb(s))
            } else {
                (m, sb(s) | ((e + F80.bias) as u16 & 0x7fff))
            }
        }
    }
}

/// Shift right by `sh` with rounding information: (quotient, class) where class is 0 exact,
/// 1 below half, 2 exactly half, 3 above half.
fn rshift(m: u128, sticky: bool, sh: i32) -> (u128, u8) {
    if sh <= 0 {
        let q = if sh <= -128 { 0 } else { m << (-sh) as u32 };
        return (q, if sticky { 1 } else { 0 });
    }
    if sh > 128 {
        return (0, if m != 0 || sticky { 1 } else { 0 });
    }
    let (q, rem) = if sh == 128 {
        (0, m)
    } else {
        (m >> sh, m & ((1u128 << sh) - 1))
    };
    let half = 1u128 << (sh - 1);
    let cls = if rem == 0 && !sticky {
        0
    } else if rem < half {
        1
    } else if rem == half {
        if sticky {
            3
        } else {
            2
        }
    } else {
        3
    };
    (q, cls)
}

fn inc(q: u128, cls: u8, s: bool, rm: Rm) -> bool {
    match rm {
        Rm::Near => cls == 3 || (cls == 2 && q & 1 == 1),
        Rm::Zero => false,
        Rm::Down => cls != 0 && s,
        Rm::Up => cls != 0 && !s,
    }
}

/// The largest finite value of `fmt`.
pub fn max_finite(fmt: Fmt, s: bool) -> Val {
    Val::Fin {
        s,
        e: fmt.emax,
        m: u64::MAX << (64 - fmt.p),
    }
}

/// Round `m * 2^e` (plus a nonzero fraction below bit 0 when `sticky`) to `fmt`.
pub fn round(env: &mut Env, fmt: Fmt, s: bool, e: i32, m: u128, sticky: bool) -> Val {
    env.rounded_up = false;
    if m == 0 {
        // Only a sticky remainder: a tiny nonzero value below every representable bit.
        if !sticky {
            return Val::Zero(s);
        }
        return round(env, fmt, s, e - 200, 1, false);
    }
    let p = fmt.p as i32;
    let msb = 127 - m.leading_zeros() as i32;
    let big_e = e + msb;
    let lsb_norm = big_e - (p - 1);
    let lsb = lsb_norm.max(fmt.emin - (p - 1));
    let (q, cls) = rshift(m, sticky, lsb - e);
    let up = inc(q, cls, s, env.rm);
    let mut q = q + up as u128;
    let mut lsb = lsb;
    if q >> p != 0 {
        q >>= 1;
        lsb += 1;
    }
    let inexact = cls != 0;
    let tiny = if big_e >= fmt.emin {
        false
    } else {
        let (q2, c2) = rshift(m, sticky, lsb_norm - e);
        let q2 = q2 + inc(q2, c2, s, env.rm) as u128;
        !(q2 >> p != 0 && big_e + 1 == fmt.emin)
    };
    if tiny {
        if env.ftz {
            env.flags |= UE | PE;
            return Val::Zero(s);
        }
        if inexact || !env.um_masked {
            env.flags |= UE;
        }
    }
    if inexact {
        env.flags |= PE;
        env.rounded_up = up;
    }
    if q == 0 {
        return Val::Zero(s);
    }
    let qm = 127 - q.leading_zeros() as i32;
    let ef = lsb + qm;
    if ef > fmt.emax {
        env.flags |= OE | PE;
        let inf = match env.rm {
            Rm::Near => true,
            Rm::Zero => false,
            Rm::Down => s,
            Rm::Up => !s,
        };
        env.rounded_up = inf;
        return if inf { Val::Inf(s) } else { max_finite(fmt, s) };
    }
    Val::Fin {
        s,
        e: ef,
        m: (q << (63 - qm)) as u64,
    }
}

/// Round a finite value to `fmt` (format conversion).
pub fn round_val(env: &mut Env, fmt: Fmt, v: Val) -> Val {
    match v {
        Val::Fin { s, e, m } => round(env, fmt, s, e - 63, m as u128, false),
        v => v,
    }
}

/// Exact `a + b` for finite nonzero or zero operands, rounded.
pub fn add(env: &mut Env, fmt: Fmt, a: Val, b: Val) -> Val {
    match (a, b) {
        (Val::Inf(sa), Val::Inf(sb)) => {
            if sa != sb {
                env.flags |= IE;
                DEFAULT_NAN
            } else {
                Val::Inf(sa)
            }
        }
        (Val::Inf(s), _) | (_, Val::Inf(s)) => Val::Inf(s),
        (Val::Zero(sa), Val::Zero(sb)) => Val::Zero(if sa == sb { sa } else { env.rm == Rm::Down }),
        (Val::Zero(_), x) | (x, Val::Zero(_)) => round_val(env, fmt, x),
        (
            Val::Fin {
                s: sa,
                e: ea,
                m: ma,
            },
            Val::Fin {
                s: sb,
                e: eb,
                m: mb,
            },
        ) => {
            let ((sa, ea, ma), (sb, eb, mb)) = if ea >= eb {
                ((sa, ea, ma), (sb, eb, mb))
            } else {
                ((sb, eb, mb), (sa, ea, ma))
            };
            let big = (ma as u128) << 62;
            let base = ea - 63 - 62;
            let d = eb - ea + 62;
            let (small, sticky) = if d >= 0 {
                ((mb as u128) << d, false)
            } else if d <= -128 {
                (0, true)
            } else {
                let sh = (-d) as u32;
                ((mb as u128) >> sh, (mb as u128) & ((1u128 << sh) - 1) != 0)
            };
            if sa == sb {
                round(env, fmt, sa, base, big + small, sticky)
            } else if big > small || (big == small && sticky) {
                let mut r = big - small;
                if sticky {
                    r -= 1;
                }
                round(env, fmt, sa, base, r, sticky)
            } else if big == small {
                Val::Zero(env.rm == Rm::Down)
            } else {
                round(env, fmt, sb, base, small - big, sticky)
            }
        }
        _ => DEFAULT_NAN,
    }
}

pub fn mul(env: &mut Env, fmt: Fmt, a: Val, b: Val) -> Val {
    let s = a.sign() != b.sign();
    match (a, b) {
        (Val::Inf(_), Val::Zero(_)) | (Val::Zero(_), Val::Inf(_)) => {
            env.flags |= IE;
            DEFAULT_NAN
        }
        (Val::Inf(_), _) | (_, Val::Inf(_)) => Val::Inf(s),
        (Val::Zero(_), _) | (_, Val::Zero(_)) => Val::Zero(s),
        (Val::Fin { e: ea, m: ma, .. }, Val::Fin { e: eb, m: mb, .. }) => {
            round(env, fmt, s, ea + eb - 126, ma as u128 * mb as u128, false)
        }
        _ => DEFAULT_NAN,
    }
}

pub fn div(env: &mut Env, fmt: Fmt, a: Val, b: Val) -> Val {
    let s = a.sign() != b.sign();
    match (a, b) {
        (Val::Inf(_), Val::Inf(_)) | (Val::Zero(_), Val::Zero(_)) => {
            env.flags |= IE;
            DEFAULT_NAN
        }
        (Val::Inf(_), _) => Val::Inf(s),
        (_, Val::Inf(_)) => Val::Zero(s),
        (Val::Zero(_), _) => Val::Zero(s),
        (_, Val::Zero(_)) => {
            env.flags |= ZE;
            Val::Inf(s)
        }
        (Val::Fin { e: ea, m: ma, .. }, Val::Fin { e: eb, m: mb, .. }) => {
            let n = (ma as u128) << 63;
            let q1 = n / mb as u128;
            let r1 = n % mb as u128;
            let n2 = r1 << 64;
            let q2 = n2 / mb as u128;
            let r2 = n2 % mb as u128;
            let q = (q1 << 64) | q2;
            round(env, fmt, s, ea - eb - 63 - 64, q, r2 != 0)
        }
        _ => DEFAULT_NAN,
    }
}

fn isqrt(x: u128) -> u128 {
    if x == 0 {
        return 0;
    }
    let mut r = (x as f64).sqrt() as u128;
    if r == 0 {
        r = 1;
    }
    for _ in 0..3 {
        r = (r + x / r) / 2;
    }
    while r.checked_mul(r).is_none_or(|v| v > x) {
        r -= 1;
    }
    while (r + 1).checked_mul(r + 1).is_some_and(|v| v <= x) {
        r += 1;
    }
    r
}

pub fn sqrt(env: &mut Env, fmt: Fmt, a: Val) -> Val {
    match a {
        Val::Zero(_) | Val::Inf(false) => a,
        Val::Inf(true) | Val::Fin { s: true, .. } => {
            env.flags |= IE;
            DEFAULT_NAN
        }
        Val::Fin { e, m, .. } => {
            // value = m * 2^(e-63): make the exponent even with the significand at the top.
            let (x, ex) = if (e - 63).rem_euclid(2) == 0 {
                ((m as u128) << 64, e - 63 - 64)
            } else {
                ((m as u128) << 63, e - 63 - 63)
            };
            let r = isqrt(x);
            let rem = x - r * r;
            // One more bit: (r + 1/2)^2 <= x  <=>  rem >= r + 1.
            let g = rem > r;
            let sticky = g || rem != 0;
            round(env, fmt, false, ex / 2 - 1, 2 * r + g as u128, sticky)
        }
        _ => DEFAULT_NAN,
    }
}

/// Comparison result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Eq,
    Gt,
    Un,
}

/// Compare two values (no flags).
pub fn compare(a: Val, b: Val) -> Cmp {
    if a.is_nan() || b.is_nan() {
        return Cmp::Un;
    }
    let key = |v: Val| -> (i8, i32, u64) {
        match v {
            Val::Zero(_) => (0, 0, 0),
            Val::Inf(s) => (if s { -2 } else { 2 }, 0, 0),
            Val::Fin { s, e, m } => (if s { -1 } else { 1 }, e, m),
            Val::Nan { .. } => (0, 0, 0),
        }
    };
    let (ka, kb) = (key(a), key(b));
    let ord = if ka.0 != kb.0 {
        ka.0.cmp(&kb.0)
    } else if ka.0 == 1 {
        (ka.1, ka.2).cmp(&(kb.1, kb.2))
    } else if ka.0 == -1 {
        (kb.1, kb.2).cmp(&(ka.1, ka.2))
    } else {
        core::cmp::Ordering::Equal
    };
    match ord {
        core::cmp::Ordering::Less => Cmp::Lt,
        core::cmp::Ordering::Equal => Cmp::Eq,
        core::cmp::Ordering::Greater => Cmp::Gt,
    }
}

/// Convert to a signed integer of `bits` (16, 32, 64) with rounding mode `rm`. Out of range
/// and NaN give `None` (IE set); the caller supplies the "integer indefinite".
pub fn to_int(env: &mut Env, v: Val, rm: Rm, bits: u32) -> Option<i64> {
    let (s, e, m) = match v {
        Val::Zero(_) => return Some(0),
        Val::Fin { s, e, m } => (s, e, m),
        _ => {
            env.flags |= IE;
            return None;
        }
    };
    if e >= 64 {
        env.flags |= IE;
        return None;
    }
    let (q, cls) = rshift(m as u128, false, 63 - e);
    let up = inc(q, cls, s, rm);
    // The x87 stores report a magnitude rounded up in C1.
    env.rounded_up = up;
    let q = q + up as u128;
    let lim = 1u128 << (bits - 1);
    if (!s && q >= lim) || (s && q > lim) {
        env.flags |= IE;
        return None;
    }
    if cls != 0 {
        env.flags |= PE;
    }
    let q = q as i128;
    Some(if s { -q } else { q } as i64)
}

/// Round to an integral value in the same format (ROUNDSS / FRNDINT).
pub fn round_int(env: &mut Env, v: Val, rm: Rm) -> Val {
    let (s, e, m) = match v {
        Val::Fin { s, e, m } => (s, e, m),
        v => return v,
    };
    if e >= 63 {
        return v;
    }
    let (q, cls) = rshift(m as u128, false, 63 - e);
    let q = q + inc(q, cls, s, rm) as u128;
    if cls != 0 {
        env.flags |= PE;
    }
    if q == 0 {
        return Val::Zero(s);
    }
    let mut e2 = Env::new(Rm::Near);
    round(&mut e2, F80, s, 0, q, false)
}

/// Exact signed integer to float.
pub fn from_int(env: &mut Env, fmt: Fmt, x: i64) -> Val {
    if x == 0 {
        return Val::Zero(false);
    }
    round(env, fmt, x < 0, 0, x.unsigned_abs() as u128, false)
}

/// Convert to host f64 (for the x87's transcendental functions).
pub fn to_f64(v: Val) -> f64 {
    let mut env = Env::new(Rm::Near);
    f64::from_bits(pack(F64, round_val(&mut env, F64, v)))
}

/// From host f64.
pub fn from_f64(x: f64) -> Val {
    unpack(F64, x.to_bits()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64op(op: fn(&mut Env, Fmt, Val, Val) -> Val, a: f64, b: f64) -> f64 {
        let mut env = Env::new(Rm::Near);
        let r = op(&mut env, F64, from_f64(a), from_f64(b));
        f64::from_bits(pack(F64, r))
    }

    #[test]
    fn basic_f64() {
        let xs = [
            1.0,
            -2.5,
            3.0e-310,
            1e308,
            0.1,
            7.0,
            1.0 / 3.0,
            -1e-300,
            123456.789,
            5e-324,
        ];
        for &a in &xs {
            for &b in &xs {
                assert_eq!(f64op(add, a, b).to_bits(), (a + b).to_bits(), "{a}+{b}");
                assert_eq!(f64op(mul, a, b).to_bits(), (a * b).to_bits(), "{a}*{b}");
                assert_eq!(f64op(div, a, b).to_bits(), (a / b).to_bits(), "{a}/{b}");
            }
            let mut env = Env::new(Rm::Near);
            let r = f64::from_bits(pack(F64, sqrt(&mut env, F64, from_f64(a.abs()))));
            assert_eq!(r.to_bits(), a.abs().sqrt().to_bits(), "sqrt {a}");
        }
    }

    #[test]
    fn f80_roundtrip() {
        for (m, se) in [
            (0x8000_0000_0000_0000u64, 0x3fffu16),
            (0xc90f_daa2_2168_c235, 0x4000),
            (1, 0),
            (0xffff_ffff_ffff_ffff, 0x7ffe),
        ] {
            assert_eq!(pack80(unpack80(m, se).0), (m, se));
        }
    }
}
