//! Guest code: random bytes run as x86 code at CPL 0 or CPL 3 in 64-bit mode, or at CPL 3 in
//! compatibility mode, with paging on and a bounded instruction budget. Every exception and
//! software interrupt goes to a recording handler that logs (vector, error code, RIP, CS) in
//! guest memory and resumes one byte after the faulting RIP, so a program goes on past its
//! faults; after [`MAX_EVENTS`] events, or at a fault outside the program (the bytes after it
//! are HLT), the handler halts.
//!
//! Properties: no host panic or hang, and the same program with the optimizer on and off
//! (`Core::optimize`) ends in the same architectural state: GPRs, RIP, RFLAGS, segment bases,
//! the whole [`X86State`](tci64_x86::X86State) (control registers, XMM, x87, MSRs, pending
//! events), guest RAM (which holds the exception log), the bus traffic, the instruction count
//! and the exit reason.
//!
//! Input: byte 0 selects the mode (`% 3`: CPL 0 64-bit, CPL 3 64-bit, CPL 3 compat), byte 1
//! seeds the initial GPRs, the rest is the program (at most [`MAX_CODE`] bytes).

use iced_x86::code_asm::*;
use std::sync::OnceLock;
use tci64_engine::MmioBus;
use tci64_x86::bus::InterruptController;
use tci64_x86::{Cpu, CpuExit, LongModeEntry, X86Bus};

/// Guest RAM of the test machine.
pub const RAM: u64 = 4 << 20;
/// Page tables: PML4, PDPT, PD.
const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
/// GDT, IDT, TSS and the pseudo-descriptors the prologue loads.
const GDT: u64 = 0x5000;
const IDT: u64 = 0x6000;
const TSS: u64 = 0x7000;
const DTPTR: u64 = 0x7f00;
/// The program's bounds: the handler stops the run at a fault outside the program, and what
/// follows the program is HLT (at CPL 3 a #GP), so a program that runs off its end stops at
/// once instead of executing zeros up to the budget.
const CODE_START: u64 = 0x7fe8;
const CODE_END: u64 = 0x7ff0;
/// The exception log: a count at `LOG`, then 32-byte entries.
pub const LOG: u64 = 0x8000;
/// Events logged before the handler stops the run (HLT with interrupts off).
pub const MAX_EVENTS: u64 = 64;
/// Handler stubs (16 bytes per vector), the common handler, the prologue.
const STUBS: u64 = 0x10000;
const COMMON: u64 = 0x11000;
const PROLOGUE: u64 = 0x12000;
/// Kernel stack (TSS.RSP0 and the CPL 0 program's stack).
const KSTACK: u64 = 0x80000;
/// Where CPL 0 programs live (supervisor page) and CPL 3 programs (user page).
const KCODE_AT: u64 = 0x100000;
const UCODE_AT: u64 = 0x200000;
const USTACK: u64 = 0x3f0000;
/// Selectors.
const KCODE: u16 = 0x10;
const KDATA: u16 = 0x18;
const UDATA: u16 = 0x23;
const UCODE64: u16 = 0x2b;
const TSS_SEL: u16 = 0x30;
const UCODE32: u16 = 0x43;
/// Longest program.
pub const MAX_CODE: usize = 4096;
/// Instruction budget per run, in [`CHUNKS`] slices of [`CHUNK`].
pub const BUDGET: u64 = CHUNK * CHUNKS as u64;
/// Instructions per slice.
pub const CHUNK: u64 = 20;
/// Slices per run at most.
pub const CHUNKS: u32 = 250;
/// Blocks invalidated (or translated) after which a run stops at the end of its slice. Code
/// that keeps rewriting the page it runs from (random stores through pointers into it)
/// retranslates after every store and would otherwise spend the whole budget in the
/// translator: the first run decides where to stop and the second runs the same number of
/// slices.
pub const MAX_INVALIDATED: u64 = 32;
/// See [`MAX_INVALIDATED`].
pub const MAX_TRANSLATED: u64 = 512;
/// Guest instructions per block at most: short blocks keep translation (and the optimizer's
/// passes over long blocks) from dominating each run, and put more block boundaries, chains and
/// jump-cache lookups in the way of the program.
pub const MAX_BLOCK_INSNS: u16 = 32;

