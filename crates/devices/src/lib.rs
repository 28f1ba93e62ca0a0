//! PC hardware models for tci64. Each device is one file named after the hardware, with its
//! unit tests beside it. Devices know nothing about the CPU: the machine wires them.
//!
//! Conventions shared by every device:
//! - Port I/O goes through [`PioDevice`] (absolute port numbers, sizes 1/2/4). Devices whose
//!   registers depend on time (PIT, RTC) take the machine's virtual clock `now_ns` as an extra
//!   argument of their own `pio_read`/`pio_write` methods instead.
//! - Interrupt outputs are levels the machine polls (`irq_level()`), then feeds into the PIC
//!   with [`i8259::Pic::set_irq`]. The PIT channel 0 is the exception: it reports rising edges
//!   ([`i8254::Pit::irq0_edges`]) because its output pulses are far shorter than a poll period.
//! - Reset requests (port 0x92, 0xCF9, i8042 0xFE) are flags the machine takes with
//!   `take_reset_request()`.
//! - No device panics on guest input; wrong programming gets the hardware-defined behaviour.
//!
//! What the machine calls, per device:
//!
//! | device | construct | I/O | outputs |
//! |---|---|---|---|
//! | [`uart16550::Uart16550`] | `new(0x3F8)` | `PioDevice` 0x3F8-0x3FF | `irq_level()` → IRQ 4, `take_output()`, `receive(&[u8]) -> accepted` |
//! | [`i8259::Pic`] | `new()` | `PioDevice` 0x20/0x21/0xA0/0xA1/0x4D0/0x4D1 | `set_irq(line, level)`, `interrupt_pending()`, `acknowledge() -> vector` |
//! | [`i8254::Pit`] | `new(now_ns)` | `pio_read(now_ns, port)`, `pio_write(now_ns, port, v)` 0x40-0x43, 0x61 | `irq0_edges(now_ns)` → pulse IRQ 0, `next_deadline_ns(now_ns)` |
//! | [`mc146818::Rtc`] | `new(epoch_secs)` | `pio_read(now_ns, port)`, `pio_write(now_ns, port, v)` 0x70/0x71 | `update(now_ns)` then `irq_level()` → IRQ 8, `next_deadline_ns(now_ns)` |
//! | [`i8042::I8042`] | `new()` | `PioDevice` 0x60/0x64 | `take_reset_request()`, `irq1_level()`, `irq12_level()` |
//! | [`misc::PostPort`], [`misc::Port92`] | `default()` | `PioDevice` 0x80, 0x92 | `Port92::take_reset_request()`, `a20_enabled()` |
//! | [`cf9::ResetControl`] | `default()` | `PioDevice` 0xCF9 (byte) | `take_reset_request()` |
//! | [`virtio::mmio::VirtioMmio`] | `new(VirtioBlk::new(backend, ro), legacy)` | `mmio_read(off, buf)`, `mmio_write(off, buf, mem)` | `irq_level()` |
//! | [`pci::PciBus`] | `new()`, `add_device(slot, dev, irq)`, `assign_resources(mem, io)` | `PioDevice` 0xCF8 (dword), 0xCFC-0xCFF; `mmio_read/mmio_write(paddr, ..)`, `io_read/io_write` for BARs | `irq_levels()` (bit n = IRQ n), `service(mem)` after `Access::NeedsService` |
//! | [`virtio::pci::VirtioPci`] | `new(VirtioBlk::new(backend, ro))` | a [`pci::PciDevice`] on the bus | INTx |

pub mod acpi_pm;
pub mod acpi_sleep;
pub mod block;
pub mod cf9;
pub mod i8042;
pub mod i8254;
pub mod i8259;
pub mod ioapic;
pub mod lapic;
pub mod mc146818;
pub mod misc;
pub mod pci;
pub mod state;
pub mod uart16550;
pub mod virtio;

/// A device reached through x86 port I/O.
pub trait PioDevice {
    /// Read `size` (1, 2 or 4) bytes at absolute `port`. Unused bits read as ones or zeros as
    /// the hardware does.
    fn pio_read(&mut self, port: u16, size: u8) -> u32;
    /// Write the low `size` (1, 2 or 4) bytes of `value` at absolute `port`.
    fn pio_write(&mut self, port: u16, size: u8, value: u32);
}
