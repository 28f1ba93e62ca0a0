//! What the CPU needs from the machine.

use tci64_engine::MmioBus;

/// The machine as the CPU sees it: MMIO (from the engine), port I/O, the interrupt
/// controller's INTR/INTA, and the time-stamp counter.
pub trait X86Bus: MmioBus {
    /// `IN`: read `size` (1, 2, 4) bytes from `port`. Unclaimed ports read as all ones.
    fn pio_read(&mut self, port: u16, size: u8) -> u32;
    /// `OUT`.
    fn pio_write(&mut self, port: u16, size: u8, value: u32);
    /// The INTR line: an external interrupt is waiting.
    fn intr_pending(&mut self) -> bool;
    /// INTA: acknowledge the interrupt and get its vector.
    fn intr_ack(&mut self) -> u8;
    /// The time-stamp counter now, given the instructions retired so far.
    fn tsc(&mut self, icount: u64) -> u64;
    /// The machine wants the CPU to return from `run` at the next block boundary (e.g. a
    /// device needs guest memory to finish a request). Checked when the CPU polls: every
    /// `Guest::POLL_INTERVAL` (16) blocks, and after any block that trapped or exited.
    fn take_stop_request(&mut self) -> bool {
        false
    }
}