/// Ports read all ones; port and MMIO writes are recorded; no interrupts.
#[derive(Default, Debug, PartialEq, Eq)]
struct Bus {
    writes: Vec<(u64, u8, u64)>,
}

impl MmioBus for Bus {
    fn mmio_read(&mut self, _paddr: u64, _size: u8) -> u64 {
        u64::MAX
    }
    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        if self.writes.len() < 1024 {
            self.writes.push((paddr, size, value));
        }
    }
}

impl InterruptController for Bus {
    fn intr_pending(&mut self) -> bool {
        false
    }
    fn intr_ack(&mut self) -> u8 {
        0xff
    }
}

impl X86Bus for Bus {
    fn pio_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        if self.writes.len() < 1024 {
            self.writes
                .push((1 << 63 | u64::from(port), size, u64::from(value)));
        }
    }
    fn tsc(&mut self, icount: u64) -> u64 {
        icount
    }
}

/// Vectors for which the CPU pushes an error code.
fn has_error_code(v: u8) -> bool {
    matches!(v, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The fixed system code: 256 stubs, the common handler, the prologue for each mode.
struct SystemCode {
    stubs: Vec<u8>,
    common: Vec<u8>,
    prologue: [Vec<u8>; 3],
}

fn asm(ip: u64, f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).expect("64-bit assembler");
    f(&mut a).expect("handler code assembles");
    a.assemble(ip).expect("handler code assembles")
}

fn system_code() -> &'static SystemCode {
    static CODE: OnceLock<SystemCode> = OnceLock::new();
    CODE.get_or_init(|| {
        let mut stubs = vec![0xcc; 256 * 16];
        for v in 0..=255u8 {
            let at = STUBS + u64::from(v) * 16;
            let code = asm(at, |a| {
                if !has_error_code(v) {
                    a.push(0)?;
                }
                a.push(i32::from(v))?;
                a.jmp(COMMON)
            });
            assert!(code.len() <= 16);
            let o = usize::from(v) * 16;
            stubs[o..o + code.len()].copy_from_slice(&code);
        }
        // Stack on entry to COMMON: vector, error, RIP, CS, RFLAGS, RSP, SS.
        let common = asm(COMMON, |a| {
            let mut stop = a.create_label();
            a.push(rax)?;
            a.push(rbx)?;
            a.mov(rax, qword_ptr(LOG))?;
            a.cmp(rax, MAX_EVENTS as i32)?;
            a.jae(stop)?;
            a.inc(qword_ptr(LOG))?;
            a.shl(rax, 5)?;
            for (i, off) in [16, 24, 32, 40].into_iter().enumerate() {
                a.mov(rbx, qword_ptr(rsp + off))?;
                a.mov(qword_ptr(rax + (LOG + 8 + 8 * i as u64) as i32), rbx)?;
            }
            // Logged; a fault outside the program ends the run.
            a.mov(rbx, qword_ptr(rsp + 32))?;
            a.cmp(rbx, qword_ptr(CODE_START))?;
            a.jb(stop)?;
            a.cmp(rbx, qword_ptr(CODE_END))?;
            a.jae(stop)?;
            // Resume one byte after the reported RIP.
            a.inc(qword_ptr(rsp + 32))?;
            a.pop(rbx)?;
            a.pop(rax)?;
            a.add(rsp, 16)?;
            a.iretq()?;
            a.set_label(&mut stop)?;
            a.cli()?;
            a.hlt()?;
            a.jmp(stop)
        });
        let prologue = [0, 1, 2].map(|mode| {
            asm(PROLOGUE, |a| {
                a.lgdt(ptr(DTPTR))?;
                a.lidt(ptr(DTPTR + 0x10))?;
                a.mov(ax, u32::from(TSS_SEL))?;
                a.ltr(ax)?;
                let (ss_sel, rsp_v, cs_sel, rip) = match mode {
                    0 => (KDATA, KSTACK, KCODE, KCODE_AT),
                    1 => (UDATA, USTACK, UCODE64, UCODE_AT),
                    _ => (UDATA, USTACK, UCODE32, UCODE_AT),
                };
                a.push(i32::from(ss_sel))?;
                a.mov(rax, rsp_v)?;
                a.push(rax)?;
                a.push(0x202)?; // IF on: nothing interrupts, and STI/CLI matter at CPL 3
                a.push(i32::from(cs_sel))?;
                a.mov(rax, rip)?;
                a.push(rax)?;
                a.iretq()
            })
        });
        SystemCode {
            stubs,
            common,
            prologue,
        }
    })
}

