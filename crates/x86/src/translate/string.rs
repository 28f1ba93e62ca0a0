//! Instruction family: string instructions (MOVS/STOS/LODS/SCAS/CMPS/INS/OUTS) with REP prefixes.

use super::{Flow, Tr};
use crate::helpers::{base, Helper};

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::STRING, base::SYSTEM, &[]);

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let _ = t;
    None
}
