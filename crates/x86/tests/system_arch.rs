//! The system architecture through the real engine: exceptions and IDT delivery, paging
//! faults and A/D bits, privilege transitions (IRETQ, SYSCALL/SYSRET, INT n), external
//! interrupts and HLT, triple faults, self-modifying code, CPUID, MSRs and port I/O.

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_x86::regs::*;
use tci64_x86::{Cpu, CpuExit};

/// Handler address of vector `v`.
fn h(v: u8) -> u64 {
    HANDLERS + v as u64 * 0x100
}

/// Install handler code for vector `v` (gate DPL 0, no IST).
fn handler(cpu: &mut Cpu, v: u8, f: impl FnOnce(&mut CodeAssembler)) {
    let code = assemble_at(h(v), f);
    load(cpu, h(v), &code);
    set_gate(cpu, v, h(v), 0, 0);
}

/// A handler that stores the error code, saved RIP and CS at DATA+0x100.., then halts.
fn record_and_halt(cpu: &mut Cpu, v: u8, has_err: bool) {
    handler(cpu, v, |a| {
        let o = if has_err { 8 } else { 0 };
        if has_err {
            a.mov(rax, qword_ptr(rsp)).unwrap();
        } else {
            a.mov(rax, -1i64).unwrap();
        }
        a.mov(qword_ptr(DATA + 0x100), rax).unwrap();
        a.mov(rax, qword_ptr(rsp + o)).unwrap();
        a.mov(qword_ptr(DATA + 0x108), rax).unwrap();
        a.mov(rax, qword_ptr(rsp + o + 8)).unwrap();
        a.mov(qword_ptr(DATA + 0x110), rax).unwrap();
        a.mov(rax, cr2).unwrap();
        a.mov(qword_ptr(DATA + 0x118), rax).unwrap();
        a.mov(qword_ptr(DATA + 0x120), rsp).unwrap();
        a.hlt().unwrap();
    });
}

/// A machine with system tables and `main` (which should start with `sys_prologue`).
fn sys_machine(main: impl FnOnce(&mut CodeAssembler)) -> Cpu {
    let code = assemble(|a| {
        sys_prologue(a);
        main(a);
    });
    let mut cpu = machine(&code);
    system_tables(&mut cpu);
    cpu
}

fn halted(e: CpuExit) {
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
}

/// Map 0x400000..0x600000 through a 4 KiB page table at 0x8000 (all entries not present).
fn small_pages(cpu: &mut Cpu) {
    write_u64(cpu, 0x3000 + 2 * 8, 0x8000 | 7);
}

