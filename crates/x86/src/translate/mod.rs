//! The x86-64 front end: decodes guest code with iced-x86 and emits engine IR.
//!
//! One instruction family per file; each family's `translate` returns `None` for mnemonics it
//! does not handle, and [`dispatch`] tries the families in turn. Shared machinery — operand
//! locations, loads and stores, lazy flags, conditions, block exits — lives in [`Tr`]'s
//! methods in this file and `operand.rs`.

pub mod alu;
pub mod base;
pub mod operand;
pub mod sse;
pub mod string;
pub mod system;
pub mod x87;

use crate::flags::CcOp;
use crate::helpers::{base as hbase, Bus, Helper};
use crate::hflags;
use crate::regs::*;
use crate::state::{Event, EventKind};
use crate::X86;
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use tci64_engine::{Builder, Core, Op, Slot, Trap};

/// What an instruction did to the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Continue with the next instruction.
    Next,
    /// The instruction ended the block (it emitted its exits).
    End,
}

/// Exit codes of `Op::Exit` the CPU's run loop understands.
pub mod exit {
    /// HLT: RIP is past the HLT; the CPU sleeps until an interrupt.
    pub const HLT: u32 = 1;
    /// The instruction changed state later blocks depend on (mode, IF, paging): just go on.
    pub const CONTINUE: u32 = 2;
}

/// The translator's state for one block.
pub struct Tr<'a> {
    pub b: &'a mut Builder,
    /// The block's mode bits ([`crate::hflags`]).
    pub hf: u32,
    /// Address of the current instruction.
    pub pc: u64,
    /// Address of the next instruction.
    pub next: u64,
    /// The current instruction.
    pub insn: Instruction,
    /// The statically known lazy-flags operation; `None` = in the `CC_OP` slot.
    pub cc: Option<CcOp>,
    /// `cc` is known but not yet stored in the `CC_OP` slot.
    pub cc_dirty: bool,
    /// MMU index of data accesses (0 supervisor, 1 user).
    pub mmu: u8,
    /// `-d unimp`
    pub trace_unimp: bool,
    /// The memory operand being accessed is a stack-segment reference (push/pop, or an
    /// address whose segment is SS): its loads and stores use the stack MMU index.
    pub ss_ref: bool,
    /// The arithmetic flags this instruction leaves are dead: later instructions of this
    /// block overwrite all six before anything reads them or can trap ([`flags_dead_after`]).
    pub flags_dead: bool,
}

helpers!(pub enum CoreH @ hbase::CORE; {
    ARITH_FLAGS => h_arith_flags,
    RAISE => h_raise,
    CARRY => h_carry,
});

