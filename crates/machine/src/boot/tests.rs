//! Loader tests on the real guest kernels and on broken variants of them.

use super::bzimage::{off as hdr, SetupHeader};
use super::params::{off as zp_off, ZeroPage, ZERO_PAGE_SIZE};
use super::*;
use crate::memmap::{E820Entry, MemoryMap};

const MIB: u64 = 1 << 20;

/// The bundled guest (`guest/` at the repository root).
fn bundled(name: &str) -> Vec<u8> {
    let p = format!("{}/../../guest/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read the bundled guest file {p}: {e}"))
}

/// Debian's stock kernel and its initramfs, as `scripts/fetch-debian-kernel.sh` (run by
/// `scripts/setup.sh`) leaves them in `.cache/debian/` at the repository root, or in
/// `TCI64_DEBIAN_DIR`. Missing = failure: whichever current Debian 6.1 kernel it is, the
/// tests read what they check from its header.
fn debian(name: &str) -> Vec<u8> {
    let dir = std::env::var("TCI64_DEBIAN_DIR")
        .unwrap_or_else(|_| format!("{}/../../.cache/debian", env!("CARGO_MANIFEST_DIR")));
    let p = format!("{dir}/{name}");
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!("cannot read Debian's kernel file {p}: {e} (run scripts/setup.sh, which fetches it)")
    })
}

fn tiny() -> Vec<u8> {
    bundled("tiny.bzImage")
}

fn ram_for(map: &MemoryMap) -> Vec<u8> {
    vec![0u8; map.low_ram_end() as usize]
}

fn zero_page(ram: &[u8], info: &BootInfo) -> ZeroPage {
    let z = info.rsi as usize;
    ZeroPage {
        bytes: ram[z..z + ZERO_PAGE_SIZE].to_vec(),
    }
}

fn cstr_at(ram: &[u8], addr: u64) -> &str {
    let a = addr as usize;
    let end = ram[a..].iter().position(|&b| b == 0).unwrap() + a;
    std::str::from_utf8(&ram[a..end]).unwrap()
}

fn load(
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    ram_bytes: u64,
) -> Result<(Vec<u8>, BootInfo), BootError> {
    let map = MemoryMap::new(ram_bytes, 1).unwrap();
    let mut ram = ram_for(&map);
    let info = load_linux(&mut ram, kernel, initrd, cmdline, &map)?;
    Ok((ram, info))
}