#[test]
fn page_fault_handler_maps_and_retries_with_registers_intact() {
    let mut cpu = sys_machine(|a| {
        a.mov(rax, 1u64).unwrap();
        a.mov(rcx, 2u64).unwrap();
        a.add(rax, rcx).unwrap();
        a.mov(rdx, 0x401000u64).unwrap();
        // Mid-block: the load faults, the handler maps the page, the load is retried.
        a.mov(rbx, qword_ptr(rdx + 8)).unwrap();
        a.add(rax, rbx).unwrap();
        a.mov(qword_ptr(rdx + 0x1000), rcx).unwrap();
        a.inc(rcx).unwrap();
        a.hlt().unwrap();
    });
    small_pages(&mut cpu);
    write_u64(&mut cpu, 0x401008, 0x1234);
    handler(&mut cpu, 14, |a| {
        a.push(rax).unwrap();
        a.push(rbx).unwrap();
        a.mov(rax, cr2).unwrap();
        a.inc(qword_ptr(DATA + 16)).unwrap();
        a.mov(rbx, qword_ptr(DATA + 16)).unwrap();
        a.mov(qword_ptr(DATA + rbx * 8 + 0x20), rax).unwrap();
        a.mov(rax, qword_ptr(rsp + 16)).unwrap();
        a.mov(qword_ptr(DATA + rbx * 8 + 0x40), rax).unwrap();
        a.mov(rax, cr2).unwrap();
        a.shr(rax, 12).unwrap();
        a.and(rax, 511).unwrap();
        a.mov(rbx, cr2).unwrap();
        a.and(rbx, -4096).unwrap();
        a.or(rbx, 3).unwrap();
        a.mov(qword_ptr(rax * 8 + 0x8000), rbx).unwrap();
        a.pop(rbx).unwrap();
        a.pop(rax).unwrap();
        a.add(rsp, 8).unwrap();
        a.iretq().unwrap();
    });
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 16), 2, "two faults");
    assert_eq!(read_u64(&cpu, DATA + 0x28), 0x401008, "first CR2");
    assert_eq!(
        read_u64(&cpu, DATA + 0x48),
        0,
        "not-present read, supervisor"
    );
    assert_eq!(read_u64(&cpu, DATA + 0x30), 0x402000, "second CR2");
    assert_eq!(read_u64(&cpu, DATA + 0x50), 2, "not-present write");
    assert_eq!(cpu.reg(RAX), 3 + 0x1234);
    assert_eq!(cpu.reg(RBX), 0x1234);
    assert_eq!(cpu.reg(RCX), 3);
    assert_eq!(cpu.reg(RSP), STACK_TOP);
    assert_eq!(read_u64(&cpu, 0x402000), 2);
    // Accessed on the read page, accessed + dirty on the written one; A on the upper levels.
    let pte1 = read_u64(&cpu, 0x8000 + 8);
    let pte2 = read_u64(&cpu, 0x8000 + 16);
    assert_eq!(pte1 & 0x60, 0x20, "{pte1:#x}");
    assert_eq!(pte2 & 0x60, 0x60, "{pte2:#x}");
    assert_ne!(read_u64(&cpu, 0x3000 + 16) & 0x20, 0);
    assert_ne!(read_u64(&cpu, PML4) & 0x20, 0);
}

#[test]
fn user_access_to_supervisor_page_faults_with_u_p() {
    let mut cpu = sys_machine(|a| to_ring3(a, USER_CODE, 0x2));
    // 0x600000..0x800000: supervisor-only large page.
    write_u64(&mut cpu, 0x3000 + 3 * 8, 0x600000 | 0x83);
    let user = assemble_at(USER_CODE, |a| {
        a.mov(rax, 0x600010u64).unwrap();
        a.mov(rbx, qword_ptr(rax)).unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, USER_CODE, &user);
    record_and_halt(&mut cpu, 14, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 0x100), 5, "P|U read");
    assert_eq!(read_u64(&cpu, DATA + 0x118), 0x600010, "CR2");
    assert_eq!(read_u64(&cpu, DATA + 0x110), UCODE as u64, "saved CS");
    // Stack switched to RSP0: SS, RSP, RFLAGS, CS, RIP, error code.
    assert_eq!(read_u64(&cpu, DATA + 0x120), RSP0 - 48);
    assert_eq!(cpu.core().guest.cpl, 0);
    assert_eq!(read_u64(&cpu, RSP0 - 16), USER_STACK, "saved RSP");
    assert_eq!(read_u64(&cpu, RSP0 - 8), UDATA as u64, "saved SS");
}

#[test]
fn user_write_to_read_only_page_and_hlt_in_ring3() {
    let mut cpu = sys_machine(|a| to_ring3(a, USER_CODE, 0x2));
    write_u64(&mut cpu, 0x3000 + 3 * 8, 0x600000 | 0x85);
    let user = assemble_at(USER_CODE, |a| {
        a.mov(rax, 0x600020u64).unwrap();
        a.mov(rbx, qword_ptr(rax)).unwrap();
        a.mov(qword_ptr(rax), rbx).unwrap();
    });
    load(&mut cpu, USER_CODE, &user);
    record_and_halt(&mut cpu, 14, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 0x100), 7, "P|W|U");
    assert_eq!(read_u64(&cpu, DATA + 0x118), 0x600020);
}

