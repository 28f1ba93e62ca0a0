//! MMX differential tests against the host CPU (x86-64 hosts). The same iced-assembled
//! instruction runs natively (copied to an executable page) and in the emulator after
//! `FNINIT; MOVQ MM0/MM1 from the context; EMMS; FLD1` (so TOP = 7 and one tag valid before
//! the instruction); compared: MM0, RAX, XMM0, the memory operand (a copy of MM1), the x87
//! status word (TOP) and full tag word (FNSTENV) and the eight register images (exponent
//! 0xFFFF for written MMX registers) from FXSAVE. `TCI64_DIFF_CASES` sets the cases per form
//! (default 200). Covers MMX, the SSE integer mm forms, CVT(T)PS2PI/PD2PI/PI2PS/PI2PD (with MXCSR compared) and the SSSE3 mm forms.
#![cfg(target_arch = "x86_64")]

mod common;
use common::jit::{cases, Guest, Host};
use iced_x86::code_asm::*;

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Ctx {
    m0: u64,
    m1: u64,
    rax: u64,
    _p0: u64,
    o_mm0: u64,
    o_rax: u64,
    x0: [u64; 2],
    env: [u8; 32],
    _p1: [u8; 32],
    fx: [u8; 512],
}

fn body(a: &mut CodeAssembler, insn: &dyn Fn(&mut CodeAssembler)) {
    a.fninit().unwrap();
    a.ldmxcsr(dword_ptr(rbx + 24)).unwrap();
    a.movq(mm0, qword_ptr(rbx)).unwrap();
    a.movq(mm1, qword_ptr(rbx + 8)).unwrap();
    a.mov(rax, qword_ptr(rbx + 16)).unwrap();
    a.movdqu(xmm0, xmmword_ptr(rbx + 48)).unwrap();
    a.lea(rsi, qword_ptr(rbx + 8)).unwrap();
    a.mov(rdi, rsi).unwrap();
    a.emms().unwrap();
    a.fld1().unwrap();
    insn(a);
    a.stmxcsr(dword_ptr(rbx + 24)).unwrap();
    a.fnstenv(ptr(rbx + 64)).unwrap();
    a.fxsave64(ptr(rbx + 128)).unwrap();
    a.movq(qword_ptr(rbx + 32), mm0).unwrap();
    a.mov(qword_ptr(rbx + 40), rax).unwrap();
    a.movdqu(xmmword_ptr(rbx + 48), xmm0).unwrap();
    a.fninit().unwrap();
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Random lanes mixed with boundary bytes/words.
    fn lanes(&mut self) -> u64 {
        match self.next() % 6 {
            0 => self.next() % 80,
            1 => {
                let mut v = self.next();
                for i in 0..8 {
                    let b = [0x00u64, 0x7f, 0x80, 0xff][(self.next() % 4) as usize];
                    if self.next() & 1 == 0 {
                        v = (v & !(0xff << (8 * i))) | b << (8 * i);
                    }
                }
                v
            }
            _ => self.next(),
        }
    }
}

fn check(name: &str, insn: &dyn Fn(&mut CodeAssembler)) {
    let host = Host::<Ctx>::new(|a| body(a, insn));
    let mut g = Guest::new(|a| body(a, insn));
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut r = Rng(h | 1);
    for case in 0..cases() {
        let inp = Ctx {
            m0: r.lanes(),
            m1: r.lanes(),
            rax: r.lanes(),
            _p0: 0x1f80 | (r.next() % 4) << 13,
            o_mm0: 0,
            o_rax: 0,
            x0: [r.next(), r.next()],
            env: [0; 32],
            _p1: [0; 32],
            fx: [0; 512],
        };
        let h = host.run(&inp);
        let e = g.run(&inp);
        let what = format!(
            "{name} case {case}: in m0={:#x} m1={:#x} rax={:#x}",
            inp.m0, inp.m1, inp.rax
        );
        assert_eq!(e.o_mm0, h.o_mm0, "{what}: mm0");
        assert_eq!(e.o_rax, h.o_rax, "{what}: rax");
        assert_eq!(e.m1, h.m1, "{what}: memory");
        assert_eq!(e.x0, h.x0, "{what}: xmm0");
        assert_eq!(e._p0, h._p0, "{what}: mxcsr");
        assert_eq!(e.env[4..6], h.env[4..6], "{what}: fsw");
        assert_eq!(e.env[8..10], h.env[8..10], "{what}: tag word");
        assert_eq!(e.fx[32..160], h.fx[32..160], "{what}: register images");
    }
}

