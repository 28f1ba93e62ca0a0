//! The host CPU's vendor, and the one table of the places where the host-differential tests
//! may not hold the host to Intel's behaviour.
//!
//! The emulated CPU is GenuineIntel and is tested bit-exact against the host CPU. On an Intel
//! host every comparison is exact. On another vendor's CPU (AMD's), the state that the two
//! vendors' manuals define differently, or leave implementation-specific, is compared only on
//! its architecturally common part: each such exception is an entry of [`TABLE`], naming the
//! forms, what is masked and the manual sections that allow the difference. Nothing outside
//! this table is relaxed anywhere. Every entry carries a `pin`: a check that runs the emulator
//! alone and pins our (Intel) behaviour, so that the emulator's result stays checked on every
//! host (`tests/vendor_table.rs` runs them all).
//!
//! The table was written on an Intel Xeon host from the AMD failures reported in issue 11
//! (AMD EPYC, pinned toolchain) and from the manuals; see each entry.
#![allow(dead_code)]

use std::io::Write;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Other,
}

/// What the harnesses need to know about the host CPU.
#[derive(Debug)]
pub struct HostCpu {
    pub vendor: Vendor,
    /// CPUID leaf 0's vendor string ("GenuineIntel", "AuthenticAMD", ...).
    pub id: String,
    /// The brand string (CPUID 0x80000002..4).
    pub model: String,
    /// CPUID Fn8000_0008 EBX[2] (AMD's XSaveErPtr): FXSAVE always saves the x87 error
    /// pointers, not only when FSW.ES is set.
    pub always_saves_fp_pointers: bool,
}

fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid_count(leaf, sub);
        [r.eax, r.ebx, r.ecx, r.edx]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (leaf, sub);
        [0; 4]
    }
}

fn read_host() -> HostCpu {
    let l0 = cpuid(0, 0);
    let mut id = Vec::new();
    for r in [l0[1], l0[3], l0[2]] {
        id.extend_from_slice(&r.to_le_bytes());
    }
    let id = String::from_utf8_lossy(&id).into_owned();
    let vendor = match id.as_str() {
        "GenuineIntel" => Vendor::Intel,
        "AuthenticAMD" | "HygonGenuine" => Vendor::Amd,
        _ => Vendor::Other,
    };
    let max_ext = cpuid(0x8000_0000, 0)[0];
    let mut model = Vec::new();
    if max_ext >= 0x8000_0004 {
        for leaf in 0x8000_0002..=0x8000_0004 {
            for r in cpuid(leaf, 0) {
                model.extend_from_slice(&r.to_le_bytes());
            }
        }
    }
    let model = String::from_utf8_lossy(&model)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    let always_saves_fp_pointers = vendor == Vendor::Intel
        || (max_ext >= 0x8000_0008 && cpuid(0x8000_0008, 0)[1] & (1 << 2) != 0);
    HostCpu {
        vendor,
        id,
        model,
        always_saves_fp_pointers,
    }
}

/// The host CPU, read once. The first call prints it on stderr (written directly, so the
/// test harness does not capture it): each differential test binary names its oracle.
pub fn host() -> &'static HostCpu {
    static HOST: OnceLock<HostCpu> = OnceLock::new();
    HOST.get_or_init(|| {
        let h = read_host();
        let relaxed = if h.vendor == Vendor::Intel {
            "every comparison exact".to_string()
        } else {
            format!(
                "{} vendor-table entries relaxed (tests/common/vendor.rs)",
                TABLE.len()
            )
        };
        let _ = writeln!(
            std::io::stderr(),
            "host CPU oracle: {} ({}): {relaxed}",
            h.id,
            h.model
        );
        h
    })
}

