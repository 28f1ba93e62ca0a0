//! Every op of the IR through the interpreter: hand-checked edge values, agreement with
//! `eval_pure` on a grid of edge values, and agreement of the optimizer's folding with the
//! interpreter when some or all operands are constants.

mod common;

use common::{Toy, ToyBus};
use tci64_engine::interp::{exec_block, TbExit};
use tci64_engine::ir::{eval_pure, Cond};
use tci64_engine::opt::{encode, optimize, OptConfig};
use tci64_engine::{Core, Guest, Memory, Op};

const EDGES: &[u64] = &[
    0,
    1,
    2,
    31,
    32,
    63,
    64,
    65,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    i64::MIN as u64,
    u64::MAX,
    u64::MAX - 1,
    0x0123_4567_89ab_cdef,
    0xfedc_ba98_7654_3210,
];

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

const IMMS: &[i32] = &[0, 1, -1, 5, 0x7f, -0x80, i32::MIN, i32::MAX, 0x1234_5678];
const SHIFTS: &[u8] = &[0, 1, 7, 31, 32, 63, 64, 65, 127, 128, 255];
const POS: &[u8] = &[0, 1, 8, 31, 32, 56, 63];
const LENS: &[u8] = &[0, 1, 8, 16, 32, 63, 64];

fn core() -> Core<Toy> {
    Core::new(Memory::new(1 << 16, 0).unwrap(), Toy::default())
}

/// Every pure value op (all variants of immediates, positions, conditions) with destination
/// `d` and sources `a`, `b`, `c`.
fn pure_ops(d: u8, a: u8, b: u8, c: u8) -> Vec<Op> {
    let mut v = vec![
        Op::Mov { d, a },
        Op::Add { d, a, b },
        Op::Sub { d, a, b },
        Op::Mul { d, a, b },
        Op::MulHu { d, a, b },
        Op::MulHs { d, a, b },
        Op::And { d, a, b },
        Op::Or { d, a, b },
        Op::Xor { d, a, b },
        Op::Shl { d, a, b },
        Op::Shr { d, a, b },
        Op::Sar { d, a, b },
        Op::Rotl { d, a, b },
        Op::Rotr { d, a, b },
        Op::Add32 { d, a, b },
        Op::Sub32 { d, a, b },
        Op::And32 { d, a, b },
        Op::Or32 { d, a, b },
        Op::Xor32 { d, a, b },
        Op::Neg { d, a },
        Op::Not { d, a },
        Op::Zx8 { d, a },
        Op::Zx16 { d, a },
        Op::Zx32 { d, a },
        Op::Sx8 { d, a },
        Op::Sx16 { d, a },
        Op::Sx32 { d, a },
        Op::Clz { d, a },
        Op::Ctz { d, a },
        Op::Popcnt { d, a },
        Op::Bswap64 { d, a },
        Op::Bswap32 { d, a },
        Op::Select { d, c, a, b },
    ];
    for &imm in IMMS {
        v.extend([
            Op::AddI { d, a, imm },
            Op::AndI { d, a, imm },
            Op::OrI { d, a, imm },
            Op::XorI { d, a, imm },
            Op::AddI32 { d, a, imm },
            Op::OrI32 { d, a, imm },
            Op::XorI32 { d, a, imm },
        ]);
        for sh in [0u8, 1, 3, 63, 64] {
            v.push(Op::Lea { d, a, b, sh, imm });
            v.push(Op::Lea32 { d, a, b, sh, imm });
        }
        for cond in CONDS {
            v.push(Op::SetCondI { d, a, imm, cond });
        }
    }
    for &imm in SHIFTS {
        v.extend([
            Op::ShlI { d, a, imm },
            Op::ShrI { d, a, imm },
            Op::SarI { d, a, imm },
            Op::RotlI { d, a, imm },
            Op::Rotl32I { d, a, imm },
            Op::ShlI32 { d, a, imm },
        ]);
    }
    for &pos in POS {
        for &len in LENS {
            v.push(Op::Deposit { d, a, b, pos, len });
            v.push(Op::Extract { d, a, pos, len });
        }
    }
    for cond in CONDS {
        v.push(Op::SetCond { d, a, b, cond });
    }
    v
}

