//! The device list of each board: which devices exist, where they decode and which lines they
//! drive. This is the one place that says so; dispatch, the ACPI and MP tables, and snapshots
//! read it back from the [`Registry`].
//!
//! | device | ports / MMIO | line | boards |
//! |---|---|---|---|
//! | 16550 UART (COM1) | 0x3F8-0x3FF | 4 | all |
//! | 8259 pair (+ ELCR) | 0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1 | — | unless `pic=off` |
//! | 8254 PIT (+ port 0x61) | 0x40-0x43, 0x61 | 0 | unless `pit=off` |
//! | MC146818 RTC | 0x70-0x71 | 8 | unless `rtc=off` |
//! | i8042 | 0x60, 0x64 | — | all |
//! | POST port | 0x80 | — | all |
//! | port 0x92 | 0x92 | — | all |
//! | reset control | 0xCF9 | — | all |
//! | IOAPIC | 0xFEC00000 | — | with an APIC |
//! | local APIC | 0xFEE00000 (per CPU) | — | with an APIC |
//! | virtio-mmio transport *n* | 0xFEB00000 + 0x200·n | 5 + n | microvm |
//! | PCI bus (conf1, BARs) | 0xCF8, 0xCFA-0xCFF, 0xC000-0xFFFF; 0xFE000000-0xFEBFFFFF | 10, 11 | pc |
//! | ACPI PM block (PM1a, PM timer) | 0x600-0x60B | 9 (SCI) | pc with ACPI |
//! | ACPI sleep/reset registers | 0xFEA00000 | — | microvm with ACPI |

use crate::adapters::{
    AcpiPmDev, AcpiSleepDev, PciDev, PitDev, Ports, RtcDev, Serial, VirtioMmioDev,
};
use crate::config::{DiskConfig, MachineType, PlatformConfig};
use crate::interrupts::Interrupts;
use crate::memmap::{self, MemoryMap, RegionKind};
use crate::registry::{Entry, Kind, Registry, Target};
use crate::MachineError;
use tci64_devices::cf9::ResetControl;
use tci64_devices::i8042::I8042;
use tci64_devices::i8254::Pit;
use tci64_devices::i8259::Pic;
use tci64_devices::ioapic::IoApic;
use tci64_devices::lapic::Lapic;
use tci64_devices::mc146818::Rtc;
use tci64_devices::misc::{Port92, PostPort};
use tci64_devices::uart16550::Uart16550;
use tci64_devices::virtio::blk::VirtioBlk;
use tci64_devices::virtio::mmio::VirtioMmio;

/// COM1's interrupt line.
pub const UART_IRQ: u8 = 4;
/// The RTC's interrupt line.
pub const RTC_IRQ: u8 = 8;
/// The ACPI SCI line on `-M pc` (PIIX4's choice).
pub const SCI_IRQ: u8 = 9;
/// The IOAPIC's APIC ID (after the CPUs').
pub const IOAPIC_ID: u8 = 1;

/// What [`build`] makes.
pub struct Wiring {
    pub intc: Interrupts,
    pub devices: Registry,
    /// Index of the console UART.
    pub serial: usize,
    /// PCI INTx wiring (device number, line), for the ACPI `_PRT`.
    pub pci_routes: Vec<(usize, u8)>,
}

fn entry(
    name: &str,
    kind: Kind,
    dev: Box<dyn crate::registry::Device>,
    ports: Vec<std::ops::RangeInclusive<u16>>,
    irqs: Vec<u8>,
) -> Entry {
    Entry {
        name: name.to_string(),
        kind,
        dev,
        ports,
        mmio: Vec::new(),
        irqs,
    }
}

/// The 8259 pair as PC firmware leaves it: initialized (vectors 0x08 and 0x70, cascade on
/// IR2) with every line masked. An uninitialized 8259 would hand out vectors 0-15 for the
/// BIOS-mode PIT's ticks, which a kernel that never touches the PIC (hardware-reduced ACPI)
/// would take as exceptions through LINT0.
fn firmware_pic() -> Pic {
    use tci64_devices::PioDevice;
    let mut pic = Pic::new();
    for (cmd, data, base, cascade) in [
        (0x20u16, 0x21u16, 0x08u32, 0x04u32),
        (0xa0, 0xa1, 0x70, 0x02),
    ] {
        pic.pio_write(cmd, 1, 0x11); // ICW1: edge, cascade, ICW4
        pic.pio_write(data, 1, base); // ICW2
        pic.pio_write(data, 1, cascade); // ICW3
        pic.pio_write(data, 1, 0x01); // ICW4: 8086 mode
        pic.pio_write(data, 1, 0xff); // OCW1: all masked
    }
    pic
}

