//! Direct Linux boot: load a bzImage (or an ELF vmlinux) and its initrd into guest RAM, fill in
//! the zero page, build identity page tables and a GDT, and say where the CPU must start.
//!
//! This follows the 64-bit boot protocol of `Documentation/arch/x86/boot.rst`: no firmware and
//! no real-mode setup code run. The protected-mode kernel goes to 1 MiB (`code32_start`), the CPU
//! starts in long mode at load address + 0x200 (`startup_64` of the decompressor) with RSI
//! pointing to `boot_params`. The decompressor then unpacks the kernel to `pref_address`
//! (`LOAD_PHYSICAL_ADDR`, 16 MiB) — or, for a relocatable kernel, to the load address rounded up
//! to `kernel_alignment` but not below 16 MiB, or wherever KASLR picks — so the kernel needs RAM
//! up to that address + `init_size`.
//!
//! Guest physical layout written by [`load_linux`] (all below 1 MiB is e820 RAM except the EBDA):
//!
//! | address | what |
//! |---|---|
//! | `0x40E`, `0x413` | BIOS data area: EBDA segment (0x9FC0) and base memory size (639 KiB) |
//! | [`GDT_ADDR`] `0x1000` | the boot GDT (null, null, `__BOOT_CS` 0x10, `__BOOT_DS` 0x18) |
//! | [`ZERO_PAGE_ADDR`] `0x7000` | `boot_params` |
//! | `0x8000..`[`STACK_TOP`] | a small boot stack (the decompressor sets up its own at once) |
//! | [`PAGE_TABLES_ADDR`] `0x9000` | PML4, PDPT, 4 page directories: identity map of 4 GiB, 2 MiB pages |
//! | [`CMDLINE_ADDR`] `0x20000` | the command line, NUL-terminated |
//! | [`KERNEL_LOAD_ADDR`] `0x100000` | the protected-mode kernel |
//! | top of RAM below `min(initrd_addr_max, RAM end)` | the initrd, page-aligned |
//!
//! Only RAM below 4 GiB is written, so `load_linux` takes that part of guest RAM as one slice;
//! RAM above 4 GiB is only described to the kernel, through the e820 table from the
//! [`MemoryMap`].

pub mod bzimage;
mod elf;
pub mod pagetables;
pub mod params;

#[cfg(test)]
mod tests;

use crate::memmap::{MemoryMap, EBDA_START, HIGH_MEMORY_START};
use crate::MachineError;
use bzimage::{off as hdr, protocol_str, SetupHeader, CAN_USE_HEAP};
use params::ZeroPage;
use thiserror::Error;

pub use pagetables::{
    BOOT_CS, BOOT_CS_DESCRIPTOR, BOOT_DS, BOOT_DS_DESCRIPTOR, BOOT_GDT, BOOT_GDT_LIMIT,
};

/// Where the boot GDT goes.
pub const GDT_ADDR: u64 = 0x1000;
/// Where `boot_params` (the zero page) goes.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial RSP (the stack grows down from here into 0x8000..0x8FF0).
pub const STACK_TOP: u64 = 0x8FF0;
/// Where the identity page tables go (CR3).
pub const PAGE_TABLES_ADDR: u64 = 0x9000;
/// Where the command line goes.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// The most command-line bytes (with the NUL) that fit below the EBDA page.
pub const CMDLINE_AREA: u64 = 0x9_F000 - CMDLINE_ADDR;
/// Where the protected-mode kernel goes (the bzImage `code32_start`).
pub const KERNEL_LOAD_ADDR: u64 = HIGH_MEMORY_START;
/// `type_of_loader`: 0xFF = "undefined" (no registered loader ID).
pub const TYPE_OF_LOADER: u8 = 0xFF;
/// `heap_end_ptr`: end of the setup heap relative to the real-mode code, minus 0x200 (unused by
/// the 64-bit entry, but the flag says it is valid, so make it what QEMU gives).
pub const HEAP_END_PTR: u16 = 0xFE00;

