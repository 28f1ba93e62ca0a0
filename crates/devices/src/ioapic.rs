//! The I/O APIC (82093AA-style, version 0x20 with an EOI register): 24 interrupt pins, each
//! with a redirection-table entry that turns a pin event into an interrupt message for the
//! local APICs.
//!
//! Registers (82093AA datasheet §3; version 0x20 adds the EOI register at 0x40):
//! - MMIO `0x00` IOREGSEL (index), `0x10` IOWIN (data), `0x40` EOI (vector; version ≥ 0x20).
//! - Index 0x00 IOAPICID (bits 27:24), 0x01 IOAPICVER (max entry 23 << 16 | 0x20), 0x02
//!   IOAPICARB, 0x10 + 2n / 0x11 + 2n redirection entry n low/high.
//!
//! Entry bits: vector 7:0, delivery mode 10:8, destination mode 11 (1 = logical), delivery
//! status 12 (RO), polarity 13, remote IRR 14 (RO), trigger mode 15 (1 = level), mask 16,
//! destination 63:56.
//!
//! The machine drives pins with *asserted* levels ([`IoApic::set_irq`]); the polarity bit is
//! kept but not applied (as QEMU's IOAPIC does: the board's lines are already "asserted =
//! high"). Edge-triggered pins latch a rising edge and deliver it once unmasked; level pins
//! deliver while asserted, set remote IRR, and wait for the local APIC's EOI broadcast
//! ([`IoApic::eoi`]) before delivering again.

use crate::lapic::{ApicMessage, DeliveryMode};

/// Redirection entries.
pub const NUM_PINS: usize = 24;
/// IOAPICVER: version 0x20, maximum redirection entry 23.
pub const VERSION: u32 = 0x20 | ((NUM_PINS as u32 - 1) << 16);

/// MMIO: the index register.
pub const IOREGSEL: u64 = 0x00;
/// MMIO: the data window.
pub const IOWIN: u64 = 0x10;
/// MMIO: the EOI register (version 0x20).
pub const IOEOI: u64 = 0x40;

const RTE_VECTOR: u64 = 0xff;
const RTE_DELIVERY_STATUS: u64 = 1 << 12;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
/// Bits software can write: everything but delivery status and remote IRR, and the
/// reserved bits 55:17.
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;

/// The IOAPIC.
/// Plain data: the device is its own snapshot state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IoApic {
    id: u8,
    regsel: u8,
    rte: [u64; NUM_PINS],
    /// Asserted level of each pin (bit n = pin n).
    levels: u32,
    /// Edge pins with a latched event not yet delivered.
    edge_pending: u32,
    /// Messages for the local APICs, in order.
    out: Vec<ApicMessage>,
}

impl IoApic {
    /// Power-on state: every entry masked, edge, vector 0; IOAPICID = `id`.
    pub fn new(id: u8) -> Self {
        IoApic {
            id: id & 0xf,
            regsel: 0,
            rte: [RTE_MASKED; NUM_PINS],
            levels: 0,
            edge_pending: 0,
            out: Vec::new(),
        }
    }

    /// Redirection entry `pin` (for inspection and tests).
    pub fn entry(&self, pin: usize) -> u64 {
        self.rte.get(pin).copied().unwrap_or(0)
    }

