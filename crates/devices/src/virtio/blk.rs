//! virtio-blk (virtio 1.2 §5.2) over a [`BlockBackend`].
//!
//! Requests: IN, OUT, FLUSH, GET_ID, WRITE_ZEROES. Anything else gets UNSUPP. Reads and writes
//! outside the disk, with a length that is not a multiple of 512, to a read-only disk, or
//! whose buffers fall outside guest RAM complete with IOERR, and the disk is untouched: every
//! buffer of a request is checked ([`GuestMemory::check`]) before the first byte moves, so a bad
//! later descriptor never leaves earlier chunks written (virtio 1.2 §2.7.4). A chain
//! without a writable status byte cannot be answered and is reported as a device error (the
//! transport then sets DEVICE_NEEDS_RESET). Data moves in bounded chunks, so a huge descriptor
//! length never allocates more than [`CHUNK`] bytes.

use super::queue::{Descriptor, DescriptorChain, Queue, QueueError};
use super::{
    GuestMemory, VirtioDevice, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC,
    VIRTIO_ID_BLOCK,
};
use crate::block::BlockBackend;
use crate::state::{StateError, VirtioDeviceState};

/// Feature: maximum size of any single segment is in size_max.
pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
/// Feature: maximum number of segments in a request is in seg_max.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Feature: device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: block size of disk is in blk_size.
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// Feature: cache flush command support.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Feature: write zeroes command support.
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;

/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: get device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Request type: write zeroes.
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: unsupported request.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Sector size used by the protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Queue size offered.
pub const QUEUE_SIZE: u16 = 256;
/// Length of the GET_ID string.
pub const ID_LEN: usize = 20;
/// Largest transfer done at once between backend and guest memory.
pub const CHUNK: usize = 64 * 1024;
/// size_max advertised (bytes per segment).
pub const SIZE_MAX: u32 = 1 << 20;
/// seg_max advertised (segments per request; queue size minus header and status).
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// max_write_zeroes_sectors advertised.
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 16;
/// max_write_zeroes_seg advertised (segments per WRITE_ZEROES request; more fail with IOERR).
pub const MAX_WRITE_ZEROES_SEG: u32 = 1;

/// Config space offsets (struct virtio_blk_config).
pub const CFG_CAPACITY: usize = 0x00;
/// size_max.
pub const CFG_SIZE_MAX: usize = 0x08;
/// seg_max.
pub const CFG_SEG_MAX: usize = 0x0C;
/// blk_size.
pub const CFG_BLK_SIZE: usize = 0x14;
/// max_write_zeroes_sectors.
pub const CFG_MAX_WRITE_ZEROES_SECTORS: usize = 0x30;
/// max_write_zeroes_seg.
pub const CFG_MAX_WRITE_ZEROES_SEG: usize = 0x34;
/// Size of the config space exposed.
pub const CFG_SIZE: usize = 0x3C;

/// Per-device statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlkCounters {
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub flushes: u64,
    /// Requests completed with IOERR or UNSUPP.
    pub errors: u64,
    /// Chains that could not be answered (device reset needed).
    pub malformed: u64,
}

/// A virtio block device.
pub struct VirtioBlk {
    backend: Box<dyn BlockBackend>,
    read_only: bool,
    id: [u8; ID_LEN],
    driver_features: u64,
    counters: BlkCounters,
}

/// Everything of a virtio-blk device a snapshot needs (the disk's contents are the backend's,
/// saved apart: see [`crate::block`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtioBlkState {
    pub read_only: bool,
    pub id: [u8; ID_LEN],
    pub driver_features: u64,
    pub counters: BlkCounters,
    /// The disk's size in bytes when saved.
    pub size: u64,
}

impl std::fmt::Debug for VirtioBlk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioBlk")
            .field("size", &self.backend.size())
            .field("read_only", &self.read_only)
            .field("counters", &self.counters)
            .finish()
    }
}

/// Whether every buffer of a list is guest RAM.
fn all_in_ram(mem: &dyn GuestMemory, descs: &[Descriptor]) -> bool {
    descs
        .iter()
        .all(|d| mem.check(d.addr, u64::from(d.len)).is_ok())
}

