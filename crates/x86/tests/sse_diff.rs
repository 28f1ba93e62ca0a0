//! Differential tests of SSE/SSE2 against the host CPU (x86_64 hosts only): each form runs on
//! the host (inline asm) and in the emulator with the same XMM0/XMM1/MXCSR inputs, and the
//! XMM0 result, MXCSR (flags) and, where the form produces them, RAX and the arithmetic flags
//! must agree. Inputs mix random bits with ±0, infinities, NaNs with payloads, denormals and
//! boundary values; every case draws a random rounding mode and DAZ/FTZ setting.
//! `TCI64_DIFF_CASES` sets the number of cases per form (default 200).
#![cfg(target_arch = "x86_64")]

mod common;
use common::*;
use iced_x86::code_asm::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::arch::asm;
use tci64_x86::regs::RIP;
use tci64_x86::state::cr;
use tci64_x86::Cpu;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Out {
    x0: [u64; 2],
    mxcsr: u32,
    rax: u64,
    flags: u64,
}

#[derive(Clone, Copy, Debug)]
struct Inp {
    x0: [u64; 2],
    x1: [u64; 2],
    mxcsr: u32,
    rax: u64,
}

/// What of the output a form defines.
#[derive(Clone, Copy)]
struct Cmp {
    xmm: bool,
    rax: bool,
    flags: bool,
}
const XMM: Cmp = Cmp {
    xmm: true,
    rax: false,
    flags: false,
};
const RAX: Cmp = Cmp {
    xmm: false,
    rax: true,
    flags: false,
};
const FLAGS: Cmp = Cmp {
    xmm: false,
    rax: false,
    flags: true,
};

macro_rules! host {
    ($insn:literal) => {
        |inp: &Inp| -> Out {
            let mut out = Out::default();
            let mut mx_out = 0u32;
            let mut rax_v: u64 = inp.rax;
            let mut fl: u64;
            unsafe {
                asm!(
                    "sub rsp, 8",
                    "stmxcsr [rsp]",
                    "ldmxcsr [{m}]",
                    "movdqu xmm0, [{i0}]",
                    "movdqu xmm1, [{i1}]",
                    $insn,
                    "pushfq",
                    "pop {f}",
                    "movdqu [{o}], xmm0",
                    "stmxcsr [{mo}]",
                    "ldmxcsr [rsp]",
                    "add rsp, 8",
                    m = in(reg) &inp.mxcsr,
                    i0 = in(reg) &inp.x0,
                    i1 = in(reg) &inp.x1,
                    o = in(reg) &mut out.x0,
                    mo = in(reg) &mut mx_out,
                    f = out(reg) fl,
                    inout("rax") rax_v,
                    out("xmm0") _, out("xmm1") _,
                );
            }
            out.mxcsr = mx_out;
            out.rax = rax_v;
            out.flags = fl & 0x8d5;
            out
        }
    };
}

/// A guest that runs one instruction on inputs at DATA and stores the outputs.
struct Guest {
    cpu: Cpu,
    bus: TestBus,
}

const IN: u64 = DATA;
const OUT: u64 = DATA + 0x100;

impl Guest {
    fn new(f: impl FnOnce(&mut CodeAssembler)) -> Guest {
        let code = assemble(|a| {
            a.mov(rbx, IN).unwrap();
            a.ldmxcsr(dword_ptr(rbx + 32)).unwrap();
            a.movdqu(xmm0, xmmword_ptr(rbx)).unwrap();
            a.movdqu(xmm1, xmmword_ptr(rbx + 16)).unwrap();
            a.mov(rax, qword_ptr(rbx + 40)).unwrap();
            f(a);
            a.pushfq().unwrap();
            a.pop(rcx).unwrap();
            a.mov(rbx, OUT).unwrap();
            a.movdqu(xmmword_ptr(rbx), xmm0).unwrap();
            a.stmxcsr(dword_ptr(rbx + 16)).unwrap();
            a.mov(qword_ptr(rbx + 24), rax).unwrap();
            a.mov(qword_ptr(rbx + 32), rcx).unwrap();
            a.hlt().unwrap();
        });
        let mut cpu = machine(&code);
        cpu.core_mut().guest.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
        Guest {
            cpu,
            bus: TestBus::default(),
        }
    }

