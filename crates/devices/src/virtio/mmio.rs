//! The virtio-mmio transport (virtio 1.2 §4.2), version 2 (modern) or version 1 (legacy,
//! §4.2.4), chosen at construction. Registers are 32-bit; the device config space starts at
//! 0x100 and may be accessed with any width.
//!
//! QueueNotify processes the queue synchronously. A malformed chain sets
//! DEVICE_NEEDS_RESET, raises a configuration-change interrupt once the driver is up, and the
//! device ignores notifications until it is reset (Status = 0).

use super::queue::{check_queues, Queue};
use super::{
    GuestMemory, VirtioDevice, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    VIRTIO_F_VERSION_1,
};
use crate::state::{StateError, VirtioDeviceState};

/// "virt" in little endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Vendor id reported ("QEMU", which some guests special-case nowhere; any value works).
pub const VENDOR_ID: u32 = 0x554D_4551;

/// Magic value (R).
pub const REG_MAGIC: u64 = 0x000;
/// Version: 1 legacy, 2 modern (R).
pub const REG_VERSION: u64 = 0x004;
/// Device id (R).
pub const REG_DEVICE_ID: u64 = 0x008;
/// Vendor id (R).
pub const REG_VENDOR_ID: u64 = 0x00C;
/// Device features, 32 bits selected by DeviceFeaturesSel (R).
pub const REG_DEVICE_FEATURES: u64 = 0x010;
/// Device features word select (W).
pub const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
/// Driver features, 32 bits selected by DriverFeaturesSel (W).
pub const REG_DRIVER_FEATURES: u64 = 0x020;
/// Driver features word select (W).
pub const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
/// Legacy: guest page size for QueuePFN (W).
pub const REG_GUEST_PAGE_SIZE: u64 = 0x028;
/// Queue select (W).
pub const REG_QUEUE_SEL: u64 = 0x030;
/// Maximum queue size, 0 if the queue does not exist (R).
pub const REG_QUEUE_NUM_MAX: u64 = 0x034;
/// Queue size (W).
pub const REG_QUEUE_NUM: u64 = 0x038;
/// Legacy: used ring alignment (W).
pub const REG_QUEUE_ALIGN: u64 = 0x03C;
/// Legacy: queue page frame number (RW).
pub const REG_QUEUE_PFN: u64 = 0x040;
/// Modern: queue ready (RW).
pub const REG_QUEUE_READY: u64 = 0x044;
/// Queue notifier (W).
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
/// Interrupt status: bit 0 used buffer, bit 1 config change (R).
pub const REG_INTERRUPT_STATUS: u64 = 0x060;
/// Interrupt acknowledge (W).
pub const REG_INTERRUPT_ACK: u64 = 0x064;
/// Device status (RW; writing 0 resets).
pub const REG_STATUS: u64 = 0x070;
/// Modern: descriptor table address, low 32 bits (W).
pub const REG_QUEUE_DESC_LOW: u64 = 0x080;
/// Modern: descriptor table address, high 32 bits (W).
pub const REG_QUEUE_DESC_HIGH: u64 = 0x084;
/// Modern: available ring address, low (W).
pub const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
/// Modern: available ring address, high (W).
pub const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
/// Modern: used ring address, low (W).
pub const REG_QUEUE_DEVICE_LOW: u64 = 0x0A0;
/// Modern: used ring address, high (W).
pub const REG_QUEUE_DEVICE_HIGH: u64 = 0x0A4;
/// Modern: shared memory region select (W).
pub const REG_SHM_SEL: u64 = 0x0AC;
/// Modern: shared memory length low (R, all ones: no region).
pub const REG_SHM_LEN_LOW: u64 = 0x0B0;
/// Modern: shared memory base high (R).
pub const REG_SHM_BASE_HIGH: u64 = 0x0BC;
/// Modern: config generation (R).
pub const REG_CONFIG_GENERATION: u64 = 0x0FC;
/// Start of the device config space.
pub const REG_CONFIG: u64 = 0x100;

