//! The run loop: find or translate the next block, execute it, follow chains, handle traps.
//! Blocks are chained through this loop (the next block is data the loop picks up), never by
//! nested calls, so stack depth is constant however long a chain runs.

use crate::core::{jc_index, Core, JC_EMPTY};
use crate::debug::{DebugStop, Watchpoint, EXIT_DEBUG};
use crate::guest::{Guest, Stop, Trap};
use crate::interp::{exec_block, exec_chain, exec_range, Chain, TbExit};
use crate::mem::{Access, PAGE_MASK};
use crate::opt::{encode, optimize, OptConfig};
use crate::tb::{Tb, TbCache, TbId, ANY_GEN, NO_TB};
use crate::Builder;

/// A core plus its translation cache: what a machine runs.
pub struct Engine<G: Guest> {
    pub core: Core<G>,
    pub tbs: TbCache,
    builder: Builder,
}

/// Put the state at the start of guest instruction `k` of `tb` (after a trap, or to resume
/// after a self-modifying store) and count the `k` instructions before it as retired.
fn rewind_to<G: Guest>(core: &mut Core<G>, tb: &Tb, k: usize) {
    let (pc, aux) = tb.insn_data.get(k).copied().unwrap_or((tb.pc, 0));
    core.icount += k as u64;
    G::restore(core, pc, aux);
    core.regs.0[G::PC_SLOT as usize] = pc;
}

/// An op printed with the guest's register names.
fn named<G: Guest>(op: &crate::Op) -> crate::ir::Named<'_> {
    crate::ir::Named {
        op,
        names: &G::slot_name,
        first_temp: G::FIRST_TEMP,
    }
}

impl<G: Guest> Engine<G> {
    /// An engine around `core`.
    pub fn new(core: Core<G>) -> Self {
        Engine {
            core,
            tbs: TbCache::new(),
            builder: Builder::new(G::FIRST_TEMP),
        }
    }

    /// Invalidate blocks whose code pages were written since the last call.
    pub fn process_dirty_code(&mut self) {
        while let Some(p) = self.core.mem.dirty_code.pop() {
            let n = self.tbs.invalidate_page(self.core.mem.ram_to_phys(p));
            self.core.stats.tbs_invalidated += n;
        }
    }

    /// Write guest-physical memory from outside the CPU (DMA), keeping translated code
    /// coherent. Returns false if part of the range is not RAM.
    pub fn write_phys(&mut self, paddr: u64, buf: &[u8]) -> bool {
        let ok = self.core.mem.write_phys(paddr, buf);
        self.process_dirty_code();
        ok
    }

    /// Drop every translated block (e.g. after loading new code with `ram_mut`).
    pub fn flush_code(&mut self) {
        self.tbs.flush();
        self.core.jump_cache.fill(JC_EMPTY);
        self.core.stats.tb_flushes += 1;
    }

    /// Translate the block at the current PC. `Err` = the first fetch trapped (already
    /// recorded by the guest).
    fn translate(
        &mut self,
        bus: &mut G::Bus,
        pc: u64,
        phys_pc: u64,
        flags: u32,
    ) -> Result<TbId, Trap> {
        let tb = self.build(bus, pc, phys_pc, flags)?;
        if self.tbs.needs_flush(tb.code.len()) {
            self.flush_code();
        }
        Ok(self.tbs.insert(tb))
    }