macro_rules! forms {
    ($($test:ident: |$a:ident| $body:expr;)*) => {$(
        #[test]
        fn $test() {
            check(stringify!($test), &|$a: &mut CodeAssembler| { $body.unwrap(); });
        }
    )*};
}

forms! {
    emms: |a| a.emms();
    movd_mm_r: |a| a.movd(mm0, eax);
    movq_mm_r: |a| a.movq(mm0, rax);
    movd_r_mm: |a| a.movd(eax, mm1);
    movq_r_mm: |a| a.movq(rax, mm1);
    movd_mm_m: |a| a.movd(mm0, dword_ptr(rsi));
    movq_mm_m: |a| a.movq(mm0, qword_ptr(rsi));
    movd_m_mm: |a| a.movd(dword_ptr(rsi), mm0);
    movq_m_mm: |a| a.movq(qword_ptr(rsi), mm0);
    movq_mm_mm: |a| a.movq(mm0, mm1);
    movq_mm3_mm1: |a| a.movq(mm3, mm1);
    movntq: |a| a.movntq(qword_ptr(rsi), mm0);
    movq2dq: |a| a.movq2dq(xmm0, mm1);
    movdq2q: |a| a.movdq2q(mm0, xmm0);
    paddb: |a| a.paddb(mm0, mm1);
    paddw: |a| a.paddw(mm0, mm1);
    paddd: |a| a.paddd(mm0, mm1);
    paddq: |a| a.paddq(mm0, mm1);
    paddb_m: |a| a.paddb(mm0, qword_ptr(rsi));
    psubb: |a| a.psubb(mm0, mm1);
    psubw: |a| a.psubw(mm0, mm1);
    psubd: |a| a.psubd(mm0, mm1);
    psubq: |a| a.psubq(mm0, mm1);
    paddsb: |a| a.paddsb(mm0, mm1);
    paddsw: |a| a.paddsw(mm0, mm1);
    paddusb: |a| a.paddusb(mm0, mm1);
    paddusw: |a| a.paddusw(mm0, mm1);
    psubsb: |a| a.psubsb(mm0, mm1);
    psubsw: |a| a.psubsw(mm0, mm1);
    psubusb: |a| a.psubusb(mm0, mm1);
    psubusw: |a| a.psubusw(mm0, mm1);
    pand: |a| a.pand(mm0, mm1);
    pandn: |a| a.pandn(mm0, mm1);
    por: |a| a.por(mm0, mm1);
    pxor: |a| a.pxor(mm0, mm1);
    pcmpeqb: |a| a.pcmpeqb(mm0, mm1);
    pcmpeqw: |a| a.pcmpeqw(mm0, mm1);
    pcmpeqd: |a| a.pcmpeqd(mm0, mm1);
    pcmpgtb: |a| a.pcmpgtb(mm0, mm1);
    pcmpgtw: |a| a.pcmpgtw(mm0, mm1);
    pcmpgtd: |a| a.pcmpgtd(mm0, mm1);
    packsswb: |a| a.packsswb(mm0, mm1);
    packssdw: |a| a.packssdw(mm0, mm1);
    packuswb: |a| a.packuswb(mm0, mm1);
    packuswb_m: |a| a.packuswb(mm0, qword_ptr(rsi));
    punpcklbw: |a| a.punpcklbw(mm0, mm1);
    punpcklwd: |a| a.punpcklwd(mm0, mm1);
    punpckldq: |a| a.punpckldq(mm0, mm1);
    punpckhbw: |a| a.punpckhbw(mm0, mm1);
    punpckhwd: |a| a.punpckhwd(mm0, mm1);
    punpckhdq: |a| a.punpckhdq(mm0, mm1);
    punpcklbw_m: |a| a.punpcklbw(mm0, dword_ptr(rsi));
    psllw: |a| a.psllw(mm0, mm1);
    pslld: |a| a.pslld(mm0, mm1);
    psllq: |a| a.psllq(mm0, mm1);
    psrlw: |a| a.psrlw(mm0, mm1);
    psrld: |a| a.psrld(mm0, mm1);
    psrlq: |a| a.psrlq(mm0, mm1);
    psraw: |a| a.psraw(mm0, mm1);
    psrad: |a| a.psrad(mm0, mm1);
    psllw_i: |a| a.psllw(mm0, 5);
    pslld_i: |a| a.pslld(mm0, 31);
    psllq_i: |a| a.psllq(mm0, 40);
    psrlw_i: |a| a.psrlw(mm0, 17);
    psrld_i: |a| a.psrld(mm0, 3);
    psrlq_i: |a| a.psrlq(mm0, 63);
    psraw_i: |a| a.psraw(mm0, 9);
    psrad_i: |a| a.psrad(mm0, 200);
    pmullw: |a| a.pmullw(mm0, mm1);
    pmulhw: |a| a.pmulhw(mm0, mm1);
    pmaddwd: |a| a.pmaddwd(mm0, mm1);
    pshufw: |a| a.pshufw(mm0, mm1, 0x1b);
    pshufw_m: |a| a.pshufw(mm0, qword_ptr(rsi), 0xc6);
    pminub: |a| a.pminub(mm0, mm1);
    pmaxub: |a| a.pmaxub(mm0, mm1);
    pminsw: |a| a.pminsw(mm0, mm1);
    pmaxsw: |a| a.pmaxsw(mm0, mm1);
    pavgb: |a| a.pavgb(mm0, mm1);
    pavgw: |a| a.pavgw(mm0, mm1);
    psadbw: |a| a.psadbw(mm0, mm1);
    pmulhuw: |a| a.pmulhuw(mm0, mm1);
    pmuludq: |a| a.pmuludq(mm0, mm1);
    pmovmskb: |a| a.pmovmskb(eax, mm1);
    pinsrw: |a| a.pinsrw(mm0, eax, 2);
    pinsrw_7: |a| a.pinsrw(mm0, eax, 7);
    pinsrw_m: |a| a.pinsrw(mm0, word_ptr(rsi), 1);
    pextrw: |a| a.pextrw(eax, mm1, 3);
    pextrw_6: |a| a.pextrw(eax, mm1, 6);
    maskmovq: |a| a.maskmovq(mm0, mm1);
    // SSE/SSE2 conversions
    cvtpi2ps: |a| a.cvtpi2ps(xmm0, mm1);
    cvtpi2ps_m: |a| a.cvtpi2ps(xmm0, qword_ptr(rsi));
    cvtpi2pd: |a| a.cvtpi2pd(xmm0, mm1);
    cvtpi2pd_m: |a| a.cvtpi2pd(xmm0, qword_ptr(rsi));
    cvtps2pi: |a| a.cvtps2pi(mm0, xmm0);
    cvtps2pi_m: |a| a.cvtps2pi(mm0, qword_ptr(rsi));
    cvttps2pi: |a| a.cvttps2pi(mm0, xmm0);
    cvtpd2pi: |a| a.cvtpd2pi(mm0, xmm0);
    cvtpd2pi_m: |a| a.cvtpd2pi(mm0, xmmword_ptr(rbx + 48));
    cvttpd2pi: |a| a.cvttpd2pi(mm0, xmm0);
    cvttpd2pi_m: |a| a.cvttpd2pi(mm0, xmmword_ptr(rbx + 48));
    // SSSE3
    pshufb: |a| a.pshufb(mm0, mm1);
    pshufb_m: |a| a.pshufb(mm0, qword_ptr(rsi));
    phaddw: |a| a.phaddw(mm0, mm1);
    phaddd: |a| a.phaddd(mm0, mm1);
    phaddsw: |a| a.phaddsw(mm0, mm1);
    phsubw: |a| a.phsubw(mm0, mm1);
    phsubd: |a| a.phsubd(mm0, mm1);
    phsubsw: |a| a.phsubsw(mm0, mm1);
    pmaddubsw: |a| a.pmaddubsw(mm0, mm1);
    pmulhrsw: |a| a.pmulhrsw(mm0, mm1);
    psignb: |a| a.psignb(mm0, mm1);
    psignw: |a| a.psignw(mm0, mm1);
    psignd: |a| a.psignd(mm0, mm1);
    pabsb: |a| a.pabsb(mm0, mm1);
    pabsw: |a| a.pabsw(mm0, mm1);
    pabsd: |a| a.pabsd(mm0, mm1);
    palignr_0: |a| a.palignr(mm0, mm1, 0);
    palignr_3: |a| a.palignr(mm0, mm1, 3);
    palignr_8: |a| a.palignr(mm0, mm1, 8);
    palignr_13: |a| a.palignr(mm0, mm1, 13);
    palignr_16: |a| a.palignr(mm0, mm1, 16);
    palignr_200: |a| a.palignr(mm0, mm1, 200);
    palignr_m: |a| a.palignr(mm0, qword_ptr(rsi), 5);
}