    fn run(&mut self, inp: &Inp) -> Out {
        let mut b = [0u8; 48];
        b[0..8].copy_from_slice(&inp.x0[0].to_le_bytes());
        b[8..16].copy_from_slice(&inp.x0[1].to_le_bytes());
        b[16..24].copy_from_slice(&inp.x1[0].to_le_bytes());
        b[24..32].copy_from_slice(&inp.x1[1].to_le_bytes());
        b[32..36].copy_from_slice(&inp.mxcsr.to_le_bytes());
        b[40..48].copy_from_slice(&inp.rax.to_le_bytes());
        assert!(self.cpu.write_phys(IN, &b));
        let c = self.cpu.core_mut();
        c.regs.0[RIP as usize] = CODE;
        c.guest.halted = false;
        let e = self.cpu.run(&mut self.bus, 10_000);
        assert!(
            matches!(e, tci64_x86::CpuExit::Halted { .. }),
            "guest did not reach HLT: {e:?}"
        );
        assert_eq!(self.cpu.reg(RIP) & !0xfff, CODE, "guest took an exception");
        let mut o = [0u8; 40];
        assert!(self.cpu.read_phys(OUT, &mut o));
        let q = |i: usize| u64::from_le_bytes(o[i..i + 8].try_into().unwrap());
        Out {
            x0: [q(0), q(8)],
            mxcsr: u32::from_le_bytes(o[16..20].try_into().unwrap()),
            rax: q(24),
            flags: q(32) & 0x8d5,
        }
    }
}

fn cases() -> u32 {
    std::env::var("TCI64_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

fn f32_special() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(0x8000_0000),
        Just(0x7f80_0000),
        Just(0xff80_0000),
        (0u32..0x40_0000).prop_map(|p| 0x7fc0_0000 | p),
        (1u32..0x40_0000).prop_map(|p| 0xff80_0000 | p),
        (1u32..0x80_0000).prop_map(|p| p),
        (1u32..0x80_0000).prop_map(|p| 0x8000_0000 | p),
        Just(0x7f7f_ffff),
        Just(0x0080_0000),
        Just(0x3f80_0000),
        Just(0x4f00_0000),
        Just(0xcf00_0000),
        (0x3f00_0000u32..0x4100_0000),
        any::<u32>(),
        any::<u32>(),
    ]
}

fn f64_special() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1 << 63),
        Just(0x7ff0_0000_0000_0000),
        Just(0xfff0_0000_0000_0000),
        (0u64..1 << 51).prop_map(|p| 0x7ff8_0000_0000_0000 | p),
        (1u64..1 << 51).prop_map(|p| 0xfff0_0000_0000_0000 | p),
        (1u64..1 << 52),
        (1u64..1 << 52).prop_map(|p| (1 << 63) | p),
        Just(0x7fef_ffff_ffff_ffff),
        Just(0x0010_0000_0000_0000),
        Just(0x3ff0_0000_0000_0000),
        Just(0x41e0_0000_0000_0000),
        Just(0x43e0_0000_0000_0000),
        (0x3fe0_0000_0000_0000u64..0x4030_0000_0000_0000),
        any::<u64>(),
        any::<u64>(),
    ]
}

fn lane64() -> impl Strategy<Value = u64> {
    prop_oneof![
        f64_special(),
        (f32_special(), f32_special()).prop_map(|(a, b)| a as u64 | (b as u64) << 32),
        (f32_special(), f32_special()).prop_map(|(a, b)| a as u64 | (b as u64) << 32),
        any::<u64>(),
    ]
}

fn inputs() -> impl Strategy<Value = Inp> {
    (
        [lane64(), lane64(), lane64(), lane64()],
        0u32..4,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
        0u32..8,
    )
        .prop_map(|(l, rc, daz, ftz, rv, sel)| {
            let mut x1 = [l[2], l[3]];
            if sel == 0 {
                x1 = [l[0], l[1]]; // equal operands
            }
            Inp {
                x0: [l[0], l[1]],
                x1,
                mxcsr: 0x1f80 | rc << 13 | (daz as u32) << 6 | (ftz as u32) << 15,
                rax: rv,
            }
        })
}

