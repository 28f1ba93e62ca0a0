//! Instruction family: SSE/SSE2 (plus the SSE3 moves). Each instruction is one call of the
//! SSE helper ([`crate::fpu::sse::h_sse`]) with a control word; memory sources are loaded in
//! IR first (so faults happen before any register changes), stores go through a helper.

use super::operand::gpr;
use super::{Flow, Tr};
use crate::fpu::fxsave;
use crate::fpu::mmx;
use crate::fpu::sse::{self as fs, ctl, SseOp, CTL_GPR_DST};
use crate::fpu::sse4::{self as fs4, ExtOp};
use crate::helpers::{base, Helper};
use crate::hflags;
use crate::regs::DS_BASE;
use crate::state::vec;
use iced_x86::{Mnemonic, OpKind, Register};
use tci64_engine::{Cond, Op, Slot};

helpers!(pub enum SseH @ base::SSE; {
    OP => fs::h_sse,
    XMM_GET => fs::h_xmm_get,
    XMM_STORE => fs::h_xmm_store,
    LDMXCSR => fs::h_ldmxcsr,
    STMXCSR => fs::h_stmxcsr,
    MASKMOV => fs::h_maskmov,
    FXSAVE => fxsave::h_fxsave,
    FXRSTOR => fxsave::h_fxrstor,
    EXT => fs4::h_ext,
    CRC32 => fs4::h_crc32,
    MMX => mmx::h_mmx,
});

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::SSE, base::X87, SseH::TABLE);

fn xmm_num(r: Register) -> u64 {
    (r as u32 - Register::XMM0 as u32) as u64 & 15
}

/// Exceptions common to SSE instructions: EM → #UD, !OSFXSR → #UD, TS → #NM.
fn sse_check(t: &mut Tr) -> Option<Flow> {
    if t.hf & hflags::EM != 0 || t.hf & hflags::OSFXSR == 0 {
        return Some(t.raise(vec::UD, None));
    }
    if t.hf & hflags::TS != 0 {
        return Some(t.raise(vec::NM, None));
    }
    None
}

/// #GP(0) unless `a + disp` is 16-byte aligned.
fn check_align16(t: &mut Tr, a: Slot, disp: i32) {
    let ad = t.b.addi(a, disp as i64);
    let ok = t.b.label();
    t.b.push(Op::BrCondI {
        a: ad,
        imm: 15,
        cond: Cond::TstZ,
        t: ok,
    });
    t.call_k(super::CoreH::RAISE.id(), vec::GP as u64, 0, 1);
    t.b.set_label(ok);
}

/// Memory operands of these may be misaligned.
fn unaligned_ok(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Movups | Mnemonic::Movupd | Mnemonic::Movdqu | Mnemonic::Lddqu
    )
}

/// Extracts to r/m (a memory destination stores a computed value, not an XMM register).
fn is_extract(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Pextrb
            | Mnemonic::Pextrw
            | Mnemonic::Pextrd
            | Mnemonic::Pextrq
            | Mnemonic::Extractps
    )
}

/// Load the memory operand (its size from the instruction) into (lo, hi).
fn load_mem(t: &mut Tr, align: bool) -> (Slot, Slot) {
    let size = t.insn.memory_size().size();
    let (a, disp) = t.ea();
    if size == 16 {
        if align {
            check_align16(t, a, disp);
        }
        let lo = t.ld(8, a, disp);
        let hi = t.ld(8, a, disp.wrapping_add(8));
        (lo, hi)
    } else {
        let lo = t.ld(size.clamp(1, 8), a, disp);
        let z = t.b.konst(0);
        (lo, z)
    }
}

