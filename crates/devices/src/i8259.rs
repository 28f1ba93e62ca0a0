//! The PC/AT 8259A programmable interrupt controller pair (Intel 8259A datasheet): master at
//! 0x20/0x21, slave at 0xA0/0xA1 cascaded on master IR2, plus the PIIX edge/level control
//! registers (ELCR) at 0x4D0/0x4D1.
//!
//! Input semantics: a level-triggered line (ELCR bit set) requests while it is high; an
//! edge-triggered line latches its IRR bit on a rising edge and keeps it until acknowledged, so
//! the machine may pulse a line (`set_irq(l, true); set_irq(l, false)`). The cascade input
//! (master IR2) follows the slave's INT output as a level.
//!
//! Acknowledge with nothing left to deliver (a level request vanished, or the line was masked
//! after INTR was sampled) returns the spurious vector of IR7 of the chip concerned without
//! setting its ISR bit (IRQ 7 on the master, IRQ 15 on the slave with master ISR2 set).

use crate::PioDevice;

/// Master command port (ICW1, OCW2, OCW3; reads IRR/ISR/poll).
pub const MASTER_CMD: u16 = 0x20;
/// Master data port (ICW2-4, OCW1 = IMR).
pub const MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const SLAVE_CMD: u16 = 0xA0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xA1;
/// Edge/level control register for IRQ 0-7 (PIIX).
pub const ELCR_MASTER: u16 = 0x4D0;
/// Edge/level control register for IRQ 8-15 (PIIX).
pub const ELCR_SLAVE: u16 = 0x4D1;

/// ELCR bits that can be set on the master (IRQ 0, 1, 2 are always edge).
pub const ELCR_MASTER_MASK: u8 = 0xF8;
/// ELCR bits that can be set on the slave (IRQ 8 and 13 are always edge).
pub const ELCR_SLAVE_MASK: u8 = 0xDE;

/// ICW1: bit 4 distinguishes ICW1 from OCW2/OCW3 on the command port.
pub const ICW1_INIT: u8 = 0x10;
/// ICW1: ICW4 will be written.
pub const ICW1_IC4: u8 = 0x01;
/// ICW1: single mode (no ICW3).
pub const ICW1_SNGL: u8 = 0x02;
/// ICW1: level-triggered mode for all inputs.
pub const ICW1_LTIM: u8 = 0x08;
/// ICW4: 8086/8088 mode.
pub const ICW4_UPM: u8 = 0x01;
/// ICW4: automatic end of interrupt.
pub const ICW4_AEOI: u8 = 0x02;
/// ICW4: special fully nested mode.
pub const ICW4_SFNM: u8 = 0x10;
/// OCW3: bit 3 set (with bit 4 clear) marks OCW3.
pub const OCW3_SEL: u8 = 0x08;
/// OCW3: poll command.
pub const OCW3_POLL: u8 = 0x04;
/// OCW3: read register command (with RIS: 0 = IRR, 1 = ISR).
pub const OCW3_RR: u8 = 0x02;
/// OCW3: read ISR (when RR).
pub const OCW3_RIS: u8 = 0x01;
/// OCW3: enable special mask mode change (with SMM).
pub const OCW3_ESMM: u8 = 0x40;
/// OCW3: special mask mode.
pub const OCW3_SMM: u8 = 0x20;

/// Registers of one 8259A.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PicChip {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    /// Current input line levels.
    pub lines: u8,
    /// Edge (0) / level (1) per input.
    pub elcr: u8,
    pub elcr_mask: u8,
    /// ICW1.LTIM: all inputs level-triggered.
    pub ltim: bool,
    pub vector_base: u8,
    /// IR with the highest priority is `priority_add` (rotation).
    pub priority_add: u8,
    /// 0 = ready, 1 = expecting ICW2, 2 = ICW3, 3 = ICW4.
    pub init_state: u8,
    pub single: bool,
    pub icw4_needed: bool,
    pub auto_eoi: bool,
    pub rotate_on_aeoi: bool,
    pub special_fully_nested: bool,
    pub special_mask: bool,
    pub poll: bool,
    pub read_isr: bool,
}

