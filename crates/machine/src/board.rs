//! The board: every device, the virtual clock, and the bus the CPU talks to.

use crate::memmap::{MemoryMap, RegionKind};
use crate::HostClock;
use tci64_devices::cf9::ResetControl;
use tci64_devices::i8042::I8042;
use tci64_devices::i8254::Pit;
use tci64_devices::i8259::Pic;
use tci64_devices::mc146818::Rtc;
use tci64_devices::misc::{Port92, PostPort};
use tci64_devices::pci::{Access, PciBus};
use tci64_devices::uart16550::Uart16550;
use tci64_devices::virtio::blk::VirtioBlk;
use tci64_devices::virtio::mmio::VirtioMmio;
use tci64_devices::virtio::{GuestMemory, MemError};
use tci64_devices::PioDevice;
use tci64_engine::MmioBus;
use tci64_x86::X86Bus;

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
        }
    }

    /// Virtual nanoseconds since power-on, given instructions retired.
    pub fn now_at(&self, icount: u64) -> u64 {
        match self.icount_shift {
            Some(s) => (icount << s).wrapping_add(self.idle_ns),
            None => self.host.now_ns().saturating_sub(self.origin_ns),
        }
    }

    /// Virtual time now (icount mode: as of the current slice start).
    pub fn now(&self) -> u64 {
        self.now_at(self.slice_icount)
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

/// One virtio-mmio transport with its disk.
pub struct VirtioSlotDev {
    pub base: u64,
    pub size: u64,
    pub irq: u8,
    pub dev: VirtioMmio<VirtioBlk>,
}

/// All devices of the PC.
pub struct Board {
    pub clock: VirtualClock,
    pub map: MemoryMap,
    pub uart: Uart16550,
    pub pic: Pic,
    pub pit: Pit,
    pub rtc: Rtc,
    pub i8042: I8042,
    pub post: PostPort,
    pub port92: Port92,
    pub cf9: ResetControl,
    pub virtio: Vec<VirtioSlotDev>,
    /// Queue notifications (device index, value) waiting for guest memory.
    pub notifies: Vec<(usize, u32)>,
    /// The PCI bus (`-M pc`), reached at 0xCF8-0xCFF and through its BARs.
    pub pci: Option<PciBus>,
    /// A PCI device has work that needs guest memory (`PciBus::service`).
    pub pci_service: bool,
    /// A device asked for a reset.
    pub reset: bool,
    /// Ports nobody claims, already reported (to log each once).
    unclaimed_logged: std::collections::BTreeSet<u16>,
}

impl Board {
    pub fn new(
        clock: VirtualClock,
        map: MemoryMap,
        rtc_epoch_secs: u64,
        virtio: Vec<VirtioSlotDev>,
    ) -> Self {
        let now = clock.now();
        Board {
            clock,
            map,
            uart: Uart16550::new(0x3f8),
            pic: Pic::new(),
            pit: Pit::new(now),
            rtc: Rtc::new(rtc_epoch_secs as i64),
            i8042: I8042::new(),
            post: PostPort::default(),
            port92: Port92::default(),
            cf9: ResetControl::default(),
            virtio,
            notifies: Vec::new(),
            pci: None,
            pci_service: false,
            reset: false,
            unclaimed_logged: Default::default(),
        }
    }

    /// Feed every device's interrupt output into the PIC and collect reset requests.
    pub fn update_irqs(&mut self, now: u64) {
        let edges = self.pit.irq0_edges(now);
        if edges > 0 {
            self.pic.set_irq(0, true);
            self.pic.set_irq(0, false);
        }
        self.rtc.update(now);
        self.pic.set_irq(RTC_IRQ, self.rtc.irq_level());
        self.pic.set_irq(UART_IRQ, self.uart.irq_level());
        for v in &self.virtio {
            self.pic.set_irq(v.irq, v.dev.irq_level());
        }
        self.update_pci_irqs();
        self.reset |= self.port92.take_reset_request()
            | self.cf9.take_reset_request()
            | self.i8042.take_reset_request();
    }

    /// Drive the PCI INTx lines into the PIC (a shared line is the OR of its devices).
    pub fn update_pci_irqs(&mut self) {
        if let Some(pci) = &self.pci {
            let (lines, levels) = (pci.irq_lines(), pci.irq_levels());
            for line in 0..16u8 {
                if lines & (1 << line) != 0 {
                    self.pic.set_irq(line, levels & (1 << line) != 0);
                }
            }
        }
    }

    /// The next virtual time a device needs attention.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        [
            self.pit.next_deadline_ns(now),
            self.rtc.next_deadline_ns(now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn virtio_at(&self, paddr: u64) -> Option<usize> {
        match self.map.lookup(paddr)?.kind {
            RegionKind::VirtioMmio { .. } => self
                .virtio
                .iter()
                .position(|v| paddr >= v.base && paddr < v.base + v.size),
            _ => None,
        }
    }
}

impl MmioBus for Board {
    fn mmio_read(&mut self, paddr: u64, size: u8) -> u64 {
        if let Some(i) = self.virtio_at(paddr) {
            let v = &mut self.virtio[i];
            let mut b = [0u8; 8];
            let n = (size as usize).min(8);
            v.dev.mmio_read(paddr - v.base, &mut b[..n]);
            return u64::from_le_bytes(b);
        }
        if let Some(pci) = &mut self.pci {
            let mut b = [0u8; 8];
            let n = (size as usize).min(8);
            if pci.mmio_read(paddr, &mut b[..n]) {
                // Reads can lower INTx (virtio's ISR is read-to-clear).
                self.update_pci_irqs();
                return u64::from_le_bytes(b);
            }
        }
        log::trace!("unclaimed MMIO read {paddr:#x}/{size}");
        u64::MAX
    }

    fn mmio_write(&mut self, paddr: u64, size: u8, value: u64) {
        if let Some(i) = self.virtio_at(paddr) {
            let v = &mut self.virtio[i];
            let off = paddr - v.base;
            if off == tci64_devices::virtio::mmio::REG_QUEUE_NOTIFY {
                // Processing needs guest memory: finish it when the CPU returns.
                self.notifies.push((i, value as u32));
                return;
            }
            let n = (size as usize).min(8);
            v.dev
                .mmio_write(off, &value.to_le_bytes()[..n], &mut NoMemory);
            let (irq, level) = (v.irq, v.dev.irq_level());
            self.pic.set_irq(irq, level);
            return;
        }
        if let Some(pci) = &mut self.pci {
            let n = (size as usize).min(8);
            match pci.mmio_write(paddr, &value.to_le_bytes()[..n]) {
                // Processing needs guest memory: finish it when the CPU returns.
                Some(Access::NeedsService) => {
                    self.pci_service = true;
                    return;
                }
                Some(Access::Done) => {
                    self.update_pci_irqs();
                    return;
                }
                None => {}
            }
        }
        log::trace!("unclaimed MMIO write {paddr:#x}/{size} = {value:#x}");
    }
}

impl X86Bus for Board {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let now = self.clock.now();
        let v = match port {
            0x3f8..=0x3ff => {
                let v = self.uart.pio_read(port, size);
                self.pic.set_irq(UART_IRQ, self.uart.irq_level());
                v
            }
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.pio_read(port, size),
            0x40..=0x43 | 0x61 => self.pit.pio_read(now, port) as u32,
            0x70 | 0x71 => {
                let v = self.rtc.pio_read(now, port) as u32;
                self.pic.set_irq(RTC_IRQ, self.rtc.irq_level());
                v
            }
            0x60 | 0x64 => self.i8042.pio_read(port, size),
            0x80 => self.post.pio_read(port, size),
            0x92 => self.port92.pio_read(port, size),
            0xcf9 if size == 1 => self.cf9.pio_read(port, size),
            0xcf8..=0xcff if self.pci.is_some() => self
                .pci
                .as_mut()
                .map_or(u32::MAX, |p| p.pio_read(port, size)),
            _ => {
                // A PCI I/O BAR, else nobody.
                if let Some(v) = self.pci.as_mut().and_then(|p| p.io_read(port, size)) {
                    return v;
                }
                if self.unclaimed_logged.insert(port) {
                    log::debug!("unclaimed port read {port:#x}/{size}");
                }
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
        let now = self.clock.now();
        match port {
            0x3f8..=0x3ff => {
                self.uart.pio_write(port, size, value);
                self.pic.set_irq(UART_IRQ, self.uart.irq_level());
            }
            0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => self.pic.pio_write(port, size, value),
            0x40..=0x43 | 0x61 => self.pit.pio_write(now, port, value as u8),
            0x70 | 0x71 => {
                self.rtc.pio_write(now, port, value as u8);
                self.pic.set_irq(RTC_IRQ, self.rtc.irq_level());
            }
            0x60 | 0x64 => {
                self.i8042.pio_write(port, size, value);
                self.reset |= self.i8042.take_reset_request();
            }
            0x80 => self.post.pio_write(port, size, value),
            0x92 => {
                self.port92.pio_write(port, size, value);
                self.reset |= self.port92.take_reset_request();
            }
            0xcf9 if size == 1 => {
                self.cf9.pio_write(port, size, value);
                self.reset |= self.cf9.take_reset_request();
            }
            0xcf8..=0xcff if self.pci.is_some() => {
                if let Some(p) = self.pci.as_mut() {
                    p.pio_write(port, size, value);
                    // virtio's PCI_CFG window can reach the notify area from config space.
                    self.pci_service |= p.take_service_request();
                }
                // A command register write can mask or unmask INTx.
                self.update_pci_irqs();
            }
            _ => {
                if let Some(a) = self
                    .pci
                    .as_mut()
                    .and_then(|p| p.io_write(port, size, value))
                {
                    self.pci_service |= a == Access::NeedsService;
                    return;
                }
                if self.unclaimed_logged.insert(port) {
                    log::debug!("unclaimed port write {port:#x}/{size} = {value:#x}");
                }
            }
        }
    }

    fn intr_pending(&mut self) -> bool {
        self.pic.interrupt_pending()
    }

    fn intr_ack(&mut self) -> u8 {
        self.pic.acknowledge()
    }

    fn tsc(&mut self, icount: u64) -> u64 {
        // A 1 GHz time-stamp counter: one tick per virtual nanosecond.
        self.clock.now_at(icount)
    }

    fn take_stop_request(&mut self) -> bool {
        !self.notifies.is_empty() || self.reset || self.pci_service
    }
}
