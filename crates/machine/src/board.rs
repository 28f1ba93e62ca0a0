//! The board: the device registry, the interrupt fabric, the virtual clock, and the bus the
//! CPU talks to.

use crate::adapters::Serial;
use crate::interrupts::Interrupts;
use crate::memmap::MemoryMap;
use crate::registry::{Ctx, Events, Registry, Target};
use crate::HostClock;
use tci64_devices::uart16550::Uart16550;
use tci64_devices::virtio::GuestMemory;
use tci64_devices::PioDevice;
use tci64_engine::MmioBus;
use tci64_x86::{InterruptController, X86Bus};

/// COM1's interrupt line.
pub const UART_IRQ: u8 = 4;
/// The RTC's interrupt line.
pub const RTC_IRQ: u8 = 8;

/// Virtual time: real time from the host clock, or instruction-counted (`-icount`).
pub struct VirtualClock {
    host: Box<dyn HostClock>,
    origin_ns: u64,
    /// `Some(shift)`: 2^shift ns per instruction.
    pub icount_shift: Option<u32>,
    /// Time skipped while idle in icount mode.
    pub idle_ns: u64,
    /// Instructions retired at the start of the current CPU slice (icount mode).
    pub slice_icount: u64,
    /// Where the current slice ends (instructions retired). Fixed when the slice starts, from
    /// the machine's state alone, so the host's `Machine::run` budgets never move it.
    pub slice_end: u64,
}

impl VirtualClock {
    pub fn new(host: Box<dyn HostClock>, icount_shift: Option<u32>) -> Self {
        let origin_ns = host.now_ns();
        VirtualClock {
            host,
            origin_ns,
            icount_shift,
            idle_ns: 0,
            slice_icount: 0,
            slice_end: 0,
        }
    }

    /// Make real time continue from `virtual_ns` (restoring a snapshot).
    pub fn resume_at(&mut self, virtual_ns: u64) {
        self.origin_ns = self.host.now_ns().wrapping_sub(virtual_ns);
    }

    /// Virtual nanoseconds since power-on, given instructions retired.
    pub fn now_at(&self, icount: u64) -> u64 {
        match self.icount_shift {
            Some(s) => (icount << s).wrapping_add(self.idle_ns),
            None => self.host.now_ns().wrapping_sub(self.origin_ns),
        }
    }

    /// Virtual time now (icount mode: as of the current slice start).
    pub fn now(&self) -> u64 {
        self.now_at(self.slice_icount)
    }
}

/// The physical address width the APIC base MSR checks against (CPUID 0x80000008).
const PHYS_BITS: u32 = 40;

/// All devices of the PC.
pub struct Board {
    pub clock: VirtualClock,
    pub map: MemoryMap,
    /// The interrupt controllers and the line router.
    pub intc: Interrupts,
    /// Every other device, with its ranges and lines.
    pub devices: Registry,
    /// What the run loop must act on.
    pub events: Events,
    /// The registry index of COM1 (the console).
    serial: usize,
}

impl Board {
    /// A board of `devices` (one of which, at index `serial`, is the console UART).
    pub fn new(
        clock: VirtualClock,
        map: MemoryMap,
        intc: Interrupts,
        devices: Registry,
        serial: usize,
    ) -> Self {
        Board {
            clock,
            map,
            intc,
            devices,
            events: Events::default(),
            serial,
        }
    }

    /// Refresh every device's outputs and the local APIC timers at `now`.
    pub fn update_irqs(&mut self, now: u64) {
        let mut cx = Ctx {
            now,
            irq: &mut self.intc,
            events: &mut self.events,
        };
        self.devices.update_all(&mut cx);
        for l in &mut self.intc.lapics {
            l.update(now);
        }
    }

    /// The next virtual time a device or a local APIC timer needs attention.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        let apic = self
            .intc
            .lapics
            .iter()
            .filter_map(|l| l.next_deadline_ns())
            .min();
        [self.devices.next_deadline(now), apic]
            .into_iter()
            .flatten()
            .min()
    }

    /// Let devices finish work that needs guest memory, then refresh their outputs.
    pub fn service(&mut self, mem: &mut dyn GuestMemory) {
        if !std::mem::take(&mut self.events.service) {
            return;
        }
        let now = self.clock.now();
        for e in self.devices.entries_mut() {
            e.dev.service(mem);
        }
        let mut cx = Ctx {
            now,
            irq: &mut self.intc,
            events: &mut self.events,
        };
        self.devices.update_all(&mut cx);
    }

    /// The console UART.
    pub fn uart(&mut self) -> &mut Uart16550 {
        let e = &mut self.devices.entries_mut()[self.serial];
        &mut e
            .dev
            .as_any_mut()
            .downcast_mut::<Serial>()
            .expect("the serial index names a Serial")
            .uart
    }

    /// Feed bytes to the console; returns how many were accepted.
    pub fn serial_input(&mut self, bytes: &[u8]) -> usize {
        let n = self.uart().receive(bytes);
        let now = self.clock.now();
        let mut cx = Ctx {
            now,
            irq: &mut self.intc,
            events: &mut self.events,
        };
        self.devices.entries_mut()[self.serial].dev.update(&mut cx);
        n
    }

    /// Flush every disk.
    pub fn flush(&mut self) -> Result<(), String> {
        for e in self.devices.entries_mut() {
            e.dev.flush().map_err(|err| format!("{}: {err}", e.name))?;
        }
        Ok(())
    }

    /// A device access with its context; the device's outputs are refreshed after it.
    fn with_device<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut dyn crate::registry::Device, &mut Ctx) -> R,
    ) -> R {
        let now = self.clock.now();
        let mut cx = Ctx {
            now,
            irq: &mut self.intc,
            events: &mut self.events,
        };
        let dev = &mut *self.devices.entries_mut()[i].dev;
        let r = f(dev, &mut cx);
        dev.update(&mut cx);
        r
    }

    /// The local APIC page of CPU 0 holds `paddr`.
    fn lapic_at(&self, paddr: u64) -> bool {
        self.intc
            .lapics
            .first()
            .is_some_and(|l| l.mmio_enabled() && paddr & !0xfff == l.mmio_base())
    }
}