    /// Translate, optimize and encode the block at `pc` (not cached).
    fn build(&mut self, bus: &mut G::Bus, pc: u64, phys_pc: u64, flags: u32) -> Result<Tb, Trap> {
        self.builder.reset();
        G::translate(&mut self.core, bus, pc, flags, &mut self.builder)?;
        let b = &mut self.builder;
        if self.core.trace.op {
            log::info!(target: "tci64::trace", "OP before optimization, pc={pc:#x}");
            for op in &b.ops {
                log::info!(target: "tci64::trace", "  {}", named::<G>(op));
            }
        }
        self.core.stats.ops_before_opt += b
            .ops
            .iter()
            .filter(|o| !matches!(o, crate::Op::InsnStart { .. } | crate::Op::Label { .. }))
            .count() as u64;
        let cfg = OptConfig {
            first_temp: G::FIRST_TEMP,
            trap_live: G::trap_live(),
            enabled: self.core.optimize,
            pc_slot: G::PC_SLOT,
        };
        optimize(&mut b.ops, &cfg);
        let enc = encode(&b.ops);
        if self.core.trace.op_opt {
            log::info!(target: "tci64::trace", "OP after optimization, pc={pc:#x}");
            for (i, op) in enc.code.iter().enumerate() {
                log::info!(target: "tci64::trace", "  {i:4} {}", named::<G>(op));
            }
        }
        self.core.stats.tbs_translated += 1;
        self.core.stats.insns_translated += b.n_insns as u64;
        self.core.stats.ops_after_opt += enc.code.len() as u64;
        let b = &self.builder;
        Ok(Tb {
            pc,
            phys_pc,
            flags,
            code: enc.code.into_boxed_slice(),
            insn_ops: enc.insn_ops.into_boxed_slice(),
            insn_data: b.insn_data.clone().into_boxed_slice(),
            pages: b.pages,
            n_pages: b.n_pages as u8,
            links: [NO_TB; 2],
            link_gen: [ANY_GEN; 2],
            valid: true,
        })
    }

    /// Find the block for the current PC and mode, translating it if needed. `known` is the
    /// mode when the caller knows it (after a chainable or indirect exit, which never change
    /// the mode: the same assumption chaining makes).
    fn find(&mut self, bus: &mut G::Bus, known: Option<u32>) -> Result<TbId, Trap> {
        let short = std::mem::take(&mut self.core.short_next);
        let pc = self.core.regs.0[G::PC_SLOT as usize];
        let flags = match known {
            Some(f) => {
                debug_assert_eq!(f, G::tb_flags(&self.core), "a block exit changed the mode");
                f
            }
            None => G::tb_flags(&self.core),
        };
        let j = jc_index(pc);
        let id = self.core.jump_cache[j];
        if id != JC_EMPTY && (id as usize) < self.tbs.len() {
            let tb = self.tbs.get(id);
            if tb.valid && tb.pc == pc && tb.flags == flags {
                self.core.stats.jump_cache_hits += 1;
                return Ok(id);
            }
        }
        self.core.stats.hash_lookups += 1;
        let phys_pc = self
            .core
            .translate_addr(bus, pc, Access::Fetch, G::fetch_mmu(flags))?;
        let id = match self.tbs.find(phys_pc, pc, flags) {
            Some(id) => id,
            None if short => {
                let max = std::mem::replace(&mut self.core.max_insns, 1);
                let r = self.translate(bus, pc, phys_pc, flags);
                self.core.max_insns = max;
                r?
            }
            None => self.translate(bus, pc, phys_pc, flags)?,
        };
        self.core.jump_cache[j] = id;
        Ok(id)
    }

