//! Interpreter dispatch throughput: a synthetic block of ALU ops executed again and again
//! (no run loop, no memory): bytecode ops per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tci64_engine::interp::exec_block;
use tci64_engine::Op;

#[path = "../crates/engine/tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;
use common::{Toy, ToyBus};

/// 64 ALU ops over 8 slots plus the exit.
fn alu_block() -> Vec<Op> {
    let mut code = Vec::new();
    for i in 0..16u8 {
        let (a, b, d) = (i % 8, (i + 3) % 8, (i + 5) % 8);
        code.push(Op::Add { d, a, b });
        code.push(Op::XorI {
            d: a,
            a: d,
            imm: 0x5a5a,
        });
        code.push(Op::ShrI { d: b, a, imm: 3 });
        code.push(Op::Sub32 { d, a: b, b: a });
    }
    code.push(Op::Exit { code: 0 });
    code
}

fn dispatch(c: &mut Criterion) {
    let code = alu_block();
    let mut core = tci64_engine::Core::new(
        tci64_engine::Memory::new(1 << 16, 0).unwrap(),
        Toy::default(),
    );
    let mut bus = ToyBus::default();
    for i in 0..8 {
        core.regs.0[i] = 0x1234_5678 * (i as u64 + 1);
    }
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(code.len() as u64));
    g.bench_function("alu_block_65_ops", |bench| {
        bench.iter(|| black_box(exec_block(&mut core, &mut bus, black_box(&code))))
    });
    g.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