/// InterruptStatus: used buffer notification.
pub const INT_VRING: u32 = 1;
/// InterruptStatus: configuration change.
pub const INT_CONFIG: u32 = 2;

/// Per-queue legacy registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegacyQueue {
    pub align: u32,
    pub pfn: u32,
}

/// Everything of a virtio-mmio transport and its device a snapshot needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtioMmioState {
    pub legacy: bool,
    pub device: VirtioDeviceState,
    pub queues: Vec<Queue>,
    pub legacy_queues: Vec<LegacyQueue>,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub status: u32,
    pub interrupt_status: u32,
    pub config_generation: u32,
    pub guest_page_size: u32,
}

/// A virtio device behind a virtio-mmio register window.
#[derive(Debug)]
pub struct VirtioMmio<D: VirtioDevice> {
    device: D,
    legacy: bool,
    queues: Vec<Queue>,
    legacy_queues: Vec<LegacyQueue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
    guest_page_size: u32,
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// Wrap `device`; `legacy` selects version 1 (QEMU microvm's default), else version 2.
    pub fn new(device: D, legacy: bool) -> Self {
        let queues = (0..device.num_queues())
            .map(|i| Queue::new(device.queue_max_size(i)))
            .collect::<Vec<_>>();
        let n = queues.len();
        VirtioMmio {
            device,
            legacy,
            queues,
            legacy_queues: vec![LegacyQueue::default(); n],
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
            guest_page_size: 4096,
        }
    }

    /// The transport's and the device's registers, for a snapshot.
    pub fn state(&self) -> VirtioMmioState {
        VirtioMmioState {
            legacy: self.legacy,
            device: self.device.state(),
            queues: self.queues.clone(),
            legacy_queues: self.legacy_queues.clone(),
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            guest_page_size: self.guest_page_size,
        }
    }