    /// Run until `budget` more guest instructions have retired or the guest stops.
    pub fn run(&mut self, bus: &mut G::Bus, budget: u64) -> Stop {
        let end = self.core.icount.saturating_add(budget);
        let mut next: TbId = NO_TB;
        // The mode the last block left in, when known without recomputing it.
        let mut known_flags: Option<u32> = None;
        // Blocks until the next poll (0: poll before the next block); it survives the return
        // at the end of the budget, so a run split in two polls where one run would.
        let mut poll_in = self.core.poll_in;
        loop {
            if self.core.icount >= end {
                self.core.poll_in = poll_in;
                return Stop::Budget;
            }
            if poll_in == 0 {
                if let Some((addr, kind)) = self.core.debug.hit.take() {
                    // A watchpoint hit by the last instruction (which has completed).
                    self.core.poll_in = 0;
                    return Stop::Debug(DebugStop::Watch { addr, kind });
                }
                poll_in = G::POLL_INTERVAL.max(1);
                let pc_before = self.core.regs.0[G::PC_SLOT as usize];
                if let Some(stop) = G::poll(&mut self.core, bus) {
                    // Poll again first thing when the host resumes.
                    self.core.poll_in = 0;
                    return stop;
                }
                if self.core.regs.0[G::PC_SLOT as usize] != pc_before {
                    // `poll` delivered an interrupt: the chained successor no longer applies.
                    next = NO_TB;
                    known_flags = None;
                }
            }
            poll_in -= 1;
            let id = if next != NO_TB {
                next
            } else {
                match self.find(bus, known_flags.take()) {
                    Ok(id) => id,
                    Err(trap) => {
                        // The fetch of the block's first instruction faulted: the state is
                        // already at that instruction.
                        if let Some(stop) = G::on_trap(&mut self.core, bus, trap) {
                            self.core.poll_in = 0;
                            return stop;
                        }
                        self.process_dirty_code();
                        poll_in = 0;
                        continue;
                    }
                }
            };
            next = NO_TB;
            let tracing = self.core.trace.exec | self.core.trace.cpu;
            if tracing {
                let tb = &self.tbs.tbs[id as usize];
                if self.core.trace.cpu {
                    log::info!(target: "tci64::trace", "{}", G::dump_state(&self.core));
                }
                if self.core.trace.exec {
                    log::info!(target: "tci64::trace", "Trace {id}: [{:016x}/{:08x}]", tb.pc, tb.flags);
                }
            }
            self.core.stats.tbs_executed += 1;
            // The block, and the successors the interpreter enters itself while nothing
            // would happen between them here (not when every block is traced).
            let mut ch = Chain {
                tbs: &self.tbs.tbs,
                cur: id,
                end: if tracing { 0 } else { end },
                poll_in,
            };
            let mut exit = exec_chain(&mut self.core, bus, &mut ch);
            let (id, tb) = (ch.cur, &self.tbs.tbs[ch.cur as usize]);
            poll_in = ch.poll_in;
            // Self-modifying code: a store hit a page holding translated code (perhaps this
            // very block). Finish the storing instruction, then continue at the next one,
            // which is looked up (and retranslated) afresh.
            let mut resume_at: Option<usize> = None;
            let mut smc = false;
            while let TbExit::Smc { at } = exit {
                smc = true;
                self.core.smc_hit = false;
                if self.core.debug.hit.is_some() {
                    // Stop for the watchpoint once the instruction is done (top of the loop).
                    poll_in = 0;
                }
                let k = tb.insn_at(at);
                let stop = tb.insn_ops.get(k + 1).map_or(usize::MAX, |&o| o as usize);
                exit = exec_range(&mut self.core, bus, &tb.code, at as usize + 1, stop);
                if exit == TbExit::Boundary {
                    resume_at = Some(k + 1);
                }
            }
            self.core.smc_hit = false;
            if smc {
                // Did the block store into its own code? Then the next block is translated
                // one instruction long (QEMU's rule too): a guest storing into the page it
                // runs from at every instruction then translates one instruction per store,
                // not a whole block per store of which one instruction runs.
                let m = &self.core.mem;
                let own = &tb.pages[..tb.n_pages as usize];
                self.core.short_next = m
                    .dirty_code
                    .iter()
                    .any(|&i| own.contains(&m.ram_to_phys(i)));
            }
            if let Some(k1) = resume_at {
                poll_in = 0;
                rewind_to(&mut self.core, tb, k1);
                self.process_dirty_code();
                continue;
            }
            match exit {
                TbExit::Chain(n) => {
                    self.core.icount += tb.insn_ops.len() as u64;
                    let link = tb.links[(n & 1) as usize];
                    let gen = tb.link_gen[(n & 1) as usize];
                    let (tb_pc, tb_flags) = (tb.pc, tb.flags);
                    if !self.core.mem.dirty_code.is_empty() {
                        self.process_dirty_code();
                    } else if link != NO_TB
                        && (gen == ANY_GEN || gen == self.core.tlb_gen)
                        && self.tbs.get(link).valid
                    {
                        self.core.stats.chain_hits += 1;
                        next = link;
                        continue;
                    }
                    // Look the successor up and link it: on the same virtual page the link
                    // stays right as long as this block runs; across pages it holds until
                    // the TLB is next flushed (the target page's mapping may change then).
                    let flushes = self.core.stats.tb_flushes;
                    match self.find(bus, Some(tb_flags)) {
                        Ok(to) => {
                            let t = self.tbs.get(to);
                            if flushes == self.core.stats.tb_flushes
                                && t.flags == tb_flags
                                && self.tbs.get(id).valid
                            {
                                let gen = if t.pc & !PAGE_MASK == tb_pc & !PAGE_MASK {
                                    ANY_GEN
                                } else {
                                    self.core.tlb_gen
                                };
                                self.tbs.link(id, n, to, gen);
                            }
                            next = to;
                        }
                        Err(trap) => {
                            // The successor's first fetch faulted and the guest has recorded
                            // the exception: deliver it now (walking again from the top of
                            // the loop would record it a second time).
                            if let Some(stop) = G::on_trap(&mut self.core, bus, trap) {
                                self.core.poll_in = 0;
                                return stop;
                            }
                            self.process_dirty_code();
                            poll_in = 0;
                        }
                    }
                }
                TbExit::Indirect => {
                    self.core.icount += tb.insn_ops.len() as u64;
                    known_flags = Some(tb.flags);
                    self.process_dirty_code();
                }
                TbExit::Guest(EXIT_DEBUG) => {
                    // A breakpoint block: nothing ran. Resume as if it had never been looked
                    // up (the same poll schedule as an undisturbed run).
                    self.core.poll_in = poll_in + 1;
                    return Stop::Debug(DebugStop::Breakpoint);
                }
                TbExit::Guest(code) => {
                    poll_in = 0;
                    self.core.icount += tb.insn_ops.len() as u64;
                    self.process_dirty_code();
                    if let Some(stop) = G::on_exit(&mut self.core, bus, code) {
                        self.core.poll_in = 0;
                        return stop;
                    }
                }
                TbExit::Smc { .. } | TbExit::Boundary => {
                    // Handled above; `exec_block` never returns `Boundary`.
                    poll_in = 0;
                    self.process_dirty_code();
                }
                TbExit::Trap { trap, at } => {
                    poll_in = 0;
                    rewind_to(&mut self.core, tb, tb.insn_at(at));
                    self.process_dirty_code();
                    if let Some(stop) = G::on_trap(&mut self.core, bus, trap) {
                        self.core.poll_in = 0;
                        return stop;
                    }
                }
            }
        }
    }

