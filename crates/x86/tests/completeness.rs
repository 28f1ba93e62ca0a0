//! Completeness: every instruction form the ISA has, for the features our CPUID advertises, is
//! implemented. Not "the forms somebody thought of": the forms come from iced-x86's tables.
//!
//! 1. The advertised feature set is read from our own CPUID leaves and mapped to iced's
//!    [`CpuidFeature`]s. A form (`iced_x86::Code`) is advertised in a mode when it is legal
//!    there for an Intel decoder, needs no special decoder option, and all of its features are
//!    advertised.
//! 2. Representatives come from decoding every opcode of the legacy maps (none, 0F, 0F38,
//!    0F3A) under every mandatory prefix and REX.W, with register and memory ModRM forms. Every
//!    advertised form must be reached, so the enumeration itself cannot silently shrink.
//! 3. Each representative is given to the translator, which must have code for it (it must not
//!    reach the "unimplemented instruction" #UD), in 64-bit mode, in compatibility mode and in
//!    32-bit protected mode, and 16-bit real mode.
//! 4. In 64-bit mode each representative also executes in a sandboxed CPU (CPL 0, SSE on, an
//!    IDT that records the vector), and must not raise #UD, except the forms whose #UD the SDM
//!    requires in that sandbox ([`expected_ud`]).
//!
//! The test prints "N of M forms implemented" per mode and fails listing every missing form,
//! except the ones in [`KNOWN_GAPS`] (what issue 17 has left), which it names in its report
//! and which must leave the list the moment they are implemented.

mod common;
use common::*;
use iced_x86::{Code, CpuidFeature, Decoder, DecoderOptions, Instruction, Mnemonic};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use tci64_x86::state::cr;
use tci64_x86::system::cpuid::{leaf_for, CpuModel};
use tci64_x86::{hflags, Cpu, CpuExit};

