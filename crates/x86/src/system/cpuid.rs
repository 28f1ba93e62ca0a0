//! CPUID: one coherent CPU model, a family-6 "GenuineIntel" part that advertises exactly what
//! the emulator implements. Instruction families flip their bits in [`FEATURES`].

use crate::regs::*;
use crate::X86;
use tci64_engine::Core;

/// The features that depend on the machine rather than on the instruction set: whether the
/// CPU has a local APIC (`-cpu qemu64,-apic` removes it), x2APIC mode and the TSC-deadline
/// timer mode. Kept per CPU in [`crate::X86State::model`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuModel {
    /// Leaf 1 EDX.9: an on-chip local APIC.
    pub apic: bool,
    /// Leaf 1 ECX.21: x2APIC (only with `apic`).
    pub x2apic: bool,
    /// Leaf 1 ECX.24: the LVT timer's TSC-deadline mode (only with `apic`).
    pub tsc_deadline: bool,
}

impl CpuModel {
    /// A CPU with a local APIC, x2APIC and TSC-deadline (the machine's default).
    pub const WITH_APIC: CpuModel = CpuModel {
        apic: true,
        x2apic: true,
        tsc_deadline: true,
    };
}

/// Optional features: flip a bit to `true` once the instructions behind it are complete.
/// Everything not listed here is either always present (see [`leaf`]) or never advertised
/// (hypervisor, XSAVE, SMEP/SMAP, FSGSBASE, PCID, INVPCID,
/// RDPID, RDRAND, MTRR, MCE/MCA).
pub struct Features {
    /// x87 FPU (leaf 1 EDX.0): required by x86-64 Linux.
    pub fpu: bool,
    /// MMX (leaf 1 EDX.23).
    pub mmx: bool,
    /// FXSAVE/FXRSTOR (leaf 1 EDX.24): required.
    pub fxsr: bool,
    /// SSE, SSE2 (leaf 1 EDX.25/26): required.
    pub sse: bool,
    pub sse2: bool,
    /// leaf 1 ECX.
    pub sse3: bool,
    pub ssse3: bool,
    pub sse41: bool,
    pub sse42: bool,
    pub cx16: bool,
    pub movbe: bool,
    pub popcnt: bool,
    /// CMPXCHG8B (leaf 1 EDX.8): required by x86-64 Linux.
    pub cx8: bool,
    /// CMOVcc (leaf 1 EDX.15): required.
    pub cmov: bool,
    /// SYSENTER/SYSEXIT (leaf 1 EDX.11, "SEP"): the 32-bit vDSO's system call on Intel.
    pub sep: bool,
    /// LZCNT (0x80000001 ECX.5, "ABM").
    pub lzcnt: bool,
    /// leaf 7 EBX.
    pub bmi1: bool,
    pub bmi2: bool,
    pub adx: bool,
    /// Enhanced REP MOVSB/STOSB (leaf 7 EBX.9).
    pub erms: bool,
    /// RDTSCP (0x80000001 EDX.27).
    pub rdtscp: bool,
}

/// The feature table (edit here).
pub const FEATURES: Features = Features {
    fpu: true,
    mmx: true,
    fxsr: true,
    sse: true,
    sse2: true,
    sse3: true,
    ssse3: true,
    sse41: true,
    sse42: true,
    cx16: true,
    movbe: true,
    popcnt: true,
    cx8: true,
    cmov: true,
    sep: true,
    lzcnt: true,
    bmi1: true,
    bmi2: true,
    adx: true,
    erms: false,
    rdtscp: true,
};

/// Highest basic leaf (0x15/0x16 give the TSC and core frequencies).
pub const MAX_LEAF: u32 = 0x16;
/// The TSC and local APIC timer input frequency: the machine's 1 GHz virtual clock (one tick
/// per virtual nanosecond, with or without `-icount`).
pub const TSC_HZ: u32 = 1_000_000_000;
/// Highest extended leaf.
pub const MAX_EXT_LEAF: u32 = 0x8000_0008;
/// Family 6, model 0x17 (Penryn-like), stepping 10. A family-6 model from before Nehalem on
/// purpose: Linux then binds no model-specific drivers (uncore, RAPL, C-state residency
/// PMUs) that write MSRs unconditionally; model 0x3a made the uncore driver WRMSR 0x391.
pub const SIGNATURE: u32 = (0x1 << 16) | (6 << 8) | (0x7 << 4) | 0xa;
/// Physical / linear address widths (0x80000008 EAX).
pub const PHYS_BITS: u32 = 40;
pub const VIRT_BITS: u32 = 48;
/// The brand string (48 bytes, NUL padded).
pub const BRAND: &[u8] = b"tci64 x86-64 interpreter";

fn b(on: bool, bit: u32) -> u32 {
    (on as u32) << bit
}

fn str4(s: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    for (k, x) in s.iter().take(4).enumerate() {
        w[k] = *x;
    }
    u32::from_le_bytes(w)
}

fn brand(word: usize) -> u32 {
    let mut buf = [0u8; 48];
    let n = BRAND.len().min(47);
    buf[..n].copy_from_slice(&BRAND[..n]);
    let o = word * 4;
    str4(&buf[o..o + 4])
}

