//! A toy guest for driving the engine through its real path (Engine::run -> translate ->
//! optimize -> encode -> TB cache -> interpreter).
//!
//! The "ISA": fixed 8-byte instructions `[op, rd, rs, rt, imm32 (LE)]`, sixteen registers
//! r0..r15 in slots 0..15, the PC in slot 16, slots 17..31 spare globals, temporaries from 32.
//! Memory is identity-mapped (optionally aliased per page), with per-page "not present" and
//! "read only" marks; physical addresses outside RAM are MMIO and reach [`ToyBus`].
//!
//! Alternatively `Toy::hand_ir` makes `translate` emit a fixed list of IR ops (for
//! differential tests of the optimizer).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use tci64_engine::ir::Cond;
use tci64_engine::{
    Access, Builder, Core, Engine, Guest, HelperFn, Memory, MmioBus, Op, Slot, SlotSet, Stop,
    Translation, Trap,
};

pub const PC: Slot = 16;
pub const FIRST_TEMP: Slot = 32;
/// `Stop::Guest` code when an exception was delivered.
pub const FAULT_STOP: u32 = 0xFA17;
/// `Exit` code of HALT.
pub const HALT_CODE: u32 = 0;
/// `Exit` code of an undefined instruction.
pub const ILLEGAL_CODE: u32 = 0xBAD;
/// Default RAM size of [`engine`].
pub const RAM: u64 = 1 << 20;

// Opcodes.
pub const HALT: u8 = 0x00;
pub const LI: u8 = 0x01;
pub const ADD: u8 = 0x02;
pub const ADDI: u8 = 0x03;
pub const SUB: u8 = 0x04;
pub const XOR: u8 = 0x05;
pub const AND: u8 = 0x06;
pub const OR: u8 = 0x07;
pub const SHL: u8 = 0x08;
pub const MUL: u8 = 0x09;
/// `rd = zx32(rs + rt)` through a temporary (exercises Add32 fusion).
pub const ADD32: u8 = 0x0a;
pub const LD64: u8 = 0x10;
pub const ST64: u8 = 0x11;
pub const LD8: u8 = 0x12;
pub const ST8: u8 = 0x13;
pub const LD32: u8 = 0x14;
pub const ST32: u8 = 0x15;
pub const LD16: u8 = 0x16;
pub const ST16: u8 = 0x17;
/// `if rs != rt { pc = next + imm }` (ends the block, two chainable exits).
pub const BNE: u8 = 0x20;
/// `pc = next + imm` (ends the block).
pub const JMP: u8 = 0x21;
/// `pc = rs` (ends the block through the jump cache).
pub const JR: u8 = 0x22;
/// `rd = helper[imm](rs, rt, rt)`.
pub const CALL: u8 = 0x23;

pub const H_SUM: u16 = 0;
pub const H_CLOBBER: u16 = 1;
pub const H_TRAP: u16 = 2;

/// Encode one instruction.
pub fn enc(op: u8, rd: u8, rs: u8, rt: u8, imm: i32) -> [u8; 8] {
    let i = imm.to_le_bytes();
    [op, rd, rs, rt, i[0], i[1], i[2], i[3]]
}

/// A recorded MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mmio {
    Read { paddr: u64, size: u8 },
    Write { paddr: u64, size: u8, value: u64 },
}

/// The device side: records every access; reads return a pattern derived from the address
/// (deliberately with bits set above `size`, to check that the engine truncates).
#[derive(Default)]
pub struct ToyBus {
    pub log: Vec<Mmio>,
}

pub fn mmio_pattern(paddr: u64) -> u64 {
    paddr.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 0x8080_8080_8080_8080
}

impl MmioBus for ToyBus {
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        self.log.push(Mmio::Read { paddr, size });
        mmio_pattern(paddr)
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        self.log.push(Mmio::Write { paddr, size, value });
    }
}

/// Guest state of the toy.
#[derive(Default)]
pub struct Toy {
    /// Virtual pages that fault on any access.
    pub not_present: HashSet<u64>,
    /// Virtual pages that fault on writes.
    pub read_only: HashSet<u64>,
    /// Virtual page -> physical page (default identity).
    pub alias: HashMap<u64, u64>,
    /// Faults recorded by `tlb_fill`: (vaddr, access).
    pub faults: Vec<(u64, Access)>,
    /// `on_trap` calls.
    pub traps: Vec<Trap>,
    /// `restore` calls: (pc, aux).
    pub restores: Vec<(u64, u32)>,
    /// `on_exit` codes.
    pub exits: Vec<u32>,
    /// Helper calls: (f, a, b, c).
    pub calls: Vec<(u16, u64, u64, u64)>,
    /// If set, `translate` emits exactly these ops (`InsnStart { n }` becomes
    /// `insn_start(pc + 8n, n)`).
    pub hand_ir: Option<Vec<Op>>,
    /// Blocks translated, by PC.
    pub translated: Vec<u64>,
}