/// What an entry relaxes. Each harness applies the kinds that concern it.
#[derive(Debug)]
pub enum Relax {
    /// Bits 63:32 of these GPRs (encoding numbers) are not compared; bits 31:0 are.
    GprHigh32(&'static [usize]),
    /// These bits of an FXSAVE image's MXCSR_MASK field (bytes 28..32) are not compared.
    MxcsrMaskBits(u32),
    /// The FOP/FIP/FDP (and FCS/FDS) bytes 6..24 of an FXSAVE image are not compared when the
    /// saved FSW.ES (byte 2, bit 7) is clear.
    FpPointersUnlessEs,
    /// The destination lanes of a dot product are compared by class: both NaN (any sign and
    /// payload), or both non-NaN and equal up to the sign of a zero and 1 ulp; the MXCSR
    /// exception flags (bits 5:0) are not compared. Lanes the immediate zeroes stay exact.
    DotProduct,
}

/// One exception to bit-exact comparison on non-Intel hosts.
pub struct Entry {
    /// The forms, as the harnesses name them.
    pub forms: &'static [&'static str],
    /// The host condition under which the entry applies (it never applies on Intel hosts).
    pub applies: fn(&HostCpu) -> bool,
    pub relax: Relax,
    /// Which state is masked, in words.
    pub masked: &'static str,
    /// The manual sections that allow the difference.
    pub cite: &'static str,
    /// Runs the emulator alone and pins our Intel behaviour (panics on a mismatch).
    pub pin: fn(),
}

fn not_intel(h: &HostCpu) -> bool {
    h.vendor != Vendor::Intel
}

fn no_fp_pointer_always(h: &HostCpu) -> bool {
    h.vendor != Vendor::Intel && !h.always_saves_fp_pointers
}

/// The vendor table: every relaxation of the host-differential tests, and nothing else.
pub static TABLE: &[Entry] = &[
    Entry {
        forms: &[
            "a32 rep movsb",
            "a32 rep stosd",
            "a32 repe cmpsb",
            "a32 repne scasw",
        ],
        applies: not_intel,
        relax: Relax::GprHigh32(&[1, 6, 7]),
        masked: "bits 63:32 of RCX, RSI and RDI after a REP string instruction with a 32-bit \
                 address size (67h) in 64-bit mode; bits 31:0 and memory stay compared",
        cite: "Intel SDM Vol. 1 §3.3.7 and §3.4.1.1 (a 32-bit address size uses ECX/ESI/EDI, \
               and 32-bit results are zero-extended: Intel clears the upper halves); AMD APM \
               Vol. 3 §1.2.7 \"Repeat Prefixes\" leaves the upper halves of rCX/rSI/rDI \
               unstated for 32-bit address size, and AMD EPYC keeps them (issue 11: \
               `a32 rep movsb`, RDI 0x100090700 on the host, 0x90700 emulated)",
        pin: pins::a32_rep_clears_high_halves,
    },
    Entry {
        forms: &["fxsave64", "fxsave", "fxrstor+fxsave64"],
        applies: not_intel,
        relax: Relax::MxcsrMaskBits(1 << 17),
        masked: "bit 17 of MXCSR_MASK (FXSAVE image bytes 28..32): AMD's MM bit",
        cite: "Intel SDM Vol. 1 §11.6.6 \"Guidelines for Writing to the MXCSR Register\" \
               (MXCSR_MASK; bits 31:16 reserved, 0x0000FFFF on processors with DAZ); AMD APM \
               Vol. 1 §4.2.2 \"Media eXtension Control and Status Register\" (bit 17 MM, the \
               misaligned exception mask, with CPUID Fn8000_0001 ECX[7] MisAlignSse): AMD EPYC \
               reports MXCSR_MASK 0x0002FFFF (issue 11)",
        pin: pins::fxsave_mxcsr_mask_is_intels,
    },
    Entry {
        forms: &["fxsave64", "fxsave", "fxrstor+fxsave64"],
        applies: no_fp_pointer_always,
        relax: Relax::FpPointersUnlessEs,
        masked: "FOP, FIP, FCS, FDP and FDS (FXSAVE image bytes 6..24) when the saved FSW.ES \
                 is 0, on hosts without CPUID Fn8000_0008 EBX[2] (XSaveErPtr)",
        cite: "Intel SDM Vol. 1 §10.5.1 (FXSAVE always stores the x87 instruction and data \
               pointers and the last opcode); AMD APM Vol. 5, FXSAVE instruction reference \
               (the x87 pointers are saved only when FSW.ES=1, an unmasked exception pending, \
               unless CPUID Fn8000_0008 EBX[2] XSaveErPtr is set)",
        pin: pins::fxsave_keeps_fp_pointers_with_es_clear,
    },
    Entry {
        forms: &[
            "dpps_ff", "dpps_71", "dpps_a6", "dpps_3c", "dpps_f0", "dppd_30", "dppd_33", "dppd_12",
            "dppd_21",
        ],
        applies: not_intel,
        relax: Relax::DotProduct,
        masked: "DPPS/DPPD destination lanes that the immediate writes: NaN payload and sign, \
                 the sign of a zero, and 1 ulp of the sum; MXCSR exception flags",
        cite: "Intel SDM Vol. 2A DPPS/DPPD Operation (products rounded, then summed pairwise \
               as (p0+p1)+(p2+p3), each sum rounded; the NaN of the first operand propagates, \
               Vol. 1 §4.8.3.5); AMD APM Vol. 4 DPPS/DPPD describe the sum without fixing the \
               order of the additions, and AMD EPYC returns other NaNs and roundings \
               (issue 11: dpps_ff/71/a6/3c, dppd_33)",
        pin: pins::dot_product_is_intels,
    },
];

