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
    /// The copy-on-write overlay (`snapshot=on`) if this backend keeps one: what a machine
    /// snapshot saves of the disk.
    fn overlay(&self) -> Option<&Overlay> {
        None
    }
    /// Replace the copy-on-write overlay (restoring a snapshot). Fails on a backend without
    /// one, or with chunks that do not fit the disk.
    fn set_overlay(&mut self, _overlay: Overlay) -> Result<(), BlockError> {
        Err(BlockError::Io(
            "this disk has no copy-on-write overlay (attach it with snapshot=on)".into(),
        ))
    }
    /// Read the disk under any overlay (the image a snapshot's fingerprint describes).
    fn read_base_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.read_at(offset, buf)
    }
}

/// A copy-on-write overlay: chunk index (of [`COW_CHUNK`] bytes) → the chunk's bytes.
pub type Overlay = std::collections::BTreeMap<u64, Box<[u8]>>;

/// A disk's fingerprint: its size and a 64-bit FNV-1a hash of every byte under any overlay.
/// A snapshot records it so a restore can refuse a different disk.
pub fn fingerprint(b: &mut dyn BlockBackend) -> Result<(u64, u64), BlockError> {
    let size = b.size();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        b.read_base_at(off, &mut buf[..n])?;
        // Eight bytes per step (a word-wise FNV variant: fast enough to hash a disk at load).
        let mut chunks = buf[..n].chunks_exact(8);
        for c in &mut chunks {
            h = (h ^ u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &x in chunks.remainder() {
            h = (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        off += n as u64;
    }
    Ok((size, h))
}

impl<B: BlockBackend + ?Sized> BlockBackend for Box<B> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_at(offset, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
    fn overlay(&self) -> Option<&Overlay> {
        (**self).overlay()
    }
    fn set_overlay(&mut self, overlay: Overlay) -> Result<(), BlockError> {
        (**self).set_overlay(overlay)
    }
    fn read_base_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_base_at(offset, buf)
    }
}

/// Check that `len` bytes at `offset` fit in a disk of `size` bytes.
fn check_range(offset: u64, len: usize, size: u64) -> Result<(), BlockError> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange { offset, len, size }),
    }
}

/// A disk held in a byte vector (the browser build, tests, small images).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemBackend {
    data: Vec<u8>,
}

impl MemBackend {
    /// A disk with the given contents.
    pub fn new(data: Vec<u8>) -> Self {
        MemBackend { data }
    }

    /// A zero-filled disk of `size` bytes.
    pub fn zeroed(size: usize) -> Self {
        MemBackend {
            data: vec![0; size],
        }
    }

    /// The contents.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// Give the contents back.
    pub fn into_inner(self) -> Vec<u8> {
        self.data
    }
}

impl BlockBackend for MemBackend {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        self.data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// Granularity of the copy-on-write overlay.
pub const COW_CHUNK: u64 = 4096;

/// A copy-on-write overlay kept in memory over any backend (`-snapshot`): reads see earlier
/// writes, the base is never written, and everything written is lost when it is dropped.
#[derive(Debug, Clone)]
pub struct CowBackend<B> {
    base: B,
    overlay: Overlay,
}

impl<B: BlockBackend> CowBackend<B> {
    /// An empty overlay over `base`.
    pub fn new(base: B) -> Self {
        CowBackend {
            base,
            overlay: std::collections::BTreeMap::new(),
        }
    }

    /// The untouched base.
    pub fn base(&self) -> &B {
        &self.base
    }

    /// Bytes held by the overlay.
    pub fn overlay_bytes(&self) -> u64 {
        self.overlay.values().map(|c| c.len() as u64).sum()
    }

    fn chunk_len(&self, index: u64) -> usize {
        let start = index * COW_CHUNK;
        COW_CHUNK.min(self.base.size().saturating_sub(start)) as usize
    }

    /// Split [offset, offset+len) into (chunk index, offset in chunk, position in buf, length).
    fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= len {
                return None;
            }
            let abs = offset + pos as u64;
            let index = abs / COW_CHUNK;
            let in_chunk = (abs % COW_CHUNK) as usize;
            let n = (COW_CHUNK as usize - in_chunk).min(len - pos);
            let item = (index, in_chunk, pos, n);
            pos += n;
            Some(item)
        })
    }
}