// The boot data must not overlap each other, the EBDA or the kernel.
const _: () = {
    assert!(GDT_ADDR + BOOT_GDT.len() as u64 * 8 <= ZERO_PAGE_ADDR);
    assert!(ZERO_PAGE_ADDR + params::ZERO_PAGE_SIZE as u64 <= 0x8000);
    assert!(STACK_TOP <= PAGE_TABLES_ADDR);
    assert!(PAGE_TABLES_ADDR + pagetables::PAGE_TABLES_SIZE <= CMDLINE_ADDR);
    assert!(CMDLINE_ADDR + CMDLINE_AREA <= EBDA_START);
    assert!(EBDA_START <= KERNEL_LOAD_ADDR);
};

/// CR0 at entry: PE | ET | PG.
pub const ENTRY_CR0: u64 = (1 << 0) | (1 << 4) | (1 << 31);
/// CR4 at entry: PAE.
pub const ENTRY_CR4: u64 = 1 << 5;
/// EFER at entry: LME | LMA.
pub const ENTRY_EFER: u64 = (1 << 8) | (1 << 10);
/// RFLAGS at entry: only the reserved bit 1 (IF = 0, DF = 0).
pub const ENTRY_RFLAGS: u64 = 0x2;

/// Why a kernel could not be loaded. The machine adds the file name ([`BootError::for_file`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BootError {
    #[error("not a Linux kernel: the file is only {len} bytes{}", text_hint(*.text))]
    TooShort { len: usize, text: bool },
    #[error("not a Linux bzImage or ELF vmlinux: no boot flag 0xAA55 at offset 0x1FE (found {found:#06x}){}", text_hint(*.text))]
    NoBootFlag { found: u16, text: bool },
    #[error("no \"HdrS\" signature at offset 0x202: a kernel older than boot protocol 2.00 (need 2.12 or newer)")]
    NoHdrS,
    #[error("boot protocol {} is too old: need 2.12 or newer (64-bit entry point)", protocol_str(*.version))]
    ProtocolTooOld { version: u16 },
    #[error("loadflags lacks LOADED_HIGH: a zImage, not a bzImage; only bzImages can be booted")]
    NotLoadedHigh,
    #[error("no 64-bit entry point (xloadflags {xloadflags:#x} lacks XLF_KERNEL_64): not an x86-64 kernel")]
    No64BitEntry { xloadflags: u16 },
    #[error("setup_sects = {setup_sects} puts the protected-mode kernel beyond the end of the {len}-byte file: truncated or not a bzImage")]
    SetupBeyondFile { setup_sects: u32, len: usize },
    #[error("truncated bzImage: the protected-mode kernel is {have} bytes, but the header (syssize) says {want}")]
    Truncated { have: u64, want: u64 },
    #[error("kernel_alignment {0:#x} is not a power of two")]
    BadAlignment(u32),
    #[error("init_size is 0: a broken header")]
    NoInitSize,
    #[error("the kernel needs RAM up to {need:#x} ({} MiB: {what}), but RAM below the MMIO hole ends at {have:#x} ({} MiB); give the machine more memory", mib(*.need), mib(*.have))]
    KernelDoesNotFit { need: u64, have: u64, what: String },
    #[error("the initrd ({size} bytes) does not fit in RAM between the kernel's end ({kernel_end:#x}) and {limit:#x} (min of initrd_addr_max + 1 and the end of RAM); give the machine more memory or use a smaller initrd")]
    InitrdTooBig {
        size: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error("the kernel command line is {len} bytes, but this kernel accepts at most {max} (cmdline_size)")]
    CmdlineTooLong { len: usize, max: u64 },
    #[error("the kernel command line contains a NUL byte at {0}")]
    CmdlineHasNul(usize),
    #[error("the guest RAM buffer is {len} bytes, but the memory map has RAM up to {need:#x} below 4 GiB")]
    RamSliceTooSmall { len: usize, need: u64 },
    #[error("bad ELF kernel: {0}")]
    Elf(String),
}

