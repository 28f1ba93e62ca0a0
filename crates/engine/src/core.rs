//! The CPU core the engine runs: register file, memory, guest state, counters, and the
//! slow paths of guest memory access that helpers and the interpreter share.

use crate::debug::Debug;
use crate::guest::{Guest, HelperFn, MmioBus, Trap};
use crate::mem::{Access, Memory, PAGE_MASK, PAGE_SIZE, TAG_CODE, TAG_MMIO, TAG_WATCH};
use crate::stats::Stats;
use crate::Builder;

/// The register file: 256 64-bit slots, indexed by `u8` so no access needs a bounds check.
#[repr(C, align(64))]
pub struct Regs(pub [u64; 256]);

/// Entries of the virtual-PC jump cache: [`JC_GROUPS`] groups of [`JC_GROUP`] entries, the
/// group chosen by the PC's page, so a page's entries can be dropped alone.
pub const JUMP_CACHE: usize = JC_GROUPS * JC_GROUP;
/// Groups of the jump cache (selected by virtual page number).
pub const JC_GROUPS: usize = 64;
/// Entries per group (selected by the offset in the page).
pub const JC_GROUP: usize = 64;

/// The jump-cache entry of virtual PC `pc`.
#[inline(always)]
pub fn jc_index(pc: u64) -> usize {
    let group = ((pc >> 12) as usize) & (JC_GROUPS - 1);
    let within = ((pc ^ (pc >> 6)) as usize) & (JC_GROUP - 1);
    group * JC_GROUP + within
}
/// An empty jump-cache entry.
pub const JC_EMPTY: u32 = u32::MAX;

/// Trace switches (QEMU's `-d` items). Host configuration, not guest state: they live here,
/// beside the guest state, so a snapshot of the guest never carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Guest instructions as translated (served by the front end).
    pub in_asm: bool,
    /// IR before optimization.
    pub op: bool,
    /// IR after optimization.
    pub op_opt: bool,
    /// Every block executed.
    pub exec: bool,
    /// The guest's architectural state before every block executed ([`crate::Guest::dump_state`]).
    pub cpu: bool,
    /// Every interrupt and exception delivered (served by the front end).
    pub int: bool,
    /// Unimplemented instructions and registers, once each (served by the front end).
    pub unimp: bool,
}

/// Everything a guest's helpers can touch.
pub struct Core<G: Guest> {
    pub regs: Regs,
    pub mem: Memory,
    pub guest: G,
    pub stats: Stats,
    pub trace: Trace,
    /// Turn the optimizer off (differential testing of the optimizer).
    pub optimize: bool,
    /// Maximum guest instructions per block.
    pub max_insns: u16,
    pub(crate) jump_cache: Box<[u32; JUMP_CACHE]>,
    /// Instructions retired so far (the engine's clock for `-icount`).
    pub icount: u64,
    /// Blocks until the next `Guest::poll` (0: poll before the next block). Kept across
    /// `Engine::run` calls so where interrupts are taken does not depend on how the host
    /// slices the run (part of a snapshot).
    pub poll_in: u32,
    /// The next block looked up is translated one instruction long if it is not cached (set
    /// after a block stored into its own code; see `Engine::run`).
    pub short_next: bool,
    /// A store through the slow path wrote a page holding translated code (the running block
    /// may be stale), or an access hit a debugger watchpoint: the block stops after the
    /// current guest instruction.
    pub(crate) smc_hit: bool,
    /// Bumped by every TLB flush: a cross-page chain link made under an older generation
    /// may follow a stale virtual-to-physical mapping and is not taken.
    pub(crate) tlb_gen: u32,
    /// The guest's helper table, looked up once (not on every `Op::Call`).
    pub(crate) helpers: &'static [HelperFn<G>],
    /// Breakpoints and watchpoints ([`crate::debug`]); changed through [`crate::Engine`].
    pub(crate) debug: Debug,
}

impl<G: Guest> Core<G> {
    /// A core with `mem` and guest state `guest`.
    pub fn new(mem: Memory, guest: G) -> Self {
        Core {
            regs: Regs([0; 256]),
            mem,
            guest,
            stats: Stats::default(),
            trace: Trace::default(),
            optimize: true,
            max_insns: 512,
            jump_cache: Box::new([JC_EMPTY; JUMP_CACHE]),
            icount: 0,
            poll_in: 0,
            short_next: false,
            smc_hit: false,
            tlb_gen: 0,
            helpers: G::helpers(),
            debug: Debug::default(),
        }
    }

    /// The debugger's breakpoints and watchpoints.
    pub fn debug(&self) -> &Debug {
        &self.debug
    }