impl<B: BlockBackend> BlockBackend for CowBackend<B> {
    fn size(&self) -> u64 {
        self.base.size()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size())?;
        for (index, in_chunk, pos, n) in Self::pieces(offset, buf.len()) {
            let dst = &mut buf[pos..pos + n];
            match self.overlay.get(&index) {
                Some(chunk) => dst.copy_from_slice(&chunk[in_chunk..in_chunk + n]),
                None => self.base.read_at(offset + pos as u64, dst)?,
            }
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_range(offset, buf.len(), self.size())?;
        for (index, in_chunk, pos, n) in Self::pieces(offset, buf.len()) {
            if !self.overlay.contains_key(&index) {
                let mut chunk = vec![0u8; self.chunk_len(index)].into_boxed_slice();
                if n < chunk.len() {
                    self.base.read_at(index * COW_CHUNK, &mut chunk)?;
                }
                self.overlay.insert(index, chunk);
            }
            if let Some(chunk) = self.overlay.get_mut(&index) {
                chunk[in_chunk..in_chunk + n].copy_from_slice(&buf[pos..pos + n]);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(()) // the overlay lives in memory by design; the base is never written
    }

    fn overlay(&self) -> Option<&Overlay> {
        Some(&self.overlay)
    }

    fn set_overlay(&mut self, overlay: Overlay) -> Result<(), BlockError> {
        for (&index, chunk) in &overlay {
            if index
                .checked_mul(COW_CHUNK)
                .is_none_or(|s| s >= self.size())
                || chunk.len() != self.chunk_len(index)
            {
                return Err(BlockError::OutOfRange {
                    offset: index.saturating_mul(COW_CHUNK),
                    len: chunk.len() as u64,
                    size: self.size(),
                });
            }
        }
        self.overlay = overlay;
        Ok(())
    }

    fn read_base_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.base.read_base_at(offset, buf)
    }
}

/// A read-only view of a backend: writes fail with [`BlockError::ReadOnly`].
#[derive(Debug, Clone)]
pub struct ReadOnly<B>(pub B);

impl<B: BlockBackend> BlockBackend for ReadOnly<B> {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&mut self, _offset: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
    fn overlay(&self) -> Option<&Overlay> {
        self.0.overlay()
    }
    fn set_overlay(&mut self, overlay: Overlay) -> Result<(), BlockError> {
        self.0.set_overlay(overlay)
    }
    fn read_base_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read_base_at(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_backend_bounds() {
        let mut m = MemBackend::zeroed(1024);
        m.write_at(1000, &[1; 24]).unwrap();
        let mut b = [0u8; 24];
        m.read_at(1000, &mut b).unwrap();
        assert_eq!(b, [1; 24]);
        assert!(matches!(
            m.write_at(1001, &[0; 24]),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(m.read_at(u64::MAX, &mut b).is_err());
    }

    #[test]
    fn cow_never_writes_base() {
        let base: Vec<u8> = (0..10000u32).map(|i| i as u8).collect();
        let mut c = CowBackend::new(MemBackend::new(base.clone()));
        c.write_at(4090, &[0xAA; 20]).unwrap(); // straddles chunks 0 and 1
        c.write_at(9990, &[0xBB; 10]).unwrap(); // partial last chunk
        assert_eq!(c.base().as_slice(), &base[..]);
        let mut all = vec![0u8; 10000];
        c.read_at(0, &mut all).unwrap();
        let mut expect = base.clone();
        expect[4090..4110].fill(0xAA);
        expect[9990..10000].fill(0xBB);
        assert_eq!(all, expect);
        assert!(c.write_at(9995, &[0; 10]).is_err());
        assert_eq!(c.overlay_bytes(), 4096 * 2 + (10000 - 8192));
    }

    #[test]
    fn read_only_wrapper() {
        let mut r = ReadOnly(MemBackend::zeroed(512));
        assert_eq!(r.write_at(0, &[1]), Err(BlockError::ReadOnly));
        let mut b = [9u8; 4];
        r.read_at(0, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
    }
}
