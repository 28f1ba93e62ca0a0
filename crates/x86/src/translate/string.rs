//! Instruction family: string instructions (MOVS/STOS/LODS/SCAS/CMPS) with REP prefixes.
//! (INS/OUTS belong to the system family.)
//!
//! Every form runs in one helper that loops, writing RCX/RSI/RDI back after each element, so
//! a fault part-way leaves exact progress and the instruction restarts where it stopped; a
//! long `rep` yields to the run loop every [`CHUNK`] elements (`Trap::Restart`) so pending
//! interrupts are taken.

use super::{Flow, Tr};
use crate::flags::{cc, mask, CcKind};
use crate::helpers::{base, Bus, Helper};
use crate::hflags;
use crate::regs::*;
use crate::X86;
use iced_x86::{Mnemonic, OpKind, Register};
use tci64_engine::{Core, Trap};

helpers!(pub enum StrH @ base::STRING; {
    STRING => h_string,
});

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::STRING, base::SYSTEM, StrH::TABLE);

/// Elements per helper call before yielding to the run loop.
pub const CHUNK: u32 = 4096;

const K_MOVS: u64 = 0;
const K_STOS: u64 = 1;
const K_LODS: u64 = 2;
const K_SCAS: u64 = 3;
const K_CMPS: u64 = 4;

/// Read `n` bytes at `a` (TLB fast path first).
#[inline]
fn rd(c: &mut Core<X86>, bus: &mut Bus, a: u64, n: usize, mmu: u8) -> Result<u64, Trap> {
    let v = match n {
        1 => c.mem.load_fast::<1>(mmu, a),
        2 => c.mem.load_fast::<2>(mmu, a),
        4 => c.mem.load_fast::<4>(mmu, a),
        _ => c.mem.load_fast::<8>(mmu, a),
    };
    match v {
        Some(v) => Ok(v),
        None => c.read(bus, a, n, mmu),
    }
}

/// Write `n` bytes at `a` (TLB fast path first).
#[inline]
fn wr(c: &mut Core<X86>, bus: &mut Bus, a: u64, n: usize, mmu: u8, v: u64) -> Result<(), Trap> {
    let done = match n {
        1 => c.mem.store_fast::<1>(mmu, a, v),
        2 => c.mem.store_fast::<2>(mmu, a, v),
        4 => c.mem.store_fast::<4>(mmu, a, v),
        _ => c.mem.store_fast::<8>(mmu, a, v),
    };
    if done {
        Ok(())
    } else {
        c.write(bus, a, n, mmu, v)
    }
}

/// Write the low `bytes` of `v` into a register with x86 semantics.
fn set_reg(c: &mut Core<X86>, r: Slot8, bytes: u32, v: u64) {
    let old = c.regs.0[r as usize];
    c.regs.0[r as usize] = match bytes {
        8 => v,
        4 => v & 0xffff_ffff,
        2 => (old & !0xffff) | (v & 0xffff),
        _ => (old & !0xff) | (v & 0xff),
    };
}

type Slot8 = u8;

