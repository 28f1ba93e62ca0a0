//! Instruction family: the x87 FPU. Every instruction is one call of the x87 helper
//! ([`crate::fpu::x87::h_x87`]), which does its own memory accesses (loads before any state
//! change, stores before the stack moves).

use super::{Flow, Tr};
use crate::fpu::x87::{self as fx, ctl, mem, X87Op};
use crate::helpers::{base, Helper};
use crate::hflags;
use crate::state::vec;
use iced_x86::{MemorySize, Mnemonic, OpKind, Register};

helpers!(pub enum X87H @ base::X87; {
    OP => fx::h_x87,
});

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::X87, base::END, X87H::TABLE);

fn st_num(r: Register) -> u64 {
    (r as u32).wrapping_sub(Register::ST0 as u32) as u64 & 7
}

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let m = t.insn.mnemonic();
    if m == Mnemonic::Wait {
        if t.hf & hflags::TS != 0 && t.hf & hflags::MP != 0 {
            return Some(t.raise(vec::NM, None));
        }
        return Some(Flow::Next);
    }
    if matches!(
        m,
        Mnemonic::Fnsetpm | Mnemonic::Fneni | Mnemonic::Fndisi | Mnemonic::Frstpm
    ) {
        if t.hf & (hflags::EM | hflags::TS) != 0 {
            return Some(t.raise(vec::NM, None));
        }
        return Some(Flow::Next);
    }
    // FSTPNCE ST(i), ST (D9 D8+i) is an undocumented alias of FSTP ST(i).
    let fstpnce = m == Mnemonic::Fstpnce;
    // FBLD and FBSTP are FILD and FISTP with an m80bcd operand.
    let op = X87Op::from_mnemonic(match m {
        Mnemonic::Fstpnce => Mnemonic::Fstp,
        Mnemonic::Fbld => Mnemonic::Fild,
        Mnemonic::Fbstp => Mnemonic::Fistp,
        _ => m,
    })?;
    if t.hf & (hflags::EM | hflags::TS) != 0 {
        return Some(t.raise(vec::NM, None));
    }
    let mut k = op as u64;
    let n = t.insn.op_count();
    let mut regs = [1u64; 2];
    let mut nregs = 0;
    let mut addr = None;
    let mut ax_dst = false;
    for i in 0..n {
        match t.insn.op_kind(i) {
            OpKind::Register => {
                let r = t.insn.op_register(i);
                if r.is_st() {
                    if nregs < 2 {
                        regs[nregs] = st_num(r);
                        nregs += 1;
                    }
                } else if r == Register::AX {
                    ax_dst = true;
                }
            }
            OpKind::Memory => {
                let mk = match t.insn.memory_size() {
                    MemorySize::Float32 => mem::F32,
                    MemorySize::Float64 => mem::F64,
                    MemorySize::Float80 => mem::F80,
                    MemorySize::Int16 => mem::I16,
                    MemorySize::Int32 => mem::I32,
                    MemorySize::Int64 => mem::I64,
                    MemorySize::FpuEnv28 | MemorySize::FpuState108 => {
                        k |= ctl::OP32;
                        mem::M16
                    }
                    MemorySize::Bcd => mem::BCD,
                    _ => mem::M16,
                };
                k |= mk << ctl::MEM_SHIFT;
                let (a, disp) = t.ea();
                addr = Some(if disp == 0 {
                    a
                } else {
                    t.b.addi(a, disp as i64)
                });
            }
            _ => return None,
        }
    }
    if fstpnce {
        nregs = 1;
    }
    if nregs == 1 {
        regs[1] = regs[0];
    }
    if nregs == 2
        && regs[0] == 0
        && !matches!(
            m,
            Mnemonic::Faddp
                | Mnemonic::Fsubp
                | Mnemonic::Fsubrp
                | Mnemonic::Fmulp
                | Mnemonic::Fdivp
                | Mnemonic::Fdivrp
        )
    {
        k |= ctl::DST_ST0;
    }
    k |= regs[0] << ctl::R0_SHIFT | regs[1] << ctl::R1_SHIFT;
    if t.long64() {
        k |= ctl::MODE64;
    }
    let a = match addr {
        Some(a) => a,
        None => t.b.konst(0),
    };
    let aux = if matches!(
        op,
        X87Op::Fcmovb
            | X87Op::Fcmove
            | X87Op::Fcmovbe
            | X87Op::Fcmovu
            | X87Op::Fcmovnb
            | X87Op::Fcmovne
            | X87Op::Fcmovnbe
            | X87Op::Fcmovnu
    ) {
        t.rflags()
    } else {
        t.b.konst(t.pc)
    };
    let kk = t.b.konst(k);
    let r = t.call(X87H::OP.id(), a, aux, kk);
    if ax_dst {
        t.write_reg(Register::AX, r);
    }
    if matches!(
        op,
        X87Op::Fcomi | X87Op::Fcomip | X87Op::Fucomi | X87Op::Fucomip
    ) {
        t.cc_dynamic();
    }
    Some(Flow::Next)
}
