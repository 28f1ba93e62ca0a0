//! The interrupt fabric: the GSI router that every device's interrupt output goes through,
//! and the interrupt controllers plugged into it (the 8259 pair, the IOAPIC, the local APIC of
//! each CPU).
//!
//! Devices drive numbered lines ([`Interrupts::set_irq`]): ISA IRQ *n* for n < 16 and GSI *n*
//! above. The router fans each line out as a PC chipset does:
//!
//! | line | 8259 | IOAPIC pin |
//! |---|---|---|
//! | 0 (PIT) | IRQ 0 | 2 (the MADT/MP interrupt source override IRQ0 → GSI 2) |
//! | 1, 3..15 | IRQ *n* | *n* |
//! | 16..23 | — | *n* |
//!
//! The CPU sees the result through [`tci64_x86::InterruptController`] on the board: the local
//! APIC's INTR (its own IRR against the processor priority, plus the 8259 through LINT0 in
//! ExtINT mode), or the 8259's INTR directly when the CPU has no APIC (`-cpu qemu64,-apic`).

use tci64_devices::i8259::Pic;
use tci64_devices::ioapic::IoApic;
use tci64_devices::lapic::Lapic;

/// Lines the router knows (ISA IRQs and GSIs share the numbering).
pub const NUM_LINES: u8 = 24;

/// The interrupt controllers and the levels of the lines feeding them.
pub struct Interrupts {
    /// The 8259 pair (absent on `-M microvm,pic=off`).
    pub pic: Option<Pic>,
    /// The IOAPIC (present with a local APIC).
    pub ioapic: Option<IoApic>,
    /// The local APIC of each CPU (empty: `-cpu qemu64,-apic`). Index = CPU number.
    pub lapics: Vec<Lapic>,
    /// Current level of each line (bit n = line n).
    levels: u32,
}

/// The interrupt controllers' snapshot state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InterruptsState {
    pub pic: Option<tci64_devices::i8259::PicState>,
    pub ioapic: Option<IoApic>,
    pub lapics: Vec<Lapic>,
    pub levels: u32,
}

impl Interrupts {
    /// The controllers' state, for a snapshot.
    pub fn state(&self) -> InterruptsState {
        InterruptsState {
            pic: self.pic.as_ref().map(|p| p.state()),
            ioapic: self.ioapic.clone(),
            lapics: self.lapics.clone(),
            levels: self.levels,
        }
    }

    /// Put back a saved state: the same controllers must be present.
    pub fn set_state(&mut self, s: InterruptsState) -> Result<(), String> {
        if s.pic.is_some() != self.pic.is_some()
            || s.ioapic.is_some() != self.ioapic.is_some()
            || s.lapics.len() != self.lapics.len()
        {
            return Err("the interrupt controllers differ (PIC, IOAPIC, local APICs)".into());
        }
        self.pic = s.pic.map(tci64_devices::i8259::Pic::from_state);
        self.ioapic = s.ioapic;
        self.lapics = s.lapics;
        self.levels = s.levels;
        Ok(())
    }

    /// Controllers as given; all lines low.
    pub fn new(pic: Option<Pic>, ioapic: Option<IoApic>, lapics: Vec<Lapic>) -> Self {
        Interrupts {
            pic,
            ioapic,
            lapics,
            levels: 0,
        }
    }

    /// The IOAPIC pin line `line` drives.
    pub fn ioapic_pin(line: u8) -> u8 {
        if line == 0 {
            2
        } else {
            line
        }
    }

    /// Drive line `line` to `level`. Unchanged levels are not passed on (the controllers are
    /// level-sensitive where it matters; edges come from changes).
    pub fn set_irq(&mut self, line: u8, level: bool) {
        if line >= NUM_LINES {
            log::warn!("interrupt on nonexistent line {line}");
            return;
        }
        let bit = 1u32 << line;
        if (self.levels & bit != 0) == level {
            return;
        }
        self.levels ^= bit;
        if line < 16 {
            if let Some(pic) = &mut self.pic {
                pic.set_irq(line, level);
            }
        }
        if let Some(io) = &mut self.ioapic {
            io.set_irq(Self::ioapic_pin(line), level);
            self.deliver_ioapic();
        }
    }

    /// A rising and a falling edge on `line` (the PIT's short OUT0 pulses).
    pub fn pulse(&mut self, line: u8) {
        self.set_irq(line, true);
        self.set_irq(line, false);
    }

    /// The level of `line` as last driven.
    pub fn level(&self, line: u8) -> bool {
        line < NUM_LINES && self.levels & (1 << line) != 0
    }

    /// Move interrupts the IOAPIC has ready to the local APICs.
    pub fn deliver_ioapic(&mut self) {
        let Some(io) = &mut self.ioapic else { return };
        while let Some(msg) = io.take_message() {
            // One CPU: every destination reaches APIC 0 (SMP will match destinations here).
            match self.lapics.first_mut() {
                Some(l) => l.accept_message(&msg),
                None => log::debug!("ioapic: message {msg:?} with no local APIC"),
            }
        }
    }

    /// After an EOI of a level-triggered vector, the IOAPIC re-arms (and maybe re-delivers).
    pub fn eoi_broadcast(&mut self, vector: u8) {
        if let Some(io) = &mut self.ioapic {
            io.eoi(vector);
            self.deliver_ioapic();
        }
    }

    /// Take EOI broadcasts the local APICs produced and pass them to the IOAPIC.
    pub fn route_eois(&mut self) {
        let mut eois = Vec::new();
        for l in &mut self.lapics {
            while let Some(v) = l.take_eoi_broadcast() {
                eois.push(v);
            }
        }
        for v in eois {
            self.eoi_broadcast(v);
        }
    }

    /// The 8259's INTR output (false without a PIC).
    fn pic_intr(&self) -> bool {
        self.pic.as_ref().is_some_and(|p| p.interrupt_pending())
    }

    /// The CPU's INTR line (CPU 0).
    pub fn intr_pending(&self) -> bool {
        match self.lapics.first() {
            Some(l) => l.intr_pending(self.pic_intr()),
            None => self.pic_intr(),
        }
    }

    /// INTA from CPU 0: the vector.
    pub fn intr_ack(&mut self) -> u8 {
        let ext = self.pic_intr();
        let from_apic = match self.lapics.first_mut() {
            Some(l) => l.acknowledge(ext),
            None => None,
        };
        match from_apic {
            Some(v) => v,
            None => match &mut self.pic {
                Some(p) => p.acknowledge(),
                // INTA with nothing to give: the spurious vector of a missing PIC.
                None => 0xff,
            },
        }
    }
}
