//! Standard input on a thread of its own, so the run loop never blocks on it.

use std::io::Read;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::Duration;

/// What waiting for input gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Bytes(Vec<u8>),
    /// Nothing arrived in time.
    Nothing,
    /// Standard input is closed (end of file or error); nothing will ever arrive.
    Closed,
}

/// Bytes read from standard input by a background thread.
pub struct StdinReader {
    rx: Receiver<Vec<u8>>,
    closed: bool,
}

impl StdinReader {
    /// Start the reader thread on the process's standard input.
    pub fn spawn() -> Self {
        Self::from_reader(std::io::stdin())
    }

    /// Start the reader thread on any reader (tests use a byte slice).
    pub fn from_reader<R: Read + Send + 'static>(mut r: R) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.send(buf[..n].to_vec()).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::debug!("stdin: {e}");
                            break;
                        }
                    }
                }
            })
            .expect("spawning the stdin thread");
        StdinReader { rx, closed: false }
    }

    /// Wait up to `timeout` for input. Once stdin is closed this sleeps for `timeout`
    /// and returns [`Input::Closed`], so callers can use it as their idle sleep either way.
    pub fn wait(&mut self, timeout: Duration) -> Input {
        if self.closed {
            if !timeout.is_zero() {
                thread::sleep(timeout);
            }
            return Input::Closed;
        }
        let first = if timeout.is_zero() {
            match self.rx.try_recv() {
                Ok(b) => Ok(b),
                Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
            }
        } else {
            self.rx.recv_timeout(timeout)
        };
        match first {
            Ok(mut bytes) => {
                // Take everything else that is already queued.
                while let Ok(more) = self.rx.try_recv() {
                    bytes.extend_from_slice(&more);
                }
                Input::Bytes(bytes)
            }
            Err(RecvTimeoutError::Timeout) => Input::Nothing,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Input::Closed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_bytes_then_closed() {
        let mut r = StdinReader::from_reader(&b"hello"[..]);
        let mut got = Vec::new();
        loop {
            match r.wait(Duration::from_secs(5)) {
                Input::Bytes(b) => got.extend(b),
                Input::Nothing => panic!("timed out"),
                Input::Closed => break,
            }
        }
        assert_eq!(got, b"hello");
        assert_eq!(r.wait(Duration::ZERO), Input::Closed);
    }
}
