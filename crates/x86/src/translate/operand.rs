//! Operands: registers, memory locations, immediates; loads, stores and the stack.

use super::Tr;
use crate::flags::SizeIx;
use crate::hflags;
use crate::regs::*;
use iced_x86::{OpKind, Register};
use tci64_engine::{Op, Slot};

/// Where an operand lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// A general-purpose register: its slot, and whether it is AH/CH/DH/BH.
    Reg { slot: Slot, hi8: bool },
    /// Guest-virtual memory at `slot + disp`.
    Mem { a: Slot, disp: i32 },
    /// An immediate.
    Imm(u64),
}

/// Size index (0..=3) of a size in bytes.
pub fn size_ix(bytes: usize) -> SizeIx {
    match bytes {
        1 => 0,
        2 => 1,
        4 => 2,
        _ => 3,
    }
}

/// The slot of a general-purpose register and whether it is a high-byte register.
pub fn gpr(reg: Register) -> Option<(Slot, bool)> {
    let full = reg.full_register();
    if full.is_gpr64() {
        let n = full as u32 - Register::RAX as u32;
        let hi8 = matches!(
            reg,
            Register::AH | Register::CH | Register::DH | Register::BH
        );
        Some((n as Slot, hi8))
    } else {
        None
    }
}

impl Tr<'_> {
    /// Size in bytes of operand `i`.
    pub fn op_size(&self, i: u32) -> usize {
        match self.insn.op_kind(i) {
            OpKind::Register => self.insn.op_register(i).size(),
            OpKind::Memory => self.insn.memory_size().size(),
            OpKind::Immediate8 => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// The effective address of the instruction's memory operand, as `slot + disp`
    /// (including the segment base where the mode uses it).
    pub fn ea(&mut self) -> (Slot, i32) {
        self.ea_seg(true)
    }

    /// The offset part of the memory operand without any segment base (LEA).
    pub fn ea_offset(&mut self) -> (Slot, i32) {
        self.ea_seg(false)
    }

    fn ea_seg(&mut self, with_seg: bool) -> (Slot, i32) {
        let i = self.insn;
        let base = i.memory_base();
        let index = i.memory_index();
        let disp = i.memory_displacement64();
        let seg = i.memory_segment();
        self.ss_ref = seg == Register::SS;
        let addr32 = if base != Register::None {
            base.size() == 4
        } else if index != Register::None {
            index.size() == 4
        } else {
            !self.long64()
        };
        let addr16 = base.size() == 2
            || index.size() == 2
            || (base == Register::None
                && index == Register::None
                && self.hf & hflags::CS32 == 0
                && !self.long64());
        // Segment base: FS/GS always; the others only outside 64-bit mode when non-zero.
        let seg_slot = if !with_seg {
            None
        } else {
            match seg {
                Register::FS => Some(FS_BASE),
                Register::GS => Some(GS_BASE),
                _ if self.long64() || self.hf & hflags::ADDSEG == 0 => None,
                Register::ES => Some(ES_BASE),
                Register::CS => Some(CS_BASE),
                Register::SS => Some(SS_BASE),
                Register::DS => Some(DS_BASE),
                _ => None,
            }
        };
        if base == Register::RIP || base == Register::EIP {
            // iced gives the absolute target.
            let k = self.b.konst(disp);
            return self.add_seg(k, 0, seg_slot, false);
        }
        let mut acc: Option<Slot> = None;
        if base != Register::None {
            acc = gpr(base).map(|(s, _)| s);
        }
        if index != Register::None {
            if let Some((s, _)) = gpr(index) {
                let sh = i.memory_index_scale().trailing_zeros() as u8;
                let t = if sh > 0 {
                    let t = self.b.temp();
                    self.b.push(Op::ShlI {
                        d: t,
                        a: s,
                        imm: sh,
                    });
                    t
                } else {
                    s
                };
                acc = Some(match acc {
                    None => t,
                    Some(a) => {
                        let d = self.b.temp();
                        self.b.push(Op::Add { d, a, b: t });
                        d
                    }
                });
            }
        }
        if !addr32 && !addr16 {
            // 64-bit addressing.
            let a = match acc {
                Some(a) => a,
                None => {
                    let k = self.b.konst(disp);
                    return self.add_seg(k, 0, seg_slot, false);
                }
            };
            return match i32::try_from(disp as i64) {
                Ok(d) => self.add_seg(a, d, seg_slot, false),
                Err(_) => {
                    let t = self.b.addi(a, disp as i64);
                    self.add_seg(t, 0, seg_slot, false)
                }
            };
        }
        // 32/16-bit addressing: wrap the offset, then add the base and wrap the linear address.
        let off = match acc {
            Some(a) => {
                let t = self.b.temp();
                self.b.addi_to(t, a, disp as u32 as i32 as i64);
                let d = self.b.temp();
                self.b.push(if addr16 {
                    Op::Zx16 { d, a: t }
                } else {
                    Op::Zx32 { d, a: t }
                });
                d
            }
            None => self.b.konst(if addr16 {
                disp & 0xffff
            } else {
                disp & 0xffff_ffff
            }),
        };
        self.add_seg(off, 0, seg_slot, !self.long64())
    }

    fn add_seg(&mut self, a: Slot, disp: i32, seg: Option<Slot>, wrap32: bool) -> (Slot, i32) {
        match seg {
            None => (a, disp),
            Some(s) => {
                let t = self.b.temp();
                self.b.push(Op::Add { d: t, a, b: s });
                if wrap32 {
                    let u = self.b.temp();
                    self.b.push(Op::Zx32 { d: u, a: t });
                    (u, disp)
                } else {
                    (t, disp)
                }
            }
        }
    }

    /// The location of operand `i`.
    pub fn loc(&mut self, i: u32) -> Loc {
        match self.insn.op_kind(i) {
            OpKind::Register => {
                let r = self.insn.op_register(i);
                match gpr(r) {
                    Some((slot, hi8)) => Loc::Reg { slot, hi8 },
                    None => panic!("loc() on non-GPR register {r:?} at {:#x}", self.pc),
                }
            }
            OpKind::Memory => {
                let (a, disp) = self.ea();
                Loc::Mem { a, disp }
            }
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
            | OpKind::Immediate8_2nd => Loc::Imm(self.insn.immediate(i)),
            k => panic!("loc() on operand kind {k:?} at {:#x}", self.pc),
        }
    }

    /// Load `size` bytes (zero-extended).
    pub fn ld(&mut self, size: usize, a: Slot, disp: i32) -> Slot {
        let d = self.b.temp();
        let mmu = self.mmu
            | if self.ss_ref {
                crate::mmu::MMU_STACK
            } else {
                0
            };
        self.b.push(match size {
            1 => Op::Ld8 { d, a, disp, mmu },
            2 => Op::Ld16 { d, a, disp, mmu },
            4 => Op::Ld32 { d, a, disp, mmu },
            _ => Op::Ld64 { d, a, disp, mmu },
        });
        d
    }

    /// Store the low `size` bytes of `v`.
    pub fn st(&mut self, size: usize, a: Slot, disp: i32, v: Slot) {
        let mmu = self.mmu
            | if self.ss_ref {
                crate::mmu::MMU_STACK
            } else {
                0
            };
        self.b.push(match size {
            1 => Op::St8 { v, a, disp, mmu },
            2 => Op::St16 { v, a, disp, mmu },
            4 => Op::St32 { v, a, disp, mmu },
            _ => Op::St64 { v, a, disp, mmu },
        });
    }

    /// Read a location, zero-extended to 64 bits.
    pub fn read(&mut self, loc: Loc, size: usize) -> Slot {
        match loc {
            Loc::Reg { slot, hi8: true } => {
                let d = self.b.temp();
                self.b.push(Op::Extract {
                    d,
                    a: slot,
                    pos: 8,
                    len: 8,
                });
                d
            }
            Loc::Reg { slot, .. } => match size {
                8 => slot,
                4 => self.b.un(tci64_engine::mk::zx32, slot),
                2 => self.b.un(tci64_engine::mk::zx16, slot),
                _ => self.b.un(tci64_engine::mk::zx8, slot),
            },
            Loc::Mem { a, disp } => self.ld(size, a, disp),
            Loc::Imm(v) => self.b.konst(v & crate::flags::mask(size_ix(size))),
        }
    }

    /// Read a location; bits above `size` may be garbage (cheaper for add/sub/logic).
    pub fn read_raw(&mut self, loc: Loc, size: usize) -> Slot {
        match loc {
            Loc::Reg { slot, hi8: false } => slot,
            Loc::Imm(v) => self.b.konst(v),
            _ => self.read(loc, size),
        }
    }

    /// Read a location sign-extended to 64 bits.
    pub fn read_sx(&mut self, loc: Loc, size: usize) -> Slot {
        if let Loc::Imm(v) = loc {
            let v = match size {
                1 => v as i8 as i64 as u64,
                2 => v as i16 as i64 as u64,
                4 => v as i32 as i64 as u64,
                _ => v,
            };
            return self.b.konst(v);
        }
        let r = self.read_raw(loc, size);
        self.sx(r, size)
    }

    /// Sign-extend the low `size` bytes of `v`.
    pub fn sx(&mut self, v: Slot, size: usize) -> Slot {
        match size {
            1 => self.b.un(tci64_engine::mk::sx8, v),
            2 => self.b.un(tci64_engine::mk::sx16, v),
            4 => self.b.un(tci64_engine::mk::sx32, v),
            _ => v,
        }
    }

    /// Zero-extend the low `size` bytes of `v`.
    pub fn zx(&mut self, v: Slot, size: usize) -> Slot {
        match size {
            1 => self.b.un(tci64_engine::mk::zx8, v),
            2 => self.b.un(tci64_engine::mk::zx16, v),
            4 => self.b.un(tci64_engine::mk::zx32, v),
            _ => v,
        }
    }

    /// Write `v` (low `size` bytes) to a location with x86 register semantics: 32-bit writes
    /// zero-extend, 8/16-bit writes merge. Returns a slot holding the value zero-extended to
    /// `size` (for `CC_DST`).
    pub fn write(&mut self, loc: Loc, size: usize, v: Slot) -> Slot {
        match loc {
            Loc::Reg { slot, hi8: true } => {
                self.b.push(Op::Deposit {
                    d: slot,
                    a: slot,
                    b: v,
                    pos: 8,
                    len: 8,
                });
                self.b.un(tci64_engine::mk::zx8, v)
            }
            Loc::Reg { slot, .. } => match size {
                8 => {
                    self.b.mov(slot, v);
                    slot
                }
                4 => {
                    self.b.push(Op::Zx32 { d: slot, a: v });
                    slot
                }
                _ => {
                    self.b.push(Op::Deposit {
                        d: slot,
                        a: slot,
                        b: v,
                        pos: 0,
                        len: (size * 8) as u8,
                    });
                    self.zx(v, size)
                }
            },
            Loc::Mem { a, disp } => {
                self.st(size, a, disp, v);
                self.zx(v, size)
            }
            Loc::Imm(_) => panic!("write to an immediate at {:#x}", self.pc),
        }
    }

    /// Write a GPR by register name.
    pub fn write_reg(&mut self, r: Register, v: Slot) -> Slot {
        let (slot, hi8) = gpr(r).expect("write_reg on a non-GPR");
        self.write(Loc::Reg { slot, hi8 }, r.size(), v)
    }

    /// Read a GPR by register name (zero-extended).
    pub fn read_reg(&mut self, r: Register) -> Slot {
        let (slot, hi8) = gpr(r).expect("read_reg on a non-GPR");
        self.read(Loc::Reg { slot, hi8 }, r.size())
    }

    /// Stack-pointer width in bytes (8 in 64-bit mode, else 4 or 2 by SS.B).
    pub fn stack_width(&self) -> usize {
        if self.long64() {
            8
        } else if self.hf & hflags::SS32 != 0 {
            4
        } else {
            2
        }
    }

    /// The linear address of `rsp + off` under the stack width (adds SS's base outside
    /// 64-bit mode when non-zero). Returns `(slot, disp)`.
    fn stack_addr(&mut self, sp: Slot) -> (Slot, i32) {
        self.ss_ref = true;
        if self.long64() {
            return (sp, 0);
        }
        let off = self.zx(sp, self.stack_width());
        if self.hf & hflags::ADDSEG != 0 {
            let t = self.b.temp();
            self.b.push(Op::Add {
                d: t,
                a: off,
                b: SS_BASE,
            });
            let u = self.b.temp();
            self.b.push(Op::Zx32 { d: u, a: t });
            (u, 0)
        } else {
            (off, 0)
        }
    }

    /// Write the stack pointer with the stack width's semantics.
    fn set_sp(&mut self, v: Slot) {
        match self.stack_width() {
            8 => self.b.mov(RSP, v),
            4 => self.b.push(Op::Zx32 { d: RSP, a: v }),
            _ => self.b.push(Op::Deposit {
                d: RSP,
                a: RSP,
                b: v,
                pos: 0,
                len: 16,
            }),
        }
    }

    /// Push `size` bytes of `v`. The store happens before RSP changes (precise faults).
    pub fn push(&mut self, v: Slot, size: usize) {
        let nsp = self.b.addi(RSP, -(size as i64));
        let (a, disp) = self.stack_addr(nsp);
        self.st(size, a, disp, v);
        self.set_sp(nsp);
    }

    /// Pop `size` bytes (zero-extended). RSP changes after the load.
    pub fn pop(&mut self, size: usize) -> Slot {
        let (a, disp) = self.stack_addr(RSP);
        let v = self.ld(size, a, disp);
        let nsp = self.b.addi(RSP, size as i64);
        self.set_sp(nsp);
        v
    }

    /// Load `size` bytes at `rsp + off` without changing RSP.
    pub fn peek(&mut self, size: usize, off: i64) -> Slot {
        let p = self.b.addi(RSP, off);
        let (a, disp) = self.stack_addr(p);
        self.ld(size, a, disp)
    }

    /// Store `size` bytes of `v` at `rsp + off` without changing RSP.
    pub fn poke(&mut self, size: usize, off: i64, v: Slot) {
        let p = self.b.addi(RSP, off);
        let (a, disp) = self.stack_addr(p);
        self.st(size, a, disp, v);
    }

    /// Adjust RSP by `delta` with the stack width's semantics.
    pub fn add_sp(&mut self, delta: i64) {
        let n = self.b.addi(RSP, delta);
        self.set_sp(n);
    }

    /// Operand size of push/pop-like instructions (8 in 64-bit mode unless 66h).
    pub fn stack_op_size(&self) -> usize {
        let s = self.insn.stack_pointer_increment().unsigned_abs() as usize;
        if s == 0 {
            self.stack_width()
        } else {
            s
        }
    }
}