impl PicChip {
    fn new(elcr_mask: u8) -> Self {
        PicChip {
            elcr_mask,
            ..Default::default()
        }
    }

    fn is_level(&self, irq: u8) -> bool {
        self.ltim || self.elcr & (1 << irq) != 0
    }

    fn set_line(&mut self, irq: u8, level: bool, force_level: bool) {
        let mask = 1u8 << irq;
        let was = self.lines & mask != 0;
        if level {
            self.lines |= mask;
        } else {
            self.lines &= !mask;
        }
        if force_level || self.is_level(irq) {
            if level {
                self.irr |= mask;
            } else {
                self.irr &= !mask;
            }
        } else if level && !was {
            self.irr |= mask;
        }
    }

    /// Priority level (0 = highest) of the highest-priority bit in `mask`.
    fn priority(&self, mask: u8) -> Option<u8> {
        (0..8).find(|p| mask & (1 << ((p + self.priority_add) & 7)) != 0)
    }

    /// The IR this chip would deliver now, if any (its INT output).
    fn pending_irq(&self, is_master: bool) -> Option<u8> {
        let req = self.priority(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if is_master && self.special_fully_nested {
            in_service &= !(1 << 2);
        }
        let cur = self.priority(in_service).unwrap_or(8);
        (req < cur).then_some((req + self.priority_add) & 7)
    }

    /// INTA on this chip for `irq`: update ISR/IRR.
    fn ack(&mut self, irq: u8) {
        let mask = 1u8 << irq;
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= mask;
        }
        if !self.is_level(irq) {
            self.irr &= !mask;
        }
    }

    /// The highest-priority in-service IR (for non-specific EOI).
    fn highest_isr(&self) -> Option<u8> {
        self.priority(self.isr).map(|p| (p + self.priority_add) & 7)
    }

    fn reset_init(&mut self) {
        // ICW1: the edge detectors reset (a held-high edge line needs a new rising edge),
        // IMR cleared, IR7 lowest priority, special mask mode off, read IRR.
        let (lines, elcr, elcr_mask) = (self.lines, self.elcr, self.elcr_mask);
        *self = PicChip::new(elcr_mask);
        self.lines = lines;
        self.elcr = elcr;
        self.irr = lines & elcr;
    }

    fn write_cmd(&mut self, value: u8) {
        if value & ICW1_INIT != 0 {
            self.reset_init();
            self.init_state = 1;
            self.icw4_needed = value & ICW1_IC4 != 0;
            self.single = value & ICW1_SNGL != 0;
            self.ltim = value & ICW1_LTIM != 0;
            if self.ltim {
                self.irr = self.lines;
            }
        } else if value & OCW3_SEL != 0 {
            if value & OCW3_POLL != 0 {
                self.poll = true;
            }
            if value & OCW3_RR != 0 {
                self.read_isr = value & OCW3_RIS != 0;
            }
            if value & OCW3_ESMM != 0 {
                self.special_mask = value & OCW3_SMM != 0;
            }
        } else {
            let level = value & 7;
            match value >> 5 {
                0 => self.rotate_on_aeoi = false,
                4 => self.rotate_on_aeoi = true,
                1 | 5 => {
                    if let Some(irq) = self.highest_isr() {
                        self.isr &= !(1 << irq);
                        if value >> 5 == 5 {
                            self.priority_add = (irq + 1) & 7;
                        }
                    }
                }
                3 => self.isr &= !(1 << level),
                7 => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                6 => self.priority_add = (level + 1) & 7,
                _ => {} // 2: no operation
            }
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init_state {
            1 => {
                self.vector_base = value & 0xF8;
                self.init_state = if !self.single {
                    2
                } else if self.icw4_needed {
                    3
                } else {
                    0
                };
            }
            2 => {
                // ICW3: the cascade wiring is fixed (slave on IR2, slave ID 2).
                self.init_state = if self.icw4_needed { 3 } else { 0 };
            }
            3 => {
                if value & ICW4_UPM == 0 {
                    log::warn!(
                        "i8259: MCS-80/85 mode requested in ICW4 ({value:#x}), using 8086 mode"
                    );
                }
                self.auto_eoi = value & ICW4_AEOI != 0;
                self.special_fully_nested = value & ICW4_SFNM != 0;
                self.init_state = 0;
            }
            _ => self.imr = value,
        }
    }
}

/// Everything of the PIC pair a snapshot needs: chips[0] = master, chips[1] = slave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PicState {
    pub chips: [PicChip; 2],
}