/// The relaxation of `form` on this host, if the table has one (never on an Intel host).
pub fn relaxations(form: &str) -> impl Iterator<Item = &'static Relax> + use<'_> {
    let h = host();
    TABLE
        .iter()
        .filter(move |e| e.forms.contains(&form) && e.vendor_applies(h))
        .map(|e| &e.relax)
}

impl Entry {
    fn vendor_applies(&self, h: &HostCpu) -> bool {
        h.vendor != Vendor::Intel && (self.applies)(h)
    }
}

/// `GprHigh32` as a per-register mask of the compared bits (all ones where nothing relaxes).
pub fn gpr_compare_masks(form: &str) -> [u64; 16] {
    let mut m = [u64::MAX; 16];
    for r in relaxations(form) {
        if let Relax::GprHigh32(regs) = r {
            for &k in *regs {
                m[k] = 0xffff_ffff;
            }
        }
    }
    m
}

/// The FXSAVE image bytes of `form` not compared on this host, given the image the host wrote
/// (`masked[i]` = the bits of byte i that are ignored).
pub fn fxsave_ignored_bits(form: &str, host_image: &[u8; 512]) -> [u8; 512] {
    let mut ign = [0u8; 512];
    for r in relaxations(form) {
        match r {
            Relax::MxcsrMaskBits(bits) => {
                for (i, b) in bits.to_le_bytes().iter().enumerate() {
                    ign[28 + i] |= b;
                }
            }
            Relax::FpPointersUnlessEs if host_image[2] & 0x80 == 0 => {
                ign[6..24].fill(0xff);
            }
            _ => {}
        }
    }
    ign
}

/// Whether `form` compares dot-product results by class on this host.
pub fn dot_product_by_class(form: &str) -> bool {
    relaxations(form).any(|r| matches!(r, Relax::DotProduct))
}

/// The architecturally common part of two dot-product results (`Relax::DotProduct`): lanes of
/// `bits` bits (32 or 64) in a 128-bit destination. Returns the first lane that differs.
pub fn dot_product_lanes_agree(host: [u64; 2], emu: [u64; 2], bits: u32) -> Result<(), usize> {
    let lanes = 128 / bits as usize;
    let lane = |x: [u64; 2], i: usize| -> u64 {
        let per = 64 / bits as usize;
        let w = x[i / per];
        if bits == 64 {
            w
        } else {
            (w >> (32 * (i % per))) & 0xffff_ffff
        }
    };
    let (exp_mask, frac_mask, sign) = if bits == 64 {
        (
            0x7ff0_0000_0000_0000u64,
            0x000f_ffff_ffff_ffffu64,
            1u64 << 63,
        )
    } else {
        (0x7f80_0000u64, 0x007f_ffffu64, 1u64 << 31)
    };
    let is_nan = |v: u64| v & exp_mask == exp_mask && v & frac_mask != 0;
    for i in 0..lanes {
        let (h, e) = (lane(host, i), lane(emu, i));
        if h == e {
            continue;
        }
        let ok = if is_nan(h) || is_nan(e) {
            is_nan(h) && is_nan(e)
        } else if (h | e) & !sign == 0 {
            true // +0 against -0
        } else {
            // Same sign, magnitudes (as ordered integers) at most one apart: 1 ulp.
            h & sign == e & sign && (h & !sign).abs_diff(e & !sign) <= 1
        };
        if !ok {
            return Err(i);
        }
    }
    Ok(())
}

