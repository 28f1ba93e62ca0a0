//! How each device of `tci64-devices` plugs into the [`crate::registry`]: which of its outputs
//! go to which interrupt line, which of its requests become board [`Events`], and what needs
//! guest memory. The devices themselves stay board-agnostic.

use crate::registry::{Ctx, Device, Events};
use crate::snapshot::DeviceState;
use std::any::Any;
use tci64_devices::acpi_pm::AcpiPm;
use tci64_devices::acpi_sleep::AcpiSleep;
use tci64_devices::cf9::ResetControl;
use tci64_devices::i8042::I8042;
use tci64_devices::i8254::Pit;
use tci64_devices::mc146818::Rtc;
use tci64_devices::misc::{Port92, PostPort};
use tci64_devices::pci::{Access, PciBus};
use tci64_devices::state::StateError;
use tci64_devices::uart16550::Uart16550;
use tci64_devices::virtio::mmio::{VirtioMmio, REG_QUEUE_NOTIFY};
use tci64_devices::virtio::{GuestMemory, MemError, VirtioDevice};
use tci64_devices::PioDevice;

fn narrow(v: u32, size: u8) -> u32 {
    match size {
        1 => v & 0xff,
        2 => v & 0xffff,
        _ => v,
    }
}

/// A UART on an interrupt line.
pub struct Serial {
    pub uart: Uart16550,
    pub irq: u8,
}

impl Device for Serial {
    fn pio_read(&mut self, _: &mut Ctx, port: u16, size: u8) -> u32 {
        narrow(self.uart.pio_read(port, size), size)
    }
    fn pio_write(&mut self, _: &mut Ctx, port: u16, size: u8, value: u32) {
        self.uart.pio_write(port, size, value)
    }
    fn update(&mut self, cx: &mut Ctx) {
        cx.irq.set_irq(self.irq, self.uart.irq_level());
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::Serial(self.uart.state().clone())
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::Serial(s) => {
                self.uart = Uart16550::from_state(self.uart.base(), s);
                Ok(())
            }
            _ => Err(wrong("serial")),
        }
    }
}

/// The PIT: channel 0's OUT pulses line 0.
pub struct PitDev(pub Pit);

impl Device for PitDev {
    fn pio_read(&mut self, cx: &mut Ctx, port: u16, _size: u8) -> u32 {
        self.0.pio_read(cx.now, port) as u32
    }
    fn pio_write(&mut self, cx: &mut Ctx, port: u16, _size: u8, value: u32) {
        self.0.pio_write(cx.now, port, value as u8)
    }
    fn update(&mut self, cx: &mut Ctx) {
        if self.0.irq0_edges(cx.now) > 0 {
            cx.irq.pulse(0);
        }
    }
    fn next_deadline(&self, now: u64) -> Option<u64> {
        self.0.next_deadline_ns(now)
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::Pit(self.0.state())
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::Pit(s) => {
                self.0 = Pit::from_state(s);
                Ok(())
            }
            _ => Err(wrong("PIT")),
        }
    }
}

/// The RTC on line 8.
pub struct RtcDev {
    pub rtc: Rtc,
    pub irq: u8,
}

impl Device for RtcDev {
    fn pio_read(&mut self, cx: &mut Ctx, port: u16, _size: u8) -> u32 {
        self.rtc.pio_read(cx.now, port) as u32
    }
    fn pio_write(&mut self, cx: &mut Ctx, port: u16, _size: u8, value: u32) {
        self.rtc.pio_write(cx.now, port, value as u8)
    }
    fn update(&mut self, cx: &mut Ctx) {
        self.rtc.update(cx.now);
        cx.irq.set_irq(self.irq, self.rtc.irq_level());
    }
    fn next_deadline(&self, now: u64) -> Option<u64> {
        self.rtc.next_deadline_ns(now)
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::Rtc(self.rtc.state())
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::Rtc(s) => {
                self.rtc = Rtc::from_state(s);
                Ok(())
            }
            _ => Err(wrong("RTC")),
        }
    }
}

/// A port device whose only output is a reset request.
pub trait ResetSource: PioDevice + 'static {
    fn take_reset(&mut self) -> bool;
    /// The device's snapshot state.
    fn state(&self) -> DeviceState;
    /// Put back a saved state.
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError>;
}

/// A saved state of another kind of device.
fn wrong(what: &str) -> StateError {
    StateError::new(what, "the snapshot holds another kind of device here")
}