fn text_hint(text: bool) -> &'static str {
    if text {
        " (it looks like a text file)"
    } else {
        ""
    }
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

impl BootError {
    /// The machine-level error, naming the kernel file.
    pub fn for_file(self, kernel_name: &str) -> MachineError {
        MachineError::Boot {
            file: kernel_name.to_string(),
            source: self,
        }
    }
}

/// The kernel's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// A bzImage, entered at its 64-bit entry point (load address + 0x200).
    BzImage,
    /// An uncompressed ELF vmlinux, entered at its physical entry point (`startup_64`).
    Elf,
}

/// Where the initrd went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdPlacement {
    pub addr: u64,
    pub size: u64,
}

/// What the machine must do to the CPU, and what was loaded where.
///
/// CPU state at entry (64-bit boot protocol):
/// - CR0 = [`BootInfo::cr0`] (PE, ET, PG), CR4 = [`BootInfo::cr4`] (PAE),
///   EFER = [`BootInfo::efer`] (LME, LMA), CR3 = [`BootInfo::cr3`];
/// - GDTR = { [`BootInfo::gdt_base`], [`BootInfo::gdt_limit`] }, IDTR = { 0, 0 }, no LDT/TR needed;
/// - CS = 0x10 with the hidden part of [`BootInfo::cs_descriptor`] (base 0, 64-bit code, L=1,
///   DPL 0, CPL 0); DS = ES = SS = 0x18 ([`BootInfo::ds_descriptor`], flat read/write);
///   FS = GS = 0x18 or 0 (the kernel reloads them);
/// - RIP = [`BootInfo::entry_rip`], RSI = [`BootInfo::rsi`] (`boot_params`), RSP =
///   [`BootInfo::rsp`], RFLAGS = [`BootInfo::rflags`] (IF = 0), all other GPRs 0;
/// - interrupts off everywhere (8259s masked/uninitialised are fine; the kernel programs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub entry_rip: u64,
    /// RSI: guest physical address of `boot_params`.
    pub rsi: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    /// CS selector (`__BOOT_CS`).
    pub cs: u16,
    /// DS, ES, SS selector (`__BOOT_DS`).
    pub ds: u16,
    /// The GDT descriptor of CS, for loading the hidden segment state.
    pub cs_descriptor: u64,
    /// The GDT descriptor of DS/ES/SS.
    pub ds_descriptor: u64,
    pub format: KernelFormat,
    /// Boot protocol version of the image (0x020F = 2.15); for ELF, the one we emulate.
    pub protocol: u16,
    /// The `kernel_version` string of a bzImage.
    pub kernel_version: Option<String>,
    /// Where the image's kernel bytes were copied, and how many.
    pub load_addr: u64,
    pub load_size: u64,
    /// One past the last byte the kernel may use while booting (decompression target +
    /// `init_size`, or the ELF's end); the initrd lies above it.
    pub kernel_end: u64,
    pub relocatable: bool,
    pub cmdline_addr: u64,
    /// Command-line length without the NUL.
    pub cmdline_len: usize,
    pub initrd: Option<InitrdPlacement>,
}

/// The command line the kernel gets: the user's, then one `virtio_mmio.device=` per disk (as
/// QEMU's microvm appends them).
pub fn kernel_cmdline(user: &str, map: &MemoryMap) -> String {
    let mut s = user.trim_end().to_string();
    for a in map.virtio_cmdline_args() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&a);
    }
    s
}

