//! The base integer family: moves, add/sub/logic/compare, inc/dec/neg/not, conditional and
//! unconditional control transfers, push/pop, setcc/cmovcc, flag instructions, HLT.

use super::operand::{size_ix, Loc};
use super::{exit, Flow, Tr};
use crate::flags::{cc, CcKind};
use crate::regs::{fl, CC_DST, CC_SRC, CC_SRC2, RFLAGS, RIP};
use iced_x86::{ConditionCode, Mnemonic, OpKind, Register};
use tci64_engine::{mk, Cond, Op, Slot};

/// A condition as a comparison the engine can branch on.
#[derive(Clone, Copy, Debug)]
pub struct Test {
    pub a: Slot,
    pub b: Slot,
    pub cond: Cond,
}

impl Tr<'_> {
    /// Turn an x86 condition code into a comparison, using the static lazy-flags state when
    /// it allows a direct test.
    pub fn test_cc(&mut self, cc_: ConditionCode) -> Test {
        use ConditionCode as C;
        if let Some(op) = self.cc {
            let (kind, s) = crate::flags::split(op);
            let size = 1usize << s;
            let zero = self.b.konst(0);
            let sign_test = |t: &mut Self, neg: bool| -> Test {
                if s == 3 {
                    Test {
                        a: CC_DST,
                        b: zero,
                        cond: if neg { Cond::LtS } else { Cond::GeS },
                    }
                } else {
                    let m = t.b.konst(1u64 << ((8 << s) - 1));
                    Test {
                        a: CC_DST,
                        b: m,
                        cond: if neg { Cond::TstNz } else { Cond::TstZ },
                    }
                }
            };
            let zflag_from_dst = kind != CcKind::Eflags as u32 && kind != CcKind::Popcnt as u32;
            match cc_ {
                C::e if zflag_from_dst => {
                    return Test {
                        a: CC_DST,
                        b: zero,
                        cond: Cond::Eq,
                    }
                }
                C::ne if zflag_from_dst => {
                    return Test {
                        a: CC_DST,
                        b: zero,
                        cond: Cond::Ne,
                    }
                }
                C::s if zflag_from_dst => return sign_test(self, true),
                C::ns if zflag_from_dst => return sign_test(self, false),
                _ => {}
            }
            if kind == CcKind::Sub as u32 {
                let (a, b, signed) = match cc_ {
                    C::b | C::ae | C::be | C::a => {
                        (self.zx(CC_SRC2, size), self.zx(CC_SRC, size), false)
                    }
                    C::l | C::ge | C::le | C::g => {
                        (self.sx(CC_SRC2, size), self.sx(CC_SRC, size), true)
                    }
                    _ => (0, 0, false),
                };
                let cond = match (cc_, signed) {
                    (C::b, _) => Some(Cond::LtU),
                    (C::ae, _) => Some(Cond::GeU),
                    (C::be, _) => Some(Cond::LeU),
                    (C::a, _) => Some(Cond::GtU),
                    (C::l, _) => Some(Cond::LtS),
                    (C::ge, _) => Some(Cond::GeS),
                    (C::le, _) => Some(Cond::LeS),
                    (C::g, _) => Some(Cond::GtS),
                    _ => None,
                };
                if let Some(cond) = cond {
                    return Test { a, b, cond };
                }
            }
            if kind == CcKind::Logic as u32 || kind == CcKind::Clr as u32 {
                // CF = OF = 0.
                match cc_ {
                    C::b | C::o => {
                        return Test {
                            a: zero,
                            b: zero,
                            cond: Cond::Ne,
                        }
                    }
                    C::ae | C::no => {
                        return Test {
                            a: zero,
                            b: zero,
                            cond: Cond::Eq,
                        }
                    }
                    C::be => {
                        return Test {
                            a: CC_DST,
                            b: zero,
                            cond: Cond::Eq,
                        }
                    }
                    C::a => {
                        return Test {
                            a: CC_DST,
                            b: zero,
                            cond: Cond::Ne,
                        }
                    }
                    C::l => return sign_test(self, true),
                    C::ge => return sign_test(self, false),
                    C::le => {
                        let v = self.sx(CC_DST, size);
                        return Test {
                            a: v,
                            b: zero,
                            cond: Cond::LeS,
                        };
                    }
                    C::g => {
                        let v = self.sx(CC_DST, size);
                        return Test {
                            a: v,
                            b: zero,
                            cond: Cond::GtS,
                        };
                    }
                    _ => {}
                }
            }
        }
        // General case: materialize the flags and test bits.
        let f = self.arith_flags();
        let bit = |t: &mut Self, m: u64, set: bool| -> Test {
            let k = t.b.konst(m);
            Test {
                a: f,
                b: k,
                cond: if set { Cond::TstNz } else { Cond::TstZ },
            }
        };
        match cc_ {
            C::o => bit(self, fl::OF, true),
            C::no => bit(self, fl::OF, false),
            C::b => bit(self, fl::CF, true),
            C::ae => bit(self, fl::CF, false),
            C::e => bit(self, fl::ZF, true),
            C::ne => bit(self, fl::ZF, false),
            C::be => bit(self, fl::CF | fl::ZF, true),
            C::a => bit(self, fl::CF | fl::ZF, false),
            C::s => bit(self, fl::SF, true),
            C::ns => bit(self, fl::SF, false),
            C::p => bit(self, fl::PF, true),
            C::np => bit(self, fl::PF, false),
            C::l | C::ge | C::le | C::g => {
                // SF != OF: shift OF (bit 11) down to SF (bit 7) and xor.
                let o = self.b.temp();
                self.b.push(Op::ShrI { d: o, a: f, imm: 4 });
                let x = self.b.bin(mk::xor, o, f);
                let m = self.b.konst(if matches!(cc_, C::le | C::g) {
                    fl::SF | fl::ZF
                } else {
                    fl::SF
                });
                // For le/g also ZF: (SF^OF) | ZF, both tested in one mask (ZF is bit 6 of f,
                // which the xor above leaves as ZF ^ bit 10 (DF is not in f), i.e. ZF).
                let cond = if matches!(cc_, C::l | C::le) {
                    Cond::TstNz
                } else {
                    Cond::TstZ
                };
                Test { a: x, b: m, cond }
            }
            C::None => {
                let z = self.b.konst(0);
                Test {
                    a: z,
                    b: z,
                    cond: Cond::Eq,
                }
            }
        }
    }

    /// `t = condition ? 1 : 0`
    pub fn setcc_value(&mut self, c: ConditionCode) -> Slot {
        let t = self.test_cc(c);
        self.b.setcond(t.cond, t.a, t.b)
    }

    /// A two-way block end on a condition: taken → `target` (exit 1), else `next` (exit 0).
    pub fn branch(&mut self, t: Test, target: u64) -> Flow {
        // The lazy-flags op is stored on each path after the branch (the branch itself cannot
        // trap), so each exit can carry it as one fused op (`GotoIK`).
        let dirty = self.cc_dirty;
        let l = self.b.label();
        self.b.push(Op::BrCond {
            a: t.a,
            b: t.b,
            cond: t.cond,
            t: l,
        });
        self.goto(self.next, 0);
        self.cc_dirty = dirty;
        self.b.set_label(l);
        self.goto(target, 1);
        Flow::End
    }
}

