//! A bare test machine for the x86 CPU: RAM, identity-mapped long mode, a recording bus.
#![allow(dead_code)]

use iced_x86::code_asm::CodeAssembler;
use tci64_engine::MmioBus;
use tci64_x86::{Cpu, CpuExit, LongModeEntry, X86Bus};

/// A bus with no devices: ports read as ones, writes are recorded.
#[derive(Default)]
pub struct TestBus {
    pub pio_writes: Vec<(u16, u8, u32)>,
    pub mmio_writes: Vec<(u64, u8, u64)>,
    pub irq_vector: Option<u8>,
    pub tsc: u64,
}

impl MmioBus for TestBus {
    fn mmio_read(&mut self, _paddr: u64, _size: u8) -> u64 {
        u64::MAX
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        self.mmio_writes.push((paddr, size, value));
    }
}

impl X86Bus for TestBus {
    fn pio_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.pio_writes.push((port, size, value));
    }
    fn intr_pending(&mut self) -> bool {
        self.irq_vector.is_some()
    }
    fn intr_ack(&mut self) -> u8 {
        self.irq_vector.take().unwrap_or(0xff)
    }
    fn tsc(&mut self, icount: u64) -> u64 {
        self.tsc + icount
    }
}

/// Guest physical layout of the test machine.
pub const PML4: u64 = 0x1000;
pub const GDT: u64 = 0x5000;
pub const CODE: u64 = 0x10000;
pub const STACK_TOP: u64 = 0x80000;
pub const DATA: u64 = 0x90000;
pub const RAM: u64 = 16 << 20;

/// A CPU in 64-bit mode with the first 1 GiB identity-mapped (2 MiB pages), RSP at
/// STACK_TOP, and `code` at CODE.
pub fn machine(code: &[u8]) -> Cpu {
    let mut cpu = Cpu::new(RAM, 0).unwrap();
    {
        let mem = &mut cpu.core_mut().mem;
        let w = |m: &mut tci64_engine::Memory, a: u64, v: u64| m.write_phys_u(a, 8, v);
        // PML4[0] -> PDPT at 0x2000, PDPT[0] -> PD at 0x3000, PD: 512 x 2 MiB.
        w(mem, PML4, 0x2000 | 7);
        w(mem, 0x2000, 0x3000 | 7);
        for i in 0..512u64 {
            w(mem, 0x3000 + i * 8, (i << 21) | 0x87);
        }
        // GDT: null, null, code64 (0x10), data (0x18).
        w(mem, GDT + 0x10, 0x00af_9b00_0000_ffff);
        w(mem, GDT + 0x18, 0x00cf_9300_0000_ffff);
        mem.write_phys(CODE, code);
    }
    cpu.enter_long_mode(&LongModeEntry {
        rip: CODE,
        rsi: 0,
        rsp: STACK_TOP,
        cr3: PML4,
        gdt_base: GDT,
        gdt_limit: 0x1f,
        cs: 0x10,
        ds: 0x18,
    });
    cpu
}

/// Assemble with iced's code assembler at CODE.
pub fn assemble(f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a);
    a.assemble(CODE).unwrap()
}

/// Run until HLT (or the budget), returning the exit.
pub fn run_to_hlt(cpu: &mut Cpu, bus: &mut TestBus, budget: u64) -> CpuExit {
    cpu.run(bus, budget)
}
