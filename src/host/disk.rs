//! Disk images as memory-mapped files.
//!
//! | mode | file opened | mapping | guest writes |
//! |---|---|---|---|
//! | read-write | read-write | shared | reach the file (made durable by `flush`) |
//! | `readonly=on` | read-only | read-only | fail with [`BlockError::ReadOnly`] |
//! | `snapshot=on` / `-snapshot` | read-only | private copy-on-write | stay in memory, lost at exit |
//!
//! The snapshot mode lets the host kernel do the copy-on-write page by page (`MAP_PRIVATE`), so
//! the file is never written and only touched pages cost memory.

use std::fs::{File, OpenOptions};
use std::path::Path;

use memmap2::{Mmap, MmapMut, MmapOptions};
use tci64_devices::block::{BlockBackend, BlockError};

/// How a disk image is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskMode {
    ReadWrite,
    ReadOnly,
    Snapshot,
}

enum Map {
    /// A zero-length file (mmap cannot map 0 bytes).
    Empty,
    Ro(Mmap),
    Rw(MmapMut),
}

/// A raw disk image file behind virtio-blk.
pub struct FileBackend {
    map: Map,
    mode: DiskMode,
    /// The file, for the flush's debug line (`RUST_LOG=tci64::host::disk=debug`).
    path: String,
}

impl FileBackend {
    /// Open and map `path`. Errors are `io::Error`s; callers name the file in the message.
    pub fn open(path: &Path, mode: DiskMode) -> std::io::Result<Self> {
        let file = match mode {
            DiskMode::ReadWrite => OpenOptions::new().read(true).write(true).open(path)?,
            DiskMode::ReadOnly | DiskMode::Snapshot => File::open(path)?,
        };
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory",
            ));
        }
        let map = if meta.len() == 0 {
            Map::Empty
        } else {
            // SAFETY: the mapping is only as sound as the file staying the same size; another
            // process truncating a disk image under a running guest is outside what we promise
            // (QEMU has the same exposure with its own caches).
            unsafe {
                match mode {
                    DiskMode::ReadWrite => Map::Rw(MmapMut::map_mut(&file)?),
                    DiskMode::ReadOnly => Map::Ro(Mmap::map(&file)?),
                    DiskMode::Snapshot => Map::Rw(MmapOptions::new().map_copy(&file)?),
                }
            }
        };
        Ok(FileBackend {
            map,
            mode,
            path: path.display().to_string(),
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.map {
            Map::Empty => &[],
            Map::Ro(m) => m,
            Map::Rw(m) => m,
        }
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, BlockError> {
        let size = self.size();
        let out = BlockError::OutOfRange {
            offset,
            len: len as u64,
            size,
        };
        let end = offset.checked_add(len as u64).ok_or(out.clone())?;
        if end > size {
            return Err(out);
        }
        Ok(offset as usize..end as usize)
    }
}

impl BlockBackend for FileBackend {
    fn size(&self) -> u64 {
        self.bytes().len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.bytes()[r]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.mode == DiskMode::ReadOnly {
            return Err(BlockError::ReadOnly);
        }
        let r = self.range(offset, buf.len())?;
        match &mut self.map {
            Map::Rw(m) => {
                m[r].copy_from_slice(buf);
                Ok(())
            }
            // Only a zero-length write at 0 gets here (range() checked it), which is a no-op.
            Map::Empty => Ok(()),
            Map::Ro(_) => Err(BlockError::ReadOnly),
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        match (&self.map, self.mode) {
            (Map::Rw(m), DiskMode::ReadWrite) => {
                m.flush().map_err(|e| BlockError::Io(e.to_string()))?;
                log::debug!("{}: flushed (msync)", self.path);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_image(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tci64-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn read_write_reaches_the_file() {
        let p = temp_image("rw.img", &[0u8; 4096]);
        let mut d = FileBackend::open(&p, DiskMode::ReadWrite).unwrap();
        assert_eq!(d.size(), 4096);
        d.write_at(512, b"hello").unwrap();
        let mut buf = [0u8; 5];
        d.read_at(512, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        d.flush().unwrap();
        drop(d);
        assert_eq!(&std::fs::read(&p).unwrap()[512..517], b"hello");
    }

    #[test]
    fn read_only_refuses_writes() {
        let p = temp_image("ro.img", &[7u8; 1024]);
        let mut d = FileBackend::open(&p, DiskMode::ReadOnly).unwrap();
        assert_eq!(d.write_at(0, b"x"), Err(BlockError::ReadOnly));
        let mut buf = [0u8; 2];
        d.read_at(1022, &mut buf).unwrap();
        assert_eq!(buf, [7, 7]);
        assert!(d.flush().is_ok());
    }

    #[test]
    fn snapshot_keeps_writes_in_memory() {
        let p = temp_image("snap.img", &[1u8; 8192]);
        let mut d = FileBackend::open(&p, DiskMode::Snapshot).unwrap();
        d.write_at(4000, &[9u8; 200]).unwrap();
        let mut buf = [0u8; 200];
        d.read_at(4000, &mut buf).unwrap();
        assert_eq!(buf, [9u8; 200]);
        d.flush().unwrap();
        drop(d);
        assert!(std::fs::read(&p).unwrap().iter().all(|&b| b == 1));
    }

    #[test]
    fn out_of_range_is_an_error() {
        let p = temp_image("small.img", &[0u8; 512]);
        let mut d = FileBackend::open(&p, DiskMode::ReadWrite).unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(
            d.read_at(511, &mut buf),
            Err(BlockError::OutOfRange {
                offset: 511,
                len: 2,
                size: 512
            })
        );
        assert!(matches!(
            d.write_at(u64::MAX, b"ab"),
            Err(BlockError::OutOfRange { .. })
        ));
        let e = FileBackend::open(&p.with_extension("missing"), DiskMode::ReadOnly);
        assert!(e.is_err());
    }

    #[test]
    fn empty_file_is_a_zero_sized_disk() {
        let p = temp_image("empty.img", &[]);
        let mut d = FileBackend::open(&p, DiskMode::ReadWrite).unwrap();
        assert_eq!(d.size(), 0);
        assert!(d.read_at(0, &mut [0u8; 1]).is_err());
    }
}