/// Address (`slot + disp`) as one slot.
fn addr_slot(t: &mut Tr) -> Slot {
    let (a, disp) = t.ea();
    if disp == 0 {
        a
    } else {
        t.b.addi(a, disp as i64)
    }
}

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let m = t.insn.mnemonic();
    if matches!(m, Mnemonic::Emms | Mnemonic::Cvtpi2ps | Mnemonic::Cvtpi2pd)
        || (0..t.insn.op_count())
            .any(|i| t.insn.op_kind(i) == OpKind::Register && t.insn.op_register(i).is_mm())
    {
        return translate_mmx(t);
    }
    match m {
        // (The PREFETCH hints are the base family's.)
        Mnemonic::Lfence | Mnemonic::Sfence | Mnemonic::Mfence => return Some(Flow::Next),
        Mnemonic::Ldmxcsr | Mnemonic::Stmxcsr => {
            if let Some(f) = sse_check(t) {
                return Some(f);
            }
            let (a, disp) = t.ea();
            if m == Mnemonic::Ldmxcsr {
                let v = t.ld(4, a, disp);
                let z = t.b.konst(0);
                t.call(SseH::LDMXCSR.id(), v, z, z);
            } else {
                let z = t.b.konst(0);
                let v = t.call(SseH::STMXCSR.id(), z, z, z);
                t.st(4, a, disp, v);
            }
            return Some(Flow::Next);
        }
        Mnemonic::Fxsave | Mnemonic::Fxsave64 | Mnemonic::Fxrstor | Mnemonic::Fxrstor64 => {
            if t.hf & (hflags::EM | hflags::TS) != 0 {
                return Some(t.raise(vec::NM, None));
            }
            let a = addr_slot(t);
            let mut f = 0;
            if matches!(m, Mnemonic::Fxsave64 | Mnemonic::Fxrstor64) {
                f |= fxsave::REXW;
            }
            if t.long64() {
                f |= fxsave::MODE64;
            }
            let kf = t.b.konst(f);
            let id = if matches!(m, Mnemonic::Fxsave | Mnemonic::Fxsave64) {
                SseH::FXSAVE.id()
            } else {
                SseH::FXRSTOR.id()
            };
            t.call(id, a, kf, kf);
            return Some(Flow::Next);
        }
        Mnemonic::Crc32 => {
            // CRC32 r32/r64, r/m8/16/32/64 (CRC-32C); no flags.
            let size = t.op_size(1);
            let src = t.loc(1);
            let v = t.read(src, size);
            let r0 = t.insn.op_register(0);
            let crc = t.read_reg(r0);
            let ks = t.b.konst(size as u64);
            let r = t.call(SseH::CRC32.id(), crc, v, ks);
            t.write_reg(r0, r);
            return Some(Flow::Next);
        }
        Mnemonic::Movnti => {
            // A plain GPR store.
            let size = t.op_size(1);
            let dst = t.loc(0);
            let src = t.loc(1);
            let v = t.read_raw(src, size);
            t.write(dst, size, v);
            return Some(Flow::Next);
        }
        Mnemonic::Maskmovdqu => {
            if let Some(f) = sse_check(t) {
                return Some(f);
            }
            // Implicit DS:[rDI] (or the overriding segment).
            if !matches!(
                t.insn.op_kind(0),
                OpKind::MemorySegRDI | OpKind::MemorySegEDI | OpKind::MemorySegDI
            ) {
                return None;
            }
            let a = addr_slot_rdi(t);
            let regs = xmm_num(t.insn.op_register(1)) | xmm_num(t.insn.op_register(2)) << 4;
            let k = t.b.konst(regs);
            let z = t.b.konst(0);
            t.call(SseH::MASKMOV.id(), a, k, z);
            return Some(Flow::Next);
        }
        _ => {}
    }
    // The non-temporal stores are aligned stores (the hint has no architectural effect).
    let op_m = match m {
        Mnemonic::Movntps => Mnemonic::Movaps,
        Mnemonic::Movntpd => Mnemonic::Movapd,
        Mnemonic::Movntdq => Mnemonic::Movdqa,
        _ => m,
    };
    let (helper, opnum, ext) = if let Some(op) = SseOp::from_mnemonic(op_m) {
        (SseH::OP, op as u64, None)
    } else {
        let e = ExtOp::from_mnemonic(m)?;
        (SseH::EXT, e as u64, Some(e))
    };
    let unaligned = unaligned_ok(m) || ext.is_some_and(|e| e.unaligned_ok());
    let n = t.insn.op_count();
    for i in 0..n {
        match t.insn.op_kind(i) {
            OpKind::Register if t.insn.op_register(i).is_mm() => return None,
            // String MOVSD/CMPSD (their mnemonics are the SSE2 ones).
            OpKind::MemorySegRSI
            | OpKind::MemorySegESI
            | OpKind::MemorySegSI
            | OpKind::MemoryESRDI
            | OpKind::MemoryESEDI
            | OpKind::MemoryESDI => return None,
            _ => {}
        }
    }
    if let Some(f) = sse_check(t) {
        return Some(f);
    }
    let mut k = opnum;
    if n >= 3 && t.insn.op_kind(n - 1) == OpKind::Immediate8 {
        k |= (t.insn.immediate(n - 1) & 0xff) << ctl::IMM_SHIFT;
    }
    let k0 = t.insn.op_kind(0);
    // Stores: memory destination.
    if k0 == OpKind::Memory && is_extract(m) {
        // PEXTRB/W/D/Q, EXTRACTPS to memory: compute the value, then store it.
        let size = t.insn.memory_size().size();
        let (a, disp) = t.ea();
        k |= CTL_GPR_DST | xmm_num(t.insn.op_register(1)) << ctl::SRC_SHIFT;
        let kk = t.b.konst(k);
        let z = t.b.konst(0);
        let v = t.call(helper.id(), z, z, kk);
        t.st(size.clamp(1, 8), a, disp, v);
        return Some(Flow::Next);
    }
    if k0 == OpKind::Memory {
        let src = xmm_num(t.insn.op_register(1));
        let size = t.insn.memory_size().size();
        let (a, disp) = t.ea();
        if size == 16 && !unaligned_ok(m) {
            check_align16(t, a, disp);
        }
        let ad = if disp == 0 {
            a
        } else {
            t.b.addi(a, disp as i64)
        };
        let hi = matches!(m, Mnemonic::Movhps | Mnemonic::Movhpd) as u64;
        let kr = t.b.konst(src | hi << 4);
        let ks = t.b.konst(size as u64);
        t.call(SseH::XMM_STORE.id(), ad, kr, ks);
        return Some(Flow::Next);
    }
    let r0 = t.insn.op_register(0);
    let gpr_dst = gpr(r0).is_some();
    if gpr_dst {
        k |= CTL_GPR_DST;
        if r0.size() == 8 {
            k |= ctl::W64;
        }
    } else {
        k |= xmm_num(r0) << ctl::DST_SHIFT;
    }
    let (lo, hi) = match t.insn.op_kind(1) {
        OpKind::Register => {
            let r1 = t.insn.op_register(1);
            if r1.is_xmm() {
                k |= xmm_num(r1) << ctl::SRC_SHIFT;
                let z = t.b.konst(0);
                (z, z)
            } else {
                k |= ctl::SRC_ARG;
                if r1.size() == 8 {
                    k |= ctl::W64;
                }
                let v = t.read_reg(r1);
                let z = t.b.konst(0);
                (v, z)
            }
        }
        OpKind::Memory => {
            k |= ctl::SRC_ARG;
            if t.insn.memory_size().size() == 8
                && matches!(m, Mnemonic::Cvtsi2ss | Mnemonic::Cvtsi2sd)
            {
                k |= ctl::W64;
            }
            let align = t.insn.memory_size().size() == 16 && !unaligned;
            load_mem(t, align)
        }
        OpKind::Immediate8 => {
            k |= ctl::SRC_IMM | (t.insn.immediate(1) & 0xff) << ctl::IMM_SHIFT;
            k |= xmm_num(r0) << ctl::SRC_SHIFT;
            let z = t.b.konst(0);
            (z, z)
        }
        _ => return None,
    };
    let kk = t.b.konst(k);
    let r = t.call(helper.id(), lo, hi, kk);
    if gpr_dst {
        t.write_reg(r0, r);
    }
    if ext.is_some_and(|e| e.writes_ecx()) {
        t.write_reg(Register::ECX, r);
    }
    if matches!(
        m,
        Mnemonic::Comiss | Mnemonic::Ucomiss | Mnemonic::Comisd | Mnemonic::Ucomisd
    ) || ext.is_some_and(|e| e.sets_flags())
    {
        t.cc_dynamic();
    }
    Some(Flow::Next)
}

