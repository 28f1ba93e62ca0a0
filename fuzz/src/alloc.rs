//! A counting allocator: the largest single allocation of the current thread since a
//! [`Limit`] was set, so a target can assert that nothing allocated in proportion to a header
//! field rather than to the input or the RAM it asked for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, recording the largest request per thread.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only a const-initialized thread-local without a destructor (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from this allocator, which is the system's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded; `ptr` came from the system allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size)
        }
    });
}

/// The largest allocation allowed from now on (on this thread).
pub struct Limit(usize);

impl Limit {
    /// Start counting with `bytes` allowed per allocation.
    pub fn new(bytes: usize) -> Self {
        LARGEST.with(|l| l.set(0));
        Limit(bytes)
    }

    /// Panic if a larger allocation happened since [`Limit::new`].
    pub fn check(&self) {
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= self.0,
            "an allocation of {largest} bytes (allowed: {})",
            self.0
        );
    }
}
