//! Exceptions of the SSE3/SSSE3/SSE4 forms: #GP(0) on a misaligned 16-byte operand (except the
//! string compares and LDDQU), #UD for MONITOR/MWAIT, and no
//! register change on a faulting instruction.

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_x86::state::cr;
use tci64_x86::Cpu;

/// Run `insn` with XMM0 = pattern, RSI = DATA + 1 (misaligned); returns the vector taken
/// (or 0xff for none) and XMM0 afterwards (low qword).
fn fault_of(insn: impl FnOnce(&mut CodeAssembler)) -> (u64, u64) {
    let code = assemble(|a| {
        sys_prologue(a);
        a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
        a.movq(xmm0, rax).unwrap();
        a.mov(rsi, DATA + 1).unwrap();
        a.mov(rcx, 7u64).unwrap();
        insn(a);
        a.mov(qword_ptr(DATA + 0x100), 0xffi32).unwrap();
        a.movq(qword_ptr(DATA + 0x108), xmm0).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu: Cpu = machine(&code);
    cpu.core_mut().guest.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
    system_tables(&mut cpu);
    for v in [6u8, 13] {
        let h = HANDLERS + v as u64 * 0x100;
        let c = assemble_at(h, |a| {
            a.mov(qword_ptr(DATA + 0x100), v as i32).unwrap();
            a.movq(qword_ptr(DATA + 0x108), xmm0).unwrap();
            a.hlt().unwrap();
        });
        load(&mut cpu, h, &c);
        set_gate(&mut cpu, v, h, 0, 0);
    }
    let e = cpu.run(&mut TestBus::default(), 10_000);
    assert!(matches!(e, tci64_x86::CpuExit::Halted { .. }), "{e:?}");
    (read_u64(&cpu, DATA + 0x100), read_u64(&cpu, DATA + 0x108))
}

const PAT: u64 = 0x1122_3344_5566_7788;

#[test]
fn misaligned_16_byte_operands_gp() {
    assert_eq!(
        fault_of(|a| a.pshufb(xmm0, xmmword_ptr(rsi)).unwrap()),
        (13, PAT)
    );
    assert_eq!(
        fault_of(|a| a.ptest(xmm0, xmmword_ptr(rsi)).unwrap()),
        (13, PAT)
    );
    assert_eq!(
        fault_of(|a| a.dpps(xmm0, xmmword_ptr(rsi), 0xff).unwrap()),
        (13, PAT)
    );
    assert_eq!(
        fault_of(|a| a.movntdqa(xmm0, xmmword_ptr(rsi)).unwrap()),
        (13, PAT)
    );
    assert_eq!(
        fault_of(|a| a.pcmpgtq(xmm0, xmmword_ptr(rsi)).unwrap()),
        (13, PAT)
    );
    assert_eq!(
        fault_of(|a| a.haddps(xmm0, xmmword_ptr(rsi)).unwrap()),
        (13, PAT)
    );
    // Smaller operands and the unaligned forms do not fault.
    assert_eq!(
        fault_of(|a| a.pmovzxbw(xmm0, qword_ptr(rsi)).unwrap()).0,
        0xff
    );
    assert_eq!(
        fault_of(|a| a.lddqu(xmm0, xmmword_ptr(rsi)).unwrap()).0,
        0xff
    );
    assert_eq!(
        fault_of(|a| a.pcmpistri(xmm0, xmmword_ptr(rsi), 0).unwrap()).0,
        0xff
    );
    assert_eq!(
        fault_of(|a| a.pcmpestrm(xmm0, xmmword_ptr(rsi), 0).unwrap()).0,
        0xff
    );
}

#[test]
fn mmx_forms_run_and_monitor_mwait_ud() {
    // The SSSE3 MMX forms are implemented (see mmx_diff.rs).
    assert_eq!(fault_of(|a| a.pshufb(mm0, mm1).unwrap()).0, 0xff);
    assert_eq!(fault_of(|a| a.pabsw(mm0, mm1).unwrap()).0, 0xff);
    assert_eq!(fault_of(|a| a.palignr(mm0, mm1, 3).unwrap()).0, 0xff);
    assert_eq!(fault_of(|a| a.monitor().unwrap()).0, 6);
    assert_eq!(fault_of(|a| a.mwait().unwrap()).0, 6);
}

#[test]
fn crc32_known_vector() {
    // CRC-32C("123456789") = 0xE3069283.
    let code = assemble(|a| {
        a.mov(eax, 0xffff_ffffu32).unwrap();
        for &b in b"123456789" {
            a.mov(cl, b as u32).unwrap();
            a.crc32(eax, cl).unwrap();
        }
        a.not(eax).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let e = cpu.run(&mut TestBus::default(), 10_000);
    assert!(matches!(e, tci64_x86::CpuExit::Halted { .. }), "{e:?}");
    assert_eq!(cpu.reg(tci64_x86::regs::RAX), 0xe306_9283);
}
