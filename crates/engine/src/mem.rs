//! Guest physical memory and the software TLB.
//!
//! RAM is one host allocation. Guest-physical RAM is `[0, low_size)` plus, when the guest has
//! more RAM than fits below the MMIO hole, `[4 GiB, 4 GiB + high_size)`; everything else is
//! MMIO. Guest addresses are `u64` everywhere (also on 32-bit hosts); only the RAM size is
//! limited by the host.
//!
//! The TLB maps guest-virtual pages to RAM for each MMU index (the guest decides what an index
//! means, e.g. kernel/user). An entry holds one tag per access kind; a tag equals the page
//! address only when the fast path may use it. Flag bits in the low bits of a tag send an
//! access to the slow path while keeping the translation (MMIO pages, and writes to pages that
//! hold translated code, which must invalidate that code first).

/// Page size of the TLB and of code tracking.
pub const PAGE_SIZE: u64 = 4096;
/// Mask of the page-offset bits.
pub const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// Entries per MMU index (direct-mapped).
pub const TLB_ENTRIES: usize = 1024;
/// Number of MMU indices.
pub const MMU_INDICES: usize = 4;

/// Tag value that never matches (low bits set).
pub const TAG_INVALID: u64 = u64::MAX;
/// Tag flag: the page is MMIO; `addend` holds `paddr_page - vaddr_page`.
pub const TAG_MMIO: u64 = 1;
/// Tag flag: the page holds translated code; writes must go through the slow path.
pub const TAG_CODE: u64 = 2;
/// Tag flag: a debugger watchpoint touches the page; reads and writes take the slow path,
/// which checks them (see [`crate::debug`]).
pub const TAG_WATCH: u64 = 4;
const TAG_FLAGS: u64 = TAG_MMIO | TAG_CODE | TAG_WATCH;

/// Access kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// One TLB entry.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TlbEntry {
    pub read: u64,
    pub write: u64,
    pub fetch: u64,
    /// For RAM: `ram_index = vaddr + addend` (wrapping). For MMIO: `paddr = vaddr + addend`.
    pub addend: u64,
}

impl TlbEntry {
    const EMPTY: TlbEntry = TlbEntry {
        read: TAG_INVALID,
        write: TAG_INVALID,
        fetch: TAG_INVALID,
        addend: 0,
    };
}

/// A translation returned by the guest's page walker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the page (4 KiB aligned).
    pub paddr_page: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
}

/// Guest RAM, the code-page bitmap and the TLB.
pub struct Memory {
    ram: Vec<u8>,
    low_size: u64,
    /// One bit per RAM page: the page holds translated code.
    code_pages: Vec<u64>,
    /// Code pages written since the run loop last looked (their TBs must be invalidated).
    pub(crate) dirty_code: Vec<u64>,
    /// Virtual page ranges (first, last page) a debugger watchpoint touches.
    pub(crate) watch_pages: Vec<(u64, u64)>,
    tlb: Box<[[TlbEntry; TLB_ENTRIES]; MMU_INDICES]>,
}

/// `len` zero bytes from the allocator's zeroed path (calloc, or fresh pages on wasm), so the
/// operating system maps guest RAM lazily: writing the zeros (`resize`) touched every page of
/// it at power-on, which for the fuzz targets was nearly all the time of a machine's creation
/// and natively made the whole RAM resident at once. `None` if the allocation fails.
fn zeroed(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(len).ok()?;
    // SAFETY: `layout` has a non-zero size (checked above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` comes from the global allocator with the layout of `[u8; len]` (so capacity
    // `len`), and its `len` bytes are initialized (zero).
    Some(unsafe { Vec::from_raw_parts(p, len, len) })
}

/// Start of high RAM when the guest has more RAM than fits below the hole.
pub const HIGH_RAM_BASE: u64 = 1 << 32;