#[test]
fn gp_on_non_canonical_address() {
    let mut cpu = sys_machine(|a| {
        a.mov(rax, 0x8000_0000_0000_0000u64).unwrap();
        a.mov(rbx, qword_ptr(rax)).unwrap();
        a.hlt().unwrap();
    });
    record_and_halt(&mut cpu, 13, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 0x100), 0);
    let rip = read_u64(&cpu, DATA + 0x108);
    let mut b = [0u8; 3];
    cpu.read_phys(rip, &mut b);
    assert_eq!(b, [0x48, 0x8b, 0x18], "saved RIP is the faulting mov");
}

#[test]
fn ss_on_non_canonical_stack_reference() {
    // RBP-based addresses default to SS: a non-canonical one is #SS(0), not #GP(0).
    let mut cpu = sys_machine(|a| {
        a.mov(rbp, 0x8000_0000_0000_0000u64).unwrap();
        a.mov(rbx, qword_ptr(rbp + 8)).unwrap();
        a.hlt().unwrap();
    });
    record_and_halt(&mut cpu, 12, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 0x100), 0, "#SS error code");
    let rip = read_u64(&cpu, DATA + 0x108);
    let mut b = [0u8; 3];
    cpu.read_phys(rip, &mut b);
    assert_eq!(b, [0x48, 0x8b, 0x5d], "saved RIP is the faulting mov");
}

#[test]
fn syscall_to_ring0_and_sysret_to_ring3() {
    let sys_h = HANDLERS + 0xf000;
    let mut cpu = sys_machine(|a| {
        // EFER.SCE, STAR, LSTAR, SFMASK.
        a.mov(ecx, 0xc000_0080u32).unwrap();
        a.rdmsr().unwrap();
        a.or(eax, 1).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0xc000_0081u32).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(edx, (0x18 << 16) | 0x10).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0xc000_0082u32).unwrap();
        a.mov(eax, sys_h as u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(ecx, 0xc000_0084u32).unwrap();
        a.mov(eax, 0x200).unwrap();
        a.wrmsr().unwrap();
        to_ring3(a, USER_CODE, 0x202);
    });
    let user = assemble_at(USER_CODE, |a| {
        a.mov(rax, 7u64).unwrap();
        a.syscall().unwrap();
        a.mov(rdi, rax).unwrap();
        a.mov(qword_ptr(DATA + 0x40), cs).unwrap();
        a.mov(rax, 99u64).unwrap();
        a.syscall().unwrap();
    });
    load(&mut cpu, USER_CODE, &user);
    let handler = assemble_at(sys_h, |a| {
        let mut halt = a.create_label();
        a.cmp(rax, 99).unwrap();
        a.je(halt).unwrap();
        a.mov(qword_ptr(DATA), rcx).unwrap();
        a.mov(qword_ptr(DATA + 8), r11).unwrap();
        a.mov(qword_ptr(DATA + 16), cs).unwrap();
        a.mov(qword_ptr(DATA + 24), ss).unwrap();
        a.pushfq().unwrap();
        a.pop(qword_ptr(DATA + 32)).unwrap();
        a.add(rax, rax).unwrap();
        a.sysretq().unwrap();
        a.set_label(&mut halt).unwrap();
        a.mov(qword_ptr(DATA + 48), rdi).unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, sys_h, &handler);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(
        read_u64(&cpu, DATA + 48),
        14,
        "handler result back in ring 3"
    );
    assert_eq!(read_u64(&cpu, DATA), USER_CODE + 12, "RCX = return RIP");
    assert_eq!(read_u64(&cpu, DATA + 8) & 0x200, 0x200, "R11 = user RFLAGS");
    assert_eq!(read_u64(&cpu, DATA + 16) & 0xffff, 0x10);
    assert_eq!(read_u64(&cpu, DATA + 24) & 0xffff, 0x18);
    assert_eq!(read_u64(&cpu, DATA + 32) & 0x200, 0, "SFMASK cleared IF");
    assert_eq!(read_u64(&cpu, DATA + 0x40) & 0xffff, UCODE as u64);
    assert_eq!(cpu.core().guest.cpl, 0);
}