/// The pins: the emulator alone, on inputs where the vendors differ, must give Intel's result.
pub mod pins {
    use super::super::*;
    use iced_x86::code_asm::*;
    use tci64_x86::regs::fl;
    use tci64_x86::state::cr;

    fn run(code: &[u8], setup: impl FnOnce(&mut tci64_x86::Cpu)) -> tci64_x86::Cpu {
        let mut code = code.to_vec();
        code.push(0xf4);
        let mut cpu = machine(&code);
        cpu.core_mut().guest.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
        setup(&mut cpu);
        let e = cpu.run(&mut TestBus::default(), 100_000);
        assert!(matches!(e, tci64_x86::CpuExit::Halted { .. }), "{e:?}");
        cpu
    }

    /// 67 F3 A4 / 67 F3 AB with garbage above the 32-bit count and pointers: ECX, ESI and EDI
    /// are used and written back zero-extended (SDM Vol. 1 §3.4.1.1).
    pub fn a32_rep_clears_high_halves() {
        for code in [[0x67u8, 0xf3, 0xa4], [0x67, 0xf3, 0xab]] {
            let cpu = run(&code, |cpu| {
                let r = &mut cpu.core_mut().regs.0;
                r[1] = 0xdead_0001_0000_0020; // RCX: ECX = 32
                r[6] = 0x0000_0001_0000_0000 | DATA; // RSI
                r[7] = 0xffff_0003_0000_0000 | (DATA + 0x400); // RDI
                tci64_x86::cpu::set_rflags(cpu.core_mut(), 2);
            });
            let width = if code[2] == 0xa4 { 1 } else { 4 };
            assert_eq!(cpu.reg(1), 0, "{code:x?}: RCX");
            assert_eq!(cpu.reg(7), DATA + 0x400 + 32 * width, "{code:x?}: RDI");
            if code[2] == 0xa4 {
                assert_eq!(cpu.reg(6), DATA + 32, "{code:x?}: RSI");
            } else {
                assert_eq!(cpu.reg(6), 0x0000_0001_0000_0000 | DATA, "stos leaves RSI");
            }
            assert_eq!(tci64_x86::cpu::rflags(cpu.core()) & fl::DF, 0);
        }
    }

    fn fxsave_image(cpu: &tci64_x86::Cpu, at: u64) -> [u8; 512] {
        let mut b = [0u8; 512];
        assert!(cpu.read_phys(at, &mut b));
        b
    }

    /// FXSAVE (both formats) reports Intel's MXCSR_MASK 0x0000FFFF.
    pub fn fxsave_mxcsr_mask_is_intels() {
        let code = assemble(|a| {
            a.fxsave64(ptr(DATA)).unwrap();
            a.fxsave(ptr(DATA + 0x200)).unwrap();
        });
        let cpu = run(&code, |_| {});
        for at in [DATA, DATA + 0x200] {
            let img = fxsave_image(&cpu, at);
            assert_eq!(u32::from_le_bytes(img[28..32].try_into().unwrap()), 0xffff);
        }
    }