/// What the loaded kernel looks like, before anything is written.
struct Plan {
    format: KernelFormat,
    protocol: u16,
    kernel_version: Option<String>,
    relocatable: bool,
    /// (guest physical address, bytes, bytes of zeros after them) to copy.
    segments: Vec<(u64, std::ops::Range<usize>, u64)>,
    load_addr: u64,
    load_size: u64,
    entry: u64,
    kernel_end: u64,
    what: String,
    cmdline_size: u64,
    initrd_addr_max: u64,
    zero_page: ZeroPage,
}

fn plan_bzimage(kernel: &[u8]) -> Result<Plan, BootError> {
    let h = SetupHeader::parse(kernel)?;
    let pm = h.pm_offset..kernel.len();
    let load_size = pm.len() as u64;
    let base = h.decompress_base(KERNEL_LOAD_ADDR);
    let decomp_end = base + u64::from(h.init_size);
    let load_end = KERNEL_LOAD_ADDR + load_size;
    let kernel_end = decomp_end.max(load_end);
    let what = format!("decompressed at {base:#x}, init_size {:#x}", h.init_size);
    let mut zp = ZeroPage::new();
    zp.copy_header(kernel, h.header_end);
    Ok(Plan {
        format: KernelFormat::BzImage,
        protocol: h.version,
        kernel_version: h.kernel_version.clone(),
        relocatable: h.relocatable_kernel,
        segments: vec![(KERNEL_LOAD_ADDR, pm, 0)],
        load_addr: KERNEL_LOAD_ADDR,
        load_size,
        entry: KERNEL_LOAD_ADDR + 0x200,
        kernel_end,
        what,
        cmdline_size: u64::from(h.cmdline_size),
        initrd_addr_max: u64::from(h.initrd_addr_max),
        zero_page: zp,
    })
}

