//! Small guest programs run through the real translate → optimize → interpret path.

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_x86::regs::*;
use tci64_x86::CpuExit;

#[test]
fn loop_sum_and_hlt() {
    let code = assemble(|a| {
        let mut top = a.create_label();
        a.xor(eax, eax).unwrap();
        a.mov(ecx, 100).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(eax, ecx).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    let e = run_to_hlt(&mut cpu, &mut bus, 1_000_000);
    assert_eq!(
        e,
        CpuExit::Halted {
            interrupts_enabled: false
        }
    );
    assert_eq!(cpu.reg(RAX), 5050);
    assert_eq!(cpu.reg(RCX), 0);
}

#[test]
fn recursive_fibonacci() {
    let code = assemble(|a| {
        let mut fib = a.create_label();
        let mut base = a.create_label();
        a.mov(edi, 20).unwrap();
        a.call(fib).unwrap();
        a.hlt().unwrap();
        // fib(rdi) -> rax
        a.set_label(&mut fib).unwrap();
        a.cmp(rdi, 2).unwrap();
        a.jb(base).unwrap();
        a.push(rdi).unwrap();
        a.dec(rdi).unwrap();
        a.call(fib).unwrap();
        a.pop(rdi).unwrap();
        a.push(rax).unwrap();
        a.sub(rdi, 2).unwrap();
        a.call(fib).unwrap();
        a.pop(rcx).unwrap();
        a.add(rax, rcx).unwrap();
        a.ret().unwrap();
        a.set_label(&mut base).unwrap();
        a.mov(rax, rdi).unwrap();
        a.ret().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    let e = run_to_hlt(&mut cpu, &mut bus, 10_000_000);
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
    assert_eq!(cpu.reg(RAX), 6765);
    assert_eq!(cpu.reg(RSP), STACK_TOP);
}

#[test]
fn memory_and_flags() {
    let code = assemble(|a| {
        a.mov(rbx, DATA).unwrap();
        a.mov(qword_ptr(rbx), 0x7fff_ffff).unwrap();
        a.add(dword_ptr(rbx), 1).unwrap();
        a.seto(al).unwrap();
        a.sets(cl).unwrap();
        a.mov(edx, dword_ptr(rbx)).unwrap();
        a.cmp(edx, 0x8000_0000u32 as i32).unwrap();
        a.setz(ah).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    run_to_hlt(&mut cpu, &mut bus, 1000);
    assert_eq!(cpu.reg(RAX) & 0xffff, 0x0101);
    assert_eq!(cpu.reg(RCX) & 0xff, 1);
    assert_eq!(cpu.reg(RDX), 0x8000_0000);
}
