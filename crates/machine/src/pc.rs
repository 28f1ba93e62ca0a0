//! The `-M pc` board's PCI bus, set up as firmware would leave it.
//!
//! | device | function | INTx → 8259 |
//! |---|---|---|
//! | i440FX-like host bridge | 00:00.0 | — |
//! | virtio-blk-pci, disk *i* (i = 0..8) | 00:(3+i).0 | IRQ 11 for even *i*, 10 for odd (disk 0 on 11, as QEMU/SeaBIOS put 00:03.0) |
//!
//! There is no BIOS: BARs go into the PCI window of the memory map
//! ([`crate::memmap::PCI_MMIO_BASE`]..[`crate::memmap::PCI_MMIO_END`]), decoding is enabled and
//! INTERRUPT_LINE holds the wired IRQ, which is what Linux uses without ACPI or a `$PIR` table.
//! The machine sets the ELCR bits of the PCI lines (level-triggered, shareable).

use crate::config::DiskConfig;
use crate::memmap::{PCI_IO_BASE, PCI_IO_END, PCI_MMIO_BASE, PCI_MMIO_END};
use crate::MachineError;
use tci64_devices::pci::host_bridge::HostBridge;
use tci64_devices::pci::PciBus;
use tci64_devices::virtio::blk::VirtioBlk;
use tci64_devices::virtio::pci::VirtioPci;

/// Device number of the first virtio-blk-pci disk.
pub const FIRST_DISK_SLOT: usize = 3;
/// The two 8259 lines PCI INTx are wired to (disk i takes `PCI_IRQS[i % 2]`).
pub const PCI_IRQS: [u8; 2] = [11, 10];

/// The bus with its host bridge and one virtio-blk-pci function per disk, BARs assigned.
pub fn build_pci(disks: Vec<DiskConfig>) -> Result<PciBus, MachineError> {
    let mut bus = PciBus::new();
    let err = |what: String| MachineError::Config(what);
    bus.add_device(0, Box::new(HostBridge::new()), None)
        .map_err(|_| err("PCI: host bridge slot taken".into()))?;
    for (i, d) in disks.into_iter().enumerate() {
        let blk = VirtioBlk::new(d.backend, d.read_only);
        bus.add_device(
            FIRST_DISK_SLOT + i,
            Box::new(VirtioPci::new(blk)),
            Some(PCI_IRQS[i % 2]),
        )
        .map_err(|_| err(format!("PCI: no slot for disk {i}")))?;
    }
    bus.assign_resources(PCI_MMIO_BASE..PCI_MMIO_END, PCI_IO_BASE..PCI_IO_END)
        .map_err(|e| err(format!("PCI: {e}")))?;
    Ok(bus)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tci64_devices::block::MemBackend;
    use tci64_devices::PioDevice;

    fn disk() -> DiskConfig {
        DiskConfig {
            backend: Box::new(MemBackend::zeroed(1 << 20)),
            read_only: false,
        }
    }

    fn cfg(bus: &mut PciBus, dev: u32, reg: u32) -> u32 {
        bus.pio_write(0xCF8, 4, 0x8000_0000 | dev << 11 | reg);
        bus.pio_read(0xCFC, 4)
    }

    #[test]
    fn two_disks() {
        let mut bus = build_pci(vec![disk(), disk()]).unwrap();
        assert_eq!(cfg(&mut bus, 0, 0), 0x1237_8086);
        assert_eq!(cfg(&mut bus, 3, 0), 0x1042_1AF4);
        assert_eq!(cfg(&mut bus, 4, 0), 0x1042_1AF4);
        assert_eq!(cfg(&mut bus, 5, 0), u32::MAX);
        assert_eq!(cfg(&mut bus, 3, 0x3C) & 0xFF, 11);
        assert_eq!(cfg(&mut bus, 4, 0x3C) & 0xFF, 10);
        assert_eq!(bus.irq_lines(), 0b1100_0000_0000);
        let bars: Vec<u32> = [3, 4]
            .iter()
            .map(|&d| cfg(&mut bus, d, 0x20) & !0xF)
            .collect();
        assert_eq!(bars, vec![0xFE00_0000, 0xFE00_4000]);
        assert!(bus.claims_mmio(0xFE00_7FFF));
        assert!(!bus.claims_mmio(0xFE00_8000));
    }
}
