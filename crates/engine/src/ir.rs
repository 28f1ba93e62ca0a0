//! The IR: typed micro-ops over 64-bit slots. Every op is declared once, in [`op_table!`];
//! the enum, the optimizer's def/use knowledge, constant folding, the printer and the
//! interpreter's arms are all generated from that table. The builder emits ops, the optimizer
//! rewrites them, the encoder drops the pseudo-ops and patches branch targets, and the
//! interpreter executes the result directly (the bytecode *is* the optimized op list,
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

/// The op table: one row per op, the only place an op is declared. A row is
///
/// ```text
/// Name(def; uses...; constant: Type, ...) semantics
/// ```
///
/// `def` is the destination slot (absent for ops that write none), `uses` the source slots,
/// then the op's constant arguments. The semantics is either `{ expr }` — a pure value op:
/// `def = expr`, with each use bound to its slot's value and each constant to itself — or
/// `[kind ...]` naming one of the engine's effectful mechanisms (`load N`, `store N`, `call`,
/// `callpure`, branches, exits, pseudo-ops).
///
/// `op_table!(callback)` hands the rows to a macro. [`define_ops!`] makes from them the
/// [`Op`] enum, def/use info ([`Op::info`], [`Op::map_uses`], [`Op::def_mut`]), the
/// constant folder ([`eval_pure`]) and the printer ([`Op::fmt_named`]); the interpreter
/// (`interp.rs`) makes its dispatch arms from the same rows. Adding a pure op is one row.
macro_rules! op_table {
    ($cb:ident) => {
        $cb! {
            /// Does nothing (left behind by the optimizer, dropped by the encoder).
            Nop(;;) [nop],
            // ---- moves
            Mov(d; a;) { a },
            Const(d;; imm: u64) { imm },
            // ---- binary arithmetic and logic
            Add(d; a, b;) { a.wrapping_add(b) },
            Sub(d; a, b;) { a.wrapping_sub(b) },
            Mul(d; a, b;) { a.wrapping_mul(b) },
            /// High 64 bits of the unsigned 128-bit product.
            MulHu(d; a, b;) { ((a as u128 * b as u128) >> 64) as u64 },
            /// High 64 bits of the signed 128-bit product.
            MulHs(d; a, b;) { ((a as i64 as i128 * b as i64 as i128) >> 64) as u64 },
            And(d; a, b;) { a & b },
            Or(d; a, b;) { a | b },
            Xor(d; a, b;) { a ^ b },
            Shl(d; a, b;) { a << (b & 63) },
            Shr(d; a, b;) { a >> (b & 63) },
            Sar(d; a, b;) { ((a as i64) >> (b & 63)) as u64 },
            Rotl(d; a, b;) { a.rotate_left((b & 63) as u32) },
            Rotr(d; a, b;) { a.rotate_right((b & 63) as u32) },
            // ---- with a sign-extended 32-bit immediate
            AddI(d; a; imm: i32) { a.wrapping_add(imm as i64 as u64) },
            AndI(d; a; imm: i32) { a & imm as i64 as u64 },
            OrI(d; a; imm: i32) { a | imm as i64 as u64 },
            XorI(d; a; imm: i32) { a ^ imm as i64 as u64 },
            ShlI(d; a; imm: u8) { a << (imm & 63) },
            ShrI(d; a; imm: u8) { a >> (imm & 63) },
            SarI(d; a; imm: u8) { ((a as i64) >> (imm & 63)) as u64 },
            /// Rotate left by `imm` (mod 64).
            RotlI(d; a; imm: u8) { a.rotate_left((imm & 63) as u32) },
            /// Rotate the low 32 bits left by `imm` (mod 32); the result is zero-extended.
            Rotl32I(d; a; imm: u8) { (a as u32).rotate_left((imm & 31) as u32) as u64 },
            // ---- fused 32-bit forms (result zero-extended), made by the optimizer
            Add32(d; a, b;) { a.wrapping_add(b) as u32 as u64 },
            Sub32(d; a, b;) { a.wrapping_sub(b) as u32 as u64 },
            AddI32(d; a; imm: i32) { a.wrapping_add(imm as i64 as u64) as u32 as u64 },
            And32(d; a, b;) { (a & b) as u32 as u64 },
            Or32(d; a, b;) { (a | b) as u32 as u64 },
            Xor32(d; a, b;) { (a ^ b) as u32 as u64 },
            OrI32(d; a; imm: i32) { (a | imm as i64 as u64) as u32 as u64 },
            XorI32(d; a; imm: i32) { (a ^ imm as i64 as u64) as u32 as u64 },
            ShlI32(d; a; imm: u8) { (a << (imm & 63)) as u32 as u64 },
            /// `d = a + (b << sh) + imm` (address arithmetic, x86 LEA).
            Lea(d; a, b; sh: u8, imm: i32) {
                a.wrapping_add(b << (sh & 63)).wrapping_add(imm as i64 as u64)
            },
            /// [`Op::Lea`] with the result zero-extended from 32 bits.
            Lea32(d; a, b; sh: u8, imm: i32) {
                a.wrapping_add(b << (sh & 63)).wrapping_add(imm as i64 as u64) as u32 as u64
            },
            // ---- two moves in one op, made by the optimizer's very last pass
            // (`opt::pair_moves`): the first half runs, then the second, so the second reads
            // what the first wrote when `b == d`. `d2` is declared as a constant so that
            // `info()` (one def) stays true for the first half: no pass runs after pairing.
            /// `d = a`, then `d2 = b`.
            Mov2(d; a, b; d2: Slot) [pair mov mov],
            /// `d = a`, then `d2 = zx32(b)`.
            MovZx32(d; a, b; d2: Slot) [pair mov zx32],
            /// `d = zx32(a)`, then `d2 = b`.
            Zx32Mov(d; a, b; d2: Slot) [pair zx32 mov],
            /// `d = zx32(a)`, then `d2 = zx32(b)`.
            Zx32x2(d; a, b; d2: Slot) [pair zx32 zx32],
            // ---- unary
            Neg(d; a;) { a.wrapping_neg() },
            Not(d; a;) { !a },
            Zx8(d; a;) { a as u8 as u64 },
            Zx16(d; a;) { a as u16 as u64 },
            Zx32(d; a;) { a as u32 as u64 },
            Sx8(d; a;) { a as i8 as i64 as u64 },
            Sx16(d; a;) { a as i16 as i64 as u64 },
            Sx32(d; a;) { a as i32 as i64 as u64 },
            Clz(d; a;) { a.leading_zeros() as u64 },
            Ctz(d; a;) { a.trailing_zeros() as u64 },
            Popcnt(d; a;) { a.count_ones() as u64 },
            Bswap64(d; a;) { a.swap_bytes() },
            Bswap32(d; a;) { (a as u32).swap_bytes() as u64 },
            /// `d = a` with bits `[pos, pos+len)` replaced by the low `len` bits of `b`.
            Deposit(d; a, b; pos: u8, len: u8) { $crate::ir::deposit(a, b, pos, len) },
            /// `d = (a >> pos) & ((1 << len) - 1)`.
            Extract(d; a; pos: u8, len: u8) { $crate::ir::extract(a, pos, len) },
            /// `d = (a cond b) as u64`.
            SetCond(d; a, b; cond: Cond) { cond.eval(a, b) as u64 },
            /// `d = (a cond imm) as u64`.
            SetCondI(d; a; imm: i32, cond: Cond) { cond.eval(a, imm as i64 as u64) as u64 },
            /// `d = if c != 0 { a } else { b }`.
            Select(d; c, a, b;) { if c != 0 { a } else { b } },
            // ---- guest memory (little-endian; loads zero-extend)
            Ld8(d; a; disp: i32, mmu: u8) [load 1],
            Ld16(d; a; disp: i32, mmu: u8) [load 2],
            Ld32(d; a; disp: i32, mmu: u8) [load 4],
            Ld64(d; a; disp: i32, mmu: u8) [load 8],
            St8(; v, a; disp: i32, mmu: u8) [store 1],
            St16(; v, a; disp: i32, mmu: u8) [store 2],
            St32(; v, a; disp: i32, mmu: u8) [store 4],
            St64(; v, a; disp: i32, mmu: u8) [store 8],
            // ---- control flow inside a block
            /// A branch target (pseudo-op, removed by the encoder).
            Label(;; id: Target) [label],
            /// Start of guest instruction number `n` of the block (pseudo-op, removed by the
            /// encoder).
            InsnStart(;; n: u16) [insn],
            Br(;; t: Target) [br],
            BrCond(; a, b; cond: Cond, t: Target) [brcond],
            BrCondI(; a; imm: i32, cond: Cond, t: Target) [brcondi],
            // ---- calls into the guest's helpers
            /// `d = helpers[f](a, b, c)`; the helper gets the whole CPU and may trap.
            Call(d; a, b, c; f: u16) [call],
            /// `d = pure_helpers[f](a, b, c)`: a side-effect-free guest function of its
            /// arguments only (e.g. materializing lazy flags), so the optimizer removes it
            /// when `d` is dead.
            CallPure(d; a, b, c; f: u16) [callpure],
            // ---- block exits
            /// Leave the block to the PC the front end has just stored; chainable as exit `n`
            /// (0 or 1).
            Goto(;; n: u8) [goto],
            /// `PC = pc`, then [`Op::Goto`] `n` (made by the optimizer after its passes, from a
            /// constant store to the guest's PC slot and a `Goto`).
            GotoI(;; n: u8, pc: u64) [gotoi],
            /// `slot s = k` (zero-extended), `PC = pc`, then [`Op::Goto`] `n` (made after the
            /// passes from a constant store to a global right before a [`Op::GotoI`]).
            GotoIK(;; n: u8, s: Slot, k: u32, pc: u64) [gotoik],
            /// Leave the block to a computed PC (looked up in the jump cache).
            GotoPtr(;;) [gotoptr],
            /// Return to the run loop with a guest-defined reason (halt, mode change, ...).
            Exit(;; code: u32) [exit],
        }
    };
}
pub(crate) use op_table;