fn h_sum(core: &mut Core<Toy>, _: &mut ToyBus, a: u64, b: u64, c: u64) -> Result<u64, Trap> {
    core.guest.calls.push((H_SUM, a, b, c));
    Ok(a.wrapping_add(b).wrapping_add(c))
}

/// Writes globals behind the optimizer's back: r3 = a ^ b, r5 += 1.
fn h_clobber(core: &mut Core<Toy>, _: &mut ToyBus, a: u64, b: u64, c: u64) -> Result<u64, Trap> {
    core.guest.calls.push((H_CLOBBER, a, b, c));
    core.regs.0[3] = a ^ b;
    core.regs.0[5] = core.regs.0[5].wrapping_add(1);
    Ok(c.wrapping_mul(3))
}

/// Traps (recording a fault at vaddr `a`) when `a & 0xff == 0x5a`.
fn h_trap(core: &mut Core<Toy>, _: &mut ToyBus, a: u64, b: u64, c: u64) -> Result<u64, Trap> {
    core.guest.calls.push((H_TRAP, a, b, c));
    if a & 0xff == 0x5a {
        core.guest.faults.push((a, Access::Read));
        Err(Trap::Exception)
    } else {
        Ok(b ^ c)
    }
}

static HELPERS: [HelperFn<Toy>; 3] = [h_sum, h_clobber, h_trap];

impl Guest for Toy {
    type Bus = ToyBus;
    const PC_SLOT: Slot = PC;
    const FIRST_TEMP: Slot = FIRST_TEMP;

    fn trap_live() -> SlotSet {
        SlotSet::below(FIRST_TEMP as u16)
    }

