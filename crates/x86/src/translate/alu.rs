//! Instruction family: shifts/rotates, multiply/divide, bit operations, BMI, exchange/compare-exchange, byte swaps, loops.

use super::{Flow, Tr};
use crate::helpers::{base, Helper};

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::ALU, base::STRING, &[]);

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let _ = t;
    None
}
