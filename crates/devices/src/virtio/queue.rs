//! Split virtqueues (virtio 1.2 §2.7): descriptor table, available ring, used ring.
//!
//! [`Queue::pop`] walks and validates a whole descriptor chain before a device sees it:
//! indices inside the table, chain length bounded (loop detection), indirect tables well formed
//! and not nested, device-readable descriptors before device-writable ones, and address ranges
//! that do not wrap. Buffer contents are only reached through [`GuestMemory`], so an address
//! outside RAM is an error at access time, never a panic.

use super::{GuestMemory, MemError};
use thiserror::Error;

/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: device-writable buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of indirect descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver does not want interrupts (without EVENT_IDX).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Size of one descriptor in bytes.
pub const DESC_SIZE: u64 = 16;
/// Largest indirect table accepted (entries).
pub const MAX_INDIRECT_ENTRIES: u64 = 1024;

/// A malformed queue or descriptor chain.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QueueError {
    #[error("guest memory: {0}")]
    Mem(#[from] MemError),
    #[error("queue is not ready or badly configured")]
    NotReady,
    #[error(
        "available index {avail_idx} is {pending} entries ahead of the device (queue size {size})"
    )]
    AvailIdxTooFar {
        avail_idx: u16,
        pending: u16,
        size: u16,
    },
    #[error("descriptor index {index} out of a table of {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("descriptor chain longer than its table (loop?)")]
    ChainTooLong,
    #[error("indirect descriptor inside an indirect table")]
    NestedIndirect,
    #[error("indirect descriptor with the NEXT flag")]
    IndirectWithNext,
    #[error("indirect descriptors not negotiated")]
    IndirectNotNegotiated,
    #[error("indirect table length {0} is not a non-zero multiple of 16 (or too large)")]
    BadIndirectLen(u32),
    #[error("descriptor range {addr:#x}+{len:#x} wraps around")]
    AddressOverflow { addr: u64, len: u64 },
    #[error("device-readable descriptor after a device-writable one")]
    ReadAfterWrite,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

/// One validated buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (else device-readable).
    pub writable: bool,
}

/// A validated descriptor chain: readable buffers first, then writable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorChain {
    /// Head index, to return in the used ring.
    pub head: u16,
    pub descs: Vec<Descriptor>,
}

impl DescriptorChain {
    /// The device-readable buffers.
    pub fn readable(&self) -> impl Iterator<Item = &Descriptor> {
        self.descs.iter().filter(|d| !d.writable)
    }

    /// The device-writable buffers.
    pub fn writable(&self) -> impl Iterator<Item = &Descriptor> {
        self.descs.iter().filter(|d| d.writable)
    }

    /// Total bytes of the readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable().map(|d| u64::from(d.len)).sum()
    }

    /// Total bytes of the writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable().map(|d| u64::from(d.len)).sum()
    }
}

/// A split virtqueue as configured by the driver, plus the device's ring positions.
/// A split virtqueue's registers and ring positions: plain data, its own snapshot state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Queue {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    /// Guest-physical address of the descriptor table.
    pub desc_table: u64,
    /// Guest-physical address of the available (driver) ring.
    pub avail_ring: u64,
    /// Guest-physical address of the used (device) ring.
    pub used_ring: u64,
    /// Next available-ring entry the device will take.
    pub next_avail: u16,
    /// Next used-ring entry the device will fill.
    pub next_used: u16,
    /// VIRTIO_F_RING_EVENT_IDX negotiated.
    pub event_idx: bool,
    /// VIRTIO_F_RING_INDIRECT_DESC negotiated.
    pub indirect: bool,
    /// Used index when the driver was last considered for notification.
    pub signalled_used: u16,
}

/// Check saved queues against the transport's: same count, same maximum sizes, a size the
/// transport could have accepted.
pub(crate) fn check_queues(
    who: &str,
    have: &[Queue],
    saved: &[Queue],
) -> Result<(), crate::state::StateError> {
    if have.len() != saved.len() {
        return Err(crate::state::StateError::new(
            who,
            format!(
                "{} queues saved, the device has {}",
                saved.len(),
                have.len()
            ),
        ));
    }
    for (h, s) in have.iter().zip(saved) {
        if h.max_size != s.max_size || s.size > s.max_size {
            return Err(crate::state::StateError::new(
                who,
                "a saved queue does not fit the device",
            ));
        }
    }
    Ok(())
}

impl Queue {
    /// A queue of at most `max_size` entries, not ready.
    pub fn new(max_size: u16) -> Self {
        Queue {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
            event_idx: false,
            indirect: false,
            signalled_used: 0,
        }
    }

