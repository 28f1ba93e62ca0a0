//! x86 guest code through the whole pipeline (iced decode → IR → optimizer → bytecode → TB
//! cache → interpreter):
//! - `x86_tight_loop`: a handful of ALU instructions and a conditional backward branch, run
//!   again and again on one machine (translated once); reports guest instructions per second
//!   of the bench thread's CPU time (not wall time: the machine may be shared) and prints
//!   bytecode ops per guest instruction.
//! - `x86_translate`: a long block of varied instructions run once after a TB-cache flush, so
//!   the time is translation; reports guest instructions translated per second.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iced_x86::code_asm::*;

#[path = "../crates/x86/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;
use common::*;

const ITERS: u32 = 100_000;

/// The bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds: on a shared
/// machine the wall time also counts the time other processes had the CPU.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, t0: u64) -> u64 {
        thread_cpu_ns() - t0
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, formatted (and turned into throughput) as the wall clock's are.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn tight_loop(c: &mut Criterion<CpuTime>) {
    let code = assemble(|a| {
        let mut top = a.create_label();
        a.mov(ecx, ITERS).unwrap();
        a.xor(eax, eax).unwrap();
        a.set_label(&mut top).unwrap();
        a.add(eax, ecx).unwrap();
        a.xor(edx, eax).unwrap();
        a.lea(rbx, qword_ptr(rbx + rdx * 2 + 1)).unwrap();
        a.dec(ecx).unwrap();
        a.jnz(top).unwrap();
        a.hlt().unwrap();
    });
    let insns = 5 * ITERS as u64 + 3;
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    let before = cpu.core().stats;
    let i0 = cpu.icount();
    cpu.run(&mut bus, u64::MAX);
    let s = cpu.core().stats;
    eprintln!(
        "x86 tight loop: {} guest insns, {:.2} bytecode ops per guest insn",
        cpu.icount() - i0,
        (s.ops_executed - before.ops_executed) as f64 / (cpu.icount() - i0) as f64
    );
    let mut g = c.benchmark_group("x86_tight_loop");
    g.throughput(Throughput::Elements(insns));
    // One machine for every iteration (its translated blocks stay cached): each iteration
    // restarts the loop at CODE, so the time is the interpreter's, not the machine's setup.
    g.bench_function("add_xor_lea_dec_jnz", |b| {
        b.iter(|| {
            cpu.core_mut().regs.0[tci64_x86::regs::RIP as usize] = CODE;
            cpu.core_mut().guest.halted = false;
            cpu.run(&mut bus, u64::MAX)
        })
    });
    g.finish();
}

fn translate(c: &mut Criterion) {
    const N: u32 = 400;
    let code = assemble(|a| {
        for k in 0..N {
            match k % 8 {
                0 => a.mov(rax, qword_ptr(rsp - 64)).unwrap(),
                1 => a.add(eax, ecx).unwrap(),
                2 => a.lea(rdx, qword_ptr(rax + rcx * 4 + 16)).unwrap(),
                3 => a.cmp(rdx, 7).unwrap(),
                4 => a.mov(qword_ptr(rsp - 64), rdx).unwrap(),
                5 => a.shl(rsi, 3).unwrap(),
                6 => a.movzx(edi, byte_ptr(rsp - 60)).unwrap(),
                _ => a.xor(r8d, r9d).unwrap(),
            }
        }
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    cpu.core_mut().max_insns = 512;
    let mut bus = TestBus::default();
    let mut g = c.benchmark_group("x86_translate");
    g.throughput(Throughput::Elements(N as u64 + 1));
    g.bench_function("400_mixed_insns", |b| {
        b.iter(|| {
            cpu.engine.flush_code();
            cpu.core_mut().regs.0[tci64_x86::regs::RIP as usize] = CODE;
            cpu.core_mut().guest.halted = false;
            cpu.run(&mut bus, u64::MAX)
        })
    });
    g.finish();
}

criterion_group!(benches, translate);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = tight_loop
}
criterion_main!(cpu_benches, benches);