/// Translate the base family.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let i = t.insn;
    let m = i.mnemonic();
    Some(match m {
        // The reserved-NOP space (0F 0D reg, 0F 18-1F without a defined hint): no access,
        // no fault, nothing.
        Mnemonic::Nop
        | Mnemonic::Reservednop
        | Mnemonic::Pause
        | Mnemonic::Endbr64
        | Mnemonic::Endbr32 => Flow::Next,
        Mnemonic::Pusha | Mnemonic::Pushad | Mnemonic::Popa | Mnemonic::Popad => {
            // The eight GPRs in encoding order (the stored SP is the value before the
            // instruction; POPA skips it). All accesses come before SP changes.
            let size = if matches!(m, Mnemonic::Pusha | Mnemonic::Popa) {
                2
            } else {
                4
            };
            let regs: [Register; 8] = if size == 2 {
                use Register::*;
                [AX, CX, DX, BX, SP, BP, SI, DI]
            } else {
                use Register::*;
                [EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI]
            };
            let n = size as i64;
            if matches!(m, Mnemonic::Pusha | Mnemonic::Pushad) {
                for (k, r) in regs.iter().enumerate() {
                    let v = t.read_reg(*r);
                    t.poke(size, -n * (k as i64 + 1), v);
                }
                t.add_sp(-8 * n);
            } else {
                let mut vals = [None; 8];
                for (k, v) in vals.iter_mut().enumerate() {
                    if k != 4 {
                        *v = Some(t.peek(size, n * (7 - k as i64)));
                    }
                }
                for (k, v) in vals.iter().enumerate() {
                    if let Some(v) = v {
                        t.write_reg(regs[k], *v);
                    }
                }
                t.add_sp(8 * n);
            }
            Flow::Next
        }
        Mnemonic::Salc => {
            // Undocumented (D6, outside 64-bit mode): AL = CF ? 0xFF : 0; no flags.
            let cf = carry(t);
            let z = t.b.konst(0);
            let v = t.b.bin(mk::sub, z, cf);
            t.write_reg(Register::AL, v);
            Flow::Next
        }
        Mnemonic::Prefetchnta
        | Mnemonic::Prefetcht0
        | Mnemonic::Prefetcht1
        | Mnemonic::Prefetcht2
        | Mnemonic::Prefetchw => Flow::Next,
        Mnemonic::Mov if is_gpr_form(t) => {
            let size = t.op_size(0);
            let src = t.loc(1);
            let v = t.read_raw(src, size);
            let dst = t.loc(0);
            t.write(dst, size, v);
            Flow::Next
        }
        Mnemonic::Movzx => {
            let (ds, ss) = (t.op_size(0), t.op_size(1));
            let src = t.loc(1);
            let v = t.read(src, ss);
            let dst = t.loc(0);
            t.write(dst, ds, v);
            Flow::Next
        }
        Mnemonic::Movsx | Mnemonic::Movsxd => {
            let (ds, ss) = (t.op_size(0), t.op_size(1));
            let src = t.loc(1);
            let v = t.read_sx(src, ss);
            let dst = t.loc(0);
            t.write(dst, ds, v);
            Flow::Next
        }
        Mnemonic::Lea => {
            let size = t.op_size(0);
            let (a, disp) = t.ea_offset();
            let v = if disp == 0 {
                a
            } else {
                t.b.addi(a, disp as i64)
            };
            let dst = t.loc(0);
            t.write(dst, size, v);
            Flow::Next
        }
        Mnemonic::Add
        | Mnemonic::Sub
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Xor
        | Mnemonic::Cmp
        | Mnemonic::Test
        | Mnemonic::Adc
        | Mnemonic::Sbb => alu2(t, m),
        Mnemonic::Inc | Mnemonic::Dec => {
            let size = t.op_size(0);
            let s = size_ix(size);
            let dst = t.loc(0);
            let v = t.read_raw(dst, size);
            // CF is preserved: keep the old carry in CC_SRC.
            let cf = carry(t);
            let r = t.b.addi(v, if m == Mnemonic::Inc { 1 } else { -1 });
            let d = t.write(dst, size, r);
            let kind = if m == Mnemonic::Inc {
                CcKind::Inc
            } else {
                CcKind::Dec
            };
            t.set_cc(cc(kind, s), d, cf, None);
            Flow::Next
        }
        Mnemonic::Neg => {
            let size = t.op_size(0);
            let dst = t.loc(0);
            let v = t.read(dst, size);
            let v = snap(t, v);
            let r = t.b.un(mk::neg, v);
            let d = t.write(dst, size, r);
            let z = t.b.konst(0);
            t.set_cc(cc(CcKind::Sub, size_ix(size)), d, v, Some(z));
            Flow::Next
        }
        Mnemonic::Not => {
            let size = t.op_size(0);
            let dst = t.loc(0);
            let v = t.read_raw(dst, size);
            let r = t.b.un(mk::not, v);
            t.write(dst, size, r);
            Flow::Next
        }
        // Far forms (ptr16:xx, m16:xx) belong to the system family.
        Mnemonic::Jmp | Mnemonic::Call if i.is_jmp_far_indirect() || i.is_call_far_indirect() => {
            return None
        }
        Mnemonic::Jmp => match i.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                t.goto(i.near_branch_target(), 0);
                Flow::End
            }
            OpKind::Register | OpKind::Memory => {
                let size = t.op_size(0);
                let l = t.loc(0);
                let v = t.read(l, size);
                t.goto_slot(v);
                Flow::End
            }
            _ => return None,
        },
        _ if i.is_jcc_short_or_near() => {
            let c = t.test_cc(i.condition_code());
            t.branch(c, i.near_branch_target())
        }
        Mnemonic::Call => match i.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                let size = t.stack_op_size();
                let ret = t.b.konst(t.next);
                t.push(ret, size);
                t.goto(i.near_branch_target(), 0);
                Flow::End
            }
            OpKind::Register | OpKind::Memory => {
                let size = t.op_size(0);
                let l = t.loc(0);
                let target = t.read(l, size);
                let ret = t.b.konst(t.next);
                t.push(ret, t.stack_op_size());
                t.goto_slot(target);
                Flow::End
            }
            _ => return None,
        },
        Mnemonic::Ret => {
            let size = t.stack_op_size();
            let target = t.pop(size);
            if i.op_count() == 1 {
                t.add_sp(i.immediate16() as i64);
            }
            t.goto_slot(target);
            Flow::End
        }
        Mnemonic::Push => {
            let size = t.stack_op_size();
            match i.op0_kind() {
                OpKind::Register if super::operand::gpr(i.op0_register()).is_none() => return None,
                _ => {}
            }
            let l = t.loc(0);
            let v = match l {
                Loc::Imm(_) => t.read_sx(l, t.op_size(0)),
                _ => t.read_raw(l, size),
            };
            t.push(v, size);
            Flow::Next
        }
        Mnemonic::Pop => {
            if i.op0_kind() == OpKind::Register && super::operand::gpr(i.op0_register()).is_none() {
                return None;
            }
            let size = t.stack_op_size();
            if i.op0_kind() == OpKind::Memory {
                // The address is computed with the incremented RSP (SDM: POP m).
                let v = t.peek(size, 0);
                t.add_sp(size as i64);
                let l = t.loc(0);
                t.write(l, size, v);
            } else {
                let v = t.pop(size);
                let l = t.loc(0);
                t.write(l, size, v);
            }
            Flow::Next
        }
        Mnemonic::Leave => {
            let size = t.stack_op_size();
            let w = t.stack_width();
            // RSP = RBP (stack width), then pop RBP.
            let addr = t.zx(crate::regs::RBP, w);
            let a = if w == 8 { crate::regs::RBP } else { addr };
            let v = t.ld(size, a, 0);
            let nsp = t.b.addi(crate::regs::RBP, size as i64);
            let rbp = Loc::Reg {
                slot: crate::regs::RBP,
                hi8: false,
            };
            t.write(rbp, size, v);
            let sp = Loc::Reg {
                slot: crate::regs::RSP,
                hi8: false,
            };
            t.write(sp, w, nsp);
            Flow::Next
        }
        _ if is_setcc(m) => {
            let v = t.setcc_value(i.condition_code());
            let l = t.loc(0);
            t.write(l, 1, v);
            Flow::Next
        }
        _ if is_cmovcc(m) => {
            let size = t.op_size(0);
            let c = t.test_cc(i.condition_code());
            let cv = t.b.setcond(c.cond, c.a, c.b);
            let src = t.loc(1);
            let v = t.read_raw(src, size);
            let dst = t.loc(0);
            let old = t.read_raw(dst, size);
            let sel = t.b.temp();
            t.b.push(Op::Select {
                d: sel,
                c: cv,
                a: v,
                b: old,
            });
            // A 32-bit cmov zero-extends the destination even when the condition is false.
            t.write(dst, size, sel);
            Flow::Next
        }
        Mnemonic::Clc | Mnemonic::Stc | Mnemonic::Cmc => {
            let f = t.arith_flags();
            let nf = t.b.temp();
            t.b.push(match m {
                Mnemonic::Clc => Op::AndI {
                    d: nf,
                    a: f,
                    imm: !(fl::CF as i32),
                },
                Mnemonic::Stc => Op::OrI {
                    d: nf,
                    a: f,
                    imm: fl::CF as i32,
                },
                _ => Op::XorI {
                    d: nf,
                    a: f,
                    imm: fl::CF as i32,
                },
            });
            let z = t.b.konst(0);
            t.set_cc(crate::flags::CC_EFLAGS, z, nf, None);
            Flow::Next
        }
        Mnemonic::Cld => {
            t.b.push(Op::AndI {
                d: RFLAGS,
                a: RFLAGS,
                imm: !(fl::DF as i32),
            });
            Flow::Next
        }
        Mnemonic::Std => {
            t.b.push(Op::OrI {
                d: RFLAGS,
                a: RFLAGS,
                imm: fl::DF as i32,
            });
            Flow::Next
        }
        Mnemonic::Hlt => {
            if t.cpl() != 0 {
                return Some(t.raise(crate::state::vec::GP, Some(0)));
            }
            t.sync_cc();
            t.b.set(RIP, t.next);
            t.b.push(Op::Exit { code: exit::HLT });
            Flow::End
        }
        Mnemonic::Cbw | Mnemonic::Cwde | Mnemonic::Cdqe => {
            let (from, to) = match m {
                Mnemonic::Cbw => (1, 2),
                Mnemonic::Cwde => (2, 4),
                _ => (4, 8),
            };
            let v = t.sx(crate::regs::RAX, from);
            let l = Loc::Reg {
                slot: crate::regs::RAX,
                hi8: false,
            };
            t.write(l, to, v);
            Flow::Next
        }
        Mnemonic::Cwd | Mnemonic::Cdq | Mnemonic::Cqo => {
            let size = match m {
                Mnemonic::Cwd => 2,
                Mnemonic::Cdq => 4,
                _ => 8,
            };
            let v = t.sx(crate::regs::RAX, size);
            let s = t.b.temp();
            t.b.push(Op::SarI {
                d: s,
                a: v,
                imm: 63,
            });
            let l = Loc::Reg {
                slot: crate::regs::RDX,
                hi8: false,
            };
            t.write(l, size, s);
            Flow::Next
        }
        _ => return None,
    })
}

