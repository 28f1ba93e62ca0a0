//! Device registers: random port traffic to the 16550, the 8259 pair, the 8254, the RTC, the
//! i8042, port 0x92/0xCF9, PCI conf1 (host bridge plus a virtio-blk-pci function), the local
//! APIC (MMIO and x2APIC MSRs) and the IOAPIC (index/data, pins), with
//! interrupt lines wiggled and time moving forward, all as one board would see it.
//!
//! Checked after every step: no panic; the UART's receive FIFO holds at most 16 bytes and its
//! transmit buffer only what was written; an INTA after the PIC says an interrupt is pending
//! returns a vector of an unmasked input, sets its ISR bit unless auto-EOI is on, and clears
//! an edge input's IRR bit; timer and RTC deadlines are never in the past; the PIT produces no
//! more channel-0 edges than its fastest rate allows.

use tci64_devices::block::MemBackend;
use tci64_devices::cf9::ResetControl;
use tci64_devices::i8042::I8042;
use tci64_devices::i8254::Pit;
use tci64_devices::i8259::Pic;
use tci64_devices::ioapic::IoApic;
use tci64_devices::lapic::Lapic;
use tci64_devices::mc146818::Rtc;
use tci64_devices::misc::Port92;
use tci64_devices::pci::host_bridge::HostBridge;
use tci64_devices::pci::PciBus;
use tci64_devices::uart16550::{Uart16550, FIFO_SIZE};
use tci64_devices::virtio::blk::VirtioBlk;
use tci64_devices::virtio::pci::VirtioPci;
use tci64_devices::PioDevice;

/// The PIT's input clock period, rounded down (1.193182 MHz): no output edge comes faster.
const PIT_MIN_PERIOD_NS: u64 = 838;
const MAX_STEPS: usize = 4096;

struct Board {
    uart: Uart16550,
    pic: Pic,
    pit: Pit,
    rtc: Rtc,
    kbd: I8042,
    p92: Port92,
    cf9: ResetControl,
    pci: PciBus,
    lapic: Lapic,
    ioapic: IoApic,
    now: u64,
    /// THR writes so far (an upper bound of transmitted bytes).
    thr_writes: usize,
    tx_taken: usize,
    /// When irq0_edges was last called.
    last_edges_ns: u64,
}

impl Board {
    fn new(epoch: i64) -> Self {
        let mut pci = PciBus::new();
        assert!(pci.add_device(0, Box::new(HostBridge::new()), None).is_ok());
        let blk = VirtioBlk::new(Box::new(MemBackend::zeroed(4096)), false);
        assert!(pci
            .add_device(3, Box::new(VirtioPci::new(blk)), Some(11))
            .is_ok());
        pci.assign_resources(0xFE00_0000..0xFF00_0000, 0xC000..0x10000)
            .expect("BARs fit");
        Board {
            uart: Uart16550::new(0x3F8),
            pic: Pic::new(),
            pit: Pit::new(0),
            rtc: Rtc::new(epoch),
            kbd: I8042::new(),
            p92: Port92::default(),
            cf9: ResetControl::default(),
            pci,
            lapic: Lapic::new(0, true, true),
            ioapic: IoApic::new(0),
            now: 0,
            thr_writes: 0,
            tx_taken: 0,
            last_edges_ns: 0,
        }
    }

    fn read(&mut self, port: u16, size: u8) {
        let now = self.now;
        match port {
            0x3F8..=0x3FF => {
                self.uart.pio_read(port, size);
            }
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => {
                self.pic.pio_read(port, size);
            }
            0x40..=0x43 | 0x61 => {
                self.pit.pio_read(now, port);
            }
            0x70 | 0x71 => {
                self.rtc.pio_read(now, port);
            }
            0x60 | 0x64 => {
                self.kbd.pio_read(port, size);
            }
            0x92 => {
                self.p92.pio_read(port, size);
            }
            0xCF9 => {
                self.cf9.pio_read(port, size);
            }
            _ => {
                self.pci.pio_read(port, size);
            }
        }
    }

    fn write(&mut self, port: u16, size: u8, v: u32) {
        let now = self.now;
        match port {
            0x3F8..=0x3FF => {
                // THR (DLAB clear) transmits a byte; count every write to offset 0.
                if port == 0x3F8 {
                    self.thr_writes += 1;
                }
                self.uart.pio_write(port, size, v);
            }
            0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => self.pic.pio_write(port, size, v),
            0x40..=0x43 | 0x61 => self.pit.pio_write(now, port, v as u8),
            0x70 | 0x71 => self.rtc.pio_write(now, port, v as u8),
            0x60 | 0x64 => self.kbd.pio_write(port, size, v),
            0x92 => self.p92.pio_write(port, size, v),
            0xCF9 => self.cf9.pio_write(port, size, v),
            _ => self.pci.pio_write(port, size, v),
        }
    }