    /// FXRSTOR64 of an image with FSW.ES = 0 and nonzero FOP/FIP/FDP, then FXSAVE64: Intel
    /// stores the pointers regardless of ES.
    pub fn fxsave_keeps_fp_pointers_with_es_clear() {
        let mut img = [0u8; 512];
        img[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW: all masked
        img[6..8].copy_from_slice(&0x0123u16.to_le_bytes()); // FOP
        img[8..16].copy_from_slice(&0x0000_7654_3210_abcdu64.to_le_bytes()); // FIP
        img[16..24].copy_from_slice(&0x0000_1234_5678_9ab0u64.to_le_bytes()); // FDP
        img[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        let code = assemble(|a| {
            a.fxrstor64(ptr(DATA)).unwrap();
            a.fxsave64(ptr(DATA + 0x200)).unwrap();
        });
        let cpu = run(&code, |cpu| load(cpu, DATA, &img));
        let out = fxsave_image(&cpu, DATA + 0x200);
        assert_eq!(out[2] & 0x80, 0, "ES clear");
        assert_eq!(out[6..24], img[6..24], "FOP/FIP/FDP kept with ES clear");
    }

    /// DPPS/DPPD: the products are summed as (p0+p1)+(p2+p3) with a rounding per step, and the
    /// first NaN operand of each addition propagates. Both pinned on inputs where the order
    /// shows (values checked against an Intel Xeon host).
    pub fn dot_product_is_intels() {
        let ps = |l: [f32; 4]| {
            let b = l.map(f32::to_bits);
            [
                b[0] as u64 | (b[1] as u64) << 32,
                b[2] as u64 | (b[3] as u64) << 32,
            ]
        };
        let dp = |x0: [u64; 2], x1: [u64; 2], insn: &dyn Fn(&mut CodeAssembler)| {
            let code = assemble(|a| {
                a.movdqu(xmm0, xmmword_ptr(DATA)).unwrap();
                a.movdqu(xmm1, xmmword_ptr(DATA + 16)).unwrap();
                insn(a);
                a.movdqu(xmmword_ptr(DATA + 32), xmm0).unwrap();
            });
            let cpu = run(&code, |cpu| {
                let mut b = Vec::new();
                for w in x0.iter().chain(x1.iter()) {
                    b.extend_from_slice(&w.to_le_bytes());
                }
                load(cpu, DATA, &b);
            });
            [read_u64(&cpu, DATA + 32), read_u64(&cpu, DATA + 40)]
        };
        // Rounding order: products 2^24, 1, 1, -2^24. (2^24+1) rounds to 2^24 (ties to even),
        // (1-2^24) is exact, so the pairwise sum is 1.0; a left-to-right sum would give 0.
        let big = 16_777_216.0f32;
        let r = dp(ps([big, 1.0, 1.0, -big]), ps([1.0; 4]), &|a| {
            a.dpps(xmm0, xmm1, 0xf1).unwrap()
        });
        assert_eq!(r, ps([1.0, 0.0, 0.0, 0.0]), "dpps 0xf1 pairwise rounding");
        // NaN choice: p0 and p1 are two different QNaNs. Lane i sums (t[i^1] + t[i]) +
        // (t[i^3] + t[i^2]) and the first operand's NaN wins, so the lanes alternate.
        let (qa, qb) = (0x7fc0_0001u32, 0x7fc0_0002u32);
        let x0 = [qa as u64 | (qb as u64) << 32, 0];
        let one = 1.0f32.to_bits() as u64;
        let r = dp(x0, [one | one << 32, one | one << 32], &|a| {
            a.dpps(xmm0, xmm1, 0x3f).unwrap()
        });
        let want = qb as u64 | (qa as u64) << 32;
        assert_eq!(r, [want, want], "dpps 0x3f NaN propagation");
        // DPPD: two QNaN products; lane 0 sums t[0] + t[1], so p0's NaN.
        let (da, db) = (0x7ff8_0000_0000_0001u64, 0x7ff8_0000_0000_0002u64);
        let r = dp([da, db], [1.0f64.to_bits(); 2], &|a| {
            a.dppd(xmm0, xmm1, 0x31).unwrap()
        });
        assert_eq!(r, [da, 0], "dppd 0x31 NaN propagation");
    }
}
