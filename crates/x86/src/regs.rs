//! The x86 CPU's layout of the engine's register file (its "globals").

use tci64_engine::Slot;

pub const RAX: Slot = 0;
pub const RCX: Slot = 1;
pub const RDX: Slot = 2;
pub const RBX: Slot = 3;
pub const RSP: Slot = 4;
pub const RBP: Slot = 5;
pub const RSI: Slot = 6;
pub const RDI: Slot = 7;
// R8..R15 are slots 8..15.
/// The instruction pointer (virtual; in 32-bit modes the upper half is zero).
pub const RIP: Slot = 16;
/// Lazy flags: the result of the last flag-setting operation, zero-extended to its size.
pub const CC_DST: Slot = 17;
/// Lazy flags: the second source (or carry-in / high product / shifted-out value).
pub const CC_SRC: Slot = 18;
/// Lazy flags: the first source where the flags need it (SUB/SBB/ADC).
pub const CC_SRC2: Slot = 19;
/// Lazy flags: the [`crate::flags::CcOp`] the three slots above belong to.
pub const CC_OP: Slot = 20;
/// RFLAGS without the six arithmetic flags (they live in the lazy state).
pub const RFLAGS: Slot = 21;
/// Segment bases, in the order ES, CS, SS, DS, FS, GS.
pub const SEG_BASE: Slot = 22;
pub const ES_BASE: Slot = 22;
pub const CS_BASE: Slot = 23;
pub const SS_BASE: Slot = 24;
pub const DS_BASE: Slot = 25;
pub const FS_BASE: Slot = 26;
pub const GS_BASE: Slot = 27;
/// First temporary slot.
pub const FIRST_TEMP: Slot = 32;

/// Segment register numbers (index into `X86State::segs` and `SEG_BASE + n`).
pub const ES: usize = 0;
pub const CS: usize = 1;
pub const SS: usize = 2;
pub const DS: usize = 3;
pub const FS: usize = 4;
pub const GS: usize = 5;

/// RFLAGS bits.
pub mod fl {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic flags.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Names of the global slots, for `-d op` listings.
pub fn slot_name(s: Slot) -> Option<&'static str> {
    const NAMES: [&str; 28] = [
        "RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12",
        "R13", "R14", "R15", "RIP", "CC_DST", "CC_SRC", "CC_SRC2", "CC_OP", "RFLAGS", "ES_BASE",
        "CS_BASE", "SS_BASE", "DS_BASE", "FS_BASE", "GS_BASE",
    ];
    NAMES.get(s as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_follow_the_layout() {
        assert_eq!(slot_name(RAX), Some("RAX"));
        assert_eq!(slot_name(15), Some("R15"));
        assert_eq!(slot_name(RIP), Some("RIP"));
        assert_eq!(slot_name(CC_DST), Some("CC_DST"));
        assert_eq!(slot_name(CC_OP), Some("CC_OP"));
        assert_eq!(slot_name(RFLAGS), Some("RFLAGS"));
        assert_eq!(slot_name(GS_BASE), Some("GS_BASE"));
        assert_eq!(slot_name(FIRST_TEMP), None);
    }
}