    /// Device outputs into the PIC, as the board's update does.
    fn update_irqs(&mut self) {
        let edges = self.pit.irq0_edges(self.now);
        let dt = self.now - self.last_edges_ns;
        self.last_edges_ns = self.now;
        assert!(
            u64::from(edges) <= dt / PIT_MIN_PERIOD_NS + 2,
            "{edges} PIT edges in {dt} ns"
        );
        for _ in 0..edges.min(4) {
            self.pic.set_irq(0, true);
            self.pic.set_irq(0, false);
        }
        self.rtc.update(self.now);
        self.pic.set_irq(1, self.kbd.irq1_level());
        self.pic.set_irq(4, self.uart.irq_level());
        self.pic.set_irq(8, self.rtc.irq_level());
        self.pic.set_irq(12, self.kbd.irq12_level());
        let lv = self.pci.irq_levels();
        self.pic.set_irq(11, lv & (1 << 11) != 0);
        self.ioapic.set_irq(2, edges > 0);
        self.ioapic.set_irq(4, self.uart.irq_level());
        self.ioapic.set_irq(8, self.rtc.irq_level());
        self.ioapic.set_irq(11, lv & (1 << 11) != 0);
        self.lapic.update(self.now);
        // The APIC bus: IOAPIC messages to the local APIC, EOIs back (bounded per step: a
        // level pin re-delivers after each EOI).
        for _ in 0..32 {
            let Some(msg) = self.ioapic.take_message() else {
                break;
            };
            if self.lapic.matches_destination(msg.dest, msg.logical) {
                self.lapic.accept_message(&msg);
            }
        }
        while let Some(v) = self.lapic.take_eoi_broadcast() {
            self.ioapic.eoi(v);
        }
        let _ = self.lapic.take_nmi();
    }

    /// INTA at the local APIC: a vector it accepts is never one of the reserved 0..15, except
    /// its spurious vector.
    fn apic_inta(&mut self) {
        let ext = self.pic.interrupt_pending();
        if !self.lapic.intr_pending(ext) {
            return;
        }
        match self.lapic.acknowledge(ext) {
            None => {
                self.pic.acknowledge();
            }
            Some(v) => {
                let spurious = self.lapic.mmio_read(self.now, 0xF0) as u8;
                assert!(
                    v >= 16 || v == spurious,
                    "APIC delivered reserved vector {v}"
                );
            }
        }
    }

    fn check(&mut self) {
        assert!(self.uart.rx_space() <= FIFO_SIZE);
        let out = self.uart.take_output();
        self.tx_taken += out.len();
        assert!(
            self.tx_taken <= self.thr_writes,
            "UART transmitted {} bytes for {} THR writes",
            self.tx_taken,
            self.thr_writes
        );
        for (name, dl) in [
            ("PIT", self.pit.next_deadline_ns(self.now)),
            ("RTC", self.rtc.next_deadline_ns(self.now)),
        ] {
            if let Some(dl) = dl {
                assert!(
                    dl > self.now,
                    "{name} deadline {dl} not after now {}",
                    self.now
                );
            }
        }
    }

    fn inta(&mut self) {
        if !self.pic.interrupt_pending() {
            return;
        }
        let before = [self.pic.chip(0).clone(), self.pic.chip(1).clone()];
        let vector = self.pic.acknowledge();
        let after = [self.pic.chip(0), self.pic.chip(1)];
        // Which chip delivered, from the vector base (skip when both chips share one).
        let base = vector & 0xF8;
        let (b, a) = match (base == before[0].vector_base, base == before[1].vector_base) {
            (true, false) => (&before[0], after[0]),
            (false, true) => (&before[1], after[1]),
            _ => return,
        };
        let irq = vector & 7;
        let bit = 1u8 << irq;
        if b.irr & bit == 0 {
            // Spurious (IR7 with nothing pending on the slave after a cascade).
            assert_eq!(
                irq, 7,
                "vector {vector:#x} for an input with no request: {b:?}"
            );
            return;
        }
        if !b.special_mask {
            assert_eq!(b.imr & bit, 0, "masked input {irq} delivered: {b:?}");
        }
        if !b.auto_eoi {
            assert_ne!(a.isr & bit, 0, "ISR bit {irq} not set after INTA: {a:?}");
        }
        let level = b.ltim || b.elcr & bit != 0;
        if !level {
            assert_eq!(a.irr & bit, 0, "edge IRR bit {irq} kept after INTA: {a:?}");
        }
    }
}

const PORTS: [u16; 24] = [
    0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1,
    0x40, 0x42, 0x43, 0x61, 0x70, 0x71, 0x60, 0x64, 0xCF8, 0xCFC,
];

/// The fuzz target.
pub fn device_regs(data: &[u8]) {
    let mut it = data.iter().copied();
    let mut next = || it.next();
    let epoch = i64::from(next().unwrap_or(0)) * 1_000_000_007 - 100_000_000_000;
    let mut b = Board::new(epoch);
    for _ in 0..MAX_STEPS {
        let Some(op) = next() else { break };
        let arg = next().unwrap_or(0);
        let val = u32::from_le_bytes([
            next().unwrap_or(0),
            next().unwrap_or(0),
            next().unwrap_or(0),
            next().unwrap_or(0),
        ]);
        let port = match op & 0x20 {
            0 => PORTS[usize::from(arg) % PORTS.len()],
            _ => [0xCF9, 0x92, 0xCFD, 0xCFE, 0xCFF, 0x80][usize::from(arg) % 6],
        };
        let size = [1u8, 1, 2, 4][usize::from(op >> 6)];
        match op & 0x1F {
            0..=11 => b.write(port, size, val),
            12..=21 => b.read(port, size),
            22 => {
                let n = b.uart.receive(&val.to_le_bytes()[..usize::from(arg % 5)]);
                assert!(n <= 4);
            }
            23 => b.pic.set_irq(arg % 17, val & 1 != 0),
            24..=26 => b.now += u64::from(val % 50_000_000),
            27 => b.now += u64::from(val) * 1000,
            28 => b.inta(),
            29 => b.apic_inta(),
            30 => {
                let _ = b.kbd.take_reset_request();
                let _ = b.p92.take_reset_request();
                let _ = b.cf9.take_reset_request();
            }
            _ => {
                let _ = b
                    .pci
                    .config_read(usize::from(arg % 40), usize::from(val as u8), 4);
            }
        }
        b.update_irqs();
        b.check();
    }
}
