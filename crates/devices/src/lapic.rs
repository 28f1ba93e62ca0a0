//! The local APIC of one CPU (Intel SDM vol. 3A ch. 11), in xAPIC (MMIO page) and x2APIC
//! (MSR 0x800-0x8FF) modes.
//!
//! What is modelled:
//! - ID, version (0x14, 6 LVT entries), TPR/APR/PPR, EOI, LDR/DFR, the spurious-interrupt
//!   vector register with software enable, ISR/TMR/IRR with priority classes (§11.8).
//! - The LVT: timer, thermal, performance counters, LINT0, LINT1, error (and CMCI, stored).
//!   LINT0 in ExtINT mode passes the 8259's INTR through; LINT1 in NMI mode raises an NMI.
//! - The timer (§11.5.4): one-shot, periodic and TSC-deadline, on the virtual clock. The timer
//!   input is a 1 GHz bus clock (1 tick per virtual ns, as the TSC), divided by the divide
//!   configuration register. Everything takes `now_ns` from the machine, so `-icount` runs are
//!   deterministic and tests drive a fake clock.
//! - The error status register (§11.5.3): send/receive illegal vector, illegal register
//!   address; the LVT error entry.
//! - The ICR: fixed and NMI IPIs to self (shorthand self/all-including-self, or a destination
//!   that names this APIC). INIT/SIPI and IPIs to other CPUs need SMP and are dropped.
//! - `IA32_APIC_BASE` (§11.4.4): global enable, x2APIC enable (EXTD) with the architectural
//!   transitions (invalid ones are #GP), the base address.
//!
//! The machine calls [`Lapic::intr_pending`]/[`Lapic::acknowledge`] for the CPU's INTR/INTA,
//! [`Lapic::accept_message`] for IOAPIC messages, [`Lapic::update`] at its deadline
//! ([`Lapic::next_deadline_ns`]), and takes level-triggered EOIs with
//! [`Lapic::take_eoi_broadcast`] for the IOAPIC.

/// The default physical base.
pub const DEFAULT_BASE: u64 = 0xfee0_0000;
/// `IA32_APIC_BASE` bits.
pub const BASE_BSP: u64 = 1 << 8;
pub const BASE_EXTD: u64 = 1 << 10;
pub const BASE_ENABLE: u64 = 1 << 11;
/// The version register: version 0x14 (integrated APIC), max LVT entry 5.
pub const VERSION: u32 = 0x14 | (5 << 16);

/// Register offsets in the xAPIC page (x2APIC MSR = 0x800 + offset / 16).
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const APR: u32 = 0x90;
    pub const PPR: u32 = 0xa0;
    pub const EOI: u32 = 0xb0;
    pub const RRD: u32 = 0xc0;
    pub const LDR: u32 = 0xd0;
    pub const DFR: u32 = 0xe0;
    pub const SVR: u32 = 0xf0;
    pub const ISR: u32 = 0x100;
    pub const TMR: u32 = 0x180;
    pub const IRR: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    pub const LVT_CMCI: u32 = 0x2f0;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PERF: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
    /// x2APIC only: SELF IPI (MSR 0x83F).
    pub const SELF_IPI: u32 = 0x3f0;
}

/// ESR bits.
pub mod esr {
    pub const SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
    pub const RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
    pub const ILLEGAL_REGISTER: u32 = 1 << 7;
}

/// LVT entry bits.
pub const LVT_MASKED: u32 = 1 << 16;
const LVT_VECTOR: u32 = 0xff;
const LVT_DELIVERY: u32 = 0x700;
const LVT_REMOTE_IRR: u32 = 1 << 14;
/// Timer modes (LVT timer bits 18:17).
pub const TIMER_ONE_SHOT: u32 = 0;
pub const TIMER_PERIODIC: u32 = 1;
pub const TIMER_TSC_DEADLINE: u32 = 2;

/// SVR: APIC software enable.
pub const SVR_ENABLE: u32 = 1 << 8;

/// LVT indices.
const LVT_CMCI: usize = 0;
const LVT_TIMER: usize = 1;
const LVT_THERMAL: usize = 2;
const LVT_PERF: usize = 3;
const LVT_LINT0: usize = 4;
const LVT_LINT1: usize = 5;
const LVT_ERROR: usize = 6;

/// An interrupt's delivery mode (LVT, ICR, IOAPIC entry bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    Reserved,
}

impl DeliveryMode {
    /// From bits 2:0 of `bits` (callers shift the field down).
    pub fn from_bits(bits: u32) -> Self {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => DeliveryMode::Reserved,
        }
    }
}

/// An interrupt message on the APIC bus (from the IOAPIC, or an IPI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApicMessage {
    pub vector: u8,
    pub mode: DeliveryMode,
    /// Logical (true) or physical destination mode.
    pub logical: bool,
    /// Level-triggered (sets TMR; the EOI is broadcast back).
    pub level: bool,
    /// Destination: an APIC ID (physical) or a logical mask.
    pub dest: u32,
}

/// One 256-bit vector register (ISR, TMR, IRR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Bits256([u64; 4]);

