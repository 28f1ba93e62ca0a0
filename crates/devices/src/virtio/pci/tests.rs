//! The transport driven as Linux 6.1 drives it: a config-space scan through mechanism #1,
//! capability walk, BAR mapping (ours, by `assign_resources`), virtio_pci_modern probe,
//! virtio-blk requests through notify + `service`, INTx and read-to-clear ISR.

use super::super::blk::*;
use super::super::queue::tests::put_desc;
use super::super::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use super::super::*;
use super::*;
use crate::block::MemBackend;
use crate::pci::host_bridge::HostBridge;
use crate::pci::{PciBus, COMMAND_INTX_DISABLE, COMMAND_MASTER, COMMAND_MEMORY};
use crate::PioDevice;

const RAM: usize = 0x40000;
const HDR: u64 = 0x20000;
const DATA: u64 = 0x21000;
const STATUS: u64 = 0x23000;
const SLOT: u32 = 3;
const IRQ: u8 = 11;

/// Where the capabilities say each structure is.
#[derive(Debug, Default)]
struct Caps {
    common: u64,
    notify: u64,
    notify_mult: u32,
    isr: u64,
    device: u64,
    /// Config offset of the PCI_CFG window capability.
    pci_cfg: u32,
}

struct Drv {
    bus: PciBus,
    mem: Vec<u8>,
    caps: Caps,
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    last_used: u16,
    notify_off: u16,
}

fn cfg(bus: &mut PciBus, reg: u32, size: u8) -> u32 {
    bus.pio_write(0xCF8, 4, 0x8000_0000 | SLOT << 11 | (reg & 0xFC));
    bus.pio_read(0xCFC + (reg & 3) as u16, size)
}

fn cfg_w(bus: &mut PciBus, reg: u32, size: u8, v: u32) {
    bus.pio_write(0xCF8, 4, 0x8000_0000 | SLOT << 11 | (reg & 0xFC));
    bus.pio_write(0xCFC + (reg & 3) as u16, size, v);
}

impl Drv {
    fn r(&mut self, addr: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        assert!(self.bus.mmio_read(addr, &mut b[..size]), "{addr:#x}");
        u64::from_le_bytes(b)
    }
    fn w(&mut self, addr: u64, size: usize, v: u64) {
        let a = self.bus.mmio_write(addr, &v.to_le_bytes()[..size]);
        assert!(a.is_some(), "{addr:#x}");
        if a == Some(Access::NeedsService) {
            self.bus.service(&mut self.mem);
        }
    }
    fn c(&self, reg: u64) -> u64 {
        self.caps.common + reg
    }
    fn status(&mut self) -> u8 {
        let a = self.c(common::DEVICE_STATUS);
        self.r(a, 1) as u8
    }
    fn set_status(&mut self, s: u8) {
        let a = self.c(common::DEVICE_STATUS);
        self.w(a, 1, u64::from(s));
    }

    fn new(disk: Vec<u8>, read_only: bool) -> Drv {
        let blk = VirtioBlk::new(Box::new(MemBackend::new(disk)), read_only);
        let mut bus = PciBus::new();
        assert!(bus.add_device(0, Box::new(HostBridge::new()), None).is_ok());
        assert!(bus
            .add_device(SLOT as usize, Box::new(VirtioPci::new(blk)), Some(IRQ))
            .is_ok());
        bus.assign_resources(0xFE00_0000..0xFEC0_0000, 0xC000..0x1_0000)
            .unwrap();
        Drv {
            bus,
            mem: vec![0u8; RAM],
            caps: Caps::default(),
            desc: 0x1000,
            avail: 0x2000,
            used: 0x3000,
            size: 16,
            last_used: 0,
            notify_off: 0,
        }
    }