/// `Some(slot)` for a row's def, `None` when it has none.
macro_rules! opt_def {
    () => {
        None
    };
    ($d:ident) => {
        Some($d)
    };
}

/// A row's uses as the fixed-size array of [`OpInfo::uses`].
macro_rules! use_list {
    () => {
        [None, None, None]
    };
    ($a:ident) => {
        [Some($a), None, None]
    };
    ($a:ident, $b:ident) => {
        [Some($a), Some($b), None]
    };
    ($a:ident, $b:ident, $c:ident) => {
        [Some($a), Some($b), Some($c)]
    };
}

/// The [`Barrier`] of a row's semantics.
macro_rules! barrier_of {
    ({ $($e:tt)* }) => {
        Barrier::None
    };
    ([load $n:literal]) => {
        Barrier::Trap
    };
    ([store $n:literal]) => {
        Barrier::Trap
    };
    ([call]) => {
        Barrier::Call
    };
    ([callpure]) => {
        Barrier::None
    };
    ([pair $f:ident $g:ident]) => {
        Barrier::None
    };
    ([nop]) => {
        Barrier::None
    };
    ([insn]) => {
        Barrier::None
    };
    ([label]) => {
        Barrier::Flow
    };
    ([br]) => {
        Barrier::Flow
    };
    ([brcond]) => {
        Barrier::Flow
    };
    ([brcondi]) => {
        Barrier::Flow
    };
    ([goto]) => {
        Barrier::Exit
    };
    ([gotoi]) => {
        Barrier::Exit
    };
    ([gotoik]) => {
        Barrier::Exit
    };
    ([gotoptr]) => {
        Barrier::Exit
    };
    ([exit]) => {
        Barrier::Exit
    };
}