/// Our CPUID's features as iced names them.
fn advertised() -> HashSet<CpuidFeature> {
    use CpuidFeature as F;
    let m = CpuModel::WITH_APIC;
    let [_, _, ecx1, edx1] = leaf_for(&m, 1, 0);
    let [_, ebx7, ecx7, _] = leaf_for(&m, 7, 0);
    let [_, _, ecx81, edx81] = leaf_for(&m, 0x8000_0001, 0);
    let bit = |r: u32, b: u32| r & (1 << b) != 0;
    let mut s: HashSet<F> = [
        F::INTEL8086,
        F::INTEL186,
        F::INTEL286,
        F::INTEL386,
        F::INTEL486,
        F::X64,
        F::CPUID,
        F::MULTIBYTENOP,
        F::PAUSE,
    ]
    .into_iter()
    .collect();
    let table: &[(bool, &[F])] = &[
        (bit(edx1, 0), &[F::FPU, F::FPU287, F::FPU387]),
        (bit(edx1, 4), &[F::TSC]),
        (bit(edx1, 5), &[F::MSR]),
        (bit(edx1, 8), &[F::CX8]),
        (bit(edx1, 11), &[F::SEP]),
        (bit(edx1, 15), &[F::CMOV]),
        (bit(edx1, 19), &[F::CLFSH]),
        (bit(edx1, 23), &[F::MMX]),
        (bit(edx1, 24), &[F::FXSR]),
        (bit(edx1, 25), &[F::SSE]),
        (bit(edx1, 26), &[F::SSE2]),
        (bit(ecx1, 0), &[F::SSE3]),
        (bit(ecx1, 1), &[F::PCLMULQDQ]),
        (bit(ecx1, 3), &[F::MONITOR]),
        (bit(ecx1, 9), &[F::SSSE3]),
        (bit(ecx1, 12), &[F::FMA]),
        (bit(ecx1, 13), &[F::CMPXCHG16B]),
        (bit(ecx1, 19), &[F::SSE4_1]),
        (bit(ecx1, 20), &[F::SSE4_2]),
        (bit(ecx1, 22), &[F::MOVBE]),
        (bit(ecx1, 23), &[F::POPCNT]),
        (bit(ecx1, 25), &[F::AES]),
        (bit(ecx1, 26), &[F::XSAVE]),
        (bit(ecx1, 28), &[F::AVX]),
        (bit(ecx1, 29), &[F::F16C]),
        (bit(ecx1, 30), &[F::RDRAND]),
        (bit(ebx7, 0), &[F::FSGSBASE]),
        (bit(ebx7, 3), &[F::BMI1]),
        (bit(ebx7, 5), &[F::AVX2]),
        (bit(ebx7, 8), &[F::BMI2]),
        (bit(ebx7, 10), &[F::INVPCID]),
        (bit(ebx7, 18), &[F::RDSEED]),
        (bit(ebx7, 19), &[F::ADX]),
        (bit(ebx7, 23), &[F::CLFLUSHOPT]),
        (bit(ebx7, 24), &[F::CLWB]),
        (bit(ebx7, 29), &[F::SHA]),
        (bit(ecx7, 22), &[F::RDPID]),
        (bit(ecx81, 5), &[F::LZCNT]),
        (bit(ecx81, 8), &[F::PREFETCHW]),
        (bit(edx81, 11), &[F::SYSCALL]),
        (bit(edx81, 27), &[F::RDTSCP]),
    ];
    for (on, fs) in table {
        if *on {
            s.extend(fs.iter().copied());
        }
    }
    // A feature bit this table does not know would make the test blind to its forms: every
    // bit our CPUID sets is one of these (instruction features above, or platform bits).
    let known = |bits: &[u32]| bits.iter().fold(0u32, |m, b| m | 1 << b);
    for (name, reg, bits) in [
        (
            "1.EDX",
            edx1,
            known(&[0, 3, 4, 5, 6, 8, 9, 11, 13, 15, 16, 19, 23, 24, 25, 26]),
        ),
        (
            "1.ECX",
            ecx1,
            known(&[
                0, 1, 3, 9, 12, 13, 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30,
            ]),
        ),
        (
            "7.EBX",
            ebx7,
            known(&[0, 3, 5, 8, 9, 10, 18, 19, 23, 24, 29]),
        ),
        ("7.ECX", ecx7, known(&[22])),
        ("80000001.ECX", ecx81, known(&[0, 5, 8])),
        ("80000001.EDX", edx81, known(&[11, 20, 26, 27, 29])),
    ] {
        assert_eq!(
            reg & !bits,
            0,
            "CPUID {name} sets bits this test does not map"
        );
    }
    s
}

/// The mode a form is checked in: iced's bitness and our block mode bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Long64,
    Compat32,
    Protected32,
    Real16,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Long64,
        Mode::Compat32,
        Mode::Protected32,
        Mode::Real16,
    ];

    fn bitness(self) -> u32 {
        match self {
            Mode::Long64 => 64,
            Mode::Compat32 | Mode::Protected32 => 32,
            Mode::Real16 => 16,
        }
    }

    fn hflags(self) -> u32 {
        let sse = hflags::OSFXSR;
        match self {
            Mode::Long64 => hflags::CS64 | hflags::LMA | hflags::PE | hflags::PG | sse,
            Mode::Compat32 => {
                hflags::CS32 | hflags::SS32 | hflags::LMA | hflags::PE | hflags::PG | sse
            }
            Mode::Protected32 => hflags::CS32 | hflags::SS32 | hflags::PE | sse,
            Mode::Real16 => sse,
        }
    }

    /// Is `code` legal in this mode for an Intel CPU (iced's tables)?
    fn legal(self, code: Code) -> bool {
        let o = code.op_code();
        let (decodes, mode) = match self {
            Mode::Long64 => (o.intel_decoder64(), o.long_mode()),
            Mode::Compat32 => (o.intel_decoder32(), o.compatibility_mode()),
            Mode::Protected32 => (o.intel_decoder32(), o.protected_mode()),
            Mode::Real16 => (o.intel_decoder16(), o.real_mode()),
        };
        decodes && mode && o.use_outside_smm() && o.use_outside_vmx_op()
    }
}

