//! Virtio 1.2 devices: split virtqueues ([`queue`]), the virtio-mmio transport ([`mmio`]), the
//! modern virtio-pci transport ([`pci`]) and virtio-blk ([`blk`]).
//!
//! Devices are transport-independent ([`VirtioDevice`]); the transport owns the queues and hands
//! a device its queue on notification. Devices only ever see validated descriptor chains, and
//! every guest address goes through [`GuestMemory`], which fails instead of panicking.

pub mod blk;
pub mod mmio;
pub mod pci;
pub mod queue;

use thiserror::Error;

pub use queue::{Descriptor, DescriptorChain, Queue, QueueError};

/// A guest-physical access outside guest RAM.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("guest memory access of {len} bytes at {addr:#x} is out of range")]
pub struct MemError {
    pub addr: u64,
    pub len: u64,
}

/// Guest RAM as seen by a DMA-capable device. The machine implements it over its RAM (and
/// uses writes to invalidate translated code that DMA overwrites).
pub trait GuestMemory {
    /// Read `buf.len()` bytes at guest-physical `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Write `buf` at guest-physical `addr`.
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemError>;
    /// Whether all `len` bytes at `addr` are guest RAM, without touching them: a device checks
    /// every buffer of a request before it acts on any (virtio 1.2 §2.7.4: a request fails as
    /// a whole). The default probes one byte per 4 KiB page and the last byte, which is exact
    /// for any RAM whose holes are page-aligned.
    fn check(&self, addr: u64, len: u64) -> Result<(), MemError> {
        let err = MemError { addr, len };
        if len == 0 {
            return Ok(());
        }
        let last = addr.checked_add(len - 1).ok_or(err.clone())?;
        let mut b = [0u8; 1];
        let mut a = addr;
        while a < last {
            self.read(a, &mut b).map_err(|_| err.clone())?;
            a = (a | 0xfff).saturating_add(1);
        }
        self.read(last, &mut b).map_err(|_| err)
    }
}

/// A flat RAM starting at guest-physical 0 (tests, simple machines).
impl GuestMemory for Vec<u8> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let err = MemError {
            addr,
            len: buf.len() as u64,
        };
        let start = usize::try_from(addr).map_err(|_| err.clone())?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        let err = MemError {
            addr,
            len: buf.len() as u64,
        };
        let start = usize::try_from(addr).map_err(|_| err.clone())?;
        let dst = start
            .checked_add(buf.len())
            .and_then(|end| self.get_mut(start..end))
            .ok_or(err)?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn check(&self, addr: u64, len: u64) -> Result<(), MemError> {
        match addr.checked_add(len) {
            Some(end) if end <= self.len() as u64 => Ok(()),
            _ => Err(MemError { addr, len }),
        }
    }
}

/// Device id of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;

/// Feature: descriptors may point to indirect tables.
pub const VIRTIO_F_RING_INDIRECT_DESC: u64 = 1 << 28;
/// Feature: used_event / avail_event notification suppression.
pub const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << 29;
/// Feature: virtio 1.x (modern) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status: guest noticed the device.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Device status: guest has a driver.
pub const STATUS_DRIVER: u32 = 2;
/// Device status: driver ready.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Device status: feature negotiation complete.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status: the device hit an error and must be reset.
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 0x40;
/// Device status: the driver gave up.
pub const STATUS_FAILED: u32 = 0x80;

/// A virtio device, independent of its transport (virtio-mmio or virtio-pci).
pub trait VirtioDevice {
    /// Virtio device id (2 = block).
    fn device_id(&self) -> u32;
    /// Device-specific and ring features offered (the transport adds or masks
    /// VIRTIO_F_VERSION_1 itself).
    fn device_features(&self) -> u64;
    /// The features the driver accepted (subset of the offered ones).
    fn set_driver_features(&mut self, _features: u64) {}
    /// Read device config space at `offset`; bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write device config space at `offset` (read-only fields ignore writes).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Number of virtqueues.
    fn num_queues(&self) -> usize;
    /// Largest size of queue `index`.
    fn queue_max_size(&self, index: usize) -> u16;
    /// Handle the available buffers of queue `index`. Returns whether the driver must be
    /// interrupted; an error means the device needs a reset.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError>;
    /// Back to the post-reset state (the transport resets the queues).
    fn reset(&mut self);
    /// Make completed writes durable (disks flush their backend; others have nothing to do).
    fn flush(&mut self) -> Result<(), crate::block::BlockError> {
        Ok(())
    }
    /// The device's registers, for a snapshot.
    fn state(&self) -> crate::state::VirtioDeviceState;
    /// Put back a saved state (host resources such as the disk backend stay).
    fn set_state(
        &mut self,
        state: crate::state::VirtioDeviceState,
    ) -> Result<(), crate::state::StateError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RAM with a hole at 0x3000..0x5000 that uses the default [`GuestMemory::check`].
    struct Holed(Vec<u8>);

    impl GuestMemory for Holed {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let end = addr + buf.len() as u64;
            if addr < 0x5000 && end > 0x3000 {
                return Err(MemError {
                    addr,
                    len: buf.len() as u64,
                });
            }
            self.0.read(addr, buf)
        }
        fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
            self.0.write(addr, buf)
        }
    }

    #[test]
    fn check_finds_holes_anywhere_in_a_range() {
        let m = Holed(vec![0; 0x8000]);
        assert!(m.check(0, 0x3000).is_ok());
        assert!(m.check(0x5000, 0x3000).is_ok());
        assert!(m.check(0x2fff, 1).is_ok());
        // Both ends in RAM, the hole in the middle.
        assert!(m.check(0x1000, 0x5000).is_err());
        assert!(m.check(0x2fff, 2).is_err());
        assert!(m.check(0x7000, 0x1001).is_err());
        assert!(m.check(u64::MAX, 2).is_err());
        assert!(m.check(0x9000, 0).is_ok());
        let v = vec![0u8; 16];
        assert!(v.check(0, 16).is_ok() && v.check(1, 16).is_err() && v.check(u64::MAX, 2).is_err());
    }
}