    /// Run one guest instruction for a debugger, from a one-instruction block that is not
    /// cached (a breakpoint at the current PC is stepped over). Pending interrupts are
    /// delivered first: the step then ends at the handler's first instruction. Returns
    /// `Stop::Debug(DebugStop::Step)` when the step is done (or a watchpoint stop if the
    /// instruction hit one), or a guest stop (halt, reset) instead.
    pub fn step(&mut self, bus: &mut G::Bus) -> Stop {
        // The step polls; the run after it counts on from there, as after a block.
        self.core.poll_in = G::POLL_INTERVAL.max(1) - 1;
        let pc = self.core.regs.0[G::PC_SLOT as usize];
        if let Some(stop) = G::poll(&mut self.core, bus) {
            return stop;
        }
        if self.core.regs.0[G::PC_SLOT as usize] != pc {
            // An interrupt was delivered: stop at its handler.
            return Stop::Debug(DebugStop::Step);
        }
        let flags = G::tb_flags(&self.core);
        let built = match self
            .core
            .translate_addr(bus, pc, Access::Fetch, G::fetch_mmu(flags))
        {
            Ok(phys_pc) => {
                let max = std::mem::replace(&mut self.core.max_insns, 1);
                self.core.debug.step_over = Some(pc);
                let r = self.build(bus, pc, phys_pc, flags);
                self.core.debug.step_over = None;
                self.core.max_insns = max;
                r
            }
            Err(trap) => Err(trap),
        };
        let tb = match built {
            Ok(tb) => tb,
            Err(trap) => {
                // The fetch faulted: the exception's delivery is the step.
                if let Some(stop) = G::on_trap(&mut self.core, bus, trap) {
                    return stop;
                }
                self.process_dirty_code();
                return Stop::Debug(DebugStop::Step);
            }
        };
        let mut exit = exec_block(&mut self.core, bus, &tb.code);
        self.core.stats.tbs_executed += 1;
        while let TbExit::Smc { at } = exit {
            // The one instruction stored to code or hit a watchpoint: finish it.
            self.core.smc_hit = false;
            exit = exec_range(&mut self.core, bus, &tb.code, at as usize + 1, usize::MAX);
        }
        self.core.smc_hit = false;
        let mut stop = None;
        match exit {
            TbExit::Chain(_) | TbExit::Indirect | TbExit::Boundary | TbExit::Smc { .. } => {
                self.core.icount += tb.insn_ops.len() as u64;
            }
            TbExit::Guest(code) => {
                self.core.icount += tb.insn_ops.len() as u64;
                self.process_dirty_code();
                stop = G::on_exit(&mut self.core, bus, code);
            }
            TbExit::Trap { trap, at } => {
                rewind_to(&mut self.core, &tb, tb.insn_at(at));
                self.process_dirty_code();
                stop = G::on_trap(&mut self.core, bus, trap);
            }
        }
        self.process_dirty_code();
        if let Some(stop) = stop {
            return stop;
        }
        match self.core.debug.hit.take() {
            Some((addr, kind)) => Stop::Debug(DebugStop::Watch { addr, kind }),
            None => Stop::Debug(DebugStop::Step),
        }
    }

