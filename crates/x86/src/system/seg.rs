//! Segments: descriptor loads (MOV/POP Sreg, LLDT, LTR), descriptor-table registers,
//! LAR/LSL/VERR/VERW, far JMP/CALL/RET, IRET, SYSCALL/SYSRET and SWAPGS.

use super::{data_mmu, gp, gp0, iopl, long64, ud};
use crate::cpu::{rflags, set_rflags};
use crate::exception::seg_from_descriptor;
use crate::helpers::Bus;
use crate::mmu::canonical;
use crate::regs::*;
use crate::state::{cr, vec, Segment};
use crate::X86;
use tci64_engine::{Core, Trap};

/// Descriptor type bits (in `Segment::attr` / bits 40-43 of a descriptor).
const S: u16 = 1 << 4;
const CODE: u16 = 1 << 3;
const CONFORMING: u16 = 1 << 2;
const RW: u16 = 1 << 1;
const ACCESSED: u16 = 1 << 0;

fn lma(c: &Core<X86>) -> bool {
    c.guest.efer & cr::EFER_LMA != 0
}

fn pe(c: &Core<X86>) -> bool {
    c.guest.cr0 & cr::CR0_PE != 0 && c.regs.0[RFLAGS as usize] & fl::VM == 0
}

/// Set segment register `n` (hidden part and the engine's base slot).
pub fn set_seg(c: &mut Core<X86>, n: usize, s: Segment) {
    let n = n % 6;
    c.guest.segs[n] = s.reg();
    c.regs.0[SEG_BASE as usize + n] = s.base;
}

/// Segment register `n` with its base (from the engine slot, its one authority).
pub fn seg(c: &Core<X86>, n: usize) -> Segment {
    let n = n % 6;
    c.guest.segs[n].with_base(c.regs.0[SEG_BASE as usize + n])
}

/// The linear address of the 8-byte descriptor of `sel` in the GDT or LDT; `None` beyond
/// the table's limit or with no LDT present.
pub fn desc_addr(g: &crate::X86State, sel: u16) -> Option<u64> {
    let (base, limit) = if sel & 4 != 0 {
        if g.ldtr.attr & Segment::ATTR_P == 0 {
            return None;
        }
        (g.ldtr.base, g.ldtr.limit)
    } else {
        (g.gdtr.base, g.gdtr.limit as u32)
    };
    let off = (sel & !7) as u32;
    (off + 7 <= limit).then(|| base.wrapping_add(off as u64))
}