#[test]
fn int_n_from_ring3_checks_gate_dpl_and_switches_stack() {
    let mut cpu = sys_machine(|a| to_ring3(a, USER_CODE, 0x2));
    let user = assemble_at(USER_CODE, |a| {
        a.int(0x80).unwrap();
        a.int(0x81).unwrap();
    });
    load(&mut cpu, USER_CODE, &user);
    handler(&mut cpu, 0x80, |a| {
        a.mov(qword_ptr(DATA), rsp).unwrap();
        a.mov(rax, qword_ptr(rsp)).unwrap();
        a.mov(qword_ptr(DATA + 8), rax).unwrap();
        a.iretq().unwrap();
    });
    set_gate(&mut cpu, 0x80, h(0x80), 0, 3);
    // 0x81 has a DPL-0 gate: #GP(0x81 * 8 + 2).
    handler(&mut cpu, 0x81, |a| a.hlt().unwrap());
    record_and_halt(&mut cpu, 13, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA), RSP0 - 40);
    assert_eq!(
        read_u64(&cpu, DATA + 8),
        USER_CODE + 2,
        "INT returns after itself"
    );
    assert_eq!(read_u64(&cpu, DATA + 0x100), 0x81 * 8 + 2);
    assert_eq!(
        read_u64(&cpu, DATA + 0x108),
        USER_CODE + 2,
        "#GP at the INT"
    );
}

#[test]
fn external_interrupt_waits_for_if_and_the_sti_shadow() {
    let mut cpu = sys_machine(|a| {
        a.mov(rbx, 1u64).unwrap();
        a.nop().unwrap();
        a.sti().unwrap();
        a.mov(rbx, 2u64).unwrap();
        a.hlt().unwrap();
        a.hlt().unwrap();
    });
    handler(&mut cpu, 0x20, |a| {
        a.mov(qword_ptr(DATA), rbx).unwrap();
        a.inc(qword_ptr(DATA + 8)).unwrap();
        a.iretq().unwrap();
    });
    let mut bus = TestBus {
        irq_vector: Some(0x20),
        ..Default::default()
    };
    let e = cpu.run(&mut bus, 100_000);
    assert_eq!(
        e,
        CpuExit::Halted {
            interrupts_enabled: true
        }
    );
    assert_eq!(read_u64(&cpu, DATA + 8), 1);
    assert_eq!(
        read_u64(&cpu, DATA),
        2,
        "not taken before the instruction after STI"
    );
}

#[test]
fn hlt_wakes_on_interrupt() {
    let mut cpu = sys_machine(|a| {
        a.sti().unwrap();
        a.hlt().unwrap();
        a.mov(rcx, 5u64).unwrap();
        a.hlt().unwrap();
    });
    handler(&mut cpu, 0x21, |a| {
        a.inc(qword_ptr(DATA + 8)).unwrap();
        a.iretq().unwrap();
    });
    let mut bus = TestBus::default();
    assert_eq!(
        cpu.run(&mut bus, 100_000),
        CpuExit::Halted {
            interrupts_enabled: true
        }
    );
    assert_eq!(cpu.reg(RCX), 0);
    // Still halted without an interrupt.
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(cpu.reg(RCX), 0);
    bus.irq_vector = Some(0x21);
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(cpu.reg(RCX), 5);
    assert_eq!(read_u64(&cpu, DATA + 8), 1);
}

#[test]
fn triple_fault_resets() {
    // Linux's reboot=t: a zero-length IDT and INT3 (#BP -> #GP -> #DF -> shutdown).
    let mut cpu = sys_machine(|a| {
        a.lidt(ptr(DTPTR + 0x20)).unwrap();
        a.int3().unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, DTPTR + 0x20, &[0u8; 10]);
    let mut bus = TestBus::default();
    assert_eq!(cpu.run(&mut bus, 100_000), CpuExit::Reset);
}

#[test]
fn double_fault_on_ist_stack() {
    // #PF with a bad #PF gate -> #GP; #GP's gate is bad too -> #DF (delivered on IST1).
    let mut cpu = sys_machine(|a| {
        a.mov(rax, 0x401000u64).unwrap();
        a.mov(rbx, qword_ptr(rax)).unwrap();
        a.hlt().unwrap();
    });
    small_pages(&mut cpu);
    record_and_halt(&mut cpu, 8, true);
    set_gate(&mut cpu, 8, h(8), 1, 0);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 0x100), 0, "#DF error code");
    assert_eq!(read_u64(&cpu, DATA + 0x120), IST1 - 48, "on the IST1 stack");
}

