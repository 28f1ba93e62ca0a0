//! Debugger support on the x86 CPU: breakpoints that never patch memory and stop before the
//! instruction, watchpoints that stop after the accessing instruction, single-step (into
//! interrupt handlers, without the guest's TF), and the side-effect-free page-table probe.

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_engine::{DebugStop, WatchKind, Watchpoint};
use tci64_x86::regs::{RAX, RFLAGS, RIP};
use tci64_x86::CpuExit;

/// mov eax,1 / add eax,2 / add eax,3 / hlt, and the address of each instruction.
fn adds() -> (Vec<u8>, [u64; 4]) {
    let steps: [fn(&mut CodeAssembler); 4] = [
        |a| a.mov(eax, 1u32).unwrap(),
        |a| a.add(eax, 2).unwrap(),
        |a| a.add(eax, 3).unwrap(),
        |a| a.hlt().unwrap(),
    ];
    let mut at = [CODE; 4];
    for k in 1..4 {
        let prefix = assemble(|a| steps[..k].iter().for_each(|f| f(a)));
        at[k] = CODE + prefix.len() as u64;
    }
    (assemble(|a| steps.iter().for_each(|f| f(a))), at)
}

#[test]
fn breakpoint_stops_before_the_instruction_without_patching_memory() {
    let (code, at) = adds();
    let mut plain = machine(&code);
    let mut bus = TestBus::default();
    assert!(matches!(plain.run(&mut bus, 1000), CpuExit::Halted { .. }));
    assert_eq!(plain.reg(RAX), 6);
    let undisturbed = plain.icount();

    let mut cpu = machine(&code);
    cpu.engine.add_breakpoint(at[1]);
    assert_eq!(
        cpu.run(&mut bus, 1000),
        CpuExit::Debug(DebugStop::Breakpoint)
    );
    assert_eq!(cpu.reg(RIP), at[1]);
    assert_eq!(
        cpu.reg(RAX),
        1,
        "the instruction at the breakpoint has not run"
    );
    assert_eq!(cpu.icount(), 1);
    let mut mem = vec![0u8; code.len()];
    assert!(cpu.read_phys(CODE, &mut mem));
    assert_eq!(mem, code, "guest memory is not patched");
    // Running again stops again: the breakpoint holds until stepped over.
    assert_eq!(
        cpu.run(&mut bus, 1000),
        CpuExit::Debug(DebugStop::Breakpoint)
    );
    assert_eq!(cpu.icount(), 1);
    assert_eq!(cpu.step(&mut bus), CpuExit::Debug(DebugStop::Step));
    assert_eq!((cpu.reg(RIP), cpu.reg(RAX)), (at[2], 3));
    assert!(matches!(cpu.run(&mut bus, 1000), CpuExit::Halted { .. }));
    assert_eq!(cpu.reg(RAX), 6);
    assert_eq!(cpu.icount(), undisturbed);

    // A breakpoint on a block's first instruction; removing it lets the code run through.
    let mut cpu = machine(&code);
    cpu.engine.add_breakpoint(CODE);
    assert_eq!(
        cpu.run(&mut bus, 1000),
        CpuExit::Debug(DebugStop::Breakpoint)
    );
    assert_eq!((cpu.reg(RIP), cpu.icount()), (CODE, 0));
    assert!(cpu.engine.remove_breakpoint(CODE));
    assert!(!cpu.engine.remove_breakpoint(CODE));
    assert!(matches!(cpu.run(&mut bus, 1000), CpuExit::Halted { .. }));
    assert_eq!((cpu.reg(RAX), cpu.icount()), (6, undisturbed));
}

#[test]
fn stepping_runs_one_instruction_at_a_time() {
    let (code, at) = adds();
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    for (k, want_rax) in [(1usize, 1u64), (2, 3), (3, 6)] {
        assert_eq!(cpu.step(&mut bus), CpuExit::Debug(DebugStop::Step));
        assert_eq!((cpu.reg(RIP), cpu.reg(RAX)), (at[k], want_rax));
        assert_eq!(cpu.icount(), k as u64);
    }
    // No #DB and no TF: the debugger's step is not the guest's single-step trap.
    assert_eq!(cpu.reg(RFLAGS) & (1 << 8), 0);
    assert_eq!(cpu.core().guest.dr[6] & (1 << 14), 0);
    // Stepping the HLT halts the CPU.
    assert_eq!(cpu.step(&mut bus), CpuExit::Debug(DebugStop::Step));
    assert!(matches!(cpu.step(&mut bus), CpuExit::Halted { .. }));
}

