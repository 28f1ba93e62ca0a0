//! Instruction family: SSE through SSE4.2.

use super::{Flow, Tr};
use crate::helpers::{base, Helper};

/// This family's helpers: (first id, end of range, table).
pub const HELPERS: (u16, u16, &[Helper]) = (base::SSE, base::X87, &[]);

/// Translate this family's instructions; `None` for anything else.
pub fn translate(t: &mut Tr) -> Option<Flow> {
    let _ = t;
    None
}
