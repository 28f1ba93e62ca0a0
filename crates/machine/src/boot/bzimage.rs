//! The bzImage setup header (Linux x86 boot protocol, `Documentation/arch/x86/boot.rst`):
//! parsing and validation.
//!
//! A bzImage is the real-mode setup code (`setup_sects + 1` sectors of 512 bytes, the first of
//! which holds the setup header at 0x1F1) followed by the protected-mode kernel (the
//! decompressor plus the compressed kernel, `syssize * 16` bytes).

use super::BootError;

/// Offsets of the setup header fields, in the image (= in `boot_params`).
pub mod off {
    pub const SETUP_SECTS: usize = 0x1F1;
    pub const SYSSIZE: usize = 0x1F4;
    pub const BOOT_FLAG: usize = 0x1FE;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const KERNEL_VERSION: usize = 0x20E;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21C;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const MIN_ALIGNMENT: usize = 0x235;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const HARDWARE_SUBARCH: usize = 0x23C;
    pub const SETUP_DATA: usize = 0x250;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// End of the setup header as Linux 6.1 defines it (`struct setup_header` is 0x7B bytes).
    pub const HEADER_END_6_1: usize = 0x26C;
}

/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// `xloadflags` bit 0: the kernel has the 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: kernel, boot_params, command line and ramdisk may live above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// Oldest boot protocol accepted: 2.12 introduced `xloadflags` (64-bit entry advertised).
pub const MIN_PROTOCOL: u16 = 0x020C;

/// The fields of the setup header the loader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHeader {
    /// Setup sectors after the boot sector (0 in the image means 4).
    pub setup_sects: u32,
    /// Size of the protected-mode code in 16-byte paragraphs.
    pub syssize: u32,
    /// Boot protocol version, e.g. 0x020F for 2.15.
    pub version: u16,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable_kernel: bool,
    pub min_alignment: u8,
    pub xloadflags: u16,
    /// Longest command line, not counting the terminating NUL.
    pub cmdline_size: u32,
    /// Where a non-relocatable kernel is decompressed to (`LOAD_PHYSICAL_ADDR`).
    pub pref_address: u64,
    /// Bytes the kernel needs from its (decompression) start address until it has set up its
    /// own memory management.
    pub init_size: u32,
    /// The `kernel_version` string, if the image has one.
    pub kernel_version: Option<String>,
    /// Offset in the image of the first byte of the protected-mode kernel.
    pub pm_offset: usize,
    /// One past the last header byte to copy into `boot_params` (0x202 + the jump's offset byte).
    pub header_end: usize,
}

fn u8_at(b: &[u8], o: usize) -> u8 {
    b[o]
}
fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Does the start of `bytes` look like text (to say so in the error)?
pub(crate) fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    !head.is_empty()
        && std::str::from_utf8(head).is_ok_and(|s| {
            s.chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        })
}

/// Human form of a protocol version: 0x020F → "2.15".
pub fn protocol_str(v: u16) -> String {
    format!("{}.{:02}", v >> 8, v & 0xFF)
}

impl SetupHeader {
    /// Parse and validate the header of a bzImage with a 64-bit entry point.
    pub fn parse(image: &[u8]) -> Result<Self, BootError> {
        if image.len() < off::HEADER_END_6_1 {
            return Err(BootError::TooShort {
                len: image.len(),
                text: looks_like_text(image),
            });
        }
        let flag = u16_at(image, off::BOOT_FLAG);
        if flag != 0xAA55 {
            return Err(BootError::NoBootFlag {
                found: flag,
                text: looks_like_text(image),
            });
        }
        if &image[off::HEADER..off::HEADER + 4] != b"HdrS" {
            return Err(BootError::NoHdrS);
        }
        let version = u16_at(image, off::VERSION);
        if version < MIN_PROTOCOL {
            return Err(BootError::ProtocolTooOld { version });
        }
        let loadflags = u8_at(image, off::LOADFLAGS);
        if loadflags & LOADED_HIGH == 0 {
            return Err(BootError::NotLoadedHigh);
        }
        let xloadflags = u16_at(image, off::XLOADFLAGS);
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BootError::No64BitEntry { xloadflags });
        }
        let setup_sects = match u8_at(image, off::SETUP_SECTS) {
            0 => 4,
            n => u32::from(n),
        };
        let pm_offset = (setup_sects as usize + 1) * 512;
        if pm_offset >= image.len() {
            return Err(BootError::SetupBeyondFile {
                setup_sects,
                len: image.len(),
            });
        }
        let syssize = u32_at(image, off::SYSSIZE);
        let pm_len = image.len() - pm_offset;
        let want = u64::from(syssize) * 16;
        if syssize == 0 || (pm_len as u64) < want {
            return Err(BootError::Truncated {
                have: pm_len as u64,
                want,
            });
        }
        let kernel_alignment = u32_at(image, off::KERNEL_ALIGNMENT);
        let relocatable_kernel = u8_at(image, off::RELOCATABLE_KERNEL) != 0;
        if relocatable_kernel && !kernel_alignment.is_power_of_two() {
            return Err(BootError::BadAlignment(kernel_alignment));
        }
        let pref_address = u64_at(image, off::PREF_ADDRESS);
        let init_size = u32_at(image, off::INIT_SIZE);
        if init_size == 0 {
            return Err(BootError::NoInitSize);
        }
        let kernel_version = match u16_at(image, off::KERNEL_VERSION) {
            0 => None,
            p => {
                let start = usize::from(p) + 0x200;
                image.get(start..).map(|s| {
                    let s = &s[..s.len().min(256)];
                    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
                    String::from_utf8_lossy(&s[..end]).into_owned()
                })
            }
        };
        // The header runs from 0x1F1 to 0x202 + the offset byte of the short jump at 0x200;
        // never past the end of `struct setup_header`'s room in boot_params (0x290).
        let header_end = (off::HEADER + usize::from(u8_at(image, off::JUMP + 1)))
            .clamp(off::HEADER_END_6_1, 0x290)
            .min(image.len());
        Ok(SetupHeader {
            setup_sects,
            syssize,
            version,
            loadflags,
            code32_start: u32_at(image, off::CODE32_START),
            initrd_addr_max: u32_at(image, off::INITRD_ADDR_MAX),
            kernel_alignment,
            relocatable_kernel,
            min_alignment: u8_at(image, off::MIN_ALIGNMENT),
            xloadflags,
            cmdline_size: u32_at(image, off::CMDLINE_SIZE),
            pref_address,
            init_size,
            kernel_version,
            pm_offset,
            header_end,
        })
    }

    /// Where the decompressor unpacks the kernel when the protected-mode part is at `load_addr`
    /// (arch/x86/boot/compressed/head_64.S, `startup_64`): a relocatable kernel uses its load
    /// address rounded up to `kernel_alignment`, but never below `LOAD_PHYSICAL_ADDR`
    /// (= `pref_address`); a non-relocatable one always uses `LOAD_PHYSICAL_ADDR`. KASLR may pick
    /// another place later, within the e820 RAM and away from the initrd and command line.
    pub fn decompress_base(&self, load_addr: u64) -> u64 {
        if self.relocatable_kernel {
            let a = u64::from(self.kernel_alignment.max(1));
            load_addr
                .div_ceil(a)
                .saturating_mul(a)
                .max(self.pref_address)
        } else {
            self.pref_address
        }
    }
}
