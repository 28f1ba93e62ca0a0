//! Differential test of the optimizer: random blocks of IR (ALU ops over a handful of slots,
//! copy chains, constants, loads and stores to identity-mapped RAM including page-crossing and
//! faulting ones, helper calls that clobber globals or trap, Select, forward branches) must
//! leave the same globals, memory, helper-call log and exception state with the optimizer on
//! and off. Runs through the real path: Engine::run -> translate -> optimize -> encode ->
//! TB cache -> interpreter.

mod common;

use common::*;
use proptest::prelude::*;
use tci64_engine::ir::Cond;
use tci64_engine::{Op, Slot, Stop};

/// Slots the programs use: globals 0..=7 and temporaries 32..=36.
const POOL: [Slot; 13] = [0, 1, 2, 3, 4, 5, 6, 7, 32, 33, 34, 35, 36];
/// Holds the data base address 0x2000; never written by the programs.
const BASE: Slot = 9;

const CONDS: [Cond; 12] = [
    Cond::Eq,
    Cond::Ne,
    Cond::LtU,
    Cond::GeU,
    Cond::LeU,
    Cond::GtU,
    Cond::LtS,
    Cond::GeS,
    Cond::LeS,
    Cond::GtS,
    Cond::TstZ,
    Cond::TstNz,
];

#[derive(Clone, Debug)]
enum Item {
    Alu {
        kind: u8,
        d: Slot,
        a: Slot,
        b: Slot,
        c: Slot,
        imm: i32,
        sh: u8,
        pos: u8,
        len: u8,
        cond: u8,
    },
    Const(Slot, u64),
    Mov(Slot, Slot),
    /// `d = zx32(a + b)` through the pair the optimizer fuses; `t` may alias `a` or `b`.
    AddZx {
        t: Slot,
        d: Slot,
        a: Slot,
        b: Slot,
        imm: Option<i32>,
    },
    Load {
        size: u8,
        d: Slot,
        addr: Slot,
        src: Slot,
        disp: i32,
    },
    Store {
        size: u8,
        v: Slot,
        addr: Slot,
        src: Slot,
        disp: i32,
    },
    Call {
        f: u16,
        d: Slot,
        a: Slot,
        b: Slot,
        c: Slot,
    },
    Branch {
        cond: u8,
        a: Slot,
        b: Slot,
        imm: Option<i32>,
        skip: u8,
    },
    /// A pair (or chain) the optimizer fuses: `kind` picks the shape; `t`, `t2` may alias the
    /// sources.
    Fuse {
        kind: u8,
        t: Slot,
        t2: Slot,
        d: Slot,
        a: Slot,
        b: Slot,
        imm: i32,
        sh: u8,
    },
    InsnStart,
}

fn slot() -> impl Strategy<Value = Slot> {
    prop::sample::select(POOL.to_vec())
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![
            0u64,
            1,
            2,
            63,
            64,
            0x5a,
            0x15a,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            i64::MAX as u64,
            i64::MIN as u64,
            u64::MAX,
            0xff8,
            0xffc,
            0x1ff9,
        ]),
        any::<u64>(),
        0u64..16,
    ]
}

fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        prop::sample::select(vec![0, 1, -1, 0x5a, 0x7fff_ffff, i32::MIN, 63, 64]),
        any::<i32>(),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        8 => (any::<u8>(), slot(), slot(), slot(), slot(), imm(), any::<u8>(), 0u8..70, 0u8..70, 0u8..12)
            .prop_map(|(kind, d, a, b, c, imm, sh, pos, len, cond)| Item::Alu {
                kind, d, a, b, c, imm, sh, pos, len, cond
            }),
        3 => (slot(), value()).prop_map(|(d, v)| Item::Const(d, v)),
        6 => (slot(), slot()).prop_map(|(d, a)| Item::Mov(d, a)),
        2 => (slot(), slot(), slot(), slot(), prop::option::of(imm()))
            .prop_map(|(t, d, a, b, imm)| Item::AddZx { t, d, a, b, imm }),
        2 => (prop::sample::select(vec![1u8, 2, 4, 8]), slot(), slot(), slot(), 0i32..9)
            .prop_map(|(size, d, addr, src, disp)| Item::Load { size, d, addr, src, disp }),
        2 => (prop::sample::select(vec![1u8, 2, 4, 8]), slot(), slot(), slot(), 0i32..9)
            .prop_map(|(size, v, addr, src, disp)| Item::Store { size, v, addr, src, disp }),
        1 => (0u16..3, slot(), slot(), slot(), slot())
            .prop_map(|(f, d, a, b, c)| Item::Call { f, d, a, b, c }),
        2 => (0u8..12, slot(), slot(), prop::option::of(imm()), 1u8..6)
            .prop_map(|(cond, a, b, imm, skip)| Item::Branch { cond, a, b, imm, skip }),
        3 => (any::<u8>(), slot(), slot(), slot(), slot(), slot(), imm(), 0u8..66)
            .prop_map(|(kind, t, t2, d, a, b, imm, sh)| Item::Fuse { kind, t, t2, d, a, b, imm, sh }),
        2 => Just(Item::InsnStart),
    ]
}

#[allow(clippy::too_many_arguments)]
fn alu(
    kind: u8,
    d: Slot,
    a: Slot,
    b: Slot,
    c: Slot,
    imm: i32,
    sh: u8,
    pos: u8,
    len: u8,
    cond: Cond,
) -> Op {
    match kind % 54 {
        46 => Op::And32 { d, a, b },
        47 => Op::Or32 { d, a, b },
        48 => Op::Xor32 { d, a, b },
        49 => Op::OrI32 { d, a, imm },
        50 => Op::XorI32 { d, a, imm },
        51 => Op::ShlI32 { d, a, imm: sh },
        52 => Op::Lea { d, a, b, sh, imm },
        53 => Op::Lea32 { d, a, b, sh, imm },
        44 => Op::RotlI { d, a, imm: sh },
        45 => Op::Rotl32I { d, a, imm: sh },
        0 => Op::Add { d, a, b },
        1 => Op::Sub { d, a, b },
        2 => Op::Mul { d, a, b },
        3 => Op::MulHu { d, a, b },
        4 => Op::MulHs { d, a, b },
        5 => Op::And { d, a, b },
        6 => Op::Or { d, a, b },
        7 => Op::Xor { d, a, b },
        8 => Op::Shl { d, a, b },
        9 => Op::Shr { d, a, b },
        10 => Op::Sar { d, a, b },
        11 => Op::Rotl { d, a, b },
        12 => Op::Rotr { d, a, b },
        13 => Op::AddI { d, a, imm },
        14 => Op::AndI { d, a, imm },
        15 => Op::OrI { d, a, imm },
        16 => Op::XorI { d, a, imm },
        17 => Op::ShlI { d, a, imm: sh },
        18 => Op::ShrI { d, a, imm: sh },
        19 => Op::SarI { d, a, imm: sh },
        20 => Op::Add32 { d, a, b },
        21 => Op::Sub32 { d, a, b },
        22 => Op::AddI32 { d, a, imm },
        23 => Op::Neg { d, a },
        24 => Op::Not { d, a },
        25 => Op::Zx8 { d, a },
        26 => Op::Zx16 { d, a },
        27 => Op::Zx32 { d, a },
        28 => Op::Sx8 { d, a },
        29 => Op::Sx16 { d, a },
        30 => Op::Sx32 { d, a },
        31 => Op::Clz { d, a },
        32 => Op::Ctz { d, a },
        33 => Op::Popcnt { d, a },
        34 => Op::Bswap64 { d, a },
        35 => Op::Bswap32 { d, a },
        36 => Op::Deposit { d, a, b, pos, len },
        37 => Op::Extract { d, a, pos, len },
        38 => Op::SetCond { d, a, b, cond },
        39 => Op::SetCondI { d, a, imm, cond },
        40 | 41 => Op::Select { d, c, a, b },
        42 => Op::Sub { d, a, b: a },
        _ => Op::Xor { d, a, b: a },
    }
}