    /// pci scan + virtio_pci_modern_probe + virtio-blk's init of queue 0.
    fn probe(disk: Vec<u8>, read_only: bool) -> Drv {
        let mut d = Drv::new(disk, read_only);
        let b = &mut d.bus;
        assert_eq!(cfg(b, 0, 2), 0x1AF4);
        assert_eq!(cfg(b, 2, 2), 0x1042);
        assert!(cfg(b, 8, 1) >= 1, "revision 1: modern");
        assert_eq!(cfg(b, 0xA, 2), 0x0100, "storage class");
        assert_eq!(cfg(b, 0x2C, 4), 0x1100_1AF4, "subsystem");
        assert_eq!(cfg(b, 0x3D, 1), 1, "INTA");
        assert_eq!(cfg(b, 0x3C, 1), u32::from(IRQ), "firmware's INTERRUPT_LINE");
        // BAR 4: 64-bit prefetchable, 16 KiB, assigned
        let lo = cfg(b, 0x20, 4);
        let hi = cfg(b, 0x24, 4);
        assert_eq!(lo & 0xF, 0xC);
        let bar = u64::from(hi) << 32 | u64::from(lo & !0xF);
        assert_eq!(bar, 0xFE00_0000);
        // Sizing as Linux does, with decoding off around it.
        let cmd = cfg(b, 4, 2);
        cfg_w(b, 4, 2, cmd & !u32::from(COMMAND_MEMORY));
        cfg_w(b, 0x20, 4, 0xFFFF_FFFF);
        cfg_w(b, 0x24, 4, 0xFFFF_FFFF);
        assert_eq!(cfg(b, 0x20, 4), 0xFFFF_C00C);
        assert_eq!(cfg(b, 0x24, 4), 0xFFFF_FFFF);
        cfg_w(b, 0x20, 4, lo);
        cfg_w(b, 0x24, 4, hi);
        cfg_w(b, 4, 2, cmd);
        // no legacy I/O BAR, nothing else
        for r in (0x10..0x20).step_by(4) {
            assert_eq!(cfg(b, r, 4), 0);
        }
        // virtio_pci_find_capability for each cfg_type
        assert_ne!(cfg(b, 6, 2) & 0x10, 0, "capabilities list");
        let mut pos = cfg(b, 0x34, 1);
        let mut seen = 0;
        while pos != 0 {
            assert_eq!(cfg(b, pos, 1), 0x09, "vendor capability");
            let ty = cfg(b, pos + 3, 1) as u8;
            let off = u64::from(cfg(b, pos + 8, 4));
            let len = u64::from(cfg(b, pos + 12, 4));
            assert!(off + len <= BAR_SIZE);
            if ty != CAP_PCI_CFG {
                assert_eq!(cfg(b, pos + 4, 1), 4, "in BAR 4");
            }
            let addr = bar + off;
            match ty {
                CAP_COMMON_CFG => {
                    assert!(len >= common::SIZE);
                    d.caps.common = addr;
                }
                CAP_NOTIFY_CFG => {
                    assert_eq!(cfg(b, pos + 2, 1), 20, "notify cap length");
                    d.caps.notify = addr;
                    d.caps.notify_mult = cfg(b, pos + 16, 4);
                }
                CAP_ISR_CFG => d.caps.isr = addr,
                CAP_DEVICE_CFG => d.caps.device = addr,
                CAP_PCI_CFG => {
                    assert_eq!(cfg(b, pos + 2, 1), 20);
                    assert_eq!((off, len), (0, 0), "window starts unset");
                    d.caps.pci_cfg = pos;
                }
                t => panic!("cfg_type {t}"),
            }
            seen |= 1 << ty;
            pos = cfg(b, pos + 1, 1);
        }
        assert_eq!(seen, 0b111110);
        // pci_enable_device + pci_set_master
        let cmd = cfg(b, 4, 2) | u32::from(COMMAND_MEMORY | COMMAND_MASTER);
        cfg_w(b, 4, 2, cmd);

        // virtio_dev_probe: reset, ACKNOWLEDGE, DRIVER
        d.set_status(0);
        assert_eq!(d.status(), 0);
        d.set_status(1);
        d.set_status(3);
        let (sel, feat) = (
            d.c(common::DEVICE_FEATURE_SELECT),
            d.c(common::DEVICE_FEATURE),
        );
        d.w(sel, 4, 0);
        let lo = d.r(feat, 4);
        d.w(sel, 4, 1);
        let hi = d.r(feat, 4);
        let features = hi << 32 | lo;
        assert_ne!(features & VIRTIO_F_VERSION_1, 0);
        let (sel, feat) = (
            d.c(common::DRIVER_FEATURE_SELECT),
            d.c(common::DRIVER_FEATURE),
        );
        d.w(sel, 4, 0);
        d.w(feat, 4, lo);
        d.w(sel, 4, 1);
        d.w(feat, 4, hi);
        d.set_status(0xB);
        assert_eq!(d.status() & 8, 8, "FEATURES_OK accepted");
        // device config: capacity, blk_size
        let cap = d.caps.device;
        assert_eq!(d.r(cap, 8), 64);
        assert_eq!(d.r(cap + 0x14, 4), 512);
        let gen = d.c(common::CONFIG_GENERATION);
        assert_eq!(d.r(gen, 1), 0);
        // vp_modern_find_vqs -> setup_vq for queue 0
        let nq = d.c(common::NUM_QUEUES);
        assert_eq!(d.r(nq, 2), 1);
        let qs = d.c(common::QUEUE_SELECT);
        d.w(qs, 2, 0);
        let qsize = d.c(common::QUEUE_SIZE);
        assert_eq!(d.r(qsize, 2), 256);
        let qen = d.c(common::QUEUE_ENABLE);
        assert_eq!(d.r(qen, 2), 0);
        d.w(qsize, 2, u64::from(d.size));
        let (dsc, drv, dev) = (
            d.c(common::QUEUE_DESC),
            d.c(common::QUEUE_DRIVER),
            d.c(common::QUEUE_DEVICE),
        );
        // vp_iowrite64_twopart: low then high
        for (a, v) in [(dsc, d.desc), (drv, d.avail), (dev, d.used)] {
            d.w(a, 4, v & 0xFFFF_FFFF);
            d.w(a + 4, 4, v >> 32);
        }
        let nof = d.c(common::QUEUE_NOTIFY_OFF);
        d.notify_off = d.r(nof, 2) as u16;
        // no MSI-X: the vector registers answer NO_VECTOR
        let qv = d.c(common::QUEUE_MSIX_VECTOR);
        d.w(qv, 2, 0xFFFF);
        assert_eq!(d.r(qv, 2), 0xFFFF);
        let cv = d.c(common::CONFIG_MSIX_VECTOR);
        d.w(cv, 2, 0);
        assert_eq!(d.r(cv, 2), 0xFFFF);
        d.w(qen, 2, 1);
        assert_eq!(d.r(qen, 2), 1);
        d.set_status(0xF);
        assert_eq!(d.status(), 0xF);
        d
    }

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
        // EVENT_IDX is negotiated: ask for an interrupt at the next used entry, as Linux does.
        let used_event = self.avail + 4 + 2 * u64::from(self.size);
        GuestMemory::write(&mut self.mem, used_event, &self.last_used.to_le_bytes()).unwrap();
        // vp_notify: iowrite16(queue index, notify base + off * multiplier)
        let addr = self.caps.notify + u64::from(self.notify_off) * u64::from(self.caps.notify_mult);
        self.w(addr, 2, 0);
        GuestMemory::read(&self.mem, self.used + 2, &mut b).unwrap();
        if u16::from_le_bytes(b) == self.last_used {
            return None;
        }
        assert_eq!(self.bus.irq_levels(), 1 << IRQ, "INTx asserted");
        // vp_interrupt: reading the ISR clears it and lowers the line
        let isr = self.caps.isr;
        assert_eq!(self.r(isr, 1), u64::from(ISR_QUEUE));
        assert_eq!(self.bus.irq_levels(), 0);
        assert_eq!(self.r(isr, 1), 0);
        let slot = u64::from(self.last_used % self.size);
        self.last_used = self.last_used.wrapping_add(1);
        let mut e = [0u8; 8];
        GuestMemory::read(&self.mem, self.used + 4 + 8 * slot, &mut e).unwrap();
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
        (self.mem[STATUS as usize], len)
    }

    fn blk(&mut self) -> &mut VirtioPci<VirtioBlk> {
        self.bus
            .device_mut(SLOT as usize)
            .unwrap()
            .as_any_mut()
            .downcast_mut::<VirtioPci<VirtioBlk>>()
            .unwrap()
    }
}

