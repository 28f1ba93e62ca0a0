//! The virtio 1.2 PCI transport, modern only (§4.1): vendor 0x1af4, device 0x1040 + virtio
//! device id (0x1042 for block), revision 1, and no legacy I/O BAR.
//!
//! Everything lives in BAR 4, a 16 KiB 64-bit prefetchable memory BAR (QEMU's layout), described
//! by vendor-specific capabilities (`cfg_type` 1..4):
//!
//! | BAR 4 offset | structure | notes |
//! |---|---|---|
//! | 0x0000 | common configuration | features, status, queue setup (§4.1.4.3) |
//! | 0x1000 | ISR status | one byte; reading returns and clears it, lowering INTx |
//! | 0x2000 | device configuration | the device's config space (e.g. virtio_blk_config) |
//! | 0x3000 | notifications | queue *n* at `n * 4` (`queue_notify_off = n`, multiplier 4) |
//!
//! A fifth capability, `VIRTIO_PCI_CAP_PCI_CFG` (`cfg_type` 5), is the config-space window onto
//! the BAR (§4.1.4.9): the driver writes `bar`, `offset` and `length` (1, 2 or 4, offset
//! aligned to it), and an access to `pci_cfg_data` performs that BAR access, whether or not
//! memory decoding is enabled. Linux does not use it; firmware does.
//!
//! Interrupts are INTx only (no MSI-X capability: Linux falls back to a shared legacy IRQ, and
//! the MSI-X vector registers read `VIRTIO_MSI_NO_VECTOR`). The line is high while the ISR is
//! non-zero.
//!
//! A notification only records the queue; the machine then calls
//! [`PciDevice::service`] with guest memory (the bus hands memory only to bus masters), which
//! processes it as the mmio transport does: a malformed chain sets DEVICE_NEEDS_RESET, raises a
//! configuration interrupt once the driver is up, and the device ignores notifications until
//! it is reset.

use super::queue::check_queues;
use super::queue::Queue;
use super::{
    GuestMemory, VirtioDevice, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use crate::pci::{Access, BarKind, PciConfig, PciConfigState, PciDevice, CAP_ID_VENDOR};
use crate::state::{PciDeviceState, StateError, VirtioDeviceState};
use std::any::Any;

/// Red Hat / virtio PCI vendor id.
pub const VENDOR_ID: u16 = 0x1AF4;
/// Modern device ids are 0x1040 + the virtio device id.
pub const DEVICE_ID_BASE: u16 = 0x1040;
/// Subsystem id QEMU gives modern-only devices.
pub const SUBSYSTEM_ID: u16 = 0x1100;

/// The BAR holding every structure.
pub const BAR: usize = 4;
/// Its size.
pub const BAR_SIZE: u64 = 0x4000;
/// Common configuration offset in the BAR.
pub const COMMON_OFFSET: u64 = 0x0000;
/// ISR offset.
pub const ISR_OFFSET: u64 = 0x1000;
/// Device configuration offset.
pub const DEVICE_OFFSET: u64 = 0x2000;
/// Notification area offset.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Size of each structure's window.
pub const REGION_SIZE: u64 = 0x1000;
/// Bytes between the notification addresses of consecutive queues.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;

/// cfg_type: common configuration.
pub const CAP_COMMON_CFG: u8 = 1;
/// cfg_type: notifications.
pub const CAP_NOTIFY_CFG: u8 = 2;
/// cfg_type: ISR status.
pub const CAP_ISR_CFG: u8 = 3;
/// cfg_type: device-specific configuration.
pub const CAP_DEVICE_CFG: u8 = 4;
/// cfg_type: PCI configuration access window.
pub const CAP_PCI_CFG: u8 = 5;

/// No MSI-X vector.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;
/// ISR bit: used buffer notification.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: configuration change.
pub const ISR_CONFIG: u8 = 2;

/// Common configuration registers (offset in the common structure).
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0C;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1A;
    pub const QUEUE_ENABLE: u64 = 0x1C;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1E;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
    pub const QUEUE_NOTIFY_DATA: u64 = 0x38;
    pub const QUEUE_RESET: u64 = 0x3A;
    /// Size of the structure.
    pub const SIZE: u64 = 0x3C;
}