/// Run `op` alone in the interpreter with r1..r3 = x, y, z; returns the register file.
fn interp(core: &mut Core<Toy>, op: Op, x: u64, y: u64, z: u64) -> [u64; 256] {
    core.regs.0 = [0xdead_beef; 256];
    core.regs.0[1] = x;
    core.regs.0[2] = y;
    core.regs.0[3] = z;
    let exit = exec_block(core, &mut ToyBus::default(), &[op, Op::Exit { code: 9 }]);
    assert_eq!(exit, TbExit::Guest(9));
    core.regs.0
}

fn one(op: Op, x: u64, y: u64, z: u64) -> u64 {
    interp(&mut core(), op, x, y, z)[4]
}

const D: u8 = 4;
const A: u8 = 1;
const B: u8 = 2;
const C: u8 = 3;

#[test]
fn arithmetic_edges() {
    let (max, min) = (i64::MAX as u64, i64::MIN as u64);
    let add = Op::Add { d: D, a: A, b: B };
    assert_eq!(one(add, u64::MAX, 1, 0), 0);
    assert_eq!(one(add, max, 1, 0), min);
    let sub = Op::Sub { d: D, a: A, b: B };
    assert_eq!(one(sub, 0, 1, 0), u64::MAX);
    assert_eq!(one(sub, min, 1, 0), max);
    let mul = Op::Mul { d: D, a: A, b: B };
    assert_eq!(one(mul, min, u64::MAX, 0), min);
    assert_eq!(one(mul, 0x1_0000_0000, 0x1_0000_0000, 0), 0);
    let mulhu = Op::MulHu { d: D, a: A, b: B };
    assert_eq!(one(mulhu, u64::MAX, u64::MAX, 0), u64::MAX - 1);
    assert_eq!(one(mulhu, 0x1_0000_0000, 0x1_0000_0000, 0), 1);
    assert_eq!(one(mulhu, u64::MAX, 2, 0), 1);
    let mulhs = Op::MulHs { d: D, a: A, b: B };
    assert_eq!(one(mulhs, u64::MAX, u64::MAX, 0), 0);
    assert_eq!(one(mulhs, u64::MAX, 1, 0), u64::MAX);
    assert_eq!(one(mulhs, min, min, 0), 1 << 62);
    assert_eq!(one(mulhs, min, max, 0), 0xc000_0000_0000_0000);
    assert_eq!(one(Op::Neg { d: D, a: A }, min, 0, 0), min);
    assert_eq!(one(Op::Neg { d: D, a: A }, 1, 0, 0), u64::MAX);
    assert_eq!(one(Op::Neg { d: D, a: A }, 0, 0, 0), 0);
    assert_eq!(one(Op::Not { d: D, a: A }, 0, 0, 0), u64::MAX);
    let addi = |imm| Op::AddI { d: D, a: A, imm };
    assert_eq!(one(addi(-1), 0, 0, 0), u64::MAX);
    assert_eq!(one(addi(i32::MIN), 0, 0, 0), 0xffff_ffff_8000_0000);
    assert_eq!(one(addi(1), u64::MAX, 0, 0), 0);
    let add32 = Op::Add32 { d: D, a: A, b: B };
    assert_eq!(one(add32, 0xffff_ffff, 1, 0), 0);
    assert_eq!(one(add32, u64::MAX, u64::MAX, 0), 0xffff_fffe);
    let sub32 = Op::Sub32 { d: D, a: A, b: B };
    assert_eq!(one(sub32, 0, 1, 0), 0xffff_ffff);
    assert_eq!(one(sub32, 0x5_0000_0003, 1, 0), 2);
    let addi32 = |imm| Op::AddI32 { d: D, a: A, imm };
    assert_eq!(one(addi32(5), 0x1_0000_0000, 0, 0), 5);
    assert_eq!(one(addi32(-1), 0, 0, 0), 0xffff_ffff);
    assert_eq!(one(addi32(i32::MIN), 0x8000_0000, 0, 0), 0);
}