    /// Put back a saved state (the device keeps its backend).
    pub fn set_state(&mut self, s: VirtioMmioState) -> Result<(), StateError> {
        if s.legacy != self.legacy {
            return Err(StateError::new(
                "virtio-mmio",
                "saved as the other transport version (legacy vs modern)",
            ));
        }
        check_queues("virtio-mmio", &self.queues, &s.queues)?;
        if s.legacy_queues.len() != self.legacy_queues.len() {
            return Err(StateError::new("virtio-mmio", "legacy queue count differs"));
        }
        self.device.set_state(s.device)?;
        self.queues = s.queues;
        self.legacy_queues = s.legacy_queues;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        self.guest_page_size = s.guest_page_size;
        Ok(())
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
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The interrupt line: InterruptStatus != 0.
    pub fn irq_level(&self) -> bool {
        self.interrupt_status != 0
    }

    /// The device changed its config space: bump the generation and interrupt the driver.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & STATUS_DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG;
        }
    }

    fn offered_features(&self) -> u64 {
        let f = self.device.device_features();
        if self.legacy {
            f & !VIRTIO_F_VERSION_1 & 0xFFFF_FFFF
        } else {
            f | VIRTIO_F_VERSION_1
        }
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.legacy_queues.fill(LegacyQueue::default());
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn apply_features(&mut self) {
        let f = self.driver_features;
        self.device.set_driver_features(f);
        for q in &mut self.queues {
            q.event_idx = f & super::VIRTIO_F_RING_EVENT_IDX != 0;
            q.indirect = f & super::VIRTIO_F_RING_INDIRECT_DESC != 0;
        }
    }

    fn legacy_layout(&mut self) {
        let page = u64::from(self.guest_page_size);
        let Some(lq) = self.legacy_queues.get(self.queue_sel as usize).copied() else {
            return;
        };
        let Some(q) = self.queues.get_mut(self.queue_sel as usize) else {
            return;
        };
        if lq.pfn == 0 {
            q.ready = false;
            return;
        }
        let num = u64::from(q.size);
        let align = u64::from(lq.align.max(1));
        let desc = u64::from(lq.pfn) * page;
        let avail = desc + 16 * num;
        let avail_end = avail + 6 + 2 * num;
        let used = avail_end.div_ceil(align) * align;
        q.desc_table = desc;
        q.avail_ring = avail;
        q.used_ring = used;
        q.ready = true;
        if !q.is_valid() {
            log::warn!(
                "virtio-mmio: legacy queue {} badly configured: {q:?}",
                self.queue_sel
            );
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC => MAGIC_VALUE,
            REG_VERSION => {
                if self.legacy {
                    1
                } else {
                    2
                }
            }
            REG_DEVICE_ID => self.device.device_id(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size)),
            REG_QUEUE_PFN if self.legacy => self
                .legacy_queues
                .get(self.queue_sel as usize)
                .map_or(0, |l| l.pfn),
            REG_QUEUE_READY if !self.legacy => self.selected().map_or(0, |q| u32::from(q.ready)),
            REG_INTERRUPT_STATUS => self.interrupt_status,
            REG_STATUS => self.status,
            REG_SHM_LEN_LOW..=REG_SHM_BASE_HIGH if !self.legacy => u32::MAX,
            REG_CONFIG_GENERATION if !self.legacy => self.config_generation,
            _ => {
                log::debug!("virtio-mmio: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32, mem: &mut dyn GuestMemory) {
        let legacy = self.legacy;
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            REG_DRIVER_FEATURES => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features &= !(0xFFFF_FFFFu64 << shift);
                self.driver_features |= u64::from(value) << shift;
            }
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_GUEST_PAGE_SIZE if legacy => self.guest_page_size = value,
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NUM => {
                if let Some(q) = self.selected() {
                    q.size = value.min(u32::from(u16::MAX)) as u16;
                }
                if legacy {
                    self.legacy_layout();
                }
            }
            REG_QUEUE_ALIGN if legacy => {
                if let Some(l) = self.legacy_queues.get_mut(self.queue_sel as usize) {
                    l.align = value;
                }
            }
            REG_QUEUE_PFN if legacy => {
                if let Some(l) = self.legacy_queues.get_mut(self.queue_sel as usize) {
                    l.pfn = value;
                }
                if value == 0 {
                    if let Some(q) = self.selected() {
                        q.reset();
                    }
                } else {
                    self.legacy_layout();
                }
            }
            REG_QUEUE_READY if !legacy => {
                let sel = self.queue_sel;
                if let Some(q) = self.selected() {
                    q.ready = value & 1 != 0;
                    if q.ready && !q.is_valid() {
                        log::warn!("virtio-mmio: queue {sel} made ready with a bad layout: {q:?}");
                    }
                }
            }
            REG_QUEUE_DESC_LOW
            | REG_QUEUE_DESC_HIGH
            | REG_QUEUE_DRIVER_LOW
            | REG_QUEUE_DRIVER_HIGH
            | REG_QUEUE_DEVICE_LOW
            | REG_QUEUE_DEVICE_HIGH
                if !legacy =>
            {
                if let Some(q) = self.selected() {
                    let field = match offset & !7 {
                        REG_QUEUE_DESC_LOW => &mut q.desc_table,
                        REG_QUEUE_DRIVER_LOW => &mut q.avail_ring,
                        _ => &mut q.used_ring,
                    };
                    let shift = if offset & 4 != 0 { 32 } else { 0 };
                    *field &= !(0xFFFF_FFFFu64 << shift);
                    *field |= u64::from(value) << shift;
                }
            }
            REG_QUEUE_NOTIFY => self.notify(value as usize & 0xFFFF, mem),
            REG_INTERRUPT_ACK => self.interrupt_status &= !value,
            REG_STATUS => self.write_status(value),
            REG_SHM_SEL => {}
            _ => log::debug!("virtio-mmio: write of {value:#x} to unknown register {offset:#x}"),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        let mut new =
            (value & 0xFF & !STATUS_DEVICE_NEEDS_RESET) | (old & STATUS_DEVICE_NEEDS_RESET);
        if !self.legacy && new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let offered = self.offered_features();
            if self.driver_features & !offered != 0
                || self.driver_features & VIRTIO_F_VERSION_1 == 0
            {
                log::warn!(
                    "virtio-mmio: rejecting driver features {:#x} (offered {offered:#x})",
                    self.driver_features
                );
                new &= !STATUS_FEATURES_OK;
            } else {
                self.apply_features();
            }
        }
        if self.legacy && new & STATUS_DRIVER_OK != 0 && old & STATUS_DRIVER_OK == 0 {
            self.driver_features &= self.offered_features();
            self.apply_features();
        }
        self.status = new;
    }

    fn notify(&mut self, index: usize, mem: &mut dyn GuestMemory) {
        if self.status & STATUS_DEVICE_NEEDS_RESET != 0 {
            return;
        }
        if self.legacy && self.status & STATUS_DRIVER_OK == 0 {
            // Legacy drivers may kick before DRIVER_OK; the features are what they wrote.
            self.driver_features &= self.offered_features();
            self.apply_features();
        }
        let Some(queue) = self.queues.get_mut(index) else {
            log::warn!("virtio-mmio: notify of nonexistent queue {index}");
            return;
        };
        if !queue.is_valid() {
            log::warn!("virtio-mmio: notify of queue {index} which is not ready");
            return;
        }
        match self.device.process_queue(index, queue, mem) {
            Ok(true) => self.interrupt_status |= INT_VRING,
            Ok(false) => {}
            Err(e) => {
                log::error!("virtio-mmio: queue {index}: {e}; device needs reset");
                self.status |= STATUS_DEVICE_NEEDS_RESET;
                if self.status & STATUS_DRIVER_OK != 0 {
                    self.interrupt_status |= INT_CONFIG;
                }
            }
        }
    }

    /// A read of `data.len()` bytes at `offset` in the register window.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= REG_CONFIG {
            self.device.read_config(offset - REG_CONFIG, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            log::warn!(
                "virtio-mmio: {}-byte read at {offset:#x} ignored",
                data.len()
            );
            data.fill(0);
            return;
        }
        let v = self.read_reg(offset);
        data.copy_from_slice(&v.to_le_bytes());
    }

    /// A write of `data` at `offset` in the register window; QueueNotify runs the device.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], mem: &mut dyn GuestMemory) {
        if offset >= REG_CONFIG {
            self.device.write_config(offset - REG_CONFIG, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            log::warn!(
                "virtio-mmio: {}-byte write at {offset:#x} ignored",
                data.len()
            );
            return;
        };
        if !offset.is_multiple_of(4) {
            log::warn!("virtio-mmio: unaligned write at {offset:#x} ignored");
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes), mem);
    }
}

