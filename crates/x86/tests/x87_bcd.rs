//! FBSTP and FBLD (packed BCD) against the host FPU: the 10 stored bytes and the status word
//! for f64 inputs under every rounding control, and the 80-bit value FBLD loads from valid
//! BCD inputs (x86_64 hosts only).
#![cfg(target_arch = "x86_64")]

mod common;
use common::*;
use iced_x86::code_asm::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::arch::asm;
use tci64_x86::regs::RIP;
use tci64_x86::Cpu;

/// A proptest runner for `TCI64_DIFF_CASES` cases (300 by default).
fn runner() -> TestRunner {
    let cases = std::env::var("TCI64_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Run the guest program at CODE again with `input` at DATA; returns DATA + 32.. (12 bytes).
fn rerun(cpu: &mut Cpu, input: &[u8]) -> [u8; 12] {
    cpu.write_phys(DATA, input);
    cpu.core_mut().regs.0[RIP as usize] = CODE;
    cpu.core_mut().guest.halted = false;
    cpu.run(&mut TestBus::default(), 10_000);
    let mut o = [0u8; 12];
    cpu.read_phys(DATA + 32, &mut o);
    o
}

fn f64s() -> impl Strategy<Value = f64> {
    prop_oneof![
        // Integers and halves around the rounding points, inside and at the edge of 18 digits.
        (-1_000_000i64..1_000_000).prop_map(|x| x as f64 / 2.0),
        any::<i64>().prop_map(|x| (x % 1_000_000_000_000_000_000) as f64),
        Just(999_999_999_999_999_999.0),
        Just(1e18),
        Just(-1e18),
        Just(-0.0),
        Just(0.4),
        Just(-0.6),
        Just(f64::INFINITY),
        Just(f64::NAN),
        any::<f64>(),
    ]
}

#[test]
fn fbstp_matches_the_host() {
    vendor::host();
    let code = assemble(|a| {
        a.mov(rbx, DATA).unwrap();
        a.fninit().unwrap();
        a.fldcw(word_ptr(rbx + 8)).unwrap();
        a.fld(qword_ptr(rbx)).unwrap();
        a.fbstp(tword_ptr(rbx + 32)).unwrap();
        a.fnstsw(word_ptr(rbx + 42)).unwrap();
        a.hlt().unwrap();
    });
    let cpu = std::cell::RefCell::new(machine(&code));
    let mut runner = runner();
    runner
        .run(&(f64s(), 0u16..4), |(x, rc)| {
            // All exceptions masked, 64-bit precision, rounding control `rc`.
            let cw: u16 = 0x37f | rc << 10;
            let mut host = [0u8; 12];
            // SAFETY: the asm reads `x` and `cw` and writes the 12 bytes of `host` through
            // pointers to live locals; it leaves the FPU initialized and empty (fninit).
            unsafe {
                asm!(
                    "fninit",
                    "fldcw [{cw}]",
                    "fld qword ptr [{x}]",
                    "fbstp tbyte ptr [{o}]",
                    "fnstsw [{o} + 10]",
                    "fninit",
                    cw = in(reg) &cw,
                    x = in(reg) &x,
                    o = in(reg) host.as_mut_ptr(),
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            let mut input = [0u8; 10];
            input[..8].copy_from_slice(&x.to_le_bytes());
            input[8..].copy_from_slice(&cw.to_le_bytes());
            let emu = rerun(&mut cpu.borrow_mut(), &input);
            prop_assert_eq!(emu, host, "fbstp {} (rc {})", x, rc);
            Ok(())
        })
        .unwrap();
}

#[test]
fn fbld_matches_the_host() {
    vendor::host();
    let code = assemble(|a| {
        a.mov(rbx, DATA).unwrap();
        a.fninit().unwrap();
        a.fbld(tword_ptr(rbx)).unwrap();
        a.fstp(tword_ptr(rbx + 32)).unwrap();
        a.fnstsw(word_ptr(rbx + 42)).unwrap();
        a.hlt().unwrap();
    });
    let cpu = std::cell::RefCell::new(machine(&code));
    let mut runner = runner();
    let digits = proptest::collection::vec(0u8..10, 18);
    runner
        .run(&(digits, any::<bool>()), |(d, neg)| {
            let mut bcd = [0u8; 10];
            for k in 0..9 {
                bcd[k] = d[2 * k + 1] << 4 | d[2 * k];
            }
            if neg {
                bcd[9] = 0x80;
            }
            let mut host = [0u8; 12];
            // SAFETY: the asm reads the 10 bytes of `bcd` and writes the 12 bytes of `host`
            // through pointers to live locals; it leaves the FPU empty (fninit).
            unsafe {
                asm!(
                    "fninit",
                    "fbld tbyte ptr [{b}]",
                    "fstp tbyte ptr [{o}]",
                    "fnstsw [{o} + 10]",
                    "fninit",
                    b = in(reg) bcd.as_ptr(),
                    o = in(reg) host.as_mut_ptr(),
                    out("st(0)") _, out("st(1)") _, out("st(2)") _, out("st(3)") _,
                    out("st(4)") _, out("st(5)") _, out("st(6)") _, out("st(7)") _,
                );
            }
            let emu = rerun(&mut cpu.borrow_mut(), &bcd);
            prop_assert_eq!(emu, host, "fbld {:02x?}", bcd);
            Ok(())
        })
        .unwrap();
}