#[test]
fn logic_edges() {
    let andi = |imm| Op::AndI { d: D, a: A, imm };
    assert_eq!(one(andi(-1), u64::MAX, 0, 0), u64::MAX);
    assert_eq!(one(andi(i32::MIN), u64::MAX, 0, 0), 0xffff_ffff_8000_0000);
    assert_eq!(one(andi(0xff), u64::MAX, 0, 0), 0xff);
    assert_eq!(
        one(
            Op::OrI {
                d: D,
                a: A,
                imm: -2
            },
            1,
            0,
            0
        ),
        u64::MAX,
        "OrI sign-extends"
    );
    assert_eq!(
        one(
            Op::XorI {
                d: D,
                a: A,
                imm: -1
            },
            0x1234,
            0,
            0
        ),
        !0x1234u64
    );
    assert_eq!(one(Op::And { d: D, a: A, b: B }, 0xf0f0, 0xff00, 0), 0xf000);
    assert_eq!(one(Op::Or { d: D, a: A, b: B }, 0xf0f0, 0xff00, 0), 0xfff0);
    assert_eq!(one(Op::Xor { d: D, a: A, b: B }, 0xf0f0, 0xff00, 0), 0x0ff0);
}

#[test]
fn shift_edges_counts_are_mod_64() {
    let min = i64::MIN as u64;
    let shl = Op::Shl { d: D, a: A, b: B };
    let shr = Op::Shr { d: D, a: A, b: B };
    let sar = Op::Sar { d: D, a: A, b: B };
    let rotl = Op::Rotl { d: D, a: A, b: B };
    let rotr = Op::Rotr { d: D, a: A, b: B };
    assert_eq!(one(shl, 1, 0, 0), 1);
    assert_eq!(one(shl, 1, 63, 0), min);
    assert_eq!(one(shl, 1, 64, 0), 1);
    assert_eq!(one(shl, 1, 65, 0), 2);
    assert_eq!(one(shl, 1, u64::MAX, 0), min);
    assert_eq!(one(shr, min, 63, 0), 1);
    assert_eq!(one(shr, min, 64, 0), min);
    assert_eq!(one(shr, u64::MAX, 1, 0), i64::MAX as u64);
    assert_eq!(one(sar, min, 63, 0), u64::MAX);
    assert_eq!(one(sar, min, 64, 0), min);
    assert_eq!(one(sar, min, 1, 0), 0xc000_0000_0000_0000);
    assert_eq!(one(sar, i64::MAX as u64, 62, 0), 1);
    assert_eq!(one(rotl, min | 1, 1, 0), 3);
    assert_eq!(one(rotl, 0x1234, 64, 0), 0x1234);
    assert_eq!(one(rotl, 0x1234, 0, 0), 0x1234);
    assert_eq!(one(rotr, 1, 1, 0), min);
    assert_eq!(one(rotr, 1, 65, 0), min);
    assert_eq!(one(rotr, 0x1234, 128, 0), 0x1234);
    let shli = |imm| Op::ShlI { d: D, a: A, imm };
    let shri = |imm| Op::ShrI { d: D, a: A, imm };
    let sari = |imm| Op::SarI { d: D, a: A, imm };
    assert_eq!(one(shli(0), 7, 0, 0), 7);
    assert_eq!(one(shli(63), 1, 0, 0), min);
    assert_eq!(one(shli(64), 3, 0, 0), 3);
    assert_eq!(one(shli(255), 1, 0, 0), min);
    assert_eq!(one(shri(63), min, 0, 0), 1);
    assert_eq!(one(shri(64), min, 0, 0), min);
    assert_eq!(one(sari(63), min, 0, 0), u64::MAX);
    assert_eq!(one(sari(127), min, 0, 0), u64::MAX);
    assert_eq!(one(sari(128), min, 0, 0), min);
}

