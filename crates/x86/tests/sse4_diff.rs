//! Differential tests of SSE3/SSSE3/SSE4.1/SSE4.2 against the host CPU (x86_64 hosts with
//! SSE4.2 only). The same iced-assembled instruction runs natively (copied to an executable
//! page: the immediate forms need no inline-asm variant per immediate) and in the emulator,
//! with the same XMM0/XMM1/RAX/RCX/RDX/MXCSR inputs; XMM0, MXCSR and, where the form defines
//! them, RAX/RCX and the arithmetic flags must agree. RSI points at a copy of XMM1 for the
//! memory-operand forms. Inputs mix floating-point specials (±0, ∞, NaNs, denormals), integer
//! boundary lanes and short strings over a small alphabet (with NULs), and random bits; every
//! case draws a rounding mode and DAZ/FTZ. `TCI64_DIFF_CASES` sets the cases per form
//! (default 200).
#![cfg(target_arch = "x86_64")]

mod common;
use common::jit::{cases, Guest, Host};
use common::vendor;
use iced_x86::code_asm::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The context block shared by the host stub and the guest (at DATA): inputs then outputs.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
struct Ctx {
    x0: [u64; 2],
    x1: [u64; 2],
    mxcsr: u64,
    rax: u64,
    rcx: u64,
    rdx: u64,
    o_x0: [u64; 2],
    o_mxcsr: u64,
    o_rax: u64,
    o_rcx: u64,
    o_flags: u64,
}

const C_XMM: u8 = 1;
const C_RAX: u8 = 2;
const C_RCX: u8 = 4;
const C_FLAGS: u8 = 8;

/// Load the inputs from [rbx], run `insn`, store the outputs.
fn body(a: &mut CodeAssembler, insn: &dyn Fn(&mut CodeAssembler)) {
    a.ldmxcsr(dword_ptr(rbx + 32)).unwrap();
    a.movdqu(xmm0, xmmword_ptr(rbx)).unwrap();
    a.movdqu(xmm1, xmmword_ptr(rbx + 16)).unwrap();
    a.mov(rax, qword_ptr(rbx + 40)).unwrap();
    a.mov(rcx, qword_ptr(rbx + 48)).unwrap();
    a.mov(rdx, qword_ptr(rbx + 56)).unwrap();
    a.lea(rsi, qword_ptr(rbx + 16)).unwrap();
    insn(a);
    a.pushfq().unwrap();
    a.pop(r8).unwrap();
    a.movdqu(xmmword_ptr(rbx + 64), xmm0).unwrap();
    a.stmxcsr(dword_ptr(rbx + 80)).unwrap();
    a.mov(qword_ptr(rbx + 88), rax).unwrap();
    a.mov(qword_ptr(rbx + 96), rcx).unwrap();
    a.mov(qword_ptr(rbx + 104), r8).unwrap();
}

fn f32_special() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(0x8000_0000),
        Just(0x7f80_0000),
        Just(0xff80_0000),
        (0u32..0x40_0000).prop_map(|p| 0x7fc0_0000 | p),
        (1u32..0x40_0000).prop_map(|p| 0xff80_0000 | p),
        (1u32..0x80_0000),
        (1u32..0x80_0000).prop_map(|p| 0x8000_0000 | p),
        Just(0x7f7f_ffff),
        Just(0x0080_0000),
        Just(0x3f80_0000),
        Just(0x3f00_0000),
        Just(0xbfc0_0000),
        Just(0x4b00_0000),
        (0x3e00_0000u32..0x4c00_0000),
        (0xbe00_0000u32..0xcc00_0000),
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
        Just(0x3fe0_0000_0000_0000),
        Just(0x4330_0000_0000_0000),
        (0x3fc0_0000_0000_0000u64..0x4340_0000_0000_0000),
        (0xbfc0_0000_0000_0000u64..0xc340_0000_0000_0000),
        any::<u64>(),
    ]
}

fn fp_lane() -> impl Strategy<Value = u64> {
    prop_oneof![
        f64_special(),
        (f32_special(), f32_special()).prop_map(|(a, b)| a as u64 | (b as u64) << 32),
        (f32_special(), f32_special()).prop_map(|(a, b)| a as u64 | (b as u64) << 32),
    ]
}

