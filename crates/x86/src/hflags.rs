//! Mode bits that key translation blocks: code translated under one set of these is only
//! valid under the same set.

/// Current privilege level (bits 0-1).
pub const CPL: u32 = 3;
/// 64-bit code segment (EFER.LMA and CS.L).
pub const CS64: u32 = 1 << 2;
/// 32-bit default operand size (CS.D) outside 64-bit mode.
pub const CS32: u32 = 1 << 3;
/// 32-bit stack (SS.B).
pub const SS32: u32 = 1 << 4;
/// Protected mode (CR0.PE).
pub const PE: u32 = 1 << 5;
/// Outside 64-bit mode, some of DS/ES/SS has a non-zero base: add bases to addresses.
pub const ADDSEG: u32 = 1 << 6;
/// RFLAGS.TF: single-step.
pub const TF: u32 = 1 << 7;
/// CR0.TS
pub const TS: u32 = 1 << 8;
/// CR0.EM
pub const EM: u32 = 1 << 9;
/// CR0.MP
pub const MP: u32 = 1 << 10;
/// CR4.OSFXSR
pub const OSFXSR: u32 = 1 << 11;
/// CR4.OSXSAVE
pub const OSXSAVE: u32 = 1 << 12;
/// EFER.LMA (long mode active; 64-bit or compatibility mode)
pub const LMA: u32 = 1 << 13;
/// CR0.PG
pub const PG: u32 = 1 << 14;