#[cfg(test)]
mod tests {
    use super::super::blk::*;
    use super::super::queue::tests::put_desc;
    use super::super::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
    use super::super::*;
    use super::*;
    use crate::block::MemBackend;

    const RAM: usize = 0x40000;
    const HDR: u64 = 0x20000;
    const DATA: u64 = 0x21000;
    const STATUS: u64 = 0x23000;

    struct Drv {
        dev: VirtioMmio<VirtioBlk>,
        mem: Vec<u8>,
        desc: u64,
        avail: u64,
        used: u64,
        size: u16,
        last_used: u16,
    }

    impl Drv {
        fn r(&mut self, off: u64) -> u32 {
            let mut b = [0u8; 4];
            self.dev.mmio_read(off, &mut b);
            u32::from_le_bytes(b)
        }
        fn w(&mut self, off: u64, v: u32) {
            self.dev.mmio_write(off, &v.to_le_bytes(), &mut self.mem);
        }

        /// Linux's virtio_mmio probe + virtio-blk init, for either version.
        fn probe(disk: Vec<u8>, legacy: bool, read_only: bool) -> Drv {
            let blk = VirtioBlk::new(Box::new(MemBackend::new(disk)), read_only);
            let mut d = Drv {
                dev: VirtioMmio::new(blk, legacy),
                mem: vec![0u8; RAM],
                desc: 0x1000,
                avail: 0,
                used: 0,
                size: 16,
                last_used: 0,
            };
            assert_eq!(d.r(REG_MAGIC), MAGIC_VALUE);
            assert_eq!(d.r(REG_VERSION), if legacy { 1 } else { 2 });
            assert_eq!(d.r(REG_DEVICE_ID), 2);
            d.r(REG_VENDOR_ID);
            if legacy {
                d.w(REG_GUEST_PAGE_SIZE, 4096);
            }
            d.w(REG_STATUS, 0);
            d.w(REG_STATUS, 1);
            d.w(REG_STATUS, 3);
            d.w(REG_DEVICE_FEATURES_SEL, 1);
            let hi = d.r(REG_DEVICE_FEATURES);
            d.w(REG_DEVICE_FEATURES_SEL, 0);
            let lo = d.r(REG_DEVICE_FEATURES);
            let features = (u64::from(hi) << 32) | u64::from(lo);
            assert_eq!(features & VIRTIO_F_VERSION_1 != 0, !legacy);
            d.w(REG_DRIVER_FEATURES_SEL, 1);
            d.w(REG_DRIVER_FEATURES, hi);
            d.w(REG_DRIVER_FEATURES_SEL, 0);
            d.w(REG_DRIVER_FEATURES, lo);
            if !legacy {
                d.w(REG_STATUS, 0xB);
                assert_eq!(d.r(REG_STATUS) & STATUS_FEATURES_OK, STATUS_FEATURES_OK);
            }
            // queue 0
            d.w(REG_QUEUE_SEL, 0);
            assert_eq!(
                d.r(if legacy {
                    REG_QUEUE_PFN
                } else {
                    REG_QUEUE_READY
                }),
                0
            );
            assert_eq!(d.r(REG_QUEUE_NUM_MAX), 256);
            d.w(REG_QUEUE_NUM, u32::from(d.size));
            let n = u64::from(d.size);
            d.avail = d.desc + 16 * n;
            if legacy {
                d.used = (d.avail + 6 + 2 * n).div_ceil(4096) * 4096;
                d.w(REG_QUEUE_ALIGN, 4096);
                d.w(REG_QUEUE_PFN, (d.desc / 4096) as u32);
            } else {
                d.used = 0x8000;
                d.w(REG_QUEUE_DESC_LOW, d.desc as u32);
                d.w(REG_QUEUE_DESC_HIGH, 0);
                d.w(REG_QUEUE_DRIVER_LOW, d.avail as u32);
                d.w(REG_QUEUE_DRIVER_HIGH, 0);
                d.w(REG_QUEUE_DEVICE_LOW, d.used as u32);
                d.w(REG_QUEUE_DEVICE_HIGH, 0);
                d.w(REG_QUEUE_READY, 1);
            }
            d.w(REG_STATUS, if legacy { 7 } else { 0xF });
            d
        }

