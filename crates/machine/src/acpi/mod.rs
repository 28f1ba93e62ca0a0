//! ACPI tables, generated from the memory map and the device registry (never written out
//! twice): RSDP, XSDT, FADT (+ FACS on `-M pc`), MADT and DSDT. They live in the reserved
//! BIOS area at [`TABLES_BASE`], where Linux also finds the RSDP by scanning; the boot protocol's
//! `acpi_rsdp_addr` points at it too.
//!
//! - `-M microvm`: a hardware-reduced FADT (ACPI 6.5 §5.2.9, flag HW_REDUCED_ACPI) with the
//!   sleep control/status registers and the reset register of
//!   [`tci64_devices::acpi_sleep`]; the DSDT describes COM1, the RTC and each virtio-mmio
//!   transport (`LNRO0005`, as QEMU's microvm does).
//! - `-M pc`: a FADT with the PM1a event/control blocks and the PM timer of
//!   [`tci64_devices::acpi_pm`] (SCI on IRQ 9); the DSDT has COM1, the RTC, the i8042 and the
//!   PCI host bridge (`PNP0A03`) with its bus/IO/memory windows and a `_PRT` that gives each
//!   populated slot's INTA the line the PCI bus wires it to.
//! - The MADT (§5.2.12) lists the local APIC, the IOAPIC, the interrupt source overrides (IRQ 0
//!   → GSI 2; level-triggered lines: PCI INTx active low, virtio-mmio and the SCI active high)
//!   and LINT1 as the NMI input.
//! - Both DSDTs carry `_S5_` with SLP_TYP = 5, which the PM block and the sleep registers take
//!   as soft-off.

pub mod aml;

use crate::config::{MachineType, PlatformConfig};
use crate::interrupts::Interrupts;
use crate::memmap;
use crate::registry::{Kind, Registry};

/// Where the tables go (the RSDP first; Linux scans 0xE0000-0xFFFFF for it).
pub const TABLES_BASE: u64 = 0xe_0000;
/// Room for them (up to the end of the BIOS area).
pub const TABLES_MAX: usize = 0x2_0000;
/// The ACPI PM block's ports on `-M pc`.
pub const PM_BASE: u16 = 0x600;
/// The sleep/reset registers' page on `-M microvm`.
pub const SLEEP_BASE: u64 = 0xfea0_0000;

const OEM_ID: &[u8; 6] = b"TCI64 ";
const OEM_TABLE_ID: &[u8; 8] = b"TCI64PC ";

/// The sum of `b` as a byte (a table is valid when its bytes sum to 0).
pub fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
}

/// A system description table: the 36-byte header (§5.2.6) and a body.
fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = 36 + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(sig);
    t.extend_from_slice(&(len as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"TCI6");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    t[9] = 0u8.wrapping_sub(checksum(&t));
    t
}

/// A Generic Address Structure (§5.2.3.2): `space` 0 = memory, 1 = I/O.
fn gas(space: u8, bits: u8, access: u8, addr: u64) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = space;
    g[1] = bits;
    g[3] = access;
    g[4..].copy_from_slice(&addr.to_le_bytes());
    g
}

/// The built tables: `bytes` go at guest-physical `base`; the RSDP is at `rsdp`.
#[derive(Debug, Clone)]
pub struct Tables {
    pub base: u64,
    pub rsdp: u64,
    pub bytes: Vec<u8>,
}

/// The DSDT's device for the UART, the RTC, the i8042.
fn legacy_devices(reg: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    for e in reg.entries() {
        let port = |i: usize| {
            e.ports
                .get(i)
                .map(|r| (*r.start(), (*r.end() - *r.start() + 1) as u8))
        };
        let mut crs = Vec::new();
        let (path, hid, uid) = match e.kind {
            Kind::Serial => ("COM1", "PNP0501", 1),
            Kind::Rtc => ("RTC", "PNP0B00", 0),
            Kind::Keyboard => ("KBD", "PNP0303", 0),
            _ => continue,
        };
        for i in 0..e.ports.len() {
            if let Some((base, len)) = port(i) {
                crs.push(aml::res::io(base, len));
            }
        }
        for &irq in &e.irqs {
            crs.push(aml::res::irq(irq));
        }
        if e.kind == Kind::Keyboard {
            crs.push(aml::res::irq(1));
        }
        let mut body = aml::name_decl("_HID", &aml::eisa_id(hid));
        body.extend(aml::name_decl("_UID", &aml::int(uid)));
        body.extend(aml::name_decl("_STA", &aml::int(0xf)));
        body.extend(aml::name_decl("_CRS", &aml::resource_template(&crs)));
        out.extend(aml::device(path, &body));
    }
    out
}

