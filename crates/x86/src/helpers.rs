//! The helper table: Rust functions the translated code calls through `Op::Call`.
//!
//! Each instruction family declares its helpers with [`helpers!`] in its own file, in its own
//! range of ids; [`table`] stitches the ranges into the one table the engine indexes.

use crate::bus::X86Bus;
use crate::X86;
use std::sync::OnceLock;
use tci64_engine::{Core, HelperFn, Trap};

/// The helper signature: the core, the bus, three arguments; a result or a trap.
pub type Helper = HelperFn<X86>;

/// Shorthand for the bus type helpers receive.
pub type Bus = dyn X86Bus;

/// First helper id of each family.
pub mod base {
    pub const CORE: u16 = 0;
    pub const ALU: u16 = 64;
    pub const STRING: u16 = 128;
    pub const SYSTEM: u16 = 192;
    pub const SSE: u16 = 384;
    pub const X87: u16 = 768;
    pub const END: u16 = 1024;
}

/// Declare a family's helpers: an enum of names (whose `id()` is what `Op::Call` takes) and
/// the matching table, from one list.
#[macro_export]
macro_rules! helpers {
    ($vis:vis enum $E:ident @ $base:expr ; { $($name:ident => $f:path),* $(,)? }) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        $vis enum $E { $($name),* }
        impl $E {
            /// The id to put in `Op::Call`.
            #[allow(dead_code)]
            pub const fn id(self) -> u16 { $base + self as u16 }
            /// Start of this family's range.
            pub const BASE: u16 = $base;
            /// The family's helpers in id order.
            pub const TABLE: &'static [$crate::helpers::Helper] = &[$($f),*];
        }
    };
}

fn invalid(_: &mut Core<X86>, _: &mut Bus, _: u64, _: u64, _: u64) -> Result<u64, Trap> {
    log::error!("call to an unassigned helper id");
    Err(Trap::Restart)
}

fn place(t: &mut [Helper], base: u16, end: u16, fs: &[Helper]) {
    assert!(
        base as usize + fs.len() <= end as usize,
        "helper family at {base} overflows its range"
    );
    t[base as usize..base as usize + fs.len()].copy_from_slice(fs);
}

/// The whole table.
pub fn table() -> &'static [Helper] {
    static T: OnceLock<Vec<Helper>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: Vec<Helper> = vec![invalid; base::END as usize];
        place(
            &mut t,
            base::CORE,
            base::ALU,
            crate::translate::CoreH::TABLE,
        );
        for (b, e, fs) in crate::translate::families() {
            place(&mut t, b, e, fs);
        }
        t
    })
}