fn str_lane() -> impl Strategy<Value = u64> {
    let chr = prop_oneof![
        4 => Just(b'a'),
        3 => Just(b'b'),
        2 => Just(b'c'),
        2 => Just(0u8),
        1 => Just(b'z'),
        1 => Just(0x80u8),
        1 => Just(0xffu8),
        1 => any::<u8>(),
    ];
    prop::array::uniform8(chr).prop_map(u64::from_le_bytes)
}

fn int_lane() -> impl Strategy<Value = u64> {
    let byte = prop_oneof![
        Just(0u8),
        Just(1),
        Just(0x7f),
        Just(0x80),
        Just(0x81),
        Just(0xff),
        Just(0xfe),
        any::<u8>(),
    ];
    let word = prop_oneof![
        Just(0u16),
        Just(1),
        Just(0x7fff),
        Just(0x8000),
        Just(0xffff),
        Just(0x4000),
        Just(0xc000),
        any::<u16>(),
    ];
    prop_oneof![
        any::<u64>(),
        prop::array::uniform8(byte).prop_map(u64::from_le_bytes),
        prop::array::uniform4(word).prop_map(|w| {
            w.iter()
                .enumerate()
                .fold(0u64, |r, (i, &x)| r | (x as u64) << (16 * i))
        }),
        prop_oneof![
            Just(0u64),
            Just(u64::MAX),
            Just(0x8000_0000_0000_0000),
            Just(0x7fff_ffff_ffff_ffff),
            Just(0x8000_0000_7fff_ffff),
            any::<u32>().prop_map(|x| x as u64),
            any::<u32>().prop_map(|x| x as i32 as i64 as u64),
        ],
    ]
}

fn gpr() -> impl Strategy<Value = u64> {
    prop_oneof![
        (-20i64..20).prop_map(|x| x as u64),
        (-20i64..20).prop_map(|x| x as u32 as u64 | 0x1234_5678_0000_0000),
        Just(0x8000_0000u64),
        Just(i64::MIN as u64),
        any::<u64>(),
    ]
}

fn inputs() -> impl Strategy<Value = Ctx> {
    let l4 = |s: BoxedStrategy<u64>| [s.clone(), s.clone(), s.clone(), s];
    (
        prop_oneof![
            l4(fp_lane().boxed()),
            l4(str_lane().boxed()),
            l4(int_lane().boxed()),
            l4(prop_oneof![fp_lane(), str_lane(), int_lane()].boxed()),
        ],
        0u64..4,
        any::<bool>(),
        any::<bool>(),
        (gpr(), gpr(), gpr()),
        0u32..8,
    )
        .prop_map(|(l, rc, daz, ftz, (ga, gc, gd), sel)| {
            let mut x1 = [l[2], l[3]];
            if sel == 0 {
                x1 = [l[0], l[1]]; // equal operands
            }
            Ctx {
                x0: [l[0], l[1]],
                x1,
                mxcsr: 0x1f80 | rc << 13 | (daz as u64) << 6 | (ftz as u64) << 15,
                rax: ga,
                rcx: gc,
                rdx: gd,
                ..Ctx::default()
            }
        })
}

