//! The bytecode interpreter: one `match` dispatch per op over pre-resolved operands.

use crate::core::Core;
use crate::guest::{Guest, Trap};
use crate::ir::{deposit, extract, Op};

/// How a block was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TbExit {
    /// `Goto { n }`: to the PC in the PC slot, chainable as exit `n`.
    Chain(u8),
    /// `GotoPtr`: to the PC in the PC slot, through the jump cache.
    Indirect,
    /// `Exit { code }`.
    Guest(u32),
    /// A memory op or helper trapped at op index `at`.
    Trap { trap: Trap, at: u32 },
    /// The store (or helper) at op index `at` wrote a page holding translated code: the rest
    /// of its guest instruction must finish with [`exec_range`], then execution continues at
    /// the next instruction in a freshly translated block (self-modifying code).
    Smc { at: u32 },
    /// [`exec_range`] reached its stop index (the end of the guest instruction).
    Boundary,
}

macro_rules! r {
    ($core:ident, $s:expr) => {
        $core.regs.0[$s as usize]
    };
}

/// Execute one block. `code` should come from [`crate::opt::encode`] (it ends in an exit and
/// all branch targets are in range); anything else ends the block with
/// `TbExit::Guest(EXIT_FELL_OFF)` instead of running off the code.
#[inline(never)]
pub fn exec_block<G: Guest>(core: &mut Core<G>, bus: &mut G::Bus, code: &[Op]) -> TbExit {
    exec_impl::<G, false>(core, bus, code, 0, usize::MAX)
}

/// Execute ops `start..stop` of a block (finishing one guest instruction after a
/// self-modifying store); returns [`TbExit::Boundary`] on reaching `stop`, or how the block
/// was left before that.
pub fn exec_range<G: Guest>(
    core: &mut Core<G>,
    bus: &mut G::Bus,
    code: &[Op],
    start: usize,
    stop: usize,
) -> TbExit {
    if start >= code.len() {
        return TbExit::Boundary;
    }
    exec_impl::<G, true>(core, bus, code, start, stop)
}