/// Checks shared by both real kernels.
fn check_common(
    kernel: &[u8],
    initrd: &[u8],
    ram: &[u8],
    info: &BootInfo,
    map: &MemoryMap,
    cmdline: &str,
) {
    let h = SetupHeader::parse(kernel).unwrap();
    // CPU state.
    assert_eq!(info.entry_rip, 0x100200);
    assert_eq!(info.rsi, ZERO_PAGE_ADDR);
    assert_eq!(info.cs, 0x10);
    assert_eq!(info.ds, 0x18);
    assert_eq!(info.cr0 & 0x8000_0001, 0x8000_0001);
    assert_eq!(info.cr4 & 0x20, 0x20);
    assert_eq!(info.efer & 0x500, 0x500);
    assert_eq!(info.rflags & 0x200, 0, "IF must be clear");
    assert_eq!(info.format, KernelFormat::BzImage);
    // The protected-mode kernel at 1 MiB, byte for byte.
    assert_eq!(info.load_addr, 0x100000);
    let pm = &kernel[h.pm_offset..];
    assert_eq!(info.load_size, pm.len() as u64);
    assert_eq!(&ram[0x100000..0x100000 + pm.len()], pm);
    // Zero page.
    let zp = zero_page(ram, info);
    assert_eq!(zp.u16(hdr::BOOT_FLAG), 0xAA55);
    assert_eq!(&zp.bytes[hdr::HEADER..hdr::HEADER + 4], b"HdrS");
    assert_eq!(zp.u16(hdr::VERSION), h.version);
    // Header fields we do not touch are the image's.
    for o in [
        hdr::SETUP_SECTS,
        hdr::SYSSIZE,
        hdr::KERNEL_ALIGNMENT,
        hdr::XLOADFLAGS,
        hdr::CMDLINE_SIZE,
        hdr::PREF_ADDRESS,
        hdr::INIT_SIZE,
        hdr::INITRD_ADDR_MAX,
    ] {
        assert_eq!(
            zp.u32(o),
            u32::from_le_bytes(kernel[o..o + 4].try_into().unwrap())
        );
    }
    assert_eq!(zp.u8(zp_off::SENTINEL), 0, "sentinel must be 0");
    assert_eq!(zp.u8(hdr::TYPE_OF_LOADER), 0xFF);
    assert_eq!(zp.u8(hdr::LOADFLAGS), 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    assert_eq!(zp.u16(hdr::HEAP_END_PTR), 0xFE00);
    assert_eq!(zp.u32(hdr::CODE32_START), 0x100000);
    assert_eq!(zp.u64(hdr::SETUP_DATA), 0);
    assert_eq!(zp.u32(hdr::HARDWARE_SUBARCH), 0);
    // Nothing beyond the header was copied from the image (e.g. the real-mode code after it).
    assert!(zp.bytes[0x290..]
        .iter()
        .take(0x2D0 - 0x290)
        .all(|&b| b == 0));
    // Command line.
    assert_eq!(zp.u32(hdr::CMD_LINE_PTR) as u64, CMDLINE_ADDR);
    assert_eq!(zp.u32(zp_off::EXT_CMD_LINE_PTR), 0);
    assert_eq!(cstr_at(ram, CMDLINE_ADDR), cmdline);
    assert_eq!(info.cmdline_len, cmdline.len());
    // Initrd: page-aligned, at the top of RAM, above the kernel, bytes intact.
    let rd = info.initrd.unwrap();
    assert_eq!(rd.size, initrd.len() as u64);
    assert_eq!(rd.addr % 4096, 0);
    assert!(rd.addr + rd.size <= map.low_ram_end());
    assert!(map.low_ram_end() - (rd.addr + rd.size) < 4096);
    assert!(rd.addr >= info.kernel_end);
    assert_eq!(zp.u32(hdr::RAMDISK_IMAGE) as u64, rd.addr);
    assert_eq!(zp.u32(hdr::RAMDISK_SIZE) as u64, rd.size);
    assert_eq!(zp.u32(zp_off::EXT_RAMDISK_IMAGE), 0);
    let a = rd.addr as usize;
    assert_eq!(&ram[a..a + initrd.len()], initrd);
    // e820.
    assert_eq!(zp.e820(), map.e820());
    assert_eq!(
        zp.e820()[0],
        E820Entry {
            addr: 0,
            size: 0x9fc00,
            typ: 1
        }
    );
    assert_eq!(
        zp.u32(zp_off::ALT_MEM_K) as u64,
        (map.low_ram_end() - MIB) / 1024
    );
    // Page tables: identity over the kernel, zero page, command line, initrd, MMIO.
    let tr = |a: u64| pagetables::translate(ram, info.cr3, a);
    for a in [
        0,
        ZERO_PAGE_ADDR,
        CMDLINE_ADDR,
        info.entry_rip,
        h.decompress_base(0x100000),
        info.kernel_end - 1,
        rd.addr,
        rd.addr + rd.size - 1,
        0xfeb00e00,
        0xffff_f000,
    ] {
        assert_eq!(tr(a), Some(a), "identity mapping of {a:#x}");
    }
    // GDT.
    assert_eq!(info.gdt_base, GDT_ADDR);
    assert_eq!(info.gdt_limit, 31);
    for (i, d) in BOOT_GDT.iter().enumerate() {
        let o = info.gdt_base as usize + i * 8;
        assert_eq!(u64::from_le_bytes(ram[o..o + 8].try_into().unwrap()), *d);
    }
    assert_eq!(
        u64::from_le_bytes(ram[0x10 + GDT_ADDR as usize..][..8].try_into().unwrap()),
        info.cs_descriptor
    );
    // BIOS data area.
    assert_eq!(u16::from_le_bytes([ram[0x40E], ram[0x40F]]), 0x9FC0);
    assert_eq!(u16::from_le_bytes([ram[0x413], ram[0x414]]), 639);
    assert!(CMDLINE_ADDR + (cmdline.len() as u64) < 0x9f000);
}

#[test]
fn tiny_header() {
    let h = SetupHeader::parse(&tiny()).unwrap();
    assert_eq!(h.version, 0x020F);
    assert_eq!(h.setup_sects, 31);
    assert_eq!(h.pm_offset, 32 * 512);
    assert_eq!(u64::from(h.syssize) * 16, 1422336);
    assert_eq!(h.loadflags & 1, 1);
    assert_eq!(h.xloadflags, 0x21);
    assert!(!h.relocatable_kernel);
    assert_eq!(h.kernel_alignment, 0x200000);
    assert_eq!(h.pref_address, 0x1000000);
    assert_eq!(h.init_size, 0xbc4000);
    assert_eq!(h.cmdline_size, 2047);
    assert_eq!(h.initrd_addr_max, 0x7fffffff);
    assert_eq!(h.code32_start, 0x100000);
    assert_eq!(h.header_end, 0x26C);
    assert!(h
        .kernel_version
        .as_deref()
        .unwrap()
        .starts_with("6.1.192 (guest@debian) #1"));
    // Not relocatable: decompressed at pref_address whatever the load address.
    assert_eq!(h.decompress_base(0x100000), 0x1000000);
}

#[test]
fn tiny_loads() {
    let kernel = tiny();
    let initrd = bundled("initramfs.cpio.gz");
    let map = MemoryMap::new(256 * MIB, 1).unwrap();
    let cmdline = kernel_cmdline("console=ttyS0 panic=-1 reboot=t guest.test=1", &map);
    assert_eq!(
        cmdline,
        "console=ttyS0 panic=-1 reboot=t guest.test=1 virtio_mmio.device=512@0xfeb00e00:12"
    );
    let mut ram = ram_for(&map);
    let info = load_linux(&mut ram, &kernel, Some(&initrd), &cmdline, &map).unwrap();
    check_common(&kernel, &initrd, &ram, &info, &map, &cmdline);
    assert!(!info.relocatable);
    assert_eq!(info.kernel_end, 0x1000000 + 0xbc4000);
    assert_eq!(info.protocol, 0x020F);
    assert_eq!(
        info.initrd.unwrap().addr,
        (256 * MIB - initrd.len() as u64) & !0xfff
    );
}

#[test]
fn debian_loads() {
    let kernel = debian("vmlinuz");
    let initrd = debian("initramfs.cpio.gz");
    let h = SetupHeader::parse(&kernel).unwrap();
    assert!(h.relocatable_kernel);
    // 64-bit entry, kernel and initrd above 4G, EFI handovers, KEXEC: every stock kernel.
    assert_eq!(h.xloadflags, 0x7f);
    let version = h.kernel_version.clone().unwrap();
    assert!(
        version.starts_with("6.1.0-") && version.contains("-amd64"),
        "{version}"
    );
    // A decompressed Debian kernel needs tens of MiB (66 MB for 6.1.0-56).
    assert!(
        h.init_size > 32 << 20 && h.init_size < 256 << 20,
        "{:#x}",
        h.init_size
    );
    // Relocatable: 1 MiB rounded up to 2 MiB is below LOAD_PHYSICAL_ADDR, so 16 MiB it is.
    assert_eq!(h.decompress_base(0x100000), 0x1000000);
    assert_eq!(h.decompress_base(0x2100000), 0x2200000);
    let map = MemoryMap::new(512 * MIB, 1).unwrap();
    let cmdline = "console=ttyS0 panic=-1 reboot=t guest.test=1 nokaslr";
    let mut ram = ram_for(&map);
    let info = load_linux(&mut ram, &kernel, Some(&initrd), cmdline, &map).unwrap();
    check_common(&kernel, &initrd, &ram, &info, &map, cmdline);
    assert!(info.relocatable);
    assert_eq!(info.kernel_end, 0x1000000 + u64::from(h.init_size));
    // The image has bytes beyond syssize * 16 (a signature): loaded anyway, harmless.
    assert!(info.load_size > u64::from(h.syssize) * 16);
}

#[test]
fn debian_needs_its_init_size() {
    let kernel = debian("vmlinuz");
    let need = 0x1000000 + u64::from(SetupHeader::parse(&kernel).unwrap().init_size);
    // One MiB short of what it needs, then enough.
    let err = load(&kernel, None, "", (need / MIB - 1) * MIB).unwrap_err();
    assert!(
        matches!(err, BootError::KernelDoesNotFit { need: n, .. } if n == need),
        "{err:?}"
    );
    assert!(load(&kernel, None, "", need.next_multiple_of(MIB) + 16 * MIB).is_ok());
}

#[test]
fn no_initrd_and_empty_cmdline() {
    let (ram, info) = load(&tiny(), None, "", 64 * MIB).unwrap();
    let zp = zero_page(&ram, &info);
    assert_eq!(info.initrd, None);
    assert_eq!(zp.u32(hdr::RAMDISK_IMAGE), 0);
    assert_eq!(zp.u32(hdr::RAMDISK_SIZE), 0);
    assert_eq!(cstr_at(&ram, CMDLINE_ADDR), "");
    // An empty initrd is no initrd.
    let (_, info) = load(&tiny(), Some(&[]), "", 64 * MIB).unwrap();
    assert_eq!(info.initrd, None);
}

#[test]
fn ram_above_4g_is_in_e820_only() {
    let map = MemoryMap::new(5 << 30, 0).unwrap();
    // The loader only needs the part below the hole.
    let mut ram = vec![0u8; map.low_ram_end() as usize];
    let info = load_linux(&mut ram, &tiny(), Some(b"rd"), "x", &map).unwrap();
    let zp = zero_page(&ram, &info);
    let e = zp.e820();
    assert_eq!(
        *e.last().unwrap(),
        E820Entry {
            addr: 1 << 32,
            size: 2 << 30,
            typ: 1
        }
    );
    // initrd_addr_max = 0x7fffffff: the initrd ends at 2 GiB, not at 3 GiB.
    let rd = info.initrd.unwrap();
    assert_eq!(rd.addr, 0x8000_0000 - 4096);
}

// ---- malformed input -------------------------------------------------------------------------

fn err(kernel: &[u8]) -> BootError {
    load(kernel, None, "console=ttyS0", 256 * MIB).unwrap_err()
}

#[test]
fn text_file() {
    let text = b"#!/bin/sh\necho this is not a kernel\n".repeat(40);
    let e = err(&text);
    assert!(
        matches!(e, BootError::NoBootFlag { text: true, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("text file"), "{e}");
    let e = err(b"hello\n");
    assert_eq!(e, BootError::TooShort { len: 6, text: true });
    let e = err(&[]);
    assert_eq!(
        e,
        BootError::TooShort {
            len: 0,
            text: false
        }
    );
    let e = err(&[0u8; 4096]);
    assert!(
        matches!(
            e,
            BootError::NoBootFlag {
                found: 0,
                text: false
            }
        ),
        "{e:?}"
    );
}

#[test]
fn truncated() {
    let k = tiny();
    let e = err(&k[..k.len() - 1]);
    assert_eq!(
        e,
        BootError::Truncated {
            have: 1422335,
            want: 1422336
        }
    );
    assert!(e.to_string().contains("truncated"), "{e}");
    // Cut inside the setup code.
    let e = err(&k[..8192]);
    assert!(matches!(e, BootError::SetupBeyondFile { .. }), "{e:?}");
    // Cut inside the header.
    let e = err(&k[..0x250]);
    assert!(matches!(e, BootError::TooShort { len: 0x250, .. }), "{e:?}");
}

fn patched(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut k = tiny();
    f(&mut k);
    k
}

#[test]
fn bad_headers() {
    let e = err(&patched(|k| {
        k[hdr::VERSION..hdr::VERSION + 2].copy_from_slice(&[0x0B, 2])
    }));
    assert_eq!(e, BootError::ProtocolTooOld { version: 0x020B });
    assert!(e.to_string().contains("2.11"), "{e}");
    let e = err(&patched(|k| k[hdr::HEADER] = b'X'));
    assert_eq!(e, BootError::NoHdrS);
    let e = err(&patched(|k| k[hdr::XLOADFLAGS] &= !1));
    assert_eq!(e, BootError::No64BitEntry { xloadflags: 0x20 });
    let e = err(&patched(|k| k[hdr::LOADFLAGS] &= !1));
    assert_eq!(e, BootError::NotLoadedHigh);
    let e = err(&patched(|k| k[hdr::BOOT_FLAG] = 0));
    assert!(matches!(e, BootError::NoBootFlag { .. }), "{e:?}");
    let e = err(&patched(|k| {
        k[hdr::RELOCATABLE_KERNEL] = 1;
        k[hdr::KERNEL_ALIGNMENT..hdr::KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x30_0000u32.to_le_bytes());
    }));
    assert_eq!(e, BootError::BadAlignment(0x30_0000));
    let e = err(&patched(|k| {
        k[hdr::INIT_SIZE..hdr::INIT_SIZE + 4].fill(0);
    }));
    assert_eq!(e, BootError::NoInitSize);
    // setup_sects = 0 means 4: the protected-mode part then starts at 2560 and is far longer
    // than syssize says, which is accepted; the header still parses.
    let h = SetupHeader::parse(&patched(|k| k[hdr::SETUP_SECTS] = 0)).unwrap();
    assert_eq!(h.setup_sects, 4);
    assert_eq!(h.pm_offset, 2560);
}

#[test]
fn cmdline_too_long() {
    let long = "x".repeat(2048);
    let e = load(&tiny(), None, &long, 256 * MIB).unwrap_err();
    assert_eq!(
        e,
        BootError::CmdlineTooLong {
            len: 2048,
            max: 2047
        }
    );
    assert!(load(&tiny(), None, &long[..2047], 256 * MIB).is_ok());
    let e = load(&tiny(), None, "a\0b", 256 * MIB).unwrap_err();
    assert_eq!(e, BootError::CmdlineHasNul(1));
}

#[test]
fn ram_too_small() {
    // tiny needs 16 MiB + init_size (11.8 MiB) = 27.8 MiB.
    let e = load(&tiny(), None, "", 24 * MIB).unwrap_err();
    assert_eq!(
        e,
        BootError::KernelDoesNotFit {
            need: 0x1bc4000,
            have: 24 * MIB,
            what: "decompressed at 0x1000000, init_size 0xbc4000".into()
        }
    );
    let msg = e.to_string();
    assert!(msg.contains("28 MiB") && msg.contains("24 MiB"), "{msg}");
    assert!(load(&tiny(), None, "", 28 * MIB).is_ok());
    // The RAM buffer shorter than the map says.
    let map = MemoryMap::new(64 * MIB, 0).unwrap();
    let mut ram = vec![0u8; 32 << 20];
    let e = load_linux(&mut ram, &tiny(), None, "", &map).unwrap_err();
    assert_eq!(
        e,
        BootError::RamSliceTooSmall {
            len: 32 << 20,
            need: 64 * MIB
        }
    );
}

#[test]
fn initrd_too_large() {
    // 64 MiB of RAM, kernel up to 0x1bc4000 (27.8 MiB): 36 MiB left.
    let big = vec![0u8; 37 << 20];
    let e = load(&tiny(), Some(&big), "", 64 * MIB).unwrap_err();
    assert_eq!(
        e,
        BootError::InitrdTooBig {
            size: 37 << 20,
            kernel_end: 0x1bc4000,
            limit: 64 * MIB
        }
    );
    let fits = vec![0u8; 36 << 20];
    let (_, info) = load(&tiny(), Some(&fits), "", 64 * MIB).unwrap();
    assert_eq!(info.initrd.unwrap().addr, 28 * MIB);
    // Larger than all of RAM.
    let e = load(&tiny(), Some(&big), "", 32 * MIB).unwrap_err();
    assert!(matches!(e, BootError::InitrdTooBig { .. }), "{e:?}");
}

#[test]
fn nothing_written_on_error() {
    let map = MemoryMap::new(64 * MIB, 0).unwrap();
    let mut ram = ram_for(&map);
    let big = vec![1u8; 60 << 20];
    load_linux(&mut ram, &tiny(), Some(&big), "", &map).unwrap_err();
    assert!(ram.iter().all(|&b| b == 0));
}

#[test]
fn machine_error_names_the_file() {
    let e = err(b"just some text\n").for_file("/tmp/notes.txt");
    let msg = e.to_string();
    assert!(msg.starts_with("/tmp/notes.txt: "), "{msg}");
    assert!(msg.contains("text file"), "{msg}");
    let e = crate::MachineError::from(MemoryMap::new(1, 0).unwrap_err());
    assert!(e.to_string().contains("too small"), "{e}");
}

// ---- ELF vmlinux -----------------------------------------------------------------------------

/// A minimal x86-64 vmlinux look-alike: two PT_LOADs linked at 0xffffffff81000000 and loaded at
/// 16 MiB, and a PT_NOTE; entry = physical address of the first byte (`phys_startup_64`).
fn make_elf(entry: u64, machine: u16) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
    f[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
    f[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
    f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    f[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
    let ph = |f: &mut Vec<u8>, i: usize, t: u32, off: u64, va: u64, pa: u64, fs: u64, ms: u64| {
        let o = 64 + i * 56;
        f[o..o + 4].copy_from_slice(&t.to_le_bytes());
        f[o + 8..o + 16].copy_from_slice(&off.to_le_bytes());
        f[o + 16..o + 24].copy_from_slice(&va.to_le_bytes());
        f[o + 24..o + 32].copy_from_slice(&pa.to_le_bytes());
        f[o + 32..o + 40].copy_from_slice(&fs.to_le_bytes());
        f[o + 40..o + 48].copy_from_slice(&ms.to_le_bytes());
    };
    ph(
        &mut f,
        0,
        1,
        0x400,
        0xffff_ffff_8100_0000,
        0x100_0000,
        0x200,
        0x200,
    );
    ph(&mut f, 1, 4, 0x600, 0, 0, 0x10, 0x10);
    ph(
        &mut f,
        2,
        1,
        0x800,
        0xffff_ffff_8120_0000,
        0x120_0000,
        0x100,
        0x3000,
    );
    for (i, b) in f[0x400..0x600].iter_mut().enumerate() {
        *b = i as u8 | 1;
    }
    f[0x800..0x900].fill(0xEE);
    f
}

#[test]
fn elf_vmlinux() {
    let map = MemoryMap::new(64 * MIB, 0).unwrap();
    for entry in [0x100_0000u64, 0xffff_ffff_8100_0000] {
        let k = make_elf(entry, 62);
        let mut ram = ram_for(&map);
        ram[0x120_0100..0x120_3000].fill(0x55); // must be zeroed (bss)
        let info = load_linux(&mut ram, &k, Some(b"initrd"), "console=ttyS0", &map).unwrap();
        assert_eq!(info.format, KernelFormat::Elf);
        assert_eq!(info.entry_rip, 0x100_0000);
        assert_eq!(info.load_addr, 0x100_0000);
        assert_eq!(info.kernel_end, 0x120_3000);
        assert_eq!(&ram[0x100_0000..0x100_0200], &k[0x400..0x600]);
        assert!(ram[0x120_0000..0x120_0100].iter().all(|&b| b == 0xEE));
        assert!(ram[0x120_0100..0x120_3000].iter().all(|&b| b == 0));
        let zp = zero_page(&ram, &info);
        assert_eq!(zp.u16(hdr::BOOT_FLAG), 0xAA55);
        assert_eq!(&zp.bytes[hdr::HEADER..hdr::HEADER + 4], b"HdrS");
        assert_eq!(zp.u16(hdr::VERSION), 0x020F);
        assert_eq!(zp.u16(hdr::XLOADFLAGS) & 1, 1);
        assert_eq!(zp.u32(hdr::CMD_LINE_PTR) as u64, CMDLINE_ADDR);
        assert_eq!(zp.u32(hdr::CODE32_START), 0x100_0000);
        assert_eq!(zp.u32(hdr::RAMDISK_SIZE), 6);
        assert_eq!(cstr_at(&ram, CMDLINE_ADDR), "console=ttyS0");
        assert_eq!(
            pagetables::translate(&ram, info.cr3, 0x100_0000),
            Some(0x100_0000)
        );
    }
}

#[test]
fn elf_errors() {
    let map = MemoryMap::new(64 * MIB, 0).unwrap();
    let run = |k: &[u8]| {
        let mut ram = ram_for(&map);
        load_linux(&mut ram, k, None, "", &map).unwrap_err()
    };
    let e = run(&make_elf(0x100_0000, 3));
    assert!(e.to_string().contains("not x86-64"), "{e}");
    let mut k = make_elf(0x100_0000, 62);
    k[4] = 1;
    assert!(run(&k).to_string().contains("64-bit"));
    let k = make_elf(0x100_0000, 62);
    let e = run(&k[..0x880]);
    assert!(e.to_string().contains("truncated"), "{e}");
    let e = run(&k[..40]);
    assert!(e.to_string().contains("shorter than an ELF header"), "{e}");
    let e = run(&make_elf(0x5000_0000, 62));
    assert!(e.to_string().contains("entry point"), "{e}");
    let mut k = make_elf(0x100_0000, 62);
    k[64 + 24..64 + 32].copy_from_slice(&0x8000u64.to_le_bytes());
    assert!(run(&k).to_string().contains("below 1 MiB"));
    // A kernel beyond RAM.
    let map16 = MemoryMap::new(16 * MIB, 0).unwrap();
    let mut ram = ram_for(&map16);
    let e = load_linux(&mut ram, &make_elf(0x100_0000, 62), None, "", &map16).unwrap_err();
    assert!(matches!(e, BootError::KernelDoesNotFit { .. }), "{e:?}");
}

#[test]
fn bundled_guest_is_complete() {
    assert_eq!(tiny().len(), 1438720);
    assert_eq!(bundled("initramfs.cpio.gz").len(), 1030066);
    let disk = bundled("disk.ext2.gz");
    assert_eq!(&disk[..2], &[0x1f, 0x8b], "disk.ext2.gz is not gzip");
    assert_eq!(
        String::from_utf8(bundled("disk.sha256")).unwrap(),
        "47455ce63bf884becf27b6ad619f4bff29391a9135df8120228080aa7a960786  blob.bin\n"
    );
    let sums = String::from_utf8(bundled("SHA256SUMS")).unwrap();
    for f in [
        "tiny.bzImage",
        "initramfs.cpio.gz",
        "disk.ext2.gz",
        "disk.sha256",
        "tiny.config",
        "init.sh",
    ] {
        assert!(sums.contains(&format!("  {f}\n")), "SHA256SUMS lacks {f}");
    }
}