impl ResetSource for I8042 {
    fn state(&self) -> DeviceState {
        DeviceState::I8042(I8042::state(self))
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::I8042(s) => {
                *self = I8042::from_state(s);
                Ok(())
            }
            _ => Err(wrong("i8042")),
        }
    }
    fn take_reset(&mut self) -> bool {
        self.take_reset_request()
    }
}
/// A reset source whose state is the device value itself (plain `Copy` data).
macro_rules! copy_state_reset_source {
    ($ty:ident, $take_reset:expr) => {
        impl ResetSource for $ty {
            fn state(&self) -> DeviceState {
                DeviceState::$ty(*self)
            }
            fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
                match s {
                    DeviceState::$ty(s) => {
                        *self = s;
                        Ok(())
                    }
                    _ => Err(wrong(stringify!($ty))),
                }
            }
            fn take_reset(&mut self) -> bool {
                $take_reset(self)
            }
        }
    };
}
copy_state_reset_source!(Port92, Port92::take_reset_request);
copy_state_reset_source!(ResetControl, ResetControl::take_reset_request);
copy_state_reset_source!(PostPort, |_: &mut PostPort| false);

/// A plain port device (i8042, port 0x80, port 0x92, 0xCF9).
pub struct Ports<T: ResetSource>(pub T);

impl<T: ResetSource> Device for Ports<T> {
    fn pio_read(&mut self, _: &mut Ctx, port: u16, size: u8) -> u32 {
        narrow(self.0.pio_read(port, size), size)
    }
    fn pio_write(&mut self, _: &mut Ctx, port: u16, size: u8, value: u32) {
        self.0.pio_write(port, size, value)
    }
    fn update(&mut self, cx: &mut Ctx) {
        cx.events.reset |= self.0.take_reset();
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        self.0.state()
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        self.0.set_state(s)
    }
}

/// A guest-memory view that refuses access: MMIO writes other than queue notifications never
/// touch guest memory.
struct NoMemory;

impl GuestMemory for NoMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        Err(MemError {
            addr,
            len: buf.len() as u64,
        })
    }
    fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        Err(MemError {
            addr,
            len: buf.len() as u64,
        })
    }
}

/// A virtio-mmio transport at `base`, on line `irq`.
pub struct VirtioMmioDev<D: VirtioDevice> {
    pub base: u64,
    pub irq: u8,
    pub dev: VirtioMmio<D>,
    /// Queue notifications waiting for guest memory.
    notifies: Vec<u32>,
}

impl<D: VirtioDevice> VirtioMmioDev<D> {
    pub fn new(base: u64, irq: u8, dev: VirtioMmio<D>) -> Self {
        VirtioMmioDev {
            base,
            irq,
            dev,
            notifies: Vec::new(),
        }
    }
}

impl<D: VirtioDevice + 'static> Device for VirtioMmioDev<D> {
    fn mmio_read(&mut self, _: &mut Ctx, addr: u64, size: u8) -> u64 {
        let mut b = [0u8; 8];
        let n = (size as usize).min(8);
        self.dev.mmio_read(addr - self.base, &mut b[..n]);
        u64::from_le_bytes(b)
    }
    fn mmio_write(&mut self, cx: &mut Ctx, addr: u64, size: u8, value: u64) {
        let off = addr - self.base;
        if off == REG_QUEUE_NOTIFY {
            // Processing needs guest memory: finish it when the CPU returns.
            self.notifies.push(value as u32);
            cx.events.service = true;
            return;
        }
        let n = (size as usize).min(8);
        self.dev
            .mmio_write(off, &value.to_le_bytes()[..n], &mut NoMemory);
    }
    fn update(&mut self, cx: &mut Ctx) {
        cx.irq.set_irq(self.irq, self.dev.irq_level());
    }
    fn service(&mut self, mem: &mut dyn GuestMemory) {
        for value in std::mem::take(&mut self.notifies) {
            self.dev
                .mmio_write(REG_QUEUE_NOTIFY, &value.to_le_bytes(), mem);
        }
    }
    fn flush(&mut self) -> Result<(), String> {
        self.dev.device_mut().flush().map_err(|e| e.to_string())
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::VirtioMmio {
            transport: self.dev.state(),
            notifies: self.notifies.clone(),
        }
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::VirtioMmio {
                transport,
                notifies,
            } => {
                self.dev.set_state(transport)?;
                self.notifies = notifies;
                Ok(())
            }
            _ => Err(wrong("virtio-mmio")),
        }
    }
}

/// The PCI bus: configuration ports, BAR windows, INTx lines.
pub struct PciDev(pub PciBus);