/// Forms whose features are all advertised, legal in `mode`, decoded without options.
fn advertised_forms(mode: Mode, features: &HashSet<CpuidFeature>) -> BTreeSet<Code> {
    Code::values()
        .filter(|&c| {
            let o = c.op_code();
            o.is_instruction()
                && o.encoding() == iced_x86::EncodingKind::Legacy
                && o.decoder_option() == DecoderOptions::NONE
                // The waiting x87 forms (FSTCW = FWAIT + FNSTCW) exist for encoders only: a
                // decoder gives the two instructions, each a form of its own.
                && !o.fwait()
                && mode.legal(c)
                && c.cpuid_features().iter().all(|f| features.contains(f))
        })
        .collect()
}

/// Representatives of every legacy-encoded form, decoded in `bitness`: per code, a register
/// form and a memory form where they exist (the bytes of one instruction each).
fn representatives(bitness: u32) -> BTreeMap<Code, Vec<Vec<u8>>> {
    // Mandatory prefixes, and the operand-size prefix with them (POPCNT r16, CRC32 r, rm16).
    let mut prefixes: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x66],
        vec![0xf2],
        vec![0xf3],
        vec![0x66, 0xf2],
        vec![0x66, 0xf3],
    ];
    if bitness == 64 {
        for p in prefixes.clone() {
            let mut w = p.clone();
            w.push(0x48);
            prefixes.push(w);
        }
    }
    let maps: [&[u8]; 4] = [&[], &[0x0f], &[0x0f, 0x38], &[0x0f, 0x3a]];
    // ModRM: every register form, and one memory form per reg field: [ebx]/[rbx] in 32/64-bit
    // addressing, [bp+di] (rm 3) in 16-bit.
    let modrms: Vec<u8> = (0..8u8).map(|r| (r << 3) | 3).chain(0xc0..=0xff).collect();
    let mut out: BTreeMap<Code, Vec<Vec<u8>>> = BTreeMap::new();
    let mut seen: HashSet<(Code, bool)> = HashSet::new();
    let mut insn = Instruction::default();
    for p in &prefixes {
        for map in maps {
            for op in 0..=255u8 {
                for &m in &modrms {
                    let mut bytes = p.clone();
                    bytes.extend_from_slice(map);
                    bytes.push(op);
                    bytes.push(m);
                    // Immediates and displacements: small non-zero values.
                    bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    let mut d = Decoder::with_ip(bitness, &bytes, CODE, DecoderOptions::NONE);
                    d.decode_out(&mut insn);
                    if insn.is_invalid() {
                        continue;
                    }
                    let mem =
                        (0..insn.op_count()).any(|i| insn.op_kind(i) == iced_x86::OpKind::Memory);
                    if seen.insert((insn.code(), mem)) {
                        out.entry(insn.code())
                            .or_default()
                            .push(bytes[..insn.len()].to_vec());
                    }
                }
            }
        }
    }
    out
}

/// Forms whose #UD the SDM requires in the sandbox (CPL 0, 64-bit mode, outside SMM).
fn expected_ud(insn: &Instruction) -> bool {
    matches!(
        insn.mnemonic(),
        Mnemonic::Ud0 | Mnemonic::Ud1 | Mnemonic::Ud2 | Mnemonic::Rsm
    )
}

