use super::*;
use crate::config::DiskConfig;
use crate::memmap::MemoryMap;
use tci64_devices::block::MemBackend;

fn disk() -> DiskConfig {
    DiskConfig {
        backend: Box::new(MemBackend::zeroed(1 << 20)),
        read_only: false,
    }
}

fn tables(machine: MachineType, disks: usize) -> Tables {
    let p = PlatformConfig::default();
    let map = MemoryMap::for_machine(machine, 256 << 20, disks).unwrap();
    let w = crate::wiring::build(
        machine,
        &p,
        &map,
        0,
        0,
        (0..disks).map(|_| disk()).collect(),
        true,
    )
    .unwrap();
    build(machine, &p, &w.intc, &w.devices, &w.pci_routes)
}

/// The table at guest-physical `addr`, checked: signature, length inside the blob, checksum.
fn table(t: &Tables, addr: u64) -> (&[u8], [u8; 4]) {
    let off = (addr - t.base) as usize;
    let len = u32::from_le_bytes(t.bytes[off + 4..off + 8].try_into().unwrap()) as usize;
    let b = &t.bytes[off..off + len];
    assert_eq!(
        checksum(b),
        0,
        "checksum of {:?}",
        std::str::from_utf8(&b[..4])
    );
    (b, b[..4].try_into().unwrap())
}

/// Parse the tables as an OS does, from the RSDP: signature → table.
fn walk(t: &Tables) -> Vec<([u8; 4], Vec<u8>)> {
    let r = &t.bytes[(t.rsdp - t.base) as usize..][..36];
    assert_eq!(&r[..8], b"RSD PTR ");
    assert_eq!(checksum(&r[..20]), 0, "RSDP v1 checksum");
    assert_eq!(checksum(r), 0, "RSDP extended checksum");
    assert_eq!(r[15], 2, "ACPI 2.0+ RSDP");
    let xsdt = u64::from_le_bytes(r[24..32].try_into().unwrap());
    let (x, sig) = table(t, xsdt);
    assert_eq!(&sig, b"XSDT");
    let mut out = vec![];
    for e in x[36..].chunks(8) {
        let a = u64::from_le_bytes(e.try_into().unwrap());
        let (b, sig) = table(t, a);
        if &sig == b"FACP" {
            let dsdt = u64::from_le_bytes(b[140..148].try_into().unwrap());
            assert_eq!(
                dsdt,
                u32::from_le_bytes(b[40..44].try_into().unwrap()) as u64
            );
            let (d, dsig) = table(t, dsdt);
            assert_eq!(&dsig, b"DSDT");
            out.push((dsig, d.to_vec()));
        }
        out.push((sig, b.to_vec()));
    }
    out
}

fn find(ts: &[([u8; 4], Vec<u8>)], sig: &[u8; 4]) -> Vec<u8> {
    ts.iter().find(|(s, _)| s == sig).unwrap().1.clone()
}

/// MADT entries as (type, bytes).
fn madt_entries(m: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = vec![];
    let mut o = 44;
    while o < m.len() {
        let len = m[o + 1] as usize;
        assert!(len >= 2);
        v.push((m[o], m[o..o + len].to_vec()));
        o += len;
    }
    assert_eq!(o, m.len(), "entries fill the table exactly");
    v
}

#[test]
fn microvm_tables_round_trip() {
    let t = tables(MachineType::Microvm, 2);
    assert!(t.bytes.len() <= TABLES_MAX);
    let ts = walk(&t);
    let fadt = find(&ts, b"FACP");
    assert_eq!(fadt.len(), 276);
    let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
    assert_ne!(flags & (1 << 20), 0, "hardware-reduced");
    assert_eq!(
        u64::from_le_bytes(fadt[248..256].try_into().unwrap()),
        SLEEP_BASE
    );
    let madt = find(&ts, b"APIC");
    let e = madt_entries(&madt);
    assert_eq!(
        e.iter().filter(|(t, _)| *t == 0).count(),
        1,
        "one local APIC"
    );
    assert_eq!(e.iter().filter(|(t, _)| *t == 1).count(), 1, "one IOAPIC");
    let isos: Vec<(u8, u32, u16)> = e
        .iter()
        .filter(|(t, _)| *t == 2)
        .map(|(_, b)| {
            (
                b[3],
                u32::from_le_bytes(b[4..8].try_into().unwrap()),
                u16::from_le_bytes(b[8..10].try_into().unwrap()),
            )
        })
        .collect();
    // IRQ0 -> GSI 2; the two disks' lines (slots 7 and 6: lines 12 and 11) level/high.
    assert_eq!(isos, vec![(0, 2, 0), (11, 11, 0xd), (12, 12, 0xd)]);
    let dsdt = find(&ts, b"DSDT");
    let hits = dsdt.windows(8).filter(|w| w == b"LNRO0005").count();
    assert_eq!(hits, 2, "one LNRO0005 device per transport in use");
}

#[test]
fn pc_tables_round_trip() {
    let t = tables(MachineType::Pc, 2);
    let ts = walk(&t);
    let fadt = find(&ts, b"FACP");
    let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
    assert_eq!(flags & (1 << 20), 0, "full hardware");
    assert_eq!(u32::from_le_bytes(fadt[64..68].try_into().unwrap()), 0x604);
    assert_eq!(u32::from_le_bytes(fadt[76..80].try_into().unwrap()), 0x608);
    assert_eq!(u16::from_le_bytes(fadt[46..48].try_into().unwrap()), 9);
    let facs = u32::from_le_bytes(fadt[36..40].try_into().unwrap()) as u64;
    let off = (facs - t.base) as usize;
    assert_eq!(&t.bytes[off..off + 4], b"FACS");
    assert_eq!(
        u64::from_le_bytes(fadt[132..140].try_into().unwrap()),
        0,
        "X_FIRMWARE_CTRL is zero when FIRMWARE_CTRL is set"
    );
    let madt = find(&ts, b"APIC");
    let isos: Vec<(u8, u16)> = madt_entries(&madt)
        .iter()
        .filter(|(t, _)| *t == 2)
        .map(|(_, b)| (b[3], u16::from_le_bytes(b[8..10].try_into().unwrap())))
        .collect();
    assert_eq!(isos, vec![(0, 0), (9, 0xd), (10, 0xf), (11, 0xf)]);
}

/// The DSDT decodes with ACPICA's disassembler (`iasl -d`, Debian's acpica-tools, installed by
/// scripts/setup.sh), and says what we meant.
#[test]
fn dsdt_decodes_with_iasl() {
    for (machine, want) in [
        (MachineType::Microvm, &["LNRO0005", "PNP0501", "_S5_"][..]),
        (MachineType::Pc, &["PNP0A03", "_PRT", "PNP0B00", "_S5_"][..]),
    ] {
        let t = tables(machine, 1);
        let ts = walk(&t);
        let dsdt = find(&ts, b"DSDT");
        let dir =
            std::env::temp_dir().join(format!("tci64-dsdt-{}-{machine:?}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let aml = dir.join("dsdt.aml");
        std::fs::write(&aml, &dsdt).unwrap();
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&aml)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run iasl ({e}): run scripts/setup.sh (acpica-tools)")
            });
        let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap_or_else(|e| {
            panic!(
                "iasl -d wrote no dsdt.dsl ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(out.status.success(), "iasl -d failed: {dsl}");
        for w in want {
            assert!(dsl.contains(w), "{machine:?} DSDT lacks {w}:\n{dsl}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