fn w64(cpu: &mut Cpu, addr: u64, v: u64) {
    cpu.core_mut().mem.write_phys_u(addr, 8, v);
}

/// A CPU ready to run `code` in `mode`.
fn build(mode: u8, seed: u8, code: &[u8], optimize: bool) -> Cpu {
    let sys = system_code();
    let mut cpu = Cpu::new(RAM, 0).expect("4 MiB of RAM");
    cpu.core_mut().optimize = optimize;
    cpu.core_mut().max_insns = MAX_BLOCK_INSNS;
    // PD: 0-2 MiB supervisor, 2-4 MiB user, 4-6 MiB user but past RAM (MMIO), the rest absent.
    w64(&mut cpu, PML4, PDPT | 7);
    w64(&mut cpu, PDPT, PD | 7);
    w64(&mut cpu, PD, 0x83);
    w64(&mut cpu, PD + 8, (1 << 21) | 0x87);
    w64(&mut cpu, PD + 16, (2 << 21) | 0x87);
    // GDT: null, null, kernel code64, kernel data, user data, user code64, TSS (2 slots),
    // user code32 (compat).
    w64(&mut cpu, GDT + 0x10, 0x00af_9b00_0000_ffff);
    w64(&mut cpu, GDT + 0x18, 0x00cf_9300_0000_ffff);
    w64(&mut cpu, GDT + 0x20, 0x00cf_f300_0000_ffff);
    w64(&mut cpu, GDT + 0x28, 0x00af_fb00_0000_ffff);
    let tss_lo = 0x67 | ((TSS & 0xff_ffff) << 16) | (0x89u64 << 40) | (((TSS >> 24) & 0xff) << 56);
    w64(&mut cpu, GDT + 0x30, tss_lo);
    w64(&mut cpu, GDT + 0x38, TSS >> 32);
    w64(&mut cpu, GDT + 0x40, 0x00cf_fb00_0000_ffff);
    w64(&mut cpu, TSS + 4, KSTACK);
    // GDTR and IDTR images.
    let mut p = [0u8; 10];
    p[..2].copy_from_slice(&0x4fu16.to_le_bytes());
    p[2..].copy_from_slice(&GDT.to_le_bytes());
    cpu.write_phys(DTPTR, &p);
    p[..2].copy_from_slice(&0xfffu16.to_le_bytes());
    p[2..].copy_from_slice(&IDT.to_le_bytes());
    cpu.write_phys(DTPTR + 0x10, &p);
    // IDT: every vector to its stub; DPL 3 for the software-interrupt vectors (3, 4, >= 32)
    // so INT n from CPL 3 reaches them, DPL 0 elsewhere (INT n there is a #GP).
    for v in 0..256u64 {
        let h = STUBS + v * 16;
        let dpl = if v == 3 || v == 4 || v >= 32 { 3 } else { 0 };
        let lo = (h & 0xffff)
            | (u64::from(KCODE) << 16)
            | (0x8eu64 << 40)
            | (dpl << 45)
            | (((h >> 16) & 0xffff) << 48);
        w64(&mut cpu, IDT + v * 16, lo);
        w64(&mut cpu, IDT + v * 16 + 8, h >> 32);
    }
    cpu.write_phys(STUBS, &sys.stubs);
    cpu.write_phys(COMMON, &sys.common);
    let mode = usize::from(mode % 3);
    cpu.write_phys(PROLOGUE, &sys.prologue[mode]);
    let at = if mode == 0 { KCODE_AT } else { UCODE_AT };
    cpu.write_phys(at, &[0xf4; MAX_CODE + 16]);
    cpu.write_phys(at, code);
    w64(&mut cpu, CODE_START, at);
    w64(&mut cpu, CODE_END, at + code.len() as u64);
    cpu.enter_long_mode(&LongModeEntry {
        rip: PROLOGUE,
        rsi: 0,
        rsp: KSTACK,
        cr3: PML4,
        gdt_base: GDT,
        gdt_limit: 0x4f,
        cs: KCODE,
        ds: KDATA,
    });
    // GPRs (the prologue only clobbers RAX): pointers into RAM mostly, so memory operands
    // land somewhere interesting; the seed varies them.
    let c = cpu.core_mut();
    for r in 0..16usize {
        let base = if mode == 0 { 0x40000 } else { 0x300000 };
        c.regs.0[r] = match (usize::from(seed) + r) % 4 {
            0 => base + (r as u64) * 0x1000,
            1 => r as u64,
            2 => u64::from(seed).wrapping_mul(0x0101_0101_0101_0101) ^ r as u64,
            _ => (base + 0x800) | (((r as u64) << 32) * u64::from(seed & 1)),
        };
    }
    c.regs.0[tci64_x86::regs::RSP as usize] = KSTACK;
    cpu
}