    /// Drive pin `pin` to `level` (asserted = true).
    pub fn set_irq(&mut self, pin: u8, level: bool) {
        let pin = pin as usize;
        if pin >= NUM_PINS {
            return;
        }
        let bit = 1u32 << pin;
        let was = self.levels & bit != 0;
        if level {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
        if self.rte[pin] & RTE_LEVEL == 0 && level && !was {
            self.edge_pending |= bit;
        }
        self.service(pin);
    }

    /// Deliver pin `pin` if it has something to deliver and may.
    fn service(&mut self, pin: usize) {
        let e = self.rte[pin];
        if e & RTE_MASKED != 0 {
            return;
        }
        let bit = 1u32 << pin;
        let level = e & RTE_LEVEL != 0;
        if level {
            if self.levels & bit == 0 || e & RTE_REMOTE_IRR != 0 {
                return;
            }
            self.rte[pin] |= RTE_REMOTE_IRR;
        } else {
            if self.edge_pending & bit == 0 {
                return;
            }
            self.edge_pending &= !bit;
        }
        self.out.push(ApicMessage {
            vector: (e & RTE_VECTOR) as u8,
            mode: DeliveryMode::from_bits((e >> 8) as u32),
            logical: e & (1 << 11) != 0,
            level,
            dest: (e >> 56) as u32,
        });
    }

    /// The next interrupt message for the local APICs.
    pub fn take_message(&mut self) -> Option<ApicMessage> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    /// A local APIC EOI'd level-triggered `vector`: clear remote IRR of the entries with that
    /// vector; a pin still asserted delivers again.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..NUM_PINS {
            let e = self.rte[pin];
            if e & RTE_REMOTE_IRR != 0 && (e & RTE_VECTOR) as u8 == vector {
                self.rte[pin] &= !RTE_REMOTE_IRR;
                self.service(pin);
            }
        }
    }

    fn read_reg(&self) -> u32 {
        match self.regsel {
            0x00 => (self.id as u32) << 24,
            0x01 => VERSION,
            0x02 => (self.id as u32) << 24,
            r @ 0x10..=0x3f => {
                let e = self.rte[(r as usize - 0x10) / 2];
                if r & 1 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, v: u32) {
        match self.regsel {
            0x00 => self.id = ((v >> 24) & 0xf) as u8,
            r @ 0x10..=0x3f => {
                let pin = (r as usize - 0x10) / 2;
                let old = self.rte[pin];
                let new = if r & 1 == 0 {
                    (old & !0xffff_ffff) | v as u64
                } else {
                    (old & 0xffff_ffff) | (v as u64) << 32
                };
                let keep = RTE_REMOTE_IRR | RTE_DELIVERY_STATUS;
                let mut e = (new & RTE_WRITABLE) | (old & keep);
                if e & RTE_LEVEL == 0 {
                    // Remote IRR is meaningless (and cleared) for edge entries.
                    e &= !RTE_REMOTE_IRR;
                }
                self.rte[pin] = e;
                self.service(pin);
            }
            _ => {}
        }
    }

    /// A 32-bit read at `offset` in the MMIO page (other sizes read the containing dword).
    pub fn mmio_read(&mut self, offset: u64) -> u32 {
        match offset & !3 {
            IOREGSEL => self.regsel as u32,
            IOWIN => self.read_reg(),
            _ => 0,
        }
    }

    /// A write at `offset` in the MMIO page.
    pub fn mmio_write(&mut self, offset: u64, value: u32) {
        match offset & !3 {
            IOREGSEL => self.regsel = value as u8,
            IOWIN => self.write_reg(value),
            IOEOI => self.eoi(value as u8),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut IoApic, pin: u8, low: u32, high: u32) {
        io.mmio_write(IOREGSEL, 0x10 + 2 * pin as u32);
        io.mmio_write(IOWIN, low);
        io.mmio_write(IOREGSEL, 0x11 + 2 * pin as u32);
        io.mmio_write(IOWIN, high);
    }

    fn read(io: &mut IoApic, reg: u32) -> u32 {
        io.mmio_write(IOREGSEL, reg);
        io.mmio_read(IOWIN)
    }

    #[test]
    fn id_version_and_reset_state() {
        let mut io = IoApic::new(2);
        assert_eq!(read(&mut io, 0), 2 << 24);
        assert_eq!(read(&mut io, 1), 0x0017_0020);
        assert_eq!(read(&mut io, 0x10), 0x1_0000, "masked after reset");
        io.set_irq(4, true);
        assert_eq!(io.take_message(), None, "masked pins deliver nothing");
    }

    #[test]
    fn edge_delivers_once_per_rising_edge() {
        let mut io = IoApic::new(0);
        program(&mut io, 2, 0x30, 0);
        io.set_irq(2, true);
        let m = io.take_message().unwrap();
        assert_eq!(
            (m.vector, m.level, m.mode),
            (0x30, false, DeliveryMode::Fixed)
        );
        io.set_irq(2, true);
        assert_eq!(io.take_message(), None, "no new edge");
        io.set_irq(2, false);
        io.set_irq(2, true);
        assert!(io.take_message().is_some());
    }

    #[test]
    fn masked_edge_is_delivered_on_unmask() {
        let mut io = IoApic::new(0);
        program(&mut io, 4, 0x1_0031, 0);
        io.set_irq(4, true);
        io.set_irq(4, false);
        assert_eq!(io.take_message(), None);
        program(&mut io, 4, 0x31, 0);
        assert_eq!(io.take_message().map(|m| m.vector), Some(0x31));
    }

    #[test]
    fn level_remote_irr_and_redelivery_after_eoi() {
        let mut io = IoApic::new(0);
        // Level, logical destination 1, vector 0x41.
        program(&mut io, 11, 0x8000 | 0x800 | 0x41, 0x0100_0000);
        io.set_irq(11, true);
        let m = io.take_message().unwrap();
        assert_eq!(
            (m.vector, m.level, m.logical, m.dest),
            (0x41, true, true, 1)
        );
        assert_ne!(read(&mut io, 0x10 + 22) & (1 << 14), 0, "remote IRR set");
        // Still asserted: nothing more until the EOI.
        io.set_irq(11, true);
        assert_eq!(io.take_message(), None);
        io.eoi(0x41);
        assert_eq!(
            io.take_message().map(|m| m.vector),
            Some(0x41),
            "a line still asserted delivers again after the EOI"
        );
        // Deasserted before the EOI: the EOI only clears remote IRR.
        io.set_irq(11, false);
        io.eoi(0x41);
        assert_eq!(io.take_message(), None);
        assert_eq!(read(&mut io, 0x10 + 22) & (1 << 14), 0);
        // The EOI register does the same as a broadcast.
        io.set_irq(11, true);
        assert!(io.take_message().is_some());
        io.mmio_write(IOEOI, 0x41);
        assert!(
            io.take_message().is_some(),
            "still asserted: delivered again"
        );
        assert_ne!(
            read(&mut io, 0x10 + 22) & (1 << 14),
            0,
            "and remote IRR set again"
        );
    }

    #[test]
    fn eoi_of_another_vector_does_nothing() {
        let mut io = IoApic::new(0);
        program(&mut io, 5, 0x8000 | 0x50, 0);
        io.set_irq(5, true);
        assert!(io.take_message().is_some());
        io.eoi(0x51);
        assert_eq!(io.take_message(), None);
    }

    #[test]
    fn read_only_bits_ignore_writes() {
        let mut io = IoApic::new(0);
        program(&mut io, 1, 0xffff_ffff, 0xffff_ffff);
        assert_eq!(read(&mut io, 0x12) & ((1 << 12) | (1 << 14)), 0);
        assert_eq!(read(&mut io, 0x13), 0xff00_0000);
    }
}