/// Run `bytes` alone in a sandboxed 64-bit CPU at CPL 0; returns the vector it raised, if any.
fn run_sandboxed(bytes: &[u8]) -> Option<u8> {
    let mut code = assemble(sys_prologue);
    code.extend_from_slice(bytes);
    code.push(0xf4);
    let mut cpu: Cpu = machine(&code);
    {
        let g = &mut cpu.core_mut().guest;
        g.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
        g.efer |= cr::EFER_SCE;
    }
    system_tables(&mut cpu);
    record_exceptions(&mut cpu, DATA + 0x800);
    {
        use tci64_x86::regs::*;
        let r = &mut cpu.core_mut().regs.0;
        // Memory operands ([rbx], [bp+di]) point into DATA; counts are small.
        r[RBX as usize] = DATA;
        r[RCX as usize] = 1;
        r[RDX as usize] = 0;
        r[RAX as usize] = 1;
        r[RSI as usize] = DATA + 0x100;
        r[RDI as usize] = DATA + 0x200;
    }
    let e = cpu.run(&mut TestBus::default(), 100);
    let v = read_u64(&cpu, DATA + 0x800);
    match e {
        CpuExit::Halted { .. } | CpuExit::Budget => {}
        other => panic!("{bytes:02x?}: the sandbox ended with {other:?}"),
    }
    (v != 0xff).then_some(v as u8)
}

#[test]
fn every_advertised_form_is_implemented_in_every_mode() {
    let features = advertised();
    let mut report = String::new();
    let mut failures = Vec::new();
    for mode in Mode::ALL {
        let forms = advertised_forms(mode, &features);
        let reps = representatives(mode.bitness());
        let unreached: Vec<Code> = forms
            .iter()
            .filter(|c| !reps.contains_key(c))
            .copied()
            .collect();
        let mut missing = Vec::new();
        for code in &forms {
            let Some(rs) = reps.get(code) else { continue };
            for bytes in rs {
                let mut d = Decoder::with_ip(mode.bitness(), bytes, CODE, DecoderOptions::NONE);
                let insn = d.decode();
                let done = tci64_x86::translate::implemented(&insn, mode.hflags());
                if !done {
                    missing.push(format!("{code:?} ({bytes:02x?}: {insn})"));
                }
                if done && KNOWN_GAPS.contains(code) {
                    failures.push(format!(
                        "{code:?} is implemented now: take it off KNOWN_GAPS"
                    ));
                }
            }
        }
        let implemented = forms.len()
            - forms
                .iter()
                .filter(|c| missing.iter().any(|m| m.starts_with(&format!("{c:?} "))))
                .count();
        report.push_str(&format!(
            "{mode:?}: {implemented} of {} forms implemented (known gaps: {KNOWN_GAPS:?})\n",
            forms.len()
        ));
        if !unreached.is_empty() {
            failures.push(format!(
                "{mode:?}: {} advertised forms the enumeration never produced: {unreached:?}",
                unreached.len()
            ));
        }
        missing.retain(|m| !KNOWN_GAPS.iter().any(|c| m.starts_with(&format!("{c:?} "))));
        if !missing.is_empty() {
            failures.push(format!(
                "{mode:?}: {} forms not implemented:\n  {}",
                missing.len(),
                missing.join("\n  ")
            ));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{report}\n{}", failures.join("\n"));
}

#[test]
fn advertised_forms_execute_without_ud_in_64_bit_mode() {
    let features = advertised();
    let forms = advertised_forms(Mode::Long64, &features);
    let reps = representatives(64);
    let mut ud = Vec::new();
    let mut n = 0;
    for code in &forms {
        for bytes in reps.get(code).into_iter().flatten() {
            let insn = Decoder::with_ip(64, bytes, CODE, DecoderOptions::NONE).decode();
            if KNOWN_GAPS.contains(code) {
                continue;
            }
            n += 1;
            let v = run_sandboxed(bytes);
            if (v == Some(6)) != expected_ud(&insn) {
                ud.push(format!("{code:?} ({bytes:02x?}: {insn}): vector {v:?}"));
            }
        }
    }
    println!("{n} representatives executed");
    assert!(
        ud.is_empty(),
        "{} forms with a wrong #UD:\n  {}",
        ud.len(),
        ud.join("\n  ")
    );
}

/// Advertised forms not implemented yet (issue 17), listed so that the test names them and
/// fails the moment one is implemented and not taken off the list.
const KNOWN_GAPS: &[Code] = &[];
