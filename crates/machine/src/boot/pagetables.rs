//! Identity page tables and the boot GDT for the 64-bit boot protocol.
//!
//! The protocol asks for: 64-bit mode, paging on, an identity mapping covering the kernel
//! (load address .. + init_size), the zero page and the command line, and a GDT with flat
//! `__BOOT_CS` (0x10, execute/read) and `__BOOT_DS` (0x18, read/write) descriptors. We map the
//! whole first 4 GiB with 2 MiB pages (1 GiB pages would need CPUID `pdpe1gb`), which covers all
//! of that plus the MMIO hole, wherever the kernel or KASLR ends up below 4 GiB.

/// Page-table entry bits.
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_WRITABLE: u64 = 1 << 1;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;
/// In a page-directory entry: this entry maps a 2 MiB page.
pub const PTE_HUGE: u64 = 1 << 7;

/// Gigabytes identity-mapped (one page directory each).
pub const MAPPED_GIB: u64 = 4;
/// Bytes the tables take: PML4, PDPT and one PD per GiB.
pub const PAGE_TABLES_SIZE: u64 = (2 + MAPPED_GIB) * 4096;

/// `__BOOT_CS` (GDT entry 2).
pub const BOOT_CS: u16 = 0x10;
/// `__BOOT_DS` (GDT entry 3).
pub const BOOT_DS: u16 = 0x18;
/// Flat 64-bit code: base 0, limit 0xFFFFF pages, P=1 DPL=0 S=1 type=0xB (execute/read,
/// accessed), G=1 L=1 D=0.
pub const BOOT_CS_DESCRIPTOR: u64 = 0x00AF_9B00_0000_FFFF;
/// Flat data: base 0, limit 4 GiB, P=1 DPL=0 S=1 type=0x3 (read/write, accessed), G=1 D/B=1.
pub const BOOT_DS_DESCRIPTOR: u64 = 0x00CF_9300_0000_FFFF;
/// The boot GDT: null, unused, `__BOOT_CS`, `__BOOT_DS`.
pub const BOOT_GDT: [u64; 4] = [0, 0, BOOT_CS_DESCRIPTOR, BOOT_DS_DESCRIPTOR];
/// GDTR limit of [`BOOT_GDT`].
pub const BOOT_GDT_LIMIT: u16 = (BOOT_GDT.len() * 8 - 1) as u16;

fn put_u64(ram: &mut [u8], addr: u64, v: u64) {
    let a = addr as usize;
    ram[a..a + 8].copy_from_slice(&v.to_le_bytes());
}

/// Write PML4 at `base`, the PDPT at `base + 4 KiB` and the page directories after it
/// (identity map of `[0, MAPPED_GIB GiB)` with 2 MiB pages). Returns CR3 (= `base`).
/// The caller guarantees `ram[base .. base + PAGE_TABLES_SIZE]` exists and `base` is
/// page-aligned.
pub fn write_identity_tables(ram: &mut [u8], base: u64) -> u64 {
    debug_assert_eq!(base % 4096, 0);
    let b = base as usize;
    ram[b..b + PAGE_TABLES_SIZE as usize].fill(0);
    let pml4 = base;
    let pdpt = base + 0x1000;
    put_u64(ram, pml4, pdpt | PTE_PRESENT | PTE_WRITABLE);
    for g in 0..MAPPED_GIB {
        let pd = base + 0x2000 + g * 0x1000;
        put_u64(ram, pdpt + g * 8, pd | PTE_PRESENT | PTE_WRITABLE);
        for i in 0..512 {
            let phys = (g << 30) | (i << 21);
            put_u64(
                ram,
                pd + i * 8,
                phys | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE | PTE_ACCESSED | PTE_DIRTY,
            );
        }
    }
    pml4
}

/// Write [`BOOT_GDT`] at `base`. The caller guarantees the 32 bytes exist.
pub fn write_gdt(ram: &mut [u8], base: u64) {
    for (i, d) in BOOT_GDT.iter().enumerate() {
        put_u64(ram, base + i as u64 * 8, *d);
    }
}

/// Walk 4-level tables like the MMU would (for tests and debugging): the physical address that
/// `vaddr` maps to, or `None` if not present.
pub fn translate(ram: &[u8], cr3: u64, vaddr: u64) -> Option<u64> {
    let get = |addr: u64| -> Option<u64> {
        let a = usize::try_from(addr).ok()?;
        let b = ram.get(a..a.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
    let pml4e = get((cr3 & ADDR) + ((vaddr >> 39) & 511) * 8)?;
    if pml4e & PTE_PRESENT == 0 {
        return None;
    }
    let pdpte = get((pml4e & ADDR) + ((vaddr >> 30) & 511) * 8)?;
    if pdpte & PTE_PRESENT == 0 {
        return None;
    }
    if pdpte & PTE_HUGE != 0 {
        return Some((pdpte & 0x000F_FFFF_C000_0000) | (vaddr & 0x3FFF_FFFF));
    }
    let pde = get((pdpte & ADDR) + ((vaddr >> 21) & 511) * 8)?;
    if pde & PTE_PRESENT == 0 {
        return None;
    }
    if pde & PTE_HUGE != 0 {
        return Some((pde & 0x000F_FFFF_FFE0_0000) | (vaddr & 0x1F_FFFF));
    }
    let pte = get((pde & ADDR) + ((vaddr >> 12) & 511) * 8)?;
    if pte & PTE_PRESENT == 0 {
        return None;
    }
    Some((pte & ADDR) | (vaddr & 0xFFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_4g() {
        let mut ram = vec![0u8; 0x10000];
        let cr3 = write_identity_tables(&mut ram, 0x9000);
        assert_eq!(cr3, 0x9000);
        for a in [0u64, 0x7000, 0x100000, 0x1000000, 0xfeb00e00, 0xffff_ffff] {
            assert_eq!(translate(&ram, cr3, a), Some(a), "{a:#x}");
        }
        assert_eq!(translate(&ram, cr3, 0x1_0000_0000), None);
        assert_eq!(translate(&ram, cr3, 0xffff_ffff_8100_0000), None);
    }

    #[test]
    fn gdt_descriptors() {
        let mut ram = vec![0u8; 64];
        write_gdt(&mut ram, 0);
        let cs = u64::from_le_bytes(ram[16..24].try_into().unwrap());
        let ds = u64::from_le_bytes(ram[24..32].try_into().unwrap());
        // code: present, DPL 0, code type with read, L=1, D=0
        assert_eq!((cs >> 47) & 1, 1);
        assert_eq!((cs >> 43) & 1, 1);
        assert_eq!((cs >> 53) & 1, 1);
        assert_eq!((cs >> 54) & 1, 0);
        // data: present, writable, not code
        assert_eq!((ds >> 47) & 1, 1);
        assert_eq!((ds >> 43) & 1, 0);
        assert_eq!((ds >> 41) & 1, 1);
        assert_eq!(BOOT_GDT_LIMIT, 31);
    }
}