impl Bits256 {
    fn set(&mut self, v: u8) {
        self.0[v as usize >> 6] |= 1 << (v & 63);
    }
    fn clear(&mut self, v: u8) {
        self.0[v as usize >> 6] &= !(1 << (v & 63));
    }
    fn get(&self, v: u8) -> bool {
        self.0[v as usize >> 6] & (1 << (v & 63)) != 0
    }
    fn highest(&self) -> Option<u8> {
        (0..4)
            .rev()
            .find(|&i| self.0[i] != 0)
            .map(|i| (i as u32 * 64 + 63 - self.0[i].leading_zeros()) as u8)
    }
    /// The 32-bit register `n` (0..8) of the MMIO view.
    fn word(&self, n: usize) -> u32 {
        (self.0[n / 2] >> ((n & 1) * 32)) as u32
    }
}

/// One local APIC.
/// Plain data: the device is its own snapshot state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lapic {
    /// The APIC ID (x2APIC: 32 bits; xAPIC: the low 8).
    id: u32,
    base: u64,
    x2apic_supported: bool,
    tpr: u8,
    svr: u32,
    ldr: u32,
    dfr: u32,
    isr: Bits256,
    tmr: Bits256,
    irr: Bits256,
    /// The readable ESR (latched by a write) and the errors since.
    esr: u32,
    esr_pending: u32,
    icr: u64,
    lvt: [u32; 7],
    timer_initial: u32,
    timer_divide: u32,
    /// When the count was loaded (one-shot/periodic).
    timer_start_ns: u64,
    /// The next timer interrupt (any mode), if armed.
    timer_next_ns: Option<u64>,
    /// TSC-deadline mode: the deadline in virtual ns (0 = disarmed).
    tsc_deadline_ns: u64,
    nmi_pending: bool,
    /// Level-triggered vectors EOI'd, for the IOAPIC.
    eoi_out: Vec<u8>,
}

impl Lapic {
    /// The power-on state of the APIC with ID `id`. The bootstrap processor's LINT0 is left in
    /// ExtINT mode, unmasked, as firmware leaves it (so the 8259 reaches the CPU before the OS
    /// programs the APIC).
    pub fn new(id: u32, bsp: bool, x2apic_supported: bool) -> Self {
        let mut l = Lapic {
            id,
            base: DEFAULT_BASE | BASE_ENABLE | if bsp { BASE_BSP } else { 0 },
            x2apic_supported,
            tpr: 0,
            svr: 0xff,
            ldr: 0,
            dfr: u32::MAX,
            isr: Bits256::default(),
            tmr: Bits256::default(),
            irr: Bits256::default(),
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [LVT_MASKED; 7],
            timer_initial: 0,
            timer_divide: 0,
            timer_start_ns: 0,
            timer_next_ns: None,
            tsc_deadline_ns: 0,
            nmi_pending: false,
            eoi_out: Vec::new(),
        };
        if bsp {
            l.lvt[LVT_LINT0] = 0x700;
        }
        l
    }

    /// Back to the state after a reset or a global disable (ID and base address kept).
    fn reset_registers(&mut self) {
        let fresh = Lapic::new(self.id, self.base & BASE_BSP != 0, self.x2apic_supported);
        let base = self.base;
        *self = Lapic {
            base,
            lvt: [LVT_MASKED; 7],
            ..fresh
        };
    }

    /// `IA32_APIC_BASE`.
    pub fn base_msr(&self) -> u64 {
        self.base
    }

    /// The xAPIC MMIO page's physical address.
    pub fn mmio_base(&self) -> u64 {
        self.base & 0x000f_ffff_ffff_f000
    }

    /// Globally enabled (`IA32_APIC_BASE.EN`).
    pub fn hw_enabled(&self) -> bool {
        self.base & BASE_ENABLE != 0
    }

    /// In x2APIC mode.
    pub fn x2apic(&self) -> bool {
        self.base & BASE_EXTD != 0
    }

    /// Software-enabled (SVR bit 8).
    pub fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// The xAPIC MMIO page decodes (globally enabled, not in x2APIC mode).
    pub fn mmio_enabled(&self) -> bool {
        self.hw_enabled() && !self.x2apic()
    }

    /// Write `IA32_APIC_BASE`; `false` = invalid (#GP).
    pub fn set_base_msr(&mut self, v: u64, phys_bits: u32) -> bool {
        let reserved =
            !(((1u64 << phys_bits) - 1) & !0xfff) & !(BASE_BSP | BASE_EXTD | BASE_ENABLE);
        if v & reserved != 0 {
            return false;
        }
        let (en, extd) = (v & BASE_ENABLE != 0, v & BASE_EXTD != 0);
        if extd && (!en || !self.x2apic_supported) {
            return false;
        }
        // x2APIC -> xAPIC directly is invalid (SDM §11.12.5: go through disabled).
        if self.x2apic() && en && !extd {
            return false;
        }
        let was_enabled = self.hw_enabled();
        let was_x2 = self.x2apic();
        self.base = (v & !BASE_BSP) | (self.base & BASE_BSP);
        if was_enabled && !en {
            self.reset_registers();
            self.base = (v & !BASE_BSP) | (self.base & BASE_BSP);
        }
        if extd && !was_x2 {
            // Entering x2APIC mode: the logical ID is derived from the APIC ID.
            self.ldr = ((self.id >> 4) << 16) | (1 << (self.id & 0xf));
        }
        true
    }