#[test]
fn self_modifying_code_runs_the_new_bytes() {
    let f = CODE + 0x200;
    let mut cpu = sys_machine(|a| {
        let mut top = a.create_label();
        a.xor(edi, edi).unwrap();
        a.set_label(&mut top).unwrap();
        a.mov(rcx, f).unwrap();
        a.call(rcx).unwrap();
        a.mov(qword_ptr(rdi * 8 + DATA), rax).unwrap();
        a.inc(rdi).unwrap();
        a.mov(byte_ptr(f + 1), 42).unwrap();
        a.cmp(rdi, 2).unwrap();
        a.jb(top).unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, f, &[0xb8, 7, 0, 0, 0, 0xc3]);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA), 7);
    assert_eq!(read_u64(&cpu, DATA + 8), 42);
}

#[test]
fn self_modifying_code_in_the_same_block() {
    let mut cpu = sys_machine(|a| {
        a.mov(rcx, CODE + 0x300).unwrap();
        a.jmp(rcx).unwrap();
    });
    // Patch the immediate of the very next instruction.
    let same = assemble_at(CODE + 0x300, |a| {
        a.mov(byte_ptr(CODE + 0x309), 9).unwrap();
        a.mov(eax, 1).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(&same[8..10], &[0xb8, 1]);
    load(&mut cpu, CODE + 0x300, &same);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(cpu.reg(RAX), 9);
}

#[test]
fn cpuid_leaves_are_sane() {
    let mut cpu = sys_machine(|a| {
        for (k, leaf) in [
            0u32,
            1,
            0x8000_0000,
            0x8000_0001,
            0x8000_0002,
            0x8000_0008,
            7,
        ]
        .into_iter()
        .enumerate()
        {
            a.mov(eax, leaf).unwrap();
            a.xor(ecx, ecx).unwrap();
            a.cpuid().unwrap();
            let o = DATA + k as u64 * 16;
            a.mov(dword_ptr(o), eax).unwrap();
            a.mov(dword_ptr(o + 4), ebx).unwrap();
            a.mov(dword_ptr(o + 8), ecx).unwrap();
            a.mov(dword_ptr(o + 12), edx).unwrap();
        }
        // Leaf 4 enumerates caches and ends.
        a.mov(eax, 4).unwrap();
        a.mov(ecx, 4).unwrap();
        a.cpuid().unwrap();
        a.hlt().unwrap();
    });
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    let mut buf = [0u8; 16 * 7];
    cpu.read_phys(DATA, &mut buf);
    let w = |k: usize, r: usize| u32::from_le_bytes(buf[k * 16 + r * 4..][..4].try_into().unwrap());
    assert!(w(0, 0) >= 4);
    let mut vendor = Vec::new();
    for r in [1, 3, 2] {
        vendor.extend_from_slice(&w(0, r).to_le_bytes());
    }
    assert_eq!(&vendor, b"GenuineIntel");
    let edx1 = w(1, 3);
    for bit in [0, 4, 5, 6, 8, 13, 15, 24, 25, 26] {
        assert_ne!(edx1 & (1 << bit), 0, "leaf 1 EDX bit {bit}");
    }
    assert_eq!(edx1 & (1 << 9), 0, "no APIC");
    assert_eq!(
        w(1, 2) & (1 << 31 | 1 << 21 | 1 << 24),
        0,
        "no hypervisor/x2APIC/deadline"
    );
    assert!(w(2, 0) >= 0x8000_0008);
    assert_ne!(w(3, 3) & (1 << 29), 0, "LM");
    assert_ne!(w(3, 3) & (1 << 20), 0, "NX");
    assert_ne!(w(3, 3) & (1 << 11), 0, "SYSCALL");
    assert_eq!(&buf[4 * 16..4 * 16 + 5], b"tci64");
    assert_eq!(w(5, 0) & 0xffff, 0x3028);
    assert_eq!(
        w(6, 1) & (1 << 7 | 1 << 20 | 1 << 0),
        0,
        "no SMEP/SMAP/FSGSBASE"
    );
    assert_eq!(cpu.reg(RAX) & 0x1f, 0, "leaf 4 subleaf 4 ends the list");
}

#[test]
fn rdmsr_of_unknown_msr_is_gp_and_known_msrs_round_trip() {
    let mut cpu = sys_machine(|a| {
        a.mov(ecx, 0xc000_0082u32).unwrap();
        a.mov(eax, 0x1234_5678).unwrap();
        a.mov(edx, 0xffff_8000u32).unwrap();
        a.wrmsr().unwrap();
        a.xor(eax, eax).unwrap();
        a.xor(edx, edx).unwrap();
        a.rdmsr().unwrap();
        a.mov(dword_ptr(DATA), eax).unwrap();
        a.mov(dword_ptr(DATA + 4), edx).unwrap();
        // GS_BASE + SWAPGS + a GS-relative load.
        a.mov(ecx, 0xc000_0101u32).unwrap();
        a.mov(eax, DATA as u32).unwrap();
        a.xor(edx, edx).unwrap();
        a.wrmsr().unwrap();
        a.mov(rbx, qword_ptr(0u64).gs()).unwrap();
        a.swapgs().unwrap();
        a.mov(ecx, 0xc000_0102u32).unwrap();
        a.rdmsr().unwrap();
        a.mov(dword_ptr(DATA + 8), eax).unwrap();
        a.mov(ecx, 0x48).unwrap();
        a.rdmsr().unwrap();
        a.hlt().unwrap();
    });
    record_and_halt(&mut cpu, 13, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA), 0xffff_8000_1234_5678);
    assert_eq!(cpu.reg(RBX), 0xffff_8000_1234_5678, "gs:[0] read DATA");
    assert_eq!(
        read_u64(&cpu, DATA + 8) & 0xffff_ffff,
        DATA,
        "KERNEL_GS_BASE after SWAPGS"
    );
    assert_eq!(read_u64(&cpu, DATA + 0x100), 0, "#GP(0)");
    assert_eq!(cpu.reg(RCX), 0x48);
}

#[test]
fn in_out_reach_the_bus() {
    let mut cpu = sys_machine(|a| {
        a.mov(edx, 0x3f8).unwrap();
        a.mov(al, 0x41).unwrap();
        a.out(dx, al).unwrap();
        a.out(0x80, al).unwrap();
        a.mov(ax, 0x1234).unwrap();
        a.out(dx, ax).unwrap();
        a.in_(al, dx).unwrap();
        a.mov(rbx, rax).unwrap();
        a.mov(rsi, DATA).unwrap();
        a.mov(ecx, 3).unwrap();
        a.rep().outsb().unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, DATA, b"xyz");
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(
        bus.pio_writes,
        vec![
            (0x3f8, 1, 0x41),
            (0x80, 1, 0x41),
            (0x3f8, 2, 0x1234),
            (0x3f8, 1, b'x' as u32),
            (0x3f8, 1, b'y' as u32),
            (0x3f8, 1, b'z' as u32),
        ]
    );
    assert_eq!(cpu.reg(RBX), 0x12ff);
    assert_eq!(cpu.reg(RSI), DATA + 3);
    assert_eq!(cpu.reg(RCX), 0);
}

#[test]
fn user_mode_io_cli_and_popf_privilege() {
    let mut cpu = sys_machine(|a| to_ring3(a, USER_CODE, 0x202));
    let user = assemble_at(USER_CODE, |a| {
        // POPF at CPL 3, IOPL 0: IF stays set.
        a.push(0x2i32).unwrap();
        a.popfq().unwrap();
        a.pushfq().unwrap();
        a.pop(rax).unwrap();
        a.mov(qword_ptr(DATA), rax).unwrap();
        a.cli().unwrap();
    });
    assert_eq!(user.last(), Some(&0xfa));
    load(&mut cpu, USER_CODE, &user);
    record_and_halt(&mut cpu, 13, true);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA) & 0x200, 0x200);
    let cli = USER_CODE + user.len() as u64 - 1;
    assert_eq!(read_u64(&cpu, DATA + 0x108), cli, "#GP at CLI");
}

