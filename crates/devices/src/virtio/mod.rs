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