    /// The processor priority (§11.8.3.1).
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The highest requested vector that outranks the processor priority.
    fn deliverable(&self) -> Option<u8> {
        if !self.sw_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// LINT0 passes the 8259's INTR through (ExtINT, unmasked).
    fn lint0_extint(&self) -> bool {
        let l = self.lvt[LVT_LINT0];
        l & LVT_MASKED == 0 && DeliveryMode::from_bits(l >> 8) == DeliveryMode::ExtInt
    }

    /// The CPU's INTR, given the 8259's INTR output `ext_int` on LINT0.
    pub fn intr_pending(&self, ext_int: bool) -> bool {
        if !self.hw_enabled() {
            // A globally disabled APIC: LINT0 is the processor's INTR pin.
            return ext_int;
        }
        self.deliverable().is_some() || (ext_int && self.lint0_extint())
    }

    /// INTA: `Some(vector)` from the APIC (IRR → ISR), or `None` when the 8259 answers
    /// (ExtINT, or the APIC is globally disabled). With nothing deliverable any more, the
    /// spurious vector.
    pub fn acknowledge(&mut self, ext_int: bool) -> Option<u8> {
        if !self.hw_enabled() {
            return None;
        }
        if let Some(v) = self.deliverable() {
            self.irr.clear(v);
            self.isr.set(v);
            return Some(v);
        }
        if ext_int && self.lint0_extint() {
            return None;
        }
        Some(self.svr as u8)
    }

    /// A fixed interrupt arrives: IRR (and TMR for level-triggered).
    pub fn accept_interrupt(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.signal_error(esr::RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        self.irr.set(vector);
        if level {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
    }

    /// Does destination `dest` (physical or logical) name this APIC? (§11.6.2)
    pub fn matches_destination(&self, dest: u32, logical: bool) -> bool {
        if self.x2apic() {
            if !logical {
                return dest == u32::MAX || dest == self.id;
            }
            // Cluster in 31:16, bit mask in 15:0.
            return dest == u32::MAX
                || (dest >> 16 == self.ldr >> 16 && dest & self.ldr & 0xffff != 0);
        }
        let dest = dest & 0xff;
        if !logical {
            return dest == 0xff || dest == self.id & 0xff;
        }
        if dest == 0xff {
            return true;
        }
        let ldr = self.ldr >> 24;
        if self.dfr >> 28 == 0xf {
            // Flat model.
            dest & ldr != 0
        } else {
            // Cluster model: cluster in 7:4, members in 3:0.
            dest >> 4 == ldr >> 4 && dest & ldr & 0xf != 0
        }
    }

    /// An interrupt message from the IOAPIC (or another APIC), already routed here.
    pub fn accept_message(&mut self, m: &ApicMessage) {
        if !self.matches_destination(m.dest, m.logical) {
            log::debug!("lapic {}: message {m:?} not for this APIC", self.id);
            return;
        }
        self.deliver(m.mode, m.vector, m.level);
    }

    fn deliver(&mut self, mode: DeliveryMode, vector: u8, level: bool) {
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.accept_interrupt(vector, level)
            }
            DeliveryMode::Nmi => self.nmi_pending = true,
            DeliveryMode::ExtInt => {
                log::debug!("lapic: ExtINT message ignored (the 8259 reaches LINT0 directly)")
            }
            other => log::debug!("lapic: {other:?} delivery not modelled"),
        }
    }

    /// An NMI waits for the CPU; taking it clears it.
    pub fn take_nmi(&mut self) -> bool {
        std::mem::take(&mut self.nmi_pending)
    }

    /// A level-triggered vector was EOI'd: the IOAPIC must hear of it.
    pub fn take_eoi_broadcast(&mut self) -> Option<u8> {
        if self.eoi_out.is_empty() {
            None
        } else {
            Some(self.eoi_out.remove(0))
        }
    }

    /// The LINT1 pin (the board's NMI line) was raised.
    pub fn lint1_raise(&mut self) {
        let l = self.lvt[LVT_LINT1];
        if l & LVT_MASKED == 0 {
            self.deliver(DeliveryMode::from_bits(l >> 8), l as u8, false);
        }
    }

    fn eoi(&mut self) {
        if let Some(v) = self.isr.highest() {
            self.isr.clear(v);
            if self.tmr.get(v) {
                self.eoi_out.push(v);
            }
        }
    }

    fn signal_error(&mut self, bits: u32) {
        let new = bits & !self.esr_pending;
        self.esr_pending |= bits;
        let l = self.lvt[LVT_ERROR];
        if new != 0 && l & LVT_MASKED == 0 {
            self.accept_interrupt(l as u8, false);
        }
    }

    // ---- the timer ----

    fn timer_mode(&self) -> u32 {
        (self.lvt[LVT_TIMER] >> 17) & 3
    }

    /// Bus-clock ticks (ns) per count.
    fn timer_divisor(&self) -> u64 {
        let d = self.timer_divide;
        let code = (d & 3) | ((d >> 1) & 4);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    fn timer_period_ns(&self) -> u64 {
        self.timer_initial as u64 * self.timer_divisor()
    }

    /// The current-count register at `now_ns`.
    pub fn timer_current(&self, now_ns: u64) -> u32 {
        if self.timer_initial == 0 || self.timer_mode() == TIMER_TSC_DEADLINE {
            return 0;
        }
        let elapsed = now_ns.saturating_sub(self.timer_start_ns) / self.timer_divisor();
        let init = self.timer_initial as u64;
        match self.timer_mode() {
            TIMER_PERIODIC => (init - elapsed % init) as u32,
            _ => init.saturating_sub(elapsed) as u32,
        }
    }

    fn start_count(&mut self, now_ns: u64) {
        self.timer_start_ns = now_ns;
        self.timer_next_ns = match (self.timer_mode(), self.timer_initial) {
            (TIMER_TSC_DEADLINE, _) | (_, 0) => None,
            _ => Some(now_ns.saturating_add(self.timer_period_ns())),
        };
    }

    /// The next virtual time the APIC needs [`Lapic::update`].
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.timer_next_ns
    }

    /// Fire the timer if it is due at `now_ns`.
    pub fn update(&mut self, now_ns: u64) {
        let Some(t) = self.timer_next_ns else { return };
        if now_ns < t {
            return;
        }
        self.timer_next_ns = match self.timer_mode() {
            TIMER_PERIODIC => {
                // Periods missed while the host was away coalesce into one interrupt.
                let p = self.timer_period_ns().max(1);
                let missed = (now_ns - t) / p;
                Some(t + (missed + 1) * p)
            }
            TIMER_TSC_DEADLINE => {
                self.tsc_deadline_ns = 0;
                None
            }
            _ => None,
        };
        let l = self.lvt[LVT_TIMER];
        if l & LVT_MASKED == 0 {
            self.accept_interrupt(l as u8, false);
        }
    }

    /// `IA32_TSC_DEADLINE` (virtual ns; 0 = disarmed). Reads 0 outside TSC-deadline mode.
    pub fn tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline_ns
        } else {
            0
        }
    }

    /// Write `IA32_TSC_DEADLINE` (ignored outside TSC-deadline mode).
    pub fn set_tsc_deadline(&mut self, now_ns: u64, deadline_ns: u64) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline_ns = deadline_ns;
        self.timer_next_ns = (deadline_ns != 0).then_some(deadline_ns);
        self.update(now_ns);
    }

    // ---- registers ----

    /// Read register `offset` (a multiple of 16); `None` = no such register (or write-only).
    fn read_reg(&self, now_ns: u64, offset: u32) -> Option<u32> {
        let x2 = self.x2apic();
        Some(match offset {
            reg::ID if x2 => self.id,
            reg::ID => (self.id & 0xff) << 24,
            reg::VERSION => VERSION,
            reg::TPR => self.tpr as u32,
            reg::APR if !x2 => 0,
            reg::PPR => self.ppr() as u32,
            reg::LDR => self.ldr,
            reg::DFR if !x2 => self.dfr,
            reg::SVR => self.svr,
            0x100..=0x170 => self.isr.word(((offset - reg::ISR) / 16) as usize),
            0x180..=0x1f0 => self.tmr.word(((offset - reg::TMR) / 16) as usize),
            0x200..=0x270 => self.irr.word(((offset - reg::IRR) / 16) as usize),
            reg::ESR => self.esr,
            reg::LVT_CMCI => self.lvt[LVT_CMCI],
            reg::ICR_LOW => self.icr as u32,
            reg::ICR_HIGH if !x2 => (self.icr >> 32) as u32,
            reg::LVT_TIMER => self.lvt[LVT_TIMER],
            reg::LVT_THERMAL => self.lvt[LVT_THERMAL],
            reg::LVT_PERF => self.lvt[LVT_PERF],
            reg::LVT_LINT0 => self.lvt[LVT_LINT0],
            reg::LVT_LINT1 => self.lvt[LVT_LINT1],
            reg::LVT_ERROR => self.lvt[LVT_ERROR],
            reg::TIMER_INITIAL => self.timer_initial,
            reg::TIMER_CURRENT => self.timer_current(now_ns),
            reg::TIMER_DIVIDE => self.timer_divide,
            _ => return None,
        })
    }

    fn write_lvt(&mut self, now_ns: u64, index: usize, v: u32) {
        let writable = match index {
            LVT_TIMER => LVT_VECTOR | LVT_MASKED | (3 << 17),
            LVT_LINT0 | LVT_LINT1 => LVT_VECTOR | LVT_DELIVERY | (1 << 13) | (1 << 15) | LVT_MASKED,
            LVT_ERROR => LVT_VECTOR | LVT_MASKED,
            _ => LVT_VECTOR | LVT_DELIVERY | LVT_MASKED,
        };
        let mut v = (v & writable) | (self.lvt[index] & LVT_REMOTE_IRR);
        if !self.sw_enabled() {
            v |= LVT_MASKED;
        }
        let old_mode = self.timer_mode();
        self.lvt[index] = v;
        if index == LVT_TIMER && self.timer_mode() != old_mode {
            // A mode change disarms the timer (§11.5.4.1).
            self.timer_initial = 0;
            self.tsc_deadline_ns = 0;
            self.timer_next_ns = None;
            self.timer_start_ns = now_ns;
        }
    }

    fn send_ipi(&mut self) {
        let low = self.icr as u32;
        let vector = low as u8;
        let mode = DeliveryMode::from_bits(low >> 8);
        let logical = low & (1 << 11) != 0;
        let level = low & (1 << 15) != 0;
        let shorthand = (low >> 18) & 3;
        let dest = if self.x2apic() {
            (self.icr >> 32) as u32
        } else {
            (self.icr >> 56) as u32
        };
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
            self.signal_error(esr::SEND_ILLEGAL_VECTOR);
            return;
        }
        let to_self = match shorthand {
            1 | 2 => true,
            3 => false,
            _ => self.matches_destination(dest, logical),
        };
        if to_self {
            self.deliver(mode, vector, level && mode == DeliveryMode::Fixed);
        }
        if shorthand >= 2 || (shorthand == 0 && !to_self) {
            log::debug!("lapic: IPI {mode:?} vector {vector:#x} to other CPUs: none exist");
        }
    }

    /// Write register `offset`; `false` = no such register or read-only.
    fn write_reg(&mut self, now_ns: u64, offset: u32, v: u32) -> bool {
        let x2 = self.x2apic();
        match offset {
            reg::ID if !x2 => self.id = v >> 24,
            reg::TPR => self.tpr = v as u8,
            reg::EOI => {
                if x2 && v != 0 {
                    return false;
                }
                self.eoi();
            }
            reg::LDR if !x2 => self.ldr = v & 0xff00_0000,
            reg::DFR if !x2 => self.dfr = v | 0x0fff_ffff,
            reg::SVR => {
                self.svr = v & 0x13ff;
                if v & SVR_ENABLE == 0 {
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            reg::ESR => {
                if x2 && v != 0 {
                    return false;
                }
                self.esr = std::mem::take(&mut self.esr_pending);
            }
            reg::LVT_CMCI => self.write_lvt(now_ns, LVT_CMCI, v),
            reg::ICR_LOW => {
                self.icr = (self.icr & !0xffff_ffff) | (v & !(1 << 12)) as u64;
                self.send_ipi();
            }
            reg::ICR_HIGH if !x2 => self.icr = (self.icr & 0xffff_ffff) | (v as u64) << 32,
            reg::LVT_TIMER => self.write_lvt(now_ns, LVT_TIMER, v),
            reg::LVT_THERMAL => self.write_lvt(now_ns, LVT_THERMAL, v),
            reg::LVT_PERF => self.write_lvt(now_ns, LVT_PERF, v),
            reg::LVT_LINT0 => self.write_lvt(now_ns, LVT_LINT0, v),
            reg::LVT_LINT1 => self.write_lvt(now_ns, LVT_LINT1, v),
            reg::LVT_ERROR => self.write_lvt(now_ns, LVT_ERROR, v),
            reg::TIMER_INITIAL => {
                if self.timer_mode() != TIMER_TSC_DEADLINE {
                    self.timer_initial = v;
                    self.start_count(now_ns);
                }
            }
            reg::TIMER_DIVIDE => {
                // Keep the count running at the new rate from the current value.
                let cur = self.timer_current(now_ns);
                self.timer_divide = v & 0xb;
                if self.timer_initial != 0 && self.timer_mode() != TIMER_TSC_DEADLINE {
                    let done = (self.timer_initial - cur) as u64 * self.timer_divisor();
                    self.timer_start_ns = now_ns.saturating_sub(done);
                    if self.timer_next_ns.is_some() {
                        self.timer_next_ns =
                            Some(now_ns.saturating_add(cur as u64 * self.timer_divisor()));
                    }
                }
            }
            reg::SELF_IPI if x2 => {
                let vector = v as u8;
                if vector < 16 {
                    self.signal_error(esr::SEND_ILLEGAL_VECTOR);
                } else {
                    self.accept_interrupt(vector, false);
                }
            }
            // Read-only registers ignore writes in xAPIC mode.
            reg::VERSION | reg::PPR | reg::APR | reg::RRD | 0x100..=0x270 | reg::TIMER_CURRENT
                if !x2 => {}
            _ => return false,
        }
        true
    }

    /// An xAPIC MMIO read at `offset` in the page (registers are 32 bits at 16-byte strides).
    pub fn mmio_read(&mut self, now_ns: u64, offset: u64) -> u32 {
        let off = (offset & 0xff0) as u32;
        match self.read_reg(now_ns, off) {
            Some(v) => v >> ((offset & 3) * 8),
            None => {
                if off != reg::EOI && off != reg::RRD {
                    self.signal_error(esr::ILLEGAL_REGISTER);
                }
                0
            }
        }
    }

    /// An xAPIC MMIO write at `offset`.
    pub fn mmio_write(&mut self, now_ns: u64, offset: u64, value: u32) {
        let off = (offset & 0xff0) as u32;
        if off == reg::SELF_IPI || !self.write_reg(now_ns, off, value) {
            self.signal_error(esr::ILLEGAL_REGISTER);
        }
    }

    /// RDMSR of x2APIC register MSR `msr` (0x800-0x8FF); `None` = #GP.
    pub fn msr_read(&mut self, now_ns: u64, msr: u32) -> Option<u64> {
        if !self.x2apic() || !(0x800..=0x8ff).contains(&msr) {
            return None;
        }
        let off = (msr - 0x800) * 16;
        match off {
            reg::ICR_LOW => Some(self.icr),
            reg::EOI | reg::SELF_IPI => None,
            _ => self.read_reg(now_ns, off).map(u64::from),
        }
    }

    /// WRMSR of x2APIC register MSR `msr`; `false` = #GP.
    pub fn msr_write(&mut self, now_ns: u64, msr: u32, v: u64) -> bool {
        if !self.x2apic() || !(0x800..=0x8ff).contains(&msr) {
            return false;
        }
        let off = (msr - 0x800) * 16;
        if off == reg::ICR_LOW {
            self.icr = v & !(1 << 12);
            self.send_ipi();
            return true;
        }
        if v >> 32 != 0 {
            return false;
        }
        match off {
            reg::ID | reg::LDR | reg::VERSION | reg::PPR | reg::TIMER_CURRENT => false,
            0x100..=0x270 => false,
            _ => self.write_reg(now_ns, off, v as u32),
        }
    }

    /// CR8 (TPR bits 7:4).
    pub fn cr8(&self) -> u8 {
        self.tpr >> 4
    }

    /// MOV to CR8.
    pub fn set_cr8(&mut self, v: u8) {
        self.tpr = (v & 0xf) << 4;
    }

    /// The APIC ID.
    pub fn id(&self) -> u32 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An APIC software-enabled with spurious vector 0xff.
    fn enabled() -> Lapic {
        let mut l = Lapic::new(0, true, true);
        l.mmio_write(0, reg::SVR as u64, 0x1ff);
        l
    }

    fn take(l: &mut Lapic) -> Option<u8> {
        if l.intr_pending(false) {
            l.acknowledge(false)
        } else {
            None
        }
    }

    #[test]
    fn reset_values() {
        let mut l = Lapic::new(0, true, false);
        assert_eq!(l.base_msr(), 0xfee0_0900);
        assert_eq!(l.mmio_read(0, reg::VERSION as u64), 0x0005_0014);
        assert_eq!(l.mmio_read(0, reg::SVR as u64), 0xff);
        assert_eq!(l.mmio_read(0, reg::DFR as u64), u32::MAX);
        assert_eq!(l.mmio_read(0, reg::LVT_TIMER as u64), LVT_MASKED);
        assert_eq!(
            l.mmio_read(0, reg::LVT_LINT0 as u64),
            0x700,
            "BSP LINT0: ExtINT"
        );
        assert!(!l.sw_enabled());
    }

    #[test]
    fn priority_order_and_eoi() {
        let mut l = enabled();
        l.accept_interrupt(0x31, false);
        l.accept_interrupt(0x52, false);
        l.accept_interrupt(0x41, false);
        assert_eq!(take(&mut l), Some(0x52), "highest vector first");
        assert_eq!(l.ppr(), 0x50);
        // 0x41 is of a lower class than the one in service: held back.
        assert!(!l.intr_pending(false));
        l.accept_interrupt(0x61, false);
        assert_eq!(take(&mut l), Some(0x61), "a higher class nests");
        l.mmio_write(0, reg::EOI as u64, 0);
        assert_eq!(l.ppr(), 0x50, "EOI retires the highest in service");
        l.mmio_write(0, reg::EOI as u64, 0);
        assert_eq!(take(&mut l), Some(0x41));
        l.mmio_write(0, reg::EOI as u64, 0);
        assert_eq!(take(&mut l), Some(0x31));
        l.mmio_write(0, reg::EOI as u64, 0);
        assert_eq!(take(&mut l), None);
    }

    #[test]
    fn tpr_masks_classes_and_cr8_aliases_it() {
        let mut l = enabled();
        l.set_cr8(5);
        assert_eq!(l.mmio_read(0, reg::TPR as u64), 0x50);
        l.accept_interrupt(0x55, false);
        assert!(!l.intr_pending(false), "same class as TPR: held");
        l.mmio_write(0, reg::TPR as u64, 0x40);
        assert_eq!(l.cr8(), 4);
        assert_eq!(take(&mut l), Some(0x55));
    }

    #[test]
    fn software_disabled_delivers_nothing_and_masks_lvts() {
        let mut l = enabled();
        l.mmio_write(0, reg::LVT_TIMER as u64, 0x40);
        l.mmio_write(0, reg::SVR as u64, 0xff);
        assert_ne!(l.mmio_read(0, reg::LVT_TIMER as u64) & LVT_MASKED, 0);
        l.mmio_write(0, reg::LVT_TIMER as u64, 0x40);
        assert_ne!(
            l.mmio_read(0, reg::LVT_TIMER as u64) & LVT_MASKED,
            0,
            "cannot unmask while software-disabled"
        );
        l.accept_interrupt(0x40, false);
        assert!(!l.intr_pending(false));
    }

    #[test]
    fn level_eoi_is_broadcast() {
        let mut l = enabled();
        l.accept_message(&ApicMessage {
            vector: 0x39,
            mode: DeliveryMode::Fixed,
            logical: false,
            level: true,
            dest: 0,
        });
        assert_eq!(l.mmio_read(0, (reg::TMR + 0x10) as u64), 1 << (0x39 - 32));
        assert_eq!(take(&mut l), Some(0x39));
        l.mmio_write(0, reg::EOI as u64, 0);
        assert_eq!(l.take_eoi_broadcast(), Some(0x39));
        assert_eq!(l.take_eoi_broadcast(), None);
        // An edge interrupt's EOI is not broadcast.
        l.accept_interrupt(0x3a, false);
        assert_eq!(take(&mut l), Some(0x3a));
        l.mmio_write(0, reg::EOI as u64, 0);
        assert_eq!(l.take_eoi_broadcast(), None);
    }

    #[test]
    fn destinations() {
        let mut l = enabled();
        let msg = |dest, logical| ApicMessage {
            vector: 0x40,
            mode: DeliveryMode::Fixed,
            logical,
            level: false,
            dest,
        };
        l.accept_message(&msg(3, false));
        assert!(!l.intr_pending(false), "physical 3 is not APIC 0");
        l.mmio_write(0, reg::LDR as u64, 0x0100_0000);
        l.accept_message(&msg(1, true));
        assert_eq!(take(&mut l), Some(0x40), "logical flat, bit 0");
    }

    #[test]
    fn one_shot_timer() {
        let mut l = enabled();
        l.mmio_write(0, reg::TIMER_DIVIDE as u64, 0x3); // divide by 16
        l.mmio_write(0, reg::LVT_TIMER as u64, 0xec);
        l.mmio_write(1000, reg::TIMER_INITIAL as u64, 100);
        assert_eq!(l.next_deadline_ns(), Some(1000 + 1600));
        assert_eq!(l.mmio_read(1000 + 160, reg::TIMER_CURRENT as u64), 90);
        l.update(2599);
        assert!(!l.intr_pending(false));
        l.update(2600);
        assert_eq!(take(&mut l), Some(0xec));
        assert_eq!(l.next_deadline_ns(), None, "one-shot: once");
        assert_eq!(l.mmio_read(5000, reg::TIMER_CURRENT as u64), 0);
    }

    #[test]
    fn periodic_timer_and_divide_by_one() {
        let mut l = enabled();
        l.mmio_write(0, reg::TIMER_DIVIDE as u64, 0xb); // divide by 1
        l.mmio_write(0, reg::LVT_TIMER as u64, (1 << 17) | 0xef);
        l.mmio_write(0, reg::TIMER_INITIAL as u64, 1000);
        let mut fired = 0;
        for t in (0..=5000).step_by(100) {
            l.update(t);
            if take(&mut l).is_some() {
                fired += 1;
                l.mmio_write(t, reg::EOI as u64, 0);
            }
        }
        assert_eq!(fired, 5);
        assert_eq!(l.mmio_read(5250, reg::TIMER_CURRENT as u64), 750);
        // A late update coalesces missed periods into one interrupt.
        l.update(9999);
        assert_eq!(take(&mut l), Some(0xef));
        assert_eq!(take(&mut l), None);
        assert_eq!(l.next_deadline_ns(), Some(10000));
        // Masked: it keeps counting but raises nothing.
        l.mmio_write(0, reg::EOI as u64, 0);
        l.mmio_write(10000, reg::LVT_TIMER as u64, (1 << 17) | LVT_MASKED | 0xef);
        l.update(10000);
        assert_eq!(take(&mut l), None);
        assert_eq!(l.next_deadline_ns(), Some(11000));
    }

    #[test]
    fn tsc_deadline_timer() {
        let mut l = enabled();
        l.set_tsc_deadline(0, 5000);
        assert_eq!(l.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
        l.mmio_write(0, reg::LVT_TIMER as u64, (2 << 17) | 0xee);
        l.mmio_write(0, reg::TIMER_INITIAL as u64, 100);
        assert_eq!(
            l.mmio_read(0, reg::TIMER_INITIAL as u64),
            0,
            "initial count ignored"
        );
        l.set_tsc_deadline(100, 5000);
        assert_eq!(l.next_deadline_ns(), Some(5000));
        l.update(4999);
        assert_eq!(take(&mut l), None);
        l.update(5000);
        assert_eq!(take(&mut l), Some(0xee));
        assert_eq!(l.tsc_deadline(), 0, "disarmed after firing");
        // A deadline in the past fires at once.
        l.mmio_write(0, reg::EOI as u64, 0);
        l.set_tsc_deadline(6000, 10);
        assert_eq!(take(&mut l), Some(0xee));
        // Writing 0 disarms; a mode change disarms too.
        l.set_tsc_deadline(6000, 9000);
        l.set_tsc_deadline(6000, 0);
        assert_eq!(l.next_deadline_ns(), None);
        l.set_tsc_deadline(6000, 9000);
        l.mmio_write(6000, reg::LVT_TIMER as u64, 0xee);
        assert_eq!(l.next_deadline_ns(), None);
    }

    #[test]
    fn lint0_extint_and_global_disable() {
        let mut l = Lapic::new(0, true, false);
        assert!(l.intr_pending(true), "ExtINT passes the 8259 through");
        assert_eq!(l.acknowledge(true), None, "the 8259 gives the vector");
        l.mmio_write(0, reg::SVR as u64, 0x1ff);
        l.mmio_write(0, reg::LVT_LINT0 as u64, LVT_MASKED | 0x700);
        assert!(!l.intr_pending(true), "masked LINT0");
        assert!(l.set_base_msr(0xfee0_0000, 40), "global disable");
        assert!(l.intr_pending(true), "a disabled APIC: LINT0 is INTR");
        assert_eq!(l.mmio_read(0, reg::SVR as u64), 0xff, "registers reset");
    }

    #[test]
    fn lint1_nmi_and_self_ipis() {
        let mut l = enabled();
        l.mmio_write(0, reg::LVT_LINT1 as u64, 0x400);
        l.lint1_raise();
        assert!(l.take_nmi());
        assert!(!l.take_nmi());
        // Fixed self IPI by shorthand, then by destination.
        l.mmio_write(0, reg::ICR_LOW as u64, (1 << 18) | 0x45);
        assert_eq!(take(&mut l), Some(0x45));
        l.mmio_write(0, reg::EOI as u64, 0);
        l.mmio_write(0, reg::ICR_HIGH as u64, 0);
        l.mmio_write(0, reg::ICR_LOW as u64, 0x46);
        assert_eq!(l.mmio_read(0, reg::ICR_LOW as u64) & (1 << 12), 0, "idle");
        assert_eq!(take(&mut l), Some(0x46), "destination 0 is this APIC");
        // All-excluding-self reaches nobody here.
        l.mmio_write(0, reg::ICR_LOW as u64, (3 << 18) | 0x47);
        assert!(!l.irr.get(0x47));
        // NMI to self.
        l.mmio_write(0, reg::ICR_LOW as u64, (1 << 18) | 0x400);
        assert!(l.take_nmi());
    }

    #[test]
    fn error_register() {
        let mut l = enabled();
        l.mmio_write(0, reg::LVT_ERROR as u64, 0xfe);
        l.mmio_write(0, reg::ICR_LOW as u64, (1 << 18) | 0x05);
        assert_eq!(
            l.mmio_read(0, reg::ESR as u64),
            0,
            "latched only by a write"
        );
        l.mmio_write(0, reg::ESR as u64, 0);
        assert_eq!(l.mmio_read(0, reg::ESR as u64), esr::SEND_ILLEGAL_VECTOR);
        assert_eq!(take(&mut l), Some(0xfe), "LVT error interrupt");
        l.mmio_write(0, reg::ESR as u64, 0);
        assert_eq!(l.mmio_read(0, reg::ESR as u64), 0);
        l.mmio_read(0, 0x50);
        l.mmio_write(0, reg::ESR as u64, 0);
        assert_eq!(l.mmio_read(0, reg::ESR as u64), esr::ILLEGAL_REGISTER);
    }

    #[test]
    fn x2apic_mode() {
        let mut l = Lapic::new(3, true, true);
        assert!(l.msr_read(0, 0x802).is_none(), "xAPIC mode: no x2APIC MSRs");
        assert!(
            !l.set_base_msr(0xfee0_0000 | BASE_EXTD, 40),
            "EXTD without EN"
        );
        assert!(l.set_base_msr(0xfee0_0000 | BASE_ENABLE | BASE_EXTD, 40));
        assert!(!l.mmio_enabled());
        assert_eq!(l.msr_read(0, 0x802), Some(3), "32-bit ID");
        assert_eq!(l.msr_read(0, 0x80d), Some(1 << 3), "derived LDR");
        assert!(l.msr_write(0, 0x80f, 0x1ff));
        assert!(!l.msr_write(0, 0x80b, 1), "EOI must be written with 0");
        assert!(l.msr_read(0, 0x80b).is_none(), "EOI is write-only");
        assert!(l.msr_write(0, 0x83f, 0x50), "SELF IPI");
        assert_eq!(take(&mut l), Some(0x50));
        assert!(l.msr_write(0, 0x80b, 0));
        assert!(l.msr_write(0, 0x830, (3u64 << 32) | 0x51), "ICR to own ID");
        assert_eq!(take(&mut l), Some(0x51));
        assert!(
            !l.set_base_msr(0xfee0_0000 | BASE_ENABLE, 40),
            "x2APIC -> xAPIC directly is invalid"
        );
        assert!(l.set_base_msr(0xfee0_0000, 40));
        assert!(l.set_base_msr(0xfee0_0000 | BASE_ENABLE, 40));
        assert!(l.mmio_enabled());
    }

    #[test]
    fn no_x2apic_without_support() {
        let mut l = Lapic::new(0, true, false);
        assert!(!l.set_base_msr(0xfee0_0000 | BASE_ENABLE | BASE_EXTD, 40));
        assert!(!l.set_base_msr(1 << 45, 40), "reserved address bits");
    }
}