/// PCI class for a virtio device id (what QEMU reports).
fn class_for(device_id: u32) -> u32 {
    match device_id {
        1 => 0x02_00_00,  // network
        2 => 0x01_00_00,  // block: mass storage, SCSI
        3 => 0x07_80_00,  // console: simple communication, other
        8 => 0x01_00_00,  // scsi
        16 => 0x03_80_00, // gpu: display, other
        _ => 0xFF_00_00,
    }
}

/// A virtio device behind the modern PCI transport.
#[derive(Debug)]
pub struct VirtioPci<D: VirtioDevice> {
    config: PciConfig,
    device: D,
    queues: Vec<Queue>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    queue_select: u16,
    status: u8,
    isr: u8,
    config_generation: u8,
    /// Queues notified and not yet processed (bit per queue; queues past 63 share bit 63 and
    /// are found by scanning).
    pending: u64,
    /// Transport counters.
    counters: PciCounters,
    /// Config offset of the VIRTIO_PCI_CAP_PCI_CFG capability.
    pci_cfg_cap: usize,
}

/// Everything of a virtio-pci function a snapshot needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtioPciState {
    pub config: PciConfigState,
    pub device: VirtioDeviceState,
    pub queues: Vec<Queue>,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub queue_select: u16,
    pub status: u8,
    pub isr: u8,
    pub config_generation: u8,
    /// Queues notified and not yet processed (in-flight notifications).
    pub pending: u64,
    pub counters: PciCounters,
}