    /// Add a breakpoint at virtual `pc` (translated code is flushed so it takes effect).
    pub fn add_breakpoint(&mut self, pc: u64) {
        self.core.debug.breakpoints.push(pc);
        self.flush_code();
    }

    /// Remove one breakpoint at `pc`; false if there was none.
    pub fn remove_breakpoint(&mut self, pc: u64) -> bool {
        match self.core.debug.breakpoints.iter().position(|&b| b == pc) {
            Some(i) => {
                self.core.debug.breakpoints.remove(i);
                self.flush_code();
                true
            }
            None => false,
        }
    }

    /// Add a watchpoint (the TLB is flushed so its pages take the slow path).
    pub fn add_watchpoint(&mut self, w: Watchpoint) {
        self.core.debug.watchpoints.push(w);
        self.update_watch_pages();
    }

    /// Remove one watchpoint equal to `w`; false if there was none.
    pub fn remove_watchpoint(&mut self, w: Watchpoint) -> bool {
        match self.core.debug.watchpoints.iter().position(|x| *x == w) {
            Some(i) => {
                self.core.debug.watchpoints.remove(i);
                self.update_watch_pages();
                true
            }
            None => false,
        }
    }

    /// Remove every breakpoint and watchpoint (a debugger detached).
    pub fn clear_debug(&mut self) {
        let had_bp = !self.core.debug.breakpoints.is_empty();
        self.core.debug.breakpoints.clear();
        self.core.debug.watchpoints.clear();
        self.core.debug.hit = None;
        self.update_watch_pages();
        if had_bp {
            self.flush_code();
        }
    }

    fn update_watch_pages(&mut self) {
        self.core.mem.watch_pages = self
            .core
            .debug
            .watchpoints
            .iter()
            .map(|w| w.pages())
            .collect();
        self.core.tlb_flush_all();
    }
}
