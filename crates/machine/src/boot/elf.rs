//! An uncompressed ELF `vmlinux` as a second kernel format.
//!
//! Its `PT_LOAD` segments are copied to their physical addresses (`p_paddr`), and the CPU enters
//! at the physical address of the entry point: `e_entry` itself when it lies in a segment's
//! physical range (x86-64 vmlinux links `ENTRY(phys_startup_64)`), else `e_entry` translated from
//! the virtual range of the segment holding it. There is no setup header, so the zero page gets
//! one made up of the values a 6.1 bzImage would carry.

use super::bzimage::{off, CAN_USE_HEAP, LOADED_HIGH, XLF_KERNEL_64};
use super::params::ZeroPage;
use super::{BootError, KernelFormat, Plan};
use crate::memmap::HIGH_MEMORY_START;

pub(super) const MAGIC: &[u8] = b"\x7fELF";
const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
/// The boot protocol the made-up header claims.
const PROTOCOL: u16 = 0x020F;
const CMDLINE_SIZE: u32 = 2047;
const INITRD_ADDR_MAX: u32 = 0x7FFF_FFFF;
const KERNEL_ALIGNMENT: u32 = 0x20_0000;

fn bad(s: impl Into<String>) -> BootError {
    BootError::Elf(s.into())
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

struct Seg {
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

pub(super) fn plan(image: &[u8]) -> Result<Plan, BootError> {
    if image.len() < 64 {
        return Err(bad(format!(
            "the file is {} bytes, shorter than an ELF header",
            image.len()
        )));
    }
    if image[4] != 2 {
        return Err(bad("not a 64-bit ELF (EI_CLASS is not ELFCLASS64)"));
    }
    if image[5] != 1 {
        return Err(bad("not little-endian (EI_DATA is not ELFDATA2LSB)"));
    }
    let short = || bad("truncated ELF header");
    let machine = u16_at(image, 0x12).ok_or_else(short)?;
    if machine != EM_X86_64 {
        return Err(bad(format!("e_machine is {machine}, not x86-64 (62)")));
    }
    let entry = u64_at(image, 0x18).ok_or_else(short)?;
    let phoff = u64_at(image, 0x20).ok_or_else(short)?;
    let phentsize = u16_at(image, 0x36).ok_or_else(short)?;
    let phnum = u16_at(image, 0x38).ok_or_else(short)?;
    if phentsize < 56 {
        return Err(bad(format!("e_phentsize {phentsize} is below 56")));
    }
    let mut segs = Vec::new();
    for i in 0..u64::from(phnum) {
        let o = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o.checked_add(56).is_some_and(|e| e <= image.len()))
            .ok_or_else(|| {
                bad(format!(
                    "program header {i} lies beyond the end of the file"
                ))
            })?;
        let p_type = u32_at(image, o).ok_or_else(short)?;
        if p_type != PT_LOAD {
            continue;
        }
        let s = Seg {
            offset: u64_at(image, o + 8).ok_or_else(short)?,
            vaddr: u64_at(image, o + 0x10).ok_or_else(short)?,
            paddr: u64_at(image, o + 0x18).ok_or_else(short)?,
            filesz: u64_at(image, o + 0x20).ok_or_else(short)?,
            memsz: u64_at(image, o + 0x28).ok_or_else(short)?,
        };
        if s.memsz == 0 {
            continue;
        }
        if s.filesz > s.memsz {
            return Err(bad(format!(
                "segment {i}: p_filesz {:#x} > p_memsz {:#x}",
                s.filesz, s.memsz
            )));
        }
        if s.offset
            .checked_add(s.filesz)
            .is_none_or(|e| e > image.len() as u64)
        {
            return Err(bad(format!(
                "segment {i}: file bytes {:#x}+{:#x} run past the end of the {}-byte file (truncated?)",
                s.offset,
                s.filesz,
                image.len()
            )));
        }
        if s.paddr < HIGH_MEMORY_START || s.paddr.checked_add(s.memsz).is_none() {
            return Err(bad(format!(
                "segment {i}: physical address {:#x} is below 1 MiB (where the boot data lives) or wraps",
                s.paddr
            )));
        }
        segs.push(s);
    }
    if segs.is_empty() {
        return Err(bad("no PT_LOAD segments"));
    }
    let mut sorted: Vec<&Seg> = segs.iter().collect();
    sorted.sort_by_key(|s| s.paddr);
    for w in sorted.windows(2) {
        if w[0].paddr + w[0].memsz > w[1].paddr {
            return Err(bad(format!(
                "segments at {:#x} and {:#x} overlap",
                w[0].paddr, w[1].paddr
            )));
        }
    }
    let phys_entry = segs
        .iter()
        .find(|s| entry >= s.paddr && entry - s.paddr < s.memsz)
        .map(|_| entry)
        .or_else(|| {
            segs.iter()
                .find(|s| entry >= s.vaddr && entry - s.vaddr < s.memsz)
                .map(|s| entry - s.vaddr + s.paddr)
        })
        .ok_or_else(|| bad(format!("entry point {entry:#x} is in no PT_LOAD segment")))?;
    let start = sorted[0].paddr;
    let end = sorted
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .unwrap_or(start);
    if end > u64::from(u32::MAX) {
        return Err(bad(format!(
            "the kernel reaches {end:#x}, above 4 GiB; only kernels below 4 GiB can be loaded"
        )));
    }

    // A made-up setup header, so that the kernel finds what a bzImage's would say.
    let mut zp = ZeroPage::new();
    zp.set_u16(off::BOOT_FLAG, 0xAA55);
    zp.set_u8(off::JUMP, 0xEB);
    zp.set_u8(off::JUMP + 1, (off::HEADER_END_6_1 - off::HEADER) as u8);
    zp.bytes[off::HEADER..off::HEADER + 4].copy_from_slice(b"HdrS");
    zp.set_u16(off::VERSION, PROTOCOL);
    zp.set_u8(off::LOADFLAGS, LOADED_HIGH | CAN_USE_HEAP);
    zp.set_u32(off::INITRD_ADDR_MAX, INITRD_ADDR_MAX);
    zp.set_u32(off::KERNEL_ALIGNMENT, KERNEL_ALIGNMENT);
    zp.set_u8(off::MIN_ALIGNMENT, 21);
    zp.set_u16(off::XLOADFLAGS, XLF_KERNEL_64);
    zp.set_u32(off::CMDLINE_SIZE, CMDLINE_SIZE);
    zp.set_u64(off::PREF_ADDRESS, start);
    zp.set_u32(off::INIT_SIZE, (end - start) as u32);
    zp.set_u16(0x1FA, 0xFFFF); // vid_mode: "normal"

    Ok(Plan {
        format: KernelFormat::Elf,
        protocol: PROTOCOL,
        kernel_version: None,
        relocatable: false,
        segments: segs
            .iter()
            .map(|s| {
                let o = s.offset as usize;
                (s.paddr, o..o + s.filesz as usize, s.memsz - s.filesz)
            })
            .collect(),
        load_addr: start,
        load_size: end - start,
        entry: phys_entry,
        kernel_end: end,
        what: format!("ELF segments {start:#x}..{end:#x}"),
        cmdline_size: u64::from(CMDLINE_SIZE),
        initrd_addr_max: u64::from(INITRD_ADDR_MAX),
        zero_page: zp,
    })
}
