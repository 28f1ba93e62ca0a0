//! The x86-64 CPU as an engine guest, and the API the machine uses.

use crate::bus::X86Bus;
use crate::flags;
use crate::hflags;
use crate::regs::*;
use crate::state::{cr, Event, EventKind, X86State};
use crate::translate::{self, exit};
use crate::X86;
use tci64_engine::{
    Access, Builder, Core, Engine, Guest, HelperFn, Memory, SlotSet, Stop, Translation, Trap,
};

/// `Stop::Guest` codes the CPU returns to the machine.
pub mod stop {
    /// HLT with nothing to do: wait for an interrupt.
    pub const HALT: u32 = 1;
    /// Triple fault or another reset request.
    pub const RESET: u32 = 2;
    /// The bus asked the CPU to return (`X86Bus::take_stop_request`).
    pub const ATTENTION: u32 = 3;
}

/// Exit code: a single-stepped instruction finished (deliver #DB).
pub const EXIT_SINGLE_STEP: u32 = 3;

/// The MMU index of instruction fetches under `flags`.
pub fn fetch_mmu(hf: u32) -> u8 {
    if hf & hflags::CPL == 3 {
        1
    } else {
        0
    }
}

/// The six arithmetic flags of the lazy state in the core's CC slots.
pub fn arith_flags(c: &Core<X86>) -> u64 {
    let r = &c.regs.0;
    flags::arith_flags(
        r[CC_OP as usize] as u32,
        r[CC_DST as usize],
        r[CC_SRC as usize],
        r[CC_SRC2 as usize],
    )
}

/// The full RFLAGS.
pub fn rflags(c: &Core<X86>) -> u64 {
    (c.regs.0[RFLAGS as usize] & !fl::ARITH) | arith_flags(c) | fl::FIXED1
}

/// Set RFLAGS (all bits given; the arithmetic ones go to the lazy state).
pub fn set_rflags(c: &mut Core<X86>, v: u64) {
    c.regs.0[CC_SRC as usize] = v & fl::ARITH;
    c.regs.0[CC_OP as usize] = flags::CC_EFLAGS as u64;
    c.regs.0[RFLAGS as usize] = (v & !fl::ARITH) | fl::FIXED1;
}

/// The block key of the current state.
pub fn compute_hflags(c: &Core<X86>) -> u32 {
    let g = &c.guest;
    let mut h = g.cpl as u32 & hflags::CPL;
    let cs = &g.segs[CS];
    let lma = g.efer & cr::EFER_LMA != 0;
    if lma {
        h |= hflags::LMA;
    }
    if lma && cs.attr & crate::state::Segment::ATTR_L != 0 {
        h |= hflags::CS64;
    } else {
        if g.cr0 & cr::CR0_PE != 0 && cs.attr & crate::state::Segment::ATTR_DB != 0 {
            h |= hflags::CS32;
        }
        if g.cr0 & cr::CR0_PE != 0 && g.segs[SS].attr & crate::state::Segment::ATTR_DB != 0 {
            h |= hflags::SS32;
        }
        let r = &c.regs.0;
        if r[DS_BASE as usize] | r[ES_BASE as usize] | r[SS_BASE as usize] != 0
            || g.cr0 & cr::CR0_PE == 0
        {
            h |= hflags::ADDSEG;
        }
    }
    if g.cr0 & cr::CR0_PE != 0 {
        h |= hflags::PE;
    }
    if g.cr0 & cr::CR0_PG != 0 {
        h |= hflags::PG;
    }
    if c.regs.0[RFLAGS as usize] & fl::TF != 0 {
        h |= hflags::TF;
    }
    if g.cr0 & cr::CR0_TS != 0 {
        h |= hflags::TS;
    }
    if g.cr0 & cr::CR0_EM != 0 {
        h |= hflags::EM;
    }
    if g.cr0 & cr::CR0_MP != 0 {
        h |= hflags::MP;
    }
    if g.cr4 & cr::CR4_OSFXSR != 0 {
        h |= hflags::OSFXSR;
    }
    if g.cr4 & cr::CR4_OSXSAVE != 0 {
        h |= hflags::OSXSAVE;
    }
    h
}