/// Leaf 1 EDX.
pub fn leaf1_edx(m: &CpuModel) -> u32 {
    let f = &FEATURES;
    b(m.apic, 9)
        | b(f.fpu, 0)
        | (1 << 3) // PSE
        | (1 << 4) // TSC
        | (1 << 5) // MSR
        | (1 << 6) // PAE
        | b(f.cx8, 8)
        | b(f.sep, 11)
        | (1 << 13) // PGE
        | b(f.cmov, 15)
        | (1 << 16) // PAT
        | (1 << 19) // CLFSH
        | b(f.mmx, 23)
        | b(f.fxsr, 24)
        | b(f.sse, 25)
        | b(f.sse2, 26)
}

/// Leaf 1 ECX.
pub fn leaf1_ecx(m: &CpuModel) -> u32 {
    let f = &FEATURES;
    b(m.apic && m.x2apic, 21)
        | b(m.apic && m.tsc_deadline, 24)
        | b(f.sse3, 0)
        | b(f.ssse3, 9)
        | b(f.cx16, 13)
        | b(f.sse41, 19)
        | b(f.sse42, 20)
        | b(f.movbe, 22)
        | b(f.popcnt, 23)
}

/// CPUID leaf `eax`, subleaf `ecx` of the default model (no APIC): (EAX, EBX, ECX, EDX).
pub fn leaf(eax: u32, ecx: u32) -> [u32; 4] {
    leaf_for(&CpuModel::default(), eax, ecx)
}

/// CPUID leaf `eax`, subleaf `ecx` of a CPU with model `m`: (EAX, EBX, ECX, EDX).
pub fn leaf_for(m: &CpuModel, eax: u32, ecx: u32) -> [u32; 4] {
    let f = &FEATURES;
    match eax {
        0 => [MAX_LEAF, str4(b"Genu"), str4(b"ntel"), str4(b"ineI")],
        // EBX: CLFLUSH line 8 * 8 = 64 bytes, 1 logical processor, APIC id 0.
        1 => [SIGNATURE, (8 << 8) | (1 << 16), leaf1_ecx(m), leaf1_edx(m)],
        // One iteration; descriptors: 0xff = "use leaf 4", else null.
        2 => [0x00ff_0001, 0, 0, 0],
        4 => {
            // Deterministic cache parameters: EAX type/level, EBX ways/partitions/line,
            // ECX sets - 1. Subleaf 3 on: type 0 (no more caches).
            let line = 63u32;
            let mk = |typ: u32, level: u32, ways: u32, sets: u32| -> [u32; 4] {
                [
                    typ | (level << 5) | (1 << 8),
                    ((ways - 1) << 22) | line,
                    sets - 1,
                    0,
                ]
            };
            match ecx {
                0 => mk(1, 1, 8, 64),    // L1d 32 KiB
                1 => mk(2, 1, 8, 64),    // L1i 32 KiB
                2 => mk(3, 2, 8, 512),   // L2 256 KiB
                3 => mk(3, 3, 16, 4096), // L3 4 MiB
                _ => [0; 4],
            }
        }
        7 if ecx == 0 => [
            0,
            b(f.bmi1, 3) | b(f.bmi2, 8) | b(f.erms, 9) | b(f.adx, 19),
            0,
            0,
        ],
        // TSC / core crystal clock: ratio 1/1 of a 1 GHz crystal (SDM vol. 2A, CPUID leaf
        // 15H). Linux takes the TSC frequency (and the APIC timer period) from here instead of
        // timing the PIT, which is fragile on a busy host.
        0x15 => [1, 1, TSC_HZ, 0],
        // Processor base / maximum / bus frequency in MHz (leaf 16H).
        0x16 => [TSC_HZ / 1_000_000, TSC_HZ / 1_000_000, 100, 0],
        0x8000_0000 => [MAX_EXT_LEAF, 0, 0, 0],
        0x8000_0001 => [
            0,
            0,
            1 | b(f.lzcnt, 5) | (1 << 8), // LAHF_LM, ABM, 3DNowPrefetch (PREFETCHW)
            (1 << 11) | (1 << 20) | (1 << 26) | b(f.rdtscp, 27) | (1 << 29),
        ],
        0x8000_0002..=0x8000_0004 => {
            let k = (eax - 0x8000_0002) as usize * 4;
            [brand(k), brand(k + 1), brand(k + 2), brand(k + 3)]
        }
        // L2: 256 KiB, 8-way, 64-byte lines.
        0x8000_0006 => [0, 0, (256 << 16) | (6 << 12) | 64, 0],
        0x8000_0008 => [(VIRT_BITS << 8) | PHYS_BITS, 0, 0, 0],
        _ => [0; 4],
    }
}

/// The CPUID instruction: EAX/ECX in, EAX/EBX/ECX/EDX out (upper halves cleared).
pub fn cpuid(c: &mut Core<X86>) {
    let r = &mut c.regs.0;
    let out = leaf_for(
        &c.guest.model,
        r[RAX as usize] as u32,
        r[RCX as usize] as u32,
    );
    r[RAX as usize] = out[0] as u64;
    r[RBX as usize] = out[1] as u64;
    r[RCX as usize] = out[2] as u64;
    r[RDX as usize] = out[3] as u64;
}