/// The master/slave 8259A pair.
#[derive(Debug, Clone)]
pub struct Pic {
    /// chips[0] = master, chips[1] = slave.
    chips: [PicChip; 2],
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// The registers, for a snapshot.
    pub fn state(&self) -> PicState {
        PicState {
            chips: self.chips.clone(),
        }
    }

    /// A PIC pair with a saved `state`.
    pub fn from_state(state: PicState) -> Self {
        Pic { chips: state.chips }
    }

    /// Both chips in their power-on state (uninitialised, all lines edge-triggered).
    pub fn new() -> Self {
        Pic {
            chips: [
                PicChip::new(ELCR_MASTER_MASK),
                PicChip::new(ELCR_SLAVE_MASK),
            ],
        }
    }

    /// Master (0) or slave (1) registers, for inspection.
    pub fn chip(&self, index: usize) -> &PicChip {
        &self.chips[index & 1]
    }

    /// Set the ELCR of both chips (bit n = IRQ n level-triggered), as firmware would.
    pub fn set_elcr(&mut self, elcr: u16) {
        self.chips[0].elcr = (elcr as u8) & ELCR_MASTER_MASK;
        self.chips[1].elcr = ((elcr >> 8) as u8) & ELCR_SLAVE_MASK;
        self.update_cascade();
    }

    /// Drive ISA IRQ `line` (0..=15) to `level`. Lines above 15 are ignored; line 2 is the
    /// cascade input and follows the slave (route ISA IRQ 2 devices to IRQ 9 as the AT does).
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 => self.chips[0].set_line(line, level, false),
            8..=15 => {
                self.chips[1].set_line(line - 8, level, false);
            }
            _ => log::warn!("i8259: set_irq on nonexistent line {line}"),
        }
        self.update_cascade();
    }

    fn update_cascade(&mut self) {
        let slave_int = self.chips[1].pending_irq(false).is_some();
        self.chips[0].set_line(2, slave_int, true);
    }

    /// The INTR output to the CPU.
    pub fn interrupt_pending(&self) -> bool {
        self.chips[0].pending_irq(true).is_some()
    }

    /// The INTA cycle: returns the vector to deliver and updates ISR/IRR of both chips.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.chips[0].pending_irq(true) {
            Some(2) => {
                self.chips[0].ack(2);
                match self.chips[1].pending_irq(false) {
                    Some(irq) => {
                        self.chips[1].ack(irq);
                        self.chips[1].vector_base | irq
                    }
                    None => self.chips[1].vector_base | 7, // spurious IRQ 15
                }
            }
            Some(irq) => {
                self.chips[0].ack(irq);
                self.chips[0].vector_base | irq
            }
            None => self.chips[0].vector_base | 7, // spurious IRQ 7
        };
        self.update_cascade();
        vector
    }

    fn poll_read(&mut self, chip: usize) -> u8 {
        self.chips[chip].poll = false;
        let r = match self.chips[chip].pending_irq(chip == 0) {
            Some(irq) => {
                self.chips[chip].ack(irq);
                0x80 | irq
            }
            None => 0,
        };
        self.update_cascade();
        r
    }

    /// Read one byte at `port`.
    pub fn read_port(&mut self, port: u16) -> u8 {
        let chip = match port {
            MASTER_CMD | MASTER_DATA => 0,
            SLAVE_CMD | SLAVE_DATA => 1,
            ELCR_MASTER => return self.chips[0].elcr,
            ELCR_SLAVE => return self.chips[1].elcr,
            _ => return 0xFF,
        };
        let c = &self.chips[chip];
        if c.poll {
            return self.poll_read(chip);
        }
        if port & 1 == 0 {
            if c.read_isr {
                c.isr
            } else {
                c.irr
            }
        } else {
            c.imr
        }
    }

    /// Write one byte at `port`.
    pub fn write_port(&mut self, port: u16, value: u8) {
        match port {
            MASTER_CMD => self.chips[0].write_cmd(value),
            MASTER_DATA => self.chips[0].write_data(value),
            SLAVE_CMD => self.chips[1].write_cmd(value),
            SLAVE_DATA => self.chips[1].write_data(value),
            ELCR_MASTER => {
                self.chips[0].elcr = value & ELCR_MASTER_MASK;
                let lines = self.chips[0].lines;
                self.chips[0].irr =
                    (self.chips[0].irr & !self.chips[0].elcr) | (lines & self.chips[0].elcr);
            }
            ELCR_SLAVE => {
                self.chips[1].elcr = value & ELCR_SLAVE_MASK;
                let lines = self.chips[1].lines;
                self.chips[1].irr =
                    (self.chips[1].irr & !self.chips[1].elcr) | (lines & self.chips[1].elcr);
            }
            _ => {}
        }
        self.update_cascade();
    }
}

