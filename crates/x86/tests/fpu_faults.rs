//! Fault paths of the x87 and SSE units: #NM on CR0.TS (and CR0.EM for x87), WAIT/FWAIT's
//! #NM only with TS and MP, #UD for SSE with CR0.EM or CR4.OSFXSR clear, #XM for an unmasked
//! SIMD floating-point exception with CR4.OSXMMEXCPT (#UD without), and no change to the
//! destination register when the exception is raised; the MMX forms (#UD on EM, #NM on TS).

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_x86::state::cr;
use tci64_x86::Cpu;

const PAT: u64 = 0x1122_3344_5566_7788;
const NONE: u64 = 0xff;
const ONE: u64 = 0x3ff0_0000_0000_0000;
const MINUS1X2: u64 = 0xbf80_0000_bf80_0000;

struct Out {
    vector: u64,
    xmm0: u64,
    mxcsr: u64,
    st0: u64,
}

/// Prepare XMM0 = PAT, XMM1 = -1.0f x4, ST0 = 1.0, MXCSR = `mxcsr` with everything enabled,
/// then switch to CR0 |= `cr0_set`, CR4 &= !`cr4_clear`, run `insn`, and report the vector taken
/// (0xff for none) and the state afterwards (read back with everything re-enabled).
fn run(cr0_set: u64, cr4_clear: u64, mxcsr: u32, insn: impl FnOnce(&mut CodeAssembler)) -> Out {
    let mut cpu: Cpu = machine(&[]);
    cpu.core_mut().guest.cr0 &= !(cr::CR0_TS | cr::CR0_EM | cr::CR0_MP);
    cpu.core_mut().guest.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
    let (c0, c4) = (cpu.core().guest.cr0, cpu.core().guest.cr4);
    let tail = HANDLERS + 0x2000;
    let code = assemble(|a| {
        sys_prologue(a);
        a.fninit().unwrap();
        a.fld1().unwrap();
        a.mov(rax, PAT).unwrap();
        a.movq(xmm0, rax).unwrap();
        a.mov(rax, MINUS1X2).unwrap();
        a.movq(xmm1, rax).unwrap();
        a.movlhps(xmm1, xmm1).unwrap();
        a.mov(dword_ptr(DATA + 0x200), mxcsr).unwrap();
        a.ldmxcsr(dword_ptr(DATA + 0x200)).unwrap();
        a.mov(rax, c0 | cr0_set).unwrap();
        a.mov(cr0, rax).unwrap();
        a.mov(rax, c4 & !cr4_clear).unwrap();
        a.mov(cr4, rax).unwrap();
        insn(a);
        a.mov(qword_ptr(DATA + 0x100), NONE as i32).unwrap();
        a.mov(rax, tail).unwrap();
        a.jmp(rax).unwrap();
    });
    load(&mut cpu, CODE, &code);
    system_tables(&mut cpu);
    let t = assemble_at(tail, |a| {
        a.mov(rax, c0).unwrap();
        a.mov(cr0, rax).unwrap();
        a.mov(rax, c4).unwrap();
        a.mov(cr4, rax).unwrap();
        a.movq(qword_ptr(DATA + 0x108), xmm0).unwrap();
        a.stmxcsr(dword_ptr(DATA + 0x110)).unwrap();
        a.fstp(qword_ptr(DATA + 0x118)).unwrap();
        a.hlt().unwrap();
    });
    load(&mut cpu, tail, &t);
    for v in [6u8, 7, 13, 16, 19] {
        let h = HANDLERS + v as u64 * 0x100;
        let c = assemble_at(h, |a| {
            a.mov(qword_ptr(DATA + 0x100), v as i32).unwrap();
            a.mov(rax, tail).unwrap();
            a.jmp(rax).unwrap();
        });
        load(&mut cpu, h, &c);
        set_gate(&mut cpu, v, h, 0, 0);
    }
    let e = cpu.run(&mut TestBus::default(), 10_000);
    assert!(matches!(e, tci64_x86::CpuExit::Halted { .. }), "{e:?}");
    Out {
        vector: read_u64(&cpu, DATA + 0x100),
        xmm0: read_u64(&cpu, DATA + 0x108),
        mxcsr: read_u64(&cpu, DATA + 0x110) & 0xffff_ffff,
        st0: read_u64(&cpu, DATA + 0x118),
    }
}

const MX: u32 = 0x1f80;

fn addps(a: &mut CodeAssembler) {
    a.addps(xmm0, xmm1).unwrap();
}
fn fadd(a: &mut CodeAssembler) {
    a.fadd_2(st0, st0).unwrap();
}