/// The ops of a fusable shape (see [`Item::Fuse`]).
#[allow(clippy::too_many_arguments)]
fn fusable(kind: u8, t: Slot, t2: Slot, d: Slot, a: Slot, b: Slot, imm: i32, sh: u8) -> Vec<Op> {
    let zx = |first: Op| vec![first, Op::Zx32 { d, a: t }];
    match kind % 14 {
        0 => zx(Op::Add { d: t, a, b }),
        1 => zx(Op::Sub { d: t, a, b }),
        2 => zx(Op::And { d: t, a, b }),
        3 => zx(Op::Or { d: t, a, b }),
        4 => zx(Op::Xor { d: t, a, b }),
        5 => zx(Op::AddI { d: t, a, imm }),
        6 => zx(Op::OrI { d: t, a, imm }),
        7 => zx(Op::XorI { d: t, a, imm }),
        8 => zx(Op::ShlI { d: t, a, imm: sh }),
        9 => zx(Op::Lea {
            d: t,
            a,
            b,
            sh,
            imm,
        }),
        10 => vec![
            Op::ShlI {
                d: t,
                a: b,
                imm: sh,
            },
            Op::Add { d, a, b: t },
        ],
        11 => vec![
            Op::ShlI {
                d: t,
                a: b,
                imm: sh,
            },
            Op::Add { d, a: t, b: a },
        ],
        12 => vec![Op::Add { d: t, a, b }, Op::AddI { d, a: t, imm }],
        _ => vec![
            Op::ShlI {
                d: t,
                a: b,
                imm: sh,
            },
            Op::Add { d: t2, a, b: t },
            Op::AddI { d, a: t2, imm },
            Op::Zx32 { d: a, a: d },
        ],
    }
}

/// How a generated block ends.
#[derive(Clone, Copy, Debug)]
enum Tail {
    /// `Exit { code: 7 }`.
    Exit,
    /// A constant PC store and `Goto` (fused into `GotoI`); the target page faults on fetch.
    Goto(u8),
    /// A constant store to global 17, then the PC store and `Goto` (fused into `GotoIK`).
    GotoK(u8, u64),
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![
        2 => Just(Tail::Exit),
        1 => (0u8..2).prop_map(Tail::Goto),
        1 => (0u8..2, value()).prop_map(|(n, k)| Tail::GotoK(n, k)),
    ]
}

/// Lower the items to a block of IR ending in `Exit { code: 7 }`.
fn lower(items: &[Item]) -> Vec<Op> {
    lower_with(items, Tail::Exit)
}