impl PciDev {
    fn access(events: &mut Events, a: Option<Access>) -> bool {
        match a {
            Some(Access::NeedsService) => {
                events.service = true;
                true
            }
            Some(Access::Done) => true,
            None => false,
        }
    }
}

impl Device for PciDev {
    fn pio_read(&mut self, _: &mut Ctx, port: u16, size: u8) -> u32 {
        let v = match port {
            0xcf8..=0xcff => self.0.pio_read(port, size),
            _ => self.0.io_read(port, size).unwrap_or(u32::MAX),
        };
        narrow(v, size)
    }
    fn pio_write(&mut self, cx: &mut Ctx, port: u16, size: u8, value: u32) {
        match port {
            0xcf8..=0xcff => {
                self.0.pio_write(port, size, value);
                // virtio's PCI_CFG window can reach the notify area from config space.
                cx.events.service |= self.0.take_service_request();
            }
            _ => {
                Self::access(cx.events, self.0.io_write(port, size, value));
            }
        }
    }
    fn mmio_read(&mut self, _: &mut Ctx, addr: u64, size: u8) -> u64 {
        let mut b = [0u8; 8];
        let n = (size as usize).min(8);
        if !self.0.mmio_read(addr, &mut b[..n]) {
            return u64::MAX;
        }
        u64::from_le_bytes(b)
    }
    fn mmio_write(&mut self, cx: &mut Ctx, addr: u64, size: u8, value: u64) {
        let n = (size as usize).min(8);
        let a = self.0.mmio_write(addr, &value.to_le_bytes()[..n]);
        Self::access(cx.events, a);
    }
    fn update(&mut self, cx: &mut Ctx) {
        // A shared line is the OR of its devices.
        let (lines, levels) = (self.0.irq_lines(), self.0.irq_levels());
        for line in 0..16u8 {
            if lines & (1 << line) != 0 {
                cx.irq.set_irq(line, levels & (1 << line) != 0);
            }
        }
    }
    fn service(&mut self, mem: &mut dyn GuestMemory) {
        self.0.service(mem);
    }
    fn flush(&mut self) -> Result<(), String> {
        self.0.flush().map_err(|e| e.to_string())
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::Pci(self.0.state())
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::Pci(s) => self.0.set_state(&s),
            _ => Err(wrong("PCI bus")),
        }
    }
}

/// The ACPI PM block (`-M pc`): the SCI on its line, S5 as a power-off event.
pub struct AcpiPmDev {
    pub pm: AcpiPm,
    pub irq: u8,
}

impl Device for AcpiPmDev {
    fn pio_read(&mut self, cx: &mut Ctx, port: u16, size: u8) -> u32 {
        self.pm.pio_read(cx.now, port, size)
    }
    fn pio_write(&mut self, _: &mut Ctx, port: u16, size: u8, value: u32) {
        self.pm.pio_write(port, size, value)
    }
    fn update(&mut self, cx: &mut Ctx) {
        cx.irq.set_irq(self.irq, self.pm.sci_level());
        cx.events.poweroff |= self.pm.take_poweroff_request();
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::AcpiPm(self.pm.state())
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::AcpiPm(s) => self.pm.set_state(&s),
            _ => Err(wrong("ACPI PM registers")),
        }
    }
}

/// The hardware-reduced sleep and reset registers (`-M microvm`) at `base`.
pub struct AcpiSleepDev {
    pub regs: AcpiSleep,
    pub base: u64,
}

impl Device for AcpiSleepDev {
    fn mmio_read(&mut self, _: &mut Ctx, addr: u64, size: u8) -> u64 {
        let mut v = 0u64;
        for i in 0..size.min(8) as u64 {
            v |= (self.regs.mmio_read(addr - self.base + i) as u64) << (8 * i);
        }
        v
    }
    fn mmio_write(&mut self, _: &mut Ctx, addr: u64, size: u8, value: u64) {
        for i in 0..size.min(8) as u64 {
            self.regs
                .mmio_write(addr - self.base + i, (value >> (8 * i)) as u8);
        }
    }
    fn update(&mut self, cx: &mut Ctx) {
        cx.events.poweroff |= self.regs.take_poweroff_request();
        cx.events.reset |= self.regs.take_reset_request();
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn state(&self) -> DeviceState {
        DeviceState::AcpiSleep(self.regs.state())
    }
    fn set_state(&mut self, s: DeviceState) -> Result<(), StateError> {
        match s {
            DeviceState::AcpiSleep(s) => self.regs.set_state(&s),
            _ => Err(wrong("ACPI sleep registers")),
        }
    }
}