#[test]
fn no_fault_baseline() {
    let o = run(0, 0, MX, addps);
    assert_eq!(o.vector, NONE);
    assert_ne!(o.xmm0, PAT);
    let o = run(0, 0, MX, fadd);
    assert_eq!((o.vector, o.st0), (NONE, 0x4000_0000_0000_0000));
}

#[test]
fn ts_raises_nm_for_sse_and_x87() {
    let o = run(cr::CR0_TS, 0, MX, addps);
    assert_eq!((o.vector, o.xmm0), (7, PAT));
    let o = run(cr::CR0_TS, 0, MX, fadd);
    assert_eq!((o.vector, o.st0), (7, ONE));
    let o = run(cr::CR0_TS | cr::CR0_MP, 0, MX, |a| {
        a.movaps(xmm0, xmm1).unwrap()
    });
    assert_eq!((o.vector, o.xmm0), (7, PAT));
}

#[test]
fn wait_nm_only_with_ts_and_mp() {
    assert_eq!(
        run(cr::CR0_TS | cr::CR0_MP, 0, MX, |a| a.wait().unwrap()).vector,
        7
    );
    assert_eq!(run(cr::CR0_TS, 0, MX, |a| a.wait().unwrap()).vector, NONE);
    assert_eq!(run(cr::CR0_EM, 0, MX, |a| a.wait().unwrap()).vector, NONE);
}

#[test]
fn em_raises_nm_for_x87_and_ud_for_sse() {
    let o = run(cr::CR0_EM, 0, MX, fadd);
    assert_eq!((o.vector, o.st0), (7, ONE));
    let o = run(cr::CR0_EM, 0, MX, addps);
    assert_eq!((o.vector, o.xmm0), (6, PAT));
}

#[test]
fn sse_without_osfxsr_ud() {
    let o = run(0, cr::CR4_OSFXSR, MX, addps);
    assert_eq!((o.vector, o.xmm0), (6, PAT));
    let o = run(0, cr::CR4_OSFXSR, MX, |a| {
        a.ldmxcsr(dword_ptr(DATA + 0x200)).unwrap()
    });
    assert_eq!(o.vector, 6);
    // x87 is unaffected.
    let o = run(0, cr::CR4_OSFXSR, MX, fadd);
    assert_eq!((o.vector, o.st0), (NONE, 0x4000_0000_0000_0000));
}

#[test]
fn unmasked_simd_exception_xm_or_ud() {
    // SQRTPS of -1.0 is invalid; with IM clear it faults and XMM0 is unchanged, IE is set.
    let unmasked = MX & !0x80;
    let sqrt = |a: &mut CodeAssembler| a.sqrtps(xmm0, xmm1).unwrap();
    let o = run(0, 0, unmasked, sqrt);
    assert_eq!(
        (o.vector, o.xmm0, o.mxcsr),
        (19, PAT, (unmasked | 1) as u64)
    );
    let o = run(0, cr::CR4_OSXMMEXCPT, unmasked, sqrt);
    assert_eq!((o.vector, o.xmm0, o.mxcsr & 1), (6, PAT, 1));
    // Masked: the default NaN is written, no fault.
    let o = run(0, 0, MX, sqrt);
    assert_eq!(
        (o.vector, o.xmm0, o.mxcsr),
        (NONE, 0xffc0_0000_ffc0_0000, (MX | 1) as u64)
    );
    // Scalar form: only the low lane, also unchanged.
    let o = run(0, 0, unmasked, |a| a.sqrtss(xmm0, xmm1).unwrap());
    assert_eq!((o.vector, o.xmm0), (19, PAT));
}

#[test]
fn mmx_em_ud_ts_nm_no_state_change() {
    let paddb = |a: &mut CodeAssembler| a.paddb(mm0, mm1).unwrap();
    // The faulting MMX instruction leaves TOP and the tags alone (ST0 still 1.0).
    let o = run(cr::CR0_EM, 0, MX, paddb);
    assert_eq!((o.vector, o.st0), (6, ONE));
    let o = run(cr::CR0_TS, 0, MX, paddb);
    assert_eq!((o.vector, o.st0), (7, ONE));
    // MMX does not need CR4.OSFXSR.
    assert_eq!(run(0, cr::CR4_OSFXSR, MX, paddb).vector, NONE);
    // MOVQ2DQ touches XMM registers: #UD without OSFXSR.
    let o = run(0, cr::CR4_OSFXSR, MX, |a| a.movq2dq(xmm0, mm1).unwrap());
    assert_eq!((o.vector, o.xmm0), (6, PAT));
}
