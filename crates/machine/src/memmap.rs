//! The guest's physical memory map, as one table.
//!
//! Everything else is derived from [`MemoryMap::regions`]: the e820 table handed to Linux
//! ([`MemoryMap::e820`]), the `virtio_mmio.device=` command-line arguments
//! ([`MemoryMap::virtio_cmdline_args`]) and the address → region lookup for the machine's MMIO
//! dispatch ([`MemoryMap::lookup`]).
//!
//! Layout (QEMU `microvm,acpi=off` conventions, so that the reference QEMU command lines and ours
//! describe the same machine):
//!
//! | range | kind | e820 |
//! |---|---|---|
//! | `[0, 0x9fc00)` | RAM (IVT, BDA, boot data: zero page, page tables, command line) | usable |
//! | `[0x9fc00, 0x100000)` | RAM-backed but reserved: EBDA (MP table), VGA hole, BIOS area | reserved |
//! | `[0x100000, low_top)` | RAM, `low_top = min(ram, 0xC000_0000)` | usable |
//! | `[0xC000_0000, 4 GiB)` | the MMIO hole: nothing but the regions below | — |
//! | `0xFEB0_0000 + 0x200·n`, n = 0..8 | virtio-mmio transport n, IRQ 5+n | not listed (as QEMU) |
//! | `[0xFEC0_0000, +4 KiB)` | IOAPIC | reserved |
//! | `[0xFEE0_0000, +4 KiB)` | local APIC | reserved |
//! | `[4 GiB, 4 GiB + ram − low_top)` | RAM above the hole, if `ram > 0xC000_0000` | usable |
//!
//! **`-M pc`** ([`MemoryMap::for_machine`] with [`MachineType::Pc`]) has the same RAM, EBDA,
//! IOAPIC and LAPIC rows, no virtio-mmio transports, and instead the PCI memory window
//! `[0xFE00_0000, 0xFEC0_0000)` where the machine places the BARs (not in the e820 table, like
//! QEMU's PCI hole: Linux sees it as a gap "available for PCI devices"). Its disks are
//! virtio-blk-pci functions, up to [`PCI_MAX_DISKS`].
//!
//! **Disk → slot assignment follows QEMU**: disk *i* takes slot *7 − i*, so the first disk is at
//! `0xfeb00e00`, IRQ 12 (QEMU appends `virtio_mmio.device=512@0xfeb00e00:12`), the second at
//! `0xfeb00c00`, IRQ 11, and so on. The command-line arguments are emitted in disk order, so
//! Linux probes disk 0 first and names it `vda`. All 8 transports are in the table whether a disk
//! is attached or not (an empty transport answers with device ID 0, as in QEMU).
//!
//! Guest RAM is one host buffer of `ram` bytes: guest physical `[0, low_top)` is buffer
//! `[0, low_top)`, and guest physical `[4 GiB, 4 GiB + high)` is buffer `[low_top, ram)`
//! ([`MemoryMap::ram_offset`]).

use crate::config::MachineType;
use thiserror::Error;

/// Start of the MMIO hole below 4 GiB; RAM beyond this moves above 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xC000_0000;
/// 4 GiB: where RAM resumes above the hole.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// End of conventional memory (start of the EBDA, where the MP table goes).
pub const EBDA_START: u64 = 0x9_FC00;
/// 1 MiB.
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// First virtio-mmio transport.
pub const VIRTIO_MMIO_BASE: u64 = 0xFEB0_0000;
/// Size of one virtio-mmio transport.
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
/// Number of virtio-mmio transports.
pub const VIRTIO_MMIO_SLOTS: usize = 8;
/// IRQ (8259 line / IOAPIC pin) of transport 0; transport n uses `VIRTIO_MMIO_FIRST_IRQ + n`.
pub const VIRTIO_MMIO_FIRST_IRQ: u8 = 5;
/// The PCI memory window (BARs) on `-M pc`: from here up to the IOAPIC page.
pub const PCI_MMIO_BASE: u64 = 0xFE00_0000;
/// One past the PCI memory window.
pub const PCI_MMIO_END: u64 = 0xFEC0_0000;
/// The PCI I/O port window for I/O BARs on `-M pc` (SeaBIOS's choice).
pub const PCI_IO_BASE: u64 = 0xC000;
/// One past the PCI I/O window.
pub const PCI_IO_END: u64 = 0x1_0000;
/// Most virtio-blk-pci disks on `-M pc`.
pub const PCI_MAX_DISKS: usize = 8;
/// The IOAPIC's MMIO page.
pub const IOAPIC_BASE: u64 = 0xFEC0_0000;
/// The local APIC's MMIO page.
pub const LAPIC_BASE: u64 = 0xFEE0_0000;
/// Smallest RAM the map accepts (the kernel's own requirement is checked by the loader).
pub const MIN_RAM: u64 = 2 << 20;