/// DS:[rDI] (or the overriding segment) for MASKMOVDQU.
fn addr_slot_rdi(t: &mut Tr) -> Slot {
    let seg = t.insn.memory_segment();
    let (di, width) = match t.insn.op_kind(0) {
        OpKind::MemorySegRDI => (crate::regs::RDI, 8),
        OpKind::MemorySegEDI => (crate::regs::RDI, 4),
        _ => (crate::regs::RDI, 2),
    };
    let off = t.zx(di, width);
    let base = match seg {
        Register::FS => Some(crate::regs::FS_BASE),
        Register::GS => Some(crate::regs::GS_BASE),
        _ if t.long64() || t.hf & hflags::ADDSEG == 0 => None,
        Register::ES => Some(crate::regs::ES_BASE),
        Register::SS => Some(crate::regs::SS_BASE),
        Register::CS => Some(crate::regs::CS_BASE),
        _ => Some(DS_BASE),
    };
    match base {
        None => off,
        Some(b) => {
            let s = t.b.bin(tci64_engine::mk::add, off, b);
            if t.long64() {
                s
            } else {
                t.zx(s, 4)
            }
        }
    }
}

fn mm_num(r: Register) -> u64 {
    (r as u32).wrapping_sub(Register::MM0 as u32) as u64 & 7
}

