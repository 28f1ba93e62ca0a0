//! FXSAVE / FXRSTOR differential tests against the host CPU (x86-64 hosts only).
//!
//! Two kinds of case, each run on the host (inline asm, host state saved/restored around it
//! with FXSAVE64/FXRSTOR64) and in the emulator, then compared byte for byte:
//! - `executed`: FNINIT; FLDCW; LDMXCSR; n x FLD m64 (random incl. specials, SNaN, denormals);
//!   k x FINCSTP; optional FFREE ST(0); MOVDQU XMM0..15; then FXSAVE64 and legacy FXSAVE.
//! - `roundtrip`: FXRSTOR64 from a random image, FXSAVE64, legacy FXSAVE, legacy FXRSTOR of
//!   the image, FXSAVE64 again.
//!
//! Masked fields (documented per the SDM, Vol. 1 §10.5.1 table 10-2):
//! - bytes 464..511 are available to software: not written by FXSAVE (both sides keep the
//!   prefilled pattern, so they are still compared);
//! - byte 5 and bytes 416..463 are reserved: compared (both leave them untouched here);
//! - in `executed` cases FOP/FIP/FCS/FDP/FDS (bytes 6..24) are masked: they hold the host's
//!   code/data addresses of the last x87 instruction, which are not reproducible in the guest
//!   (different code and data addresses). In `roundtrip` cases they come straight from the
//!   image and are compared (FIP/FDP generated canonical for 48 bits: an LA57 host
//!   canonicalizes them to 57 bits, the emulator keeps them as loaded).
//! - MXCSR_MASK (bytes 28..32) is compared as well. Nothing else is masked.
//!
//! What the host taught us (now emulated): FXSAVE leaves the reserved bytes 416..463
//! untouched; FXRSTOR forces FCW bit 6 to 1 and bits 7, 13..15 to 0, and recomputes FSW.ES/B
//! from the exception flags and masks.

#![cfg(target_arch = "x86_64")]

mod common;
use common::*;
use iced_x86::code_asm::*;
use std::arch::asm;
use tci64_x86::state::cr;

fn cases() -> u32 {
    std::env::var("TCI64_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn f64_bits(&mut self) -> u64 {
        let sign = self.next() & (1 << 63);
        match self.below(8) {
            0 => sign,                                                              // zero
            1 => sign | 0x7ff0_0000_0000_0000,                                      // infinity
            2 => sign | 0x7ff8_0000_0000_0000 | (self.next() & 0x7_ffff_ffff_ffff), // QNaN
            3 => sign | 0x7ff0_0000_0000_0001 | (self.next() & 0x7_ffff_ffff_ffff), // SNaN
            4 => sign | (self.next() & 0xf_ffff_ffff_ffff),                         // denormal
            _ => self.next(),
        }
    }
}

#[repr(C, align(16))]
struct Buf([u8; 512]);

/// Input of an `executed` case.
#[repr(C, align(16))]
#[derive(Clone)]
struct Exec {
    fcw: u32,
    mxcsr: u32,
    n: u32,
    k: u32,
    ffree: u32,
    _pad: [u32; 3],
    vals: [u64; 8],
    xmm: [[u64; 2]; 16],
}

const PAT: u8 = 0xa5;

fn host_exec(i: &Exec) -> ([u8; 512], [u8; 512]) {
    let mut bk = Buf([0; 512]);
    let mut o64 = Buf([PAT; 512]);
    let mut o32 = Buf([PAT; 512]);
    unsafe {
        asm!(
            "fxsave64 [{bk}]",
            "fninit",
            "fldcw [{i}]",
            "ldmxcsr [{i} + 4]",
            "mov ecx, [{i} + 8]",
            "lea rax, [{i} + 32]",
            "test ecx, ecx",
            "jz 2f",
            "6: fld qword ptr [rax]",
            "add rax, 8",
            "dec ecx",
            "jnz 6b",
            "2: mov ecx, [{i} + 12]",
            "test ecx, ecx",
            "jz 4f",
            "3: fincstp",
            "dec ecx",
            "jnz 3b",
            "4: cmp dword ptr [{i} + 16], 0",
            "je 5f",
            "ffree st(0)",
            "5:",
            "movdqu xmm0, [{i} + 96]",
            "movdqu xmm1, [{i} + 112]",
            "movdqu xmm2, [{i} + 128]",
            "movdqu xmm3, [{i} + 144]",
            "movdqu xmm4, [{i} + 160]",
            "movdqu xmm5, [{i} + 176]",
            "movdqu xmm6, [{i} + 192]",
            "movdqu xmm7, [{i} + 208]",
            "movdqu xmm8, [{i} + 224]",
            "movdqu xmm9, [{i} + 240]",
            "movdqu xmm10, [{i} + 256]",
            "movdqu xmm11, [{i} + 272]",
            "movdqu xmm12, [{i} + 288]",
            "movdqu xmm13, [{i} + 304]",
            "movdqu xmm14, [{i} + 320]",
            "movdqu xmm15, [{i} + 336]",
            "fxsave64 [{o64}]",
            "fxsave [{o32}]",
            "fxrstor64 [{bk}]",
            bk = in(reg) bk.0.as_mut_ptr(),
            i = in(reg) i as *const Exec,
            o64 = in(reg) o64.0.as_mut_ptr(),
            o32 = in(reg) o32.0.as_mut_ptr(),
            out("rax") _,
            out("rcx") _,
            options(nostack),
        );
    }
    (o64.0, o32.0)
}