#[test]
fn a_step_with_an_interrupt_pending_ends_at_the_handler() {
    let code = assemble(|a| {
        sys_prologue(a);
        a.sti().unwrap();
        a.nop().unwrap();
        a.nop().unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    system_tables(&mut cpu);
    set_gate(&mut cpu, 0x20, HANDLERS, 0, 0);
    load(
        &mut cpu,
        HANDLERS,
        &assemble_at(HANDLERS, |a| a.hlt().unwrap()),
    );
    let mut bus = TestBus::default();
    // lgdt, lidt, mov, ltr, sti, nop.
    for _ in 0..6 {
        assert_eq!(cpu.step(&mut bus), CpuExit::Debug(DebugStop::Step));
    }
    let before = cpu.reg(RIP);
    bus.irq_vector = Some(0x20);
    assert_eq!(cpu.step(&mut bus), CpuExit::Debug(DebugStop::Step));
    assert_eq!(cpu.reg(RIP), HANDLERS, "the step delivered the interrupt");
    assert_eq!(
        read_u64(&cpu, STACK_TOP - 40),
        before,
        "the handler returns to the next instruction"
    );
}

#[test]
fn watchpoints_stop_after_the_access_and_only_on_watched_bytes() {
    let code = assemble(|a| {
        a.mov(dword_ptr(DATA + 0x1000), 7).unwrap();
        a.mov(dword_ptr(DATA + 4), 5).unwrap();
        a.mov(dword_ptr(DATA), 9).unwrap();
        a.mov(rax, qword_ptr(DATA + 8)).unwrap();
        a.nop().unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    write_u64(&mut cpu, DATA + 8, 0x1122_3344);
    cpu.engine.add_watchpoint(Watchpoint {
        addr: DATA,
        len: 4,
        kind: WatchKind::Write,
    });
    cpu.engine.add_watchpoint(Watchpoint {
        addr: DATA + 8,
        len: 8,
        kind: WatchKind::Read,
    });
    assert_eq!(
        cpu.run(&mut bus, 1000),
        CpuExit::Debug(DebugStop::Watch {
            addr: DATA,
            kind: WatchKind::Write
        })
    );
    // Three stores ran (the ones to another page and to DATA+4 did not stop it).
    assert_eq!(cpu.icount(), 3);
    assert_eq!(read_u64(&cpu, DATA) & 0xffff_ffff, 9, "the store completed");
    assert_eq!(read_u64(&cpu, DATA + 0x1000), 7);
    assert_eq!(
        cpu.run(&mut bus, 1000),
        CpuExit::Debug(DebugStop::Watch {
            addr: DATA + 8,
            kind: WatchKind::Read
        })
    );
    assert_eq!(cpu.reg(RAX), 0x1122_3344, "the load completed");
    assert_eq!(cpu.icount(), 4);
    assert!(matches!(cpu.run(&mut bus, 1000), CpuExit::Halted { .. }));
    assert_eq!(cpu.icount(), 6);
}

#[test]
fn the_probe_reads_through_page_tables_without_side_effects() {
    let code = assemble(|a| {
        a.mov(rax, qword_ptr(0x40_1000u64)).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    // Map virtual 0x4000_0000_1000 (PML4[128]) with 4 KiB pages to physical DATA, and
    // 0x40_1000 is in the identity map's second 2 MiB page (PD entry 2, A clear).
    let va = 0x4000_0000_1000u64;
    write_u64(&mut cpu, PML4 + 128 * 8, 0xa000 | 3);
    write_u64(&mut cpu, 0xa000, 0xb000 | 3);
    write_u64(&mut cpu, 0xb000, 0xc000 | 3);
    write_u64(&mut cpu, 0xc000 + 8, DATA | 3);
    write_u64(&mut cpu, DATA + 0x10, 0xfeed_f00d);
    let mut buf = [0u8; 8];
    assert_eq!(cpu.read_virt(va + 0x10, &mut buf), 8);
    assert_eq!(u64::from_le_bytes(buf), 0xfeed_f00d);
    assert_eq!(cpu.virt_to_phys(va + 0x10), Some(DATA + 0x10));
    for e in [PML4 + 128 * 8, 0xa000, 0xb000, 0xc000 + 8] {
        assert_eq!(
            read_u64(&cpu, e) & 0x60,
            0,
            "no accessed/dirty bit at {e:#x}"
        );
    }
    // Unmapped: nothing read, no fault recorded.
    assert_eq!(cpu.read_virt(va + 0x1000, &mut buf), 0);
    assert_eq!(cpu.virt_to_phys(0x8000_0000_0000), None);
    assert_eq!(cpu.core().guest.cr2, 0);
    assert!(cpu.core().guest.pending.is_none());
    // A debugger write goes through the same translation.
    assert_eq!(cpu.write_virt(va + 0x18, &[0xaa; 4]), 4);
    assert_eq!(read_u64(&cpu, DATA + 0x18), 0xaaaa_aaaa);
    assert_eq!(read_u64(&cpu, 0xc000 + 8) & 0x60, 0);
    // The guest's own access does set the accessed bit (so the checks above can fail).
    assert_eq!(read_u64(&cpu, 0x3000 + 2 * 8) & 0x20, 0);
    assert!(matches!(cpu.run(&mut bus, 100), CpuExit::Halted { .. }));
    assert_ne!(read_u64(&cpu, 0x3000 + 2 * 8) & 0x20, 0);
    // The mappings list has the 4 KiB page.
    let m = cpu
        .mappings()
        .into_iter()
        .find(|m| m.vaddr == va)
        .expect("the 4 KiB mapping");
    assert_eq!((m.paddr, m.size, m.writable), (DATA, 4096, true));
}

#[test]
fn a_debugger_selector_write_reloads_the_descriptor_cache() {
    use tci64_x86::regs::{FS, FS_BASE};
    let code = assemble(|a| {
        a.mov(rax, qword_ptr(0x10u64).fs()).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    // GDT[3] (0x18): a data segment with base 0x40_0000, accessed bit clear.
    let desc = 0x00cf_9240_0000_ffffu64;
    write_u64(&mut cpu, GDT + 0x18, desc);
    write_u64(&mut cpu, 0x40_0010, 0x1234_5678_9abc_def0);
    // A null data selector clears the cache.
    let mut d = cpu.debug_regs();
    assert_eq!(d.sel[FS], 0x18);
    d.sel[FS] = 0;
    cpu.set_debug_regs(&d).unwrap();
    assert_eq!(cpu.core().guest.segs[FS].attr, 0);
    let mut d = cpu.debug_regs();
    d.sel[FS] = 0x18;
    cpu.set_debug_regs(&d).unwrap();
    let s = cpu.core().guest.segs[FS];
    assert_eq!((s.selector, s.limit, s.attr), (0x18, 0xffff_ffff, 0xc092));
    assert_eq!(cpu.reg(FS_BASE), 0x40_0000);
    assert_eq!(cpu.debug_regs().fs_base, 0x40_0000);
    assert_eq!(read_u64(&cpu, GDT + 0x18), desc, "no accessed bit set");
    // The guest uses the loaded cache.
    assert!(matches!(cpu.run(&mut bus, 100), CpuExit::Halted { .. }));
    assert_eq!(cpu.reg(RAX), 0x1234_5678_9abc_def0);

    // Beyond the GDT limit (0x1f): refused, and nothing else in the request changes.
    let mut d = cpu.debug_regs();
    d.sel[FS] = 0x20;
    d.gpr[0] = 7;
    let e = cpu.set_debug_regs(&d).unwrap_err();
    assert_eq!(e.to_string(), "FS selector 0x0020: no loadable descriptor");
    assert_eq!(cpu.reg(RAX), 0x1234_5678_9abc_def0);
    assert_eq!(cpu.core().guest.segs[FS].selector, 0x18);
    // A null CS is refused.
    let mut d = cpu.debug_regs();
    d.sel[tci64_x86::regs::CS] = 0;
    assert!(cpu.set_debug_regs(&d).is_err());
    // A new CS selector sets the CPL to its RPL.
    let mut d = cpu.debug_regs();
    d.sel[tci64_x86::regs::CS] = 0x13;
    cpu.set_debug_regs(&d).unwrap();
    assert_eq!(cpu.core().guest.cpl, 3);
}
