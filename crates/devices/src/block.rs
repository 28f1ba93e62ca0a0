//! Disk backends behind virtio-blk: a trait, an in-memory buffer, and a copy-on-write overlay.

use thiserror::Error;

/// Why a backend operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlockError {
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("access at byte {offset} of {len} bytes is past the end of the disk ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("I/O error: {0}")]
    Io(String),
}

/// A disk image: a file mapped natively, a byte buffer in the browser.
pub trait BlockBackend {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Read `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Write `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Make written data durable (the guest's FLUSH, and exit).
    fn flush(&mut self) -> Result<(), BlockError>;
}