fn check(name: &str, cmp: Cmp, host: impl Fn(&Inp) -> Out, asm: impl FnOnce(&mut CodeAssembler)) {
    vendor::host();
    let mut g = Guest::new(asm);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let g = std::cell::RefCell::new(&mut g);
    runner
        .run(&inputs(), |inp| {
            let h = host(&inp);
            let e = g.borrow_mut().run(&inp);
            if cmp.xmm {
                prop_assert_eq!(
                    e.x0,
                    h.x0,
                    "{}: xmm0 {:x?} x1 {:x?} mxcsr {:#x}",
                    name,
                    inp.x0,
                    inp.x1,
                    inp.mxcsr
                );
            }
            if cmp.rax {
                prop_assert_eq!(e.rax, h.rax, "{}: rax; inp {:x?}", name, inp);
            }
            if cmp.flags {
                prop_assert_eq!(e.flags, h.flags, "{}: flags; inp {:x?}", name, inp);
            }
            prop_assert_eq!(e.mxcsr, h.mxcsr, "{}: mxcsr; inp {:x?}", name, inp);
            Ok(())
        })
        .unwrap();
}

macro_rules! forms {
    ($($test:ident: $cmp:expr, $insn:literal, |$a:ident| $body:expr;)*) => {$(
        #[test]
        fn $test() {
            check(stringify!($test), $cmp, host!($insn), |$a: &mut CodeAssembler| { $body.unwrap(); });
        }
    )*};
}