/// MMX instructions (and the SSE/SSE2 forms on MMX registers); see [`crate::fpu::mmx`].
fn translate_mmx(t: &mut Tr) -> Option<Flow> {
    use Mnemonic as M;
    let m = t.insn.mnemonic();
    let mut k = match m {
        M::Emms => mmx::EMMS,
        M::Movd | M::Movq | M::Movntq => mmx::MOV_IN,
        M::Movq2dq => mmx::MOVQ2DQ,
        M::Movdq2q => mmx::MOVDQ2Q,
        M::Maskmovq => mmx::MASKMOVQ,
        M::Pshufw => SseOp::Pshuflw as u64,
        M::Punpckhbw => SseOp::Punpcklbw as u64 | mmx::HI_HALF,
        M::Punpckhwd => SseOp::Punpcklwd as u64 | mmx::HI_HALF,
        M::Punpckhdq => SseOp::Punpckldq as u64 | mmx::HI_HALF,
        M::Packsswb | M::Packssdw | M::Packuswb => SseOp::from_mnemonic(m)? as u64 | mmx::PACK,
        M::Paddb
        | M::Paddw
        | M::Paddd
        | M::Paddq
        | M::Psubb
        | M::Psubw
        | M::Psubd
        | M::Psubq
        | M::Paddsb
        | M::Paddsw
        | M::Paddusb
        | M::Paddusw
        | M::Psubsb
        | M::Psubsw
        | M::Psubusb
        | M::Psubusw
        | M::Pand
        | M::Pandn
        | M::Por
        | M::Pxor
        | M::Pcmpeqb
        | M::Pcmpeqw
        | M::Pcmpeqd
        | M::Pcmpgtb
        | M::Pcmpgtw
        | M::Pcmpgtd
        | M::Punpcklbw
        | M::Punpcklwd
        | M::Punpckldq
        | M::Psllw
        | M::Pslld
        | M::Psllq
        | M::Psrlw
        | M::Psrld
        | M::Psrlq
        | M::Psraw
        | M::Psrad
        | M::Pmullw
        | M::Pmulhw
        | M::Pmaddwd
        | M::Pminub
        | M::Pmaxub
        | M::Pminsw
        | M::Pmaxsw
        | M::Pavgb
        | M::Pavgw
        | M::Psadbw
        | M::Pmulhuw
        | M::Pmuludq
        | M::Pmovmskb
        | M::Pinsrw
        | M::Pextrw => SseOp::from_mnemonic(m)? as u64,
        // SSSE3 on MMX registers (exact on the 64-bit view: horizontal ops with the source in
        // the high half, PSHUFB on a duplicated destination, PALIGNR on source:destination).
        M::Phaddw | M::Phaddd | M::Phaddsw | M::Phsubw | M::Phsubd | M::Phsubsw => {
            ExtOp::from_mnemonic(m)? as u64 | mmx::EXT | mmx::PACK
        }
        M::Pshufb => ExtOp::from_mnemonic(m)? as u64 | mmx::EXT | mmx::DUP,
        M::Palignr => ExtOp::from_mnemonic(m)? as u64 | mmx::EXT | mmx::ALIGN,
        // SSE/SSE2 conversions between MMX and XMM registers.
        M::Cvtpi2ps => SseOp::Cvtdq2ps as u64 | mmx::XMM_LO,
        M::Cvtpi2pd => SseOp::Cvtdq2pd as u64 | mmx::XMM_ALL,
        M::Cvtps2pi => SseOp::Cvtps2dq as u64,
        M::Cvttps2pi => SseOp::Cvttps2dq as u64,
        M::Cvtpd2pi => SseOp::Cvtpd2dq as u64 | mmx::SRC128,
        M::Cvttpd2pi => SseOp::Cvttpd2dq as u64 | mmx::SRC128,
        M::Pmaddubsw
        | M::Pmulhrsw
        | M::Psignb
        | M::Psignw
        | M::Psignd
        | M::Pabsb
        | M::Pabsw
        | M::Pabsd => ExtOp::from_mnemonic(m)? as u64 | mmx::EXT,
        _ => return None,
    };
    // CR0.EM → #UD, CR0.TS → #NM; the XMM forms also need CR4.OSFXSR.
    if matches!(
        m,
        M::Movq2dq
            | M::Movdq2q
            | M::Cvtpi2ps
            | M::Cvtpi2pd
            | M::Cvtps2pi
            | M::Cvttps2pi
            | M::Cvtpd2pi
            | M::Cvttpd2pi
    ) {
        if let Some(f) = sse_check(t) {
            return Some(f);
        }
    } else if t.hf & hflags::EM != 0 {
        return Some(t.raise(vec::UD, None));
    } else if t.hf & hflags::TS != 0 {
        return Some(t.raise(vec::NM, None));
    }
    let z = t.b.konst(0);
    if m == M::Emms {
        let kk = t.b.konst(k);
        t.call(SseH::MMX.id(), z, z, kk);
        return Some(Flow::Next);
    }
    if m == M::Maskmovq {
        if !matches!(
            t.insn.op_kind(0),
            OpKind::MemorySegRDI | OpKind::MemorySegEDI | OpKind::MemorySegDI
        ) {
            return None;
        }
        let a = addr_slot_rdi(t);
        k |= mm_num(t.insn.op_register(1)) << ctl::DST_SHIFT
            | mm_num(t.insn.op_register(2)) << ctl::SRC_SHIFT;
        let kk = t.b.konst(k);
        t.call(SseH::MMX.id(), a, z, kk);
        return Some(Flow::Next);
    }
    let n = t.insn.op_count();
    if n >= 3 && t.insn.op_kind(n - 1) == OpKind::Immediate8 {
        let mut imm = t.insn.immediate(n - 1) & 0xff;
        if matches!(m, M::Pinsrw | M::Pextrw) {
            imm &= 3;
        }
        k |= imm << ctl::IMM_SHIFT;
    }
    let k0 = t.insn.op_kind(0);
    if k0 == OpKind::Memory {
        // MOVD/MOVQ/MOVNTQ m, mm: read without side effects, store, then the x87 effects.
        let size = t.insn.memory_size().size();
        let (a, disp) = t.ea();
        let kk =
            t.b.konst(mmx::MOV_OUT | mmx::PURE | mm_num(t.insn.op_register(1)) << ctl::SRC_SHIFT);
        let v = t.call(SseH::MMX.id(), z, z, kk);
        t.st(size.clamp(1, 8), a, disp, v);
        let kt = t.b.konst(mmx::TOUCH);
        t.call(SseH::MMX.id(), z, z, kt);
        return Some(Flow::Next);
    }
    let r0 = t.insn.op_register(0);
    if gpr(r0).is_some() {
        // MOVD/MOVQ r, mm; PMOVMSKB/PEXTRW r, mm.
        if k == mmx::MOV_IN {
            k = mmx::MOV_OUT;
        }
        k |= CTL_GPR_DST | mm_num(t.insn.op_register(1)) << ctl::SRC_SHIFT;
        let arg = if k & ctl::OP_MASK == mmx::MOV_OUT {
            z
        } else {
            let r1 = t.insn.op_register(1);
            let kg =
                t.b.konst(mmx::MOV_OUT | mmx::PURE | mm_num(r1) << ctl::SRC_SHIFT);
            k |= ctl::SRC_ARG;
            t.call(SseH::MMX.id(), z, z, kg)
        };
        let kk = t.b.konst(k);
        let v = t.call(SseH::MMX.id(), arg, z, kk);
        let size = r0.size();
        let l = t.loc(0);
        t.write(l, size, v);
        return Some(Flow::Next);
    }
    k |= if r0.is_xmm() { xmm_num(r0) } else { mm_num(r0) } << ctl::DST_SHIFT;
    let mut arg_hi = z;
    let arg = match t.insn.op_kind(1) {
        OpKind::Register => {
            let r1 = t.insn.op_register(1);
            if r1.is_mm() {
                k |= mm_num(r1) << ctl::SRC_SHIFT;
                z
            } else if r1.is_xmm() {
                k |= xmm_num(r1) << ctl::SRC_SHIFT;
                if m != M::Movdq2q {
                    k |= mmx::SRC_XMM;
                }
                z
            } else {
                k |= ctl::SRC_ARG;
                let l = t.loc(1);
                t.read(l, r1.size())
            }
        }
        OpKind::Memory if t.insn.memory_size().size() == 16 => {
            // CVT(T)PD2PI m128: aligned.
            k |= ctl::SRC_ARG;
            let (lo, hi) = load_mem(t, true);
            arg_hi = hi;
            lo
        }
        OpKind::Memory => {
            k |= ctl::SRC_ARG;
            // CVTPI2PS/PD from memory cause no x87 transition.
            if matches!(m, M::Cvtpi2ps | M::Cvtpi2pd) {
                k |= mmx::PURE;
            }
            let size = t.insn.memory_size().size().clamp(1, 8);
            let l = t.loc(1);
            t.read(l, size)
        }
        OpKind::Immediate8 => {
            k |= ctl::SRC_IMM | (t.insn.immediate(1) & 0xff) << ctl::IMM_SHIFT;
            z
        }
        _ => return None,
    };
    let kk = t.b.konst(k);
    t.call(SseH::MMX.id(), arg, arg_hi, kk);
    Some(Flow::Next)
}