fn disk() -> Vec<u8> {
    (0..64 * 512).map(|i| (i / 512) as u8 ^ (i as u8)).collect()
}

#[test]
fn linux_probe_and_io() {
    let img = disk();
    let mut d = Drv::probe(img.clone(), false);
    let (st, len) = d.request(VIRTIO_BLK_T_IN, 3, 1024, false);
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 1025));
    assert_eq!(
        &d.mem[DATA as usize..DATA as usize + 1024],
        &img[3 * 512..5 * 512]
    );
    d.mem[DATA as usize..DATA as usize + 512].fill(0x5A);
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, 10, 512, true).0,
        VIRTIO_BLK_S_OK
    );
    d.mem[DATA as usize..DATA as usize + 512].fill(0);
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, 10, 512, false).0,
        VIRTIO_BLK_S_OK
    );
    assert!(d.mem[DATA as usize..DATA as usize + 512]
        .iter()
        .all(|&b| b == 0x5A));
    assert_eq!(
        d.request(VIRTIO_BLK_T_IN, 63, 1024, false).0,
        VIRTIO_BLK_S_IOERR
    );
    let c = d.blk().counters();
    assert_eq!((c.notifies, c.interrupts), (4, 4));
    // reset: status reads 0 (vp_reset polls it), the queue is disabled, ISR clear
    d.set_status(0);
    assert_eq!(d.status(), 0);
    let qen = d.c(common::QUEUE_ENABLE);
    assert_eq!(d.r(qen, 2), 0);
    assert_eq!(d.blk().isr(), 0);
}