/// What lives in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Guest RAM, usable by the OS.
    Ram,
    /// Backed by guest RAM but reserved for firmware data (EBDA/MP table, legacy BIOS area).
    ReservedRam,
    /// A virtio-mmio transport.
    VirtioMmio {
        /// Transport index, 0..8.
        slot: u8,
        /// Its interrupt line (8259 IRQ / IOAPIC pin).
        irq: u8,
        /// The disk attached to it, if any (index into the machine's disk list).
        disk: Option<u8>,
    },
    /// The PCI memory window: BARs decode inside it (`-M pc`).
    PciMmio,
    /// The IOAPIC page (no device there yet: reads all-ones, writes ignored).
    IoApic,
    /// The local APIC page (no device there yet).
    LocalApic,
}

/// How a region appears in the e820 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
}

/// One row of the memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Guest physical start.
    pub base: u64,
    /// Length in bytes (never 0).
    pub size: u64,
    pub kind: RegionKind,
    /// Its e820 type; `None` = not listed.
    pub e820: Option<E820Type>,
    /// A short name for traces and error messages.
    pub name: &'static str,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    /// Does the region contain `addr`?
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Is it backed by guest RAM?
    pub fn is_ram(&self) -> bool {
        matches!(self.kind, RegionKind::Ram | RegionKind::ReservedRam)
    }
}

/// One e820 entry as Linux reads it from `boot_params` (20 bytes: addr, size, type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub typ: u32,
}

/// A virtio-mmio transport as the kernel command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioSlot {
    pub slot: u8,
    pub base: u64,
    pub size: u64,
    pub irq: u8,
}

/// Why a memory map could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemMapError {
    #[error("RAM size {0} bytes is too small: the machine needs at least {MIN_RAM} bytes (2 MiB)")]
    RamTooSmall(u64),
    #[error("RAM size {0} bytes is not a multiple of 4 KiB")]
    RamNotPageAligned(u64),
    #[error("RAM size {0} bytes is too large for this host")]
    RamTooLarge(u64),
    #[error("{0} disks requested but there are only {VIRTIO_MMIO_SLOTS} virtio-mmio slots")]
    TooManyDisks(usize),
    #[error("{0} disks requested but -M pc takes at most {PCI_MAX_DISKS}")]
    TooManyPciDisks(usize),
}

/// The machine's physical memory map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMap {
    ram_bytes: u64,
    low_ram_end: u64,
    disks: usize,
    /// Sorted by base, non-overlapping.
    regions: Vec<Region>,
}

impl MemoryMap {
    /// The microvm map for `ram_bytes` of RAM and `disks` virtio-blk disks.
    pub fn new(ram_bytes: u64, disks: usize) -> Result<Self, MemMapError> {
        Self::for_machine(MachineType::Microvm, ram_bytes, disks)
    }