/// Build the devices of board `machine` with platform `p`, disks attached.
pub fn build(
    machine: MachineType,
    p: &PlatformConfig,
    map: &MemoryMap,
    now: u64,
    rtc_epoch_secs: u64,
    disks: Vec<DiskConfig>,
    virtio_legacy: bool,
) -> Result<Wiring, MachineError> {
    let mut reg = Registry::new();
    let mut pci_routes = Vec::new();
    let serial = reg.add(entry(
        "serial0",
        Kind::Serial,
        Box::new(Serial {
            uart: Uart16550::new(0x3f8),
            irq: UART_IRQ,
        }),
        vec![0x3f8..=0x3ff],
        vec![UART_IRQ],
    ));
    let mut pic = p.pic.then(firmware_pic);
    if p.pic {
        reg.claim_ports(0x20..=0x21, Target::Pic);
        reg.claim_ports(0xa0..=0xa1, Target::Pic);
        reg.claim_ports(0x4d0..=0x4d1, Target::Pic);
    }
    if p.pit {
        reg.add(entry(
            "pit",
            Kind::Pit,
            Box::new(PitDev(Pit::new(now))),
            vec![0x40..=0x43, 0x61..=0x61],
            vec![0],
        ));
    }
    if p.rtc {
        reg.add(entry(
            "rtc",
            Kind::Rtc,
            Box::new(RtcDev {
                rtc: Rtc::new(rtc_epoch_secs as i64),
                irq: RTC_IRQ,
            }),
            vec![0x70..=0x71],
            vec![RTC_IRQ],
        ));
    }
    reg.add(entry(
        "i8042",
        Kind::Keyboard,
        Box::new(Ports(I8042::new())),
        vec![0x60..=0x60, 0x64..=0x64],
        vec![],
    ));
    reg.add(entry(
        "post",
        Kind::PostPort,
        Box::new(Ports(PostPort::default())),
        vec![0x80..=0x80],
        vec![],
    ));
    reg.add(entry(
        "port92",
        Kind::Port92,
        Box::new(Ports(Port92::default())),
        vec![0x92..=0x92],
        vec![],
    ));
    reg.add(entry(
        "reset-control",
        Kind::ResetControl,
        Box::new(Ports(ResetControl::default())),
        vec![0xcf9..=0xcf9],
        vec![],
    ));
    let (ioapic, lapics) = if p.apic {
        reg.claim_mmio(
            memmap::IOAPIC_BASE..memmap::IOAPIC_BASE + 0x1000,
            Target::IoApic,
        );
        (
            Some(IoApic::new(IOAPIC_ID)),
            vec![Lapic::new(0, true, p.x2apic)],
        )
    } else {
        (None, Vec::new())
    };
    match machine {
        MachineType::Microvm => {
            for (i, d) in disks.into_iter().enumerate() {
                let slot = map.disk_slot(i).ok_or_else(|| {
                    MachineError::Config(format!("no virtio-mmio slot for disk {i}"))
                })?;
                let blk = VirtioBlk::new(d.backend, d.read_only);
                let dev =
                    VirtioMmioDev::new(slot.base, slot.irq, VirtioMmio::new(blk, virtio_legacy));
                reg.add(Entry {
                    name: format!("virtio-mmio{}", slot.slot),
                    kind: Kind::VirtioMmio,
                    dev: Box::new(dev),
                    ports: vec![],
                    mmio: std::iter::once(slot.base..slot.base + slot.size).collect(),
                    irqs: vec![slot.irq],
                });
            }
        }
        MachineType::Pc => {
            let pci = crate::pc::build_pci(disks)?;
            pci_routes = pci.intx_routes();
            let lines = pci.irq_lines();
            if let Some(pic) = &mut pic {
                // Level-triggered PCI lines, as a BIOS programs the ELCR.
                pic.set_elcr(lines);
            }
            let irqs = (0..16u8).filter(|l| lines & (1 << l) != 0).collect();
            let window = map
                .regions()
                .iter()
                .find(|r| r.kind == RegionKind::PciMmio)
                .map(|r| r.base..r.end())
                .unwrap_or(memmap::PCI_MMIO_BASE..memmap::PCI_MMIO_END);
            reg.add(Entry {
                name: "pci".into(),
                kind: Kind::PciBus,
                dev: Box::new(PciDev(pci)),
                ports: vec![
                    0xcf8..=0xcf8,
                    0xcfa..=0xcff,
                    memmap::PCI_IO_BASE as u16..=(memmap::PCI_IO_END - 1) as u16,
                ],
                mmio: std::iter::once(window).collect(),
                irqs,
            });
        }
    }
    if p.acpi {
        match machine {
            MachineType::Pc => {
                let base = crate::acpi::PM_BASE;
                reg.add(entry(
                    "acpi-pm",
                    Kind::AcpiPm,
                    Box::new(AcpiPmDev {
                        pm: tci64_devices::acpi_pm::AcpiPm::new(base),
                        irq: SCI_IRQ,
                    }),
                    vec![base..=base + tci64_devices::acpi_pm::LEN - 1],
                    vec![SCI_IRQ],
                ));
            }
            MachineType::Microvm => {
                let base = crate::acpi::SLEEP_BASE;
                reg.add(Entry {
                    name: "acpi-sleep".into(),
                    kind: Kind::AcpiSleep,
                    dev: Box::new(AcpiSleepDev {
                        regs: tci64_devices::acpi_sleep::AcpiSleep::new(),
                        base,
                    }),
                    ports: vec![],
                    mmio: std::iter::once(base..base + 0x10).collect(),
                    irqs: vec![],
                });
            }
        }
    }
    Ok(Wiring {
        intc: Interrupts::new(pic, ioapic, lapics),
        devices: reg,
        serial,
        pci_routes,
    })
}
