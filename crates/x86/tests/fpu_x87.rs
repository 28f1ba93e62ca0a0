//! x87 differential tests against the host FPU (x86_64 only): two f64 inputs are loaded,
//! one operation runs, and the 80-bit result (stored bit-exact with FSTP m80) and the status
//! word must match, under every rounding and precision control setting.
#![cfg(target_arch = "x86_64")]

mod common;
use common::*;
use iced_x86::code_asm::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::arch::asm;
use tci64_x86::regs::RIP;

#[derive(Clone, Copy, Debug)]
struct Inp {
    a: u64,
    b: u64,
    cw: u16,
}

macro_rules! host {
    ($insn:literal) => {
        |inp: &Inp| -> ([u8; 10], u16) {
            let mut out = [0u8; 10];
            let mut sw: u16 = 0;
            unsafe {
                asm!(
                    "fninit",
                    "fldcw [{cw}]",
                    "fld qword ptr [{a}]",
                    "fld qword ptr [{b}]",
                    $insn,
                    "fstp tbyte ptr [{o}]",
                    "fnstsw [{sw}]",
                    "fninit",
                    cw = in(reg) &inp.cw,
                    a = in(reg) &inp.a,
                    b = in(reg) &inp.b,
                    o = in(reg) out.as_mut_ptr(),
                    sw = in(reg) &mut sw,
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            (out, sw)
        }
    };
}

fn f64v() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1 << 63),
        Just(0x7ff0_0000_0000_0000),
        Just(0xfff0_0000_0000_0000),
        (0u64..1 << 51).prop_map(|p| 0x7ff8_0000_0000_0000 | p),
        (1u64..1 << 52),
        Just(0x3ff0_0000_0000_0000),
        (0x3fe0_0000_0000_0000u64..0x4030_0000_0000_0000),
        (0x3fe0_0000_0000_0000u64..0x4030_0000_0000_0000).prop_map(|x| x | 1 << 63),
        any::<u64>(),
        any::<u64>(),
    ]
}

fn check(name: &str, host: impl Fn(&Inp) -> ([u8; 10], u16), f: impl FnOnce(&mut CodeAssembler)) {
    vendor::host();
    let code = assemble(|a| {
        a.mov(rbx, DATA).unwrap();
        a.fninit().unwrap();
        a.fldcw(word_ptr(rbx + 16)).unwrap();
        a.fld(qword_ptr(rbx)).unwrap();
        a.fld(qword_ptr(rbx + 8)).unwrap();
        f(a);
        a.fstp(tword_ptr(rbx + 32)).unwrap();
        a.fnstsw(word_ptr(rbx + 48)).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let bus = std::cell::RefCell::new(TestBus::default());
    let cases = std::env::var("TCI64_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strat = (
        f64v(),
        f64v(),
        0u16..4,
        prop_oneof![Just(0u16), Just(2), Just(3)],
    )
        .prop_map(|(a, b, rc, pc)| Inp {
            a,
            b,
            cw: 0x37f & !0x300 | pc << 8 | rc << 10,
        });
    let cpu = std::cell::RefCell::new(&mut cpu);
    runner
        .run(&strat, |inp| {
            let (ho, hsw) = host(&inp);
            let mut cpu = cpu.borrow_mut();
            let mut b = [0u8; 18];
            b[..8].copy_from_slice(&inp.a.to_le_bytes());
            b[8..16].copy_from_slice(&inp.b.to_le_bytes());
            b[16..18].copy_from_slice(&inp.cw.to_le_bytes());
            cpu.write_phys(DATA, &b);
            cpu.core_mut().regs.0[RIP as usize] = CODE;
            cpu.core_mut().guest.halted = false;
            cpu.run(&mut *bus.borrow_mut(), 10_000);
            let mut o = [0u8; 18];
            cpu.read_phys(DATA + 32, &mut o);
            let gsw = u16::from_le_bytes([o[16], o[17]]);
            prop_assert_eq!(&o[..10], &ho[..], "{}: result; {:x?}", name, inp);
            prop_assert_eq!(gsw, hsw, "{}: status word; {:x?}", name, inp);
            Ok(())
        })
        .unwrap();
}

macro_rules! forms {
    ($($test:ident: $insn:literal, |$a:ident| $body:expr;)*) => {$(
        #[test]
        fn $test() {
            check(stringify!($test), host!($insn), |$a: &mut CodeAssembler| { $body.unwrap(); });
        }
    )*};
}

forms! {
    fadd: "fadd st(0), st(1)", |a| a.fadd_2(st0, st1);
    fsub: "fsub st(0), st(1)", |a| a.fsub_2(st0, st1);
    fsubr: "fsubr st(0), st(1)", |a| a.fsubr_2(st0, st1);
    fmul: "fmul st(0), st(1)", |a| a.fmul_2(st0, st1);
    fdiv: "fdiv st(0), st(1)", |a| a.fdiv_2(st0, st1);
    fdivrp: "fdivrp st(1), st(0)", |a| a.fdivrp(st1, st0);
    fsqrt_: "fsqrt", |a| a.fsqrt();
    frndint: "frndint", |a| a.frndint();
    fchs: "fchs", |a| a.fchs();
    fxch_abs: "fxch st(1)\nfabs", |a| { a.fxch(st0, st1).unwrap(); a.fabs() };
    fcom: "fcom st(1)\nfld1", |a| { a.fcom_2(st0, st1).unwrap(); a.fld1() };
    fucomp: "fucomp st(1)", |a| a.fucomp(st0, st1);
    fxam: "fxam", |a| a.fxam();
    fprem: "fprem", |a| a.fprem();
    fprem1: "fprem1", |a| a.fprem1();
    fscale: "fscale", |a| a.fscale();
    fldpi: "fldpi", |a| a.fldpi();
    fldl2e: "fldl2e", |a| a.fldl2e();
    fldln2: "fldln2", |a| a.fldln2();
    fldlg2: "fldlg2", |a| a.fldlg2();
    fldl2t: "fldl2t", |a| a.fldl2t();
}