/// Constant folding of one row: the pure expression on known inputs, `None` otherwise.
macro_rules! fold_row {
    ($get:ident; [$($u:ident),*] { $e:expr }) => {{
        $(let $u = $get($u);)*
        Some($e)
    }};
    ($get:ident; [$($u:ident),*] [$($kind:tt)*]) => {
        None
    };
}

/// The [`Op`] enum, with unit variants for rows without operands (built by munching rows).
macro_rules! op_enum {
    (@acc [$($acc:tt)*]) => {
        /// One micro-op (generated from [`op_table!`]). `d` is the destination slot; `a`,
        /// `b`, `c` (and `v`, the stored value) are source slots.
        ///
        /// Shift and rotate counts are taken modulo 64. Memory ops address `slot + disp` in
        /// the guest-virtual space of MMU index `mmu`; they may trap (page fault), which the
        /// engine turns into a precise exception at the guest instruction that issued them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $($acc)* }
    };
    (@acc [$($acc:tt)*] $(#[$m:meta])* $name:ident (;;) $sem:tt, $($rest:tt)*) => {
        op_enum!(@acc [$($acc)* $(#[$m])* $name,] $($rest)*);
    };
    (@acc [$($acc:tt)*] $(#[$m:meta])* $name:ident ( $($d:ident)? ; $($u:ident),* ;
        $($k:ident : $kt:ty),* ) $sem:tt, $($rest:tt)*) => {
        op_enum!(@acc [$($acc)* $(#[$m])* $name { $($d: Slot,)? $($u: Slot,)* $($k: $kt,)* },]
            $($rest)*);
    };
}

/// Everything the IR side derives from the op table.
macro_rules! define_ops {
    ($( $(#[$m:meta])* $name:ident ( $($d:ident)? ; $($u:ident),* ; $($k:ident : $kt:ty),* )
        $sem:tt ),* $(,)?) => {
        op_enum!(@acc [] $( $(#[$m])* $name ( $($d)? ; $($u),* ; $($k : $kt),* ) $sem, )*);

        impl Op {
            /// Slots read and written, and the op's barrier kind.
            #[allow(unused_variables)]
            pub fn info(&self) -> OpInfo {
                match *self {
                    $( Op::$name { $($d,)? $($u,)* .. } => OpInfo {
                        defs: opt_def!($($d)?),
                        uses: use_list!($($u),*),
                        barrier: barrier_of!($sem),
                    }, )*
                }
            }

            /// Rewrite every source slot through `f` (used by copy propagation).
            #[allow(unused_variables, unused_mut)]
            pub fn map_uses(&mut self, mut f: impl FnMut(Slot) -> Slot) {
                match self {
                    $( Op::$name { $($u,)* .. } => { $( *$u = f(*$u); )* } )*
                }
            }

            /// The destination slot, writable (for retargeting a producer).
            pub fn def_mut(&mut self) -> Option<&mut Slot> {
                match self {
                    $( Op::$name { $($d,)? .. } => opt_def!($($d)?), )*
                }
            }

            /// The op's name in the table.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Op::$name { .. } => stringify!($name), )*
                }
            }

            /// Print the op, naming slots through `names` (the guest's register names;
            /// `None` prints `t<n>` for temporaries at or above `first_temp`, else `r<n>`).
            #[allow(unused_assignments, unused_mut, unused_variables)]
            pub fn fmt_named(
                &self,
                f: &mut fmt::Formatter<'_>,
                names: &dyn Fn(Slot) -> Option<&'static str>,
                first_temp: Slot,
            ) -> fmt::Result {
                let slot = |f: &mut fmt::Formatter<'_>, s: Slot| match names(s) {
                    Some(n) => f.write_str(n),
                    None if s >= first_temp => write!(f, "t{s}"),
                    None => write!(f, "r{s}"),
                };
                match *self {
                    $( Op::$name { $($d,)? $($u,)* $($k,)* } => {
                        f.write_str(stringify!($name))?;
                        let mut sep = " ";
                        $( f.write_str(" ")?; slot(f, $d)?; f.write_str(" <-")?; )?
                        $( f.write_str(sep)?; slot(f, $u)?; sep = ", "; )*
                        $( write!(f, "{sep}{}={:?}", stringify!($k), $k)?; sep = ", "; )*
                        Ok(())
                    } )*
                }
            }
        }

        /// Evaluate a pure op on known inputs (constant folding; also the reference semantics
        /// the interpreter is tested against). Returns `None` for ops that are not pure value
        /// ops. Generated from the same rows as the interpreter's arms.
        #[allow(unused_variables)]
        pub fn eval_pure(op: &Op, get: impl Fn(Slot) -> u64) -> Option<u64> {
            match *op {
                $( Op::$name { $($u,)* $($k,)* .. } => fold_row!(get; [$($u),*] $sem), )*
            }
        }
    };
}

op_table!(define_ops);

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

/// An op with the guest's slot names, for `-d op` / `-d op_opt`.
pub struct Named<'a> {
    pub op: &'a Op,
    pub names: &'a dyn Fn(Slot) -> Option<&'static str>,
    pub first_temp: Slot,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.op.fmt_named(f, self.names, self.first_temp)
    }
}

impl Op {
    /// True for the ops a block may end with (an unconditional exit or branch).
    #[inline]
    pub fn ends_block(&self) -> bool {
        matches!(
            self,
            Op::Goto { .. }
                | Op::GotoI { .. }
                | Op::GotoIK { .. }
                | Op::GotoPtr
                | Op::Exit { .. }
                | Op::Br { .. }
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_named(f, &|_| None, Slot::MAX)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_names_guest_slots_and_temporaries() {
        let names = |s: Slot| {
            [Some("RAX"), Some("RCX")]
                .get(s as usize)
                .copied()
                .flatten()
        };
        let show = |op: Op| {
            Named {
                op: &op,
                names: &names,
                first_temp: 32,
            }
            .to_string()
        };
        assert_eq!(show(Op::Add { d: 0, a: 1, b: 33 }), "Add RAX <- RCX, t33");
        assert_eq!(
            show(Op::AddI {
                d: 5,
                a: 0,
                imm: -4
            }),
            "AddI r5 <- RAX, imm=-4"
        );
        assert_eq!(
            show(Op::St32 {
                v: 1,
                a: 40,
                disp: 8,
                mmu: 1
            }),
            "St32 RCX, t40, disp=8, mmu=1"
        );
        assert_eq!(show(Op::GotoPtr), "GotoPtr");
        assert_eq!(show(Op::Goto { n: 1 }), "Goto n=1");
    }

    #[test]
    fn table_derived_info_matches_the_fields() {
        let op = Op::Select {
            d: 1,
            c: 2,
            a: 3,
            b: 4,
        };
        let i = op.info();
        assert_eq!((i.defs, i.uses), (Some(1), [Some(2), Some(3), Some(4)]));
        assert_eq!(i.barrier, Barrier::None);
        let i = Op::St8 {
            v: 1,
            a: 2,
            disp: 0,
            mmu: 0,
        }
        .info();
        assert_eq!(
            (i.defs, i.uses, i.barrier),
            (None, [Some(1), Some(2), None], Barrier::Trap)
        );
        assert_eq!(Op::Label { id: 0 }.info().barrier, Barrier::Flow);
        assert_eq!(
            Op::Call {
                d: 1,
                a: 2,
                b: 3,
                c: 4,
                f: 0
            }
            .info()
            .barrier,
            Barrier::Call
        );
        assert_eq!(
            Op::CallPure {
                d: 1,
                a: 2,
                b: 3,
                c: 4,
                f: 0
            }
            .info()
            .barrier,
            Barrier::None
        );
        let mut op = Op::BrCond {
            a: 1,
            b: 2,
            cond: Cond::Eq,
            t: 0,
        };
        op.map_uses(|s| s + 10);
        assert_eq!(
            op,
            Op::BrCond {
                a: 11,
                b: 12,
                cond: Cond::Eq,
                t: 0
            }
        );
        let mut op = Op::Ld64 {
            d: 3,
            a: 4,
            disp: 0,
            mmu: 0,
        };
        *op.def_mut().unwrap() = 9;
        assert_eq!(
            op,
            Op::Ld64 {
                d: 9,
                a: 4,
                disp: 0,
                mmu: 0
            }
        );
        assert_eq!(
            eval_pure(
                &Op::Extract {
                    d: 0,
                    a: 1,
                    pos: 8,
                    len: 8
                },
                |_| 0xabcd
            ),
            Some(0xab)
        );
    }
}