    /// For the front end's translator: true if the instruction at `pc` must not be translated
    /// because a breakpoint is there. `first`: it would be the block's first instruction (the
    /// block is then translated as a lone `Exit { code: EXIT_DEBUG }`); otherwise the block
    /// ends before it. A single-step over a breakpoint is not stopped by it.
    #[inline]
    pub fn breakpoint_at(&self, pc: u64, first: bool) -> bool {
        !self.debug.breakpoints.is_empty()
            && self.debug.breakpoints.contains(&pc)
            && !(first && self.debug.step_over == Some(pc))
    }

    /// Drop every TLB entry and every jump-cache entry (the guest's address space changed).
    pub fn tlb_flush_all(&mut self) {
        self.mem.tlb_flush_all();
        self.jump_cache.fill(JC_EMPTY);
        self.bump_tlb_gen();
    }

    fn bump_tlb_gen(&mut self) {
        self.tlb_gen = self.tlb_gen.wrapping_add(1);
        if self.tlb_gen == crate::tb::ANY_GEN {
            self.tlb_gen = 0;
        }
    }

    /// Drop the translation of one virtual page.
    pub fn tlb_flush_page(&mut self, vaddr: u64) {
        self.mem.tlb_flush_page(vaddr);
        // Blocks starting on this page or on the one before (which may run into this one)
        // can no longer be found by virtual PC alone: drop those two groups.
        let page = vaddr >> 12;
        for p in [page, page.wrapping_sub(1)] {
            let g = (p as usize & (JC_GROUPS - 1)) * JC_GROUP;
            self.jump_cache[g..g + JC_GROUP].fill(JC_EMPTY);
        }
        self.bump_tlb_gen();
    }

    /// Translate `vaddr` for `access`, filling the TLB through the guest's walker.
    /// Returns `(flags, addend)` as in the TLB: RAM index or physical address = vaddr + addend.
    #[inline]
    fn lookup(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        access: Access,
        mmu: u8,
    ) -> Result<(u64, u64), Trap> {
        if let Some(hit) = self.mem.tlb_probe(mmu, vaddr, access) {
            return Ok(hit);
        }
        self.stats.tlb_misses += 1;
        let t = G::tlb_fill(self, bus, vaddr, access, mmu)?;
        self.mem.tlb_install(mmu, vaddr, &t);
        let allowed = match access {
            Access::Read => t.readable,
            Access::Write => t.writable,
            Access::Fetch => t.executable,
        };
        match self.mem.tlb_probe(mmu, vaddr, access) {
            Some(hit) if allowed => Ok(hit),
            _ => {
                // The walker said yes but did not grant this access kind: a walker bug.
                log::error!(
                    "tlb_fill for {vaddr:#x} {access:?} returned a translation without that access"
                );
                Err(Trap::Restart)
            }
        }
    }

    /// The physical address of `vaddr` for `access`.
    pub fn translate_addr(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        access: Access,
        mmu: u8,
    ) -> Result<u64, Trap> {
        let (flags, addend) = self.lookup(bus, vaddr, access, mmu)?;
        let x = vaddr.wrapping_add(addend);
        if flags & TAG_MMIO != 0 {
            Ok(x)
        } else {
            Ok(self.mem.ram_to_phys(x))
        }
    }

    /// Read `size` bytes (1, 2, 4, 8) of guest-virtual memory: the slow path (any alignment,
    /// page crossings, MMIO).
    pub fn read(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        size: usize,
        mmu: u8,
    ) -> Result<u64, Trap> {
        self.stats.tlb_slow += 1;
        if (vaddr & PAGE_MASK) + size as u64 > PAGE_SIZE {
            // Crossing pages: translate both before reading anything.
            let split = (PAGE_SIZE - (vaddr & PAGE_MASK)) as usize;
            let second = vaddr.wrapping_add(split as u64);
            self.lookup(bus, vaddr, Access::Read, mmu)?;
            self.lookup(bus, second, Access::Read, mmu)?;
            let mut v = 0u64;
            for k in 0..size {
                let b = self.read(bus, vaddr.wrapping_add(k as u64), 1, mmu)?;
                v |= b << (8 * k);
            }
            return Ok(v);
        }
        let (flags, addend) = self.lookup(bus, vaddr, Access::Read, mmu)?;
        if flags & TAG_WATCH != 0 && self.debug.check_access(vaddr, size as u64, false) {
            self.smc_hit = true;
        }
        let x = vaddr.wrapping_add(addend);
        if flags & TAG_MMIO != 0 {
            // Loads zero-extend: devices may return junk above `size` bytes.
            return Ok(bus.mmio_read(x, size as u8) & size_mask(size));
        }
        let s = self.mem.ram_slice(x as usize, size);
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(s);
        Ok(u64::from_le_bytes(b))
    }