/// Record an exception to deliver (helpers: `return Err(raise(c, vec::GP, Some(0)))`).
pub fn raise(c: &mut Core<X86>, vector: u8, error_code: Option<u32>) -> Trap {
    c.guest.pending = Some(Event {
        vector,
        error_code,
        kind: EventKind::Exception,
    });
    Trap::Exception
}

impl Guest for X86State {
    type Bus = dyn X86Bus;
    const PC_SLOT: tci64_engine::Slot = RIP;
    const FIRST_TEMP: tci64_engine::Slot = FIRST_TEMP;

    fn trap_live() -> SlotSet {
        // Every guest slot, CC_OP included: a trap restores CC_OP from the instruction's aux
        // word only when the lazy-flags op was static there; after an instruction that left
        // it dynamic (a shift by CL selects between the old and the new op), the aux word says
        // "in its slot", and the slot must be current at the trap. Leaving CC_OP out let the
        // optimizer delete that select as overwritten later (guest_code fuzz input
        // optimizer-cc-op-dynamic-at-trap: ZF differed in the pushed RFLAGS).
        SlotSet::below(FIRST_TEMP as u16)
    }

    fn helpers() -> &'static [HelperFn<Self>] {
        crate::helpers::table()
    }

    fn pure_helpers() -> &'static [tci64_engine::PureFn] {
        &flags::PURE_FLAGS
    }

    fn slot_name(slot: tci64_engine::Slot) -> Option<&'static str> {
        crate::regs::slot_name(slot)
    }

    fn tb_flags(core: &Core<Self>) -> u32 {
        compute_hflags(core)
    }

    fn fetch_mmu(flags: u32) -> u8 {
        fetch_mmu(flags)
    }

    fn translate(
        core: &mut Core<Self>,
        bus: &mut Self::Bus,
        pc: u64,
        flags: u32,
        b: &mut Builder,
    ) -> Result<(), Trap> {
        translate::translate_block(core, bus, pc, flags, b)
    }

    fn tlb_fill(
        core: &mut Core<Self>,
        bus: &mut Self::Bus,
        vaddr: u64,
        access: Access,
        mmu: u8,
    ) -> Result<Translation, Trap> {
        crate::mmu::tlb_fill(core, bus, vaddr, access, mmu)
    }

    fn restore(core: &mut Core<Self>, _pc: u64, aux: u32) {
        if aux != u32::MAX {
            core.regs.0[CC_OP as usize] = aux as u64;
        }
    }

    fn on_trap(core: &mut Core<Self>, bus: &mut Self::Bus, trap: Trap) -> Option<Stop> {
        match trap {
            Trap::Restart => None,
            Trap::Exception => {
                if let Some(ev) = core.guest.pending.take() {
                    crate::exception::deliver(core, bus, ev);
                }
                core.guest
                    .reset_requested
                    .then_some(Stop::Guest(stop::RESET))
            }
        }
    }

    fn poll(core: &mut Core<Self>, bus: &mut Self::Bus) -> Option<Stop> {
        if core.guest.reset_requested {
            return Some(Stop::Guest(stop::RESET));
        }
        if bus.take_stop_request() {
            return Some(Stop::Guest(stop::ATTENTION));
        }
        if bus.take_nmi() {
            core.guest.nmi_pending = true;
        }
        if core.guest.irq_shadow {
            core.guest.irq_shadow = false;
        } else if core.guest.nmi_pending && !core.guest.nmi_blocked {
            // NMI: not maskable by IF; blocked until the handler's IRET.
            core.guest.nmi_pending = false;
            core.guest.halted = false;
            crate::exception::deliver(
                core,
                bus,
                Event {
                    vector: crate::state::vec::NMI,
                    error_code: None,
                    kind: EventKind::External,
                },
            );
            if core.guest.reset_requested {
                return Some(Stop::Guest(stop::RESET));
            }
        } else if core.regs.0[RFLAGS as usize] & fl::IF != 0 && bus.intr_pending() {
            let vector = bus.intr_ack();
            core.guest.halted = false;
            crate::exception::deliver(
                core,
                bus,
                Event {
                    vector,
                    error_code: None,
                    kind: EventKind::External,
                },
            );
            if core.guest.reset_requested {
                return Some(Stop::Guest(stop::RESET));
            }
        }
        if core.guest.halted {
            return Some(Stop::Guest(stop::HALT));
        }
        None
    }

    // About 200 instructions of interrupt latency at most (blocks that change IF, halt or
    // trap always poll right after); the bus calls of a poll were ~7% of the run time.
    const POLL_INTERVAL: u32 = 16;

    fn dump_state(core: &Core<Self>) -> String {
        dump_state(core)
    }

    fn on_exit(core: &mut Core<Self>, bus: &mut Self::Bus, code: u32) -> Option<Stop> {
        match code {
            exit::HLT => {
                core.guest.halted = true;
                // Interrupts are checked by the next poll; if one is already pending, the
                // CPU wakes at once.
                None
            }
            EXIT_SINGLE_STEP => {
                let ev = Event {
                    vector: crate::state::vec::DB,
                    error_code: None,
                    kind: EventKind::Exception,
                };
                core.guest.dr[6] |= 1 << 14;
                crate::exception::deliver(core, bus, ev);
                None
            }
            exit::CONTINUE => None,
            tci64_engine::opt::EXIT_FELL_OFF => {
                log::error!(
                    "translated block fell off its end at {:#x}",
                    core.regs.0[RIP as usize]
                );
                None
            }
            other => {
                log::error!("unknown block exit code {other}");
                None
            }
        }
    }
}

