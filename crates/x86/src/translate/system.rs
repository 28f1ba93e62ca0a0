//! Instruction family: system instructions: privileged state, segments, port I/O, interrupts, CPUID, MSRs.

use super::{Flow, Tr};
use crate::helpers::{base, Helper};

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::SYSTEM, base::SSE, &[]);

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let _ = t;
    None
}