/// Copy `buf.len()` bytes at byte `offset` of a buffer list from guest memory.
fn gather(
    mem: &dyn GuestMemory,
    descs: &[Descriptor],
    mut offset: u64,
    buf: &mut [u8],
) -> Option<()> {
    let mut pos = 0usize;
    for d in descs {
        let len = u64::from(d.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        let n = ((len - offset) as usize).min(buf.len() - pos);
        mem.read(d.addr + offset, &mut buf[pos..pos + n]).ok()?;
        pos += n;
        offset = 0;
        if pos == buf.len() {
            return Some(());
        }
    }
    (pos == buf.len()).then_some(())
}

impl VirtioBlk {
    /// A disk over `backend`; `read_only` offers VIRTIO_BLK_F_RO and fails every write.
    pub fn new(backend: Box<dyn BlockBackend>, read_only: bool) -> Self {
        let mut id = [0u8; ID_LEN];
        id[..8].copy_from_slice(b"tci64-vd");
        VirtioBlk {
            backend,
            read_only,
            id,
            driver_features: 0,
            counters: BlkCounters::default(),
        }
    }

    /// Set the GET_ID serial (truncated to 20 bytes, NUL-padded).
    pub fn with_serial(mut self, serial: &[u8]) -> Self {
        self.id = [0; ID_LEN];
        let n = serial.len().min(ID_LEN);
        self.id[..n].copy_from_slice(&serial[..n]);
        self
    }

    /// Statistics.
    pub fn counters(&self) -> BlkCounters {
        self.counters
    }

    /// The backend (to flush it at exit).
    pub fn backend_mut(&mut self) -> &mut dyn BlockBackend {
        self.backend.as_mut()
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.backend.size() / SECTOR_SIZE
    }

    fn config(&self) -> [u8; CFG_SIZE] {
        let mut c = [0u8; CFG_SIZE];
        c[CFG_CAPACITY..CFG_CAPACITY + 8].copy_from_slice(&self.capacity().to_le_bytes());
        c[CFG_SIZE_MAX..CFG_SIZE_MAX + 4].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[CFG_SEG_MAX..CFG_SEG_MAX + 4].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[CFG_BLK_SIZE..CFG_BLK_SIZE + 4].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        c[CFG_MAX_WRITE_ZEROES_SECTORS..CFG_MAX_WRITE_ZEROES_SECTORS + 4]
            .copy_from_slice(&MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        c[CFG_MAX_WRITE_ZEROES_SEG..CFG_MAX_WRITE_ZEROES_SEG + 4]
            .copy_from_slice(&MAX_WRITE_ZEROES_SEG.to_le_bytes());
        c
    }

    /// Byte range of a sector-based transfer, if it lies inside the disk.
    fn range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        (end <= self.capacity() * SECTOR_SIZE).then_some(offset)
    }

    /// Backend → guest buffers. Returns bytes written to the guest, or None on error.
    fn do_read(
        &mut self,
        mem: &mut dyn GuestMemory,
        segs: &[Descriptor],
        mut off: u64,
    ) -> Option<u64> {
        let mut buf = Vec::new();
        let mut total = 0;
        for d in segs {
            let mut done = 0u64;
            while done < u64::from(d.len) {
                let n = (u64::from(d.len) - done).min(CHUNK as u64) as usize;
                buf.resize(n, 0);
                self.backend.read_at(off, &mut buf).ok()?;
                mem.write(d.addr + done, &buf).ok()?;
                done += n as u64;
                off += n as u64;
                total += n as u64;
            }
        }
        Some(total)
    }

    /// Guest buffers → backend.
    fn do_write(
        &mut self,
        mem: &dyn GuestMemory,
        segs: &[Descriptor],
        mut off: u64,
    ) -> Option<u64> {
        let mut buf = Vec::new();
        let mut total = 0;
        for d in segs {
            let mut done = 0u64;
            while done < u64::from(d.len) {
                let n = (u64::from(d.len) - done).min(CHUNK as u64) as usize;
                buf.resize(n, 0);
                mem.read(d.addr + done, &mut buf).ok()?;
                self.backend.write_at(off, &buf).ok()?;
                done += n as u64;
                off += n as u64;
                total += n as u64;
            }
        }
        Some(total)
    }

    fn write_zeroes(&mut self, mem: &dyn GuestMemory, out: &[Descriptor], len: u64) -> u8 {
        // At most MAX_WRITE_ZEROES_SEG (advertised) segments, all read and checked before the
        // first is applied: a bad later segment leaves the disk untouched.
        if self.read_only
            || len == 0
            || !len.is_multiple_of(16)
            || len / 16 > u64::from(MAX_WRITE_ZEROES_SEG)
        {
            return VIRTIO_BLK_S_IOERR;
        }
        let mut ranges = [(0u64, 0u64); MAX_WRITE_ZEROES_SEG as usize];
        let n = (len / 16) as usize;
        for (i, r) in ranges[..n].iter_mut().enumerate() {
            let mut seg = [0u8; 16];
            if gather(mem, out, i as u64 * 16, &mut seg).is_none() {
                return VIRTIO_BLK_S_IOERR;
            }
            let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
            let sectors = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
            let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
            if flags & !1 != 0 {
                return VIRTIO_BLK_S_UNSUPP;
            }
            let bytes = u64::from(sectors) * SECTOR_SIZE;
            let Some(off) = self.range(sector, bytes) else {
                return VIRTIO_BLK_S_IOERR;
            };
            *r = (off, bytes);
        }
        let zeros = vec![0u8; CHUNK];
        for &(mut off, bytes) in &ranges[..n] {
            let end = off + bytes;
            while off < end {
                let n = (end - off).min(CHUNK as u64) as usize;
                if self.backend.write_at(off, &zeros[..n]).is_err() {
                    return VIRTIO_BLK_S_IOERR;
                }
                off += n as u64;
            }
            self.counters.bytes_written += bytes;
        }
        VIRTIO_BLK_S_OK
    }

    /// Serve one request; returns the used length, or an error if no status can be written.
    fn handle(
        &mut self,
        mem: &mut dyn GuestMemory,
        chain: &DescriptorChain,
    ) -> Result<u32, QueueError> {
        let last = match chain.descs.last() {
            Some(d) if d.writable && d.len >= 1 => *d,
            _ => {
                return Err(QueueError::Malformed(
                    "virtio-blk request without a status byte",
                ))
            }
        };
        let status_addr = last.addr + u64::from(last.len) - 1;
        // Readable part: header then OUT data; writable part: IN data then status.
        let readable: Vec<Descriptor> = chain.readable().copied().collect();
        let mut writable: Vec<Descriptor> = chain.writable().copied().collect();
        if let Some(l) = writable.last_mut() {
            l.len -= 1;
        }
        let in_len: u64 = writable.iter().map(|d| u64::from(d.len)).sum();
        let out_len = chain.readable_len().saturating_sub(16);
        let mut out: Vec<Descriptor> = Vec::new();
        let mut skip = 16u64;
        for d in &readable {
            let l = u64::from(d.len);
            if skip >= l {
                skip -= l;
                continue;
            }
            out.push(Descriptor {
                addr: d.addr + skip,
                len: d.len - skip as u32,
                writable: false,
            });
            skip = 0;
        }

        self.counters.requests += 1;
        let mut hdr = [0u8; 16];
        let mut used = 0u64;
        let status = if gather(mem, &readable, 0, &mut hdr).is_none() {
            log::warn!("virtio-blk: request header unreadable");
            VIRTIO_BLK_S_IOERR
        } else {
            let ty = u32::from_le_bytes(hdr[0..4].try_into().unwrap_or_default());
            let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default());
            match ty {
                VIRTIO_BLK_T_IN => match self.range(sector, in_len) {
                    Some(off)
                        if in_len.is_multiple_of(SECTOR_SIZE) && all_in_ram(mem, &writable) =>
                    {
                        match self.do_read(mem, &writable, off) {
                            Some(n) => {
                                used = n;
                                self.counters.bytes_read += n;
                                VIRTIO_BLK_S_OK
                            }
                            None => VIRTIO_BLK_S_IOERR,
                        }
                    }
                    _ => VIRTIO_BLK_S_IOERR,
                },
                VIRTIO_BLK_T_OUT => match self.range(sector, out_len) {
                    Some(off)
                        if !self.read_only
                            && out_len.is_multiple_of(SECTOR_SIZE)
                            && all_in_ram(mem, &out) =>
                    {
                        match self.do_write(mem, &out, off) {
                            Some(n) => {
                                self.counters.bytes_written += n;
                                VIRTIO_BLK_S_OK
                            }
                            None => VIRTIO_BLK_S_IOERR,
                        }
                    }
                    _ => VIRTIO_BLK_S_IOERR,
                },
                VIRTIO_BLK_T_FLUSH => {
                    self.counters.flushes += 1;
                    match self.backend.flush() {
                        Ok(()) => VIRTIO_BLK_S_OK,
                        Err(e) => {
                            log::warn!("virtio-blk: flush failed: {e}");
                            VIRTIO_BLK_S_IOERR
                        }
                    }
                }
                VIRTIO_BLK_T_GET_ID => {
                    let n = in_len.min(ID_LEN as u64) as usize;
                    let id = self.id;
                    let mut pos = 0usize;
                    let mut ok = true;
                    for d in &writable {
                        if pos == n {
                            break;
                        }
                        let k = (d.len as usize).min(n - pos);
                        ok &= mem.write(d.addr, &id[pos..pos + k]).is_ok();
                        pos += k;
                    }
                    used = n as u64;
                    if ok {
                        VIRTIO_BLK_S_OK
                    } else {
                        VIRTIO_BLK_S_IOERR
                    }
                }
                VIRTIO_BLK_T_WRITE_ZEROES => self.write_zeroes(mem, &out, out_len),
                _ => VIRTIO_BLK_S_UNSUPP,
            }
        };
        if status != VIRTIO_BLK_S_OK {
            self.counters.errors += 1;
        }
        mem.write(status_addr, &[status])?;
        Ok(u32::try_from(used + 1).unwrap_or(u32::MAX))
    }
}

