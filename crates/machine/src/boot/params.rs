//! The zero page (`struct boot_params`, arch/x86/include/uapi/asm/bootparam.h): 4 KiB the loader
//! fills in and hands to the kernel in RSI.

use crate::memmap::E820Entry;

/// Size of `struct boot_params`.
pub const ZERO_PAGE_SIZE: usize = 4096;

/// Offsets in `boot_params` outside the setup header.
pub mod off {
    /// `screen_info.ext_mem_k` (u16): KiB above 1 MiB, capped (legacy).
    pub const EXT_MEM_K: usize = 0x002;
    /// `ext_ramdisk_image` (u32): bits 63:32 of the initrd address.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0C0;
    /// `ext_ramdisk_size` (u32).
    pub const EXT_RAMDISK_SIZE: usize = 0x0C4;
    /// `ext_cmd_line_ptr` (u32).
    pub const EXT_CMD_LINE_PTR: usize = 0x0C8;
    /// `alt_mem_k` (u32): KiB above 1 MiB (used only without an e820 table).
    pub const ALT_MEM_K: usize = 0x1E0;
    /// `e820_entries` (u8).
    pub const E820_ENTRIES: usize = 0x1E8;
    /// `sentinel` (u8): must be 0, or the kernel zeroes fields it thinks a broken loader left.
    pub const SENTINEL: usize = 0x1EF;
    /// `e820_table[E820_MAX_ENTRIES_ZEROPAGE]`, 20 bytes each.
    pub const E820_TABLE: usize = 0x2D0;
}

/// Room for e820 entries in the zero page.
pub const E820_MAX_ENTRIES: usize = 128;

/// A zero page being built (always exactly 4 KiB).
pub struct ZeroPage {
    pub bytes: Vec<u8>,
}

impl Default for ZeroPage {
    fn default() -> Self {
        Self::new()
    }
}

impl ZeroPage {
    /// An all-zero page.
    pub fn new() -> Self {
        ZeroPage {
            bytes: vec![0; ZERO_PAGE_SIZE],
        }
    }

    pub fn u8(&self, o: usize) -> u8 {
        self.bytes[o]
    }
    pub fn u16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.bytes[o], self.bytes[o + 1]])
    }
    pub fn u32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.bytes[o..o + 4].try_into().unwrap_or([0; 4]))
    }
    pub fn u64(&self, o: usize) -> u64 {
        u64::from_le_bytes(self.bytes[o..o + 8].try_into().unwrap_or([0; 8]))
    }
    pub fn set_u8(&mut self, o: usize, v: u8) {
        self.bytes[o] = v;
    }
    pub fn set_u16(&mut self, o: usize, v: u16) {
        self.bytes[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_u32(&mut self, o: usize, v: u32) {
        self.bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn set_u64(&mut self, o: usize, v: u64) {
        self.bytes[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Copy the image's setup header, `image[0x1F1 .. header_end]`, to the same offsets.
    pub fn copy_header(&mut self, image: &[u8], header_end: usize) {
        let end = header_end.min(image.len()).min(off::E820_TABLE);
        let start = super::bzimage::off::SETUP_SECTS;
        if end > start {
            self.bytes[start..end].copy_from_slice(&image[start..end]);
        }
    }

    /// Write the e820 table (at most [`E820_MAX_ENTRIES`]; the memory map has far fewer).
    pub fn set_e820(&mut self, entries: &[E820Entry]) {
        let n = entries.len().min(E820_MAX_ENTRIES);
        self.set_u8(off::E820_ENTRIES, n as u8);
        for (i, e) in entries.iter().take(n).enumerate() {
            let o = off::E820_TABLE + i * 20;
            self.set_u64(o, e.addr);
            self.set_u64(o + 8, e.size);
            self.set_u32(o + 16, e.typ);
        }
    }

    /// Read the e820 table back.
    pub fn e820(&self) -> Vec<E820Entry> {
        let n = usize::from(self.u8(off::E820_ENTRIES)).min(E820_MAX_ENTRIES);
        (0..n)
            .map(|i| {
                let o = off::E820_TABLE + i * 20;
                E820Entry {
                    addr: self.u64(o),
                    size: self.u64(o + 8),
                    typ: self.u32(o + 16),
                }
            })
            .collect()
    }
}
