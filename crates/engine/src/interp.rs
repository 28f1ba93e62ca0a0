//! The bytecode interpreter: one `match` dispatch per op over pre-resolved operands, its arms
//! generated from the op table (`ir.rs`, `op_table!`).

use crate::core::{jc_index, Core, JC_EMPTY};
use crate::guest::{Guest, Trap};
use crate::ir::Op;
use crate::tb::{Tb, TbId, ANY_GEN, NO_TB};

/// How a block was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TbExit {
    /// `Goto { n }` (or `GotoI`/`GotoIK`): to the PC in the PC slot, chainable as exit `n`.
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

/// Execute one block. `code` should come from [`crate::opt::encode`] (it ends in an exit and
/// all branch targets are in range); anything else ends the block with
/// `TbExit::Guest(EXIT_FELL_OFF)` instead of running off the code.
#[inline(never)]
pub fn exec_block<G: Guest>(core: &mut Core<G>, bus: &mut G::Bus, code: &[Op]) -> TbExit {
    let mut ch = Chain::none();
    exec_impl::<G, false, false>(core, bus, code, 0, usize::MAX, &mut ch)
}

/// What [`exec_chain`] needs to go from one cached block straight into its successor
/// without returning to the run loop: the blocks, the running one, and the run loop's
/// budget and poll countdown (so the blocks run and the polls happen exactly where the run
/// loop would have put them).
pub(crate) struct Chain<'a> {
    pub tbs: &'a [Tb],
    /// The running block (on return: the block that was left).
    pub cur: TbId,
    /// Chain on only while `icount` stays below this (0: never chain).
    pub end: u64,
    /// Blocks until the next poll; a block is only entered here while it is not 0.
    pub poll_in: u32,
}

impl Chain<'_> {
    fn none() -> Self {
        Chain {
            tbs: &[],
            cur: NO_TB,
            end: 0,
            poll_in: 0,
        }
    }
}

/// Execute cached block `ch.cur` and follow its exits into their successors while the run
/// loop would do nothing else between them: a direct exit through a current link, an
/// indirect one through a jump-cache hit, as long as the budget is not reached, no poll is
/// due and no code page was written. Returns how the last block (`ch.cur`) was left; the
/// instructions of the blocks before it are already counted.
#[inline(never)]
pub(crate) fn exec_chain<G: Guest>(core: &mut Core<G>, bus: &mut G::Bus, ch: &mut Chain) -> TbExit {
    let code = &ch.tbs[ch.cur as usize].code;
    exec_impl::<G, false, true>(core, bus, code, 0, usize::MAX, ch)
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
    let mut ch = Chain::none();
    exec_impl::<G, true, false>(core, bus, code, start, stop, &mut ch)
}

/// Whether the run loop would go straight on after the running block `ch.cur` (its
/// instructions retired): the budget not reached, no poll due, no code page written.
/// Returns the instruction count after the block.
#[inline(always)]
fn may_enter<G: Guest>(core: &Core<G>, ch: &Chain, tb: &Tb) -> Option<u64> {
    let icount = core.icount + tb.insn_ops.len() as u64;
    (icount < ch.end && ch.poll_in != 0 && core.mem.dirty_code.is_empty()).then_some(icount)
}

/// Make `id` (`t`) the running block, as the run loop would for its next block.
#[inline(always)]
fn enter<'a, G: Guest>(
    core: &mut Core<G>,
    ch: &mut Chain<'a>,
    icount: u64,
    id: TbId,
    t: &'a Tb,
) -> &'a [Op] {
    core.icount = icount;
    core.stats.tbs_executed += 1;
    ch.poll_in -= 1;
    ch.cur = id;
    &t.code
}

/// After direct exit `x` of the running block: its successor's code, when the link is
/// current (same checks as the run loop's) and the run loop would go straight on. Out of
/// line, so the interpreter loop's registers are not spent on it.
#[inline(never)]
fn enter_link<'a, G: Guest>(core: &mut Core<G>, ch: &mut Chain<'a>, x: u8) -> Option<&'a [Op]> {
    let tbs = ch.tbs;
    let tb = tbs.get(ch.cur as usize)?;
    let icount = may_enter(core, ch, tb)?;
    let link = tb.links[(x & 1) as usize];
    let gen = tb.link_gen[(x & 1) as usize];
    if gen != ANY_GEN && gen != core.tlb_gen {
        return None;
    }
    let t = tbs.get(link as usize).filter(|t| t.valid)?;
    core.stats.chain_hits += 1;
    Some(enter(core, ch, icount, link, t))
}

/// After an indirect exit of the running block: the jump cache's block for the PC and the
/// mode the block left in (the run loop's first lookup), when the run loop would go
/// straight on.
#[inline(never)]
fn enter_indirect<'a, G: Guest>(core: &mut Core<G>, ch: &mut Chain<'a>) -> Option<&'a [Op]> {
    let tbs = ch.tbs;
    let tb = tbs.get(ch.cur as usize)?;
    let icount = may_enter(core, ch, tb)?;
    let pc = core.regs.0[G::PC_SLOT as usize];
    let id = core.jump_cache[jc_index(pc)];
    if id == JC_EMPTY {
        return None;
    }
    let t = tbs
        .get(id as usize)
        .filter(|t| t.valid && t.pc == pc && t.flags == tb.flags)?;
    core.stats.jump_cache_hits += 1;
    Some(enter(core, ch, icount, id, t))
}