/// Returns the six arithmetic flags of the lazy state in the CC slots.
fn h_arith_flags(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> Result<u64, Trap> {
    Ok(crate::cpu::arith_flags(c))
}

/// CF of the lazy state (0 or 1).
fn h_carry(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> Result<u64, Trap> {
    Ok(crate::cpu::arith_flags(c) & 1)
}

/// Raise exception `a` (vector) with error code `b` if `c` != 0.
fn h_raise(c: &mut Core<X86>, _: &mut Bus, a: u64, b: u64, has: u64) -> Result<u64, Trap> {
    c.guest.pending = Some(Event {
        vector: a as u8,
        error_code: (has != 0).then_some(b as u32),
        kind: EventKind::Exception,
    });
    Err(Trap::Exception)
}

/// Instruction families besides `base`: (first id, end of range, table), for the helper table.
pub fn families() -> Vec<(u16, u16, &'static [Helper])> {
    vec![
        alu::HELPERS,
        string::HELPERS,
        system::HELPERS,
        sse::HELPERS,
        x87::HELPERS,
    ]
}

/// Try every family in turn.
fn dispatch(t: &mut Tr) -> Option<Flow> {
    base::translate(t)
        .or_else(|| alu::translate(t))
        .or_else(|| string::translate(t))
        .or_else(|| system::translate(t))
        .or_else(|| sse::translate(t))
        .or_else(|| x87::translate(t))
}

impl<'a> Tr<'a> {
    /// The translator's state at the start of a block at `pc` with mode bits `hf`.
    fn new(b: &'a mut Builder, hf: u32, pc: u64, trace_unimp: bool) -> Self {
        Tr {
            b,
            hf,
            pc,
            next: pc,
            insn: Instruction::default(),
            cc: None,
            cc_dirty: false,
            mmu: if hf & hflags::CPL == 3 { 1 } else { 0 },
            trace_unimp,
            ss_ref: false,
            flags_dead: false,
        }
    }

    /// The current privilege level of the block.
    pub fn cpl(&self) -> u8 {
        (self.hf & hflags::CPL) as u8
    }

    /// True in 64-bit mode.
    pub fn long64(&self) -> bool {
        self.hf & hflags::CS64 != 0
    }

    /// Store the static CC op into its slot if the slot is behind.
    pub fn sync_cc(&mut self) {
        if let (Some(op), true) = (self.cc, self.cc_dirty) {
            self.b.set(CC_OP, op as u64);
            self.cc_dirty = false;
        }
    }

    /// After a helper set the lazy state itself: the slot is authoritative.
    pub fn cc_dynamic(&mut self) {
        self.cc = None;
        self.cc_dirty = false;
    }

    /// Record a lazy-flags state. `dst` must be zero-extended to the operation size.
    pub fn set_cc(&mut self, op: CcOp, dst: Slot, src: Slot, src2: Option<Slot>) {
        self.b.mov(CC_DST, dst);
        self.b.mov(CC_SRC, src);
        if let Some(s2) = src2 {
            self.b.mov(CC_SRC2, s2);
        }
        self.cc = Some(op);
        self.cc_dirty = true;
    }

    /// Call a helper after syncing the lazy-flags op (helpers may read the flags).
    pub fn call(&mut self, id: u16, a: Slot, b: Slot, c: Slot) -> Slot {
        self.sync_cc();
        self.b.call(id, a, b, c)
    }

    /// Call a helper with constant arguments.
    pub fn call_k(&mut self, id: u16, a: u64, b: u64, c: u64) -> Slot {
        let (ka, kb, kc) = (self.b.konst(a), self.b.konst(b), self.b.konst(c));
        self.call(id, ka, kb, kc)
    }

    /// The six arithmetic flags, materialized.
    pub fn arith_flags(&mut self) -> Slot {
        if self.cc == Some(crate::flags::CC_EFLAGS) {
            let d = self.b.temp();
            self.b.push(Op::AndI {
                d,
                a: CC_SRC,
                imm: crate::regs::fl::ARITH as i32,
            });
            return d;
        }
        if let Some(op) = self.cc {
            // A pure function of the CC slots: removed when nothing reads it.
            return self.b.call_pure(op as u16, CC_DST, CC_SRC, CC_SRC2);
        }
        let z = self.b.konst(0);
        self.call(CoreH::ARITH_FLAGS.id(), z, z, z)
    }

    /// The whole RFLAGS value.
    pub fn rflags(&mut self) -> Slot {
        let a = self.arith_flags();
        let d = self.b.temp();
        self.b.push(Op::Or { d, a, b: RFLAGS });
        d
    }

    /// Raise an exception at the current instruction and end the block.
    pub fn raise(&mut self, vector: u8, error_code: Option<u32>) -> Flow {
        self.call_k(
            CoreH::RAISE.id(),
            vector as u64,
            error_code.unwrap_or(0) as u64,
            error_code.is_some() as u64,
        );
        self.b.push(Op::Exit {
            code: exit::CONTINUE,
        });
        Flow::End
    }

    /// #UD for an instruction nobody implements (logged with `-d unimp`).
    pub fn unimplemented(&mut self) -> Flow {
        if self.trace_unimp {
            log::warn!(target: "tci64::trace", "unimplemented instruction at {:#x}: {:?} ({:?})", self.pc, self.insn.code(), self.insn.mnemonic());
        } else {
            log::debug!(
                "unimplemented instruction at {:#x}: {:?}",
                self.pc,
                self.insn.code()
            );
        }
        self.raise(crate::state::vec::UD, None)
    }

    /// End the block with a direct jump to `target`, chainable as exit `n`.
    pub fn goto(&mut self, target: u64, n: u8) {
        self.sync_cc();
        self.b.set(RIP, target);
        self.b.push(Op::Goto { n });
    }

    /// End the block with a jump to the address in slot `s`.
    pub fn goto_slot(&mut self, s: Slot) {
        self.sync_cc();
        self.b.mov(RIP, s);
        self.b.push(Op::GotoPtr);
    }

    /// End the block after this instruction and return to the run loop (`exit::CONTINUE`),
    /// so that state this instruction changed (mode, IF, paging) takes effect.
    pub fn end_continue(&mut self) -> Flow {
        self.sync_cc();
        self.b.set(RIP, self.next);
        self.b.push(Op::Exit {
            code: exit::CONTINUE,
        });
        Flow::End
    }
}

/// Aux word for `restore`: the static CC op, or `u32::MAX` when it is in its slot.
fn aux_of(t: &Tr) -> u32 {
    t.cc.unwrap_or(u32::MAX)
}

/// Translate one block (the engine's `Guest::translate`).
pub fn translate_block(
    core: &mut Core<X86>,
    bus: &mut Bus,
    pc: u64,
    hf: u32,
    b: &mut Builder,
) -> Result<(), Trap> {
    let bitness = if hf & hflags::CS64 != 0 {
        64
    } else if hf & hflags::CS32 != 0 {
        32
    } else {
        16
    };
    let fetch_mmu = crate::cpu::fetch_mmu(hf);
    let max_insns = if hf & hflags::TF != 0 {
        1
    } else {
        core.max_insns.max(1)
    };
    let trace_in_asm = core.trace.in_asm;
    let mut t = Tr::new(b, hf, pc, core.trace.unimp);
    let mut cur = pc;
    loop {
        let first = t.b.insn_count() == 0;
        if core.breakpoint_at(cur, first) {
            // A debugger breakpoint (guest memory is never patched): a block starting there
            // only stops; any other block ends before it.
            if first {
                t.b.push(Op::Exit {
                    code: tci64_engine::debug::EXIT_DEBUG,
                });
            } else {
                t.goto(cur, 0);
            }
            break;
        }
        // Fetch up to 15 bytes, crossing into the next page only if the instruction needs it.
        let mut buf = [0u8; 15];
        let n = match core.fetch_code(bus, cur, fetch_mmu, t.b) {
            Ok(s) => {
                let n = s.len().min(15);
                buf[..n].copy_from_slice(&s[..n]);
                n
            }
            Err(e) if first => return Err(e),
            Err(_) => {
                t.goto(cur, 0);
                break;
            }
        };
        let mut insn = decode(bitness, &buf[..n], cur);
        if insn.is_invalid() && n < 15 {
            // Maybe the instruction continues on the next page.
            let more = cur.wrapping_add(n as u64);
            match core.fetch_code(bus, more, fetch_mmu, t.b) {
                Ok(s) => {
                    let m = s.len().min(15 - n);
                    buf[n..n + m].copy_from_slice(&s[..m]);
                    insn = decode(bitness, &buf[..n + m], cur);
                }
                Err(e) if first => {
                    // The first instruction cannot be fetched whole: the fault is for the
                    // second page, recorded by the walker; RIP stays at the instruction.
                    return Err(e);
                }
                Err(_) => {
                    t.goto(cur, 0);
                    break;
                }
            }
        }
        if trace_in_asm {
            log::info!(target: "tci64::trace", "IN: {cur:#018x}  {insn}");
        }
        let aux = aux_of(&t);
        t.b.insn_start(cur, aux);
        t.pc = cur;
        t.next = cur.wrapping_add(insn.len() as u64);
        if bitness != 64 {
            t.next &= 0xffff_ffff;
        }
        t.insn = insn;
        t.ss_ref = false;
        t.flags_dead = is_rotate_imm(&insn)
            && t.b.len() < 1500
            && flags_dead_after(core, bus, &mut t, pc, bitness, fetch_mmu, max_insns);
        let flow = if insn.is_invalid() || insn.mnemonic() == Mnemonic::INVALID {
            t.unimplemented()
        } else {
            dispatch(&mut t).unwrap_or_else(|| t.unimplemented())
        };
        if flow == Flow::End {
            break;
        }
        cur = t.next;
        if t.b.insn_count() >= max_insns || cur & !0xfff != pc & !0xfff || t.b.len() > 2000 {
            if hf & hflags::TF != 0 {
                // Single-step: #DB after the instruction (a trap: RIP is the next one).
                t.b.set(RIP, cur);
                t.sync_cc();
                t.b.push(Op::Exit {
                    code: crate::cpu::EXIT_SINGLE_STEP,
                });
            } else {
                t.goto(cur, 0);
            }
            break;
        }
    }
    Ok(())
}

/// ROL/ROR of a register by an immediate count: the instructions whose only flag work is
/// merging CF and OF into the current flags (which, at a block start with the lazy state
/// unknown, costs a helper call).
fn is_rotate_imm(i: &Instruction) -> bool {
    matches!(i.mnemonic(), Mnemonic::Rol | Mnemonic::Ror)
        && i.op0_kind() == OpKind::Register
        && (i.op_count() < 2 || i.op1_kind() == OpKind::Immediate8)
}

/// How an instruction after a flag producer treats the arithmetic flags.
enum FlagUse {
    /// Writes all six from its own operands, cannot trap: the earlier flags are dead.
    Overwrites,
    /// Neither reads the flags nor can trap, end the block or touch memory.
    Neutral,
    /// Anything else (reads flags, may trap or leave the block): the flags must be exact.
    Other,
}

fn flag_use(i: &Instruction) -> FlagUse {
    use Mnemonic as M;
    let ops = 0..i.op_count();
    let gpr_or_imm = ops.clone().all(|k| match i.op_kind(k) {
        OpKind::Register => i.op_register(k).is_gpr(),
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => true,
        _ => false,
    });
    if i.has_lock_prefix() {
        return FlagUse::Other;
    }
    match i.mnemonic() {
        M::Add | M::Sub | M::And | M::Or | M::Xor | M::Cmp | M::Test | M::Neg if gpr_or_imm => {
            FlagUse::Overwrites
        }
        M::Mov | M::Movzx | M::Movsx | M::Movsxd | M::Not | M::Bswap if gpr_or_imm => {
            FlagUse::Neutral
        }
        // LEA computes an address and accesses nothing.
        M::Lea if i.op0_kind() == OpKind::Register && i.op0_register().is_gpr() => FlagUse::Neutral,
        // By an immediate count these set or keep flags but never read them.
        M::Rol | M::Ror | M::Shl | M::Shr | M::Sar
            if gpr_or_imm
                && i.op0_kind() == OpKind::Register
                && (i.op_count() < 2 || i.op1_kind() != OpKind::Register) =>
        {
            FlagUse::Neutral
        }
        M::Nop if i.op_count() == 0 => FlagUse::Neutral,
        _ => FlagUse::Other,
    }
}

/// True when the instructions after the current one (`t.next` on), all in this same block,
/// overwrite every arithmetic flag before any reads one, can trap or leaves the block, so the
/// flags the current instruction leaves are never observed: not by the guest, not by an
/// exception frame, not at the block's end. Looks at most a few instructions ahead, on the
/// block's page only, never past the instruction budget of the block or a breakpoint.
fn flags_dead_after(
    core: &mut Core<X86>,
    bus: &mut Bus,
    t: &mut Tr,
    block_pc: u64,
    bitness: u32,
    fetch_mmu: u8,
    max_insns: u16,
) -> bool {
    const LOOKAHEAD: usize = 6;
    let count = t.b.insn_count() as usize;
    // The block continues only on the page of its first instruction.
    let page = block_pc & !0xfff;
    let mut at = t.next;
    for k in 1..=LOOKAHEAD {
        if count + k > max_insns as usize || at & !0xfff != page || core.breakpoint_at(at, false) {
            return false;
        }
        let mut buf = [0u8; 15];
        let n = match core.fetch_code(bus, at, fetch_mmu, t.b) {
            Ok(s) => {
                let n = s.len().min(15);
                buf[..n].copy_from_slice(&s[..n]);
                n
            }
            Err(_) => return false,
        };
        let y = decode(bitness, &buf[..n], at);
        if y.is_invalid() {
            return false;
        }
        match flag_use(&y) {
            FlagUse::Overwrites => return true,
            FlagUse::Neutral => {}
            FlagUse::Other => return false,
        }
        at = at.wrapping_add(y.len() as u64);
        if bitness != 64 {
            at &= 0xffff_ffff;
        }
    }
    false
}

/// Whether the translator has code for the instruction `insn` in a block with mode bits `hf`:
/// false where it would emit the "unimplemented instruction" #UD ([`Tr::unimplemented`]).
/// Translation only; nothing runs. The completeness test (`tests/completeness.rs`) asks this
/// of every form the ISA has.
pub fn implemented(insn: &Instruction, hf: u32) -> bool {
    if insn.is_invalid() || insn.mnemonic() == Mnemonic::INVALID {
        return false;
    }
    let mut b = Builder::new(<X86 as tci64_engine::Guest>::FIRST_TEMP);
    b.insn_start(insn.ip(), u32::MAX);
    let mut t = Tr::new(&mut b, hf, insn.ip(), false);
    t.next = insn.next_ip();
    t.insn = *insn;
    dispatch(&mut t).is_some()
}

fn decode(bitness: u32, bytes: &[u8], ip: u64) -> Instruction {
    let mut d = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
    d.decode()
}
