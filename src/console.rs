//! QEMU's console escape keys: Ctrl-A followed by a command key.

/// Ctrl-A, the escape key.
pub const ESCAPE: u8 = 0x01;

/// What an escape sequence asks the host to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeAction {
    /// Ctrl-A x: end the emulator.
    Exit,
    /// Ctrl-A h (or ?): show the keys.
    Help,
    /// Ctrl-A s: flush every disk to its file.
    FlushDisks,
    /// Ctrl-A S: save a machine snapshot (to `--save-file`).
    SaveSnapshot,
    /// Ctrl-A c: switch between the serial console and the monitor.
    SwitchMonitor,
}

/// The text Ctrl-A h prints.
pub const HELP: &str = "\
C-a h    print this help
C-a x    exit emulator
C-a s    flush disk data to the image files
C-a S    save a machine snapshot (--save-file, default tci64.snapshot)
C-a c    switch between console and monitor
C-a C-a  sends C-a
";

/// Splits typed bytes into bytes for the guest and escape commands.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    /// The last byte seen was a lone Ctrl-A.
    after_escape: bool,
}

impl EscapeFilter {
    /// Feed typed bytes: bytes meant for the guest are appended to `to_guest`, commands to
    /// `actions` (in order; an `Exit` makes the rest irrelevant). Unknown commands are dropped,
    /// as QEMU does.
    pub fn feed(&mut self, input: &[u8], to_guest: &mut Vec<u8>, actions: &mut Vec<EscapeAction>) {
        for &b in input {
            if self.after_escape {
                self.after_escape = false;
                match b {
                    ESCAPE => to_guest.push(ESCAPE),
                    b'x' | b'X' => actions.push(EscapeAction::Exit),
                    b'h' | b'H' | b'?' => actions.push(EscapeAction::Help),
                    b's' => actions.push(EscapeAction::FlushDisks),
                    b'S' => actions.push(EscapeAction::SaveSnapshot),
                    b'c' | b'C' => actions.push(EscapeAction::SwitchMonitor),
                    _ => {}
                }
            } else if b == ESCAPE {
                self.after_escape = true;
            } else {
                to_guest.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut EscapeFilter, s: &[u8]) -> (Vec<u8>, Vec<EscapeAction>) {
        let (mut g, mut a) = (Vec::new(), Vec::new());
        f.feed(s, &mut g, &mut a);
        (g, a)
    }

    #[test]
    fn plain_bytes_pass_through() {
        let mut f = EscapeFilter::default();
        assert_eq!(
            feed(&mut f, b"ls -l\r\x03"),
            (b"ls -l\r\x03".to_vec(), vec![])
        );
    }

    #[test]
    fn escape_commands() {
        let mut f = EscapeFilter::default();
        assert_eq!(
            feed(&mut f, b"a\x01xb"),
            (b"ab".to_vec(), vec![EscapeAction::Exit])
        );
        assert_eq!(
            feed(&mut f, b"\x01h\x01s"),
            (vec![], vec![EscapeAction::Help, EscapeAction::FlushDisks])
        );
        assert_eq!(
            feed(&mut f, b"\x01S"),
            (vec![], vec![EscapeAction::SaveSnapshot])
        );
        assert_eq!(feed(&mut f, b"\x01\x01"), (vec![ESCAPE], vec![]));
        assert_eq!(
            feed(&mut f, b"\x01cinfo\x01C"),
            (
                b"info".to_vec(),
                vec![EscapeAction::SwitchMonitor, EscapeAction::SwitchMonitor]
            )
        );
        // Unknown commands vanish.
        assert_eq!(feed(&mut f, b"\x01zq"), (b"q".to_vec(), vec![]));
    }

    #[test]
    fn escape_split_across_reads() {
        let mut f = EscapeFilter::default();
        assert_eq!(feed(&mut f, b"ab\x01"), (b"ab".to_vec(), vec![]));
        assert_eq!(feed(&mut f, b"x"), (vec![], vec![EscapeAction::Exit]));
    }
}