    /// The map of board `machine` for `ram_bytes` of RAM and `disks` virtio-blk disks.
    pub fn for_machine(
        machine: MachineType,
        ram_bytes: u64,
        disks: usize,
    ) -> Result<Self, MemMapError> {
        if ram_bytes < MIN_RAM {
            return Err(MemMapError::RamTooSmall(ram_bytes));
        }
        if !ram_bytes.is_multiple_of(4096) {
            return Err(MemMapError::RamNotPageAligned(ram_bytes));
        }
        // Guest RAM is one host buffer; on wasm64/64-bit hosts usize is 64 bits, but keep the
        // check so that nothing downstream overflows.
        if ram_bytes > (1 << 46) || usize::try_from(ram_bytes).is_err() {
            return Err(MemMapError::RamTooLarge(ram_bytes));
        }
        match machine {
            MachineType::Microvm if disks > VIRTIO_MMIO_SLOTS => {
                return Err(MemMapError::TooManyDisks(disks))
            }
            MachineType::Pc if disks > PCI_MAX_DISKS => {
                return Err(MemMapError::TooManyPciDisks(disks))
            }
            _ => {}
        }
        let low_ram_end = ram_bytes.min(MMIO_HOLE_START);
        let mut regions = vec![
            Region {
                base: 0,
                size: EBDA_START,
                kind: RegionKind::Ram,
                e820: Some(E820Type::Ram),
                name: "low RAM",
            },
            Region {
                base: EBDA_START,
                size: HIGH_MEMORY_START - EBDA_START,
                kind: RegionKind::ReservedRam,
                e820: Some(E820Type::Reserved),
                name: "EBDA and BIOS area",
            },
        ];
        if low_ram_end > HIGH_MEMORY_START {
            regions.push(Region {
                base: HIGH_MEMORY_START,
                size: low_ram_end - HIGH_MEMORY_START,
                kind: RegionKind::Ram,
                e820: Some(E820Type::Ram),
                name: "RAM",
            });
        }
        if machine == MachineType::Pc {
            regions.push(Region {
                base: PCI_MMIO_BASE,
                size: PCI_MMIO_END - PCI_MMIO_BASE,
                kind: RegionKind::PciMmio,
                e820: None,
                name: "PCI MMIO window",
            });
        }
        let mmio_slots = if machine == MachineType::Microvm {
            VIRTIO_MMIO_SLOTS
        } else {
            0
        };
        for slot in 0..mmio_slots {
            // QEMU convention: disk i takes slot 7 - i.
            let disk = (0..disks).find(|&d| VIRTIO_MMIO_SLOTS - 1 - d == slot);
            regions.push(Region {
                base: VIRTIO_MMIO_BASE + slot as u64 * VIRTIO_MMIO_SIZE,
                size: VIRTIO_MMIO_SIZE,
                kind: RegionKind::VirtioMmio {
                    slot: slot as u8,
                    irq: VIRTIO_MMIO_FIRST_IRQ + slot as u8,
                    disk: disk.map(|d| d as u8),
                },
                e820: None,
                name: "virtio-mmio",
            });
        }
        regions.push(Region {
            base: IOAPIC_BASE,
            size: 0x1000,
            kind: RegionKind::IoApic,
            e820: Some(E820Type::Reserved),
            name: "IOAPIC",
        });
        regions.push(Region {
            base: LAPIC_BASE,
            size: 0x1000,
            kind: RegionKind::LocalApic,
            e820: Some(E820Type::Reserved),
            name: "local APIC",
        });
        if ram_bytes > low_ram_end {
            regions.push(Region {
                base: FOUR_GIB,
                size: ram_bytes - low_ram_end,
                kind: RegionKind::Ram,
                e820: Some(E820Type::Ram),
                name: "RAM above 4 GiB",
            });
        }
        debug_assert!(regions.windows(2).all(|w| w[0].end() <= w[1].base));
        Ok(MemoryMap {
            ram_bytes,
            low_ram_end,
            disks,
            regions,
        })
    }

    /// The table itself, sorted by address, non-overlapping.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Total guest RAM in bytes (the size of the host RAM buffer).
    pub fn ram_bytes(&self) -> u64 {
        self.ram_bytes
    }

    /// One past the last byte of RAM below the MMIO hole (= `min(ram, 0xC000_0000)`).
    pub fn low_ram_end(&self) -> u64 {
        self.low_ram_end
    }

    /// Bytes of RAM mapped at 4 GiB and above.
    pub fn high_ram_bytes(&self) -> u64 {
        self.ram_bytes - self.low_ram_end
    }

    /// Number of disks the map was built for.
    pub fn disks(&self) -> usize {
        self.disks
    }