    /// Write `size` bytes of guest-virtual memory (slow path).
    pub fn write(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        size: usize,
        mmu: u8,
        value: u64,
    ) -> Result<(), Trap> {
        self.stats.tlb_slow += 1;
        if (vaddr & PAGE_MASK) + size as u64 > PAGE_SIZE {
            let split = (PAGE_SIZE - (vaddr & PAGE_MASK)) as usize;
            let second = vaddr.wrapping_add(split as u64);
            // Both pages must be writable before any byte is written (precise faults).
            self.lookup(bus, vaddr, Access::Write, mmu)?;
            self.lookup(bus, second, Access::Write, mmu)?;
            for k in 0..size {
                self.write(bus, vaddr.wrapping_add(k as u64), 1, mmu, value >> (8 * k))?;
            }
            return Ok(());
        }
        let (flags, addend) = self.lookup(bus, vaddr, Access::Write, mmu)?;
        if flags & TAG_WATCH != 0 && self.debug.check_access(vaddr, size as u64, true) {
            self.smc_hit = true;
        }
        let x = vaddr.wrapping_add(addend);
        if flags & TAG_MMIO != 0 {
            bus.mmio_write(x, size as u8, value & size_mask(size));
            return Ok(());
        }
        let b = value.to_le_bytes();
        self.mem.ram_write_checked(x as usize, &b[..size]);
        if flags & TAG_CODE != 0 {
            self.smc_hit = true;
            // The page's code is now invalid (queued in `dirty_code`); later writes may take
            // the fast path until code is translated from the page again.
            self.mem.tlb_clear_code_flag(mmu, vaddr);
        }
        Ok(())
    }

    /// Read guest-virtual memory into `buf` (helpers: descriptor tables, FXSAVE areas, ...).
    pub fn read_bytes(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        buf: &mut [u8],
        mmu: u8,
    ) -> Result<(), Trap> {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = self.read(bus, vaddr.wrapping_add(k as u64), 1, mmu)? as u8;
        }
        Ok(())
    }

    /// Write `buf` to guest-virtual memory. All pages are checked before anything is written.
    pub fn write_bytes(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        buf: &[u8],
        mmu: u8,
    ) -> Result<(), Trap> {
        if buf.is_empty() {
            return Ok(());
        }
        let last = vaddr.wrapping_add(buf.len() as u64 - 1);
        let mut page = vaddr & !PAGE_MASK;
        loop {
            self.lookup(bus, page.max(vaddr), Access::Write, mmu)?;
            if page == last & !PAGE_MASK {
                break;
            }
            page = page.wrapping_add(PAGE_SIZE);
        }
        for (k, b) in buf.iter().enumerate() {
            self.write(bus, vaddr.wrapping_add(k as u64), 1, mmu, *b as u64)?;
        }
        Ok(())
    }

    /// Code bytes from `vaddr` to the end of its page, for the translator. Records the page
    /// in the block being built and protects it against writes. Code in MMIO yields an empty
    /// slice.
    pub fn fetch_code(
        &mut self,
        bus: &mut G::Bus,
        vaddr: u64,
        mmu: u8,
        b: &mut Builder,
    ) -> Result<&[u8], Trap> {
        let (flags, addend) = self.lookup(bus, vaddr, Access::Fetch, mmu)?;
        if flags & TAG_MMIO != 0 {
            return Ok(&[]);
        }
        let i = vaddr.wrapping_add(addend) as usize;
        let page_i = i & !(PAGE_MASK as usize);
        let paddr_page = self.mem.ram_to_phys(page_i as u64);
        b.add_page(paddr_page);
        self.mem.protect_code_page(paddr_page);
        let len = PAGE_SIZE as usize - (i & PAGE_MASK as usize);
        Ok(self.mem.ram_slice(i, len))
    }
}

/// Mask of the low `size` bytes (`size` in 1..=8).
#[inline]
fn size_mask(size: usize) -> u64 {
    u64::MAX >> (64 - 8 * size.clamp(1, 8))
}

/// Convenience for guests: the MMIO bus type of a core.
pub type BusOf<G> = <G as Guest>::Bus;

#[allow(dead_code)]
fn _assert_bus_object_safe(_: &mut dyn MmioBus) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_cache_groups_follow_pages() {
        // Every PC of one page lands in its page's group; neighbouring pages use others.
        let g = |pc: u64| jc_index(pc) / JC_GROUP;
        for off in (0..4096).step_by(7) {
            assert_eq!(g(0xffff_8000_1234_5000 + off), g(0xffff_8000_1234_5000));
        }
        assert_ne!(g(0x5000), g(0x6000));
        assert!(jc_index(u64::MAX) < JUMP_CACHE);
    }
}