fn check_n(name: &str, cmp: u8, n: u32, insn: &dyn Fn(&mut CodeAssembler)) {
    let host = Host::<Ctx>::new(|a| body(a, insn));
    let mut g = Guest::new(|a| body(a, insn));
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let g = std::cell::RefCell::new(&mut g);
    runner
        .run(&inputs(), |inp| {
            let h = host.run(&inp);
            let e = g.borrow_mut().run(&inp);
            // The vendor table's DotProduct entry: compared by class on non-Intel hosts.
            let by_class = vendor::dot_product_by_class(name);
            if cmp & C_XMM != 0 && by_class {
                let bits = if name.starts_with("dppd") { 64 } else { 32 };
                let lanes = vendor::dot_product_lanes_agree(h.o_x0, e.o_x0, bits);
                prop_assert!(
                    lanes.is_ok(),
                    "{}: xmm0 lane {:?}: host {:x?} emu {:x?}; inp {:x?}",
                    name,
                    lanes,
                    h.o_x0,
                    e.o_x0,
                    inp
                );
            } else if cmp & C_XMM != 0 {
                prop_assert_eq!(e.o_x0, h.o_x0, "{}: xmm0; inp {:x?}", name, inp);
            }
            if cmp & C_RAX != 0 {
                prop_assert_eq!(e.o_rax, h.o_rax, "{}: rax; inp {:x?}", name, inp);
            }
            if cmp & C_RCX != 0 {
                prop_assert_eq!(e.o_rcx, h.o_rcx, "{}: rcx; inp {:x?}", name, inp);
            }
            if cmp & C_FLAGS != 0 {
                prop_assert_eq!(
                    e.o_flags & 0x8d5,
                    h.o_flags & 0x8d5,
                    "{}: flags; inp {:x?}",
                    name,
                    inp
                );
            }
            let mxcsr_cmp = if by_class { !0x3f } else { !0 };
            prop_assert_eq!(
                e.o_mxcsr & mxcsr_cmp,
                h.o_mxcsr & mxcsr_cmp,
                "{}: mxcsr; inp {:x?}",
                name,
                inp
            );
            Ok(())
        })
        .unwrap();
}

fn check(name: &str, cmp: u8, insn: &dyn Fn(&mut CodeAssembler)) {
    check_n(name, cmp, cases(), insn)
}

fn host_has(feature: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|l| l.split_whitespace().any(|f| f == feature))
        })
        .unwrap_or(false)
}

/// The oracle must have the instructions under test: no silent skip on a host without them.
fn need_sse42() {
    assert!(
        host_has("sse4_2"),
        "this differential test needs an SSE4.2 host CPU as its oracle"
    );
}

macro_rules! forms {
    ($($test:ident: $cmp:expr, |$a:ident| $body:expr;)*) => {$(
        #[test]
        fn $test() {
            need_sse42();
            check(stringify!($test), $cmp, &|$a: &mut CodeAssembler| { $body.unwrap(); });
        }
    )*};
}

const X: u8 = C_XMM;
const XF: u8 = C_XMM | C_FLAGS;
const F: u8 = C_FLAGS;
const A: u8 = C_RAX;
const CF: u8 = C_RCX | C_FLAGS;