    /// The region holding `addr`, if any (binary search). `None` = unassigned: reads return
    /// all-ones, writes are ignored.
    pub fn lookup(&self, addr: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.base <= addr);
        let r = self.regions.get(i.checked_sub(1)?)?;
        r.contains(addr).then_some(r)
    }

    /// Where guest physical `addr` lives in the RAM buffer, if it is RAM.
    pub fn ram_offset(&self, addr: u64) -> Option<u64> {
        if addr < self.low_ram_end {
            Some(addr)
        } else if addr >= FOUR_GIB && addr - FOUR_GIB < self.high_ram_bytes() {
            Some(addr - FOUR_GIB + self.low_ram_end)
        } else {
            None
        }
    }

    /// The e820 table: every region with an e820 type, adjacent same-type entries merged.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut out: Vec<E820Entry> = Vec::new();
        for r in &self.regions {
            let Some(t) = r.e820 else { continue };
            let typ = t as u32;
            if let Some(last) = out.last_mut() {
                if last.typ == typ && last.addr + last.size == r.base {
                    last.size += r.size;
                    continue;
                }
            }
            out.push(E820Entry {
                addr: r.base,
                size: r.size,
                typ,
            });
        }
        out
    }

    /// The transport of disk `disk` (QEMU order: disk 0 → slot 7).
    pub fn disk_slot(&self, disk: usize) -> Option<VirtioSlot> {
        self.regions.iter().find_map(|r| match r.kind {
            RegionKind::VirtioMmio {
                slot,
                irq,
                disk: Some(d),
            } if d as usize == disk => Some(VirtioSlot {
                slot,
                base: r.base,
                size: r.size,
                irq,
            }),
            _ => None,
        })
    }

    /// `virtio_mmio.device=512@0xfeb00e00:12` and so on, one per disk, in disk order.
    pub fn virtio_cmdline_args(&self) -> Vec<String> {
        (0..self.disks)
            .filter_map(|d| self.disk_slot(d))
            .map(|s| format!("virtio_mmio.device={}@{:#x}:{}", s.size, s.base, s.irq))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn small_ram_e820() {
        let m = MemoryMap::new(256 * MIB, 1).unwrap();
        assert_eq!(
            m.e820(),
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    typ: 1
                },
                E820Entry {
                    addr: 0x9fc00,
                    size: 0x100000 - 0x9fc00,
                    typ: 2
                },
                E820Entry {
                    addr: 0x100000,
                    size: 255 * MIB,
                    typ: 1
                },
                E820Entry {
                    addr: 0xfec00000,
                    size: 0x1000,
                    typ: 2
                },
                E820Entry {
                    addr: 0xfee00000,
                    size: 0x1000,
                    typ: 2
                },
            ]
        );
        assert_eq!(m.low_ram_end(), 256 * MIB);
        assert_eq!(m.high_ram_bytes(), 0);
    }

    #[test]
    fn large_ram_splits_around_hole() {
        let m = MemoryMap::new(4096 * MIB, 0).unwrap();
        let e = m.e820();
        assert_eq!(m.low_ram_end(), 0xC000_0000);
        assert_eq!(
            e[2],
            E820Entry {
                addr: 0x100000,
                size: 0xC000_0000 - 0x100000,
                typ: 1
            }
        );
        assert_eq!(
            *e.last().unwrap(),
            E820Entry {
                addr: FOUR_GIB,
                size: 1 << 30,
                typ: 1
            }
        );
        assert_eq!(m.ram_offset(FOUR_GIB), Some(0xC000_0000));
        assert_eq!(m.ram_offset(FOUR_GIB + (1 << 30) - 1), Some(4096 * MIB - 1));
        assert_eq!(m.ram_offset(FOUR_GIB + (1 << 30)), None);
        assert_eq!(m.ram_offset(0xC000_0000), None);
        assert_eq!(m.ram_offset(0xBFFF_FFFF), Some(0xBFFF_FFFF));
        // Exactly the hole size: no high RAM.
        let m = MemoryMap::new(0xC000_0000, 0).unwrap();
        assert_eq!(m.high_ram_bytes(), 0);
        assert!(m.e820().iter().all(|e| e.addr < FOUR_GIB));
    }

    #[test]
    fn virtio_args_follow_qemu() {
        let m = MemoryMap::new(256 * MIB, 1).unwrap();
        assert_eq!(
            m.virtio_cmdline_args(),
            vec!["virtio_mmio.device=512@0xfeb00e00:12".to_string()]
        );
        let m = MemoryMap::new(256 * MIB, 3).unwrap();
        assert_eq!(
            m.virtio_cmdline_args(),
            vec![
                "virtio_mmio.device=512@0xfeb00e00:12",
                "virtio_mmio.device=512@0xfeb00c00:11",
                "virtio_mmio.device=512@0xfeb00a00:10",
            ]
        );
        assert!(MemoryMap::new(256 * MIB, 0)
            .unwrap()
            .virtio_cmdline_args()
            .is_empty());
        let m = MemoryMap::new(256 * MIB, 8).unwrap();
        assert_eq!(
            m.disk_slot(7),
            Some(VirtioSlot {
                slot: 0,
                base: 0xfeb00000,
                size: 0x200,
                irq: 5
            })
        );
        assert_eq!(m.disk_slot(8), None);
    }

    #[test]
    fn lookup() {
        let m = MemoryMap::new(256 * MIB, 1).unwrap();
        assert_eq!(m.lookup(0).unwrap().kind, RegionKind::Ram);
        assert_eq!(m.lookup(0x9fbff).unwrap().kind, RegionKind::Ram);
        assert_eq!(m.lookup(0x9fc00).unwrap().kind, RegionKind::ReservedRam);
        assert!(m.lookup(0xfffff).unwrap().is_ram());
        assert_eq!(m.lookup(256 * MIB - 1).unwrap().kind, RegionKind::Ram);
        assert_eq!(m.lookup(256 * MIB), None);
        let r = m.lookup(0xfeb00e10).unwrap();
        assert_eq!(
            r.kind,
            RegionKind::VirtioMmio {
                slot: 7,
                irq: 12,
                disk: Some(0)
            }
        );
        assert_eq!(r.base, 0xfeb00e00);
        assert_eq!(
            m.lookup(0xfeb00000).unwrap().kind,
            RegionKind::VirtioMmio {
                slot: 0,
                irq: 5,
                disk: None
            }
        );
        assert_eq!(m.lookup(0xfeb01000), None);
        assert_eq!(m.lookup(0xfec00fff).unwrap().kind, RegionKind::IoApic);
        assert_eq!(m.lookup(0xfec01000), None);
        assert_eq!(m.lookup(0xfee00020).unwrap().kind, RegionKind::LocalApic);
        assert_eq!(m.lookup(FOUR_GIB), None);
        assert_eq!(m.lookup(u64::MAX), None);
        // The table is sorted and non-overlapping, regions never empty.
        for w in m.regions().windows(2) {
            assert!(w[0].end() <= w[1].base);
        }
        assert!(m.regions().iter().all(|r| r.size > 0));
    }

    #[test]
    fn pc_map() {
        let m = MemoryMap::for_machine(MachineType::Pc, 256 * MIB, 2).unwrap();
        // Same e820 as microvm: the PCI window is a gap, not a reservation.
        assert_eq!(m.e820(), MemoryMap::new(256 * MIB, 1).unwrap().e820());
        assert!(m.virtio_cmdline_args().is_empty());
        assert_eq!(m.disk_slot(0), None);
        assert_eq!(m.lookup(0xfeb00e00).unwrap().kind, RegionKind::PciMmio);
        assert_eq!(m.lookup(PCI_MMIO_BASE).unwrap().kind, RegionKind::PciMmio);
        assert_eq!(m.lookup(PCI_MMIO_BASE - 1), None);
        assert_eq!(m.lookup(IOAPIC_BASE).unwrap().kind, RegionKind::IoApic);
        for w in m.regions().windows(2) {
            assert!(w[0].end() <= w[1].base);
        }
        // The window stays clear of RAM whatever the RAM size.
        let big = MemoryMap::for_machine(MachineType::Pc, 8192 * MIB, 0).unwrap();
        assert!(big
            .regions()
            .iter()
            .filter(|r| r.is_ram())
            .all(|r| r.end() <= PCI_MMIO_BASE || r.base >= FOUR_GIB));
        assert_eq!(
            MemoryMap::for_machine(MachineType::Pc, 256 * MIB, 9),
            Err(MemMapError::TooManyPciDisks(9))
        );
        assert!(MemoryMap::for_machine(MachineType::Pc, 256 * MIB, 8).is_ok());
    }

    #[test]
    fn errors() {
        assert_eq!(MemoryMap::new(MIB, 0), Err(MemMapError::RamTooSmall(MIB)));
        assert_eq!(
            MemoryMap::new(256 * MIB + 1, 0),
            Err(MemMapError::RamNotPageAligned(256 * MIB + 1))
        );
        assert_eq!(
            MemoryMap::new(256 * MIB, 9),
            Err(MemMapError::TooManyDisks(9))
        );
        let e = MemoryMap::new(MIB, 0).unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }
}
