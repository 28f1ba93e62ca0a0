//! x87 and SSE arithmetic: a soft-float core, the SSE helper, the x87 helper, FXSAVE/FXRSTOR,
//! the SSE3/SSSE3/SSE4 helper and the SSE4.2 string compares.

pub mod fxsave;
pub mod mmx;
pub mod pcmpstr;
pub mod soft;
pub mod sse;
pub mod sse4;
pub mod x87;