/// Read the 8-byte descriptor of `sel`: (its linear address, its value). Beyond the table
/// limit: #GP(sel).
pub fn read_desc(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<(u64, u64), Trap> {
    let Some(a) = desc_addr(&c.guest, sel) else {
        return Err(gp(c, (sel & !3) as u32));
    };
    let d = c.read(bus, a, 8, 0)?;
    Ok((a, d))
}

/// Read a 16-byte system descriptor (long mode) from the GDT: low and high halves.
fn read_sys_desc(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<(u64, u64, u64), Trap> {
    let (a, lo) = read_desc(c, bus, sel)?;
    if !lma(c) {
        return Ok((a, lo, 0));
    }
    let off = (sel & !7) as u32;
    if off + 15 > c.guest.gdtr.limit as u32 {
        return Err(gp(c, (sel & !3) as u32));
    }
    let hi = c.read(bus, a.wrapping_add(8), 8, 0)?;
    Ok((a, lo, hi))
}

/// Set the accessed bit of a code/data descriptor in memory if it is clear.
fn mark_accessed(c: &mut Core<X86>, bus: &mut Bus, a: u64, d: u64) -> Result<(), Trap> {
    if d & (1 << 40) == 0 {
        let b = (d >> 40) as u8 | 1;
        c.write(bus, a.wrapping_add(5), 1, 0, b as u64)?;
    }
    Ok(())
}

/// A null segment (selector `sel`, not usable).
fn null_seg(sel: u16, base: u64) -> Segment {
    Segment {
        selector: sel,
        base,
        limit: 0,
        attr: 0,
    }
}

/// Load data-segment register `n` (ES, SS, DS, FS, GS) with `sel`, as MOV/POP Sreg do.
pub fn load_seg(c: &mut Core<X86>, bus: &mut Bus, n: usize, sel: u16) -> Result<(), Trap> {
    if n == CS || n > GS {
        return Err(ud(c));
    }
    if !pe(c) {
        // Real mode / virtual-8086: base = selector * 16.
        let mut s = seg(c, n);
        s.selector = sel;
        s.base = (sel as u64) << 4;
        if c.regs.0[RFLAGS as usize] & fl::VM != 0 {
            s.limit = 0xffff;
            s.attr = 0xf3;
        }
        set_seg(c, n, s);
        if n == SS {
            c.guest.irq_shadow = true;
        }
        return Ok(());
    }
    let cpl = c.guest.cpl;
    let rpl = (sel & 3) as u8;
    if sel & !3 == 0 {
        if n == SS && !(long64(c) && cpl != 3 && rpl == cpl) {
            return Err(gp0(c));
        }
        // Intel: a null selector clears the base (FS/GS included).
        set_seg(c, n, null_seg(sel, 0));
        if n == SS {
            c.guest.irq_shadow = true;
        }
        return Ok(());
    }
    let (a, d) = read_desc(c, bus, sel)?;
    let s = seg_from_descriptor(sel, d);
    let ty = s.attr & 0x1f;
    let dpl = s.dpl();
    let err = (sel & !3) as u32;
    if n == SS {
        // Writable data, RPL = DPL = CPL.
        if ty & (S | CODE | RW) != S | RW || rpl != cpl || dpl != cpl {
            return Err(gp(c, err));
        }
        if s.attr & Segment::ATTR_P == 0 {
            return Err(crate::cpu::raise(c, vec::SS, Some(err)));
        }
    } else {
        if ty & S == 0 || (ty & CODE != 0 && ty & RW == 0) {
            return Err(gp(c, err));
        }
        let conforming_code = ty & (CODE | CONFORMING) == CODE | CONFORMING;
        if !conforming_code && (rpl > dpl || cpl > dpl) {
            return Err(gp(c, err));
        }
        if s.attr & Segment::ATTR_P == 0 {
            return Err(crate::cpu::raise(c, vec::NP, Some(err)));
        }
    }
    mark_accessed(c, bus, a, d)?;
    let mut s = s;
    s.attr |= ACCESSED;
    set_seg(c, n, s);
    if n == SS {
        c.guest.irq_shadow = true;
    }
    Ok(())
}

/// Validate a code segment for a far JMP/CALL at the current CPL. Returns the segment with
/// the selector's RPL set to CPL.
fn code_for_jmp(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<Segment, Trap> {
    if sel & !3 == 0 {
        return Err(gp0(c));
    }
    let (a, d) = read_desc(c, bus, sel)?;
    let s = seg_from_descriptor(sel, d);
    let err = (sel & !3) as u32;
    let cpl = c.guest.cpl;
    if s.attr & S == 0 {
        log::debug!("far transfer through a system descriptor {sel:#x} (gates/TSS): #GP");
        return Err(gp(c, err));
    }
    if s.attr & CODE == 0 {
        return Err(gp(c, err));
    }
    if s.attr & CONFORMING != 0 {
        if s.dpl() > cpl {
            return Err(gp(c, err));
        }
    } else if (sel & 3) as u8 > cpl || s.dpl() != cpl {
        return Err(gp(c, err));
    }
    check_code_present(c, &s, err)?;
    mark_accessed(c, bus, a, d)?;
    let mut s = s;
    s.attr |= ACCESSED;
    s.selector = (sel & !3) | cpl as u16;
    Ok(s)
}

fn check_code_present(c: &mut Core<X86>, s: &Segment, err: u32) -> Result<(), Trap> {
    if lma(c) && s.attr & Segment::ATTR_L != 0 && s.attr & Segment::ATTR_DB != 0 {
        return Err(gp(c, err));
    }
    if s.attr & Segment::ATTR_P == 0 {
        return Err(crate::cpu::raise(c, vec::NP, Some(err)));
    }
    Ok(())
}

/// Validate the code segment popped by RET/IRET: returns it and the new CPL (its RPL).
fn code_for_ret(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<(Segment, u8), Trap> {
    if sel & !3 == 0 {
        return Err(gp0(c));
    }
    let err = (sel & !3) as u32;
    let rpl = (sel & 3) as u8;
    if rpl < c.guest.cpl {
        return Err(gp(c, err));
    }
    let (a, d) = read_desc(c, bus, sel)?;
    let s = seg_from_descriptor(sel, d);
    if s.attr & (S | CODE) != S | CODE {
        return Err(gp(c, err));
    }
    if s.attr & CONFORMING != 0 {
        if s.dpl() > rpl {
            return Err(gp(c, err));
        }
    } else if s.dpl() != rpl {
        return Err(gp(c, err));
    }
    check_code_present(c, &s, err)?;
    mark_accessed(c, bus, a, d)?;
    let mut s = s;
    s.attr |= ACCESSED;
    Ok((s, rpl))
}

/// Validate the SS popped by RET/IRET for privilege `cpl` (target 64-bit mode allows null).
fn ss_for_ret(
    c: &mut Core<X86>,
    bus: &mut Bus,
    sel: u16,
    cpl: u8,
    to64: bool,
) -> Result<Segment, Trap> {
    if sel & !3 == 0 {
        if to64 && cpl != 3 && (sel & 3) as u8 == cpl {
            return Ok(null_seg(sel, 0));
        }
        return Err(gp0(c));
    }
    let err = (sel & !3) as u32;
    let (a, d) = read_desc(c, bus, sel)?;
    let s = seg_from_descriptor(sel, d);
    if (sel & 3) as u8 != cpl || s.attr & (S | CODE | RW) != S | RW || s.dpl() != cpl {
        return Err(gp(c, err));
    }
    if s.attr & Segment::ATTR_P == 0 {
        return Err(crate::cpu::raise(c, vec::SS, Some(err)));
    }
    mark_accessed(c, bus, a, d)?;
    let mut s = s;
    s.attr |= ACCESSED;
    Ok(s)
}

/// Is `s` a 64-bit code segment in long mode?
fn is64(c: &Core<X86>, s: &Segment) -> bool {
    lma(c) && s.attr & Segment::ATTR_L != 0
}

/// The target RIP in segment `s`: canonical check in 64-bit code, limit check otherwise.
fn target_rip(c: &mut Core<X86>, s: &Segment, off: u64) -> Result<u64, Trap> {
    if is64(c, s) {
        if !canonical(off) {
            return Err(gp0(c));
        }
        Ok(off)
    } else {
        let off = off & 0xffff_ffff;
        if off > s.limit as u64 {
            return Err(gp0(c));
        }
        Ok(off)
    }
}

/// Commit a new CS and CPL.
fn set_cs(c: &mut Core<X86>, s: Segment, cpl: u8) {
    set_seg(c, CS, s);
    c.guest.cpl = cpl;
}

/// The current stack: (SS base, stack-pointer mask).
fn stack_geom(c: &Core<X86>) -> (u64, u64) {
    if long64(c) {
        (0, u64::MAX)
    } else if c.guest.segs[SS].attr & Segment::ATTR_DB != 0 {
        (c.regs.0[SS_BASE as usize], 0xffff_ffff)
    } else {
        (c.regs.0[SS_BASE as usize], 0xffff)
    }
}

/// Linear address of the stack slot at `rsp + off`.
fn stack_lin(c: &Core<X86>, off: u64) -> u64 {
    let (base, mask) = stack_geom(c);
    let a = base.wrapping_add(c.regs.0[RSP as usize].wrapping_add(off) & mask);
    if long64(c) {
        a
    } else {
        a & 0xffff_ffff
    }
}

fn stack_read(c: &mut Core<X86>, bus: &mut Bus, off: u64, size: u64) -> Result<u64, Trap> {
    let a = stack_lin(c, off);
    let mmu = data_mmu(c);
    c.read(bus, a, size as usize, mmu)
}

/// RSP += delta under the stack width.
fn sp_add(c: &mut Core<X86>, delta: u64) {
    let (_, mask) = stack_geom(c);
    let r = &mut c.regs.0[RSP as usize];
    *r = (*r & !mask) | (r.wrapping_add(delta) & mask);
}

/// After a return to an outer privilege level: null DS/ES/FS/GS that the new CPL may not use.
fn null_inaccessible(c: &mut Core<X86>) {
    let cpl = c.guest.cpl;
    for n in [ES, DS, FS, GS] {
        let s = c.guest.segs[n];
        let data_or_nc = s.attr & S != 0
            && (s.attr & CODE == 0 || s.attr & CONFORMING == 0)
            && s.attr & Segment::ATTR_P != 0;
        if data_or_nc && s.dpl() < cpl {
            let mut z = s;
            z.selector = 0;
            z.attr &= !Segment::ATTR_P;
            c.guest.segs[n] = z;
        }
    }
}

/// Far JMP to `sel:off`.
pub fn far_jmp(c: &mut Core<X86>, bus: &mut Bus, sel: u16, off: u64) -> Result<(), Trap> {
    if !pe(c) {
        let mut s = seg(c, CS);
        s.selector = sel;
        s.base = (sel as u64) << 4;
        set_seg(c, CS, s);
        c.regs.0[RIP as usize] = off & 0xffff_ffff;
        return Ok(());
    }
    let s = code_for_jmp(c, bus, sel)?;
    let rip = target_rip(c, &s, off)?;
    let cpl = c.guest.cpl;
    set_cs(c, s, cpl);
    c.regs.0[RIP as usize] = rip;
    Ok(())
}

/// Far CALL to `sel:off`, pushing CS and `next` with operand size `os`.
pub fn far_call(
    c: &mut Core<X86>,
    bus: &mut Bus,
    sel: u16,
    off: u64,
    os: u64,
    next: u64,
) -> Result<(), Trap> {
    let old_cs = c.guest.segs[CS].selector as u64;
    let (s, rip) = if pe(c) {
        let s = code_for_jmp(c, bus, sel)?;
        let rip = target_rip(c, &s, off)?;
        (Some(s), rip)
    } else {
        (None, off & 0xffff_ffff)
    };
    let a1 = stack_lin(c, os.wrapping_neg());
    let a2 = stack_lin(c, os.wrapping_neg().wrapping_mul(2));
    let mmu = data_mmu(c);
    // Check both stack slots before writing.
    c.translate_addr(bus, a2, tci64_engine::Access::Write, mmu)?;
    c.translate_addr(bus, a1, tci64_engine::Access::Write, mmu)?;
    c.write(bus, a1, os as usize, mmu, old_cs)?;
    c.write(bus, a2, os as usize, mmu, next)?;
    sp_add(c, os.wrapping_neg().wrapping_mul(2));
    match s {
        Some(s) => {
            let cpl = c.guest.cpl;
            set_cs(c, s, cpl);
        }
        None => {
            let mut cs = seg(c, CS);
            cs.selector = sel;
            cs.base = (sel as u64) << 4;
            set_seg(c, CS, cs);
        }
    }
    c.regs.0[RIP as usize] = rip;
    Ok(())
}

/// Far RET with operand size `os`, releasing `imm` extra bytes.
pub fn far_ret(c: &mut Core<X86>, bus: &mut Bus, os: u64, imm: u64) -> Result<(), Trap> {
    let rip = stack_read(c, bus, 0, os)?;
    let sel = stack_read(c, bus, os, os)? as u16;
    if !pe(c) {
        let mut cs = seg(c, CS);
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        set_seg(c, CS, cs);
        c.regs.0[RIP as usize] = rip & 0xffff_ffff;
        sp_add(c, 2 * os + imm);
        return Ok(());
    }
    let (cs, new_cpl) = code_for_ret(c, bus, sel)?;
    let rip = target_rip(c, &cs, rip)?;
    if new_cpl == c.guest.cpl {
        set_cs(c, cs, new_cpl);
        c.regs.0[RIP as usize] = rip;
        sp_add(c, 2 * os + imm);
        return Ok(());
    }
    // Outer privilege: SS:RSP follow the parameters.
    let rsp = stack_read(c, bus, 2 * os + imm, os)?;
    let ss_sel = stack_read(c, bus, 3 * os + imm, os)? as u16;
    let to64 = is64(c, &cs);
    let ss = ss_for_ret(c, bus, ss_sel, new_cpl, to64)?;
    set_cs(c, cs, new_cpl);
    set_seg(c, SS, ss);
    c.regs.0[RIP as usize] = rip;
    let rsp = rsp.wrapping_add(imm);
    c.regs.0[RSP as usize] = if os == 8 { rsp } else { rsp & 0xffff_ffff };
    null_inaccessible(c);
    Ok(())
}

/// The RFLAGS bits IRET/POPF may change at `cpl` (operand size `os`).
pub fn writable_flags(c: &Core<X86>, cpl: u8, os: u64, iret: bool) -> u64 {
    let mut m = fl::ARITH | fl::TF | fl::DF | fl::NT | fl::AC | fl::ID;
    if iret {
        m |= fl::RF;
    }
    if !pe(c) || cpl == 0 {
        m |= fl::IOPL | fl::IF;
        if iret {
            m |= fl::VIF | fl::VIP;
        }
    } else if cpl <= iopl(c) {
        m |= fl::IF;
    }
    if os == 2 {
        m &= 0xffff;
    }
    m
}

/// IRET with operand size `os`.
pub fn iret(c: &mut Core<X86>, bus: &mut Bus, os: u64) -> Result<(), Trap> {
    let old_flags = rflags(c);
    let rip = stack_read(c, bus, 0, os)?;
    let sel = stack_read(c, bus, os, os)? as u16;
    let popped = stack_read(c, bus, 2 * os, os)?;
    if !pe(c) {
        if c.regs.0[RFLAGS as usize] & fl::VM != 0 && iopl(c) != 3 {
            return Err(gp0(c));
        }
        let mut cs = seg(c, CS);
        cs.selector = sel;
        cs.base = (sel as u64) << 4;
        set_seg(c, CS, cs);
        c.regs.0[RIP as usize] = rip & 0xffff_ffff;
        sp_add(c, 3 * os);
        let m = writable_flags(c, 0, os, true);
        set_rflags(c, (old_flags & !m) | (popped & m));
        c.guest.nmi_blocked = false;
        return Ok(());
    }
    if old_flags & fl::NT != 0 {
        log::debug!("IRET with NT (task return) is not supported: #GP");
        return Err(gp0(c));
    }
    if !lma(c) && c.guest.cpl == 0 && popped & fl::VM != 0 && os == 4 {
        log::debug!("IRET to virtual-8086 mode is not supported: #GP");
        return Err(gp0(c));
    }
    let (cs, new_cpl) = code_for_ret(c, bus, sel)?;
    let rip = target_rip(c, &cs, rip)?;
    let old_cpl = c.guest.cpl;
    let pop_ss = long64(c) || new_cpl != old_cpl;
    let mut new_ss = None;
    if pop_ss {
        let rsp = stack_read(c, bus, 3 * os, os)?;
        let ss_sel = stack_read(c, bus, 4 * os, os)? as u16;
        let to64 = is64(c, &cs);
        let ss = ss_for_ret(c, bus, ss_sel, new_cpl, to64)?;
        new_ss = Some((ss, rsp));
    }
    let m = writable_flags(c, old_cpl, os, true);
    let f = ((old_flags & !m) | (popped & m)) & !fl::VM;
    set_cs(c, cs, new_cpl);
    c.regs.0[RIP as usize] = rip;
    match new_ss {
        Some((ss, rsp)) => {
            set_seg(c, SS, ss);
            c.regs.0[RSP as usize] = if os == 2 {
                rsp & 0xffff
            } else if os == 4 {
                rsp & 0xffff_ffff
            } else {
                rsp
            };
        }
        None => sp_add(c, 3 * os),
    }
    set_rflags(c, f);
    if new_cpl > old_cpl {
        null_inaccessible(c);
    }
    c.guest.nmi_blocked = false;
    Ok(())
}

/// POPF's new RFLAGS from the popped value `v` (operand size `os`).
pub fn popf(c: &mut Core<X86>, v: u64, os: u64) -> Result<(), Trap> {
    if c.regs.0[RFLAGS as usize] & fl::VM != 0 && iopl(c) != 3 {
        return Err(gp0(c));
    }
    let old = rflags(c);
    let cpl = c.guest.cpl;
    let m = writable_flags(c, cpl, os, false);
    set_rflags(c, ((old & !m) | (v & m)) & !fl::RF);
    Ok(())
}

/// SYSCALL (64-bit mode only, as on Intel).
pub fn syscall(c: &mut Core<X86>, next: u64) -> Result<(), Trap> {
    if c.guest.efer & cr::EFER_SCE == 0 || !long64(c) {
        return Err(ud(c));
    }
    let f = rflags(c);
    c.regs.0[RCX as usize] = next;
    c.regs.0[11] = f & !fl::RF;
    let sel = ((c.guest.star >> 32) & 0xffff) as u16;
    set_cs(
        c,
        Segment {
            selector: sel & !3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x9b | Segment::ATTR_L | Segment::ATTR_G,
        },
        0,
    );
    set_seg(
        c,
        SS,
        Segment {
            selector: sel.wrapping_add(8) & !3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x93 | Segment::ATTR_DB | Segment::ATTR_G,
        },
    );
    set_rflags(c, f & !c.guest.sfmask & !fl::RF);
    c.regs.0[RIP as usize] = c.guest.lstar;
    Ok(())
}

/// SYSRET (`os` 8: to 64-bit mode, else to compatibility mode).
pub fn sysret(c: &mut Core<X86>, os: u64) -> Result<(), Trap> {
    if c.guest.efer & cr::EFER_SCE == 0 || !long64(c) {
        return Err(ud(c));
    }
    if c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    let rcx = c.regs.0[RCX as usize];
    let base = ((c.guest.star >> 48) & 0xffff) as u16;
    let (cs, rip) = if os == 8 {
        if !canonical(rcx) {
            return Err(gp0(c));
        }
        (
            Segment {
                selector: base.wrapping_add(16) | 3,
                base: 0,
                limit: 0xffff_ffff,
                attr: 0xfb | Segment::ATTR_L | Segment::ATTR_G,
            },
            rcx,
        )
    } else {
        (
            Segment {
                selector: base | 3,
                base: 0,
                limit: 0xffff_ffff,
                attr: 0xfb | Segment::ATTR_DB | Segment::ATTR_G,
            },
            rcx & 0xffff_ffff,
        )
    };
    let f = (c.regs.0[11] & 0x3c_7fd7) | fl::FIXED1;
    set_cs(c, cs, 3);
    set_seg(
        c,
        SS,
        Segment {
            selector: base.wrapping_add(8) | 3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0xf3 | Segment::ATTR_DB | Segment::ATTR_G,
        },
    );
    set_rflags(c, f);
    c.regs.0[RIP as usize] = rip;
    Ok(())
}

/// SYSENTER (SDM vol. 2B): to CPL 0 at IA32_SYSENTER_EIP with the stack at
/// IA32_SYSENTER_ESP, CS from IA32_SYSENTER_CS and SS = CS + 8, both flat; 64-bit code when
/// IA-32e mode is active. #GP(0) in real mode or with a null IA32_SYSENTER_CS. Nothing is
/// saved: the caller keeps its return address and stack in registers.
pub fn sysenter(c: &mut Core<X86>) -> Result<(), Trap> {
    let cs = c.guest.sysenter_cs as u16;
    if c.guest.cr0 & cr::CR0_PE == 0 || cs & !3 == 0 {
        return Err(gp0(c));
    }
    let long = lma(c);
    let f = rflags(c);
    set_rflags(c, f & !(fl::VM | fl::IF | fl::RF));
    let mode = if long {
        Segment::ATTR_L
    } else {
        Segment::ATTR_DB
    };
    set_cs(
        c,
        Segment {
            selector: cs & !3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x9b | mode | Segment::ATTR_G,
        },
        0,
    );
    set_seg(
        c,
        SS,
        Segment {
            selector: cs.wrapping_add(8) & !3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x93 | Segment::ATTR_DB | Segment::ATTR_G,
        },
    );
    let (esp, eip) = (c.guest.sysenter_esp, c.guest.sysenter_eip);
    let m = if long { u64::MAX } else { 0xffff_ffff };
    c.regs.0[RSP as usize] = esp & m;
    c.regs.0[RIP as usize] = eip & m;
    Ok(())
}

/// SYSEXIT (`os` 8: REX.W, to 64-bit code; else to 32-bit code): to CPL 3 at RDX/EDX with
/// the stack at RCX/ECX; CS = IA32_SYSENTER_CS + 32 (64-bit) or + 16, SS = that + 8, RPL 3.
/// #GP(0) in real mode, outside CPL 0, with a null IA32_SYSENTER_CS, or (64-bit) with a
/// non-canonical RIP or RSP.
pub fn sysexit(c: &mut Core<X86>, os: u64) -> Result<(), Trap> {
    let base = c.guest.sysenter_cs as u16;
    if c.guest.cr0 & cr::CR0_PE == 0 || base & !3 == 0 || c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    let (rcx, rdx) = (c.regs.0[RCX as usize], c.regs.0[RDX as usize]);
    let (cs_sel, mode, rip, rsp) = if os == 8 {
        if !canonical(rdx) || !canonical(rcx) {
            return Err(gp0(c));
        }
        (base.wrapping_add(32), Segment::ATTR_L, rdx, rcx)
    } else {
        (
            base.wrapping_add(16),
            Segment::ATTR_DB,
            rdx & 0xffff_ffff,
            rcx & 0xffff_ffff,
        )
    };
    set_cs(
        c,
        Segment {
            selector: cs_sel | 3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0xfb | mode | Segment::ATTR_G,
        },
        3,
    );
    set_seg(
        c,
        SS,
        Segment {
            selector: cs_sel.wrapping_add(8) | 3,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0xf3 | Segment::ATTR_DB | Segment::ATTR_G,
        },
    );
    c.regs.0[RSP as usize] = rsp;
    c.regs.0[RIP as usize] = rip;
    Ok(())
}

/// SWAPGS.
pub fn swapgs(c: &mut Core<X86>) -> Result<(), Trap> {
    if !long64(c) {
        return Err(ud(c));
    }
    if c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    let cur = c.regs.0[GS_BASE as usize];
    let k = c.guest.kernel_gs_base;
    c.regs.0[GS_BASE as usize] = k;
    c.guest.kernel_gs_base = cur;
    Ok(())
}

/// LGDT/LIDT from `addr` (`which` 0 = GDT, 1 = IDT; `os` the operand size).
pub fn load_dt(
    c: &mut Core<X86>,
    bus: &mut Bus,
    addr: u64,
    which: u64,
    os: u64,
) -> Result<(), Trap> {
    if c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    let mmu = 0;
    let limit = c.read(bus, addr, 2, mmu)? as u16;
    let base = if long64(c) {
        let b = c.read(bus, addr.wrapping_add(2), 8, mmu)?;
        if !canonical(b) {
            return Err(gp0(c));
        }
        b
    } else {
        let b = c.read(bus, addr.wrapping_add(2), 4, mmu)?;
        if os == 2 {
            b & 0xff_ffff
        } else {
            b
        }
    };
    let t = crate::state::DescTable { base, limit };
    if which == 0 {
        c.guest.gdtr = t;
    } else {
        c.guest.idtr = t;
    }
    Ok(())
}

/// SGDT/SIDT to `addr`.
pub fn store_dt(c: &mut Core<X86>, bus: &mut Bus, addr: u64, which: u64) -> Result<(), Trap> {
    let t = if which == 0 {
        c.guest.gdtr
    } else {
        c.guest.idtr
    };
    let mmu = data_mmu(c);
    let n = if long64(c) { 8 } else { 4 };
    let mut buf = [0u8; 10];
    buf[..2].copy_from_slice(&t.limit.to_le_bytes());
    buf[2..10].copy_from_slice(&t.base.to_le_bytes());
    c.write_bytes(bus, addr, &buf[..2 + n], mmu)
}

/// LLDT.
pub fn lldt(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<(), Trap> {
    if c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    if sel & !3 == 0 {
        c.guest.ldtr = null_seg(sel, 0);
        return Ok(());
    }
    let err = (sel & !3) as u32;
    if sel & 4 != 0 {
        return Err(gp(c, err));
    }
    let (_, lo, hi) = read_sys_desc(c, bus, sel)?;
    let mut s = seg_from_descriptor(sel, lo);
    if s.attr & 0x1f != 2 {
        return Err(gp(c, err));
    }
    if s.attr & Segment::ATTR_P == 0 {
        return Err(crate::cpu::raise(c, vec::NP, Some(err)));
    }
    s.base |= (hi & 0xffff_ffff) << 32;
    c.guest.ldtr = s;
    Ok(())
}

/// LTR: load the task register and mark the TSS busy.
pub fn ltr(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<(), Trap> {
    if c.guest.cpl != 0 {
        return Err(gp0(c));
    }
    if sel & !3 == 0 {
        return Err(gp0(c));
    }
    let err = (sel & !3) as u32;
    if sel & 4 != 0 {
        return Err(gp(c, err));
    }
    let (a, lo, hi) = read_sys_desc(c, bus, sel)?;
    let mut s = seg_from_descriptor(sel, lo);
    let ty = s.attr & 0x1f;
    if !(ty == 9 || (!lma(c) && ty == 1)) {
        return Err(gp(c, err));
    }
    if s.attr & Segment::ATTR_P == 0 {
        return Err(crate::cpu::raise(c, vec::NP, Some(err)));
    }
    c.write(bus, a.wrapping_add(5), 1, 0, (lo >> 40) & 0xff | 2)?;
    s.base |= (hi & 0xffff_ffff) << 32;
    s.attr |= 2;
    c.guest.tr = s;
    Ok(())
}

/// LAR/LSL/VERR/VERW (`op` 0..=3) on `sel`: sets ZF; returns the value for LAR/LSL.
pub fn lar_lsl_verx(
    c: &mut Core<X86>,
    bus: &mut Bus,
    sel: u16,
    op: u64,
) -> Result<Option<u64>, Trap> {
    let ok = |c: &mut Core<X86>, v: Option<u64>| {
        super::set_zf(c, v.is_some());
        Ok(v)
    };
    if sel & !3 == 0 {
        return ok(c, None);
    }
    let (base, limit) = if sel & 4 != 0 {
        (c.guest.ldtr.base, c.guest.ldtr.limit)
    } else {
        (c.guest.gdtr.base, c.guest.gdtr.limit as u32)
    };
    let off = (sel & !7) as u32;
    if off + 7 > limit || (sel & 4 != 0 && c.guest.ldtr.attr & Segment::ATTR_P == 0) {
        return ok(c, None);
    }
    let d = c.read(bus, base.wrapping_add(off as u64), 8, 0)?;
    let s = seg_from_descriptor(sel, d);
    let ty = s.attr & 0x1f;
    let cpl = c.guest.cpl;
    let rpl = (sel & 3) as u8;
    let priv_ok = s.dpl() >= cpl && s.dpl() >= rpl;
    let conforming_code = ty & (S | CODE | CONFORMING) == S | CODE | CONFORMING;
    let long = lma(c);
    let valid = match op {
        0 | 1 => {
            if ty & S != 0 {
                conforming_code || priv_ok
            } else {
                let t = ty & 0xf;
                let types_ok = match (op, long) {
                    (0, true) => matches!(t, 2 | 9 | 0xb | 0xc),
                    (0, false) => matches!(t, 1 | 2 | 3 | 4 | 5 | 9 | 0xb | 0xc),
                    (_, true) => matches!(t, 2 | 9 | 0xb),
                    (_, false) => matches!(t, 1 | 2 | 3 | 9 | 0xb),
                };
                types_ok && priv_ok
            }
        }
        2 => ty & S != 0 && (ty & CODE == 0 || ty & RW != 0) && (conforming_code || priv_ok),
        _ => ty & (S | CODE | RW) == S | RW && priv_ok,
    };
    if !valid {
        return ok(c, None);
    }
    let v = match op {
        0 => Some((d >> 32) & 0x00f0_ff00),
        1 => Some(s.limit as u64),
        _ => Some(0),
    };
    ok(c, v)
}