#[test]
fn extension_and_bit_ops() {
    let t = |f: fn(u8, u8) -> Op, x: u64| one(f(D, A), x, 0, 0);
    let zx8 = |d, a| Op::Zx8 { d, a };
    let zx16 = |d, a| Op::Zx16 { d, a };
    let zx32 = |d, a| Op::Zx32 { d, a };
    let sx8 = |d, a| Op::Sx8 { d, a };
    let sx16 = |d, a| Op::Sx16 { d, a };
    let sx32 = |d, a| Op::Sx32 { d, a };
    let clz = |d, a| Op::Clz { d, a };
    let ctz = |d, a| Op::Ctz { d, a };
    let popcnt = |d, a| Op::Popcnt { d, a };
    let bswap64 = |d, a| Op::Bswap64 { d, a };
    let bswap32 = |d, a| Op::Bswap32 { d, a };
    assert_eq!(t(zx8, 0x1ff), 0xff);
    assert_eq!(t(zx16, u64::MAX), 0xffff);
    assert_eq!(t(zx32, u64::MAX), 0xffff_ffff);
    assert_eq!(t(sx8, 0x80), 0xffff_ffff_ffff_ff80);
    assert_eq!(t(sx8, 0x17f), 0x7f);
    assert_eq!(t(sx16, 0x8000), 0xffff_ffff_ffff_8000);
    assert_eq!(t(sx16, 0xf_7fff), 0x7fff);
    assert_eq!(t(sx32, 0x8000_0000), 0xffff_ffff_8000_0000);
    assert_eq!(t(sx32, 0xffff_ffff_7fff_ffff), 0x7fff_ffff);
    assert_eq!(t(clz, 0), 64);
    assert_eq!(t(clz, 1), 63);
    assert_eq!(t(clz, u64::MAX), 0);
    assert_eq!(t(ctz, 0), 64);
    assert_eq!(t(ctz, i64::MIN as u64), 63);
    assert_eq!(t(ctz, 1), 0);
    assert_eq!(t(popcnt, u64::MAX), 64);
    assert_eq!(t(popcnt, 0), 0);
    assert_eq!(t(popcnt, 0x8000_0000_0000_0001), 2);
    assert_eq!(t(bswap64, 0x0102_0304_0506_0708), 0x0807_0605_0403_0201);
    assert_eq!(t(bswap32, 0xffff_ffff_0102_0304), 0x0403_0201);
}

#[test]
fn deposit_extract_edges() {
    let dep = |x, y, pos, len| {
        one(
            Op::Deposit {
                d: D,
                a: A,
                b: B,
                pos,
                len,
            },
            x,
            y,
            0,
        )
    };
    let ext = |x, pos, len| {
        one(
            Op::Extract {
                d: D,
                a: A,
                pos,
                len,
            },
            x,
            0,
            0,
        )
    };
    let m = u64::MAX;
    assert_eq!(dep(m, 0, 0, 8), 0xffff_ffff_ffff_ff00);
    assert_eq!(dep(0, 0x1ab, 0, 8), 0xab);
    assert_eq!(dep(m, 0, 8, 8), 0xffff_ffff_ffff_00ff);
    assert_eq!(dep(0, 0x1ab, 8, 8), 0xab00);
    assert_eq!(dep(0, 0x1ab, 56, 8), 0xab00_0000_0000_0000);
    assert_eq!(dep(m, 0, 56, 8), 0x00ff_ffff_ffff_ffff);
    assert_eq!(dep(0, 3, 0, 1), 1);
    assert_eq!(dep(0, 3, 8, 1), 0x100);
    assert_eq!(dep(m, 2, 56, 1), 0xfeff_ffff_ffff_ffff);
    assert_eq!(dep(m, 0x1_2345_6789, 0, 32), 0xffff_ffff_2345_6789);
    assert_eq!(dep(m, 0x1_2345_6789, 8, 32), 0xffff_ff23_4567_89ff);
    assert_eq!(
        dep(0x1111, 0x1234_5678_9abc_def0, 0, 64),
        0x1234_5678_9abc_def0
    );
    // pos + len past 64: the bits above 63 are dropped.
    assert_eq!(dep(0, m, 56, 32), 0xff00_0000_0000_0000);
    assert_eq!(dep(0x1234, m, 8, 64), 0xffff_ffff_ffff_ff34);
    let x = 0x0123_4567_89ab_cdef;
    assert_eq!(ext(x, 0, 8), 0xef);
    assert_eq!(ext(x, 8, 8), 0xcd);
    assert_eq!(ext(x, 56, 8), 0x01);
    assert_eq!(ext(x, 0, 1), 1);
    assert_eq!(ext(x, 8, 1), 1);
    assert_eq!(ext(x, 56, 1), 1);
    assert_eq!(ext(x, 4, 1), 0);
    assert_eq!(ext(i64::MIN as u64, 63, 1), 1);
    assert_eq!(ext(x, 0, 32), 0x89ab_cdef);
    assert_eq!(ext(x, 8, 32), 0x6789_abcd);
    assert_eq!(ext(x, 56, 32), 0x01);
    assert_eq!(ext(x, 0, 64), x);
    assert_eq!(ext(x, 8, 64), x >> 8);
    assert_eq!(ext(x, 0, 0), 0);
}