/// Why [`Cpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuExit {
    /// The budget is used up.
    Budget,
    /// HLT: waiting for an interrupt. `interrupts_enabled` false means nothing but an NMI
    /// can wake it.
    Halted { interrupts_enabled: bool },
    /// Triple fault or reset request.
    Reset,
    /// The bus asked for the CPU (`X86Bus::take_stop_request`): the machine has device work
    /// that needs guest memory.
    Attention,
    /// A debugger breakpoint, watchpoint or single-step ([`tci64_engine::debug`]).
    Debug(tci64_engine::DebugStop),
}

/// The initial register state for the Linux 64-bit boot protocol (or any long-mode entry).
#[derive(Clone, Copy, Debug, Default)]
pub struct LongModeEntry {
    pub rip: u64,
    pub rsi: u64,
    pub rsp: u64,
    pub cr3: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    /// Code selector (64-bit code descriptor in the GDT).
    pub cs: u16,
    /// Data selector for DS/ES/SS/FS/GS.
    pub ds: u16,
}

/// Everything of the CPU a snapshot needs (see [`Cpu::state`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuState {
    /// Register-file slots below [`FIRST_TEMP`] (temporaries are dead between blocks).
    pub globals: [u64; FIRST_TEMP as usize],
    pub x86: X86State,
    /// Instructions retired.
    pub icount: u64,
    /// Blocks until the engine polls for interrupts.
    pub poll_in: u32,
    /// RAM pages holding translated code (see `Memory::code_pages`).
    pub code_pages: Vec<u64>,
}

/// The x86-64 CPU: an engine running the x86 guest.
pub struct Cpu {
    pub engine: Engine<X86State>,
}

impl Cpu {
    /// A CPU with `low_ram` bytes of RAM at 0 and `high_ram` bytes at 4 GiB, in the reset
    /// state.
    pub fn new(low_ram: u64, high_ram: u64) -> Result<Cpu, crate::CpuError> {
        let mem = Memory::new(low_ram, high_ram)?;
        let mut core = Core::new(mem, X86State::default());
        core.regs.0[RFLAGS as usize] = fl::FIXED1;
        core.regs.0[CC_OP as usize] = flags::CC_EFLAGS as u64;
        Ok(Cpu {
            engine: Engine::new(core),
        })
    }