/// Everything architectural at the end of a run.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit: CpuExit,
    pub icount: u64,
    /// GPRs, RIP, RFLAGS, segment bases.
    pub regs: Vec<u64>,
    /// The rest of the CPU state (Debug of X86State).
    pub state: String,
    /// Bus writes.
    pub bus: Vec<(u64, u8, u64)>,
    /// Exception log entries (vector, error, RIP, CS).
    pub log: Vec<[u64; 4]>,
}

/// Run `code` in `mode` with the optimizer on or off; returns the outcome and the CPU (whose
/// RAM [`first_difference`] compares).
pub fn run(mode: u8, seed: u8, code: &[u8], optimize: bool) -> (Outcome, Cpu) {
    let (o, cpu, _) = run_slices(mode, seed, code, optimize, None);
    (o, cpu)
}

/// [`run`] for `slices` slices of [`CHUNK`] instructions, or, with `None`, up to [`CHUNKS`]
/// slices until [`MAX_INVALIDATED`]; returns the slices run too.
pub fn run_slices(
    mode: u8,
    seed: u8,
    code: &[u8],
    optimize: bool,
    slices: Option<u32>,
) -> (Outcome, Cpu, u32) {
    let code = &code[..code.len().min(MAX_CODE)];
    let mut cpu = build(mode, seed, code, optimize);
    let mut bus = Bus::default();
    let mut ran = 0;
    let exit = loop {
        let e = cpu.run(&mut bus, CHUNK);
        ran += 1;
        let done = match slices {
            Some(s) => ran >= s,
            None => {
                let st = &cpu.core().stats;
                ran >= CHUNKS
                    || st.tbs_invalidated > MAX_INVALIDATED
                    || st.tbs_translated > MAX_TRANSLATED
            }
        };
        if e != CpuExit::Budget || done {
            break e;
        }
    };
    let c = cpu.core();
    let mut regs: Vec<u64> = c.regs.0[..=tci64_x86::regs::RIP as usize].to_vec();
    regs.push(tci64_x86::cpu::rflags(c));
    regs.extend_from_slice(&c.regs.0[22..28]);
    let st = c.guest.clone();
    let n = c.mem.read_phys_u(LOG, 8);
    let log = (0..n.min(MAX_EVENTS))
        .map(|i| std::array::from_fn(|k| c.mem.read_phys_u(LOG + 8 + 32 * i + 8 * k as u64, 8)))
        .collect();
    let out = Outcome {
        exit,
        icount: cpu.icount(),
        regs,
        state: format!("{st:?}"),
        bus: bus.writes,
        log,
    };
    (out, cpu, ran)
}

