use super::host_bridge::HostBridge;
use super::*;

/// A device with one BAR of each kind, an INTA pin and a BAR-mapped scratch register.
struct TestDev {
    config: PciConfig,
    regs: [u8; 16],
    irq: bool,
    serviced: u32,
}

impl TestDev {
    fn new() -> Self {
        let mut config = PciConfig::new(0x1234, 0x5678, 0xFF_00_00, 1);
        config.add_bar(0, BarKind::Io, 0x20);
        config.add_bar(
            1,
            BarKind::Mem32 {
                prefetchable: false,
            },
            0x1000,
        );
        config.add_bar(2, BarKind::Mem64 { prefetchable: true }, 0x4000);
        config.set_interrupt_pin(1);
        config.add_capability(CAP_ID_VENDOR, &[4, 0xAA]);
        config.add_capability(CAP_ID_VENDOR, &[4, 0xBB]);
        TestDev {
            config,
            regs: [0; 16],
            irq: false,
            serviced: 0,
        }
    }
}

impl PciDevice for TestDev {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.regs[(offset as usize + i) % 16];
        }
    }
    fn bar_write(&mut self, _bar: usize, offset: u64, data: &[u8]) -> Access {
        for (i, b) in data.iter().enumerate() {
            self.regs[(offset as usize + i) % 16] = *b;
        }
        if offset == 8 {
            Access::NeedsService
        } else {
            Access::Done
        }
    }
    fn service(&mut self, _mem: &mut dyn GuestMemory) {
        self.serviced += 1;
    }
    fn intx_level(&self) -> bool {
        self.irq
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

fn addr(dev: u32, reg: u32) -> u32 {
    0x8000_0000 | dev << 11 | reg
}

fn bus() -> PciBus {
    let mut b = PciBus::new();
    assert!(b.add_device(0, Box::new(HostBridge::new()), None).is_ok());
    assert!(b.add_device(3, Box::new(TestDev::new()), Some(11)).is_ok());
    b
}

fn cfg_read(b: &mut PciBus, dev: u32, reg: u32, size: u8) -> u32 {
    b.pio_write(CONFIG_ADDRESS, 4, addr(dev, reg & !3));
    b.pio_read(CONFIG_DATA + (reg & 3) as u16, size)
}

fn cfg_write(b: &mut PciBus, dev: u32, reg: u32, size: u8, v: u32) {
    b.pio_write(CONFIG_ADDRESS, 4, addr(dev, reg & !3));
    b.pio_write(CONFIG_DATA + (reg & 3) as u16, size, v);
}

#[test]
fn conf1_address_register() {
    let mut b = bus();
    // Linux's pci_check_type1: a byte write to 0xCFB is not the address register.
    b.pio_write(0xCFB, 1, 1);
    assert_eq!(b.pio_read(CONFIG_ADDRESS, 4), 0);
    b.pio_write(CONFIG_ADDRESS, 4, 0x8000_0000);
    assert_eq!(b.pio_read(CONFIG_ADDRESS, 4), 0x8000_0000);
    // Low two bits are reserved (read 0); other sizes at 0xCF8 are not the register.
    b.pio_write(CONFIG_ADDRESS, 4, 0xFFFF_FFFF);
    assert_eq!(b.pio_read(CONFIG_ADDRESS, 4), 0x80FF_FFFC);
    assert_eq!(b.pio_read(CONFIG_ADDRESS, 2), 0xFFFF);
    assert_eq!(b.pio_read(0xCFA, 1), 0xFF);
}

#[test]
fn host_bridge_identity() {
    let mut b = bus();
    assert_eq!(cfg_read(&mut b, 0, 0, 4), 0x1237_8086);
    assert_eq!(cfg_read(&mut b, 0, 0, 2), 0x8086);
    assert_eq!(cfg_read(&mut b, 0, 2, 2), 0x1237);
    assert_eq!(cfg_read(&mut b, 0, 0xA, 2), 0x0600, "class: host bridge");
    assert_eq!(cfg_read(&mut b, 0, 0xE, 1), 0, "header type 0");
    assert_eq!(cfg_read(&mut b, 0, 0xB, 1), 0x06);
    // Byte reads of every byte agree with the dword.
    let d = cfg_read(&mut b, 0, 8, 4);
    for i in 0..4 {
        assert_eq!(cfg_read(&mut b, 0, 8 + i, 1), (d >> (8 * i)) & 0xFF);
    }
}

#[test]
fn absent_functions_and_disabled_reads() {
    let mut b = bus();
    assert_eq!(cfg_read(&mut b, 1, 0, 4), u32::MAX, "empty slot");
    assert_eq!(cfg_read(&mut b, 31, 0, 2), 0xFFFF);
    // function 1 of a present device, bus 1
    b.pio_write(CONFIG_ADDRESS, 4, addr(0, 0) | 1 << 8);
    assert_eq!(b.pio_read(CONFIG_DATA, 4), u32::MAX);
    b.pio_write(CONFIG_ADDRESS, 4, addr(0, 0) | 1 << 16);
    assert_eq!(b.pio_read(CONFIG_DATA, 4), u32::MAX);
    // enable bit clear
    b.pio_write(CONFIG_ADDRESS, 4, 0);
    assert_eq!(b.pio_read(CONFIG_DATA, 4), u32::MAX);
    b.pio_write(CONFIG_DATA, 4, 0);
    // a word at 0xCFF would cross the dword: all ones, write dropped
    b.pio_write(CONFIG_ADDRESS, 4, addr(3, 0x3C));
    assert_eq!(b.pio_read(0xCFF, 2), 0xFFFF);
    b.pio_write(0xCFF, 2, 0);
    assert_eq!(cfg_read(&mut b, 3, 0x3C, 1), 0);
}

#[test]
fn read_only_identification() {
    let mut b = bus();
    cfg_write(&mut b, 3, 0, 4, 0);
    cfg_write(&mut b, 3, 8, 4, 0);
    cfg_write(&mut b, 3, 0x3D, 1, 4);
    assert_eq!(cfg_read(&mut b, 3, 0, 4), 0x5678_1234);
    assert_eq!(cfg_read(&mut b, 3, 8, 4), 0xFF00_0001);
    assert_eq!(cfg_read(&mut b, 3, 0x3D, 1), 1, "INTA");
    // interrupt line, cache line size, latency timer are read/write
    cfg_write(&mut b, 3, 0x3C, 1, 11);
    cfg_write(&mut b, 3, 0xC, 2, 0x4010);
    assert_eq!(cfg_read(&mut b, 3, 0x3C, 2), 0x010B);
    assert_eq!(cfg_read(&mut b, 3, 0xC, 2), 0x4010);
    // command: only implemented bits stick
    cfg_write(&mut b, 3, 4, 2, 0xFFFF);
    assert_eq!(cfg_read(&mut b, 3, 4, 2), 0x0547);
    // expansion ROM absent
    cfg_write(&mut b, 3, 0x30, 4, 0xFFFF_FFFF);
    assert_eq!(cfg_read(&mut b, 3, 0x30, 4), 0);
}

#[test]
fn capabilities_list() {
    let mut b = bus();
    assert_ne!(cfg_read(&mut b, 3, 6, 2) & u32::from(STATUS_CAP_LIST), 0);
    let first = cfg_read(&mut b, 3, 0x34, 1);
    assert_eq!(first, 0x40);
    assert_eq!(cfg_read(&mut b, 3, first, 4), 0xAA04_4409);
    let second = cfg_read(&mut b, 3, first + 1, 1);
    assert_eq!(cfg_read(&mut b, 3, second, 4), 0xBB04_0009);
    // read-only
    cfg_write(&mut b, 3, second, 4, 0);
    assert_eq!(cfg_read(&mut b, 3, second, 4), 0xBB04_0009);
    assert_eq!(cfg_read(&mut b, 0, 6, 2) & u32::from(STATUS_CAP_LIST), 0);
}

#[test]
fn bar_sizing() {
    let mut b = bus();
    // As Linux's __pci_read_base: save, write ones, read the mask, restore.
    cfg_write(&mut b, 3, 0x10, 4, 0xFFFF_FFFF);
    assert_eq!(cfg_read(&mut b, 3, 0x10, 4), 0x0000_FFE1, "32-byte I/O BAR");
    cfg_write(&mut b, 3, 0x14, 4, 0xFFFF_FFFF);
    assert_eq!(cfg_read(&mut b, 3, 0x14, 4), 0xFFFF_F000, "4 KiB mem32");
    cfg_write(&mut b, 3, 0x18, 4, 0xFFFF_FFFF);
    cfg_write(&mut b, 3, 0x1C, 4, 0xFFFF_FFFF);
    assert_eq!(
        cfg_read(&mut b, 3, 0x18, 4),
        0xFFFF_C00C,
        "16 KiB mem64 pref"
    );
    assert_eq!(cfg_read(&mut b, 3, 0x1C, 4), 0xFFFF_FFFF);
    // unimplemented BARs read 0 and ignore writes
    for r in [0x20, 0x24] {
        cfg_write(&mut b, 3, r, 4, 0xFFFF_FFFF);
        assert_eq!(cfg_read(&mut b, 3, r, 4), 0);
    }
    // program addresses: unaligned bits are dropped
    cfg_write(&mut b, 3, 0x14, 4, 0xFE00_0123);
    assert_eq!(cfg_read(&mut b, 3, 0x14, 4), 0xFE00_0000);
    cfg_write(&mut b, 3, 0x18, 4, 0xFE00_4000);
    cfg_write(&mut b, 3, 0x1C, 4, 0x1);
    assert_eq!(cfg_read(&mut b, 3, 0x18, 4), 0xFE00_400C);
    assert_eq!(cfg_read(&mut b, 3, 0x1C, 4), 1);
    let dev = b.device_mut(3).unwrap();
    assert_eq!(dev.config().bar(2).unwrap().address, 0x1_FE00_4000);
    // byte and word writes to a BAR merge into it
    cfg_write(&mut b, 3, 0x16, 2, 0xFD10);
    assert_eq!(cfg_read(&mut b, 3, 0x14, 4), 0xFD10_0000);
    cfg_write(&mut b, 3, 0x15, 1, 0xFF);
    assert_eq!(cfg_read(&mut b, 3, 0x14, 4), 0xFD10_F000);
}

#[test]
fn assignment_and_dispatch() {
    let mut b = bus();
    b.assign_resources(0xFE00_0000..0xFEC0_0000, 0xC000..0x1_0000)
        .unwrap();
    // largest first: mem64 16 KiB at the window start, then the 4 KiB mem32
    assert_eq!(cfg_read(&mut b, 3, 0x18, 4), 0xFE00_000C);
    assert_eq!(cfg_read(&mut b, 3, 0x1C, 4), 0);
    assert_eq!(cfg_read(&mut b, 3, 0x14, 4), 0xFE00_4000);
    assert_eq!(cfg_read(&mut b, 3, 0x10, 4), 0xC001);
    assert_eq!(
        cfg_read(&mut b, 3, 4, 2) & 3,
        3,
        "I/O and memory decoding on"
    );
    assert_eq!(
        cfg_read(&mut b, 3, 0x3C, 1),
        11,
        "INTERRUPT_LINE = wired IRQ"
    );
    assert_eq!(b.irq_lines(), 1 << 11);

    assert!(b.mmio_write(0xFE00_4004, &[1, 2, 3, 4]).is_some());
    let mut d = [0u8; 4];
    assert!(b.mmio_read(0xFE00_4004, &mut d));
    assert_eq!(d, [1, 2, 3, 4]);
    assert_eq!(b.io_read(0xC004, 2), Some(0x0201));
    assert_eq!(b.io_write(0xC008, 1, 9), Some(Access::NeedsService));
    assert!(b.claims_mmio(0xFE00_3FFF));
    assert!(!b.claims_mmio(0xFE00_5000));
    // An access straddling the BAR end is not claimed.
    assert!(!b.mmio_read(0xFE00_4FFE, &mut d));
    assert_eq!(b.io_read(0xC01F, 2), None);

    // memory decoding off: the BARs vanish; I/O stays
    cfg_write(&mut b, 3, 4, 2, u32::from(COMMAND_IO));
    assert!(!b.mmio_read(0xFE00_4004, &mut d));
    assert_eq!(b.io_read(0xC004, 1), Some(1));
    cfg_write(&mut b, 3, 4, 2, u32::from(COMMAND_MEMORY));
    assert!(b.mmio_read(0xFE00_4004, &mut d));
    // the guest moves a BAR: the old address stops decoding
    cfg_write(&mut b, 3, 0x14, 4, 0xE000_0000);
    assert!(!b.mmio_read(0xFE00_4004, &mut d));
    assert!(b.mmio_read(0xE000_0004, &mut d));
    // and over address 0 / RAM: defined (address 0 = unprogrammed, not decoded)
    cfg_write(&mut b, 3, 0x14, 4, 0);
    assert!(!b.mmio_read(0x4, &mut d));
    // A 64-bit BAR ending at 2^64 does not wrap to 0: it is not decoded at all.
    cfg_write(&mut b, 3, 0x18, 4, 0xFFFF_C000);
    cfg_write(&mut b, 3, 0x1C, 4, 0xFFFF_FFFF);
    assert!(!b.mmio_read(0, &mut d));
    assert!(!b.mmio_read(u64::MAX - 3, &mut d));
    cfg_write(&mut b, 3, 0x1C, 4, 0x7FFF_FFFF);
    assert!(b.mmio_read(0x7FFF_FFFF_FFFF_C000, &mut d));
}

#[test]
fn assignment_that_does_not_fit() {
    let mut b = bus();
    let e = b
        .assign_resources(0xFE00_0000..0xFE00_2000, 0xC000..0x1_0000)
        .unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
}

#[test]
fn intx_status_and_disable() {
    let mut b = bus();
    b.assign_resources(0xFE00_0000..0xFEC0_0000, 0xC000..0x1_0000)
        .unwrap();
    assert_eq!(b.irq_levels(), 0);
    assert_eq!(cfg_read(&mut b, 3, 6, 2) & u32::from(STATUS_INTERRUPT), 0);
    b.device_mut(3)
        .unwrap()
        .as_any_mut()
        .downcast_mut::<TestDev>()
        .unwrap()
        .irq = true;
    assert_eq!(b.irq_levels(), 1 << 11);
    assert_ne!(cfg_read(&mut b, 3, 6, 2) & u32::from(STATUS_INTERRUPT), 0);
    assert_ne!(
        cfg_read(&mut b, 3, 4, 4) & (u32::from(STATUS_INTERRUPT) << 16),
        0
    );
    assert_eq!(cfg_read(&mut b, 3, 6, 1) & 8, 8);
    assert_eq!(cfg_read(&mut b, 3, 7, 1) & 8, 0);
    // INTx disable masks the line but not the status bit
    let cmd = cfg_read(&mut b, 3, 4, 2) | u32::from(COMMAND_INTX_DISABLE);
    cfg_write(&mut b, 3, 4, 2, cmd);
    assert_eq!(b.irq_levels(), 0);
    assert_ne!(cfg_read(&mut b, 3, 6, 2) & u32::from(STATUS_INTERRUPT), 0);
}

#[test]
fn service_needs_bus_master() {
    let mut b = bus();
    b.assign_resources(0xFE00_0000..0xFEC0_0000, 0xC000..0x1_0000)
        .unwrap();
    let mut mem = vec![0u8; 16];
    b.service(&mut mem);
    let serviced = |b: &mut PciBus| {
        b.device_mut(3)
            .unwrap()
            .as_any_mut()
            .downcast_mut::<TestDev>()
            .unwrap()
            .serviced
    };
    assert_eq!(serviced(&mut b), 0);
    let cmd = cfg_read(&mut b, 3, 4, 2) | u32::from(COMMAND_MASTER);
    cfg_write(&mut b, 3, 4, 2, cmd);
    b.service(&mut mem);
    assert_eq!(serviced(&mut b), 1);
}

#[test]
fn slots() {
    let mut b = bus();
    assert!(b.add_device(3, Box::new(TestDev::new()), None).is_err());
    assert!(b.add_device(32, Box::new(TestDev::new()), None).is_err());
    assert_eq!(b.devices_mut().count(), 2);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of port accesses leaves the bus consistent and never panics.
        #[test]
        fn random_config_cycles(ops in proptest::collection::vec(
            (0u16..10, prop_oneof![Just(1u8), Just(2), Just(4), Just(3), Just(0), Just(8)], any::<u32>(), any::<bool>()), 0..200)) {
            let mut b = bus();
            b.assign_resources(0xFE00_0000..0xFEC0_0000, 0xC000..0x1_0000).unwrap();
            for (p, size, v, write) in ops {
                let port = 0xCF8 + p;
                if write {
                    // Bias towards device 3 so that BARs and the command register get hit.
                    let v = if port == 0xCF8 && v & 1 == 0 { 0x8000_1800 | (v & 0xFC) } else { v };
                    b.pio_write(port, size, v);
                } else {
                    let _ = b.pio_read(port, size);
                }
                let mut d = [0u8; 8];
                let _ = b.mmio_read(u64::from(v) << 4, &mut d);
                let _ = b.mmio_write(u64::from(v), &d[..4]);
                let _ = b.io_read(v as u16, 4);
            }
            let _ = b.irq_levels();
        }
    }
}