    /// The core (registers, memory, state).
    pub fn core(&self) -> &Core<X86State> {
        &self.engine.core
    }

    /// The core, mutable.
    pub fn core_mut(&mut self) -> &mut Core<X86State> {
        &mut self.engine.core
    }

    /// Put the CPU in 64-bit mode at `e.rip` as the Linux boot protocol's 64-bit entry wants:
    /// paging on with `e.cr3`, PAE, long mode, flat segments, interrupts off.
    pub fn enter_long_mode(&mut self, e: &LongModeEntry) {
        let c = &mut self.engine.core;
        let g = &mut c.guest;
        g.cr0 = cr::CR0_PE | cr::CR0_MP | cr::CR0_ET | cr::CR0_NE | cr::CR0_WP | cr::CR0_PG;
        g.cr3 = e.cr3;
        g.cr4 = cr::CR4_PAE;
        g.efer = cr::EFER_LME | cr::EFER_LMA;
        g.gdtr = crate::state::DescTable {
            base: e.gdt_base,
            limit: e.gdt_limit,
        };
        g.cpl = 0;
        use crate::state::Segment;
        let code = Segment {
            selector: e.cs,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x9b | Segment::ATTR_L | Segment::ATTR_G,
        };
        let data = Segment {
            selector: e.ds,
            base: 0,
            limit: 0xffff_ffff,
            attr: 0x93 | Segment::ATTR_DB | Segment::ATTR_G,
        };
        g.segs = [
            data.reg(),
            code.reg(),
            data.reg(),
            data.reg(),
            data.reg(),
            data.reg(),
        ];
        g.tr = Segment {
            selector: 0,
            base: 0,
            limit: 0xffff,
            attr: 0x8b,
        };
        for s in 0..6 {
            c.regs.0[(SEG_BASE as usize) + s] = 0;
        }
        c.regs.0[RIP as usize] = e.rip;
        c.regs.0[RSI as usize] = e.rsi;
        c.regs.0[RSP as usize] = e.rsp;
        set_rflags(c, fl::FIXED1);
        c.tlb_flush_all();
    }