        fn cfg32(&mut self, off: u64) -> u32 {
            self.r(REG_CONFIG + off)
        }

        /// Submit a chain whose head is descriptor 0 and wait for it.
        fn submit(&mut self, head: u16) -> Option<(u32, u32)> {
            let mut b = [0u8; 2];
            GuestMemory::read(&self.mem, self.avail + 2, &mut b).unwrap();
            let idx = u16::from_le_bytes(b);
            let slot = u64::from(idx % self.size);
            GuestMemory::write(
                &mut self.mem,
                self.avail + 4 + 2 * slot,
                &head.to_le_bytes(),
            )
            .unwrap();
            GuestMemory::write(
                &mut self.mem,
                self.avail + 2,
                &idx.wrapping_add(1).to_le_bytes(),
            )
            .unwrap();
            self.w(REG_QUEUE_NOTIFY, 0);
            GuestMemory::read(&self.mem, self.used + 2, &mut b).unwrap();
            if u16::from_le_bytes(b) == self.last_used {
                return None;
            }
            let slot = u64::from(self.last_used % self.size);
            self.last_used = self.last_used.wrapping_add(1);
            let mut e = [0u8; 8];
            GuestMemory::read(&self.mem, self.used + 4 + 8 * slot, &mut e).unwrap();
            let st = self.r(REG_INTERRUPT_STATUS);
            self.w(REG_INTERRUPT_ACK, st);
            Some((
                u32::from_le_bytes(e[0..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
            ))
        }

        fn request(&mut self, ty: u32, sector: u64, data_len: u32, write_data: bool) -> (u8, u32) {
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&ty.to_le_bytes());
            h[8..16].copy_from_slice(&sector.to_le_bytes());
            GuestMemory::write(&mut self.mem, HDR, &h).unwrap();
            GuestMemory::write(&mut self.mem, STATUS, &[0xFF]).unwrap();
            let dflag = if write_data { 0 } else { VIRTQ_DESC_F_WRITE };
            if data_len > 0 {
                put_desc(&mut self.mem, self.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
                put_desc(
                    &mut self.mem,
                    self.desc,
                    1,
                    DATA,
                    data_len,
                    dflag | VIRTQ_DESC_F_NEXT,
                    2,
                );
            } else {
                put_desc(&mut self.mem, self.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 2);
            }
            put_desc(
                &mut self.mem,
                self.desc,
                2,
                STATUS,
                1,
                VIRTQ_DESC_F_WRITE,
                0,
            );
            let (id, len) = self.submit(0).expect("request completed");
            assert_eq!(id, 0);
            let mut s = [0u8];
            GuestMemory::read(&self.mem, STATUS, &mut s).unwrap();
            (s[0], len)
        }
    }

    fn disk() -> Vec<u8> {
        (0..64 * 512).map(|i| (i / 512) as u8 ^ (i as u8)).collect()
    }

    fn read_write_cycle(legacy: bool) {
        let img = disk();
        let mut d = Drv::probe(img.clone(), legacy, false);
        assert_eq!(d.cfg32(0), 64, "capacity");
        assert_eq!(d.cfg32(4), 0);
        assert_eq!(d.cfg32(0x14), 512, "blk_size");
        assert_eq!(d.cfg32(0x0C), SEG_MAX);
        // read sectors 3..5
        let (st, len) = d.request(VIRTIO_BLK_T_IN, 3, 1024, false);
        assert_eq!((st, len), (VIRTIO_BLK_S_OK, 1025));
        assert_eq!(
            &d.mem[DATA as usize..DATA as usize + 1024],
            &img[3 * 512..5 * 512]
        );
        assert!(!d.dev.irq_level(), "acked");
        // write sector 10
        d.mem[DATA as usize..DATA as usize + 512].fill(0x5A);
        let (st, _) = d.request(VIRTIO_BLK_T_OUT, 10, 512, true);
        assert_eq!(st, VIRTIO_BLK_S_OK);
        d.mem[DATA as usize..DATA as usize + 512].fill(0);
        let (st, _) = d.request(VIRTIO_BLK_T_IN, 10, 512, false);
        assert_eq!(st, VIRTIO_BLK_S_OK);
        assert!(d.mem[DATA as usize..DATA as usize + 512]
            .iter()
            .all(|&b| b == 0x5A));
        // flush, get id
        assert_eq!(
            d.request(VIRTIO_BLK_T_FLUSH, 0, 0, false).0,
            VIRTIO_BLK_S_OK
        );
        let (st, len) = d.request(VIRTIO_BLK_T_GET_ID, 0, 20, false);
        assert_eq!((st, len), (VIRTIO_BLK_S_OK, 21));
        assert_eq!(&d.mem[DATA as usize..DATA as usize + 8], b"tci64-vd");
        // past the end, unsupported, unaligned
        assert_eq!(
            d.request(VIRTIO_BLK_T_IN, 63, 1024, false).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            d.request(VIRTIO_BLK_T_IN, u64::MAX, 512, false).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            d.request(VIRTIO_BLK_T_IN, 0, 100, false).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(d.request(99, 0, 0, false).0, VIRTIO_BLK_S_UNSUPP);
        // buffer outside RAM
        put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
        put_desc(
            &mut d.mem,
            d.desc,
            1,
            0x1_0000_0000,
            512,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            2,
        );
        GuestMemory::write(&mut d.mem, HDR, &[0u8; 16]).unwrap();
        d.submit(0).unwrap();
        assert_eq!(d.mem[STATUS as usize], VIRTIO_BLK_S_IOERR);
        let c = d.dev.device().counters();
        assert_eq!(c.errors, 5);
        assert_eq!(c.bytes_written, 512);
        assert_eq!(d.dev.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn modern_read_write() {
        read_write_cycle(false);
    }

    #[test]
    fn legacy_read_write() {
        read_write_cycle(true);
    }

    #[test]
    fn read_only_disk_is_never_written() {
        let img = disk();
        let mut d = Drv::probe(img.clone(), false, true);
        assert_eq!(
            d.r(REG_DEVICE_FEATURES) as u64 & VIRTIO_BLK_F_RO,
            VIRTIO_BLK_F_RO
        );
        let (st, _) = d.request(VIRTIO_BLK_T_OUT, 0, 512, true);
        assert_eq!(st, VIRTIO_BLK_S_IOERR);
        let mut back = vec![0u8; img.len()];
        d.dev
            .device_mut()
            .backend_mut()
            .read_at(0, &mut back)
            .unwrap();
        assert_eq!(back, img);
    }

    #[test]
    fn write_zeroes() {
        let mut d = Drv::probe(disk(), false, false);
        let mut seg = [0u8; 16];
        seg[0..8].copy_from_slice(&2u64.to_le_bytes());
        seg[8..12].copy_from_slice(&3u32.to_le_bytes());
        GuestMemory::write(&mut d.mem, DATA, &seg).unwrap();
        assert_eq!(
            d.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, true).0,
            VIRTIO_BLK_S_OK
        );
        let mut back = vec![0xFFu8; 6 * 512];
        d.dev
            .device_mut()
            .backend_mut()
            .read_at(512, &mut back)
            .unwrap();
        assert!(back[512..4 * 512].iter().all(|&b| b == 0));
        assert!(back[..512].iter().any(|&b| b != 0));
    }

    #[test]
    fn a_request_with_a_bad_later_buffer_writes_nothing() {
        // Header, two good 512-byte buffers, then one past RAM (and one straddling its end):
        // the request fails with IOERR and no sector of it reaches the disk.
        let img = disk();
        for bad in [0x1_0000_0000, RAM as u64 - 256] {
            let mut d = Drv::probe(img.clone(), false, false);
            let mut h = [0u8; 16];
            h[0..4].copy_from_slice(&VIRTIO_BLK_T_OUT.to_le_bytes());
            h[8..16].copy_from_slice(&4u64.to_le_bytes());
            GuestMemory::write(&mut d.mem, HDR, &h).unwrap();
            d.mem[DATA as usize..DATA as usize + 1024].fill(0xA5);
            put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
            put_desc(&mut d.mem, d.desc, 1, DATA, 512, VIRTQ_DESC_F_NEXT, 2);
            put_desc(&mut d.mem, d.desc, 2, DATA + 512, 512, VIRTQ_DESC_F_NEXT, 3);
            put_desc(&mut d.mem, d.desc, 3, bad, 512, VIRTQ_DESC_F_NEXT, 4);
            put_desc(&mut d.mem, d.desc, 4, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
            assert_eq!(d.submit(0), Some((0, 1)));
            assert_eq!(
                d.mem[STATUS as usize], VIRTIO_BLK_S_IOERR,
                "bad buffer {bad:#x}"
            );
            let mut back = vec![0u8; img.len()];
            let dev = d.dev.device_mut();
            dev.backend_mut().read_at(0, &mut back).unwrap();
            assert_eq!(back, img, "bad buffer {bad:#x}: the disk changed");
            assert_eq!(dev.counters().bytes_written, 0);
        }
        // WRITE_ZEROES with a second segment (more than max_write_zeroes_seg) fails whole.
        let mut d = Drv::probe(img.clone(), false, false);
        let mut segs = [0u8; 32];
        segs[8..12].copy_from_slice(&1u32.to_le_bytes());
        segs[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        segs[24..28].copy_from_slice(&1u32.to_le_bytes());
        GuestMemory::write(&mut d.mem, DATA, &segs).unwrap();
        assert_eq!(
            d.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, 32, true).0,
            VIRTIO_BLK_S_IOERR
        );
        let mut back = vec![0u8; img.len()];
        d.dev
            .device_mut()
            .backend_mut()
            .read_at(0, &mut back)
            .unwrap();
        assert_eq!(back, img, "WRITE_ZEROES: the disk changed");
    }

    #[test]
    fn indirect_request() {
        let img = disk();
        let mut d = Drv::probe(img.clone(), false, false);
        let table = 0x30000u64;
        GuestMemory::write(&mut d.mem, HDR, &[0u8; 16]).unwrap();
        put_desc(&mut d.mem, table, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
        put_desc(
            &mut d.mem,
            table,
            1,
            DATA,
            512,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            2,
        );
        put_desc(&mut d.mem, table, 2, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
        put_desc(&mut d.mem, d.desc, 5, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
        assert_eq!(d.submit(5), Some((5, 513)));
        assert_eq!(d.mem[STATUS as usize], VIRTIO_BLK_S_OK);
        assert_eq!(&d.mem[DATA as usize..DATA as usize + 512], &img[..512]);
    }

    #[test]
    fn malformed_chain_needs_reset() {
        let mut d = Drv::probe(disk(), true, false);
        // loop 0 -> 1 -> 0
        put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
        put_desc(&mut d.mem, d.desc, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
        assert_eq!(d.submit(0), None);
        assert_ne!(d.dev.status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert!(d.dev.irq_level());
        assert_eq!(d.r(REG_INTERRUPT_STATUS), INT_CONFIG);
        // reset and re-probe works
        d.w(REG_STATUS, 0);
        assert_eq!(d.dev.status(), 0);
        assert!(!d.dev.irq_level());
    }

    #[test]
    fn no_status_byte_needs_reset() {
        let mut d = Drv::probe(disk(), false, false);
        put_desc(&mut d.mem, d.desc, 0, HDR, 16, 0, 0);
        assert_eq!(d.submit(0), None);
        assert_ne!(d.dev.status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert_eq!(d.dev.device().counters().malformed, 1);
    }

    #[test]
    fn modern_requires_version_1() {
        let blk = VirtioBlk::new(Box::new(MemBackend::zeroed(4096)), false);
        let mut d = Drv {
            dev: VirtioMmio::new(blk, false),
            mem: vec![0; 16],
            desc: 0,
            avail: 0,
            used: 0,
            size: 0,
            last_used: 0,
        };
        d.w(REG_STATUS, 3);
        d.w(REG_DRIVER_FEATURES, 0);
        d.w(REG_STATUS, 0xB);
        assert_eq!(d.r(REG_STATUS) & STATUS_FEATURES_OK, 0);
        // notify with nothing configured, odd sizes, unknown registers: no panic
        d.w(REG_QUEUE_NOTIFY, 0);
        d.w(REG_QUEUE_NOTIFY, 7);
        d.dev.mmio_write(0x51, &[1, 2], &mut d.mem);
        let mut b = [0u8; 3];
        d.dev.mmio_read(0x30, &mut b);
        d.dev.mmio_read(0x1000, &mut b);
        d.w(REG_QUEUE_SEL, 9);
        assert_eq!(d.r(REG_QUEUE_NUM_MAX), 0);
        d.w(REG_QUEUE_READY, 1);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_requests_never_panic(
                table in proptest::collection::vec(any::<u8>(), 16 * 16),
                hdr in proptest::collection::vec(any::<u8>(), 16),
                heads in proptest::collection::vec(0u16..20, 1..4),
                legacy in any::<bool>(),
            ) {
                let mut d = Drv::probe(disk(), legacy, false);
                GuestMemory::write(&mut d.mem, d.desc, &table).unwrap();
                GuestMemory::write(&mut d.mem, HDR, &hdr).unwrap();
                for h in heads {
                    let _ = d.submit(h);
                }
                let _ = d.dev.irq_level();
            }
        }
    }
}