/// Lower the items to a block of IR ending as `tail` says.
fn lower_with(items: &[Item], tail: Tail) -> Vec<Op> {
    let mut ops = vec![Op::InsnStart { n: 0 }];
    let mut n_insn = 1u16;
    let mut next_label = 0u16;
    let mut pending: Vec<(u16, u8)> = Vec::new();
    for it in items {
        match *it {
            Item::Alu {
                kind,
                d,
                a,
                b,
                c,
                imm,
                sh,
                pos,
                len,
                cond,
            } => ops.push(alu(
                kind,
                d,
                a,
                b,
                c,
                imm,
                sh,
                pos,
                len,
                CONDS[cond as usize % 12],
            )),
            Item::Const(d, imm) => ops.push(Op::Const { d, imm }),
            Item::Mov(d, a) => ops.push(Op::Mov { d, a }),
            Item::AddZx { t, d, a, b, imm } => {
                ops.push(match imm {
                    Some(imm) => Op::AddI { d: t, a, imm },
                    None => Op::Add { d: t, a, b },
                });
                ops.push(Op::Zx32 { d, a: t });
            }
            Item::Load {
                size,
                d,
                addr,
                src,
                disp,
            }
            | Item::Store {
                size,
                v: d,
                addr,
                src,
                disp,
            } => {
                // addr = BASE + (src & 0x1fff): inside 0x2000..0x4000, so accesses near the
                // top cross into the unmapped page 0x4000.
                ops.push(Op::AndI {
                    d: addr,
                    a: src,
                    imm: 0x1fff,
                });
                ops.push(Op::Add {
                    d: addr,
                    a: addr,
                    b: BASE,
                });
                let (a, mmu) = (addr, 0);
                let is_load = matches!(it, Item::Load { .. });
                ops.push(match (is_load, size) {
                    (true, 1) => Op::Ld8 { d, a, disp, mmu },
                    (true, 2) => Op::Ld16 { d, a, disp, mmu },
                    (true, 4) => Op::Ld32 { d, a, disp, mmu },
                    (true, _) => Op::Ld64 { d, a, disp, mmu },
                    (false, 1) => Op::St8 { v: d, a, disp, mmu },
                    (false, 2) => Op::St16 { v: d, a, disp, mmu },
                    (false, 4) => Op::St32 { v: d, a, disp, mmu },
                    (false, _) => Op::St64 { v: d, a, disp, mmu },
                });
            }
            Item::Call { f, d, a, b, c } => ops.push(Op::Call { f, d, a, b, c }),
            Item::Branch {
                cond,
                a,
                b,
                imm,
                skip,
            } => {
                let t = next_label;
                next_label += 1;
                let cond = CONDS[cond as usize % 12];
                ops.push(match imm {
                    Some(imm) => Op::BrCondI { a, imm, cond, t },
                    None => Op::BrCond { a, b, cond, t },
                });
                pending.push((t, skip + 1));
            }
            Item::Fuse {
                kind,
                t,
                t2,
                d,
                a,
                b,
                imm,
                sh,
            } => ops.extend(fusable(kind, t, t2, d, a, b, imm, sh)),
            Item::InsnStart => {
                ops.push(Op::InsnStart { n: n_insn });
                n_insn += 1;
            }
        }
        for p in pending.iter_mut() {
            p.1 -= 1;
            if p.1 == 0 {
                ops.push(Op::Label { id: p.0 });
            }
        }
        pending.retain(|p| p.1 > 0);
    }
    for p in pending {
        ops.push(Op::Label { id: p.0 });
    }
    match tail {
        Tail::Exit => ops.push(Op::Exit { code: 7 }),
        Tail::Goto(n) => ops.extend([Op::Const { d: PC, imm: 0x4000 }, Op::Goto { n }]),
        Tail::GotoK(n, k) => ops.extend([
            Op::Const { d: 17, imm: k },
            Op::Const { d: PC, imm: 0x4000 },
            Op::Goto { n },
        ]),
    }
    ops
}

#[derive(Debug, PartialEq)]
struct Outcome {
    stop: Stop,
    globals: Vec<u64>,
    ram: Vec<u8>,
    calls: Vec<(u16, u64, u64, u64)>,
    faults: Vec<(u64, tci64_engine::Access)>,
    restores: Vec<(u64, u32)>,
}

fn run(ops: &[Op], init: &[u64], mem: &[u8], optimize: bool) -> Outcome {
    let mut e = engine_with_ram(0x8000);
    e.core.optimize = optimize;
    e.core.guest.hand_ir = Some(ops.to_vec());
    e.core.guest.not_present.insert(0x4000);
    e.core.mem.ram_mut()[0x2000..0x4000].copy_from_slice(mem);
    for (k, v) in init.iter().enumerate() {
        e.core.regs.0[k] = *v;
    }
    e.core.regs.0[BASE as usize] = 0x2000;
    let mut bus = ToyBus::default();
    let stop = run_at(&mut e, &mut bus, 0x1000);
    Outcome {
        stop,
        globals: e.core.regs.0[..FIRST_TEMP as usize].to_vec(),
        ram: e.core.mem.ram()[0x2000..0x4000].to_vec(),
        calls: e.core.guest.calls.clone(),
        faults: e.core.guest.faults.clone(),
        restores: e.core.guest.restores.clone(),
    }
}