/// The virtio-mmio transports (QEMU microvm's `VR0n` devices, `LNRO0005`).
fn virtio_devices(reg: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, e) in reg
        .entries()
        .iter()
        .filter(|e| e.kind == Kind::VirtioMmio)
        .enumerate()
    {
        let (Some(m), Some(&irq)) = (e.mmio.first(), e.irqs.first()) else {
            continue;
        };
        let mut body = aml::name_decl("_HID", &aml::string("LNRO0005"));
        body.extend(aml::name_decl("_UID", &aml::int(n as u64)));
        body.extend(aml::name_decl("_CCA", &aml::int(1)));
        let crs = [
            aml::res::memory32_fixed(m.start as u32, (m.end - m.start) as u32),
            aml::res::interrupt(irq as u32, true, false),
        ];
        body.extend(aml::name_decl("_CRS", &aml::resource_template(&crs)));
        out.extend(aml::device(&format!("VR{n:02}"), &body));
    }
    out
}

/// The PCI host bridge with its windows and `_PRT`.
fn pci_host_bridge(routes: &[(usize, u8)]) -> Vec<u8> {
    let mut body = aml::name_decl("_HID", &aml::eisa_id("PNP0A03"));
    body.extend(aml::name_decl("_ADR", &aml::int(0)));
    body.extend(aml::name_decl("_UID", &aml::int(0)));
    body.extend(aml::name_decl("_BBN", &aml::int(0)));
    let crs = [
        aml::res::word_space(2, 0, 0xff),
        aml::res::io(0xcf8, 8),
        aml::res::word_space(1, 0, 0xcf7),
        aml::res::word_space(1, 0xd00, 0xffff),
        aml::res::dword_memory(0xa_0000, 0xb_ffff),
        aml::res::dword_memory(
            memmap::PCI_MMIO_BASE as u32,
            (memmap::PCI_MMIO_END - 1) as u32,
        ),
    ];
    body.extend(aml::name_decl("_CRS", &aml::resource_template(&crs)));
    // _PRT (§6.2.13): (address = slot << 16 | 0xFFFF, pin, source = 0 (a GSI), GSI).
    let prt: Vec<Vec<u8>> = routes
        .iter()
        .map(|&(slot, irq)| {
            aml::package(&[
                aml::int(((slot as u64) << 16) | 0xffff),
                aml::int(0),
                aml::int(0),
                aml::int(irq as u64),
            ])
        })
        .collect();
    body.extend(aml::name_decl("_PRT", &aml::package(&prt)));
    aml::device("PCI0", &body)
}

/// The DSDT (§5.2.11.1).
pub fn dsdt(machine: MachineType, reg: &Registry, pci_routes: &[(usize, u8)]) -> Vec<u8> {
    let mut sb = legacy_devices(reg);
    match machine {
        MachineType::Microvm => sb.extend(virtio_devices(reg)),
        MachineType::Pc => sb.extend(pci_host_bridge(pci_routes)),
    }
    let mut body = aml::scope("\\_SB", &sb);
    // \_S5: SLP_TYPa, SLP_TYPb (ACPI 6.5 §7.4.2).
    body.extend(aml::name_decl(
        "\\_S5",
        &aml::package(&[aml::int(5), aml::int(5), aml::int(0), aml::int(0)]),
    ));
    sdt(b"DSDT", 2, &body)
}

