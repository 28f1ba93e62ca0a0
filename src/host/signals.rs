//! Signals that end a run.
//!
//! - **SIGTERM, SIGHUP, SIGINT**: the handler only records the signal; the run loop sees it
//!   after the current slice (at most one `BUDGET` of guest instructions or one idle wait),
//!   prints `tci64: terminating on signal N (NAME)` as QEMU does, and leaves through the normal
//!   path: disks flushed (msync), terminal restored, `--stats` printed, exit status 0.
//! - **SIGBUS**: a mapped disk image shrank under the running guest (another process truncated
//!   it) or its storage failed, and the guest touched the missing part. Nothing sensible can
//!   continue: the handler restores the terminal, writes one line saying so to stderr and exits
//!   with status 135 (128 + SIGBUS) without flushing (the mapping is what failed). Whatever
//!   the guest wrote before stays in the file through the shared mapping.
//! - **SIGKILL** cannot be caught: data the guest made durable (a FLUSH, i.e. its `sync`) is
//!   in the file already; written but unflushed data is in the host's page cache through the
//!   shared mapping and reaches the file too unless the host itself goes down.

use std::sync::atomic::{AtomicI32, Ordering};

/// The terminating signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_terminate(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

extern "C" fn on_sigbus(_sig: libc::c_int) {
    crate::host::terminal::restore();
    const MSG: &[u8] = b"\r\ntci64: SIGBUS: a disk image file shrank while mapped (or its storage failed) and the guest touched the missing part; exiting with status 135\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a valid buffer.
    unsafe {
        libc::write(libc::STDERR_FILENO, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(128 + libc::SIGBUS);
    }
}

fn set_handler(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with an empty mask is valid; the handlers only do
    // async-signal-safe work (an atomic store; write/_exit/tcsetattr).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Install the handlers (once per run, before the machine starts).
pub fn install() {
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        set_handler(sig, on_terminate);
    }
    set_handler(libc::SIGBUS, on_sigbus);
}

/// The terminating signal received so far, if any: `(number, name)`.
pub fn received() -> Option<(i32, &'static str)> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some((
            s,
            match s {
                libc::SIGTERM => "SIGTERM",
                libc::SIGHUP => "SIGHUP",
                libc::SIGINT => "SIGINT",
                _ => "signal",
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminating_signal_is_recorded_not_fatal() {
        install();
        assert_eq!(received(), None);
        // SAFETY: raising a signal whose handler only stores an atomic.
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(received(), Some((libc::SIGHUP, "SIGHUP")));
        RECEIVED.store(0, Ordering::SeqCst);
    }
}