/// Transport-level counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PciCounters {
    /// Notifications received.
    pub notifies: u64,
    /// Interrupts raised (ISR bit set from 0).
    pub interrupts: u64,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// Wrap `device` in its PCI function.
    pub fn new(device: D) -> Self {
        let id = device.device_id();
        let pci_id = DEVICE_ID_BASE.wrapping_add(id as u16);
        let mut config = PciConfig::new(VENDOR_ID, pci_id, class_for(id), 1);
        config.set_subsystem(VENDOR_ID, SUBSYSTEM_ID);
        config.set_interrupt_pin(1);
        config.add_bar(BAR, BarKind::Mem64 { prefetchable: true }, BAR_SIZE);
        let cap = |cfg_type: u8, offset: u64, extra: Option<u32>| {
            let mut body = vec![0u8; 14];
            body[0] = if extra.is_some() { 20 } else { 16 }; // cap_len
            body[1] = cfg_type;
            body[2] = BAR as u8;
            body[3] = 0; // id
            body[6..10].copy_from_slice(&(offset as u32).to_le_bytes());
            body[10..14].copy_from_slice(&(REGION_SIZE as u32).to_le_bytes());
            if let Some(m) = extra {
                body.extend_from_slice(&m.to_le_bytes());
            }
            body
        };
        config.add_capability(CAP_ID_VENDOR, &cap(CAP_COMMON_CFG, COMMON_OFFSET, None));
        config.add_capability(
            CAP_ID_VENDOR,
            &cap(CAP_NOTIFY_CFG, NOTIFY_OFFSET, Some(NOTIFY_OFF_MULTIPLIER)),
        );
        config.add_capability(CAP_ID_VENDOR, &cap(CAP_ISR_CFG, ISR_OFFSET, None));
        config.add_capability(CAP_ID_VENDOR, &cap(CAP_DEVICE_CFG, DEVICE_OFFSET, None));
        // The window: struct virtio_pci_cap with bar/offset/length zero, then pci_cfg_data.
        let mut body = vec![0u8; 18];
        body[0] = 20; // cap_len
        body[1] = CAP_PCI_CFG;
        let pci_cfg_cap = config.add_capability(CAP_ID_VENDOR, &body);
        config.set_write_mask(pci_cfg_cap + 4, &[0xFF]); // bar
        config.set_write_mask(pci_cfg_cap + 8, &[0xFF; 8]); // offset, length
        config.set_write_mask(pci_cfg_cap + 16, &[0xFF; 4]); // pci_cfg_data
        let queues = (0..device.num_queues())
            .map(|i| Queue::new(device.queue_max_size(i)))
            .collect();
        VirtioPci {
            config,
            device,
            queues,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            status: 0,
            isr: 0,
            config_generation: 0,
            pending: 0,
            counters: PciCounters::default(),
            pci_cfg_cap,
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Device status register.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The ISR without clearing it.
    pub fn isr(&self) -> u8 {
        self.isr
    }

    /// Transport counters.
    pub fn counters(&self) -> PciCounters {
        self.counters
    }

    /// The device changed its config space: bump the generation and interrupt the driver.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & STATUS_DRIVER_OK as u8 != 0 {
            self.raise(ISR_CONFIG);
        }
    }

    fn raise(&mut self, bit: u8) {
        if self.isr == 0 {
            self.counters.interrupts += 1;
        }
        self.isr |= bit;
    }

    fn offered_features(&self) -> u64 {
        self.device.device_features() | VIRTIO_F_VERSION_1
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.status = 0;
        self.isr = 0;
        self.pending = 0;
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn selected_mut(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// The common structure as bytes (reads have no side effects, so any width works).
    fn common_image(&self) -> [u8; common::SIZE as usize] {
        let mut b = [0u8; common::SIZE as usize];
        let mut put = |off: u64, v: &[u8]| {
            b[off as usize..off as usize + v.len()].copy_from_slice(v);
        };
        put(
            common::DEVICE_FEATURE_SELECT,
            &self.device_feature_select.to_le_bytes(),
        );
        let f = match self.device_feature_select {
            0 => self.offered_features() as u32,
            1 => (self.offered_features() >> 32) as u32,
            _ => 0,
        };
        put(common::DEVICE_FEATURE, &f.to_le_bytes());
        put(
            common::DRIVER_FEATURE_SELECT,
            &self.driver_feature_select.to_le_bytes(),
        );
        let f = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(common::DRIVER_FEATURE, &f.to_le_bytes());
        put(
            common::CONFIG_MSIX_VECTOR,
            &VIRTIO_MSI_NO_VECTOR.to_le_bytes(),
        );
        put(
            common::NUM_QUEUES,
            &(self.queues.len().min(usize::from(u16::MAX)) as u16).to_le_bytes(),
        );
        put(common::DEVICE_STATUS, &[self.status]);
        put(common::CONFIG_GENERATION, &[self.config_generation]);
        put(common::QUEUE_SELECT, &self.queue_select.to_le_bytes());
        if let Some(q) = self.selected() {
            put(common::QUEUE_SIZE, &q.size.to_le_bytes());
            put(
                common::QUEUE_MSIX_VECTOR,
                &VIRTIO_MSI_NO_VECTOR.to_le_bytes(),
            );
            put(common::QUEUE_ENABLE, &u16::from(q.ready).to_le_bytes());
            put(common::QUEUE_NOTIFY_OFF, &self.queue_select.to_le_bytes());
            put(common::QUEUE_DESC, &q.desc_table.to_le_bytes());
            put(common::QUEUE_DRIVER, &q.avail_ring.to_le_bytes());
            put(common::QUEUE_DEVICE, &q.used_ring.to_le_bytes());
            put(common::QUEUE_NOTIFY_DATA, &self.queue_select.to_le_bytes());
        }
        b
    }

    fn common_read(&self, offset: u64, data: &mut [u8]) {
        let img = self.common_image();
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| img.get(usize::try_from(o).ok()?))
                .copied()
                .unwrap_or(0);
        }
    }

    fn common_write(&mut self, offset: u64, data: &[u8]) {
        let mut v = [0u8; 8];
        let n = data.len().min(8);
        v[..n].copy_from_slice(&data[..n]);
        let value = u64::from_le_bytes(v);
        use common::*;
        match (offset, data.len()) {
            (DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = value as u32,
            (DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = value as u32,
            (DRIVER_FEATURE, 4) => {
                if self.status & STATUS_FEATURES_OK as u8 != 0 {
                    log::warn!("virtio-pci: driver features written after FEATURES_OK");
                    return;
                }
                let shift = match self.driver_feature_select {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features &= !(0xFFFF_FFFFu64 << shift);
                self.driver_features |= (value & 0xFFFF_FFFF) << shift;
            }
            (CONFIG_MSIX_VECTOR, 2) | (QUEUE_MSIX_VECTOR, 2) => {
                // No MSI-X: the registers read NO_VECTOR whatever is written.
            }
            (DEVICE_STATUS, 1) => self.write_status(value as u8),
            (QUEUE_SELECT, 2) => self.queue_select = value as u16,
            (QUEUE_SIZE, 2) => {
                if let Some(q) = self.selected_mut() {
                    if q.ready {
                        log::warn!("virtio-pci: queue size written while the queue is enabled");
                    } else {
                        q.size = value as u16;
                    }
                }
            }
            (QUEUE_ENABLE, 2) => {
                let sel = self.queue_select;
                if let Some(q) = self.selected_mut() {
                    if value & 1 != 0 {
                        q.ready = true;
                        if !q.is_valid() {
                            log::warn!("virtio-pci: queue {sel} enabled with a bad layout: {q:?}");
                        }
                    }
                    // Writing 0 is not allowed (queue_reset is not offered): ignored.
                }
            }
            (QUEUE_DESC..=0x37, 4 | 8)
                if offset.is_multiple_of(4) && (data.len() == 4 || offset.is_multiple_of(8)) =>
            {
                let sel = self.queue_select;
                let Some(q) = self.selected_mut() else {
                    return;
                };
                if q.ready {
                    log::warn!("virtio-pci: queue {sel} address written while enabled");
                    return;
                }
                let field = match offset & !7 {
                    QUEUE_DESC => &mut q.desc_table,
                    QUEUE_DRIVER => &mut q.avail_ring,
                    _ => &mut q.used_ring,
                };
                if data.len() == 8 {
                    *field = value;
                } else {
                    let shift = if offset & 4 != 0 { 32 } else { 0 };
                    *field &= !(0xFFFF_FFFFu64 << shift);
                    *field |= (value & 0xFFFF_FFFF) << shift;
                }
            }
            (QUEUE_RESET, 2) => {}
            _ => log::debug!(
                "virtio-pci: {}-byte write of {value:#x} to common config {offset:#x} ignored",
                data.len()
            ),
        }
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let keep = STATUS_DEVICE_NEEDS_RESET as u8;
        let mut new = (value & !keep) | (old & keep);
        let features_ok = STATUS_FEATURES_OK as u8;
        if new & features_ok != 0 && old & features_ok == 0 {
            let offered = self.offered_features();
            if self.driver_features & !offered != 0
                || self.driver_features & VIRTIO_F_VERSION_1 == 0
            {
                log::warn!(
                    "virtio-pci: rejecting driver features {:#x} (offered {offered:#x})",
                    self.driver_features
                );
                new &= !features_ok;
            } else {
                let f = self.driver_features;
                self.device.set_driver_features(f);
                for q in &mut self.queues {
                    q.event_idx = f & VIRTIO_F_RING_EVENT_IDX != 0;
                    q.indirect = f & VIRTIO_F_RING_INDIRECT_DESC != 0;
                }
            }
        }
        self.status = new;
    }

    fn notify(&mut self, offset: u64) -> Access {
        let queue = offset / u64::from(NOTIFY_OFF_MULTIPLIER);
        let Ok(q) = usize::try_from(queue) else {
            return Access::Done;
        };
        if q >= self.queues.len() {
            log::warn!("virtio-pci: notify of nonexistent queue {q}");
            return Access::Done;
        }
        self.counters.notifies += 1;
        self.pending |= 1 << q.min(63);
        Access::NeedsService
    }

    /// The BAR access the PCI_CFG window describes, if it is a valid one.
    fn cfg_window(&self) -> Option<(usize, u64, usize)> {
        let c = self.pci_cfg_cap;
        let bar = self.config.read(c + 4, 1) as usize;
        let offset = u64::from(self.config.read(c + 8, 4));
        let len = self.config.read(c + 12, 4) as usize;
        let ok = bar == BAR
            && matches!(len, 1 | 2 | 4)
            && offset.is_multiple_of(len as u64)
            && offset + len as u64 <= BAR_SIZE;
        if !ok {
            log::debug!(
                "virtio-pci: PCI_CFG window bar {bar} offset {offset:#x} length {len} ignored"
            );
        }
        ok.then_some((bar, offset, len))
    }

    /// Does a config access at `offset`/`size` touch pci_cfg_data?
    fn touches_cfg_data(&self, offset: usize, size: usize) -> bool {
        let data = self.pci_cfg_cap + 16;
        offset < data + 4 && offset + size > data
    }

    fn process(&mut self, index: usize, mem: &mut dyn GuestMemory) {
        if self.status & STATUS_DEVICE_NEEDS_RESET as u8 != 0 {
            return;
        }
        let Some(queue) = self.queues.get_mut(index) else {
            return;
        };
        if !queue.is_valid() {
            log::warn!("virtio-pci: notify of queue {index} which is not ready");
            return;
        }
        match self.device.process_queue(index, queue, mem) {
            Ok(true) => self.raise(ISR_QUEUE),
            Ok(false) => {}
            Err(e) => {
                log::error!("virtio-pci: queue {index}: {e}; device needs reset");
                self.status |= STATUS_DEVICE_NEEDS_RESET as u8;
                if self.status & STATUS_DRIVER_OK as u8 != 0 {
                    self.raise(ISR_CONFIG);
                }
            }
        }
    }
}

impl<D: VirtioDevice + 'static> PciDevice for VirtioPci<D> {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn config_read(&mut self, offset: usize, size: usize) -> u32 {
        if self.touches_cfg_data(offset, size) {
            if let Some((bar, off, len)) = self.cfg_window() {
                let mut buf = [0u8; 4];
                self.bar_read(bar, off, &mut buf[..len]);
                let data = self.pci_cfg_cap + 16;
                self.config.set_bytes(data, &buf);
            }
        }
        self.config.read(offset, size)
    }

    fn config_write(&mut self, offset: usize, size: usize, value: u32) -> Access {
        self.config.write(offset, size, value);
        if !self.touches_cfg_data(offset, size) {
            return Access::Done;
        }
        let Some((bar, off, len)) = self.cfg_window() else {
            return Access::Done;
        };
        let data = self.pci_cfg_cap + 16;
        let bytes = self.config.read(data, 4).to_le_bytes();
        self.bar_write(bar, off, &bytes[..len])
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR {
            data.fill(0);
            return;
        }
        let within = offset % REGION_SIZE;
        match offset / REGION_SIZE {
            0 => self.common_read(within, data),
            1 => {
                data.fill(0);
                if within == 0 {
                    if let Some(b) = data.first_mut() {
                        *b = self.isr;
                        self.isr = 0;
                    }
                }
            }
            2 => self.device.read_config(within, data),
            _ => data.fill(0),
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) -> Access {
        if bar != BAR {
            return Access::Done;
        }
        let within = offset % REGION_SIZE;
        match offset / REGION_SIZE {
            0 => self.common_write(within, data),
            1 => {}
            2 => self.device.write_config(within, data),
            _ => return self.notify(within),
        }
        Access::Done
    }

    fn service(&mut self, mem: &mut dyn GuestMemory) {
        while self.pending != 0 {
            let bit = self.pending.trailing_zeros() as usize;
            self.pending &= !(1 << bit);
            if bit == 63 {
                for q in 63..self.queues.len() {
                    self.process(q, mem);
                }
            } else {
                self.process(bit, mem);
            }
        }
    }

    fn intx_level(&self) -> bool {
        self.isr != 0
    }

    fn flush(&mut self) -> Result<(), crate::block::BlockError> {
        self.device_mut().flush()
    }
    fn state(&self) -> PciDeviceState {
        PciDeviceState::Virtio(VirtioPciState {
            config: self.config.state(),
            device: self.device.state(),
            queues: self.queues.clone(),
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            queue_select: self.queue_select,
            status: self.status,
            isr: self.isr,
            config_generation: self.config_generation,
            pending: self.pending,
            counters: self.counters,
        })
    }

    fn set_state(&mut self, state: &PciDeviceState) -> Result<(), StateError> {
        let PciDeviceState::Virtio(s) = state else {
            return Err(StateError::new(
                "virtio-pci",
                "a different kind of device was saved in this slot",
            ));
        };
        check_queues("virtio-pci", &self.queues, &s.queues)?;
        self.config.set_state(&s.config)?;
        self.device.set_state(s.device.clone())?;
        self.queues = s.queues.clone();
        self.device_feature_select = s.device_feature_select;
        self.driver_feature_select = s.driver_feature_select;
        self.driver_features = s.driver_features;
        self.queue_select = s.queue_select;
        self.status = s.status;
        self.isr = s.isr;
        self.config_generation = s.config_generation;
        self.pending = s.pending;
        self.counters = s.counters;
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests;
