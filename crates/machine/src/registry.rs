//! The device registry: every device of the board with the port and MMIO ranges it decodes and
//! the interrupt lines it drives. Port and MMIO dispatch, timer deadlines, guest-memory
//! service, disk flushes, the ACPI/MP tables and snapshots all iterate over this one list.
//!
//! A device plugs in through [`Device`]: accesses come with a [`Ctx`] that carries the virtual
//! time, the interrupt fabric ([`crate::interrupts::Interrupts`]) to drive its lines, and the
//! board's [`Events`] (reset, power-off, "needs guest memory"). After every access the
//! registry calls [`Device::update`], so a device's outputs are always current.
//!
//! The interrupt controllers themselves (8259, IOAPIC, local APIC) are not [`Device`]s: the
//! CPU and the router reach them directly, so their ranges are registered as [`Target`]s of
//! their own.

use crate::interrupts::Interrupts;
use std::any::Any;
use std::ops::{Range, RangeInclusive};
use tci64_devices::virtio::GuestMemory;

/// Things that happened on the board that the run loop must act on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// A device asked for a reset (0xCF9, port 0x92, i8042).
    pub reset: bool,
    /// The guest entered ACPI S5 (soft off).
    pub poweroff: bool,
    /// A device has work that needs guest memory ([`Device::service`]).
    pub service: bool,
}

/// What a device sees of the board during a call.
pub struct Ctx<'a> {
    /// Virtual time, ns since power-on.
    pub now: u64,
    /// The interrupt lines.
    pub irq: &'a mut Interrupts,
    pub events: &'a mut Events,
}

/// A device on the board.
pub trait Device: Any {
    /// `IN` at an absolute port inside one of the device's port ranges.
    fn pio_read(&mut self, _cx: &mut Ctx, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }
    /// `OUT` at an absolute port.
    fn pio_write(&mut self, _cx: &mut Ctx, _port: u16, _size: u8, _value: u32) {}
    /// An MMIO read at guest-physical `addr` inside one of the device's MMIO ranges.
    fn mmio_read(&mut self, _cx: &mut Ctx, _addr: u64, _size: u8) -> u64 {
        u64::MAX
    }
    /// An MMIO write.
    fn mmio_write(&mut self, _cx: &mut Ctx, _addr: u64, _size: u8, _value: u64) {}
    /// Bring the outputs up to date at `cx.now`: drive the interrupt lines, post events.
    fn update(&mut self, _cx: &mut Ctx) {}
    /// The next virtual time the device needs an [`Device::update`] (a timer).
    fn next_deadline(&self, _now: u64) -> Option<u64> {
        None
    }
    /// Finish work that needs guest memory (after the device set [`Events::service`]).
    fn service(&mut self, _mem: &mut dyn GuestMemory) {}
    /// Make completed disk writes durable.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// For the few places that need the concrete device (the serial console).
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The device's state, for a snapshot (every device has one: see `crate::snapshot`).
    fn state(&self) -> crate::snapshot::DeviceState;
    /// Put back a saved state; a state of another kind of device is refused.
    fn set_state(
        &mut self,
        state: crate::snapshot::DeviceState,
    ) -> Result<(), tci64_devices::state::StateError>;
}

/// What a registered device is, for the firmware tables (ACPI DSDT, MP table) and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 16550 UART (`PNP0501`).
    Serial,
    /// The 8254 PIT (`PNP0100`).
    Pit,
    /// The MC146818 RTC/CMOS (`PNP0B00`).
    Rtc,
    /// The i8042 keyboard controller.
    Keyboard,
    /// Port 0x80.
    PostPort,
    /// Port 0x92.
    Port92,
    /// The 0xCF9 reset control register.
    ResetControl,
    /// A virtio-mmio transport (`LNRO0005`).
    VirtioMmio,
    /// The PCI bus behind the host bridge (`PNP0A03`).
    PciBus,
    /// The ACPI PM register block (PM1a event/control, PM timer) on `-M pc`.
    AcpiPm,
    /// The hardware-reduced ACPI sleep control/status and reset registers on `-M microvm`.
    AcpiSleep,
}

/// Who answers a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Registry entry `n`.
    Device(usize),
    /// The 8259 pair.
    Pic,
    /// The IOAPIC.
    IoApic,
}

/// One registered device.
pub struct Entry {
    /// A short name for traces and snapshots (unique on the board).
    pub name: String,
    pub kind: Kind,
    pub dev: Box<dyn Device>,
    pub ports: Vec<RangeInclusive<u16>>,
    pub mmio: Vec<Range<u64>>,
    /// The interrupt lines it drives (ISA IRQ / GSI numbers).
    pub irqs: Vec<u8>,
}

/// The device list and its address decoders.
#[derive(Default)]
pub struct Registry {
    entries: Vec<Entry>,
    ports: Vec<(RangeInclusive<u16>, Target)>,
    mmio: Vec<(Range<u64>, Target)>,
    /// Ports nobody claims, already reported (to log each once).
    unclaimed_logged: std::collections::BTreeSet<u16>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a device; returns its index.
    pub fn add(&mut self, entry: Entry) -> usize {
        let i = self.entries.len();
        for r in &entry.ports {
            self.ports.push((r.clone(), Target::Device(i)));
        }
        for r in &entry.mmio {
            self.mmio.push((r.clone(), Target::Device(i)));
        }
        self.entries.push(entry);
        i
    }

    /// Route ports to an interrupt controller.
    pub fn claim_ports(&mut self, range: RangeInclusive<u16>, target: Target) {
        self.ports.push((range, target));
    }

    /// Route an MMIO range to an interrupt controller.
    pub fn claim_mmio(&mut self, range: Range<u64>, target: Target) {
        self.mmio.push((range, target));
    }

    /// The devices, in registration order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The devices, mutable.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        &mut self.entries
    }

    /// Who decodes `port`.
    pub fn port_target(&self, port: u16) -> Option<Target> {
        self.ports
            .iter()
            .find(|(r, _)| r.contains(&port))
            .map(|&(_, t)| t)
    }

    /// Who decodes `addr`.
    pub fn mmio_target(&self, addr: u64) -> Option<Target> {
        self.mmio
            .iter()
            .find(|(r, _)| r.contains(&addr))
            .map(|&(_, t)| t)
    }

    /// Log an unclaimed port once.
    pub fn log_unclaimed(&mut self, port: u16, what: &str) {
        if self.unclaimed_logged.insert(port) {
            log::debug!("unclaimed port {what} {port:#x}");
        }
    }

    /// The earliest deadline of any device.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        self.entries
            .iter()
            .filter_map(|e| e.dev.next_deadline(now))
            .min()
    }

    /// Update every device's outputs.
    pub fn update_all(&mut self, cx: &mut Ctx) {
        for e in &mut self.entries {
            e.dev.update(cx);
        }
    }

    /// The first device of `kind`.
    pub fn find(&self, kind: Kind) -> Option<usize> {
        self.entries.iter().position(|e| e.kind == kind)
    }
}