impl Memory {
    /// `low_size` bytes of RAM at physical 0 and `high_size` bytes at 4 GiB. Sizes are rounded
    /// down to whole pages.
    pub fn new(low_size: u64, high_size: u64) -> Result<Memory, crate::EngineError> {
        let low_size = low_size & !PAGE_MASK;
        let high_size = high_size & !PAGE_MASK;
        if low_size > HIGH_RAM_BASE {
            return Err(crate::EngineError::RamLayout(low_size));
        }
        let total = low_size
            .checked_add(high_size)
            .and_then(|t| usize::try_from(t).ok())
            .ok_or(crate::EngineError::RamTooLarge(
                low_size.saturating_add(high_size),
            ))?;
        let ram = zeroed(total).ok_or(crate::EngineError::RamTooLarge(total as u64))?;
        let pages = total / PAGE_SIZE as usize;
        Ok(Memory {
            ram,
            low_size,
            code_pages: vec![0; pages.div_ceil(64)],
            dirty_code: Vec::new(),
            watch_pages: Vec::new(),
            tlb: Box::new([[TlbEntry::EMPTY; TLB_ENTRIES]; MMU_INDICES]),
        })
    }

    /// Total RAM in bytes.
    pub fn ram_size(&self) -> u64 {
        self.ram.len() as u64
    }

    /// RAM below the hole, in bytes.
    pub fn low_size(&self) -> u64 {
        self.low_size
    }

    /// The RAM index of a physical address, if it is RAM.
    #[inline]
    pub fn ram_index(&self, paddr: u64) -> Option<usize> {
        if paddr < self.low_size {
            Some(paddr as usize)
        } else if paddr >= HIGH_RAM_BASE
            && paddr - HIGH_RAM_BASE < self.ram.len() as u64 - self.low_size
        {
            Some((paddr - HIGH_RAM_BASE + self.low_size) as usize)
        } else {
            None
        }
    }

    /// The physical address of RAM index `i` (the inverse of [`Memory::ram_index`]).
    #[inline]
    pub fn ram_to_phys(&self, i: u64) -> u64 {
        if i < self.low_size {
            i
        } else {
            i - self.low_size + HIGH_RAM_BASE
        }
    }

    /// The whole RAM (host view), for loaders.
    pub fn ram(&self) -> &[u8] {
        &self.ram
    }

    /// The whole RAM, writable. Writing through this bypasses translated-code tracking, so
    /// only use it before the CPU runs (loading a kernel) or invalidate afterwards.
    pub fn ram_mut(&mut self) -> &mut [u8] {
        &mut self.ram
    }

    /// The bitmap of RAM pages translated since last written (bit per 4 KiB page). Which
    /// stores take the self-modifying-code path depends on it, so a snapshot keeps it: a
    /// restored run then splits blocks where the original run did.
    pub fn code_pages(&self) -> &[u64] {
        &self.code_pages
    }

    /// Put back a saved [`code_pages`](Self::code_pages) bitmap; false (and nothing changed)
    /// if its length does not fit this RAM.
    pub fn set_code_pages(&mut self, bits: &[u64]) -> bool {
        if bits.len() != self.code_pages.len() {
            return false;
        }
        self.code_pages.copy_from_slice(bits);
        self.dirty_code.clear();
        true
    }

    /// True if the RAM page at `ram_index` holds translated code.
    #[inline]
    pub fn is_code(&self, ram_index: usize) -> bool {
        let p = ram_index >> 12;
        self.code_pages
            .get(p >> 6)
            .is_some_and(|w| w & (1 << (p & 63)) != 0)
    }

    pub(crate) fn set_code(&mut self, ram_index: usize, on: bool) {
        let p = ram_index >> 12;
        if let Some(w) = self.code_pages.get_mut(p >> 6) {
            if on {
                *w |= 1 << (p & 63);
            } else {
                *w &= !(1 << (p & 63));
            }
        }
    }