fn check(items: &[Item], tail: Tail, init: &[u64], seed: u64) -> Result<(), TestCaseError> {
    let ops = lower_with(items, tail);
    let mut mem = vec![0u8; 0x2000];
    let mut x = seed | 1;
    for b in mem.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let plain = run(&ops, init, &mem, false);
    let opt = run(&ops, init, &mem, true);
    prop_assert!(
        plain == opt,
        "optimized and unoptimized runs differ\nops: {ops:#?}\nplain: {plain:?}\nopt: {opt:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn optimizer_preserves_semantics(
        items in prop::collection::vec(item(), 1..60),
        tail in tail(),
        init in prop::collection::vec(value(), 8),
        seed in any::<u64>(),
    ) {
        check(&items, tail, &init, seed)?;
    }
}

/// The generator is worth something: a fair share of programs run to the end, some fault on
/// a load or store or in a helper, and the optimizer really changes the code.
#[test]
fn generator_covers_exits_and_faults() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = (
        prop::collection::vec(item(), 1..60),
        prop::collection::vec(value(), 8),
    );
    let (mut exits, mut faults, mut helper_faults, mut shrunk) = (0, 0, 0, 0);
    for _ in 0..500 {
        let (items, init) = strat.new_tree(&mut runner).unwrap().current();
        let ops = lower(&items);
        let o = run(&ops, &init, &[0u8; 0x2000], true);
        match o.stop {
            Stop::Guest(7) => exits += 1,
            Stop::Guest(FAULT_STOP) if o.faults.last().is_some_and(|f| f.0 >= 0x4000) => {
                faults += 1
            }
            Stop::Guest(FAULT_STOP) => helper_faults += 1,
            s => panic!("unexpected stop {s:?}"),
        }
        let mut e = engine_with_ram(0x8000);
        e.core.guest.hand_ir = Some(ops.clone());
        run_at(&mut e, &mut ToyBus::default(), 0x1000);
        let s = e.core.stats;
        if s.ops_after_opt < s.ops_before_opt {
            shrunk += 1;
        }
    }
    assert!(
        exits > 100 && faults > 20 && shrunk > 250,
        "{exits} {faults} {helper_faults} {shrunk}"
    );
    eprintln!(
        "exits {exits}, memory faults {faults}, helper faults {helper_faults}, optimized {shrunk}"
    );
}

/// The generated programs exercise every fusion: across a few hundred of them, the optimized
/// code holds each fused form at least once.
#[test]
fn generator_reaches_every_fusion() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::HashSet;
    use tci64_engine::opt::{encode, optimize, OptConfig};
    use tci64_engine::Guest;
    let mut runner = TestRunner::deterministic();
    let strat = (prop::collection::vec(item(), 1..60), tail());
    let cfg = OptConfig {
        first_temp: FIRST_TEMP,
        trap_live: Toy::trap_live(),
        enabled: true,
        pc_slot: PC,
    };
    let mut seen = HashSet::new();
    for _ in 0..600 {
        let (items, tail) = strat.new_tree(&mut runner).unwrap().current();
        let before: HashSet<&str> = lower_with(&items, tail).iter().map(|o| o.name()).collect();
        let mut ops = lower_with(&items, tail);
        optimize(&mut ops, &cfg);
        for op in encode(&ops).code {
            // Only forms the optimizer made (not ones the generator wrote directly).
            if !before.contains(op.name()) {
                seen.insert(op.name());
            }
        }
    }
    for want in [
        "Add32", "Sub32", "And32", "Or32", "Xor32", "AddI32", "OrI32", "XorI32", "ShlI32", "Lea",
        "Lea32", "GotoI", "GotoIK", "Mov2", "MovZx32", "Zx32Mov", "Zx32x2",
    ] {
        assert!(seen.contains(want), "no {want} made; saw {seen:?}");
    }
}
