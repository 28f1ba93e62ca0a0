//! A bare test machine for the x86 CPU: RAM, identity-mapped long mode, a recording bus.
#![allow(dead_code)]

#[cfg(target_arch = "x86_64")]
pub mod jit;
pub mod vendor;

use iced_x86::code_asm::CodeAssembler;
use tci64_engine::MmioBus;
use tci64_x86::{Cpu, CpuExit, InterruptController, LongModeEntry, X86Bus};

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

impl InterruptController for TestBus {
    fn intr_pending(&mut self) -> bool {
        self.irq_vector.is_some()
    }
    fn intr_ack(&mut self) -> u8 {
        self.irq_vector.take().unwrap_or(0xff)
    }
}

impl X86Bus for TestBus {
    fn pio_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.pio_writes.push((port, size, value));
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

// ---- System tables for tests of the system architecture (IDT, GDT with user segments, TSS).

/// IDT (256 16-byte gates).
pub const IDT: u64 = 0x6000;
/// The 64-bit TSS.
pub const TSS: u64 = 0x7000;
/// Pseudo-descriptors: GDTR image at DTPTR, IDTR image at DTPTR + 0x10.
pub const DTPTR: u64 = 0x7f00;
/// Ring-0 stack from the TSS (RSP0) and the IST1 stack.
pub const RSP0: u64 = 0x70000;
pub const IST1: u64 = 0x60000;
/// Where test handlers and user code live.
pub const HANDLERS: u64 = 0x20000;
pub const USER_CODE: u64 = 0x30000;
pub const USER_STACK: u64 = 0x78000;
/// Selectors: kernel code/data, user data/code (RPL 3), TSS.
pub const KCODE: u16 = 0x10;
pub const KDATA: u16 = 0x18;
pub const UDATA: u16 = 0x23;
pub const UCODE: u16 = 0x2b;
pub const TSS_SEL: u16 = 0x30;

/// Assemble with iced's code assembler at `ip`.
pub fn assemble_at(ip: u64, f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a);
    a.assemble(ip).unwrap()
}

/// Put bytes into guest-physical memory.
pub fn load(cpu: &mut Cpu, addr: u64, bytes: &[u8]) {
    assert!(cpu.write_phys(addr, bytes));
}

/// Read a guest-physical u64.
pub fn read_u64(cpu: &Cpu, addr: u64) -> u64 {
    let mut b = [0u8; 8];
    assert!(cpu.read_phys(addr, &mut b));
    u64::from_le_bytes(b)
}

/// Write a guest-physical u64.
pub fn write_u64(cpu: &mut Cpu, addr: u64, v: u64) {
    load(cpu, addr, &v.to_le_bytes());
}

/// Extend the GDT with user data (0x20), user code64 (0x28) and a TSS (0x30), fill in the
/// TSS (RSP0, IST1) and write the GDTR/IDTR images at DTPTR for `sys_prologue`.
pub fn system_tables(cpu: &mut Cpu) {
    write_u64(cpu, GDT + 0x20, 0x00cf_f300_0000_ffff);
    write_u64(cpu, GDT + 0x28, 0x00af_fb00_0000_ffff);
    let lo = 0x67 | ((TSS & 0xff_ffff) << 16) | (0x89u64 << 40) | (((TSS >> 24) & 0xff) << 56);
    write_u64(cpu, GDT + 0x30, lo);
    write_u64(cpu, GDT + 0x38, TSS >> 32);
    load(cpu, TSS, &[0u8; 0x68]);
    write_u64(cpu, TSS + 4, RSP0);
    write_u64(cpu, TSS + 0x24, IST1);
    // GDTR: limit 0x3f, base GDT; IDTR: limit 0xfff, base IDT.
    let mut p = [0u8; 10];
    p[..2].copy_from_slice(&0x3fu16.to_le_bytes());
    p[2..].copy_from_slice(&GDT.to_le_bytes());
    load(cpu, DTPTR, &p);
    p[..2].copy_from_slice(&0xfffu16.to_le_bytes());
    p[2..].copy_from_slice(&IDT.to_le_bytes());
    load(cpu, DTPTR + 0x10, &p);
}

/// An interrupt gate for `vector` to `handler` (kernel code), with IST index and DPL.
pub fn set_gate(cpu: &mut Cpu, vector: u8, handler: u64, ist: u8, dpl: u8) {
    let lo = (handler & 0xffff)
        | ((KCODE as u64) << 16)
        | ((ist as u64 & 7) << 32)
        | (0x8eu64 << 40)
        | ((dpl as u64 & 3) << 45)
        | (((handler >> 16) & 0xffff) << 48);
    write_u64(cpu, IDT + vector as u64 * 16, lo);
    write_u64(cpu, IDT + vector as u64 * 16 + 8, handler >> 32);
}

/// Gates for vectors 0-31 to handlers (at HANDLERS, on IST1) that store their vector at
/// `at` and halt; `at` starts as 0xff (no exception).
pub fn record_exceptions(cpu: &mut Cpu, at: u64) {
    for v in 0..32u8 {
        let h = HANDLERS + v as u64 * 0x20;
        let c = assemble_at(h, |a| {
            use iced_x86::code_asm::*;
            a.mov(qword_ptr(at), v as i32).unwrap();
            a.hlt().unwrap();
        });
        load(cpu, h, &c);
        set_gate(cpu, v, h, 1, 0);
    }
    write_u64(cpu, at, 0xff);
}

/// Guest code: load the GDT and IDT from DTPTR and the task register.
pub fn sys_prologue(a: &mut CodeAssembler) {
    use iced_x86::code_asm::*;
    a.lgdt(ptr(DTPTR)).unwrap();
    a.lidt(ptr(DTPTR + 0x10)).unwrap();
    a.mov(ax, TSS_SEL as u32).unwrap();
    a.ltr(ax).unwrap();
}

/// Guest code: IRETQ to ring 3 at `rip` with the user stack and RFLAGS `rflags`.
pub fn to_ring3(a: &mut CodeAssembler, rip: u64, rflags: u32) {
    use iced_x86::code_asm::*;
    a.push(UDATA as i32).unwrap();
    a.mov(rax, USER_STACK).unwrap();
    a.push(rax).unwrap();
    a.push(rflags as i32).unwrap();
    a.push(UCODE as i32).unwrap();
    a.mov(rax, rip).unwrap();
    a.push(rax).unwrap();
    a.iretq().unwrap();
}