forms! {
    // SSE3
    addsubps: X, |a| a.addsubps(xmm0, xmm1);
    addsubpd: X, |a| a.addsubpd(xmm0, xmm1);
    haddps: X, |a| a.haddps(xmm0, xmm1);
    haddpd: X, |a| a.haddpd(xmm0, xmm1);
    hsubps: X, |a| a.hsubps(xmm0, xmm1);
    hsubpd: X, |a| a.hsubpd(xmm0, xmm1);
    haddps_m: X, |a| a.haddps(xmm0, xmmword_ptr(rsi));
    lddqu: X, |a| a.lddqu(xmm0, xmmword_ptr(rsi + 1));
    movddup: X, |a| a.movddup(xmm0, xmm1);
    movddup_m: X, |a| a.movddup(xmm0, qword_ptr(rsi + 8));
    movshdup: X, |a| a.movshdup(xmm0, xmm1);
    movsldup: X, |a| a.movsldup(xmm0, xmm1);
    // SSSE3
    pshufb: X, |a| a.pshufb(xmm0, xmm1);
    pshufb_m: X, |a| a.pshufb(xmm0, xmmword_ptr(rsi));
    phaddw: X, |a| a.phaddw(xmm0, xmm1);
    phaddd: X, |a| a.phaddd(xmm0, xmm1);
    phaddsw: X, |a| a.phaddsw(xmm0, xmm1);
    phsubw: X, |a| a.phsubw(xmm0, xmm1);
    phsubd: X, |a| a.phsubd(xmm0, xmm1);
    phsubsw: X, |a| a.phsubsw(xmm0, xmm1);
    pmaddubsw: X, |a| a.pmaddubsw(xmm0, xmm1);
    pmulhrsw: X, |a| a.pmulhrsw(xmm0, xmm1);
    psignb: X, |a| a.psignb(xmm0, xmm1);
    psignw: X, |a| a.psignw(xmm0, xmm1);
    psignd: X, |a| a.psignd(xmm0, xmm1);
    pabsb: X, |a| a.pabsb(xmm0, xmm1);
    pabsw: X, |a| a.pabsw(xmm0, xmm1);
    pabsd: X, |a| a.pabsd(xmm0, xmm1);
    palignr_0: X, |a| a.palignr(xmm0, xmm1, 0);
    palignr_5: X, |a| a.palignr(xmm0, xmm1, 5);
    palignr_16: X, |a| a.palignr(xmm0, xmm1, 16);
    palignr_27: X, |a| a.palignr(xmm0, xmm1, 27);
    palignr_40: X, |a| a.palignr(xmm0, xmm1, 40);
    palignr_m: X, |a| a.palignr(xmm0, xmmword_ptr(rsi), 9);
    // SSE4.1
    pblendvb: X, |a| a.pshufd(xmm2, xmm1, 0x4e).and_then(|_| a.pblendvb(xmm1, xmm2)).and_then(|_| a.movdqa(xmm0, xmm1));
    blendvps: X, |a| a.pshufd(xmm2, xmm1, 0x4e).and_then(|_| a.blendvps(xmm1, xmm2)).and_then(|_| a.movdqa(xmm0, xmm1));
    blendvpd: X, |a| a.pshufd(xmm2, xmm1, 0x4e).and_then(|_| a.blendvpd(xmm1, xmm2)).and_then(|_| a.movdqa(xmm0, xmm1));
    blendps: X, |a| a.blendps(xmm0, xmm1, 0b1010);
    blendpd: X, |a| a.blendpd(xmm0, xmm1, 1);
    pblendw: X, |a| a.pblendw(xmm0, xmm1, 0x5c);
    pminsb: X, |a| a.pminsb(xmm0, xmm1);
    pminsd: X, |a| a.pminsd(xmm0, xmm1);
    pminuw: X, |a| a.pminuw(xmm0, xmm1);
    pminud: X, |a| a.pminud(xmm0, xmm1);
    pmaxsb: X, |a| a.pmaxsb(xmm0, xmm1);
    pmaxsd: X, |a| a.pmaxsd(xmm0, xmm1);
    pmaxuw: X, |a| a.pmaxuw(xmm0, xmm1);
    pmaxud: X, |a| a.pmaxud(xmm0, xmm1);
    pmulld: X, |a| a.pmulld(xmm0, xmm1);
    pmuldq: X, |a| a.pmuldq(xmm0, xmm1);
    pmovsxbw: X, |a| a.pmovsxbw(xmm0, xmm1);
    pmovsxbd: X, |a| a.pmovsxbd(xmm0, xmm1);
    pmovsxbq: X, |a| a.pmovsxbq(xmm0, xmm1);
    pmovsxwd: X, |a| a.pmovsxwd(xmm0, xmm1);
    pmovsxwq: X, |a| a.pmovsxwq(xmm0, xmm1);
    pmovsxdq: X, |a| a.pmovsxdq(xmm0, xmm1);
    pmovzxbw: X, |a| a.pmovzxbw(xmm0, xmm1);
    pmovzxbd: X, |a| a.pmovzxbd(xmm0, xmm1);
    pmovzxbq: X, |a| a.pmovzxbq(xmm0, xmm1);
    pmovzxwd: X, |a| a.pmovzxwd(xmm0, xmm1);
    pmovzxwq: X, |a| a.pmovzxwq(xmm0, xmm1);
    pmovzxdq: X, |a| a.pmovzxdq(xmm0, xmm1);
    pmovsxbw_m: X, |a| a.pmovsxbw(xmm0, qword_ptr(rsi + 3));
    pmovzxbq_m: X, |a| a.pmovzxbq(xmm0, word_ptr(rsi + 5));
    pmovsxwd_m: X, |a| a.pmovsxwd(xmm0, qword_ptr(rsi + 8));
    pmovzxbd_m: X, |a| a.pmovzxbd(xmm0, dword_ptr(rsi + 7));
    ptest: F, |a| a.ptest(xmm0, xmm1);
    ptest_m: F, |a| a.ptest(xmm0, xmmword_ptr(rsi));
    pcmpeqq: X, |a| a.pcmpeqq(xmm0, xmm1);
    packusdw: X, |a| a.packusdw(xmm0, xmm1);
    pextrb: A, |a| a.pextrb(eax, xmm1, 13);
    pextrb64: A, |a| a.pextrb(rax, xmm1, 0x17);
    pextrw_r: A, |a| a.pextrw(eax, xmm1, 5);
    pextrd: A, |a| a.pextrd(eax, xmm1, 2);
    pextrq: A, |a| a.pextrq(rax, xmm1, 1);
    extractps: A, |a| a.extractps(eax, xmm1, 3);
    extractps64: A, |a| a.extractps(rax, xmm1, 1);
    pextrb_m: X, |a| a.pextrb(byte_ptr(rbx + 67), xmm1, 9).and_then(|_| a.movdqu(xmm0, xmmword_ptr(rbx + 64)));
    pextrw_m: X, |a| a.pextrw(word_ptr(rbx + 70), xmm1, 7).and_then(|_| a.movdqu(xmm0, xmmword_ptr(rbx + 64)));
    pextrd_m: X, |a| a.pextrd(dword_ptr(rbx + 68), xmm1, 1).and_then(|_| a.movdqu(xmm0, xmmword_ptr(rbx + 64)));
    pextrq_m: X, |a| a.pextrq(qword_ptr(rbx + 72), xmm1, 0).and_then(|_| a.movdqu(xmm0, xmmword_ptr(rbx + 64)));
    extractps_m: X, |a| a.extractps(dword_ptr(rbx + 64), xmm1, 2).and_then(|_| a.movdqu(xmm0, xmmword_ptr(rbx + 64)));
    pinsrb: X, |a| a.pinsrb(xmm0, eax, 11);
    pinsrb_m: X, |a| a.pinsrb(xmm0, byte_ptr(rsi + 3), 4);
    pinsrd: X, |a| a.pinsrd(xmm0, eax, 3);
    pinsrd_m: X, |a| a.pinsrd(xmm0, dword_ptr(rsi + 4), 1);
    pinsrq: X, |a| a.pinsrq(xmm0, rax, 1);
    pinsrq_m: X, |a| a.pinsrq(xmm0, qword_ptr(rsi + 8), 0);
    insertps_0: X, |a| a.insertps(xmm0, xmm1, 0x00);
    insertps_a: X, |a| a.insertps(xmm0, xmm1, 0xd5);
    insertps_b: X, |a| a.insertps(xmm0, xmm1, 0x6a);
    insertps_m: X, |a| a.insertps(xmm0, dword_ptr(rsi + 8), 0xe9);
    roundss_0: X, |a| a.roundss(xmm0, xmm1, 0);
    roundss_1: X, |a| a.roundss(xmm0, xmm1, 1);
    roundss_2: X, |a| a.roundss(xmm0, xmm1, 2);
    roundss_3: X, |a| a.roundss(xmm0, xmm1, 3);
    roundss_4: X, |a| a.roundss(xmm0, xmm1, 4);
    roundss_9: X, |a| a.roundss(xmm0, xmm1, 9);
    roundss_c: X, |a| a.roundss(xmm0, xmm1, 0xc);
    roundsd_0: X, |a| a.roundsd(xmm0, xmm1, 0);
    roundsd_1: X, |a| a.roundsd(xmm0, xmm1, 1);
    roundsd_a: X, |a| a.roundsd(xmm0, xmm1, 0xa);
    roundsd_4: X, |a| a.roundsd(xmm0, xmm1, 4);
    roundsd_m: X, |a| a.roundsd(xmm0, qword_ptr(rsi + 8), 3);
    roundps_0: X, |a| a.roundps(xmm0, xmm1, 0);
    roundps_2: X, |a| a.roundps(xmm0, xmm1, 2);
    roundps_b: X, |a| a.roundps(xmm0, xmm1, 0xb);
    roundps_4: X, |a| a.roundps(xmm0, xmm1, 4);
    roundpd_1: X, |a| a.roundpd(xmm0, xmm1, 1);
    roundpd_3: X, |a| a.roundpd(xmm0, xmm1, 3);
    roundpd_c: X, |a| a.roundpd(xmm0, xmm1, 0xc);
    dpps_ff: X, |a| a.dpps(xmm0, xmm1, 0xff);
    dpps_71: X, |a| a.dpps(xmm0, xmm1, 0x71);
    dpps_a6: X, |a| a.dpps(xmm0, xmm1, 0xa6);
    dpps_3c: X, |a| a.dpps(xmm0, xmm1, 0x3c);
    dpps_f0: X, |a| a.dpps(xmm0, xmm1, 0xf0);
    dppd_30: X, |a| a.dppd(xmm0, xmm1, 0x30);
    dppd_33: X, |a| a.dppd(xmm0, xmm1, 0x33);
    dppd_12: X, |a| a.dppd(xmm0, xmm1, 0x12);
    dppd_21: X, |a| a.dppd(xmm0, xmm1, 0x21);
    mpsadbw_0: X, |a| a.mpsadbw(xmm0, xmm1, 0);
    mpsadbw_5: X, |a| a.mpsadbw(xmm0, xmm1, 5);
    mpsadbw_7: X, |a| a.mpsadbw(xmm0, xmm1, 7);
    mpsadbw_2: X, |a| a.mpsadbw(xmm0, xmm1, 2);
    phminposuw: X, |a| a.phminposuw(xmm0, xmm1);
    movntdqa: X, |a| a.movntdqa(xmm0, xmmword_ptr(rsi));
    // SSE4.2
    pcmpgtq: X, |a| a.pcmpgtq(xmm0, xmm1);
    crc32_8: A, |a| a.crc32(eax, cl);
    crc32_16: A, |a| a.crc32(eax, cx);
    crc32_32: A, |a| a.crc32(eax, ecx);
    crc32_64: A, |a| a.crc32(rax, rcx);
    crc32_8q: A, |a| a.crc32(rax, cl);
    crc32_m16: A, |a| a.crc32(eax, word_ptr(rsi + 3));
    crc32_m64: A, |a| a.crc32(rax, qword_ptr(rsi + 1));
    pcmpistri_m: CF, |a| a.pcmpistri(xmm0, xmmword_ptr(rsi + 3), 0x0c);
    pcmpestri_m: CF, |a| a.pcmpestri(xmm0, xmmword_ptr(rsi + 1), 0x44);
    pcmpestrm_m: XF, |a| a.pcmpestrm(xmm0, xmmword_ptr(rsi + 5), 0x18);
    pcmpestri64: CF, |a| a.pcmpestri64(xmm0, xmm1, 0x08);
    pcmpestrm64: XF, |a| a.pcmpestrm64(xmm0, xmm1, 0x3a);
}

/// Every meaningful immediate (bits 0-6) of the four string compares, fewer cases each.
fn pcmpstr_all(name: &str, cmp: u8, f: fn(&mut CodeAssembler, u32) -> Result<(), IcedError>) {
    need_sse42();
    let n = (cases() / 4).max(20);
    for imm in 0..128u32 {
        check_n(&format!("{name} {imm:#x}"), cmp, n, &|a| f(a, imm).unwrap());
    }
}

#[test]
fn pcmpistri_all() {
    pcmpstr_all("pcmpistri", CF, |a, i| a.pcmpistri(xmm0, xmm1, i));
}

#[test]
fn pcmpistrm_all() {
    pcmpstr_all("pcmpistrm", XF, |a, i| a.pcmpistrm(xmm0, xmm1, i));
}

#[test]
fn pcmpestri_all() {
    pcmpstr_all("pcmpestri", CF, |a, i| a.pcmpestri(xmm0, xmm1, i));
}

#[test]
fn pcmpestrm_all() {
    pcmpstr_all("pcmpestrm", XF, |a, i| a.pcmpestrm(xmm0, xmm1, i));
}
