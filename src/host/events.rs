//! Everything the run loop waits for, on one channel: standard input (read by a thread of its
//! own, so the loop never blocks on it) and GDB connections (an accept thread, and a reader
//! thread per connection).

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

/// Something that happened on the host side.
pub enum HostEvent {
    /// Bytes typed on standard input.
    Stdin(Vec<u8>),
    /// Standard input is closed (end of file or error); nothing more will arrive.
    StdinClosed,
    /// A debugger connected; `writer` sends to it.
    GdbConnected {
        id: u64,
        writer: Box<dyn Write + Send>,
        peer: String,
    },
    /// Bytes from debugger connection `id`.
    GdbData { id: u64, bytes: Vec<u8> },
    /// Debugger connection `id` closed.
    GdbClosed { id: u64 },
}

impl std::fmt::Debug for HostEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostEvent::Stdin(b) => write!(f, "Stdin({b:?})"),
            HostEvent::StdinClosed => write!(f, "StdinClosed"),
            HostEvent::GdbConnected { id, peer, .. } => write!(f, "GdbConnected({id}, {peer})"),
            HostEvent::GdbData { id, bytes } => write!(f, "GdbData({id}, {bytes:?})"),
            HostEvent::GdbClosed { id } => write!(f, "GdbClosed({id})"),
        }
    }
}

/// The run loop's event queue.
pub struct Events {
    tx: Sender<HostEvent>,
    rx: Receiver<HostEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Events { tx, rx }
    }

    /// A sender for threads that produce events.
    pub fn sender(&self) -> Sender<HostEvent> {
        self.tx.clone()
    }

    /// Start the thread that reads the process's standard input.
    pub fn spawn_stdin(&self) {
        self.spawn_reader(std::io::stdin());
    }

    /// Start a thread that reads `r` as standard input (tests use a byte slice).
    pub fn spawn_reader<R: Read + Send + 'static>(&self, mut r: R) {
        let tx = self.sender();
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.send(HostEvent::Stdin(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::debug!("stdin: {e}");
                            break;
                        }
                    }
                }
                let _ = tx.send(HostEvent::StdinClosed);
            })
            .expect("spawning the stdin thread");
    }

    /// Wait up to `timeout` for the first event, then take every event already queued.
    /// Returns nothing if the time passed without any.
    pub fn wait(&mut self, timeout: Duration) -> Vec<HostEvent> {
        let first = if timeout.is_zero() {
            self.rx.try_recv().ok()
        } else {
            match self.rx.recv_timeout(timeout) {
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
                // Unreachable while `self.tx` lives.
                Err(RecvTimeoutError::Disconnected) => None,
            }
        };
        let mut out: Vec<HostEvent> = first.into_iter().collect();
        while let Ok(e) = self.rx.try_recv() {
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_bytes_then_closed() {
        let mut ev = Events::new();
        ev.spawn_reader(&b"hello"[..]);
        let mut got = Vec::new();
        loop {
            let batch = ev.wait(Duration::from_secs(5));
            assert!(!batch.is_empty(), "timed out");
            let mut closed = false;
            for e in batch {
                match e {
                    HostEvent::Stdin(b) => got.extend(b),
                    HostEvent::StdinClosed => closed = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
            if closed {
                break;
            }
        }
        assert_eq!(got, b"hello");
        assert!(ev.wait(Duration::ZERO).is_empty());
    }
}
