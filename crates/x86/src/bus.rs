//! What the CPU needs from the machine.

use tci64_engine::MmioBus;

/// The CPU's interrupt controller as its pins and registers see it: the local APIC when the
/// machine has one (which also forwards the 8259's INTR through LINT0), otherwise the 8259's
/// INTR/INTA directly.
///
/// One controller per CPU: with several CPUs each gets its own view (the APIC ID tells them
/// apart).
pub trait InterruptController {
    /// The INTR line: a maskable interrupt is ready for delivery (for an APIC: the highest
    /// requested vector outranks the processor priority, or an ExtINT is waiting).
    fn intr_pending(&mut self) -> bool;
    /// INTA: accept that interrupt and get its vector.
    fn intr_ack(&mut self) -> u8;
    /// An NMI is waiting at the controller (LINT1, an NMI IPI). Taking it clears it.
    fn take_nmi(&mut self) -> bool {
        false
    }
    /// RDMSR of an APIC MSR: `IA32_APIC_BASE` (0x1B), the x2APIC registers (0x800-0x8FF),
    /// `IA32_TSC_DEADLINE` (0x6E0; in virtual nanoseconds, the CPU adds its TSC offset).
    /// `None`: the controller has no such MSR (no APIC, or not in x2APIC mode).
    fn apic_msr_read(&mut self, _msr: u32) -> Option<u64> {
        None
    }
    /// WRMSR of an APIC MSR (see [`InterruptController::apic_msr_read`]). `None`: no such MSR;
    /// `Some(false)`: the write is invalid (#GP); `Some(true)`: done.
    fn apic_msr_write(&mut self, _msr: u32, _value: u64) -> Option<bool> {
        None
    }
    /// MOV to CR8: the task priority (CR8 = TPR bits 7:4).
    fn set_task_priority(&mut self, _cr8: u8) {}
    /// MOV from CR8 with an APIC: TPR bits 7:4. `None`: no APIC (CR8 is a plain register).
    fn task_priority(&mut self) -> Option<u8> {
        None
    }
}

/// The machine as the CPU sees it: MMIO (from the engine), port I/O, the interrupt
/// controller, and the time-stamp counter.
pub trait X86Bus: MmioBus + InterruptController {
    /// `IN`: read `size` (1, 2, 4) bytes from `port`. Unclaimed ports read as all ones.
    fn pio_read(&mut self, port: u16, size: u8) -> u32;
    /// `OUT`.
    fn pio_write(&mut self, port: u16, size: u8, value: u32);
    /// The time-stamp counter now, given the instructions retired so far.
    fn tsc(&mut self, icount: u64) -> u64;
    /// The machine wants the CPU to return from `run` at the next block boundary (e.g. a
    /// device needs guest memory to finish a request). Checked when the CPU polls: every
    /// `Guest::POLL_INTERVAL` (16) blocks, and after any block that trapped or exited.
    fn take_stop_request(&mut self) -> bool {
        false
    }
}
