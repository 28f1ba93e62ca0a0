//! Instruction family: system instructions: privileged state, segments, port I/O, interrupts,
//! CPUID, MSRs. The translator side: privilege checks that depend only on the block's mode
//! are done here; everything else is a helper in [`crate::system`].

use super::operand::Loc;
use super::{exit, Flow, Tr};
use crate::helpers::{base, Bus, Helper};
use crate::hflags;
use crate::regs::*;
use crate::state::{vec, Event, EventKind};
use crate::system::{self as sys, ctrl, io, msr, seg};
use crate::X86;
use iced_x86::{Code, Mnemonic, OpKind, Register};
use tci64_engine::{Core, Op, Slot, Trap};

helpers!(pub enum SysH @ base::SYSTEM; {
    CPUID => h_cpuid,
    RDMSR => h_rdmsr,
    WRMSR => h_wrmsr,
    RDTSC => h_rdtsc,
    READ_CR => h_read_cr,
    WRITE_CR => h_write_cr,
    READ_DR => h_read_dr,
    WRITE_DR => h_write_dr,
    CLTS => h_clts,
    LMSW => h_lmsw,
    INVLPG => h_invlpg,
    LOAD_SEG => h_load_seg,
    GET_SEL => h_get_sel,
    FAR_JMP => h_far_jmp,
    FAR_CALL => h_far_call,
    FAR_RET => h_far_ret,
    IRET => h_iret,
    POPF => h_popf,
    CLI => h_cli,
    STI => h_sti,
    SYSCALL => h_syscall,
    SYSRET => h_sysret,
    SYSENTER => h_sysenter,
    SYSEXIT => h_sysexit,
    SWAPGS => h_swapgs,
    LOAD_DT => h_load_dt,
    STORE_DT => h_store_dt,
    LLDT => h_lldt,
    LTR => h_ltr,
    LARX => h_larx,
    IN => h_in,
    OUT => h_out,
    STRIO => h_strio,
    INT => h_int,
    INT1 => h_int1,
    INTO => h_into,
    LOAD_SEG_FAR => h_load_seg_far,
    BOUND => h_bound,
});

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::SYSTEM, base::SSE, SysH::TABLE);

type R = Result<u64, Trap>;

