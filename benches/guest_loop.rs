//! A tight loop of the toy guest through the whole engine: a handful of ALU instructions and
//! a conditional backward branch that leaves the block through `Goto` and chains to itself.
//! Reports guest instructions per second; prints ops per guest instruction.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tci64_engine::Stop;

#[path = "../crates/engine/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;
use common::*;

const ITERS: i32 = 10_000;

fn setup() -> tci64_engine::Engine<Toy> {
    let mut e = engine();
    load(
        &mut e,
        0x1000,
        &[
            enc(ADDI, 1, 1, 0, 1),  // r1 += 1
            enc(XOR, 3, 3, 1, 0),   // r3 ^= r1
            enc(ADD, 4, 4, 3, 0),   // r4 += r3
            enc(SHL, 5, 4, 1, 0),   // r5 = r4 << r1
            enc(ADD32, 6, 5, 3, 0), // r6 = zx32(r5 + r3)
            enc(BNE, 0, 1, 2, -48), // loop while r1 != r2
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    e.core.regs.0[2] = ITERS as u64;
    e
}

fn guest_loop(c: &mut Criterion) {
    let mut e = setup();
    let mut bus = ToyBus::default();
    let insns = 6 * ITERS as u64 + 1;
    // One run to report the shape of the loop.
    e.core.regs.0[1] = 0;
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    let s = e.core.stats;
    eprintln!(
        "guest_loop: {} guest insns, {} ops executed = {:.2} ops/insn; ops {} -> {} after opt; \
         chain hits {}",
        e.core.icount,
        s.ops_executed,
        s.ops_executed as f64 / e.core.icount as f64,
        s.ops_before_opt,
        s.ops_after_opt,
        s.chain_hits
    );
    let mut g = c.benchmark_group("guest_loop");
    g.throughput(Throughput::Elements(insns));
    g.bench_function("alu5_bne_chained", |bench| {
        bench.iter(|| {
            e.core.regs.0[1] = 0;
            run_at(&mut e, &mut bus, 0x1000)
        })
    });
    g.finish();
}

criterion_group!(benches, guest_loop);
criterion_main!(benches);