fn cond_ref(c: Cond, a: u64, b: u64) -> bool {
    let (sa, sb) = (a as i64, b as i64);
    match c {
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::LtU => a < b,
        Cond::GeU => !(a < b),
        Cond::LeU => !(b < a),
        Cond::GtU => b < a,
        Cond::LtS => sa < sb,
        Cond::GeS => !(sa < sb),
        Cond::LeS => !(sb < sa),
        Cond::GtS => sb < sa,
        Cond::TstZ => a & b == 0,
        Cond::TstNz => a & b != 0,
    }
}

#[test]
fn every_cond_setcond_branch_and_invert() {
    let mut core = core();
    for cond in CONDS {
        assert_eq!(cond.invert().invert(), cond);
        for &x in EDGES {
            for &y in EDGES {
                let want = cond_ref(cond, x, y);
                assert_eq!(cond.eval(x, y), want, "{cond:?} {x:#x} {y:#x}");
                assert_eq!(cond.invert().eval(x, y), !want, "invert {cond:?}");
                let r = interp(
                    &mut core,
                    Op::SetCond {
                        d: D,
                        a: A,
                        b: B,
                        cond,
                    },
                    x,
                    y,
                    0,
                );
                assert_eq!(r[4], want as u64, "SetCond {cond:?} {x:#x} {y:#x}");
                // Branches: BrCond to op 2 (Exit 2) or fall through to Exit 1.
                for br in [
                    Op::BrCond {
                        a: A,
                        b: B,
                        cond,
                        t: 2,
                    },
                    Op::BrCondI {
                        a: A,
                        imm: y as i32,
                        cond,
                        t: 2,
                    },
                ] {
                    let yy = if matches!(br, Op::BrCondI { .. }) {
                        y as i32 as i64 as u64
                    } else {
                        y
                    };
                    core.regs.0[1] = x;
                    core.regs.0[2] = y;
                    let code = [br, Op::Exit { code: 1 }, Op::Exit { code: 2 }];
                    let exit = exec_block(&mut core, &mut ToyBus::default(), &code);
                    let want = cond_ref(cond, x, yy);
                    assert_eq!(exit, TbExit::Guest(if want { 2 } else { 1 }), "{br:?}");
                }
            }
        }
    }
    // Signed boundaries explicitly.
    let min = i64::MIN as u64;
    assert!(Cond::LtS.eval(min, 0) && !Cond::LtU.eval(min, 0));
    assert!(Cond::GtS.eval(0, u64::MAX) && Cond::LtU.eval(0, u64::MAX));
    assert!(Cond::LeS.eval(min, i64::MAX as u64) && Cond::GeU.eval(min, i64::MAX as u64));
}

#[test]
fn select_mov_const() {
    let sel = Op::Select {
        d: D,
        c: C,
        a: A,
        b: B,
    };
    assert_eq!(one(sel, 10, 20, 0), 20);
    assert_eq!(one(sel, 10, 20, 1), 10);
    assert_eq!(one(sel, 10, 20, i64::MIN as u64), 10);
    assert_eq!(one(Op::Mov { d: D, a: A }, 77, 0, 0), 77);
    assert_eq!(
        one(
            Op::Const {
                d: D,
                imm: u64::MAX
            },
            0,
            0,
            0
        ),
        u64::MAX
    );
    // Nothing else is touched.
    let r = interp(&mut core(), Op::Const { d: D, imm: 5 }, 1, 2, 3);
    assert!(r[5..].iter().all(|&v| v == 0xdead_beef) && r[0] == 0xdead_beef);
}