fn h_cpuid(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> R {
    sys::cpuid::cpuid(c);
    Ok(0)
}
fn h_rdmsr(c: &mut Core<X86>, bus: &mut Bus, _: u64, _: u64, _: u64) -> R {
    msr::rdmsr(c, bus).map(|_| 0)
}
fn h_wrmsr(c: &mut Core<X86>, bus: &mut Bus, _: u64, _: u64, _: u64) -> R {
    msr::wrmsr(c, bus).map(|_| 0)
}
/// a = 1 for RDTSCP.
fn h_rdtsc(c: &mut Core<X86>, bus: &mut Bus, a: u64, _: u64, _: u64) -> R {
    msr::rdtsc(c, bus, a != 0).map(|_| 0)
}
fn h_read_cr(c: &mut Core<X86>, bus: &mut Bus, n: u64, _: u64, _: u64) -> R {
    ctrl::read_cr(c, bus, n)
}
fn h_write_cr(c: &mut Core<X86>, bus: &mut Bus, n: u64, v: u64, _: u64) -> R {
    ctrl::write_cr(c, bus, n, v).map(|_| 0)
}
fn h_read_dr(c: &mut Core<X86>, _: &mut Bus, n: u64, _: u64, _: u64) -> R {
    ctrl::read_dr(c, n)
}
fn h_write_dr(c: &mut Core<X86>, _: &mut Bus, n: u64, v: u64, _: u64) -> R {
    ctrl::write_dr(c, n, v).map(|_| 0)
}
fn h_clts(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> R {
    let v = c.guest.cr0 & !crate::state::cr::CR0_TS;
    ctrl::write_cr0(c, v).map(|_| 0)
}
fn h_lmsw(c: &mut Core<X86>, _: &mut Bus, v: u64, _: u64, _: u64) -> R {
    ctrl::lmsw(c, v).map(|_| 0)
}
fn h_invlpg(c: &mut Core<X86>, _: &mut Bus, a: u64, _: u64, _: u64) -> R {
    ctrl::invlpg(c, a);
    Ok(0)
}
/// a = segment number, b = selector.
fn h_load_seg(c: &mut Core<X86>, bus: &mut Bus, n: u64, sel: u64, _: u64) -> R {
    seg::load_seg(c, bus, n as usize, sel as u16).map(|_| 0)
}
/// LDS/LES/LSS/LFS/LGS: load segment `n` with `sel` as MOV Sreg does, except that LSS
/// does not inhibit interrupts for the next instruction (only MOV SS and POP SS do).
fn h_load_seg_far(c: &mut Core<X86>, bus: &mut Bus, n: u64, sel: u64, _: u64) -> R {
    let shadow = c.guest.irq_shadow;
    seg::load_seg(c, bus, n as usize, sel as u16)?;
    c.guest.irq_shadow = shadow;
    Ok(0)
}
/// BOUND: #BR unless `lo <= idx <= hi` (all sign-extended).
fn h_bound(c: &mut Core<X86>, _: &mut Bus, idx: u64, lo: u64, hi: u64) -> R {
    let (i, l, h) = (idx as i64, lo as i64, hi as i64);
    if i < l || i > h {
        return Err(crate::cpu::raise(c, vec::BR, None));
    }
    Ok(0)
}
/// Selector of segment `n` (6 = LDTR, 7 = TR).
fn h_get_sel(c: &mut Core<X86>, _: &mut Bus, n: u64, _: u64, _: u64) -> R {
    Ok(match n {
        6 => c.guest.ldtr.selector,
        7 => c.guest.tr.selector,
        n => c.guest.segs[(n % 6) as usize].selector,
    } as u64)
}
fn h_far_jmp(c: &mut Core<X86>, bus: &mut Bus, sel: u64, off: u64, _: u64) -> R {
    seg::far_jmp(c, bus, sel as u16, off).map(|_| 0)
}
/// a = selector | operand size << 16, b = offset, c = return RIP.
fn h_far_call(c: &mut Core<X86>, bus: &mut Bus, a: u64, off: u64, next: u64) -> R {
    seg::far_call(c, bus, a as u16, off, (a >> 16) & 0xf, next).map(|_| 0)
}
fn h_far_ret(c: &mut Core<X86>, bus: &mut Bus, os: u64, imm: u64, _: u64) -> R {
    seg::far_ret(c, bus, os, imm).map(|_| 0)
}
fn h_iret(c: &mut Core<X86>, bus: &mut Bus, os: u64, _: u64, _: u64) -> R {
    seg::iret(c, bus, os).map(|_| 0)
}
fn h_popf(c: &mut Core<X86>, _: &mut Bus, v: u64, os: u64, _: u64) -> R {
    seg::popf(c, v, os).map(|_| 0)
}
/// CLI/STI outside CPL 0: IOPL-checked.
fn cli_sti_allowed(c: &mut Core<X86>) -> Result<(), Trap> {
    let pe = c.guest.cr0 & crate::state::cr::CR0_PE != 0;
    if pe && c.guest.cpl > sys::iopl(c) {
        return Err(sys::gp0(c));
    }
    Ok(())
}
fn h_cli(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> R {
    cli_sti_allowed(c)?;
    c.regs.0[RFLAGS as usize] &= !fl::IF;
    Ok(0)
}
fn h_sti(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> R {
    cli_sti_allowed(c)?;
    if c.regs.0[RFLAGS as usize] & fl::IF == 0 {
        c.guest.irq_shadow = true;
    }
    c.regs.0[RFLAGS as usize] |= fl::IF;
    Ok(0)
}
fn h_syscall(c: &mut Core<X86>, _: &mut Bus, next: u64, _: u64, _: u64) -> R {
    seg::syscall(c, next).map(|_| 0)
}
fn h_sysret(c: &mut Core<X86>, _: &mut Bus, os: u64, _: u64, _: u64) -> R {
    seg::sysret(c, os).map(|_| 0)
}
fn h_sysenter(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> R {
    seg::sysenter(c).map(|_| 0)
}
fn h_sysexit(c: &mut Core<X86>, _: &mut Bus, os: u64, _: u64, _: u64) -> R {
    seg::sysexit(c, os).map(|_| 0)
}
fn h_swapgs(c: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> R {
    seg::swapgs(c).map(|_| 0)
}
fn h_load_dt(c: &mut Core<X86>, bus: &mut Bus, a: u64, which: u64, os: u64) -> R {
    seg::load_dt(c, bus, a, which, os).map(|_| 0)
}
fn h_store_dt(c: &mut Core<X86>, bus: &mut Bus, a: u64, which: u64, _: u64) -> R {
    seg::store_dt(c, bus, a, which).map(|_| 0)
}
fn h_lldt(c: &mut Core<X86>, bus: &mut Bus, sel: u64, _: u64, _: u64) -> R {
    seg::lldt(c, bus, sel as u16).map(|_| 0)
}
fn h_ltr(c: &mut Core<X86>, bus: &mut Bus, sel: u64, _: u64, _: u64) -> R {
    seg::ltr(c, bus, sel as u16).map(|_| 0)
}
/// LAR/LSL/VERR/VERW: a = selector, b = op (0..=3), c = destination slot | size << 8.
fn h_larx(c: &mut Core<X86>, bus: &mut Bus, sel: u64, op: u64, dst: u64) -> R {
    if let Some(v) = seg::lar_lsl_verx(c, bus, sel as u16, op)? {
        if op < 2 {
            sys::write_gpr(c, dst as u8, ((dst >> 8) & 0xf) as usize, v);
        }
    }
    Ok(0)
}
fn h_in(c: &mut Core<X86>, bus: &mut Bus, port: u64, size: u64, _: u64) -> R {
    io::port_in(c, bus, port as u16, size as u8)
}
fn h_out(c: &mut Core<X86>, bus: &mut Bus, port: u64, size: u64, v: u64) -> R {
    io::port_out(c, bus, port as u16, size as u8, v).map(|_| 0)
}
fn h_strio(c: &mut Core<X86>, bus: &mut Bus, flags: u64, _: u64, _: u64) -> R {
    io::string_io(c, bus, flags).map(|_| 0)
}
/// INT n / INT3 / INTO: a software interrupt returning to `next`.
fn h_int(c: &mut Core<X86>, _: &mut Bus, v: u64, next: u64, _: u64) -> R {
    c.guest.pending = Some(Event {
        vector: v as u8,
        error_code: None,
        kind: EventKind::Software { next_rip: next },
    });
    Err(Trap::Exception)
}
/// INTO: #OF if OF is set, else nothing.
fn h_into(c: &mut Core<X86>, bus: &mut Bus, next: u64, _: u64, _: u64) -> R {
    if crate::cpu::arith_flags(c) & fl::OF != 0 {
        return h_int(c, bus, vec::OF as u64, next, 0);
    }
    Ok(0)
}
/// INT1 (ICEBP): #DB as a trap, without the gate DPL check; delivered here, the block exits.
fn h_int1(c: &mut Core<X86>, bus: &mut Bus, next: u64, _: u64, _: u64) -> R {
    c.regs.0[RIP as usize] = next;
    crate::exception::deliver(
        c,
        bus,
        Event {
            vector: vec::DB,
            error_code: None,
            kind: EventKind::Exception,
        },
    );
    Ok(0)
}

impl Tr<'_> {
    /// End the block after a helper that set RIP itself (far transfers, IRET, SYSCALL).
    fn sys_exit_set_rip(&mut self) -> Flow {
        self.sync_cc();
        self.b.push(Op::Exit {
            code: exit::CONTINUE,
        });
        Flow::End
    }

    /// Raise #GP(0) unless at CPL 0 (privileged instructions).
    fn sys_need_cpl0(&mut self) -> Option<Flow> {
        if self.cpl() != 0 && self.hf & hflags::PE != 0 {
            Some(self.raise(vec::GP, Some(0)))
        } else {
            None
        }
    }

    fn sys_k(&mut self, v: u64) -> Slot {
        self.b.konst(v)
    }

    /// Call a system helper with slot arguments.
    fn sys_call(&mut self, h: SysH, a: Slot, b: Slot, c: Slot) -> Slot {
        self.call(h.id(), a, b, c)
    }
}

/// The segment number of a segment register.
fn seg_no(r: Register) -> Option<usize> {
    Some(match r {
        Register::ES => ES,
        Register::CS => CS,
        Register::SS => SS,
        Register::DS => DS,
        Register::FS => FS,
        Register::GS => GS,
        _ => return None,
    })
}

fn cr_no(r: Register) -> Option<u64> {
    let (lo, hi) = (Register::CR0 as u32, Register::CR15 as u32);
    let x = r as u32;
    (lo..=hi).contains(&x).then(|| (x - lo) as u64)
}

fn dr_no(r: Register) -> Option<u64> {
    let (lo, hi) = (Register::DR0 as u32, Register::DR15 as u32);
    let x = r as u32;
    (lo..=hi).contains(&x).then(|| (x - lo) as u64)
}

/// Address size (bytes) of a string instruction's memory operand kind.
fn str_asize(k: OpKind) -> u64 {
    match k {
        OpKind::MemorySegSI | OpKind::MemoryESDI | OpKind::MemorySegDI => 2,
        OpKind::MemorySegESI | OpKind::MemoryESEDI | OpKind::MemorySegEDI => 4,
        _ => 8,
    }
}

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let i = t.insn;
    let m = i.mnemonic();
    let long64 = t.long64();
    Some(match m {
        Mnemonic::Cpuid => {
            let z = t.sys_k(0);
            t.sys_call(SysH::CPUID, z, z, z);
            Flow::Next
        }
        Mnemonic::Rdmsr | Mnemonic::Wrmsr => {
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            let z = t.sys_k(0);
            if m == Mnemonic::Rdmsr {
                t.sys_call(SysH::RDMSR, z, z, z);
                Flow::Next
            } else {
                t.sys_call(SysH::WRMSR, z, z, z);
                t.end_continue()
            }
        }
        Mnemonic::Rdtsc | Mnemonic::Rdtscp => {
            if m == Mnemonic::Rdtscp && !sys::cpuid::FEATURES.rdtscp {
                return None;
            }
            let a = t.sys_k((m == Mnemonic::Rdtscp) as u64);
            t.sys_call(SysH::RDTSC, a, a, a);
            Flow::Next
        }
        Mnemonic::Rdpmc => t.raise(vec::GP, Some(0)),
        Mnemonic::Lds | Mnemonic::Les | Mnemonic::Lss | Mnemonic::Lfs | Mnemonic::Lgs => {
            // Far pointer m16:16/32/64: the offset, then the selector; the register is written
            // only once the segment load has succeeded.
            let n = match m {
                Mnemonic::Lds => DS,
                Mnemonic::Les => ES,
                Mnemonic::Lss => SS,
                Mnemonic::Lfs => FS,
                _ => GS,
            };
            let size = t.op_size(0);
            let (a, disp) = t.ea();
            let off = t.ld(size, a, disp);
            let sel = t.ld(2, a, disp.wrapping_add(size as i32));
            let nk = t.sys_k(n as u64);
            t.sys_call(SysH::LOAD_SEG_FAR, nk, sel, nk);
            t.write_reg(i.op0_register(), off);
            t.end_continue()
        }
        Mnemonic::Bound => {
            let size = t.op_size(0);
            let (a, disp) = t.ea();
            let lo = t.ld(size, a, disp);
            let hi = t.ld(size, a, disp.wrapping_add(size as i32));
            let idx = t.read_reg(i.op0_register());
            let sx = if size == 2 {
                tci64_engine::mk::sx16
            } else {
                tci64_engine::mk::sx32
            };
            let (idx, lo, hi) = (t.b.un(sx, idx), t.b.un(sx, lo), t.b.un(sx, hi));
            t.sys_call(SysH::BOUND, idx, lo, hi);
            Flow::Next
        }
        Mnemonic::Mov => mov_special(t)?,
        Mnemonic::Clts => {
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            let z = t.sys_k(0);
            t.sys_call(SysH::CLTS, z, z, z);
            t.end_continue()
        }
        Mnemonic::Lmsw => {
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            let l = t.loc(0);
            let v = t.read(l, 2);
            let z = t.sys_k(0);
            t.sys_call(SysH::LMSW, v, z, z);
            t.end_continue()
        }
        Mnemonic::Smsw => {
            let z = t.sys_k(0);
            let v = t.sys_call(SysH::READ_CR, z, z, z);
            let l = t.loc(0);
            let size = if matches!(l, Loc::Mem { .. }) {
                2
            } else {
                t.op_size(0)
            };
            t.write(l, size, v);
            Flow::Next
        }
        Mnemonic::Invlpg => {
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            let (a, d) = t.ea();
            let addr = t.b.addi(a, d as i64);
            let z = t.sys_k(0);
            t.sys_call(SysH::INVLPG, addr, z, z);
            t.end_continue()
        }
        Mnemonic::Wbinvd | Mnemonic::Invd => {
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            Flow::Next
        }
        Mnemonic::Clflush
        | Mnemonic::Clflushopt
        | Mnemonic::Clwb
        | Mnemonic::Lfence
        | Mnemonic::Mfence
        | Mnemonic::Sfence
        | Mnemonic::Prefetch
        | Mnemonic::Prefetchwt1 => Flow::Next,
        Mnemonic::Lgdt | Mnemonic::Lidt => {
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            let (a, d) = t.ea();
            let addr = t.b.addi(a, d as i64);
            let which = t.sys_k((m == Mnemonic::Lidt) as u64);
            let os = t.sys_k(
                if i.code() == Code::Lgdt_m1632_16 || i.code() == Code::Lidt_m1632_16 {
                    2
                } else {
                    4
                },
            );
            t.sys_call(SysH::LOAD_DT, addr, which, os);
            Flow::Next
        }
        Mnemonic::Sgdt | Mnemonic::Sidt => {
            let (a, d) = t.ea();
            let addr = t.b.addi(a, d as i64);
            let which = t.sys_k((m == Mnemonic::Sidt) as u64);
            t.sys_call(SysH::STORE_DT, addr, which, which);
            Flow::Next
        }
        Mnemonic::Lldt | Mnemonic::Ltr => {
            if t.hf & hflags::PE == 0 {
                return Some(t.raise(vec::UD, None));
            }
            if let Some(f) = t.sys_need_cpl0() {
                return Some(f);
            }
            let l = t.loc(0);
            let v = t.read(l, 2);
            let z = t.sys_k(0);
            t.sys_call(
                if m == Mnemonic::Lldt {
                    SysH::LLDT
                } else {
                    SysH::LTR
                },
                v,
                z,
                z,
            );
            Flow::Next
        }
        Mnemonic::Sldt | Mnemonic::Str => {
            let n = t.sys_k(if m == Mnemonic::Sldt { 6 } else { 7 });
            let v = t.sys_call(SysH::GET_SEL, n, n, n);
            let l = t.loc(0);
            let size = if matches!(l, Loc::Mem { .. }) {
                2
            } else {
                t.op_size(0)
            };
            t.write(l, size, v);
            Flow::Next
        }
        Mnemonic::Lar | Mnemonic::Lsl | Mnemonic::Verr | Mnemonic::Verw => {
            if t.hf & hflags::PE == 0 {
                return Some(t.raise(vec::UD, None));
            }
            let (src, op) = match m {
                Mnemonic::Lar => (1, 0),
                Mnemonic::Lsl => (1, 1),
                Mnemonic::Verr => (0, 2),
                _ => (0, 3),
            };
            let l = t.loc(src);
            let sel = t.read(l, 2);
            let dst = if op < 2 {
                let r = i.op0_register();
                let (slot, _) = super::operand::gpr(r)?;
                slot as u64 | ((r.size() as u64) << 8)
            } else {
                0
            };
            let (opk, dk) = (t.sys_k(op), t.sys_k(dst));
            t.sys_call(SysH::LARX, sel, opk, dk);
            t.cc_dynamic();
            Flow::Next
        }
        Mnemonic::Push if i.op0_kind() == OpKind::Register => {
            let n = seg_no(i.op0_register())?;
            let size = t.stack_op_size();
            let nk = t.sys_k(n as u64);
            let v = t.sys_call(SysH::GET_SEL, nk, nk, nk);
            t.push(v, size);
            Flow::Next
        }
        Mnemonic::Pop if i.op0_kind() == OpKind::Register => {
            let n = seg_no(i.op0_register())?;
            if n == CS {
                return Some(t.raise(vec::UD, None));
            }
            let size = t.stack_op_size();
            let v = t.peek(size, 0);
            let nk = t.sys_k(n as u64);
            t.sys_call(SysH::LOAD_SEG, nk, v, nk);
            t.add_sp(size as i64);
            t.end_continue()
        }
        Mnemonic::Jmp
            if i.op0_kind() == OpKind::FarBranch16 || i.op0_kind() == OpKind::FarBranch32 =>
        {
            let off = if i.op0_kind() == OpKind::FarBranch16 {
                i.far_branch16() as u64
            } else {
                i.far_branch32() as u64
            };
            let (s, o) = (t.sys_k(i.far_branch_selector() as u64), t.sys_k(off));
            t.sys_call(SysH::FAR_JMP, s, o, o);
            t.sys_exit_set_rip()
        }
        Mnemonic::Jmp if i.is_jmp_far_indirect() => {
            let (sel, off) = far_ptr(t);
            t.sys_call(SysH::FAR_JMP, sel, off, off);
            t.sys_exit_set_rip()
        }
        Mnemonic::Call
            if i.op0_kind() == OpKind::FarBranch16 || i.op0_kind() == OpKind::FarBranch32 =>
        {
            let (off, os) = if i.op0_kind() == OpKind::FarBranch16 {
                (i.far_branch16() as u64, 2)
            } else {
                (i.far_branch32() as u64, 4)
            };
            let s = t.sys_k(i.far_branch_selector() as u64 | (os << 16));
            let o = t.sys_k(off);
            let n = t.sys_k(t.next);
            t.sys_call(SysH::FAR_CALL, s, o, n);
            t.sys_exit_set_rip()
        }
        Mnemonic::Call if i.is_call_far_indirect() => {
            let os = (i.memory_size().size() as u64).saturating_sub(2);
            let (sel, off) = far_ptr(t);
            let hi = t.sys_k(os << 16);
            let s = t.b.bin(tci64_engine::mk::or, sel, hi);
            let n = t.sys_k(t.next);
            t.sys_call(SysH::FAR_CALL, s, off, n);
            t.sys_exit_set_rip()
        }
        Mnemonic::Retf => {
            let os = match i.code() {
                Code::Retfw | Code::Retfw_imm16 => 2,
                Code::Retfd | Code::Retfd_imm16 => 4,
                _ => 8,
            };
            let imm = if i.op_count() == 1 {
                i.immediate16() as u64
            } else {
                0
            };
            let (a, b) = (t.sys_k(os), t.sys_k(imm));
            t.sys_call(SysH::FAR_RET, a, b, b);
            t.sys_exit_set_rip()
        }
        Mnemonic::Iret | Mnemonic::Iretd | Mnemonic::Iretq => {
            let os = match m {
                Mnemonic::Iret => 2,
                Mnemonic::Iretd => 4,
                _ => 8,
            };
            let a = t.sys_k(os);
            t.sys_call(SysH::IRET, a, a, a);
            t.cc_dynamic();
            t.sys_exit_set_rip()
        }
        Mnemonic::Syscall => {
            let n = t.sys_k(t.next);
            t.sys_call(SysH::SYSCALL, n, n, n);
            t.cc_dynamic();
            t.sys_exit_set_rip()
        }
        Mnemonic::Sysret | Mnemonic::Sysretq => {
            let a = t.sys_k(if m == Mnemonic::Sysretq { 8 } else { 4 });
            t.sys_call(SysH::SYSRET, a, a, a);
            t.cc_dynamic();
            t.sys_exit_set_rip()
        }
        Mnemonic::Sysenter => {
            let z = t.sys_k(0);
            t.sys_call(SysH::SYSENTER, z, z, z);
            t.cc_dynamic();
            t.sys_exit_set_rip()
        }
        Mnemonic::Sysexit | Mnemonic::Sysexitq => {
            let a = t.sys_k(if m == Mnemonic::Sysexitq { 8 } else { 4 });
            t.sys_call(SysH::SYSEXIT, a, a, a);
            t.cc_dynamic();
            t.sys_exit_set_rip()
        }
        Mnemonic::Swapgs => {
            let z = t.sys_k(0);
            t.sys_call(SysH::SWAPGS, z, z, z);
            Flow::Next
        }
        Mnemonic::Int | Mnemonic::Int3 => {
            let v = if m == Mnemonic::Int3 {
                3
            } else {
                i.immediate8() as u64
            };
            let (vk, n) = (t.sys_k(v), t.sys_k(t.next));
            t.sys_call(SysH::INT, vk, n, n);
            t.sys_exit_set_rip()
        }
        Mnemonic::Into => {
            let n = t.sys_k(t.next);
            t.sys_call(SysH::INTO, n, n, n);
            t.end_continue()
        }
        Mnemonic::Int1 => {
            let n = t.sys_k(t.next);
            t.sys_call(SysH::INT1, n, n, n);
            t.cc_dynamic();
            t.sys_exit_set_rip()
        }
        Mnemonic::Ud0 | Mnemonic::Ud1 | Mnemonic::Ud2 => t.raise(vec::UD, None),
        Mnemonic::Cli => {
            if t.cpl() == 0 || t.hf & hflags::PE == 0 {
                t.b.push(Op::AndI {
                    d: RFLAGS,
                    a: RFLAGS,
                    imm: !(fl::IF as i32),
                });
            } else {
                let z = t.sys_k(0);
                t.sys_call(SysH::CLI, z, z, z);
            }
            Flow::Next
        }
        Mnemonic::Sti => {
            let z = t.sys_k(0);
            t.sys_call(SysH::STI, z, z, z);
            t.end_continue()
        }
        Mnemonic::Pushf | Mnemonic::Pushfd | Mnemonic::Pushfq => {
            let size = t.stack_op_size();
            let f = t.rflags();
            let v = t.b.temp();
            t.b.push(Op::AndI {
                d: v,
                a: f,
                imm: !((fl::VM | fl::RF) as i32),
            });
            t.push(v, size);
            Flow::Next
        }
        Mnemonic::Popf | Mnemonic::Popfd | Mnemonic::Popfq => {
            let size = t.stack_op_size();
            let v = t.peek(size, 0);
            let os = t.sys_k(size as u64);
            t.sys_call(SysH::POPF, v, os, os);
            t.cc_dynamic();
            t.add_sp(size as i64);
            t.end_continue()
        }
        Mnemonic::In | Mnemonic::Out => {
            let (dat, prt) = if m == Mnemonic::In { (0, 1) } else { (1, 0) };
            let r = i.op_register(dat);
            let size = r.size() as u64;
            let port = if i.op_kind(prt) == OpKind::Register {
                t.zx(RDX, 2)
            } else {
                t.sys_k(i.immediate(prt) & 0xff)
            };
            let sk = t.sys_k(size);
            if m == Mnemonic::In {
                let z = t.sys_k(0);
                let v = t.sys_call(SysH::IN, port, sk, z);
                t.write_reg(r, v);
            } else {
                let v = t.read_reg(r);
                t.sys_call(SysH::OUT, port, sk, v);
            }
            t.end_continue()
        }
        Mnemonic::Insb
        | Mnemonic::Insw
        | Mnemonic::Insd
        | Mnemonic::Outsb
        | Mnemonic::Outsw
        | Mnemonic::Outsd => {
            let outs = matches!(m, Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd);
            let size = match m {
                Mnemonic::Insb | Mnemonic::Outsb => 1,
                Mnemonic::Insw | Mnemonic::Outsw => 2,
                _ => 4,
            };
            let (memk, segn) = if outs {
                (i.op1_kind(), seg_no(i.memory_segment()).unwrap_or(DS))
            } else {
                (i.op0_kind(), ES)
            };
            let flags = size
                | (str_asize(memk) << 4)
                | ((i.has_rep_prefix() || i.has_repne_prefix()) as u64) << 8
                | (outs as u64) << 9
                | (segn as u64) << 16;
            let fk = t.sys_k(flags);
            t.sys_call(SysH::STRIO, fk, fk, fk);
            t.end_continue()
        }
        _ => {
            let _ = long64;
            return None;
        }
    })
}

/// Load a far pointer operand (m16:16/32/64): (selector, offset) slots.
fn far_ptr(t: &mut Tr) -> (Slot, Slot) {
    let os = t.insn.memory_size().size().saturating_sub(2).clamp(2, 8);
    let (a, d) = t.ea();
    let off = t.ld(os, a, d);
    let sel = t.ld(2, a, d.wrapping_add(os as i32));
    (sel, off)
}

/// MOV to/from CRn, DRn and segment registers; `None` for other forms.
fn mov_special(t: &mut Tr) -> Option<Flow> {
    let i = t.insn;
    let r0 = if i.op0_kind() == OpKind::Register {
        i.op0_register()
    } else {
        Register::None
    };
    let r1 = if i.op1_kind() == OpKind::Register {
        i.op1_register()
    } else {
        Register::None
    };
    if let Some(n) = cr_no(r0) {
        if !matches!(n, 0 | 2 | 3 | 4 | 8) {
            return Some(t.raise(vec::UD, None));
        }
        if let Some(f) = t.sys_need_cpl0() {
            return Some(f);
        }
        let v = t.read_reg(r1);
        let nk = t.sys_k(n);
        t.sys_call(SysH::WRITE_CR, nk, v, v);
        return Some(t.end_continue());
    }
    if let Some(n) = cr_no(r1) {
        if !matches!(n, 0 | 2 | 3 | 4 | 8) {
            return Some(t.raise(vec::UD, None));
        }
        if let Some(f) = t.sys_need_cpl0() {
            return Some(f);
        }
        let nk = t.sys_k(n);
        let v = t.sys_call(SysH::READ_CR, nk, nk, nk);
        t.write_reg(r0, v);
        return Some(Flow::Next);
    }
    if let Some(n) = dr_no(r0) {
        if let Some(f) = t.sys_need_cpl0() {
            return Some(f);
        }
        let v = t.read_reg(r1);
        let nk = t.sys_k(n);
        t.sys_call(SysH::WRITE_DR, nk, v, v);
        return Some(Flow::Next);
    }
    if let Some(n) = dr_no(r1) {
        if let Some(f) = t.sys_need_cpl0() {
            return Some(f);
        }
        let nk = t.sys_k(n);
        let v = t.sys_call(SysH::READ_DR, nk, nk, nk);
        t.write_reg(r0, v);
        return Some(Flow::Next);
    }
    if let Some(n) = seg_no(r0) {
        if n == CS {
            return Some(t.raise(vec::UD, None));
        }
        let l = t.loc(1);
        let v = t.read(l, 2);
        let nk = t.sys_k(n as u64);
        t.sys_call(SysH::LOAD_SEG, nk, v, nk);
        return Some(t.end_continue());
    }
    if let Some(n) = seg_no(r1) {
        let nk = t.sys_k(n as u64);
        let v = t.sys_call(SysH::GET_SEL, nk, nk, nk);
        let l = t.loc(0);
        let size = if matches!(l, Loc::Mem { .. }) {
            2
        } else {
            t.op_size(0)
        };
        t.write(l, size, v);
        return Some(Flow::Next);
    }
    None
}
