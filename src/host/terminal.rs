//! The console terminal: raw mode while the guest owns it, restored on every way out
//! (normal return, `process::exit` through [`restore`], panics, SIGQUIT; SIGINT/SIGTERM/SIGHUP
//! end the run through its normal exit path, see [`crate::host::signals`], and SIGBUS restores
//! it in its handler).
//!
//! Raw mode is QEMU's `-nographic` setting: no echo, no line editing, no signal keys (Ctrl-C goes
//! to the guest), no CR/LF translation on input; output processing stays on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The settings found at start-up; written once, before raw mode is entered.
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Whether the terminal is in raw mode right now.
static RAW: AtomicBool = AtomicBool::new(false);

/// Whether standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Put the terminal on stdin into raw mode, if stdin is a terminal. Installs the panic hook
/// and signal handlers that undo it. Returns whether raw mode was entered.
pub fn enter_raw_mode() -> bool {
    if !stdin_is_tty() {
        return false;
    }
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is a terminal; `t` is a valid pointer.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
        return false;
    }
    if SAVED.set(t).is_err() {
        // Entered before: SAVED holds the original settings already.
    }
    install_restore_hooks();
    let mut raw = t;
    raw.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    raw.c_oflag |= libc::OPOST;
    raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    raw.c_cflag &= !(libc::CSIZE | libc::PARENB);
    raw.c_cflag |= libc::CS8;
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    // SAFETY: valid descriptor and pointer.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
        return false;
    }
    RAW.store(true, Ordering::SeqCst);
    true
}

/// Put the terminal back as it was. Safe to call any number of times, from anywhere,
/// including a signal handler (it only uses `tcsetattr`).
pub fn restore() {
    if RAW.swap(false, Ordering::SeqCst) {
        if let Some(t) = SAVED.get() {
            // SAFETY: async-signal-safe call with a valid pointer to initialized settings.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t) };
        }
    }
}

/// Restores the terminal when dropped.
pub struct RawModeGuard {
    _private: (),
}

impl RawModeGuard {
    /// Enter raw mode if stdin is a terminal.
    pub fn new() -> Self {
        if enter_raw_mode() {
            log::debug!("terminal in raw mode");
        }
        RawModeGuard { _private: () }
    }
}

impl Default for RawModeGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore();
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    restore();
    // SAFETY: restoring the default action and re-raising are async-signal-safe; the process
    // then dies of the signal as it would have without us.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn install_restore_hooks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        // SIGINT/SIGTERM/SIGHUP/SIGBUS belong to crate::host::signals.
        for sig in [libc::SIGQUIT] {
            // SAFETY: installing a handler that only calls async-signal-safe functions.
            unsafe {
                libc::signal(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_without_raw_mode_is_harmless() {
        restore();
        restore();
        assert!(!RAW.load(Ordering::SeqCst));
    }
}
