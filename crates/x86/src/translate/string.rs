//! Instruction family: string instructions (MOVS/STOS/LODS/SCAS/CMPS) with REP prefixes.
//! (INS/OUTS belong to the system family.)
//!
//! Every form runs in one helper that loops, writing RCX/RSI/RDI back after each element, so
//! a fault part-way leaves exact progress and the instruction restarts where it stopped; a
//! long `rep` yields to the run loop every [`CHUNK`] elements (`Trap::Restart`) so pending
//! interrupts are taken, and each yield counts as one instruction (the run's budget ends).
//! `rep movs`/`rep stos` move whole runs of elements at once where both sides are plain RAM
//! already in the TLB ([`bulk`]): one `copy_within` or fill per page, the element loop for
//! everything else (TLB misses, faults, MMIO, code pages, watchpoints, straddling elements).

use super::{Flow, Tr};
use crate::flags::{cc, mask, CcKind};
use crate::helpers::{base, Bus, Helper};
use crate::hflags;
use crate::regs::*;
use crate::X86;
use iced_x86::{Mnemonic, OpKind, Register};
use tci64_engine::mem::{PAGE_MASK, PAGE_SIZE};
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
            // Yield with exact progress; the instruction restarts from RIP. The chunk counts
            // as one instruction, so a long `rep` also ends a run's instruction budget (and
            // advances the `-icount` clock) instead of holding the run loop until RCX is 0.
            c.icount += 1;
            return Err(Trap::Restart);
        }
        let rsi = c.regs.0[RSI as usize];
        let rdi = c.regs.0[RDI as usize];
        if rep != 0 && matches!(kind, K_MOVS | K_STOS) {
            let want = (rcx & amask).min(u64::from(CHUNK - done));
            let b = Bulk {
                n: n as u64,
                back: step != n as u64,
                amask,
                want,
                mmu,
            };
            let k = bulk(c, &b, kind, (lin(sbase, rsi), rsi), (lin(dbase, rdi), rdi));
            if k != 0 {
                let adv = step.wrapping_mul(k);
                if kind == K_MOVS {
                    set_reg(c, RSI, asz, rsi.wrapping_add(adv));
                }
                set_reg(c, RDI, asz, rdi.wrapping_add(adv));
                set_reg(c, RCX, asz, rcx.wrapping_sub(k));
                done += k as u32;
                continue;
            }
        }
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

/// What one bulk step of a `rep movs`/`rep stos` may do.
struct Bulk {
    /// Element size in bytes.
    n: u64,
    /// DF set: the elements go down from the current one.
    back: bool,
    /// The address-size mask of the index registers.
    amask: u64,
    /// Elements wanted at most (count left, and the rest of this call's chunk).
    want: u64,
    mmu: u8,
}

/// How many elements from the one at (linear address, index register) `at` lie in its page,
/// contiguous in linear addresses (the index register does not wrap), at most `b.want`.
fn span(b: &Bulk, (a, off): (u64, u64)) -> u64 {
    let in_page = a & PAGE_MASK;
    if in_page + b.n > PAGE_SIZE {
        return 0;
    }
    let off = off & b.amask;
    let (page_room, wrap_room) = if b.back {
        (in_page / b.n + 1, off / b.n + 1)
    } else {
        (
            (PAGE_SIZE - in_page) / b.n,
            ((b.amask - off) / b.n).saturating_add(1),
        )
    };
    b.want.min(page_room).min(wrap_room)
}

/// The RAM index of the page of `a` if the TLB maps it to plain RAM for this access (no MMIO,
/// no translated code, no watchpoint: the tag is the bare page address), else `None`.
fn ram_page(c: &Core<X86>, mmu: u8, a: u64, write: bool) -> Option<u64> {
    let e = c.mem.tlb_entry(mmu, a);
    let tag = if write { e.write } else { e.read };
    (tag == a & !PAGE_MASK).then(|| (a & !PAGE_MASK).wrapping_add(e.addend))
}

/// Do as many elements of a `rep movs`/`rep stos` as one host copy or fill can, exactly as
/// the element loop would: the source and destination elements all inside one page each,
/// both mapped to plain RAM in the TLB already, and (for an overlapping move in the direction
/// where later elements read what earlier ones wrote) no more elements than the distance.
/// Returns the number done, 0 when the element loop must take the next element (a TLB miss,
/// a fault, MMIO, a code page, a watchpoint, a page-straddling element).
fn bulk(c: &mut Core<X86>, b: &Bulk, kind: u64, src: (u64, u64), dst: (u64, u64)) -> u64 {
    let mut k = span(b, dst);
    if k == 0 {
        return 0;
    }
    let Some(dpage) = ram_page(c, b.mmu, dst.0, true) else {
        return 0;
    };
    // The lowest byte the k elements touch, as a RAM index.
    let low = |a: u64, page: u64, k: u64| {
        let first = page + (a & PAGE_MASK);
        if b.back {
            first - (k - 1) * b.n
        } else {
            first
        }
    };
    let n = b.n as usize;
    if kind == K_MOVS {
        k = k.min(span(b, src));
        if k == 0 {
            return 0;
        }
        let Some(spage) = ram_page(c, b.mmu, src.0, false) else {
            return 0;
        };
        let s0 = spage + (src.0 & PAGE_MASK);
        let d0 = dpage + (dst.0 & PAGE_MASK);
        // Element by element, a destination ahead of the source in the direction of the move
        // feeds later elements with earlier ones' results: copy only what lies before it.
        let ahead = if b.back {
            s0.wrapping_sub(d0)
        } else {
            d0.wrapping_sub(s0)
        };
        if ahead != 0 && ahead < k * b.n {
            k = ahead / b.n;
            if k == 0 {
                return 0;
            }
        }
        let (s, d) = (low(src.0, spage, k) as usize, low(dst.0, dpage, k) as usize);
        // Both ranges lie inside one RAM page each (`span`, `ram_page`); `copy_within` is a
        // memmove, which is what the elements do when neither range feeds the other.
        c.mem.ram_mut().copy_within(s..s + k as usize * n, d);
    } else {
        let d = low(dst.0, dpage, k) as usize;
        let v = c.regs.0[RAX as usize].to_le_bytes();
        let out = &mut c.mem.ram_mut()[d..d + k as usize * n];
        if n == 1 {
            out.fill(v[0]);
        } else {
            for e in out.chunks_exact_mut(n) {
                e.copy_from_slice(&v[..n]);
            }
        }
    }
    k
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