impl PioDevice for Pic {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let mut v = 0;
        for i in 0..u16::from(size.clamp(1, 4)) {
            v |= u32::from(self.read_port(port.wrapping_add(i))) << (8 * i);
        }
        v
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        for i in 0..u16::from(size.clamp(1, 4)) {
            self.write_port(port.wrapping_add(i), (value >> (8 * i)) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's init_8259A sequence.
    fn linux_init() -> Pic {
        let mut p = Pic::new();
        p.write_port(MASTER_DATA, 0xFF);
        p.write_port(SLAVE_DATA, 0xFF);
        p.write_port(MASTER_CMD, 0x11);
        p.write_port(MASTER_DATA, 0x30);
        p.write_port(MASTER_DATA, 1 << 2);
        p.write_port(MASTER_DATA, 0x01);
        p.write_port(SLAVE_CMD, 0x11);
        p.write_port(SLAVE_DATA, 0x38);
        p.write_port(SLAVE_DATA, 2);
        p.write_port(SLAVE_DATA, 0x01);
        p.write_port(MASTER_DATA, 0xFB); // all masked but cascade
        p.write_port(SLAVE_DATA, 0xFF);
        p
    }

    #[test]
    fn init_and_mask() {
        let mut p = linux_init();
        assert_eq!(p.read_port(MASTER_DATA), 0xFB);
        p.set_irq(0, true);
        assert!(!p.interrupt_pending(), "masked");
        p.write_port(MASTER_DATA, 0xFA);
        assert!(p.interrupt_pending(), "edge latched while masked");
        assert_eq!(p.acknowledge(), 0x30);
        assert!(!p.interrupt_pending());
        assert_eq!(p.chip(0).isr, 1);
        p.write_port(MASTER_CMD, 0x20); // non-specific EOI
        assert_eq!(p.chip(0).isr, 0);
        // the line is still high: no new edge, no new interrupt
        assert!(!p.interrupt_pending());
        p.set_irq(0, false);
        p.set_irq(0, true);
        assert!(p.interrupt_pending());
    }

    #[test]
    fn pulse_is_latched() {
        let mut p = linux_init();
        p.write_port(MASTER_DATA, 0xFA);
        p.set_irq(0, true);
        p.set_irq(0, false);
        assert!(p.interrupt_pending());
        assert_eq!(p.acknowledge(), 0x30);
    }

    #[test]
    fn priority_and_nesting() {
        let mut p = linux_init();
        p.write_port(MASTER_DATA, 0x00);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x34);
        p.set_irq(3, true);
        assert!(p.interrupt_pending(), "higher priority nests");
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x33);
        assert!(!p.interrupt_pending(), "IR5 blocked by in-service IR3/IR4");
        p.write_port(MASTER_CMD, 0x20); // EOI IR3
        assert!(!p.interrupt_pending());
        p.write_port(MASTER_CMD, 0x60 | 4); // specific EOI IR4
        assert_eq!(p.acknowledge(), 0x35);
    }