impl MmioBus for Board {
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        if self.lapic_at(paddr) {
            let now = self.clock.now();
            return self.intc.lapics[0].mmio_read(now, paddr & 0xfff) as u64;
        }
        match self.devices.mmio_target(paddr) {
            Some(Target::Device(i)) => self.with_device(i, |d, cx| d.mmio_read(cx, paddr, size)),
            Some(Target::IoApic) => match &mut self.intc.ioapic {
                Some(io) => io.mmio_read(paddr & 0xff) as u64,
                None => u64::MAX,
            },
            _ => {
                log::trace!("unclaimed MMIO read {paddr:#x}/{size}");
                u64::MAX
            }
        }
    }

    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        if self.lapic_at(paddr) {
            let now = self.clock.now();
            self.intc.lapics[0].mmio_write(now, paddr & 0xfff, value as u32);
            self.intc.route_eois();
            return;
        }
        match self.devices.mmio_target(paddr) {
            Some(Target::Device(i)) => {
                self.with_device(i, |d, cx| d.mmio_write(cx, paddr, size, value))
            }
            Some(Target::IoApic) => {
                if let Some(io) = &mut self.intc.ioapic {
                    io.mmio_write(paddr & 0xff, value as u32);
                }
                self.intc.deliver_ioapic();
            }
            _ => log::trace!("unclaimed MMIO write {paddr:#x}/{size} = {value:#x}"),
        }
    }
}

impl InterruptController for Board {
    fn intr_pending(&mut self) -> bool {
        self.intc.intr_pending()
    }

    fn intr_ack(&mut self) -> u8 {
        self.intc.intr_ack()
    }

    fn take_nmi(&mut self) -> bool {
        self.intc.lapics.first_mut().is_some_and(|l| l.take_nmi())
    }

    fn apic_msr_read(&mut self, msr: u32) -> Option<u64> {
        let now = self.clock.now();
        let l = self.intc.lapics.first_mut()?;
        match msr {
            0x1b => Some(l.base_msr()),
            0x6e0 => Some(l.tsc_deadline()),
            _ => l.msr_read(now, msr),
        }
    }

    fn apic_msr_write(&mut self, msr: u32, value: u64) -> Option<bool> {
        let now = self.clock.now();
        let l = self.intc.lapics.first_mut()?;
        let ok = match msr {
            0x1b => l.set_base_msr(value, PHYS_BITS),
            0x6e0 => {
                l.set_tsc_deadline(now, value);
                true
            }
            _ => l.msr_write(now, msr, value),
        };
        self.intc.route_eois();
        Some(ok)
    }

    fn set_task_priority(&mut self, cr8: u8) {
        if let Some(l) = self.intc.lapics.first_mut() {
            l.set_cr8(cr8);
        }
    }

    fn task_priority(&mut self) -> Option<u8> {
        self.intc.lapics.first().map(|l| l.cr8())
    }
}

impl X86Bus for Board {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let v = match self.devices.port_target(port) {
            Some(Target::Device(i)) => self.with_device(i, |d, cx| d.pio_read(cx, port, size)),
            Some(Target::Pic) => match &mut self.intc.pic {
                Some(p) => p.pio_read(port, size),
                None => u32::MAX,
            },
            _ => {
                self.devices.log_unclaimed(port, "read");
                u32::MAX
            }
        };
        match size {
            1 => v & 0xff,
            2 => v & 0xffff,
            _ => v,
        }
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        match self.devices.port_target(port) {
            Some(Target::Device(i)) => {
                self.with_device(i, |d, cx| d.pio_write(cx, port, size, value))
            }
            Some(Target::Pic) => {
                if let Some(p) = &mut self.intc.pic {
                    p.pio_write(port, size, value);
                }
            }
            _ => self.devices.log_unclaimed(port, "write"),
        }
    }

    fn tsc(&mut self, icount: u64) -> u64 {
        // A 1 GHz time-stamp counter: one tick per virtual nanosecond.
        self.clock.now_at(icount)
    }

    fn take_stop_request(&mut self) -> bool {
        let e = &self.events;
        e.service || e.reset || e.poweroff
    }
}