/// Interpreter == eval_pure for every pure op, on the whole edge grid, and with the
/// destination aliasing each source.
#[test]
fn interpreter_agrees_with_eval_pure() {
    let mut core = core();
    let mut n = 0;
    for (d, a, b, c) in [
        (4, 1, 2, 3),
        (1, 1, 2, 3),
        (2, 1, 2, 3),
        (3, 1, 2, 3),
        (4, 1, 1, 1),
    ] {
        let ops = pure_ops(d, a, b, c);
        for op in &ops {
            for &x in EDGES {
                for &y in EDGES {
                    for z in [0, 1, u64::MAX] {
                        let regs = interp(&mut core, *op, x, y, z);
                        let mut before = [0xdead_beef; 256];
                        before[1] = x;
                        before[2] = y;
                        before[3] = z;
                        let want = eval_pure(op, |s| before[s as usize]).expect("pure");
                        assert_eq!(regs[d as usize], want, "{op:?} x={x:#x} y={y:#x} z={z}");
                        n += 1;
                    }
                }
            }
        }
    }
    assert!(n > 100_000);
    // Non-value ops are not pure.
    for op in [
        Op::Nop,
        Op::Ld8 {
            d: 1,
            a: 2,
            disp: 0,
            mmu: 0,
        },
        Op::St64 {
            v: 1,
            a: 2,
            disp: 0,
            mmu: 0,
        },
        Op::Call {
            f: 0,
            d: 1,
            a: 1,
            b: 1,
            c: 1,
        },
        Op::Br { t: 0 },
        Op::Goto { n: 0 },
        Op::GotoPtr,
        Op::Exit { code: 0 },
    ] {
        assert_eq!(eval_pure(&op, |_| 0), None, "{op:?}");
    }
}

fn cfg(enabled: bool) -> OptConfig {
    OptConfig {
        first_temp: common::FIRST_TEMP,
        trap_live: Toy::trap_live(),
        enabled,
        pc_slot: common::PC,
    }
}

/// Run a hand-built block through optimize + encode + interpreter.
fn pipeline(core: &mut Core<Toy>, ops: &[Op], enabled: bool) -> [u64; 256] {
    let mut v = ops.to_vec();
    optimize(&mut v, &cfg(enabled));
    let e = encode(&v);
    core.regs.0 = [0; 256];
    core.regs.0[1] = 0x1111;
    core.regs.0[2] = 0x2222;
    core.regs.0[3] = 0x3333;
    let exit = exec_block(core, &mut ToyBus::default(), &e.code);
    assert_eq!(exit, TbExit::Guest(7), "{:?}", e.code);
    core.regs.0
}

/// Constant folding and the strength reductions (`Sub` with a constant -> `AddI`, `Shl` ->
/// `ShlI`, `SetCond` -> `SetCondI`, ...) agree with the unoptimized interpreter, for every op
/// with all, some and none of its sources constant.
#[test]
fn folding_agrees_with_interpreter() {
    let mut core = core();
    // Sources are temps 40, 41, 42 (loaded from constants or globals); result into global 4.
    let ops = pure_ops(4, 40, 41, 42);
    let vals = [
        0,
        1,
        63,
        64,
        0x8000_0000,
        0xffff_ffff,
        i64::MIN as u64,
        u64::MAX,
        0x1234_5678_9abc_def0,
    ];
    for op in &ops {
        for &x in &vals {
            for &y in &vals {
                for mask in 0..8u8 {
                    let mut block = vec![Op::InsnStart { n: 0 }];
                    for (k, (s, v)) in [(40u8, x), (41, y), (42, x ^ y)].into_iter().enumerate() {
                        if mask & (1 << k) != 0 {
                            block.push(Op::Const { d: s, imm: v });
                        } else {
                            block.push(Op::Const {
                                d: 1 + k as u8,
                                imm: v,
                            });
                            block.push(Op::Call {
                                f: common::H_SUM,
                                d: s,
                                a: 1 + k as u8,
                                b: 0,
                                c: 0,
                            });
                        }
                    }
                    block.push(*op);
                    block.push(Op::Exit { code: 7 });
                    core.guest.calls.clear();
                    let a = pipeline(&mut core, &block, false);
                    let b = pipeline(&mut core, &block, true);
                    assert_eq!(a[..32], b[..32], "{op:?} x={x:#x} y={y:#x} mask={mask}");
                }
            }
        }
    }
}