/// `op` = kind | size index << 4 | rep << 8 (1 = REP/REPE, 2 = REPNE) | address size index
/// << 12 | legacy (segment bases, 32-bit linear wrap) << 16. `sbase` = the source segment base.
fn h_string(c: &mut Core<X86>, bus: &mut Bus, op: u64, sbase: u64, _: u64) -> Result<u64, Trap> {
    let kind = op & 15;
    let s = ((op >> 4) & 3) as u32;
    let n = 1usize << s;
    let rep = (op >> 8) & 3;
    let asz = 1u32 << ((op >> 12) & 3);
    let legacy = op & (1 << 16) != 0;
    let amask = mask(((op >> 12) & 3) as u32);
    let mmu = if c.guest.cpl == 3 { 1 } else { 0 };
    let dbase = if legacy {
        c.regs.0[ES_BASE as usize]
    } else {
        0
    };
    let lin = |base: u64, off: u64| {
        let a = base.wrapping_add(off & amask);
        if legacy {
            a & 0xffff_ffff
        } else {
            a
        }
    };
    let step: u64 = if c.regs.0[RFLAGS as usize] & fl::DF != 0 {
        (n as u64).wrapping_neg()
    } else {
        n as u64
    };
    let m = mask(s);
    let mut cmp: Option<(u64, u64)> = None;
    let mut done = 0u32;
    if rep != 0 && asz == 4 {
        // A 32-bit count register is written (zero-extended) even when it is already zero.
        // So are the index registers the instruction uses.
        let v = c.regs.0[RCX as usize];
        set_reg(c, RCX, 4, v);
        // (as the host CPU does: only for the fast-string MOVS/STOS).
        if kind == K_MOVS {
            let v = c.regs.0[RSI as usize];
            set_reg(c, RSI, 4, v);
        }
        if matches!(kind, K_MOVS | K_STOS) {
            let v = c.regs.0[RDI as usize];
            set_reg(c, RDI, 4, v);
        }
    }
    loop {
        let rcx = c.regs.0[RCX as usize];
        if rep != 0 && rcx & amask == 0 {
            break;
        }
        if done == CHUNK {
            // Yield with exact progress; the instruction restarts from RIP.
            return Err(Trap::Restart);
        }
        let rsi = c.regs.0[RSI as usize];
        let rdi = c.regs.0[RDI as usize];
        match kind {
            K_MOVS => {
                let v = rd(c, bus, lin(sbase, rsi), n, mmu)?;
                wr(c, bus, lin(dbase, rdi), n, mmu, v)?;
            }
            K_STOS => {
                let v = c.regs.0[RAX as usize];
                wr(c, bus, lin(dbase, rdi), n, mmu, v)?;
            }
            K_LODS => {
                let v = rd(c, bus, lin(sbase, rsi), n, mmu)?;
                set_reg(c, RAX, n as u32, v);
            }
            K_SCAS => {
                let v = rd(c, bus, lin(dbase, rdi), n, mmu)?;
                cmp = Some((c.regs.0[RAX as usize] & m, v));
            }
            _ => {
                let a = rd(c, bus, lin(sbase, rsi), n, mmu)?;
                let b = rd(c, bus, lin(dbase, rdi), n, mmu)?;
                cmp = Some((a, b));
            }
        }
        if matches!(kind, K_MOVS | K_LODS | K_CMPS) {
            set_reg(c, RSI, asz, rsi.wrapping_add(step));
        }
        if matches!(kind, K_MOVS | K_STOS | K_SCAS | K_CMPS) {
            set_reg(c, RDI, asz, rdi.wrapping_add(step));
        }
        if rep == 0 {
            break;
        }
        set_reg(c, RCX, asz, rcx.wrapping_sub(1));
        done += 1;
        if let Some((a, b)) = cmp {
            let eq = a == b;
            if (rep == 1 && !eq) || (rep == 2 && eq) {
                break;
            }
        }
    }
    if let Some((a, b)) = cmp {
        let r = &mut c.regs.0;
        r[CC_DST as usize] = a.wrapping_sub(b) & m;
        r[CC_SRC as usize] = b;
        r[CC_SRC2 as usize] = a;
        r[CC_OP as usize] = cc(CcKind::Sub, s) as u64;
    }
    Ok(0)
}

fn addr_size(k: OpKind) -> Option<u64> {
    Some(match k {
        OpKind::MemorySegRSI | OpKind::MemoryESRDI => 3,
        OpKind::MemorySegESI | OpKind::MemoryESEDI => 2,
        OpKind::MemorySegSI | OpKind::MemoryESDI => 1,
        _ => return None,
    })
}

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let i = t.insn;
    use Mnemonic as M;
    let kind = match i.mnemonic() {
        M::Movsb | M::Movsw | M::Movsd | M::Movsq => K_MOVS,
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => K_STOS,
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => K_LODS,
        M::Scasb | M::Scasw | M::Scasd | M::Scasq => K_SCAS,
        M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => K_CMPS,
        _ => return None,
    };
    // MOVSD/CMPSD are also SSE mnemonics: require a string operand.
    let asz = (0..i.op_count()).find_map(|k| addr_size(i.op_kind(k)))?;
    let size = i.memory_size().size();
    let s = super::operand::size_ix(size) as u64;
    let rep = if i.has_repne_prefix() {
        if matches!(kind, K_SCAS | K_CMPS) {
            2
        } else {
            1
        }
    } else if i.has_rep_prefix() || i.has_repe_prefix() {
        1
    } else {
        0
    };
    let legacy = !t.long64() && t.hf & hflags::ADDSEG != 0;
    let seg = match i.memory_segment() {
        Register::FS => Some(FS_BASE),
        Register::GS => Some(GS_BASE),
        _ if !legacy => None,
        Register::ES => Some(ES_BASE),
        Register::CS => Some(CS_BASE),
        Register::SS => Some(SS_BASE),
        _ => Some(DS_BASE),
    };
    let op = kind | (s << 4) | (rep << 8) | (asz << 12) | ((legacy as u64) << 16);
    let kop = t.b.konst(op);
    let sb = match seg {
        Some(sl) => sl,
        None => t.b.konst(0),
    };
    let z = t.b.konst(0);
    t.call(StrH::STRING.id(), kop, sb, z);
    if matches!(kind, K_SCAS | K_CMPS) {
        t.cc_dynamic();
    }
    let _ = cc;
    Some(Flow::Next)
}