#[test]
fn far_return_reloads_cs_and_mov_cr3_flushes() {
    let mut cpu = sys_machine(|a| {
        a.push(KCODE as i32).unwrap();
        a.mov(rax, CODE + 0x400).unwrap();
        a.push(rax).unwrap();
        a.db(&[0x48, 0xcb]).unwrap(); // retfq
    });
    let tail = assemble_at(CODE + 0x400, |a| {
        a.mov(ebx, 77).unwrap();
        // Read through 0x400000 (2 MiB page of RAM), then remap it to 0x800000 and reload CR3.
        a.mov(rax, 0x400000u64).unwrap();
        a.mov(rcx, qword_ptr(rax)).unwrap();
        a.mov(rdx, 0x3010u64).unwrap();
        a.mov(qword_ptr(rdx), 0x800087).unwrap();
        a.mov(rdx, cr3).unwrap();
        a.mov(cr3, rdx).unwrap();
        a.mov(rdx, qword_ptr(rax)).unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, CODE + 0x400, &tail);
    write_u64(&mut cpu, 0x400000, 111);
    write_u64(&mut cpu, 0x800000, 222);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(cpu.reg(RBX), 77);
    assert_eq!(cpu.core().guest.segs[CS].selector, KCODE);
    assert_eq!(cpu.reg(RCX), 111);
    assert_eq!(cpu.reg(RDX), 222);
}

#[test]
fn interrupt_between_chained_blocks_runs_the_handler() {
    // Regression: an interrupt delivered by `poll` while the run loop held a chained
    // successor must not run that successor with the handler's state.
    let mut cpu = sys_machine(|a| {
        let mut top = a.create_label();
        a.xor(ecx, ecx).unwrap();
        a.sti().unwrap();
        a.nop().unwrap();
        a.set_label(&mut top).unwrap();
        a.inc(rcx).unwrap();
        a.cmp(rcx, 1000).unwrap();
        a.jb(top).unwrap();
        a.hlt().unwrap();
    });
    handler(&mut cpu, 0x22, |a| {
        a.mov(qword_ptr(DATA), rcx).unwrap();
        a.inc(qword_ptr(DATA + 8)).unwrap();
        a.iretq().unwrap();
    });
    let mut bus = TestBus {
        irq_vector: Some(0x22),
        ..Default::default()
    };
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA + 8), 1, "handler ran once");
    assert!(read_u64(&cpu, DATA) < 1000);
    assert_eq!(cpu.reg(RCX), 1000);
    assert_eq!(cpu.reg(RSP), STACK_TOP);
}

