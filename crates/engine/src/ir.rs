//! The IR: typed micro-ops over 64-bit slots. This one enum is the op table: the builder emits
//! it, the optimizer rewrites it, the encoder drops the pseudo-ops and patches branch targets,
//! and the interpreter executes the result directly (the bytecode *is* the optimized op list,
//! with every operand pre-resolved to a register-file index or an inline immediate).
//!
//! A [`Slot`] is a `u8` index into the 256-entry register file, so the interpreter indexes it
//! without bounds checks. The guest front end decides which slots are its architectural
//! registers ("globals"); the rest are instruction-local temporaries handed out by the builder.

use core::fmt;

/// Index into the register file (`[u64; 256]`).
pub type Slot = u8;

/// Comparison conditions for [`Op::SetCond`] and branches. Signed conditions treat the 64-bit
/// values as `i64`; the front end sign-extends narrower values first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    Eq,
    Ne,
    LtU,
    GeU,
    LeU,
    GtU,
    LtS,
    GeS,
    LeS,
    GtS,
    /// `a & b == 0`
    TstZ,
    /// `a & b != 0`
    TstNz,
}

impl Cond {
    /// Evaluate the condition.
    #[inline(always)]
    pub fn eval(self, a: u64, b: u64) -> bool {
        match self {
            Cond::Eq => a == b,
            Cond::Ne => a != b,
            Cond::LtU => a < b,
            Cond::GeU => a >= b,
            Cond::LeU => a <= b,
            Cond::GtU => a > b,
            Cond::LtS => (a as i64) < (b as i64),
            Cond::GeS => (a as i64) >= (b as i64),
            Cond::LeS => (a as i64) <= (b as i64),
            Cond::GtS => (a as i64) > (b as i64),
            Cond::TstZ => a & b == 0,
            Cond::TstNz => a & b != 0,
        }
    }

    /// The condition that is true exactly when this one is false.
    pub fn invert(self) -> Cond {
        match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::LtU => Cond::GeU,
            Cond::GeU => Cond::LtU,
            Cond::LeU => Cond::GtU,
            Cond::GtU => Cond::LeU,
            Cond::LtS => Cond::GeS,
            Cond::GeS => Cond::LtS,
            Cond::LeS => Cond::GtS,
            Cond::GtS => Cond::LeS,
            Cond::TstZ => Cond::TstNz,
            Cond::TstNz => Cond::TstZ,
        }
    }
}

/// A branch target inside one translation block. Before encoding it names a [`Op::Label`];
/// after encoding it is the index of the op to continue at.
pub type Target = u16;