    #[test]
    fn cascade_and_spurious_15() {
        let mut p = linux_init();
        p.write_port(SLAVE_DATA, 0x00);
        p.write_port(ELCR_SLAVE, 1 << 4); // IRQ 12 level
        p.set_irq(12, true);
        assert!(p.interrupt_pending());
        assert_eq!(p.acknowledge(), 0x3C);
        assert_eq!(p.chip(0).isr, 1 << 2);
        assert_eq!(p.chip(1).isr, 1 << 4);
        p.write_port(SLAVE_CMD, 0x20);
        p.write_port(MASTER_CMD, 0x20);
        // level still high: interrupts again; the request vanishes before INTA
        assert!(p.interrupt_pending());
        p.set_irq(12, false);
        assert!(!p.interrupt_pending());
        p.set_irq(12, true);
        assert!(p.interrupt_pending());
        // the machine sampled INTR, then the device dropped the line
        p.chips[1].set_line(4, false, false);
        assert_eq!(p.acknowledge(), 0x3F, "spurious IRQ 15");
        assert_eq!(p.chip(1).isr, 0);
    }

    #[test]
    fn spurious_7_and_read_registers() {
        let mut p = linux_init();
        p.write_port(MASTER_DATA, 0x00);
        p.write_port(ELCR_MASTER, 1 << 5);
        assert_eq!(p.read_port(ELCR_MASTER), 1 << 5);
        p.set_irq(5, true);
        assert_eq!(p.read_port(MASTER_CMD), 1 << 5, "IRR by default");
        p.write_port(MASTER_CMD, OCW3_SEL | OCW3_RR | OCW3_RIS);
        assert_eq!(p.read_port(MASTER_CMD), 0, "ISR");
        p.chips[0].set_line(5, false, false);
        assert_eq!(p.acknowledge(), 0x37);
        assert_eq!(p.read_port(MASTER_CMD), 0, "spurious does not set ISR");
    }

    #[test]
    fn auto_eoi_and_rotation() {
        let mut p = Pic::new();
        p.write_port(MASTER_CMD, 0x11);
        p.write_port(MASTER_DATA, 0x08);
        p.write_port(MASTER_DATA, 0x04);
        p.write_port(MASTER_DATA, ICW4_UPM | ICW4_AEOI);
        p.write_port(MASTER_DATA, 0x00);
        p.write_port(MASTER_CMD, 0x80); // rotate in AEOI
        p.set_irq(1, true);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x09);
        assert_eq!(p.chip(0).isr, 0);
        // IR1 now lowest priority; IR3 next
        p.set_irq(1, false);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x0B);
        assert_eq!(p.acknowledge(), 0x09);
    }

    #[test]
    fn poll_mode() {
        let mut p = linux_init();
        p.write_port(MASTER_DATA, 0x00);
        p.set_irq(6, true);
        p.write_port(MASTER_CMD, OCW3_SEL | OCW3_POLL);
        assert_eq!(p.read_port(MASTER_CMD), 0x86);
        assert_eq!(p.chip(0).isr, 1 << 6);
        p.write_port(MASTER_CMD, OCW3_SEL | OCW3_POLL);
        assert_eq!(p.read_port(MASTER_CMD), 0);
    }

    #[test]
    fn special_mask_mode() {
        let mut p = linux_init();
        p.write_port(MASTER_DATA, 0x00);
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), 0x31);
        p.set_irq(5, true);
        assert!(!p.interrupt_pending());
        p.write_port(MASTER_DATA, 0x02);
        p.write_port(MASTER_CMD, OCW3_SEL | OCW3_ESMM | OCW3_SMM);
        assert!(p.interrupt_pending());
        assert_eq!(p.acknowledge(), 0x35);
    }

    #[test]
    fn garbage_never_panics() {
        let mut p = Pic::new();
        let mut x: u32 = 12345;
        for _ in 0..20000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let port = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1][(x >> 8) as usize % 6];
            match (x >> 16) % 4 {
                0 => p.write_port(port, (x >> 24) as u8),
                1 => {
                    p.read_port(port);
                }
                2 => p.set_irq((x >> 24) as u8 % 20, x & 1 != 0),
                _ => {
                    if p.interrupt_pending() {
                        p.acknowledge();
                    }
                }
            }
        }
    }
}