/// The first physical address where two CPUs' RAM differs, with both bytes.
pub fn first_difference(a: &Cpu, b: &Cpu) -> Option<(u64, u8, u8)> {
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    for base in (0..RAM).step_by(x.len()) {
        assert!(a.read_phys(base, &mut x) && b.read_phys(base, &mut y));
        if x != y {
            let i = x.iter().zip(&y).position(|(p, q)| p != q)?;
            return Some((base + i as u64, x[i], y[i]));
        }
    }
    None
}

/// The fuzz target: run the program with the optimizer on and off and compare.
pub fn guest_code(data: &[u8]) {
    let (mode, seed, code) = match data {
        [m, s, rest @ ..] => (*m, *s, rest),
        _ => return,
    };
    let (b, cpu_b, n) = run_slices(mode, seed, code, false, None);
    let (a, cpu_a, _) = run_slices(mode, seed, code, true, Some(n));
    assert_eq!(a, b, "optimizer on (left) and off (right) disagree");
    if let Some((at, x, y)) = first_difference(&cpu_a, &cpu_b) {
        panic!("optimizer on and off leave different memory: first difference at {at:#x} ({x:#x} vs {y:#x})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handler_logs_and_resumes() {
        // int3 (logged with the RIP after it, resumes one further: the nop), ud2 (logged at
        // its own RIP, resumes at its second byte: 0b c0 = or eax, eax), cli, hlt.
        let (o, _) = run(0, 0, &[0xcc, 0x90, 0x0f, 0x0b, 0xc0, 0xfa, 0xf4], true);
        assert_eq!(
            o.exit,
            CpuExit::Halted {
                interrupts_enabled: false
            }
        );
        assert_eq!(o.log.len(), 2, "{o:?}");
        assert_eq!((o.log[0][0], o.log[0][2]), (3, KCODE_AT + 1));
        assert_eq!((o.log[1][0], o.log[1][2]), (6, KCODE_AT + 2));
        assert_eq!(o.log[1][3] as u16, KCODE);
    }

    #[test]
    fn user_mode_runs_at_cpl3_and_compat_mode_in_32_bit_code() {
        // HLT at CPL 3 is a #GP(0) logged with CS = user code.
        let (o, _) = run(1, 0, &[0xf4], true);
        assert_eq!(o.log[0][0], 13);
        assert_eq!(o.log[0][3] as u16, UCODE64);
        let (o, _) = run(2, 0, &[0xf4], true);
        assert_eq!(o.log[0][0], 13);
        assert_eq!(o.log[0][3] as u16, UCODE32);
        // In compat mode 0x48 is DEC EAX, not a REX prefix: RAX changes.
        let (a, _) = run(2, 1, &[0x48, 0xf4], true);
        let (b, _) = run(1, 1, &[0x48, 0xf4], true);
        assert_ne!(a.regs[0], b.regs[0]);
    }

    #[test]
    fn a_program_that_faults_forever_stops_after_max_events() {
        // HLT at CPL 3 is a #GP each time: the log fills and the handler halts.
        let code = [0xf4; 200];
        let (o, _) = run(1, 0, &code, true);
        assert_eq!(o.log.len() as u64, MAX_EVENTS);
        assert_eq!(
            o.exit,
            CpuExit::Halted {
                interrupts_enabled: false
            }
        );
    }
}