/// `exec_block` is safe: code that did not come from `encode` (empty, no final exit, branch
/// targets out of range) ends the block instead of running off the end.
#[test]
fn malformed_code_does_not_run_off_the_block() {
    use tci64_engine::opt::EXIT_FELL_OFF;
    let mut core = core();
    let mut bus = ToyBus::default();
    let fell = TbExit::Guest(EXIT_FELL_OFF);
    assert_eq!(exec_block(&mut core, &mut bus, &[]), fell);
    assert_eq!(
        exec_block(&mut core, &mut bus, &[Op::Const { d: 1, imm: 1 }]),
        fell
    );
    assert_eq!(exec_block(&mut core, &mut bus, &[Op::Br { t: 99 }]), fell);
    core.regs.0[1] = 0;
    let code = [
        Op::BrCondI {
            a: 1,
            imm: 0,
            cond: Cond::Eq,
            t: 500,
        },
        Op::Exit { code: 3 },
    ];
    assert_eq!(exec_block(&mut core, &mut bus, &code), fell);
    core.regs.0[1] = 1;
    assert_eq!(exec_block(&mut core, &mut bus, &code), TbExit::Guest(3));
}

/// The fused forms' reference semantics, by hand (the interpreter and the folder share one
/// definition, so they are checked against written-out values here).
#[test]
fn fused_forms_by_hand() {
    let ev = |op: Op, x: u64, y: u64| eval_pure(&op, |s| if s == 1 { x } else { y }).unwrap();
    let (d, a, b) = (0, 1, 2);
    assert_eq!(
        ev(
            Op::Lea {
                d,
                a,
                b,
                sh: 2,
                imm: -1
            },
            0x10,
            3
        ),
        0x1b
    );
    assert_eq!(
        ev(
            Op::Lea {
                d,
                a,
                b,
                sh: 3,
                imm: 8
            },
            u64::MAX,
            1
        ),
        15
    );
    assert_eq!(
        ev(
            Op::Lea32 {
                d,
                a,
                b,
                sh: 1,
                imm: 4
            },
            0xffff_fff0,
            8
        ),
        4
    );
    assert_eq!(
        ev(Op::Xor32 { d, a, b }, 0xffff_0000_1234_5678, 0xff),
        0x1234_5687
    );
    assert_eq!(
        ev(Op::And32 { d, a, b }, u64::MAX, 0x1_8000_0001),
        0x8000_0001
    );
    assert_eq!(ev(Op::Or32 { d, a, b }, 0x1_0000_0000, 2), 2);
    assert_eq!(ev(Op::OrI32 { d, a, imm: -2 }, 1, 0), 0xffff_ffff);
    assert_eq!(ev(Op::XorI32 { d, a, imm: -1 }, 0xf, 0), 0xffff_fff0);
    assert_eq!(ev(Op::ShlI32 { d, a, imm: 4 }, 0x1234_5678, 0), 0x2345_6780);
}

/// The paired moves (`opt::pair_moves`) run their halves in order: with every aliasing of
/// their four slots, one paired op leaves the same register file as its two halves.
#[test]
fn paired_moves_run_in_order() {
    let slots = [1u8, 2, 3];
    let mut n = 0;
    for d in slots {
        for a in slots {
            for b in slots {
                for d2 in slots {
                    type Half = fn(u8, u8) -> Op;
                    let mov: Half = |d, a| Op::Mov { d, a };
                    let zx: Half = |d, a| Op::Zx32 { d, a };
                    let forms: [(Op, Half, Half); 4] = [
                        (Op::Mov2 { d, a, b, d2 }, mov, mov),
                        (Op::MovZx32 { d, a, b, d2 }, mov, zx),
                        (Op::Zx32Mov { d, a, b, d2 }, zx, mov),
                        (Op::Zx32x2 { d, a, b, d2 }, zx, zx),
                    ];
                    for (pair, f, g) in forms {
                        let run = |code: &[Op]| {
                            let mut c = core();
                            c.regs.0[1] = 0x1111_2222_8000_0001;
                            c.regs.0[2] = 0xffff_ffff_ffff_fffe;
                            c.regs.0[3] = 0x0000_0001_0000_0003;
                            let exit = exec_block(&mut c, &mut ToyBus::default(), code);
                            assert_eq!(exit, TbExit::Guest(9));
                            c.regs.0
                        };
                        let halves = run(&[f(d, a), g(d2, b), Op::Exit { code: 9 }]);
                        assert_eq!(run(&[pair, Op::Exit { code: 9 }]), halves, "{pair:?}");
                        n += 1;
                    }
                }
            }
        }
    }
    assert_eq!(n, 4 * 81);
}