#[test]
fn invlpg_drops_a_stale_translation() {
    // 4 KiB page 0x401000 -> 0x500000, then -> 0x501000 after INVLPG; a large page
    // (0x600000) remapped after INVLPG of an address inside it.
    let mut cpu = sys_machine(|a| {
        a.mov(rax, 0x401000u64).unwrap();
        a.mov(rbx, qword_ptr(rax)).unwrap();
        a.mov(rdx, 0x8008u64).unwrap();
        a.mov(qword_ptr(rdx), 0x501003).unwrap();
        a.invlpg(ptr(rax)).unwrap();
        a.mov(rcx, qword_ptr(rax)).unwrap();
        a.mov(rax, 0x600000u64).unwrap();
        a.mov(rsi, qword_ptr(rax + 0x1000)).unwrap();
        a.mov(rdx, 0x3018u64).unwrap();
        a.mov(qword_ptr(rdx), 0x800083).unwrap();
        a.invlpg(ptr(rax + 0x10)).unwrap();
        a.mov(rdi, qword_ptr(rax + 0x1000)).unwrap();
        a.hlt().unwrap();
    });
    small_pages(&mut cpu);
    write_u64(&mut cpu, 0x8008, 0x500003);
    write_u64(&mut cpu, 0x500000, 1);
    write_u64(&mut cpu, 0x501000, 2);
    write_u64(&mut cpu, 0x601000, 3);
    write_u64(&mut cpu, 0x801000, 4);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(
        [cpu.reg(RBX), cpu.reg(RCX), cpu.reg(RSI), cpu.reg(RDI)],
        [1, 2, 3, 4]
    );
}