fn as_bytes<T>(v: &T) -> &[u8] {
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

const IN: u64 = DATA;
const O64: u64 = DATA + 0x400;
const O32: u64 = DATA + 0x600;
const O3: u64 = DATA + 0x800;

fn guest_run(code: &[u8], input: &[u8]) -> tci64_x86::Cpu {
    let mut cpu = machine(code);
    cpu.core_mut().guest.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
    load(&mut cpu, IN, input);
    for o in [O64, O32, O3] {
        load(&mut cpu, o, &[PAT; 512]);
    }
    let e = cpu.run(&mut TestBus::default(), 100_000);
    assert!(matches!(e, tci64_x86::CpuExit::Halted { .. }), "{e:?}");
    cpu
}

fn read512(cpu: &tci64_x86::Cpu, a: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    assert!(cpu.read_phys(a, &mut b));
    b
}

fn guest_exec(i: &Exec) -> ([u8; 512], [u8; 512]) {
    let code = assemble(|a| {
        a.fninit().unwrap();
        a.fldcw(word_ptr(IN)).unwrap();
        a.ldmxcsr(dword_ptr(IN + 4)).unwrap();
        for j in 0..i.n as u64 {
            a.fld(qword_ptr(IN + 32 + 8 * j)).unwrap();
        }
        for _ in 0..i.k {
            a.fincstp().unwrap();
        }
        if i.ffree != 0 {
            a.ffree(st0).unwrap();
        }
        let x = [
            xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13,
            xmm14, xmm15,
        ];
        for (j, r) in x.into_iter().enumerate() {
            a.movdqu(r, xmmword_ptr(IN + 96 + 16 * j as u64)).unwrap();
        }
        a.fxsave64(ptr(O64)).unwrap();
        a.fxsave(ptr(O32)).unwrap();
        a.hlt().unwrap();
    });
    let cpu = guest_run(&code, as_bytes(i));
    (read512(&cpu, O64), read512(&cpu, O32))
}

fn diff(name: &str, case: u32, host: &[u8; 512], guest: &[u8; 512], masked: &[(usize, usize)]) {
    // Bits the vendor table does not compare on this host (none on Intel hosts).
    let ignored = vendor::fxsave_ignored_bits(name, host);
    let bad: Vec<usize> = (0..512)
        .filter(|&b| !masked.iter().any(|&(s, e)| b >= s && b < e))
        .filter(|&b| (host[b] ^ guest[b]) & !ignored[b] != 0)
        .collect();
    if !bad.is_empty() {
        let hex = |x: &[u8]| x.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut msg = format!("{name} case {case}: bytes differ at {bad:?}\n");
        for row in (0..512).step_by(16) {
            if bad.iter().any(|&b| b / 16 * 16 == row) {
                msg += &format!(
                    "  {row:3}: host {} guest {}\n",
                    hex(&host[row..row + 16]),
                    hex(&guest[row..row + 16])
                );
            }
        }
        panic!("{msg}");
    }
}

fn seed(tag: u64) -> Rng {
    let s = std::env::var("TCI64_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1234_5678_9abc_def1u64);
    Rng(s ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
}

#[test]
fn fxsave_after_executed_state() {
    vendor::host();
    let mut r = seed(1);
    for case in 0..cases() {
        // Exception masks all set (no #MF on the host); random PC/RC and other bits.
        let fcw = ((r.next() as u32) & 0x1f00) | 0x3f | ((r.next() as u32) & 0x40);
        let mxcsr = (r.next() as u32) & 0xffff & !0x3f | (r.next() as u32 & 0x3f);
        let mut i = Exec {
            fcw,
            mxcsr,
            n: r.below(9) as u32,
            k: r.below(8) as u32,
            ffree: r.below(2) as u32,
            _pad: [0; 3],
            vals: [0; 8],
            xmm: [[0; 2]; 16],
        };
        for v in i.vals.iter_mut() {
            *v = r.f64_bits();
        }
        for x in i.xmm.iter_mut() {
            *x = [r.next(), r.next()];
        }
        let (h64, h32) = host_exec(&i);
        let (g64, g32) = guest_exec(&i);
        // FOP, FIP, FCS, FDP, FDS: host code/data addresses (not reproducible).
        diff("fxsave64", case, &h64, &g64, &[(6, 24)]);
        diff("fxsave", case, &h32, &g32, &[(6, 24)]);
    }
}

fn host_roundtrip(img: &Buf) -> [[u8; 512]; 3] {
    let mut bk = Buf([0; 512]);
    let mut o = [Buf([PAT; 512]), Buf([PAT; 512]), Buf([PAT; 512])];
    let [o0, o1, o2] = &mut o;
    unsafe {
        asm!(
            "fxsave64 [{bk}]",
            "fxrstor64 [{img}]",
            "fxsave64 [{o0}]",
            "fxsave [{o1}]",
            "fxrstor [{img}]",
            "fxsave64 [{o2}]",
            "fxrstor64 [{bk}]",
            bk = in(reg) bk.0.as_mut_ptr(),
            img = in(reg) img.0.as_ptr(),
            o0 = in(reg) o0.0.as_mut_ptr(),
            o1 = in(reg) o1.0.as_mut_ptr(),
            o2 = in(reg) o2.0.as_mut_ptr(),
            options(nostack),
        );
    }
    o.map(|b| b.0)
}

fn guest_roundtrip(img: &Buf) -> [[u8; 512]; 3] {
    let code = assemble(|a| {
        a.fxrstor64(ptr(IN)).unwrap();
        a.fxsave64(ptr(O64)).unwrap();
        a.fxsave(ptr(O32)).unwrap();
        a.fxrstor(ptr(IN)).unwrap();
        a.fxsave64(ptr(O3)).unwrap();
        a.hlt().unwrap();
    });
    let cpu = guest_run(&code, &img.0);
    [read512(&cpu, O64), read512(&cpu, O32), read512(&cpu, O3)]
}

/// The host's MXCSR_MASK (from an FXSAVE of its own state).
fn host_mxcsr_mask() -> u32 {
    let mut bk = Buf([0; 512]);
    unsafe { asm!("fxsave64 [{bk}]", bk = in(reg) bk.0.as_mut_ptr(), options(nostack)) };
    u32::from_le_bytes(bk.0[28..32].try_into().unwrap())
}

#[test]
fn fxrstor_fxsave_roundtrip() {
    let mut r = seed(2);
    // The emulated (Intel) MXCSR_MASK; an Intel host must report the same. Other vendors may
    // have more bits (the vendor table), which the inputs must not set: they are reserved here.
    let mask = 0xffff;
    if vendor::host().vendor == vendor::Vendor::Intel {
        assert_eq!(host_mxcsr_mask(), mask, "host MXCSR_MASK");
    } else {
        assert_eq!(
            host_mxcsr_mask() & mask,
            mask,
            "host MXCSR_MASK lacks Intel's bits"
        );
    }
    for case in 0..cases() {
        let mut img = Buf([0; 512]);
        for b in img.0.iter_mut() {
            *b = r.next() as u8;
        }
        // FCW with all exceptions masked (a pending unmasked exception is harmless to
        // FXSAVE, but keep the host's later x87 use clean anyway).
        let fcw = (r.next() as u16) | 0x3f;
        img.0[0..2].copy_from_slice(&fcw.to_le_bytes());
        let mxcsr = (r.next() as u32) & mask;
        // FIP/FDP canonical (a host with LA57 canonicalizes them to 57 bits on FXRSTOR, a
        // 48-bit one to 48 bits; the emulator keeps them as loaded).
        for o in [8usize, 16] {
            let v = ((r.next() << 16) as i64 >> 16) as u64;
            img.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        img.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        // Some registers hold specials (exponent 0 / 0x7fff, integer bit clear: unnormals).
        for j in 0..8 {
            let o = 32 + 16 * j;
            match r.below(4) {
                0 => img.0[o + 8..o + 10]
                    .copy_from_slice(&((r.next() as u16) | 0x7fff).to_le_bytes()),
                1 => img.0[o + 8..o + 10]
                    .copy_from_slice(&((r.next() as u16) & 0x8000).to_le_bytes()),
                2 => img.0[o + 7] &= 0x7f,
                _ => {}
            }
            if r.below(6) == 0 {
                img.0[o..o + 8].fill(0);
            }
        }
        let h = host_roundtrip(&img);
        let g = guest_roundtrip(&img);
        for (k, name) in ["fxsave64", "fxsave", "fxrstor+fxsave64"]
            .iter()
            .enumerate()
        {
            diff(name, case, &h[k], &g[k], &[]);
        }
    }
}