#[test]
fn intx_disable_and_status_bit() {
    let mut d = Drv::probe(disk(), false);
    GuestMemory::write(&mut d.mem, HDR, &[0u8; 16]).unwrap();
    put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    put_desc(&mut d.mem, d.desc, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    // submit by hand, then look at the status bit before reading the ISR
    GuestMemory::write(&mut d.mem, d.avail + 4, &0u16.to_le_bytes()).unwrap();
    GuestMemory::write(&mut d.mem, d.avail + 2, &1u16.to_le_bytes()).unwrap();
    let n = d.caps.notify;
    d.w(n, 2, 0);
    assert_ne!(cfg(&mut d.bus, 6, 2) & 8, 0, "status: interrupt");
    let cmd = cfg(&mut d.bus, 4, 2);
    cfg_w(&mut d.bus, 4, 2, cmd | u32::from(COMMAND_INTX_DISABLE));
    assert_eq!(d.bus.irq_levels(), 0);
    cfg_w(&mut d.bus, 4, 2, cmd);
    assert_eq!(d.bus.irq_levels(), 1 << IRQ);
    let isr = d.caps.isr;
    d.r(isr, 1);
    assert_eq!(cfg(&mut d.bus, 6, 2) & 8, 0);
}

#[test]
fn no_dma_without_bus_master() {
    let mut d = Drv::probe(disk(), false);
    let cmd = cfg(&mut d.bus, 4, 2);
    cfg_w(&mut d.bus, 4, 2, cmd & !u32::from(COMMAND_MASTER));
    GuestMemory::write(&mut d.mem, HDR, &[0u8; 16]).unwrap();
    put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    put_desc(&mut d.mem, d.desc, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    assert_eq!(d.submit(0), None, "kick waits");
    cfg_w(&mut d.bus, 4, 2, cmd);
    d.bus.service(&mut d.mem);
    assert_eq!(d.bus.irq_levels(), 1 << IRQ, "the pending kick ran");
}

#[test]
fn features_must_include_version_1() {
    let mut d = Drv::new(disk(), false);
    let cmd = cfg(&mut d.bus, 4, 2) | u32::from(COMMAND_MASTER);
    cfg_w(&mut d.bus, 4, 2, cmd);
    d.caps.common = 0xFE00_0000;
    d.set_status(3);
    let feat = d.c(common::DRIVER_FEATURE);
    d.w(feat, 4, 0);
    d.set_status(0xB);
    assert_eq!(d.status() & 8, 0);
    // features offered that the driver may not take beyond
    let sel = d.c(common::DRIVER_FEATURE_SELECT);
    d.w(sel, 4, 1);
    d.w(feat, 4, 0xFFFF_FFFF);
    d.set_status(0xB);
    assert_eq!(d.status() & 8, 0);
}

#[test]
fn read_only_disk_is_never_written() {
    let img = disk();
    let mut d = Drv::probe(img.clone(), true);
    assert_eq!(
        d.request(VIRTIO_BLK_T_OUT, 0, 512, true).0,
        VIRTIO_BLK_S_IOERR
    );
    let mut back = vec![0u8; img.len()];
    d.blk()
        .device_mut()
        .backend_mut()
        .read_at(0, &mut back)
        .unwrap();
    assert_eq!(back, img);
}

#[test]
fn malformed_chain_needs_reset() {
    let mut d = Drv::probe(disk(), false);
    put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    put_desc(&mut d.mem, d.desc, 1, DATA, 16, VIRTQ_DESC_F_NEXT, 0);
    assert_eq!(d.submit(0), None);
    assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET as u8, 0);
    let isr = d.caps.isr;
    assert_eq!(d.r(isr, 1), u64::from(ISR_CONFIG));
    d.set_status(0);
    assert_eq!(d.status(), 0);
}

#[test]
fn odd_accesses_are_harmless() {
    let mut d = Drv::probe(disk(), false);
    let base = d.caps.common;
    // misaligned and odd-width common writes are ignored
    d.w(base + 1, 2, 0xFFFF);
    d.w(base + common::QUEUE_DESC + 4, 8, 0x1234);
    d.w(base + 0x3F0, 4, 1);
    // select a queue that does not exist: size reads 0, writes ignored
    d.w(base + common::QUEUE_SELECT, 2, 9);
    assert_eq!(d.r(base + common::QUEUE_SIZE, 2), 0);
    d.w(base + common::QUEUE_ENABLE, 2, 1);
    d.w(base + common::QUEUE_DESC, 8, 0x1000);
    // enabled queue: address and size are frozen
    d.w(base + common::QUEUE_SELECT, 2, 0);
    d.w(base + common::QUEUE_SIZE, 2, 3);
    assert_eq!(d.r(base + common::QUEUE_SIZE, 2), 16);
    // 8-byte read of a 64-bit field
    assert_eq!(d.r(base + common::QUEUE_DESC, 8), 0x1000);
    // notify past the queues, wide reads of the ISR and notify area
    let n = d.caps.notify;
    d.w(n + 0x40, 2, 0);
    d.w(n + 0xFFC, 4, 0);
    assert_eq!(d.r(n, 4), 0);
    let isr = d.caps.isr;
    assert_eq!(d.r(isr + 4, 4), 0);
    // the transport still works
    assert_eq!(d.request(VIRTIO_BLK_T_IN, 0, 512, false).0, VIRTIO_BLK_S_OK);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Random BAR writes (including notifications with a garbage ring) and random
        /// descriptor tables never panic.
        #[test]
        fn random_register_writes(
            ops in proptest::collection::vec((0u64..BAR_SIZE, prop_oneof![Just(1usize), Just(2), Just(4), Just(8)], any::<u64>()), 0..64),
            table in proptest::collection::vec(any::<u8>(), 16 * 16),
        ) {
            let mut d = Drv::probe(disk(), false);
            GuestMemory::write(&mut d.mem, d.desc, &table).unwrap();
            for (off, size, v) in ops {
                let addr = 0xFE00_0000 + off;
                if d.bus.mmio_write(addr, &v.to_le_bytes()[..size]).is_some() {
                    d.bus.service(&mut d.mem);
                }
                let mut b = [0u8; 8];
                let _ = d.bus.mmio_read(addr, &mut b[..size]);
            }
            let _ = d.bus.irq_levels();
        }

        /// Random config space cycles (BARs, command, the PCI_CFG window) never panic.
        #[test]
        fn random_config_writes(
            ops in proptest::collection::vec((0u32..256, prop_oneof![Just(1u8), Just(2), Just(4)], any::<u32>(), any::<bool>()), 0..128),
        ) {
            let mut d = Drv::probe(disk(), false);
            let c = d.caps.pci_cfg;
            for (reg, size, v, window) in ops {
                // Often aim at the window so that its BAR accesses get exercised.
                let reg = if window { c + 4 + (reg % 16) } else { reg };
                cfg_w(&mut d.bus, reg, size, v);
                let _ = cfg(&mut d.bus, reg, size);
                if d.bus.take_service_request() {
                    d.bus.service(&mut d.mem);
                }
                let mut b = [0u8; 4];
                let _ = d.bus.mmio_read(0xFE00_0000 + u64::from(v % 0x4000), &mut b);
            }
            let _ = d.bus.irq_levels();
        }
    }
}