forms! {
    pxor: XMM, "pxor xmm0, xmm1", |a| a.pxor(xmm0, xmm1);
    pandn: XMM, "pandn xmm0, xmm1", |a| a.pandn(xmm0, xmm1);
    paddb: XMM, "paddb xmm0, xmm1", |a| a.paddb(xmm0, xmm1);
    paddq: XMM, "paddq xmm0, xmm1", |a| a.paddq(xmm0, xmm1);
    psubw: XMM, "psubw xmm0, xmm1", |a| a.psubw(xmm0, xmm1);
    paddsb: XMM, "paddsb xmm0, xmm1", |a| a.paddsb(xmm0, xmm1);
    paddusw: XMM, "paddusw xmm0, xmm1", |a| a.paddusw(xmm0, xmm1);
    psubusb: XMM, "psubusb xmm0, xmm1", |a| a.psubusb(xmm0, xmm1);
    psubsw: XMM, "psubsw xmm0, xmm1", |a| a.psubsw(xmm0, xmm1);
    pcmpeqb: XMM, "pcmpeqb xmm0, xmm1", |a| a.pcmpeqb(xmm0, xmm1);
    pcmpeqd: XMM, "pcmpeqd xmm0, xmm1", |a| a.pcmpeqd(xmm0, xmm1);
    pcmpgtb: XMM, "pcmpgtb xmm0, xmm1", |a| a.pcmpgtb(xmm0, xmm1);
    pcmpgtw: XMM, "pcmpgtw xmm0, xmm1", |a| a.pcmpgtw(xmm0, xmm1);
    pcmpgtd: XMM, "pcmpgtd xmm0, xmm1", |a| a.pcmpgtd(xmm0, xmm1);
    pminub: XMM, "pminub xmm0, xmm1", |a| a.pminub(xmm0, xmm1);
    pmaxub: XMM, "pmaxub xmm0, xmm1", |a| a.pmaxub(xmm0, xmm1);
    pminsw: XMM, "pminsw xmm0, xmm1", |a| a.pminsw(xmm0, xmm1);
    pmaxsw: XMM, "pmaxsw xmm0, xmm1", |a| a.pmaxsw(xmm0, xmm1);
    pavgb: XMM, "pavgb xmm0, xmm1", |a| a.pavgb(xmm0, xmm1);
    pavgw: XMM, "pavgw xmm0, xmm1", |a| a.pavgw(xmm0, xmm1);
    pmullw: XMM, "pmullw xmm0, xmm1", |a| a.pmullw(xmm0, xmm1);
    pmulhw: XMM, "pmulhw xmm0, xmm1", |a| a.pmulhw(xmm0, xmm1);
    pmulhuw: XMM, "pmulhuw xmm0, xmm1", |a| a.pmulhuw(xmm0, xmm1);
    pmuludq: XMM, "pmuludq xmm0, xmm1", |a| a.pmuludq(xmm0, xmm1);
    pmaddwd: XMM, "pmaddwd xmm0, xmm1", |a| a.pmaddwd(xmm0, xmm1);
    psadbw: XMM, "psadbw xmm0, xmm1", |a| a.psadbw(xmm0, xmm1);
    pmovmskb: RAX, "pmovmskb eax, xmm1", |a| a.pmovmskb(eax, xmm1);
    movmskps: RAX, "movmskps eax, xmm1", |a| a.movmskps(eax, xmm1);
    movmskpd: RAX, "movmskpd eax, xmm1", |a| a.movmskpd(eax, xmm1);
    pshufd: XMM, "pshufd xmm0, xmm1, 0x1b", |a| a.pshufd(xmm0, xmm1, 0x1b);
    pshuflw: XMM, "pshuflw xmm0, xmm1, 0x9c", |a| a.pshuflw(xmm0, xmm1, 0x9c);
    pshufhw: XMM, "pshufhw xmm0, xmm1, 0x72", |a| a.pshufhw(xmm0, xmm1, 0x72);
    punpcklbw: XMM, "punpcklbw xmm0, xmm1", |a| a.punpcklbw(xmm0, xmm1);
    punpckhwd: XMM, "punpckhwd xmm0, xmm1", |a| a.punpckhwd(xmm0, xmm1);
    punpckldq: XMM, "punpckldq xmm0, xmm1", |a| a.punpckldq(xmm0, xmm1);
    punpckhqdq: XMM, "punpckhqdq xmm0, xmm1", |a| a.punpckhqdq(xmm0, xmm1);
    packsswb: XMM, "packsswb xmm0, xmm1", |a| a.packsswb(xmm0, xmm1);
    packuswb: XMM, "packuswb xmm0, xmm1", |a| a.packuswb(xmm0, xmm1);
    packssdw: XMM, "packssdw xmm0, xmm1", |a| a.packssdw(xmm0, xmm1);
    psllw: XMM, "psllw xmm0, xmm1", |a| a.psllw(xmm0, xmm1);
    psrld: XMM, "psrld xmm0, xmm1", |a| a.psrld(xmm0, xmm1);
    psraw_i: XMM, "psraw xmm0, 9", |a| a.psraw(xmm0, 9);
    psrad_i: XMM, "psrad xmm0, 31", |a| a.psrad(xmm0, 31);
    psllq_i: XMM, "psllq xmm0, 13", |a| a.psllq(xmm0, 13);
    pslldq: XMM, "pslldq xmm0, 5", |a| a.pslldq(xmm0, 5);
    psrldq: XMM, "psrldq xmm0, 11", |a| a.psrldq(xmm0, 11);
    pinsrw: XMM, "pinsrw xmm0, eax, 5", |a| a.pinsrw(xmm0, eax, 5);
    pextrw: RAX, "pextrw eax, xmm1, 6", |a| a.pextrw(eax, xmm1, 6);
    shufps: XMM, "shufps xmm0, xmm1, 0xb4", |a| a.shufps(xmm0, xmm1, 0xb4);
    shufpd: XMM, "shufpd xmm0, xmm1, 2", |a| a.shufpd(xmm0, xmm1, 2);
    unpckhps: XMM, "unpckhps xmm0, xmm1", |a| a.unpckhps(xmm0, xmm1);
    movss: XMM, "movss xmm0, xmm1", |a| a.movss(xmm0, xmm1);
    movsd_rr: XMM, "movsd xmm0, xmm1", |a| a.movsd_2(xmm0, xmm1);
    movhlps: XMM, "movhlps xmm0, xmm1", |a| a.movhlps(xmm0, xmm1);
    movlhps: XMM, "movlhps xmm0, xmm1", |a| a.movlhps(xmm0, xmm1);
    movq_rr: XMM, "movq xmm0, xmm1", |a| a.movq(xmm0, xmm1);
    movd_from_gpr: XMM, "movd xmm0, eax", |a| a.movd(xmm0, eax);
    movq_from_gpr: XMM, "movq xmm0, rax", |a| a.movq(xmm0, rax);
    movq_to_gpr: RAX, "movq rax, xmm1", |a| a.movq(rax, xmm1);
    movd_to_gpr: RAX, "movd eax, xmm1", |a| a.movd(eax, xmm1);
    addps: XMM, "addps xmm0, xmm1", |a| a.addps(xmm0, xmm1);
    addss: XMM, "addss xmm0, xmm1", |a| a.addss(xmm0, xmm1);
    addpd: XMM, "addpd xmm0, xmm1", |a| a.addpd(xmm0, xmm1);
    subsd: XMM, "subsd xmm0, xmm1", |a| a.subsd(xmm0, xmm1);
    subps: XMM, "subps xmm0, xmm1", |a| a.subps(xmm0, xmm1);
    mulps: XMM, "mulps xmm0, xmm1", |a| a.mulps(xmm0, xmm1);
    mulsd: XMM, "mulsd xmm0, xmm1", |a| a.mulsd(xmm0, xmm1);
    mulpd: XMM, "mulpd xmm0, xmm1", |a| a.mulpd(xmm0, xmm1);
    divps: XMM, "divps xmm0, xmm1", |a| a.divps(xmm0, xmm1);
    divsd: XMM, "divsd xmm0, xmm1", |a| a.divsd(xmm0, xmm1);
    minps: XMM, "minps xmm0, xmm1", |a| a.minps(xmm0, xmm1);
    maxsd: XMM, "maxsd xmm0, xmm1", |a| a.maxsd(xmm0, xmm1);
    minpd: XMM, "minpd xmm0, xmm1", |a| a.minpd(xmm0, xmm1);
    sqrtps: XMM, "sqrtps xmm0, xmm1", |a| a.sqrtps(xmm0, xmm1);
    sqrtsd: XMM, "sqrtsd xmm0, xmm1", |a| a.sqrtsd(xmm0, xmm1);
    cmpps_lt: XMM, "cmpps xmm0, xmm1, 1", |a| a.cmpps(xmm0, xmm1, 1);
    cmpps_unord: XMM, "cmpps xmm0, xmm1, 3", |a| a.cmpps(xmm0, xmm1, 3);
    cmpss_nle: XMM, "cmpss xmm0, xmm1, 6", |a| a.cmpss(xmm0, xmm1, 6);
    cmppd_neq: XMM, "cmppd xmm0, xmm1, 4", |a| a.cmppd(xmm0, xmm1, 4);
    cmpsd_le: XMM, "cmpsd xmm0, xmm1, 2", |a| a.cmpsd_3(xmm0, xmm1, 2);
    comiss: FLAGS, "comiss xmm0, xmm1", |a| a.comiss(xmm0, xmm1);
    ucomiss: FLAGS, "ucomiss xmm0, xmm1", |a| a.ucomiss(xmm0, xmm1);
    comisd: FLAGS, "comisd xmm0, xmm1", |a| a.comisd(xmm0, xmm1);
    ucomisd: FLAGS, "ucomisd xmm0, xmm1", |a| a.ucomisd(xmm0, xmm1);
    cvtsi2ss32: XMM, "cvtsi2ss xmm0, eax", |a| a.cvtsi2ss(xmm0, eax);
    cvtsi2ss64: XMM, "cvtsi2ss xmm0, rax", |a| a.cvtsi2ss(xmm0, rax);
    cvtsi2sd64: XMM, "cvtsi2sd xmm0, rax", |a| a.cvtsi2sd(xmm0, rax);
    cvtss2si32: RAX, "cvtss2si eax, xmm1", |a| a.cvtss2si(eax, xmm1);
    cvttss2si64: RAX, "cvttss2si rax, xmm1", |a| a.cvttss2si(rax, xmm1);
    cvtsd2si64: RAX, "cvtsd2si rax, xmm1", |a| a.cvtsd2si(rax, xmm1);
    cvttsd2si32: RAX, "cvttsd2si eax, xmm1", |a| a.cvttsd2si(eax, xmm1);
    cvtss2sd: XMM, "cvtss2sd xmm0, xmm1", |a| a.cvtss2sd(xmm0, xmm1);
    cvtsd2ss: XMM, "cvtsd2ss xmm0, xmm1", |a| a.cvtsd2ss(xmm0, xmm1);
    cvtdq2ps: XMM, "cvtdq2ps xmm0, xmm1", |a| a.cvtdq2ps(xmm0, xmm1);
    cvtps2dq: XMM, "cvtps2dq xmm0, xmm1", |a| a.cvtps2dq(xmm0, xmm1);
    cvttps2dq: XMM, "cvttps2dq xmm0, xmm1", |a| a.cvttps2dq(xmm0, xmm1);
    cvtpd2ps: XMM, "cvtpd2ps xmm0, xmm1", |a| a.cvtpd2ps(xmm0, xmm1);
    cvtps2pd: XMM, "cvtps2pd xmm0, xmm1", |a| a.cvtps2pd(xmm0, xmm1);
    cvtdq2pd: XMM, "cvtdq2pd xmm0, xmm1", |a| a.cvtdq2pd(xmm0, xmm1);
    cvtpd2dq: XMM, "cvtpd2dq xmm0, xmm1", |a| a.cvtpd2dq(xmm0, xmm1);
    cvttpd2dq: XMM, "cvttpd2dq xmm0, xmm1", |a| a.cvttpd2dq(xmm0, xmm1);
}