/// The MADT (§5.2.12).
pub fn madt(intc: &Interrupts, level_lines: &[(u8, bool)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(memmap::LAPIC_BASE as u32).to_le_bytes());
    // PCAT_COMPAT: there are 8259s to mask.
    b.extend_from_slice(&(intc.pic.is_some() as u32).to_le_bytes());
    for (uid, l) in intc.lapics.iter().enumerate() {
        b.extend_from_slice(&[0, 8, uid as u8, l.id() as u8]);
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    if intc.ioapic.is_some() {
        b.extend_from_slice(&[1, 12, crate::wiring::IOAPIC_ID, 0]);
        b.extend_from_slice(&(memmap::IOAPIC_BASE as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
    }
    let mut iso = |source: u8, gsi: u32, flags: u16| {
        b.extend_from_slice(&[2, 10, 0, source]);
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
    };
    iso(0, 2, 0);
    for &(line, active_low) in level_lines {
        // Level-triggered (bits 3:2 = 3), active high (1) or low (3).
        iso(line, line as u32, 0xc | if active_low { 3 } else { 1 });
    }
    // LINT1 of every processor is the NMI input.
    b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    sdt(b"APIC", 3, &b)
}

/// The FADT (§5.2.9), revision 6 (276 bytes).
fn fadt(machine: MachineType, dsdt_addr: u64, facs_addr: Option<u64>) -> Vec<u8> {
    let mut f = vec![0u8; 276 - 36];
    let put = |f: &mut Vec<u8>, off: usize, bytes: &[u8]| {
        f[off - 36..off - 36 + bytes.len()].copy_from_slice(bytes)
    };
    if let Some(facs) = facs_addr {
        // FIRMWARE_CTRL only: X_FIRMWARE_CTRL "must be zero" when FIRMWARE_CTRL is set
        // (§5.2.9, Table 5.9); the FACS is below 4 GiB.
        put(&mut f, 36, &(facs as u32).to_le_bytes());
    }
    put(&mut f, 40, &(dsdt_addr as u32).to_le_bytes());
    put(&mut f, 140, &dsdt_addr.to_le_bytes());
    let mut flags: u32 = 1 // WBINVD
        | 1 << 2 // PROC_C1
        | 1 << 4 // PWR_BUTTON: no fixed power button
        | 1 << 5 // SLP_BUTTON: no fixed sleep button
        | 1 << 10; // RESET_REG_SUP
    match machine {
        MachineType::Pc => {
            put(&mut f, 46, &(crate::wiring::SCI_IRQ as u16).to_le_bytes());
            let pm = PM_BASE as u32;
            put(&mut f, 56, &pm.to_le_bytes());
            put(&mut f, 64, &(pm + 4).to_le_bytes());
            put(&mut f, 76, &(pm + 8).to_le_bytes());
            put(&mut f, 88, &[4, 2, 0, 4]);
            put(&mut f, 108, &[0x32]); // CENTURY in CMOS
            put(&mut f, 109, &3u16.to_le_bytes()); // LEGACY_DEVICES | 8042
            flags |= 1 << 6 | 1 << 8; // FIX_RTC, TMR_VAL_EXT
            put(&mut f, 116, &gas(1, 8, 1, 0xcf9));
            put(&mut f, 128, &[6]);
            put(&mut f, 148, &gas(1, 32, 2, pm as u64));
            put(&mut f, 172, &gas(1, 16, 2, pm as u64 + 4));
            put(&mut f, 208, &gas(1, 32, 3, pm as u64 + 8));
        }
        MachineType::Microvm => {
            flags |= 1 << 20; // HW_REDUCED_ACPI
            put(&mut f, 116, &gas(0, 8, 1, SLEEP_BASE + 2));
            put(&mut f, 128, &[tci64_devices::acpi_sleep::RESET_VALUE]);
            put(&mut f, 244, &gas(0, 8, 1, SLEEP_BASE));
            put(&mut f, 256, &gas(0, 8, 1, SLEEP_BASE + 1));
        }
    }
    put(&mut f, 112, &flags.to_le_bytes());
    put(&mut f, 131, &[5]); // FADT minor version (6.5)
    put(&mut f, 268, b"TCI64   ");
    sdt(b"FACP", 6, &f)
}

/// The FACS (§5.2.10): no waking vector, no global lock owner.
fn facs() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f[32] = 2; // version
    f
}

/// Lay out every table for the board.
pub fn build(
    machine: MachineType,
    platform: &PlatformConfig,
    intc: &Interrupts,
    reg: &Registry,
    pci_routes: &[(usize, u8)],
) -> Tables {
    let base = TABLES_BASE;
    let mut bytes = vec![0u8; 36]; // the RSDP, filled in last
    let place = |bytes: &mut Vec<u8>, t: &[u8]| -> u64 {
        while !bytes.len().is_multiple_of(16) {
            bytes.push(0);
        }
        let at = base + bytes.len() as u64;
        bytes.extend_from_slice(t);
        at
    };
    let dsdt_addr = place(&mut bytes, &dsdt(machine, reg, pci_routes));
    let facs_addr = (machine == MachineType::Pc).then(|| place(&mut bytes, &facs()));
    let fadt_addr = place(&mut bytes, &fadt(machine, dsdt_addr, facs_addr));
    let mut entries = vec![fadt_addr];
    if platform.apic {
        let mut level: Vec<(u8, bool)> = Vec::new();
        for e in reg.entries() {
            match e.kind {
                Kind::PciBus => level.extend(e.irqs.iter().map(|&l| (l, true))),
                Kind::VirtioMmio => level.extend(e.irqs.iter().map(|&l| (l, false))),
                Kind::AcpiPm => level.extend(e.irqs.iter().map(|&l| (l, false))),
                _ => {}
            }
        }
        level.sort();
        level.dedup();
        entries.push(place(&mut bytes, &madt(intc, &level)));
    }
    let xsdt_body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    let xsdt_addr = place(&mut bytes, &sdt(b"XSDT", 1, &xsdt_body));
    // RSDP (§5.2.5.3), ACPI 2.0+ form.
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(OEM_ID);
    r.push(2);
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt_addr.to_le_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r[8] = 0u8.wrapping_sub(checksum(&r[..20]));
    r[32] = 0u8.wrapping_sub(checksum(&r));
    bytes[..36].copy_from_slice(&r);
    Tables {
        base,
        rsdp: base,
        bytes,
    }
}

#[cfg(test)]
mod tests;
