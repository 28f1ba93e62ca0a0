//! Debugger support (a GDB stub, a monitor): breakpoints, watchpoints and single-step, kept
//! guest-independent and off the hot path.
//!
//! - **Breakpoints** are virtual PCs. They never patch guest memory: the front end asks
//!   [`crate::Core::breakpoint_at`] while translating, ends a block before a breakpoint
//!   address, and translates a block that starts at one as a lone `Exit { code: EXIT_DEBUG }`,
//!   which the run loop turns into [`crate::Stop::Debug`]. Changing the set flushes the
//!   translated code; with no breakpoints the translator's check is one empty-vector test.
//! - **Watchpoints** are virtual ranges. TLB entries of pages they touch carry
//!   [`crate::mem::TAG_WATCH`], so accesses there take the slow path (`Core::read`/`write`),
//!   which compares the access with the watchpoints. A hit lets the guest instruction finish
//!   (the debugger sees the new value, as with x86 data breakpoints, which are traps) and
//!   then stops the run loop. Other pages keep the fast path.
//! - **Single-step** ([`crate::Engine::step`]) runs one instruction from a one-instruction
//!   block that is not cached, delivering a pending interrupt first (the step then ends at the
//!   handler's first instruction, as QEMU does by default). It does not use the guest's own
//!   trap flag.

use crate::mem::PAGE_MASK;

/// Exit code of the block a front end translates at a breakpoint address.
pub const EXIT_DEBUG: u32 = u32::MAX - 1;

/// What a watchpoint watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Write,
    Read,
    /// Reads and writes.
    Access,
}

/// One watchpoint: `len` bytes at virtual `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watchpoint {
    pub addr: u64,
    pub len: u64,
    pub kind: WatchKind,
}

impl Watchpoint {
    /// First and last virtual page the watchpoint touches.
    pub(crate) fn pages(&self) -> (u64, u64) {
        let last = self.addr.wrapping_add(self.len.max(1) - 1);
        (self.addr & !PAGE_MASK, last & !PAGE_MASK)
    }

    fn overlaps(&self, addr: u64, size: u64) -> bool {
        let (a0, a1) = (addr, addr.wrapping_add(size.max(1) - 1));
        let (w0, w1) = (self.addr, self.addr.wrapping_add(self.len.max(1) - 1));
        a0 <= w1 && w0 <= a1
    }
}

/// Why the run loop stopped for the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugStop {
    /// The PC reached a breakpoint (nothing of that instruction has run).
    Breakpoint,
    /// An instruction accessed a watched range; it has completed. `addr` is the watchpoint's
    /// address (what GDB wants back), `kind` the access that hit it.
    Watch { addr: u64, kind: WatchKind },
    /// [`crate::Engine::step`] finished its instruction (or delivered an event).
    Step,
}

/// The debugger's state in a core.
#[derive(Clone, Debug, Default)]
pub struct Debug {
    pub(crate) breakpoints: Vec<u64>,
    pub(crate) watchpoints: Vec<Watchpoint>,
    /// A watchpoint hit by the current instruction, reported when it finishes.
    pub(crate) hit: Option<(u64, WatchKind)>,
    /// While [`crate::Engine::step`] translates: the breakpoint at this PC is stepped over.
    pub(crate) step_over: Option<u64>,
}

impl Debug {
    /// The breakpoints, in insertion order (an address inserted twice appears twice).
    pub fn breakpoints(&self) -> &[u64] {
        &self.breakpoints
    }

    /// The watchpoints.
    pub fn watchpoints(&self) -> &[Watchpoint] {
        &self.watchpoints
    }

    /// True if any breakpoint, watchpoint or pending hit is set.
    pub fn is_active(&self) -> bool {
        !self.breakpoints.is_empty() || !self.watchpoints.is_empty()
    }

    /// Compare an access of `size` bytes at `addr` with the watchpoints (slow path of a
    /// watched page only) and remember the first hit. Returns true on a hit.
    pub(crate) fn check_access(&mut self, addr: u64, size: u64, write: bool) -> bool {
        if self.hit.is_some() {
            return true;
        }
        let w = self.watchpoints.iter().find(|w| {
            let kind_ok = match w.kind {
                WatchKind::Write => write,
                WatchKind::Read => !write,
                WatchKind::Access => true,
            };
            kind_ok && w.overlaps(addr, size)
        });
        match w {
            Some(w) => {
                let kind = match (w.kind, write) {
                    (WatchKind::Access, _) => WatchKind::Access,
                    (_, true) => WatchKind::Write,
                    (_, false) => WatchKind::Read,
                };
                self.hit = Some((w.addr, kind));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_kinds_and_overlap() {
        let mut d = Debug {
            watchpoints: vec![Watchpoint {
                addr: 0x1000,
                len: 8,
                kind: WatchKind::Write,
            }],
            ..Debug::default()
        };
        assert!(
            !d.check_access(0x1000, 8, false),
            "a read does not hit a write watch"
        );
        assert!(!d.check_access(0x1008, 1, true), "past the end");
        assert!(!d.check_access(0xff8, 8, true), "before the start");
        assert!(d.check_access(0xffc, 8, true), "straddling the start");
        assert_eq!(d.hit, Some((0x1000, WatchKind::Write)));
        let w = Watchpoint {
            addr: 0x1ffe,
            len: 4,
            kind: WatchKind::Access,
        };
        assert_eq!(w.pages(), (0x1000, 0x2000));
        let mut d = Debug {
            watchpoints: vec![w],
            ..Debug::default()
        };
        assert!(d.check_access(0x2001, 1, false));
        assert_eq!(d.hit, Some((0x1ffe, WatchKind::Access)));
    }
}