/// Load `kernel` (bzImage, or ELF vmlinux), `initrd` and `cmdline` into `ram` (guest physical
/// RAM from address 0; at least [`MemoryMap::low_ram_end`] bytes, only that much is used) and
/// return where the CPU must start. `cmdline` is passed as is: add the disks' arguments with
/// [`kernel_cmdline`] first.
///
/// Nothing is written unless every check passes.
pub fn load_linux(
    ram: &mut [u8],
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    map: &MemoryMap,
) -> Result<BootInfo, BootError> {
    let ram_end = map.low_ram_end();
    if (ram.len() as u64) < ram_end {
        return Err(BootError::RamSliceTooSmall {
            len: ram.len(),
            need: ram_end,
        });
    }
    let plan = if kernel.starts_with(elf::MAGIC) {
        elf::plan(kernel)?
    } else {
        plan_bzimage(kernel)?
    };

    // Command line.
    if let Some(i) = cmdline.bytes().position(|b| b == 0) {
        return Err(BootError::CmdlineHasNul(i));
    }
    let max = plan.cmdline_size.min(CMDLINE_AREA - 1);
    if cmdline.len() as u64 > max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }

    // The kernel's own room.
    if plan.kernel_end > ram_end {
        return Err(BootError::KernelDoesNotFit {
            need: plan.kernel_end,
            have: ram_end,
            what: plan.what.clone(),
        });
    }

    // The initrd: as high as possible below min(initrd_addr_max + 1, end of RAM), page-aligned,
    // above everything the kernel uses while booting.
    let initrd = initrd.filter(|d| !d.is_empty());
    let placement = match initrd {
        None => None,
        Some(d) => {
            let size = d.len() as u64;
            let limit = (plan.initrd_addr_max.saturating_add(1)).min(ram_end);
            let fail = BootError::InitrdTooBig {
                size,
                kernel_end: plan.kernel_end,
                limit,
            };
            let addr = limit.checked_sub(size).ok_or(fail.clone())? & !0xFFF;
            if addr < plan.kernel_end || size > u64::from(u32::MAX) {
                return Err(fail);
            }
            Some(InitrdPlacement { addr, size })
        }
    };

    // Everything checked: write.
    for (addr, range, zeros) in &plan.segments {
        let a = *addr as usize;
        let n = range.len();
        ram[a..a + n].copy_from_slice(&kernel[range.clone()]);
        ram[a + n..a + n + *zeros as usize].fill(0);
    }
    if let (Some(p), Some(d)) = (placement, initrd) {
        let a = p.addr as usize;
        ram[a..a + d.len()].copy_from_slice(d);
    }
    let c = CMDLINE_ADDR as usize;
    ram[c..c + cmdline.len()].copy_from_slice(cmdline.as_bytes());
    ram[c + cmdline.len()] = 0;

    let mut zp = plan.zero_page;
    zp.set_u8(hdr::TYPE_OF_LOADER, TYPE_OF_LOADER);
    let lf = zp.u8(hdr::LOADFLAGS);
    zp.set_u8(hdr::LOADFLAGS, lf | CAN_USE_HEAP);
    zp.set_u16(hdr::HEAP_END_PTR, HEAP_END_PTR);
    zp.set_u32(hdr::CODE32_START, plan.load_addr as u32);
    zp.set_u32(hdr::CMD_LINE_PTR, CMDLINE_ADDR as u32);
    zp.set_u32(params::off::EXT_CMD_LINE_PTR, 0);
    let (rd_addr, rd_size) = placement.map_or((0, 0), |p| (p.addr, p.size));
    zp.set_u32(hdr::RAMDISK_IMAGE, rd_addr as u32);
    zp.set_u32(hdr::RAMDISK_SIZE, rd_size as u32);
    zp.set_u32(params::off::EXT_RAMDISK_IMAGE, (rd_addr >> 32) as u32);
    zp.set_u32(params::off::EXT_RAMDISK_SIZE, (rd_size >> 32) as u32);
    zp.set_u64(hdr::SETUP_DATA, 0);
    zp.set_u8(params::off::SENTINEL, 0);
    let ext_k = (ram_end - HIGH_MEMORY_START) / 1024;
    zp.set_u32(
        params::off::ALT_MEM_K,
        ext_k.min(u64::from(u32::MAX)) as u32,
    );
    zp.set_u16(params::off::EXT_MEM_K, ext_k.min(0xFC00) as u16);
    zp.set_e820(&map.e820());
    let z = ZERO_PAGE_ADDR as usize;
    ram[z..z + params::ZERO_PAGE_SIZE].copy_from_slice(&zp.bytes);

    // BIOS data area: EBDA segment and base memory in KiB, as firmware would leave them (Linux
    // reads both to find the EBDA, the MP table and room for its trampoline).
    ram[0x40E..0x410].copy_from_slice(&((EBDA_START >> 4) as u16).to_le_bytes());
    ram[0x413..0x415].copy_from_slice(&((EBDA_START >> 10) as u16).to_le_bytes());

    pagetables::write_gdt(ram, GDT_ADDR);
    let cr3 = pagetables::write_identity_tables(ram, PAGE_TABLES_ADDR);

    Ok(BootInfo {
        entry_rip: plan.entry,
        rsi: ZERO_PAGE_ADDR,
        rsp: STACK_TOP,
        rflags: ENTRY_RFLAGS,
        cr0: ENTRY_CR0,
        cr3,
        cr4: ENTRY_CR4,
        efer: ENTRY_EFER,
        gdt_base: GDT_ADDR,
        gdt_limit: BOOT_GDT_LIMIT,
        cs: BOOT_CS,
        ds: BOOT_DS,
        cs_descriptor: BOOT_CS_DESCRIPTOR,
        ds_descriptor: BOOT_DS_DESCRIPTOR,
        format: plan.format,
        protocol: plan.protocol,
        kernel_version: plan.kernel_version,
        load_addr: plan.load_addr,
        load_size: plan.load_size,
        kernel_end: plan.kernel_end,
        relocatable: plan.relocatable,
        cmdline_addr: CMDLINE_ADDR,
        cmdline_len: cmdline.len(),
        initrd: placement,
    })
}