/// True when both operands of a MOV are GPRs, memory or immediates (not segment/control).
fn is_gpr_form(t: &Tr) -> bool {
    (0..t.insn.op_count()).all(|k| match t.insn.op_kind(k) {
        OpKind::Register => super::operand::gpr(t.insn.op_register(k)).is_some(),
        _ => true,
    })
}

/// A copy of `s` that later register writes cannot change (globals are copied).
fn snap(t: &mut Tr, s: Slot) -> Slot {
    if s < crate::regs::FIRST_TEMP {
        let d = t.b.temp();
        t.b.mov(d, s);
        d
    } else {
        s
    }
}

/// The current CF as 0/1 (cheap when the lazy state is known).
pub fn carry(t: &mut Tr) -> Slot {
    let c = t.test_cc(ConditionCode::b);
    t.b.setcond(c.cond, c.a, c.b)
}

fn alu2(t: &mut Tr, m: Mnemonic) -> Flow {
    let size = t.op_size(0);
    let s = size_ix(size);
    let dst = t.loc(0);
    let src = t.loc(1);
    // `xor r, r` / `sub r, r`: a constant zero, no dependence on the old value.
    if matches!(m, Mnemonic::Xor | Mnemonic::Sub) && dst == src && matches!(dst, Loc::Reg { .. }) {
        let z = t.b.konst(0);
        let d = t.write(dst, size, z);
        t.set_cc(cc(CcKind::Clr, s), d, z, None);
        return Flow::Next;
    }
    let b = match src {
        Loc::Imm(_) => t.read_sx(src, t.op_size(1).min(size)),
        _ => t.read_raw(src, size),
    };
    let a = t.read_raw(dst, size);
    // The flags need the sources after the destination register is written.
    let (a, b) = (snap(t, a), snap(t, b));
    match m {
        Mnemonic::Add => {
            let r = t.b.bin(mk::add, a, b);
            let d = t.write(dst, size, r);
            t.set_cc(cc(CcKind::Add, s), d, b, None);
        }
        Mnemonic::Sub | Mnemonic::Cmp => {
            let r = t.b.bin(mk::sub, a, b);
            let d = if m == Mnemonic::Sub {
                t.write(dst, size, r)
            } else {
                t.zx(r, size)
            };
            t.set_cc(cc(CcKind::Sub, s), d, b, Some(a));
        }
        Mnemonic::And | Mnemonic::Test => {
            let r = t.b.bin(mk::and, a, b);
            let d = if m == Mnemonic::And {
                t.write(dst, size, r)
            } else {
                t.zx(r, size)
            };
            t.set_cc(cc(CcKind::Logic, s), d, d, None);
        }
        Mnemonic::Or => {
            let r = t.b.bin(mk::or, a, b);
            let d = t.write(dst, size, r);
            t.set_cc(cc(CcKind::Logic, s), d, d, None);
        }
        Mnemonic::Xor => {
            let r = t.b.bin(mk::xor, a, b);
            let d = t.write(dst, size, r);
            t.set_cc(cc(CcKind::Logic, s), d, d, None);
        }
        Mnemonic::Adc => {
            let cin = carry(t);
            let r1 = t.b.bin(mk::add, a, b);
            let r = t.b.bin(mk::add, r1, cin);
            let d = t.write(dst, size, r);
            t.set_cc(cc(CcKind::Adc, s), d, b, Some(cin));
        }
        Mnemonic::Sbb => {
            let cin = carry(t);
            let r1 = t.b.bin(mk::sub, a, b);
            let r = t.b.bin(mk::sub, r1, cin);
            let d = t.write(dst, size, r);
            t.set_cc(cc(CcKind::Sbb, s), d, b, Some(a));
        }
        _ => unreachable!(),
    }
    Flow::Next
}

/// SETcc mnemonics.
pub fn is_setcc(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Seto | Setno
            | Setb
            | Setae
            | Sete
            | Setne
            | Setbe
            | Seta
            | Sets
            | Setns
            | Setp
            | Setnp
            | Setl
            | Setge
            | Setle
            | Setg
    )
}

/// CMOVcc mnemonics.
pub fn is_cmovcc(m: Mnemonic) -> bool {
    use Mnemonic::*;
    matches!(
        m,
        Cmovo
            | Cmovno
            | Cmovb
            | Cmovae
            | Cmove
            | Cmovne
            | Cmovbe
            | Cmova
            | Cmovs
            | Cmovns
            | Cmovp
            | Cmovnp
            | Cmovl
            | Cmovge
            | Cmovle
            | Cmovg
    )
}
