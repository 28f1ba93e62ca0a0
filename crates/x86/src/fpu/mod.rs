//! x87 and SSE arithmetic: a soft-float core, the SSE helper, the x87 helper, FXSAVE/FXRSTOR.

pub mod fxsave;
pub mod soft;
pub mod sse;
pub mod x87;