impl VirtioDevice for VirtioBlk {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn device_features(&self) -> u64 {
        let mut f = VIRTIO_BLK_F_SIZE_MAX
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_FLUSH
            | VIRTIO_F_RING_INDIRECT_DESC
            | VIRTIO_F_RING_EVENT_IDX;
        if self.read_only {
            f |= VIRTIO_BLK_F_RO;
        } else {
            f |= VIRTIO_BLK_F_WRITE_ZEROES;
        }
        f
    }

    fn set_driver_features(&mut self, features: u64) {
        self.driver_features = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| cfg.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio-blk: ignored config write at {offset:#x} ({} bytes)",
            data.len()
        );
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn queue_max_size(&self, _index: usize) -> u16 {
        QUEUE_SIZE
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        if index != 0 {
            return Ok(false);
        }
        while let Some(chain) = queue.pop(mem)? {
            let used = match self.handle(mem, &chain) {
                Ok(n) => n,
                Err(e) => {
                    self.counters.malformed += 1;
                    return Err(e);
                }
            };
            queue.add_used(mem, chain.head, used)?;
        }
        queue.needs_notification(mem)
    }

    fn flush(&mut self) -> Result<(), crate::block::BlockError> {
        self.backend_mut().flush()
    }

    fn state(&self) -> VirtioDeviceState {
        VirtioDeviceState::Blk(VirtioBlkState {
            read_only: self.read_only,
            id: self.id,
            driver_features: self.driver_features,
            counters: self.counters,
            size: self.backend.size(),
        })
    }

    fn set_state(&mut self, state: VirtioDeviceState) -> Result<(), StateError> {
        let VirtioDeviceState::Blk(s) = state;
        if s.read_only != self.read_only {
            return Err(StateError::new(
                "virtio-blk",
                format!(
                    "the disk was saved {} and is now attached {}",
                    if s.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    },
                    if self.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                ),
            ));
        }
        if s.size != self.backend.size() {
            return Err(StateError::new(
                "virtio-blk",
                format!(
                    "the disk was {} bytes when saved and is {} bytes now",
                    s.size,
                    self.backend.size()
                ),
            ));
        }
        self.id = s.id;
        self.driver_features = s.driver_features;
        self.counters = s.counters;
        Ok(())
    }

    fn reset(&mut self) {
        self.driver_features = 0;
    }
}