    /// Mark a RAM page as holding code: later writes through the TLB take the slow path.
    pub(crate) fn protect_code_page(&mut self, paddr: u64) {
        if let Some(i) = self.ram_index(paddr) {
            if !self.is_code(i) {
                self.set_code(i, true);
                // Demote every TLB write tag that maps this page.
                let idx = (i as u64) & !PAGE_MASK;
                for mmu in self.tlb.iter_mut() {
                    for e in mmu.iter_mut() {
                        if e.write != TAG_INVALID
                            && e.write & (TAG_MMIO | TAG_CODE) == 0
                            && (e.write & !TAG_FLAGS).wrapping_add(e.addend) == idx
                        {
                            e.write |= TAG_CODE;
                        }
                    }
                }
            }
        }
    }

    /// A physical write hit a code page (or may have): note it for invalidation.
    #[inline]
    fn note_write(&mut self, i: usize, len: usize) {
        let first = i >> 12;
        let last = (i + len.max(1) - 1) >> 12;
        for p in first..=last {
            let idx = p << 12;
            if self.is_code(idx) {
                self.set_code(idx, false);
                self.dirty_code.push(idx as u64);
            }
        }
    }

    /// Read physical memory; bytes outside RAM read as `0xff`. Returns false if any byte was
    /// outside RAM.
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let mut ok = true;
        let mut done = 0;
        while done < buf.len() {
            let a = paddr.wrapping_add(done as u64);
            let chunk = ((PAGE_SIZE - (a & PAGE_MASK)) as usize).min(buf.len() - done);
            match self.ram_index(a) {
                Some(i) => buf[done..done + chunk].copy_from_slice(&self.ram[i..i + chunk]),
                None => {
                    buf[done..done + chunk].fill(0xff);
                    ok = false;
                }
            }
            done += chunk;
        }
        ok
    }

    /// Write physical memory (DMA, page-table A/D bits, loaders after start). Bytes outside
    /// RAM are dropped; returns false if there were any. Translated code on the written pages
    /// is invalidated.
    pub fn write_phys(&mut self, paddr: u64, buf: &[u8]) -> bool {
        let mut ok = true;
        let mut done = 0;
        while done < buf.len() {
            let a = paddr.wrapping_add(done as u64);
            let chunk = ((PAGE_SIZE - (a & PAGE_MASK)) as usize).min(buf.len() - done);
            match self.ram_index(a) {
                Some(i) => {
                    self.note_write(i, chunk);
                    self.ram[i..i + chunk].copy_from_slice(&buf[done..done + chunk]);
                }
                None => ok = false,
            }
            done += chunk;
        }
        ok
    }

    /// Read a little-endian value of `size` bytes (1, 2, 4, 8) from physical memory.
    pub fn read_phys_u(&self, paddr: u64, size: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read_phys(paddr, &mut b[..size]);
        u64::from_le_bytes(b)
    }

    /// Write a little-endian value of `size` bytes to physical memory.
    pub fn write_phys_u(&mut self, paddr: u64, size: usize, v: u64) {
        self.write_phys(paddr, &v.to_le_bytes()[..size]);
    }

    // ---- TLB

    #[inline(always)]
    fn slot(vaddr: u64) -> usize {
        ((vaddr >> 12) as usize) & (TLB_ENTRIES - 1)
    }

    /// The entry that would map `vaddr` for `mmu`.
    #[inline(always)]
    pub fn tlb_entry(&self, mmu: u8, vaddr: u64) -> &TlbEntry {
        &self.tlb[(mmu as usize) & (MMU_INDICES - 1)][Self::slot(vaddr)]
    }

    /// Drop every translation.
    pub fn tlb_flush_all(&mut self) {
        for mmu in self.tlb.iter_mut() {
            mmu.fill(TlbEntry::EMPTY);
        }
    }

    /// Drop the translations of one virtual page in every MMU index.
    pub fn tlb_flush_page(&mut self, vaddr: u64) {
        let s = Self::slot(vaddr);
        let page = vaddr & !PAGE_MASK;
        for mmu in self.tlb.iter_mut() {
            let e = &mut mmu[s];
            let hit = |t: u64| t != TAG_INVALID && t & !TAG_FLAGS == page;
            if hit(e.read) || hit(e.write) || hit(e.fetch) {
                *e = TlbEntry::EMPTY;
            }
        }
    }

    /// Install a translation for `vaddr` (after a page walk).
    pub(crate) fn tlb_install(&mut self, mmu: u8, vaddr: u64, t: &Translation) {
        let page = vaddr & !PAGE_MASK;
        let (addend, flags) = match self.ram_index(t.paddr_page) {
            // A RAM page must lie wholly in RAM for the fast path (pages are aligned and RAM
            // sizes are whole pages, so this holds).
            Some(i) => {
                let code = if self.is_code(i) { TAG_CODE } else { 0 };
                ((i as u64).wrapping_sub(page), code)
            }
            None => (t.paddr_page.wrapping_sub(page), TAG_MMIO),
        };
        let watch = if !self.watch_pages.is_empty()
            && self
                .watch_pages
                .iter()
                .any(|&(first, last)| (first..=last).contains(&page))
        {
            TAG_WATCH
        } else {
            0
        };
        let flags = flags | watch;
        let mmio = flags & TAG_MMIO;
        let data = mmio | watch;
        let e = &mut self.tlb[(mmu as usize) & (MMU_INDICES - 1)][Self::slot(vaddr)];
        *e = TlbEntry {
            read: if t.readable { page | data } else { TAG_INVALID },
            write: if t.writable {
                page | flags
            } else {
                TAG_INVALID
            },
            fetch: if t.executable {
                page | mmio
            } else {
                TAG_INVALID
            },
            addend,
        };
    }

    /// Fast-path load: `Some(value)` if the TLB maps the whole access to RAM.
    #[inline(always)]
    pub fn load_fast<const N: usize>(&self, mmu: u8, vaddr: u64) -> Option<u64> {
        let e = self.tlb_entry(mmu, vaddr);
        if e.read == vaddr & !PAGE_MASK && (vaddr & PAGE_MASK) <= PAGE_SIZE - N as u64 {
            let i = vaddr.wrapping_add(e.addend) as usize;
            debug_assert!(i + N <= self.ram.len());
            let mut b = [0u8; 8];
            // SAFETY: a read tag equal to the page address is only installed by `tlb_install`
            // for a page that lies wholly in RAM (`ram_index` of the aligned page start, RAM
            // sizes are whole pages), and the offset check above keeps `[i, i+N)` inside that
            // page, so the source range is in bounds of `self.ram`.
            unsafe {
                core::ptr::copy_nonoverlapping(self.ram.as_ptr().add(i), b.as_mut_ptr(), N);
            }
            Some(u64::from_le_bytes(b))
        } else {
            None
        }
    }

    /// Fast-path store: true if done.
    #[inline(always)]
    pub fn store_fast<const N: usize>(&mut self, mmu: u8, vaddr: u64, v: u64) -> bool {
        let e = self.tlb_entry(mmu, vaddr);
        if e.write == vaddr & !PAGE_MASK && (vaddr & PAGE_MASK) <= PAGE_SIZE - N as u64 {
            let i = vaddr.wrapping_add(e.addend) as usize;
            debug_assert!(i + N <= self.ram.len());
            let b = v.to_le_bytes();
            // SAFETY: as in `load_fast`: a clean write tag maps a page wholly inside RAM, and
            // the offset check keeps `[i, i+N)` inside it.
            unsafe {
                core::ptr::copy_nonoverlapping(b.as_ptr(), self.ram.as_mut_ptr().add(i), N);
            }
            true
        } else {
            false
        }
    }

    /// Look up a translation already in the TLB, ignoring flag bits: `(tag_ok, addend, mmio)`.
    #[inline]
    pub(crate) fn tlb_probe(&self, mmu: u8, vaddr: u64, access: Access) -> Option<(u64, u64)> {
        let e = self.tlb_entry(mmu, vaddr);
        let tag = match access {
            Access::Read => e.read,
            Access::Write => e.write,
            Access::Fetch => e.fetch,
        };
        if tag != TAG_INVALID && tag & !TAG_FLAGS == vaddr & !PAGE_MASK {
            Some((tag & TAG_FLAGS, e.addend))
        } else {
            None
        }
    }

    pub(crate) fn ram_slice(&self, i: usize, len: usize) -> &[u8] {
        &self.ram[i..i + len]
    }

    pub(crate) fn ram_write_checked(&mut self, i: usize, b: &[u8]) {
        self.note_write(i, b.len());
        self.ram[i..i + b.len()].copy_from_slice(b);
    }

    /// Clear the code flag of a write tag after the page's code was invalidated.
    pub(crate) fn tlb_clear_code_flag(&mut self, mmu: u8, vaddr: u64) {
        let e = &mut self.tlb[(mmu as usize) & (MMU_INDICES - 1)][Self::slot(vaddr)];
        if e.write != TAG_INVALID && e.write & TAG_CODE != 0 {
            e.write &= !TAG_CODE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_layout_and_phys_access() {
        let mut m = Memory::new(1 << 20, 1 << 16).unwrap();
        assert_eq!(m.ram_index(0), Some(0));
        assert_eq!(m.ram_index((1 << 20) - 1), Some((1 << 20) - 1));
        assert_eq!(m.ram_index(1 << 20), None);
        assert_eq!(m.ram_index(HIGH_RAM_BASE), Some(1 << 20));
        assert_eq!(m.ram_index(HIGH_RAM_BASE + (1 << 16)), None);
        assert!(m.write_phys(0xffe, &[1, 2, 3, 4]));
        let mut b = [0; 4];
        assert!(m.read_phys(0xffe, &mut b));
        assert_eq!(b, [1, 2, 3, 4]);
        // Outside RAM reads as ones and reports it.
        assert!(!m.read_phys(0xfee0_0000, &mut b));
        assert_eq!(b, [0xff; 4]);
    }

    #[test]
    fn tlb_fast_paths() {
        let mut m = Memory::new(1 << 20, 0).unwrap();
        let t = Translation {
            paddr_page: 0x5000,
            readable: true,
            writable: true,
            executable: false,
        };
        m.tlb_install(0, 0xffff_8000_0000_1000, &t);
        assert!(m.store_fast::<8>(0, 0xffff_8000_0000_1008, 0x1122_3344_5566_7788));
        assert_eq!(
            m.load_fast::<4>(0, 0xffff_8000_0000_1008),
            Some(0x5566_7788)
        );
        assert_eq!(m.read_phys_u(0x5008, 8), 0x1122_3344_5566_7788);
        // Crossing the page end goes to the slow path.
        assert_eq!(m.load_fast::<8>(0, 0xffff_8000_0000_1ffc), None);
        // Other MMU index: not mapped.
        assert_eq!(m.load_fast::<4>(1, 0xffff_8000_0000_1008), None);
        // A code page demotes the write tag.
        m.protect_code_page(0x5000);
        assert!(!m.store_fast::<1>(0, 0xffff_8000_0000_1000, 1));
        assert_eq!(m.load_fast::<1>(0, 0xffff_8000_0000_1000), Some(0x00));
        m.tlb_flush_page(0xffff_8000_0000_1234);
        assert_eq!(m.load_fast::<1>(0, 0xffff_8000_0000_1000), None);
    }

    #[test]
    fn dma_write_marks_code_dirty() {
        let mut m = Memory::new(1 << 20, 0).unwrap();
        m.protect_code_page(0x3000);
        m.write_phys(0x3ff0, &[0; 32]);
        assert_eq!(m.dirty_code, vec![0x3000]);
        assert!(!m.is_code(0x3000));
    }

    #[test]
    fn the_dirty_code_queue_holds_each_page_once() {
        // A guest that keeps writing its code pages (DMA or stores) queues a page only when it
        // stops being a code page: at most one entry per page of RAM, however many writes.
        let mut m = Memory::new(1 << 20, 0).unwrap();
        for p in 0..8u64 {
            m.protect_code_page(p << 12);
        }
        for _ in 0..1000 {
            for p in 0..8u64 {
                m.write_phys((p << 12) + 8, &[1; 8]);
            }
        }
        assert_eq!(m.dirty_code.len(), 8);
    }
}