/// VIRTIO_PCI_CAP_PCI_CFG: BAR accesses through config space, with memory decoding off.
#[test]
fn pci_cfg_window() {
    let mut d = Drv::probe(disk(), false);
    let c = d.caps.pci_cfg;
    let cmd = cfg(&mut d.bus, 4, 2);
    cfg_w(&mut d.bus, 4, 2, cmd & !u32::from(COMMAND_MEMORY));
    let window = |b: &mut PciBus, off: u32, len: u32| {
        cfg_w(b, c + 4, 1, BAR as u32);
        cfg_w(b, c + 8, 4, off);
        cfg_w(b, c + 12, 4, len);
    };
    // read the device status (1 byte) and the capacity (4 bytes) through the window
    window(&mut d.bus, common::DEVICE_STATUS as u32, 1);
    assert_eq!(cfg(&mut d.bus, c + 16, 1), 0xF);
    window(&mut d.bus, DEVICE_OFFSET as u32, 4);
    assert_eq!(cfg(&mut d.bus, c + 16, 4), 64);
    assert!(!d.bus.take_service_request());
    // a notification through the window asks for service; the kick then runs
    GuestMemory::write(&mut d.mem, HDR, &[0u8; 16]).unwrap();
    put_desc(&mut d.mem, d.desc, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
    put_desc(&mut d.mem, d.desc, 1, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
    GuestMemory::write(&mut d.mem, d.avail + 4, &0u16.to_le_bytes()).unwrap();
    GuestMemory::write(&mut d.mem, d.avail + 2, &1u16.to_le_bytes()).unwrap();
    window(&mut d.bus, NOTIFY_OFFSET as u32, 2);
    cfg_w(&mut d.bus, c + 16, 2, 0);
    assert!(d.bus.take_service_request());
    d.bus.service(&mut d.mem);
    assert_eq!(d.mem[STATUS as usize], VIRTIO_BLK_S_OK);
    // reading the ISR through the window clears it
    window(&mut d.bus, ISR_OFFSET as u32, 1);
    assert_eq!(cfg(&mut d.bus, c + 16, 1), u32::from(ISR_QUEUE));
    assert_eq!(d.bus.irq_levels(), 0);
    // invalid windows do nothing: other BAR, bad length, misaligned, past the end
    for (bar, off, len) in [
        (0, 0, 4),
        (4, 0, 3),
        (4, 2, 4),
        (4, 0x3FFE, 4),
        (4, 0x4000, 1),
    ] {
        cfg_w(&mut d.bus, c + 4, 1, bar);
        cfg_w(&mut d.bus, c + 8, 4, off);
        cfg_w(&mut d.bus, c + 12, 4, len);
        cfg_w(&mut d.bus, c + 16, 4, 0);
        let _ = cfg(&mut d.bus, c + 16, 4);
        assert!(!d.bus.take_service_request());
    }
    cfg_w(&mut d.bus, 4, 2, cmd);
    assert_eq!(d.status(), 0xF);
}