/// One micro-op. `d` is the destination slot; `a`, `b`, `c` are source slots.
///
/// Shift and rotate counts are taken modulo 64. Memory ops address `slot + disp` in the
/// guest-virtual space of MMU index `mmu`; they may trap (page fault), which the engine turns
/// into a precise exception at the guest instruction that issued them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Does nothing (left behind by the optimizer, dropped by the encoder).
    Nop,
    // ---- moves
    Mov {
        d: Slot,
        a: Slot,
    },
    Const {
        d: Slot,
        imm: u64,
    },
    // ---- binary arithmetic and logic
    Add {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Sub {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Mul {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// High 64 bits of the unsigned 128-bit product.
    MulHu {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    /// High 64 bits of the signed 128-bit product.
    MulHs {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    And {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Or {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Xor {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Shl {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Shr {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Sar {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Rotl {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Rotr {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    // ---- with a sign-extended 32-bit immediate
    AddI {
        d: Slot,
        a: Slot,
        imm: i32,
    },
    AndI {
        d: Slot,
        a: Slot,
        imm: i32,
    },
    OrI {
        d: Slot,
        a: Slot,
        imm: i32,
    },
    XorI {
        d: Slot,
        a: Slot,
        imm: i32,
    },
    ShlI {
        d: Slot,
        a: Slot,
        imm: u8,
    },
    ShrI {
        d: Slot,
        a: Slot,
        imm: u8,
    },
    SarI {
        d: Slot,
        a: Slot,
        imm: u8,
    },
    /// Rotate left by `imm` (mod 64).
    RotlI {
        d: Slot,
        a: Slot,
        imm: u8,
    },
    /// Rotate the low 32 bits left by `imm` (mod 32); the result is zero-extended.
    Rotl32I {
        d: Slot,
        a: Slot,
        imm: u8,
    },
    // ---- fused 32-bit forms (result zero-extended), made by the optimizer
    Add32 {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    Sub32 {
        d: Slot,
        a: Slot,
        b: Slot,
    },
    AddI32 {
        d: Slot,
        a: Slot,
        imm: i32,
    },
    // ---- unary
    Neg {
        d: Slot,
        a: Slot,
    },
    Not {
        d: Slot,
        a: Slot,
    },
    Zx8 {
        d: Slot,
        a: Slot,
    },
    Zx16 {
        d: Slot,
        a: Slot,
    },
    Zx32 {
        d: Slot,
        a: Slot,
    },
    Sx8 {
        d: Slot,
        a: Slot,
    },
    Sx16 {
        d: Slot,
        a: Slot,
    },
    Sx32 {
        d: Slot,
        a: Slot,
    },
    Clz {
        d: Slot,
        a: Slot,
    },
    Ctz {
        d: Slot,
        a: Slot,
    },
    Popcnt {
        d: Slot,
        a: Slot,
    },
    Bswap64 {
        d: Slot,
        a: Slot,
    },
    Bswap32 {
        d: Slot,
        a: Slot,
    },
    /// `d = a` with bits `[pos, pos+len)` replaced by the low `len` bits of `b`.
    Deposit {
        d: Slot,
        a: Slot,
        b: Slot,
        pos: u8,
        len: u8,
    },
    /// `d = (a >> pos) & ((1 << len) - 1)`.
    Extract {
        d: Slot,
        a: Slot,
        pos: u8,
        len: u8,
    },
    /// `d = (a cond b) as u64`.
    SetCond {
        d: Slot,
        a: Slot,
        b: Slot,
        cond: Cond,
    },
    /// `d = (a cond imm) as u64`.
    SetCondI {
        d: Slot,
        a: Slot,
        imm: i32,
        cond: Cond,
    },
    /// `d = if c != 0 { a } else { b }`.
    Select {
        d: Slot,
        c: Slot,
        a: Slot,
        b: Slot,
    },
    // ---- guest memory (little-endian; loads zero-extend)
    Ld8 {
        d: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    Ld16 {
        d: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    Ld32 {
        d: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    Ld64 {
        d: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    St8 {
        v: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    St16 {
        v: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    St32 {
        v: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    St64 {
        v: Slot,
        a: Slot,
        disp: i32,
        mmu: u8,
    },
    // ---- control flow inside a block
    /// A branch target (pseudo-op, removed by the encoder).
    Label {
        id: Target,
    },
    /// Start of guest instruction number `n` of the block (pseudo-op, removed by the encoder).
    InsnStart {
        n: u16,
    },
    Br {
        t: Target,
    },
    BrCond {
        a: Slot,
        b: Slot,
        cond: Cond,
        t: Target,
    },
    BrCondI {
        a: Slot,
        imm: i32,
        cond: Cond,
        t: Target,
    },
    // ---- calls into the guest's helpers
    /// `d = helpers[f](a, b, c)`; the helper gets the whole CPU and may trap.
    Call {
        f: u16,
        d: Slot,
        a: Slot,
        b: Slot,
        c: Slot,
    },
    /// `d = pure_helpers[f](a, b, c)`: a side-effect-free guest function of its arguments
    /// only (e.g. materializing lazy flags), so the optimizer removes it when `d` is dead.
    CallPure {
        f: u16,
        d: Slot,
        a: Slot,
        b: Slot,
        c: Slot,
    },
    // ---- block exits
    /// Leave the block to the PC the front end has just stored; chainable as exit `n` (0 or 1).
    Goto {
        n: u8,
    },
    /// Leave the block to a computed PC (looked up in the jump cache).
    GotoPtr,
    /// Return to the run loop with a guest-defined reason (halt, mode change, ...).
    Exit {
        code: u32,
    },
}

/// What an op reads and writes, for the optimizer.
pub struct OpInfo {
    pub defs: Option<Slot>,
    pub uses: [Option<Slot>; 3],
    /// May trap, call out or leave the block: globals must be up to date here.
    pub barrier: Barrier,
}

/// How an op constrains the optimizer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Barrier {
    /// Pure: removable when its result is dead.
    None,
    /// A memory access: may trap, so the guest's restorable state must be current.
    Trap,
    /// A helper call: reads and writes anything.
    Call,
    /// Leaves the block.
    Exit,
    /// Label or branch: control flow joins or splits.
    Flow,
}

impl Op {
    /// Slots read and written, and the op's barrier kind.
    pub fn info(&self) -> OpInfo {
        use Op::*;
        let (defs, uses, barrier) = match *self {
            Nop | Label { .. } | InsnStart { .. } => (None, [None; 3], Barrier::None),
            Mov { d, a } => (Some(d), [Some(a), None, None], Barrier::None),
            Const { d, .. } => (Some(d), [None; 3], Barrier::None),
            Add { d, a, b }
            | Sub { d, a, b }
            | Mul { d, a, b }
            | MulHu { d, a, b }
            | MulHs { d, a, b }
            | And { d, a, b }
            | Or { d, a, b }
            | Xor { d, a, b }
            | Shl { d, a, b }
            | Shr { d, a, b }
            | Sar { d, a, b }
            | Rotl { d, a, b }
            | Rotr { d, a, b }
            | Add32 { d, a, b }
            | Sub32 { d, a, b }
            | SetCond { d, a, b, .. }
            | Deposit { d, a, b, .. } => (Some(d), [Some(a), Some(b), None], Barrier::None),
            AddI { d, a, .. }
            | AndI { d, a, .. }
            | OrI { d, a, .. }
            | XorI { d, a, .. }
            | AddI32 { d, a, .. }
            | ShlI { d, a, .. }
            | ShrI { d, a, .. }
            | SarI { d, a, .. }
            | RotlI { d, a, .. }
            | Rotl32I { d, a, .. }
            | SetCondI { d, a, .. }
            | Neg { d, a }
            | Not { d, a }
            | Zx8 { d, a }
            | Zx16 { d, a }
            | Zx32 { d, a }
            | Sx8 { d, a }
            | Sx16 { d, a }
            | Sx32 { d, a }
            | Clz { d, a }
            | Ctz { d, a }
            | Popcnt { d, a }
            | Bswap64 { d, a }
            | Bswap32 { d, a }
            | Extract { d, a, .. } => (Some(d), [Some(a), None, None], Barrier::None),
            Select { d, c, a, b } => (Some(d), [Some(c), Some(a), Some(b)], Barrier::None),
            CallPure { d, a, b, c, .. } => (Some(d), [Some(a), Some(b), Some(c)], Barrier::None),
            Ld8 { d, a, .. } | Ld16 { d, a, .. } | Ld32 { d, a, .. } | Ld64 { d, a, .. } => {
                (Some(d), [Some(a), None, None], Barrier::Trap)
            }
            St8 { v, a, .. } | St16 { v, a, .. } | St32 { v, a, .. } | St64 { v, a, .. } => {
                (None, [Some(v), Some(a), None], Barrier::Trap)
            }
            Br { .. } => (None, [None; 3], Barrier::Flow),
            BrCond { a, b, .. } => (None, [Some(a), Some(b), None], Barrier::Flow),
            BrCondI { a, .. } => (None, [Some(a), None, None], Barrier::Flow),
            Call { d, a, b, c, .. } => (Some(d), [Some(a), Some(b), Some(c)], Barrier::Call),
            Goto { .. } | GotoPtr | Exit { .. } => (None, [None; 3], Barrier::Exit),
        };
        let barrier = match self {
            Label { .. } => Barrier::Flow,
            _ => barrier,
        };
        OpInfo {
            defs,
            uses,
            barrier,
        }
    }

    /// Rewrite every source slot through `f` (used by copy propagation).
    pub fn map_uses(&mut self, mut f: impl FnMut(Slot) -> Slot) {
        use Op::*;
        match self {
            Mov { a, .. }
            | AddI { a, .. }
            | AndI { a, .. }
            | OrI { a, .. }
            | XorI { a, .. }
            | AddI32 { a, .. }
            | ShlI { a, .. }
            | ShrI { a, .. }
            | SarI { a, .. }
            | RotlI { a, .. }
            | Rotl32I { a, .. }
            | SetCondI { a, .. }
            | Neg { a, .. }
            | Not { a, .. }
            | Zx8 { a, .. }
            | Zx16 { a, .. }
            | Zx32 { a, .. }
            | Sx8 { a, .. }
            | Sx16 { a, .. }
            | Sx32 { a, .. }
            | Clz { a, .. }
            | Ctz { a, .. }
            | Popcnt { a, .. }
            | Bswap64 { a, .. }
            | Bswap32 { a, .. }
            | Extract { a, .. }
            | Ld8 { a, .. }
            | Ld16 { a, .. }
            | Ld32 { a, .. }
            | Ld64 { a, .. }
            | BrCondI { a, .. } => *a = f(*a),
            Add { a, b, .. }
            | Sub { a, b, .. }
            | Mul { a, b, .. }
            | MulHu { a, b, .. }
            | MulHs { a, b, .. }
            | And { a, b, .. }
            | Or { a, b, .. }
            | Xor { a, b, .. }
            | Shl { a, b, .. }
            | Shr { a, b, .. }
            | Sar { a, b, .. }
            | Rotl { a, b, .. }
            | Rotr { a, b, .. }
            | Add32 { a, b, .. }
            | Sub32 { a, b, .. }
            | SetCond { a, b, .. }
            | Deposit { a, b, .. }
            | BrCond { a, b, .. } => {
                *a = f(*a);
                *b = f(*b);
            }
            St8 { v, a, .. } | St16 { v, a, .. } | St32 { v, a, .. } | St64 { v, a, .. } => {
                *v = f(*v);
                *a = f(*a);
            }
            Select { c, a, b, .. } => {
                *c = f(*c);
                *a = f(*a);
                *b = f(*b);
            }
            Call { a, b, c, .. } | CallPure { a, b, c, .. } => {
                *a = f(*a);
                *b = f(*b);
                *c = f(*c);
            }
            Nop
            | Const { .. }
            | Label { .. }
            | InsnStart { .. }
            | Br { .. }
            | Goto { .. }
            | GotoPtr
            | Exit { .. } => {}
        }
    }
}

impl Op {
    /// The destination slot, writable (for retargeting a producer).
    pub fn def_mut(&mut self) -> Option<&mut Slot> {
        use Op::*;
        match self {
            St8 { .. } | St16 { .. } | St32 { .. } | St64 { .. } => None,
            Nop | Label { .. } | InsnStart { .. } | Br { .. } | BrCond { .. } | BrCondI { .. } => {
                None
            }
            Goto { .. } | GotoPtr | Exit { .. } => None,
            Mov { d, .. }
            | Const { d, .. }
            | Add { d, .. }
            | Sub { d, .. }
            | Mul { d, .. }
            | MulHu { d, .. }
            | MulHs { d, .. }
            | And { d, .. }
            | Or { d, .. }
            | Xor { d, .. }
            | Shl { d, .. }
            | Shr { d, .. }
            | Sar { d, .. }
            | Rotl { d, .. }
            | Rotr { d, .. }
            | AddI { d, .. }
            | AndI { d, .. }
            | OrI { d, .. }
            | XorI { d, .. }
            | ShlI { d, .. }
            | ShrI { d, .. }
            | SarI { d, .. }
            | RotlI { d, .. }
            | Rotl32I { d, .. }
            | Add32 { d, .. }
            | Sub32 { d, .. }
            | AddI32 { d, .. }
            | Neg { d, .. }
            | Not { d, .. }
            | Zx8 { d, .. }
            | Zx16 { d, .. }
            | Zx32 { d, .. }
            | Sx8 { d, .. }
            | Sx16 { d, .. }
            | Sx32 { d, .. }
            | Clz { d, .. }
            | Ctz { d, .. }
            | Popcnt { d, .. }
            | Bswap64 { d, .. }
            | Bswap32 { d, .. }
            | Deposit { d, .. }
            | Extract { d, .. }
            | SetCond { d, .. }
            | SetCondI { d, .. }
            | Select { d, .. }
            | Ld8 { d, .. }
            | Ld16 { d, .. }
            | Ld32 { d, .. }
            | Ld64 { d, .. }
            | Call { d, .. }
            | CallPure { d, .. } => Some(d),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Evaluate a pure op on known inputs (constant folding; also the reference semantics the
/// interpreter is tested against). Returns `None` for ops that are not pure value ops.
pub fn eval_pure(op: &Op, get: impl Fn(Slot) -> u64) -> Option<u64> {
    use Op::*;
    Some(match *op {
        Mov { a, .. } => get(a),
        Const { imm, .. } => imm,
        Add { a, b, .. } => get(a).wrapping_add(get(b)),
        Sub { a, b, .. } => get(a).wrapping_sub(get(b)),
        Mul { a, b, .. } => get(a).wrapping_mul(get(b)),
        MulHu { a, b, .. } => ((get(a) as u128 * get(b) as u128) >> 64) as u64,
        MulHs { a, b, .. } => ((get(a) as i64 as i128 * get(b) as i64 as i128) >> 64) as u64,
        And { a, b, .. } => get(a) & get(b),
        Or { a, b, .. } => get(a) | get(b),
        Xor { a, b, .. } => get(a) ^ get(b),
        Shl { a, b, .. } => get(a) << (get(b) & 63),
        Shr { a, b, .. } => get(a) >> (get(b) & 63),
        Sar { a, b, .. } => ((get(a) as i64) >> (get(b) & 63)) as u64,
        Rotl { a, b, .. } => get(a).rotate_left((get(b) & 63) as u32),
        Rotr { a, b, .. } => get(a).rotate_right((get(b) & 63) as u32),
        AddI { a, imm, .. } => get(a).wrapping_add(imm as i64 as u64),
        AndI { a, imm, .. } => get(a) & imm as i64 as u64,
        OrI { a, imm, .. } => get(a) | imm as i64 as u64,
        XorI { a, imm, .. } => get(a) ^ imm as i64 as u64,
        ShlI { a, imm, .. } => get(a) << (imm & 63),
        ShrI { a, imm, .. } => get(a) >> (imm & 63),
        SarI { a, imm, .. } => ((get(a) as i64) >> (imm & 63)) as u64,
        RotlI { a, imm, .. } => get(a).rotate_left((imm & 63) as u32),
        Rotl32I { a, imm, .. } => (get(a) as u32).rotate_left((imm & 31) as u32) as u64,
        Add32 { a, b, .. } => get(a).wrapping_add(get(b)) as u32 as u64,
        Sub32 { a, b, .. } => get(a).wrapping_sub(get(b)) as u32 as u64,
        AddI32 { a, imm, .. } => get(a).wrapping_add(imm as i64 as u64) as u32 as u64,
        Neg { a, .. } => get(a).wrapping_neg(),
        Not { a, .. } => !get(a),
        Zx8 { a, .. } => get(a) as u8 as u64,
        Zx16 { a, .. } => get(a) as u16 as u64,
        Zx32 { a, .. } => get(a) as u32 as u64,
        Sx8 { a, .. } => get(a) as i8 as i64 as u64,
        Sx16 { a, .. } => get(a) as i16 as i64 as u64,
        Sx32 { a, .. } => get(a) as i32 as i64 as u64,
        Clz { a, .. } => get(a).leading_zeros() as u64,
        Ctz { a, .. } => get(a).trailing_zeros() as u64,
        Popcnt { a, .. } => get(a).count_ones() as u64,
        Bswap64 { a, .. } => get(a).swap_bytes(),
        Bswap32 { a, .. } => (get(a) as u32).swap_bytes() as u64,
        Deposit { a, b, pos, len, .. } => deposit(get(a), get(b), pos, len),
        Extract { a, pos, len, .. } => extract(get(a), pos, len),
        SetCond { a, b, cond, .. } => cond.eval(get(a), get(b)) as u64,
        SetCondI { a, imm, cond, .. } => cond.eval(get(a), imm as i64 as u64) as u64,
        Select { c, a, b, .. } => {
            if get(c) != 0 {
                get(a)
            } else {
                get(b)
            }
        }
        _ => return None,
    })
}

/// Mask of the low `len` bits (`len` in 0..=64).
#[inline(always)]
pub fn low_mask(len: u8) -> u64 {
    if len >= 64 {
        u64::MAX
    } else {
        (1u64 << len) - 1
    }
}

/// `a` with bits `[pos, pos+len)` replaced by the low bits of `b`.
#[inline(always)]
pub fn deposit(a: u64, b: u64, pos: u8, len: u8) -> u64 {
    let m = low_mask(len) << (pos & 63);
    (a & !m) | ((b << (pos & 63)) & m)
}

/// Bits `[pos, pos+len)` of `a`.
#[inline(always)]
pub fn extract(a: u64, pos: u8, len: u8) -> u64 {
    (a >> (pos & 63)) & low_mask(len)
}