    fn helpers() -> &'static [HelperFn<Self>] {
        &HELPERS
    }

    fn tb_flags(_: &Core<Self>) -> u32 {
        0
    }

    fn fetch_mmu(_: u32) -> u8 {
        0
    }

    fn translate(
        core: &mut Core<Self>,
        bus: &mut ToyBus,
        pc: u64,
        _flags: u32,
        b: &mut Builder,
    ) -> Result<(), Trap> {
        core.guest.translated.push(pc);
        if let Some(ir) = core.guest.hand_ir.clone() {
            core.fetch_code(bus, pc, 0, b)?;
            for op in ir {
                match op {
                    Op::InsnStart { n } => b.insn_start(pc + 8 * n as u64, n as u32),
                    op => b.push(op),
                }
            }
            return Ok(());
        }
        let code: Vec<u8> = core.fetch_code(bus, pc, 0, b)?.to_vec();
        if code.len() < 8 {
            // Code in MMIO (or a misaligned PC at a page end).
            b.insn_start(pc, 0);
            b.set(PC, pc);
            b.push(Op::Exit { code: ILLEGAL_CODE });
            return Ok(());
        }
        let max = core.max_insns as usize;
        for (k, insn) in code.chunks_exact(8).enumerate() {
            let ipc = pc + 8 * k as u64;
            let next = ipc + 8;
            if k == max {
                b.set(PC, ipc);
                b.push(Op::Goto { n: 0 });
                return Ok(());
            }
            b.insn_start(ipc, k as u32);
            let (op, rd, rs, rt) = (insn[0], insn[1] & 15, insn[2] & 15, insn[3] & 15);
            let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            let mem = |d: Slot, a: Slot, disp: i32| (d, a, disp, 0u8);
            match op {
                HALT => {
                    b.set(PC, next);
                    b.push(Op::Exit { code: HALT_CODE });
                    return Ok(());
                }
                LI => b.set(rd, imm as i64 as u64),
                ADD => b.push(Op::Add {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                ADDI => b.push(Op::AddI { d: rd, a: rs, imm }),
                SUB => b.push(Op::Sub {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                XOR => b.push(Op::Xor {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                AND => b.push(Op::And {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                OR => b.push(Op::Or {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                SHL => b.push(Op::Shl {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                MUL => b.push(Op::Mul {
                    d: rd,
                    a: rs,
                    b: rt,
                }),
                ADD32 => {
                    let t = b.bin(tci64_engine::mk::add, rs, rt);
                    b.push(Op::Zx32 { d: rd, a: t });
                }
                LD64 | LD8 | LD32 | LD16 => {
                    // Load into a temporary, then commit (the architectural register is only
                    // written once the access cannot fault any more).
                    let t = b.temp();
                    let (d, a, disp, mmu) = mem(t, rs, imm);
                    b.push(match op {
                        LD64 => Op::Ld64 { d, a, disp, mmu },
                        LD32 => Op::Ld32 { d, a, disp, mmu },
                        LD16 => Op::Ld16 { d, a, disp, mmu },
                        _ => Op::Ld8 { d, a, disp, mmu },
                    });
                    b.mov(rd, t);
                }
                ST64 | ST8 | ST32 | ST16 => {
                    let (v, a, disp, mmu) = mem(rt, rs, imm);
                    b.push(match op {
                        ST64 => Op::St64 { v, a, disp, mmu },
                        ST32 => Op::St32 { v, a, disp, mmu },
                        ST16 => Op::St16 { v, a, disp, mmu },
                        _ => Op::St8 { v, a, disp, mmu },
                    });
                }
                BNE => {
                    let l = b.label();
                    b.push(Op::BrCond {
                        a: rs,
                        b: rt,
                        cond: Cond::Ne,
                        t: l,
                    });
                    b.set(PC, next);
                    b.push(Op::Goto { n: 0 });
                    b.set_label(l);
                    b.set(PC, next.wrapping_add(imm as i64 as u64));
                    b.push(Op::Goto { n: 1 });
                    return Ok(());
                }
                JMP => {
                    b.set(PC, next.wrapping_add(imm as i64 as u64));
                    b.push(Op::Goto { n: 0 });
                    return Ok(());
                }
                JR => {
                    b.mov(PC, rs);
                    b.push(Op::GotoPtr);
                    return Ok(());
                }
                CALL => {
                    let t = b.call(imm as u16, rs, rt, rt);
                    b.mov(rd, t);
                }
                _ => {
                    b.set(PC, ipc);
                    b.push(Op::Exit { code: ILLEGAL_CODE });
                    return Ok(());
                }
            }
        }
        // Ran to the end of the page.
        b.set(PC, pc + code.len() as u64);
        b.push(Op::Goto { n: 0 });
        Ok(())
    }

    fn tlb_fill(
        core: &mut Core<Self>,
        _bus: &mut ToyBus,
        vaddr: u64,
        access: Access,
        _mmu: u8,
    ) -> Result<Translation, Trap> {
        let g = &mut core.guest;
        let page = vaddr & !0xfff;
        let ro = g.read_only.contains(&page);
        if g.not_present.contains(&page) || (ro && access == Access::Write) {
            g.faults.push((vaddr, access));
            return Err(Trap::Exception);
        }
        Ok(Translation {
            paddr_page: g.alias.get(&page).copied().unwrap_or(page),
            readable: true,
            writable: !ro,
            executable: true,
        })
    }

    fn restore(core: &mut Core<Self>, pc: u64, aux: u32) {
        core.guest.restores.push((pc, aux));
    }

    fn on_trap(core: &mut Core<Self>, _bus: &mut ToyBus, trap: Trap) -> Option<Stop> {
        core.guest.traps.push(trap);
        match trap {
            Trap::Exception => Some(Stop::Guest(FAULT_STOP)),
            Trap::Restart => None,
        }
    }

    fn poll(_: &mut Core<Self>, _: &mut ToyBus) -> Option<Stop> {
        None
    }

    fn on_exit(core: &mut Core<Self>, _bus: &mut ToyBus, code: u32) -> Option<Stop> {
        core.guest.exits.push(code);
        Some(Stop::Guest(code))
    }
}

/// An engine with `RAM` bytes of RAM and a fresh toy guest.
pub fn engine() -> Engine<Toy> {
    Engine::new(Core::new(Memory::new(RAM, 0).unwrap(), Toy::default()))
}

/// Load a program at physical `addr` before the CPU runs (bypasses code tracking).
pub fn load(e: &mut Engine<Toy>, addr: u64, prog: &[[u8; 8]]) {
    let ram = e.core.mem.ram_mut();
    for (k, insn) in prog.iter().enumerate() {
        let a = addr as usize + 8 * k;
        ram[a..a + 8].copy_from_slice(insn);
    }
}

/// Set the PC and run with a generous budget.
pub fn run_at(e: &mut Engine<Toy>, bus: &mut ToyBus, pc: u64) -> Stop {
    e.core.regs.0[PC as usize] = pc;
    e.run(bus, 10_000_000)
}

/// Mark a page not present (and drop its translations).
pub fn unmap(e: &mut Engine<Toy>, page: u64) {
    e.core.guest.not_present.insert(page & !0xfff);
    e.core.tlb_flush_page(page);
}

/// Map a page again.
pub fn map(e: &mut Engine<Toy>, page: u64) {
    e.core.guest.not_present.remove(&(page & !0xfff));
}

/// An engine with `ram` bytes of RAM (small RAM for tests that make many engines).
pub fn engine_with_ram(ram: u64) -> Engine<Toy> {
    Engine::new(Core::new(Memory::new(ram, 0).unwrap(), Toy::default()))
}
