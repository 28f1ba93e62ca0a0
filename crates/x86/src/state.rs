//! Architectural state of the x86-64 CPU that does not live in the engine's register file.
//! Plain serde data: [`crate::cpu::CpuState`] adds the register file's globals and makes a
//! snapshot of the CPU.

use serde::{Deserialize, Serialize};

/// A segment register's hidden part (the descriptor cache) and selector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    /// Descriptor attribute bits as in the descriptor's bytes 5-6: type (0-3), S (4), DPL
    /// (5-6), P (7), AVL (12), L (13), D/B (14), G (15).
    pub attr: u16,
}

/// A segment register as [`X86State::segs`] holds it: the selector and the descriptor cache's
/// limit and attributes. Its base lives in one place only, the engine slot `SEG_BASE + n`
/// (see [`crate::regs`]); [`crate::system::seg::seg`] puts the two together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegReg {
    pub selector: u16,
    pub limit: u32,
    /// As [`Segment::attr`].
    pub attr: u16,
}

impl SegReg {
    /// DPL field.
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    /// With `base`, the whole segment.
    pub fn with_base(self, base: u64) -> Segment {
        Segment {
            selector: self.selector,
            base,
            limit: self.limit,
            attr: self.attr,
        }
    }
}

impl Segment {
    /// The part [`X86State::segs`] keeps (everything but the base).
    pub fn reg(&self) -> SegReg {
        SegReg {
            selector: self.selector,
            limit: self.limit,
            attr: self.attr,
        }
    }
    pub const ATTR_P: u16 = 1 << 7;
    pub const ATTR_L: u16 = 1 << 13;
    pub const ATTR_DB: u16 = 1 << 14;
    pub const ATTR_G: u16 = 1 << 15;
    /// DPL field.
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
}

/// GDTR/IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescTable {
    pub base: u64,
    pub limit: u16,
}

/// An exception or interrupt waiting to be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub vector: u8,
    pub error_code: Option<u32>,
    pub kind: EventKind,
}

/// Where an event came from (decides the saved RIP and privilege checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A fault or trap raised by an instruction; RIP already points where the architecture
    /// says the handler returns to (the faulting instruction for faults).
    Exception,
    /// `INT n` / `INT3` / `INTO`: software interrupt; the return RIP is `next_rip`, and the
    /// gate DPL is checked against CPL.
    Software { next_rip: u64 },
    /// External interrupt (from the PIC) or NMI.
    External,
}

/// x87 FPU state. Registers hold 80-bit extended values as (mantissa, sign+exponent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct X87 {
    /// Physical registers R0..R7 (ST(i) = R[(top + i) & 7]).
    pub regs: [(u64, u16); 8],
    pub fcw: u16,
    /// Status word without TOP (bits 11-13 come from `top`).
    pub fsw: u16,
    pub top: u8,
    /// Full 16-bit tag word (2 bits per register).
    pub ftw: u16,
    pub fop: u16,
    pub fip: u64,
    pub fdp: u64,
    pub fcs: u16,
    pub fds: u16,
}

impl Default for X87 {
    fn default() -> Self {
        X87 {
            regs: [(0, 0); 8],
            fcw: 0x037f,
            fsw: 0,
            top: 0,
            ftw: 0xffff,
            fop: 0,
            fip: 0,
            fdp: 0,
            fcs: 0,
            fds: 0,
        }
    }
}

/// Everything of the x86 CPU besides the engine's register file (GPRs, RIP, lazy flags,
/// RFLAGS and segment bases live there; see [`crate::regs`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct X86State {
    /// ES, CS, SS, DS, FS, GS without their bases (those are the engine slots
    /// `SEG_BASE + n`, the one authority).
    pub segs: [SegReg; 6],
    pub ldtr: Segment,
    pub tr: Segment,
    pub gdtr: DescTable,
    pub idtr: DescTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub xcr0: u64,
    pub dr: [u64; 8],
    /// Current privilege level (CS.DPL in protected mode).
    pub cpl: u8,
    // MSRs stored as plain values.
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub tsc_aux: u64,
    pub tsc_offset: i64,
    pub apic_base: u64,
    pub pat: u64,
    pub misc_enable: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub mtrr_def_type: u64,
    pub mtrr_fixed: [u64; 11],
    pub mtrr_var: [u64; 16],
    /// SSE registers XMM0-15 (low, high 64 bits).
    pub xmm: [[u64; 2]; 16],
    pub mxcsr: u32,
    pub x87: X87,
    /// The exception a helper or the page walker recorded, to deliver on the trap.
    pub pending: Option<Event>,
    /// HLT executed; waiting for an interrupt.
    pub halted: bool,
    /// Interrupts are inhibited for one more instruction (after STI / MOV SS / POP SS).
    pub irq_shadow: bool,
    /// An NMI is waiting.
    pub nmi_pending: bool,
    /// Blocking further NMIs until IRET.
    pub nmi_blocked: bool,
    /// A triple fault or reset request happened: the machine resets (or exits).
    pub reset_requested: bool,
    /// Exceptions being delivered, for double/triple fault detection.
    pub delivering: u8,
    /// The machine-dependent CPUID features (local APIC, x2APIC, TSC-deadline).
    /// Machine configuration, not guest state: a restore keeps the machine's own.
    #[serde(skip)]
    pub model: crate::system::cpuid::CpuModel,
}

impl Default for X86State {
    fn default() -> Self {
        X86State {
            segs: [SegReg::default(); 6],
            ldtr: Segment::default(),
            tr: Segment::default(),
            gdtr: DescTable::default(),
            idtr: DescTable {
                base: 0,
                limit: 0x3ff,
            },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            xcr0: 1,
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            cpl: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            tsc_aux: 0,
            tsc_offset: 0,
            apic_base: 0,
            pat: 0x0007_0406_0007_0406,
            misc_enable: 1,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            mtrr_def_type: 0,
            mtrr_fixed: [0; 11],
            mtrr_var: [0; 16],
            xmm: [[0; 2]; 16],
            mxcsr: 0x1f80,
            x87: X87::default(),
            pending: None,
            halted: false,
            irq_shadow: false,
            nmi_pending: false,
            nmi_blocked: false,
            reset_requested: false,
            delivering: 0,
            model: Default::default(),
        }
    }
}

/// Control-register and EFER bits.
pub mod cr {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_EM: u64 = 1 << 2;
    pub const CR0_TS: u64 = 1 << 3;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_AM: u64 = 1 << 18;
    pub const CR0_NW: u64 = 1 << 29;
    pub const CR0_CD: u64 = 1 << 30;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_VME: u64 = 1 << 0;
    pub const CR4_PVI: u64 = 1 << 1;
    pub const CR4_TSD: u64 = 1 << 2;
    pub const CR4_DE: u64 = 1 << 3;
    pub const CR4_PSE: u64 = 1 << 4;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_MCE: u64 = 1 << 6;
    pub const CR4_PGE: u64 = 1 << 7;
    pub const CR4_PCE: u64 = 1 << 8;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    pub const CR4_UMIP: u64 = 1 << 11;
    pub const CR4_FSGSBASE: u64 = 1 << 16;
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    pub const CR4_SMEP: u64 = 1 << 20;
    pub const CR4_SMAP: u64 = 1 << 21;
    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
}

/// Exception vectors.
pub mod vec {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}