    /// Back to the post-reset state.
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// Whether the configuration is usable: ready, power-of-two size within bounds, rings aligned.
    pub fn is_valid(&self) -> bool {
        self.ready
            && self.size != 0
            && self.size <= self.max_size
            && self.size.is_power_of_two()
            && self.desc_table.is_multiple_of(16)
            && self.avail_ring.is_multiple_of(2)
            && self.used_ring.is_multiple_of(4)
    }

    fn read_u16(mem: &dyn GuestMemory, addr: u64) -> Result<u16, QueueError> {
        let mut b = [0u8; 2];
        mem.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn addr(base: u64, offset: u64) -> Result<u64, QueueError> {
        base.checked_add(offset).ok_or(QueueError::AddressOverflow {
            addr: base,
            len: offset,
        })
    }

    /// Entries the driver made available and the device has not taken yet.
    pub fn pending(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        let avail_idx = Self::read_u16(mem, Self::addr(self.avail_ring, 2)?)?;
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIdxTooFar {
                avail_idx,
                pending,
                size: self.size,
            });
        }
        Ok(pending)
    }

    /// Take the next available chain, validated. With EVENT_IDX, also publishes avail_event
    /// so the driver notifies on the next new buffer.
    pub fn pop(
        &mut self,
        mem: &mut dyn GuestMemory,
    ) -> Result<Option<DescriptorChain>, QueueError> {
        if !self.is_valid() {
            return Err(QueueError::NotReady);
        }
        if self.pending(mem)? == 0 {
            return Ok(None);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = Self::read_u16(mem, Self::addr(self.avail_ring, 4 + 2 * slot)?)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        if self.event_idx {
            let avail_event = Self::addr(self.used_ring, 4 + 8 * u64::from(self.size))?;
            mem.write(avail_event, &self.next_avail.to_le_bytes())?;
        }
        let descs = self.walk(mem, head)?;
        Ok(Some(DescriptorChain { head, descs }))
    }

    fn walk(&self, mem: &dyn GuestMemory, head: u16) -> Result<Vec<Descriptor>, QueueError> {
        let mut out = Vec::new();
        let mut table = self.desc_table;
        let mut table_len = u64::from(self.size);
        let mut index = u64::from(head);
        let mut steps = 0u64;
        let mut in_indirect = false;
        let mut seen_writable = false;
        loop {
            if index >= table_len {
                return Err(QueueError::IndexOutOfRange {
                    index,
                    size: table_len,
                });
            }
            steps += 1;
            if steps > table_len {
                return Err(QueueError::ChainTooLong);
            }
            let mut raw = [0u8; 16];
            mem.read(Self::addr(table, index * DESC_SIZE)?, &mut raw)?;
            let addr = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if addr.checked_add(u64::from(len)).is_none() {
                return Err(QueueError::AddressOverflow {
                    addr,
                    len: u64::from(len),
                });
            }
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if in_indirect {
                    return Err(QueueError::NestedIndirect);
                }
                if !self.indirect {
                    return Err(QueueError::IndirectNotNegotiated);
                }
                if flags & VIRTQ_DESC_F_NEXT != 0 {
                    return Err(QueueError::IndirectWithNext);
                }
                let entries = u64::from(len) / DESC_SIZE;
                if len == 0 || u64::from(len) % DESC_SIZE != 0 || entries > MAX_INDIRECT_ENTRIES {
                    return Err(QueueError::BadIndirectLen(len));
                }
                in_indirect = true;
                table = addr;
                table_len = entries;
                index = 0;
                steps = 0;
                continue;
            }
            let writable = flags & VIRTQ_DESC_F_WRITE != 0;
            if !writable && seen_writable {
                return Err(QueueError::ReadAfterWrite);
            }
            seen_writable |= writable;
            out.push(Descriptor {
                addr,
                len,
                writable,
            });
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(out);
            }
            index = u64::from(next);
        }
    }

    /// Return chain `head` to the driver with `len` bytes written into its buffers.
    pub fn add_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if !self.is_valid() {
            return Err(QueueError::NotReady);
        }
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; 8];
        elem[0..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..8].copy_from_slice(&len.to_le_bytes());
        mem.write(Self::addr(self.used_ring, 4 + 8 * slot)?, &elem)?;
        self.next_used = self.next_used.wrapping_add(1);
        mem.write(
            Self::addr(self.used_ring, 2)?,
            &self.next_used.to_le_bytes(),
        )?;
        Ok(())
    }

    /// Whether the driver wants an interrupt for the used entries added since the last call
    /// (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX).
    pub fn needs_notification(&mut self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        let new = self.next_used;
        let old = self.signalled_used;
        self.signalled_used = new;
        if new == old {
            return Ok(false);
        }
        if self.event_idx {
            let used_event = Self::read_u16(
                mem,
                Self::addr(self.avail_ring, 4 + 2 * u64::from(self.size))?,
            )?;
            Ok(new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old))
        } else {
            let flags = Self::read_u16(mem, self.avail_ring)?;
            Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;

    pub fn put_desc(
        mem: &mut Vec<u8>,
        table: u64,
        i: u64,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        GuestMemory::write(mem, table + 16 * i, &d).unwrap();
    }

    fn push_avail(mem: &mut Vec<u8>, size: u16, head: u16) {
        let mut b = [0u8; 2];
        GuestMemory::read(mem, AVAIL + 2, &mut b).unwrap();
        let idx = u16::from_le_bytes(b);
        let slot = u64::from(idx % size);
        GuestMemory::write(mem, AVAIL + 4 + 2 * slot, &head.to_le_bytes()).unwrap();
        GuestMemory::write(mem, AVAIL + 2, &idx.wrapping_add(1).to_le_bytes()).unwrap();
    }

    fn queue(size: u16) -> Queue {
        let mut q = Queue::new(size);
        q.desc_table = DESC;
        q.avail_ring = AVAIL;
        q.used_ring = USED;
        q.ready = true;
        q.indirect = true;
        q
    }

    #[test]
    fn simple_chain_and_used_ring() {
        let mut mem = vec![0u8; 0x10000];
        let mut q = queue(8);
        put_desc(&mut mem, DESC, 0, 0x5000, 16, VIRTQ_DESC_F_NEXT, 3);
        put_desc(&mut mem, DESC, 3, 0x6000, 512, VIRTQ_DESC_F_WRITE, 0);
        push_avail(&mut mem, 8, 0);
        let c = q.pop(&mut mem).unwrap().unwrap();
        assert_eq!(c.head, 0);
        assert_eq!(c.readable_len(), 16);
        assert_eq!(c.writable_len(), 512);
        assert!(q.pop(&mut mem).unwrap().is_none());
        q.add_used(&mut mem, c.head, 513).unwrap();
        let mut b = [0u8; 12];
        GuestMemory::read(&mem, USED, &mut b).unwrap();
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), 1);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 513);
        assert!(q.needs_notification(&mem).unwrap());
        assert!(!q.needs_notification(&mem).unwrap(), "nothing new");
    }

    #[test]
    fn loop_is_detected() {
        let mut mem = vec![0u8; 0x10000];
        let mut q = queue(4);
        put_desc(&mut mem, DESC, 0, 0x5000, 1, VIRTQ_DESC_F_NEXT, 1);
        put_desc(&mut mem, DESC, 1, 0x5000, 1, VIRTQ_DESC_F_NEXT, 0);
        push_avail(&mut mem, 4, 0);
        assert_eq!(q.pop(&mut mem), Err(QueueError::ChainTooLong));
    }

    #[test]
    fn bad_chains() {
        let mut mem = vec![0u8; 0x10000];
        let mut q = queue(4);
        // head out of range
        push_avail(&mut mem, 4, 9);
        assert!(matches!(
            q.pop(&mut mem),
            Err(QueueError::IndexOutOfRange { .. })
        ));
        // nested indirect
        put_desc(&mut mem, DESC, 0, 0x8000, 32, VIRTQ_DESC_F_INDIRECT, 0);
        put_desc(&mut mem, 0x8000, 0, 0x9000, 16, VIRTQ_DESC_F_INDIRECT, 0);
        push_avail(&mut mem, 4, 0);
        assert_eq!(q.pop(&mut mem), Err(QueueError::NestedIndirect));
        // bad indirect length
        put_desc(&mut mem, DESC, 1, 0x8000, 17, VIRTQ_DESC_F_INDIRECT, 0);
        push_avail(&mut mem, 4, 1);
        assert_eq!(q.pop(&mut mem), Err(QueueError::BadIndirectLen(17)));
        // wrapping address
        put_desc(&mut mem, DESC, 2, u64::MAX - 3, 16, 0, 0);
        push_avail(&mut mem, 4, 2);
        assert!(matches!(
            q.pop(&mut mem),
            Err(QueueError::AddressOverflow { .. })
        ));
        // read after write
        put_desc(
            &mut mem,
            DESC,
            3,
            0x5000,
            1,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            0,
        );
        put_desc(&mut mem, DESC, 0, 0x5000, 1, 0, 0);
        push_avail(&mut mem, 4, 3);
        assert_eq!(q.pop(&mut mem), Err(QueueError::ReadAfterWrite));
        // avail index far ahead
        GuestMemory::write(&mut mem, AVAIL + 2, &100u16.to_le_bytes()).unwrap();
        assert!(matches!(
            q.pop(&mut mem),
            Err(QueueError::AvailIdxTooFar { .. })
        ));
        // ring outside RAM
        let mut q2 = queue(4);
        q2.avail_ring = 0x10_0000;
        assert!(matches!(q2.pop(&mut mem), Err(QueueError::Mem(_))));
    }

    #[test]
    fn indirect_chain() {
        let mut mem = vec![0u8; 0x10000];
        let mut q = queue(4);
        put_desc(&mut mem, DESC, 2, 0x8000, 48, VIRTQ_DESC_F_INDIRECT, 0);
        put_desc(&mut mem, 0x8000, 0, 0x5000, 16, VIRTQ_DESC_F_NEXT, 2);
        put_desc(
            &mut mem,
            0x8000,
            2,
            0x6000,
            100,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            1,
        );
        put_desc(&mut mem, 0x8000, 1, 0x7000, 1, VIRTQ_DESC_F_WRITE, 0);
        push_avail(&mut mem, 4, 2);
        let c = q.pop(&mut mem).unwrap().unwrap();
        assert_eq!(c.head, 2);
        assert_eq!(c.descs.len(), 3);
        assert_eq!(c.writable_len(), 101);
        q.indirect = false;
        push_avail(&mut mem, 4, 2);
        assert_eq!(q.pop(&mut mem), Err(QueueError::IndirectNotNegotiated));
    }

    #[test]
    fn event_idx_suppression() {
        let mut mem = vec![0u8; 0x10000];
        let mut q = queue(8);
        q.event_idx = true;
        put_desc(&mut mem, DESC, 0, 0x5000, 1, VIRTQ_DESC_F_WRITE, 0);
        // driver wants an interrupt only after used idx passes 1 (used_event = 1)
        GuestMemory::write(&mut mem, AVAIL + 4 + 16, &1u16.to_le_bytes()).unwrap();
        for expect in [false, true, false] {
            push_avail(&mut mem, 8, 0);
            let c = q.pop(&mut mem).unwrap().unwrap();
            q.add_used(&mut mem, c.head, 1).unwrap();
            assert_eq!(q.needs_notification(&mem).unwrap(), expect);
        }
        // avail_event published
        let mut b = [0u8; 2];
        GuestMemory::read(&mem, USED + 4 + 64, &mut b).unwrap();
        assert_eq!(u16::from_le_bytes(b), 3);
    }

    #[test]
    fn no_interrupt_flag() {
        let mut mem = vec![0u8; 0x10000];
        let mut q = queue(8);
        GuestMemory::write(&mut mem, AVAIL, &VIRTQ_AVAIL_F_NO_INTERRUPT.to_le_bytes()).unwrap();
        put_desc(&mut mem, DESC, 0, 0x5000, 1, VIRTQ_DESC_F_WRITE, 0);
        push_avail(&mut mem, 8, 0);
        let c = q.pop(&mut mem).unwrap().unwrap();
        q.add_used(&mut mem, c.head, 1).unwrap();
        assert!(!q.needs_notification(&mem).unwrap());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_tables_never_panic(
                table in proptest::collection::vec(any::<u8>(), 16 * 8),
                indirect in proptest::collection::vec(any::<u8>(), 16 * 8),
                ring in proptest::collection::vec(any::<u8>(), 4 + 2 * 8),
                event_idx in any::<bool>(),
            ) {
                let mut mem = vec![0u8; 0x10000];
                GuestMemory::write(&mut mem, DESC, &table).unwrap();
                GuestMemory::write(&mut mem, 0x8000, &indirect).unwrap();
                GuestMemory::write(&mut mem, AVAIL, &ring).unwrap();
                let mut q = queue(8);
                q.event_idx = event_idx;
                for _ in 0..16 {
                    match q.pop(&mut mem) {
                        Ok(Some(c)) => {
                            prop_assert!(c.descs.len() <= 8 + MAX_INDIRECT_ENTRIES as usize);
                            let _ = q.add_used(&mut mem, c.head, 0);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                let _ = q.needs_notification(&mem);
            }
        }
    }
}