#[test]
fn descriptor_table_instructions_and_far_jmp_through_memory() {
    let far = CODE + 0x500;
    let mut cpu = sys_machine(|a| {
        a.sgdt(ptr(DATA)).unwrap();
        a.sidt(ptr(DATA + 16)).unwrap();
        a.str(ax).unwrap();
        a.mov(word_ptr(DATA + 32), ax).unwrap();
        a.mov(ax, KDATA as u32).unwrap();
        a.lar(ecx, eax).unwrap();
        a.setz(dl).unwrap();
        a.lsl(esi, eax).unwrap();
        a.mov(ax, UCODE as u32).unwrap();
        a.verr(ax).unwrap();
        a.setz(dh).unwrap();
        a.verw(ax).unwrap();
        a.setz(bl).unwrap();
        a.mov(ax, 0x40).unwrap();
        a.mov(edi, 0x5555).unwrap();
        a.lar(edi, eax).unwrap();
        a.setz(bh).unwrap();
        // jmp far qword [DATA + 0x50] (m16:64)
        a.db(&[0x48, 0xff, 0x2c, 0x25]).unwrap();
        a.dd(&[(DATA + 0x50) as u32]).unwrap();
    });
    write_u64(&mut cpu, DATA + 0x50, far);
    load(&mut cpu, DATA + 0x58, &KCODE.to_le_bytes());
    let tail = assemble_at(far, |a| {
        a.mov(eax, KDATA as u32).unwrap();
        a.mov(fs, ax).unwrap();
        a.mov(ss, ax).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(r8, cs).unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, far, &tail);
    let mut bus = TestBus::default();
    halted(cpu.run(&mut bus, 100_000));
    assert_eq!(read_u64(&cpu, DATA) & 0xffff, 0x3f, "SGDT limit");
    assert_eq!(read_u64(&cpu, DATA + 2), GDT, "SGDT base");
    assert_eq!(read_u64(&cpu, DATA + 16) & 0xffff, 0xfff, "SIDT limit");
    assert_eq!(read_u64(&cpu, DATA + 18), IDT, "SIDT base");
    assert_eq!(read_u64(&cpu, DATA + 32) & 0xffff, TSS_SEL as u64, "STR");
    assert_eq!(cpu.reg(RCX), 0x00c0_9300, "LAR");
    assert_eq!(cpu.reg(RSI), 0xffff_ffff, "LSL");
    assert_eq!(cpu.reg(RDX) & 0xffff, 0x0101, "LAR ok, VERR ok");
    assert_eq!(
        cpu.reg(RBX) & 0xffff,
        0x0000,
        "VERW of code fails, LAR beyond the limit fails"
    );
    assert_eq!(cpu.reg(RDI), 0x5555, "LAR leaves the destination when ZF=0");
    assert_eq!(cpu.reg(8), KCODE as u64);
    let g = &cpu.core().guest;
    assert_eq!(g.segs[FS].selector, KDATA);
    assert_eq!(g.segs[ES].selector, 0);
    assert_eq!(g.tr.attr & 0xf, 0xb, "TSS busy after LTR");
    assert_eq!(
        read_u64(&cpu, GDT + 0x30) >> 40 & 0xf,
        0xb,
        "busy bit in the GDT"
    );
}