    /// Run at most `budget` instructions.
    pub fn run(&mut self, bus: &mut (dyn X86Bus + 'static), budget: u64) -> CpuExit {
        let stop = self.engine.run(bus, budget);
        self.exit_of(stop)
    }

    /// Run one instruction for a debugger ([`Engine::step`]): `CpuExit::Debug(Step)` when done.
    pub fn step(&mut self, bus: &mut (dyn X86Bus + 'static)) -> CpuExit {
        let stop = self.engine.step(bus);
        self.exit_of(stop)
    }

    fn exit_of(&self, stop: Stop) -> CpuExit {
        match stop {
            Stop::Debug(d) => CpuExit::Debug(d),
            Stop::Budget => CpuExit::Budget,
            Stop::Guest(stop::HALT) => CpuExit::Halted {
                interrupts_enabled: self.engine.core.regs.0[RFLAGS as usize] & fl::IF != 0,
            },
            Stop::Guest(stop::RESET) => CpuExit::Reset,
            Stop::Guest(_) => CpuExit::Attention,
        }
    }

    /// The architectural state, for a snapshot: the register file's globals (GPRs, RIP, the
    /// lazy-flag slots, RFLAGS, segment bases), everything in [`X86State`], and the retired
    /// instruction count (the `-icount` clock).
    pub fn state(&self) -> CpuState {
        let c = &self.engine.core;
        let mut globals = [0u64; FIRST_TEMP as usize];
        globals.copy_from_slice(&c.regs.0[..FIRST_TEMP as usize]);
        CpuState {
            globals,
            x86: c.guest.clone(),
            icount: c.icount,
            poll_in: c.poll_in,
            code_pages: c.mem.code_pages().to_vec(),
        }
    }

    /// Put back a saved state. Translated code, the TLB and the jump cache are dropped (they
    /// are derived from memory and state).
    /// Fails (changing nothing) if the state was saved with a different RAM size.
    pub fn set_state(&mut self, s: &CpuState) -> Result<(), crate::CpuError> {
        let c = &mut self.engine.core;
        if !c.mem.set_code_pages(&s.code_pages) {
            return Err(crate::CpuError::StateMismatch(
                "the code-page bitmap does not fit this RAM size".into(),
            ));
        }
        c.regs.0[..FIRST_TEMP as usize].copy_from_slice(&s.globals);
        let model = c.guest.model;
        c.guest = s.x86.clone();
        c.guest.model = model;
        c.icount = s.icount;
        c.poll_in = s.poll_in.min(<X86State as Guest>::POLL_INTERVAL);
        c.tlb_flush_all();
        self.engine.flush_code();
        Ok(())
    }

    /// Instructions retired.
    pub fn icount(&self) -> u64 {
        self.engine.core.icount
    }

    /// Write guest-physical memory from a device (DMA), keeping translated code coherent.
    pub fn write_phys(&mut self, paddr: u64, buf: &[u8]) -> bool {
        self.engine.write_phys(paddr, buf)
    }

    /// Read guest-physical memory.
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> bool {
        self.engine.core.mem.read_phys(paddr, buf)
    }

    /// Register value by slot (see [`crate::regs`]).
    pub fn reg(&self, slot: tci64_engine::Slot) -> u64 {
        self.engine.core.regs.0[slot as usize]
    }
}

/// The CPU state in the layout of QEMU's `-d cpu` (x86_cpu_dump_state), so that traces of the
/// two can be compared line by line.
pub fn dump_state(c: &Core<X86>) -> String {
    use std::fmt::Write;
    let r = |k: usize| c.regs.0[k];
    let mut o = String::new();
    let names = [
        "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", "R8 ", "R9 ", "R10", "R11", "R12",
        "R13", "R14", "R15",
    ];
    // QEMU's order: RAX RBX RCX RDX / RSI RDI RBP RSP / R8.. (encoding numbers differ).
    let order = [0usize, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];
    for (i, (&k, n)) in order.iter().zip(names).enumerate() {
        let _ = write!(
            o,
            "{n}={:016x}{}",
            r(k),
            if i % 4 == 3 { "\n" } else { " " }
        );
    }
    let fl = rflags(c);
    let bits: String = [
        (11, 'O'),
        (10, 'D'),
        (7, 'S'),
        (6, 'Z'),
        (4, 'A'),
        (2, 'P'),
        (0, 'C'),
    ]
    .iter()
    .map(|&(b, ch)| if fl >> b & 1 != 0 { ch } else { '-' })
    .collect();
    let g = &c.guest;
    let _ = writeln!(
        o,
        "RIP={:016x} RFL={:08x} [{bits}] CPL={} II={} A20=1 SMM=0 HLT={}",
        r(crate::regs::RIP as usize),
        fl,
        g.cpl,
        u8::from(g.irq_shadow),
        u8::from(g.halted)
    );
    for (i, (n, s)) in ["ES", "CS", "SS", "DS", "FS", "GS"]
        .iter()
        .zip(g.segs.iter())
        .enumerate()
    {
        let _ = writeln!(
            o,
            "{n} ={:04x} {:016x} {:08x} {:08x}",
            s.selector,
            r(SEG_BASE as usize + i),
            s.limit,
            (s.attr as u32) << 8
        );
    }
    let _ = writeln!(o, "GDT=     {:016x} {:08x}", g.gdtr.base, g.gdtr.limit);
    let _ = writeln!(o, "IDT=     {:016x} {:08x}", g.idtr.base, g.idtr.limit);
    let _ = writeln!(
        o,
        "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
        g.cr0, g.cr2, g.cr3, g.cr4
    );
    let _ = write!(o, "EFER={:016x}", g.efer);
    o
}