/// The interpreter's arm for one op-table row. The first identifiers are the interpreter's
/// locals (passed in because macro hygiene keeps them apart from the rows' field names).
macro_rules! exec_arm {
    // A pure value op: read the uses, write the def.
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [$d:ident] [$($u:ident),*] [$($k:ident),*] { $e:expr }) => {{
        $(let $u = $c.regs.0[$u as usize];)*
        $c.regs.0[$d as usize] = $e;
    }};
    // Two moves in one op, in order.
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [$d:ident] [$a:ident, $b:ident] [$d2:ident] [pair $f:ident $g:ident]) => {{
        $c.regs.0[$d as usize] = exec_arm!(@half $f, $c.regs.0[$a as usize]);
        $c.regs.0[$d2 as usize] = exec_arm!(@half $g, $c.regs.0[$b as usize]);
    }};
    (@half mov, $v:expr) => {
        $v
    };
    (@half zx32, $v:expr) => {
        $v as u32 as u64
    };
    // Guest memory: the inline TLB fast path, else `Core::read`/`write` (page walk, page
    // crossing, MMIO); a trap leaves the block at this op, a write to a code page stops it
    // after this guest instruction (self-modifying code).
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [$d:ident] [$a:ident] [$disp:ident, $mmu:ident] [load $size:literal]) => {{
        let va = $c.regs.0[$a as usize].wrapping_add($disp as i64 as u64);
        match $c.mem.load_fast::<$size>($mmu, va) {
            Some(v) => {
                $c.regs.0[$d as usize] = v;
                $n.1 += 1;
            }
            None => match $c.read($bus, va, $size, $mmu) {
                Ok(v) => {
                    $c.regs.0[$d as usize] = v;
                    if $c.smc_hit {
                        // A debugger watchpoint: stop after this instruction.
                        break TbExit::Smc { at: $pc as u32 - 1 };
                    }
                }
                Err(trap) => {
                    break TbExit::Trap {
                        trap,
                        at: $pc as u32 - 1,
                    }
                }
            },
        }
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [$v:ident, $a:ident] [$disp:ident, $mmu:ident] [store $size:literal]) => {{
        let va = $c.regs.0[$a as usize].wrapping_add($disp as i64 as u64);
        let x = $c.regs.0[$v as usize];
        if $c.mem.store_fast::<$size>($mmu, va, x) {
            $n.1 += 1;
        } else {
            if let Err(trap) = $c.write($bus, va, $size, $mmu, x) {
                break TbExit::Trap {
                    trap,
                    at: $pc as u32 - 1,
                };
            }
            if $c.smc_hit {
                break TbExit::Smc { at: $pc as u32 - 1 };
            }
        }
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$($k:ident),*] [nop]) => {{}};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$($k:ident),*] [insn]) => {{}};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$($k:ident),*] [label]) => {{}};
    // Taken branches close the current straight run of ops for the op count, and are
    // bounds-checked (the only check the unchecked fetch needs besides the last op).
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$t:ident] [br]) => {{
        exec_arm!(@jump $code, $pc, $run, $n, $t)
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [$a:ident, $b:ident] [$cond:ident, $t:ident] [brcond]) => {{
        if $cond.eval($c.regs.0[$a as usize], $c.regs.0[$b as usize]) {
            exec_arm!(@jump $code, $pc, $run, $n, $t)
        }
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [$a:ident] [$imm:ident, $cond:ident, $t:ident] [brcondi]) => {{
        if $cond.eval($c.regs.0[$a as usize], $imm as i64 as u64) {
            exec_arm!(@jump $code, $pc, $run, $n, $t)
        }
    }};
    // A direct exit `$x` of a cached block: into its successor through a current link.
    (@link $c:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident, $x:ident) => {{
        if CHAIN {
            if let Some(next) = enter_link($c, $ch, $x) {
                exec_arm!(@enter $code, $pc, $run, $n, next);
            }
        }
    }};
    // Start the block whose code is `$next` (the previous one's op run closed).
    (@enter $code:ident, $pc:ident, $run:ident, $n:ident, $next:ident) => {{
        $n.0 += ($pc - $run) as u64;
        $code = $next;
        $pc = 0;
        $run = 0;
        continue;
    }};
    (@jump $code:ident, $pc:ident, $run:ident, $n:ident, $t:ident) => {{
        if $t as usize >= $code.len() {
            break TbExit::Guest(crate::opt::EXIT_FELL_OFF);
        }
        $n.0 += ($pc - $run) as u64;
        $pc = $t as usize;
        $run = $pc;
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [$d:ident] [$a:ident, $b:ident, $cc:ident] [$f:ident] [call]) => {{
        let (x, y, z) = (
            $c.regs.0[$a as usize],
            $c.regs.0[$b as usize],
            $c.regs.0[$cc as usize],
        );
        match $c.helpers.get($f as usize) {
            Some(h) => match h($c, $bus, x, y, z) {
                Ok(v) => {
                    $c.regs.0[$d as usize] = v;
                    if $c.smc_hit {
                        break TbExit::Smc { at: $pc as u32 - 1 };
                    }
                }
                Err(trap) => {
                    break TbExit::Trap {
                        trap,
                        at: $pc as u32 - 1,
                    }
                }
            },
            None => break TbExit::Guest(crate::opt::EXIT_FELL_OFF),
        }
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [$d:ident] [$a:ident, $b:ident, $cc:ident] [$f:ident] [callpure]) => {{
        match G::pure_helpers().get($f as usize) {
            Some(h) => {
                $c.regs.0[$d as usize] = h(
                    $c.regs.0[$a as usize],
                    $c.regs.0[$b as usize],
                    $c.regs.0[$cc as usize],
                )
            }
            None => break TbExit::Guest(crate::opt::EXIT_FELL_OFF),
        }
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$x:ident] [goto]) => {{
        exec_arm!(@link $c, $code, $pc, $run, $n, $ch, $x);
        break TbExit::Chain($x)
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$x:ident, $to:ident] [gotoi]) => {{
        $c.regs.0[G::PC_SLOT as usize] = $to;
        exec_arm!(@link $c, $code, $pc, $run, $n, $ch, $x);
        break TbExit::Chain($x)
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$x:ident, $s:ident, $k:ident, $to:ident] [gotoik]) => {{
        $c.regs.0[$s as usize] = $k as u64;
        $c.regs.0[G::PC_SLOT as usize] = $to;
        exec_arm!(@link $c, $code, $pc, $run, $n, $ch, $x);
        break TbExit::Chain($x)
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [] [gotoptr]) => {{
        if CHAIN {
            if let Some(next) = enter_indirect($c, $ch) {
                exec_arm!(@enter $code, $pc, $run, $n, next);
            }
        }
        break TbExit::Indirect
    }};
    ($c:ident, $bus:ident, $code:ident, $pc:ident, $run:ident, $n:ident, $ch:ident;
     [] [] [$x:ident] [exit]) => {{
        break TbExit::Guest($x)
    }};
}

/// The interpreter loop, its `match` generated from the op table.
macro_rules! define_exec {
    ($( $(#[$m:meta])* $name:ident ( $($d:ident)? ; $($u:ident),* ; $($k:ident : $kt:ty),* )
        $sem:tt ),* $(,)?) => {
        #[inline(always)]
        #[allow(unused_variables, clippy::unnecessary_cast)]
        fn exec_impl<'a, G: Guest, const BOUNDED: bool, const CHAIN: bool>(
            core: &mut Core<G>,
            bus: &mut G::Bus,
            code: &'a [Op],
            start: usize,
            stop: usize,
            ch: &mut Chain<'a>,
        ) -> TbExit {
            // `exec_block` is a safe public function, so the invariants the unchecked fetch
            // below relies on are enforced here rather than assumed from `encode`: the block
            // must end in an unconditional exit or branch (checked once; the blocks of the
            // cache are checked when they are inserted, `TbCache::insert`), and branch
            // targets are checked when taken (one compare per taken branch).
            if !CHAIN && !code.last().is_some_and(Op::ends_block) {
                return TbExit::Guest(crate::opt::EXIT_FELL_OFF);
            }
            let mut code = code;
            let mut pc = start;
            // Ops executed are counted per straight run (from `run` to `pc`), closed at taken
            // branches and at the exit: no per-op counter.
            let mut run = start;
            // (ops executed, memory accesses served by the inline TLB fast path)
            let mut n_ops = (0u64, 0u64);
            let exit = loop {
                if BOUNDED && pc >= stop {
                    break TbExit::Boundary;
                }
                debug_assert!(pc < code.len());
                // SAFETY: `pc` starts below len (0 for a whole block, checked by `exec_range`);
                // it only grows by one past ops that are not unconditional exits or branches,
                // and the last op is one, so it stays below len; taken branches are
                // bounds-checked before `pc` is set. A block entered from a chain starts at 0
                // and ends in an exit or branch too (`TbCache::insert`).
                let op = unsafe { *code.get_unchecked(pc) };
                pc += 1;
                match op {
                    $( Op::$name { $($d,)? $($u,)* $($k,)* } => exec_arm!(
                        core, bus, code, pc, run, n_ops, ch;
                        [$($d)?] [$($u),*] [$($k),*] $sem
                    ), )*
                }
            };
            core.stats.ops_executed += n_ops.0 + (pc - run) as u64;
            core.stats.tlb_fast_hits += n_ops.1;
            exit
        }
    };
}

crate::ir::op_table!(define_exec);