#[inline(always)]
fn exec_impl<G: Guest, const BOUNDED: bool>(
    core: &mut Core<G>,
    bus: &mut G::Bus,
    code: &[Op],
    start: usize,
    stop: usize,
) -> TbExit {
    // `exec_block` is a safe public function, so the invariants the unchecked fetch below
    // relies on are enforced here rather than assumed from `encode`: the block must end in
    // an unconditional exit or branch (checked once), and branch targets are checked when
    // taken (one compare per taken branch).
    if !matches!(
        code.last(),
        Some(Op::Goto { .. } | Op::GotoPtr | Op::Exit { .. } | Op::Br { .. })
    ) {
        return TbExit::Guest(crate::opt::EXIT_FELL_OFF);
    }
    let mut pc = start;
    let mut n_ops = 0u64;
    // Guest memory access: the inline TLB fast path, else `Core::read`/`write` (page walk,
    // page crossing, MMIO); a trap leaves the block at this op, a write to a code page stops
    // it after this guest instruction (self-modifying code).
    macro_rules! load {
        ($n:literal, $d:ident, $a:ident, $disp:ident, $mmu:ident) => {{
            let va = r!(core, $a).wrapping_add($disp as i64 as u64);
            match core.mem.load_fast::<$n>($mmu, va) {
                Some(v) => r!(core, $d) = v,
                None => match core.read(bus, va, $n, $mmu) {
                    Ok(v) => r!(core, $d) = v,
                    Err(trap) => {
                        break TbExit::Trap {
                            trap,
                            at: pc as u32 - 1,
                        }
                    }
                },
            }
        }};
    }
    macro_rules! store {
        ($n:literal, $v:ident, $a:ident, $disp:ident, $mmu:ident) => {{
            let va = r!(core, $a).wrapping_add($disp as i64 as u64);
            let x = r!(core, $v);
            if !core.mem.store_fast::<$n>($mmu, va, x) {
                if let Err(trap) = core.write(bus, va, $n, $mmu, x) {
                    break TbExit::Trap {
                        trap,
                        at: pc as u32 - 1,
                    };
                }
                if core.smc_hit {
                    break TbExit::Smc { at: pc as u32 - 1 };
                }
            }
        }};
    }
    let exit = loop {
        if BOUNDED && pc >= stop {
            break TbExit::Boundary;
        }
        debug_assert!(pc < code.len());
        // SAFETY: `pc` starts below len (0 for a whole block, checked by `exec_range`); it only grows by one past
        // ops that are not unconditional exits or branches, and the last op is one, so it
        // stays below len; taken branches are bounds-checked before `pc` is set.
        let op = unsafe { *code.get_unchecked(pc) };
        pc += 1;
        n_ops += 1;
        match op {
            Op::Nop | Op::Label { .. } | Op::InsnStart { .. } => {}
            Op::Mov { d, a } => r!(core, d) = r!(core, a),
            Op::Const { d, imm } => r!(core, d) = imm,
            Op::Add { d, a, b } => r!(core, d) = r!(core, a).wrapping_add(r!(core, b)),
            Op::Sub { d, a, b } => r!(core, d) = r!(core, a).wrapping_sub(r!(core, b)),
            Op::Mul { d, a, b } => r!(core, d) = r!(core, a).wrapping_mul(r!(core, b)),
            Op::MulHu { d, a, b } => {
                r!(core, d) = ((r!(core, a) as u128 * r!(core, b) as u128) >> 64) as u64
            }
            Op::MulHs { d, a, b } => {
                r!(core, d) =
                    ((r!(core, a) as i64 as i128 * r!(core, b) as i64 as i128) >> 64) as u64
            }
            Op::And { d, a, b } => r!(core, d) = r!(core, a) & r!(core, b),
            Op::Or { d, a, b } => r!(core, d) = r!(core, a) | r!(core, b),
            Op::Xor { d, a, b } => r!(core, d) = r!(core, a) ^ r!(core, b),
            Op::Shl { d, a, b } => r!(core, d) = r!(core, a) << (r!(core, b) & 63),
            Op::Shr { d, a, b } => r!(core, d) = r!(core, a) >> (r!(core, b) & 63),
            Op::Sar { d, a, b } => {
                r!(core, d) = ((r!(core, a) as i64) >> (r!(core, b) & 63)) as u64
            }
            Op::Rotl { d, a, b } => {
                r!(core, d) = r!(core, a).rotate_left((r!(core, b) & 63) as u32)
            }
            Op::Rotr { d, a, b } => {
                r!(core, d) = r!(core, a).rotate_right((r!(core, b) & 63) as u32)
            }
            Op::AddI { d, a, imm } => r!(core, d) = r!(core, a).wrapping_add(imm as i64 as u64),
            Op::AndI { d, a, imm } => r!(core, d) = r!(core, a) & imm as i64 as u64,
            Op::OrI { d, a, imm } => r!(core, d) = r!(core, a) | imm as i64 as u64,
            Op::XorI { d, a, imm } => r!(core, d) = r!(core, a) ^ imm as i64 as u64,
            Op::ShlI { d, a, imm } => r!(core, d) = r!(core, a) << (imm & 63),
            Op::ShrI { d, a, imm } => r!(core, d) = r!(core, a) >> (imm & 63),
            Op::SarI { d, a, imm } => r!(core, d) = ((r!(core, a) as i64) >> (imm & 63)) as u64,
            Op::RotlI { d, a, imm } => r!(core, d) = r!(core, a).rotate_left((imm & 63) as u32),
            Op::Rotl32I { d, a, imm } => {
                r!(core, d) = (r!(core, a) as u32).rotate_left((imm & 31) as u32) as u64
            }
            Op::Add32 { d, a, b } => {
                r!(core, d) = r!(core, a).wrapping_add(r!(core, b)) as u32 as u64
            }
            Op::Sub32 { d, a, b } => {
                r!(core, d) = r!(core, a).wrapping_sub(r!(core, b)) as u32 as u64
            }
            Op::AddI32 { d, a, imm } => {
                r!(core, d) = r!(core, a).wrapping_add(imm as i64 as u64) as u32 as u64
            }
            Op::Neg { d, a } => r!(core, d) = r!(core, a).wrapping_neg(),
            Op::Not { d, a } => r!(core, d) = !r!(core, a),
            Op::Zx8 { d, a } => r!(core, d) = r!(core, a) as u8 as u64,
            Op::Zx16 { d, a } => r!(core, d) = r!(core, a) as u16 as u64,
            Op::Zx32 { d, a } => r!(core, d) = r!(core, a) as u32 as u64,
            Op::Sx8 { d, a } => r!(core, d) = r!(core, a) as i8 as i64 as u64,
            Op::Sx16 { d, a } => r!(core, d) = r!(core, a) as i16 as i64 as u64,
            Op::Sx32 { d, a } => r!(core, d) = r!(core, a) as i32 as i64 as u64,
            Op::Clz { d, a } => r!(core, d) = r!(core, a).leading_zeros() as u64,
            Op::Ctz { d, a } => r!(core, d) = r!(core, a).trailing_zeros() as u64,
            Op::Popcnt { d, a } => r!(core, d) = r!(core, a).count_ones() as u64,
            Op::Bswap64 { d, a } => r!(core, d) = r!(core, a).swap_bytes(),
            Op::Bswap32 { d, a } => r!(core, d) = (r!(core, a) as u32).swap_bytes() as u64,
            Op::Deposit { d, a, b, pos, len } => {
                r!(core, d) = deposit(r!(core, a), r!(core, b), pos, len)
            }
            Op::Extract { d, a, pos, len } => r!(core, d) = extract(r!(core, a), pos, len),
            Op::SetCond { d, a, b, cond } => {
                r!(core, d) = cond.eval(r!(core, a), r!(core, b)) as u64
            }
            Op::SetCondI { d, a, imm, cond } => {
                r!(core, d) = cond.eval(r!(core, a), imm as i64 as u64) as u64
            }
            Op::Select { d, c, a, b } => {
                r!(core, d) = if r!(core, c) != 0 {
                    r!(core, a)
                } else {
                    r!(core, b)
                }
            }
            Op::Ld8 { d, a, disp, mmu } => load!(1, d, a, disp, mmu),
            Op::Ld16 { d, a, disp, mmu } => load!(2, d, a, disp, mmu),
            Op::Ld32 { d, a, disp, mmu } => load!(4, d, a, disp, mmu),
            Op::Ld64 { d, a, disp, mmu } => load!(8, d, a, disp, mmu),
            Op::St8 { v, a, disp, mmu } => store!(1, v, a, disp, mmu),
            Op::St16 { v, a, disp, mmu } => store!(2, v, a, disp, mmu),
            Op::St32 { v, a, disp, mmu } => store!(4, v, a, disp, mmu),
            Op::St64 { v, a, disp, mmu } => store!(8, v, a, disp, mmu),
            Op::Br { t } => {
                if t as usize >= code.len() {
                    break TbExit::Guest(crate::opt::EXIT_FELL_OFF);
                }
                pc = t as usize
            }
            Op::BrCond { a, b, cond, t } => {
                if cond.eval(r!(core, a), r!(core, b)) {
                    if t as usize >= code.len() {
                        break TbExit::Guest(crate::opt::EXIT_FELL_OFF);
                    }
                    pc = t as usize;
                }
            }
            Op::BrCondI { a, imm, cond, t } => {
                if cond.eval(r!(core, a), imm as i64 as u64) {
                    if t as usize >= code.len() {
                        break TbExit::Guest(crate::opt::EXIT_FELL_OFF);
                    }
                    pc = t as usize;
                }
            }
            Op::Call { f, d, a, b, c } => {
                let (x, y, z) = (r!(core, a), r!(core, b), r!(core, c));
                let helpers = G::helpers();
                match helpers.get(f as usize) {
                    Some(h) => match h(core, bus, x, y, z) {
                        Ok(v) => {
                            r!(core, d) = v;
                            if core.smc_hit {
                                break TbExit::Smc { at: pc as u32 - 1 };
                            }
                        }
                        Err(trap) => {
                            break TbExit::Trap {
                                trap,
                                at: pc as u32 - 1,
                            }
                        }
                    },
                    None => break TbExit::Guest(crate::opt::EXIT_FELL_OFF),
                }
            }
            Op::CallPure { f, d, a, b, c } => match G::pure_helpers().get(f as usize) {
                Some(h) => r!(core, d) = h(r!(core, a), r!(core, b), r!(core, c)),
                None => break TbExit::Guest(crate::opt::EXIT_FELL_OFF),
            },
            Op::Goto { n } => break TbExit::Chain(n),
            Op::GotoPtr => break TbExit::Indirect,
            Op::Exit { code } => break TbExit::Guest(code),
        }
    };
    core.stats.ops_executed += n_ops;
    exit
}
