//! 16550A UART (National Semiconductor PC16550D datasheet), as found at COM1 (0x3F8, IRQ 4).
//!
//! Transmission is instantaneous: a byte written to THR goes straight to the output buffer
//! (drained by the machine with [`Uart16550::take_output`]) and THR/TSR are always empty.
//! The output buffer holds at most [`OUTPUT_CAP`] bytes: a host that does not drain it (a slow
//! terminal or JS consumer) loses the bytes past that, counted in
//! [`Uart16550::output_dropped`], instead of growing without limit. The guest never sees the
//! buffer (it would make what it computes depend on the host's timing), and a host that drains
//! it at least every [`OUTPUT_CAP`] instructions loses nothing.
//! Input arrives through [`Uart16550::receive`], which accepts only what fits in the RX FIFO and
//! reports how much it took, so the host retries the rest later (nothing is dropped).
//!
//! Because there is no baud-rate timing, the character-timeout interrupt (IIR = 0xC) is raised
//! as soon as the RX FIFO holds data below the trigger level (the four character times have
//! "already elapsed"); at or above the trigger level the interrupt is "received data available".
//!
//! The interrupt output is gated by MCR.OUT2 as on the PC (OUT2 enables the IRQ line driver),
//! and is off in loopback mode (where OUT2 is disconnected from the pin).

use crate::PioDevice;

/// Bytes the output buffer holds at most (see the module documentation).
pub const OUTPUT_CAP: usize = 1 << 20;

/// Base port of COM1.
pub const COM1_BASE: u16 = 0x3F8;
/// ISA IRQ line of COM1.
pub const COM1_IRQ: u8 = 4;

/// Receiver buffer (read, DLAB=0).
pub const REG_RBR: u16 = 0;
/// Transmitter holding register (write, DLAB=0).
pub const REG_THR: u16 = 0;
/// Divisor latch low byte (DLAB=1).
pub const REG_DLL: u16 = 0;
/// Interrupt enable register (DLAB=0).
pub const REG_IER: u16 = 1;
/// Divisor latch high byte (DLAB=1).
pub const REG_DLM: u16 = 1;
/// Interrupt identification register (read).
pub const REG_IIR: u16 = 2;
/// FIFO control register (write).
pub const REG_FCR: u16 = 2;
/// Line control register.
pub const REG_LCR: u16 = 3;
/// Modem control register.
pub const REG_MCR: u16 = 4;
/// Line status register.
pub const REG_LSR: u16 = 5;
/// Modem status register.
pub const REG_MSR: u16 = 6;
/// Scratch register.
pub const REG_SCR: u16 = 7;

/// IER: enable received data available (and timeout) interrupt.
pub const IER_ERBFI: u8 = 0x01;
/// IER: enable transmitter holding register empty interrupt.
pub const IER_ETBEI: u8 = 0x02;
/// IER: enable receiver line status interrupt.
pub const IER_ELSI: u8 = 0x04;
/// IER: enable modem status interrupt.
pub const IER_EDSSI: u8 = 0x08;
/// IER: bits implemented on a 16550A (the rest read 0).
pub const IER_MASK: u8 = 0x0F;

/// IIR: no interrupt pending (bit 0 is active low).
pub const IIR_NO_INT: u8 = 0x01;
/// IIR: receiver line status (highest priority).
pub const IIR_RLS: u8 = 0x06;
/// IIR: received data available.
pub const IIR_RDA: u8 = 0x04;
/// IIR: character timeout.
pub const IIR_CTI: u8 = 0x0C;
/// IIR: transmitter holding register empty.
pub const IIR_THRE: u8 = 0x02;
/// IIR: modem status (lowest priority).
pub const IIR_MSI: u8 = 0x00;
/// IIR: both bits set when the FIFOs are enabled.
pub const IIR_FIFO_ENABLED: u8 = 0xC0;

/// FCR: enable both FIFOs (changing it clears them).
pub const FCR_ENABLE: u8 = 0x01;
/// FCR: clear the RX FIFO (self-clearing).
pub const FCR_CLEAR_RX: u8 = 0x02;
/// FCR: clear the TX FIFO (self-clearing).
pub const FCR_CLEAR_TX: u8 = 0x04;
/// FCR: RX trigger level field (bits 7:6 → 1, 4, 8, 14 bytes).
pub const FCR_TRIGGER_MASK: u8 = 0xC0;

/// LCR: divisor latch access bit.
pub const LCR_DLAB: u8 = 0x80;

/// MCR: data terminal ready.
pub const MCR_DTR: u8 = 0x01;
/// MCR: request to send.
pub const MCR_RTS: u8 = 0x02;
/// MCR: OUT1 (unused on the PC).
pub const MCR_OUT1: u8 = 0x04;
/// MCR: OUT2 (gates the IRQ line on the PC).
pub const MCR_OUT2: u8 = 0x08;
/// MCR: local loopback.
pub const MCR_LOOP: u8 = 0x10;
/// MCR: bits implemented on a 16550A.
pub const MCR_MASK: u8 = 0x1F;

/// LSR: data ready.
pub const LSR_DR: u8 = 0x01;
/// LSR: overrun error.
pub const LSR_OE: u8 = 0x02;
/// LSR: parity error.
pub const LSR_PE: u8 = 0x04;
/// LSR: framing error.
pub const LSR_FE: u8 = 0x08;
/// LSR: break interrupt.
pub const LSR_BI: u8 = 0x10;
/// LSR: transmitter holding register empty.
pub const LSR_THRE: u8 = 0x20;
/// LSR: transmitter empty (THR and shift register).
pub const LSR_TEMT: u8 = 0x40;
/// LSR: error in RX FIFO.
pub const LSR_FIFO_ERR: u8 = 0x80;
/// LSR: the error bits that raise the line status interrupt and clear on LSR read.
pub const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// MSR: delta clear to send.
pub const MSR_DCTS: u8 = 0x01;
/// MSR: delta data set ready.
pub const MSR_DDSR: u8 = 0x02;
/// MSR: trailing edge ring indicator.
pub const MSR_TERI: u8 = 0x04;
/// MSR: delta data carrier detect.
pub const MSR_DDCD: u8 = 0x08;
/// MSR: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// MSR: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// MSR: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// MSR: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
/// MSR: the delta bits.
pub const MSR_DELTAS: u8 = 0x0F;

/// Depth of the RX and TX FIFOs.
pub const FIFO_SIZE: usize = 16;

/// Modem input lines presented by the host side when not in loopback: carrier, DSR, CTS.
const HOST_MODEM_LINES: u8 = MSR_DCD | MSR_DSR | MSR_CTS;

/// The UART's registers and its receive FIFO: everything a snapshot needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UartState {
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    /// Error bits of LSR (OE/PE/FE/BI); DR/THRE/TEMT are derived.
    pub lsr_errors: u8,
    /// MSR: status bits (7:4) and latched deltas (3:0).
    pub msr: u8,
    pub scr: u8,
    pub dll: u8,
    pub dlm: u8,
    /// FCR as last written (bits 0, 3, 7:6 kept).
    pub fcr: u8,
    /// THRE interrupt latch: set when THR becomes empty or ETBEI is newly enabled with THR empty;
    /// cleared by an IIR read that reports it, or by a THR write.
    pub thr_ipending: bool,
    /// Last byte read from RBR (returned again when the FIFO is empty).
    pub last_rx: u8,
    /// The receive FIFO (at most [`FIFO_SIZE`] bytes; one without the FIFO enabled).
    pub rx: std::collections::VecDeque<u8>,
}

impl Default for UartState {
    fn default() -> Self {
        UartState {
            ier: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr: HOST_MODEM_LINES,
            scr: 0,
            dll: 0x0C, // 9600 baud, the usual BIOS default
            dlm: 0,
            fcr: 0,
            thr_ipending: false,
            last_rx: 0,
            rx: std::collections::VecDeque::with_capacity(FIFO_SIZE),
        }
    }
}

/// A 16550A UART.
#[derive(Debug, Clone)]
pub struct Uart16550 {
    base: u16,
    state: UartState,
    output: Vec<u8>,
    /// Bytes dropped because the output buffer was full.
    dropped: u64,
}

impl Default for Uart16550 {
    fn default() -> Self {
        Self::new(COM1_BASE)
    }
}

impl Uart16550 {
    /// A UART at `base` (0x3F8 for COM1), in its power-on state.
    pub fn new(base: u16) -> Self {
        Uart16550 {
            base,
            state: UartState::default(),
            output: Vec::new(),
            dropped: 0,
        }
    }

    /// A UART at `base` with a saved `state` (from [`state`](Self::state)). A FIFO longer than
    /// the hardware's is cut to [`FIFO_SIZE`] bytes.
    pub fn from_state(base: u16, mut state: UartState) -> Self {
        state.rx.truncate(FIFO_SIZE);
        Uart16550 {
            base,
            state,
            output: Vec::new(),
            dropped: 0,
        }
    }

    /// The first I/O port.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// The registers (for inspection and snapshots).
    pub fn state(&self) -> &UartState {
        &self.state
    }

    /// Bytes the guest transmitted since the last call (loopback bytes are not included).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes transmitted while the output buffer was full (lost), since power-on.
    pub fn output_dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether transmitted bytes are waiting in the output buffer.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    fn fifo_enabled(&self) -> bool {
        self.state.fcr & FCR_ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.state.mcr & MCR_LOOP != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    fn rx_trigger(&self) -> usize {
        match self.state.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// How many more bytes [`receive`](Self::receive) would accept now.
    pub fn rx_space(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity().saturating_sub(self.state.rx.len())
        }
    }

    /// Host → guest bytes. Returns how many were accepted (0 when the FIFO is full or in
    /// loopback mode, where the serial input is disconnected); the caller keeps the rest.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.rx_space());
        self.state.rx.extend(&bytes[..n]);
        n
    }

    /// A byte arriving at the receiver (from the wire or the loopback path). A full FIFO
    /// overruns: the byte is lost and LSR.OE is set, as the hardware does.
    fn rx_push(&mut self, byte: u8) {
        if self.state.rx.len() >= self.rx_capacity() {
            self.state.lsr_errors |= LSR_OE;
        } else {
            self.state.rx.push_back(byte);
        }
    }

    /// The modem status inputs (MSR bits 7:4) as currently seen by the UART.
    fn modem_inputs(&self) -> u8 {
        if self.loopback() {
            let m = self.state.mcr;
            let mut v = 0;
            if m & MCR_RTS != 0 {
                v |= MSR_CTS;
            }
            if m & MCR_DTR != 0 {
                v |= MSR_DSR;
            }
            if m & MCR_OUT1 != 0 {
                v |= MSR_RI;
            }
            if m & MCR_OUT2 != 0 {
                v |= MSR_DCD;
            }
            v
        } else {
            HOST_MODEM_LINES
        }
    }

    /// Recompute MSR status bits, latching deltas for changed inputs.
    fn update_msr(&mut self) {
        let old = self.state.msr & 0xF0;
        let new = self.modem_inputs();
        let changed = old ^ new;
        let mut deltas = 0;
        if changed & MSR_CTS != 0 {
            deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            deltas |= MSR_DDSR;
        }
        if changed & MSR_DCD != 0 {
            deltas |= MSR_DDCD;
        }
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.state.msr = new | ((self.state.msr | deltas) & MSR_DELTAS);
    }

    fn lsr(&self) -> u8 {
        let mut v = self.state.lsr_errors | LSR_THRE | LSR_TEMT;
        if !self.state.rx.is_empty() {
            v |= LSR_DR;
        }
        v
    }

    /// The highest-priority pending interrupt source, as an IIR id (without FIFO bits).
    fn pending(&self) -> Option<u8> {
        let ier = self.state.ier;
        if ier & IER_ELSI != 0 && self.state.lsr_errors != 0 {
            return Some(IIR_RLS);
        }
        if ier & IER_ERBFI != 0 && !self.state.rx.is_empty() {
            if !self.fifo_enabled() || self.state.rx.len() >= self.rx_trigger() {
                return Some(IIR_RDA);
            }
            return Some(IIR_CTI);
        }
        if ier & IER_ETBEI != 0 && self.state.thr_ipending {
            return Some(IIR_THRE);
        }
        if ier & IER_EDSSI != 0 && self.state.msr & MSR_DELTAS != 0 {
            return Some(IIR_MSI);
        }
        None
    }

    /// The UART's INTR output as it reaches the PIC (gated by MCR.OUT2, off in loopback).
    pub fn irq_level(&self) -> bool {
        self.state.mcr & MCR_OUT2 != 0 && !self.loopback() && self.pending().is_some()
    }

    fn iir(&self) -> u8 {
        let fifo = if self.fifo_enabled() {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        fifo | self.pending().unwrap_or(IIR_NO_INT)
    }

    /// Read register `reg` (0..=7).
    pub fn read_reg(&mut self, reg: u16) -> u8 {
        let dlab = self.state.lcr & LCR_DLAB != 0;
        match reg & 7 {
            REG_RBR if dlab => self.state.dll,
            REG_RBR => {
                if let Some(b) = self.state.rx.pop_front() {
                    self.state.last_rx = b;
                }
                self.state.last_rx
            }
            REG_IER if dlab => self.state.dlm,
            REG_IER => self.state.ier,
            REG_IIR => {
                let v = self.iir();
                if v & 0x0F == IIR_THRE {
                    self.state.thr_ipending = false;
                }
                v
            }
            REG_LCR => self.state.lcr,
            REG_MCR => self.state.mcr,
            REG_LSR => {
                let v = self.lsr();
                self.state.lsr_errors = 0;
                v
            }
            REG_MSR => {
                let v = self.state.msr;
                self.state.msr &= !MSR_DELTAS;
                v
            }
            _ => self.state.scr,
        }
    }

    /// Write register `reg` (0..=7).
    pub fn write_reg(&mut self, reg: u16, value: u8) {
        let dlab = self.state.lcr & LCR_DLAB != 0;
        match reg & 7 {
            REG_THR if dlab => self.state.dll = value,
            REG_THR => {
                // Writing THR clears the THRE interrupt; the byte leaves at once and THR is
                // empty again, which raises it again.
                if self.loopback() {
                    self.rx_push(value);
                } else if self.output.len() < OUTPUT_CAP {
                    self.output.push(value);
                } else {
                    if self.dropped == 0 {
                        log::warn!("16550: output buffer full ({OUTPUT_CAP} bytes not taken by the host): dropping output");
                    }
                    self.dropped += 1;
                }
                self.state.thr_ipending = true;
            }
            REG_IER if dlab => self.state.dlm = value,
            REG_IER => {
                let old = self.state.ier;
                let new = value & IER_MASK;
                self.state.ier = new;
                // THR is always empty here: enabling ETBEI raises the THRE interrupt.
                if new & IER_ETBEI != 0 && old & IER_ETBEI == 0 {
                    self.state.thr_ipending = true;
                }
            }
            REG_FCR => {
                let old = self.state.fcr;
                if (old ^ value) & FCR_ENABLE != 0 || value & FCR_CLEAR_RX != 0 {
                    self.state.rx.clear();
                }
                // The TX FIFO is always empty (instant transmission): nothing to clear.
                self.state.fcr = value & (FCR_ENABLE | 0x08 | FCR_TRIGGER_MASK);
                if self.state.fcr & FCR_ENABLE == 0 {
                    self.state.fcr = 0;
                }
            }
            REG_LCR => self.state.lcr = value,
            REG_MCR => {
                self.state.mcr = value & MCR_MASK;
                self.update_msr();
            }
            REG_LSR => {} // factory test register: writes ignored
            REG_MSR => {} // read-only
            _ => self.state.scr = value,
        }
    }
}

impl PioDevice for Uart16550 {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let mut v = 0u32;
        for i in 0..u16::from(size.clamp(1, 4)) {
            let reg = port.wrapping_sub(self.base).wrapping_add(i);
            let b = if reg < 8 { self.read_reg(reg) } else { 0xFF };
            v |= u32::from(b) << (8 * i);
        }
        v
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        for i in 0..u16::from(size.clamp(1, 4)) {
            let reg = port.wrapping_sub(self.base).wrapping_add(i);
            if reg < 8 {
                self.write_reg(reg, (value >> (8 * i)) as u8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(u: &mut Uart16550, reg: u16) -> u8 {
        u.pio_read(COM1_BASE + reg, 1) as u8
    }
    fn wr(u: &mut Uart16550, reg: u16, v: u8) {
        u.pio_write(COM1_BASE + reg, 1, u32::from(v));
    }

    #[test]
    fn transmit_goes_to_output() {
        let mut u = Uart16550::default();
        for b in b"hi" {
            wr(&mut u, REG_THR, *b);
        }
        assert_eq!(u.take_output(), b"hi");
        assert!(u.take_output().is_empty());
        assert_eq!(
            rd(&mut u, REG_LSR) & (LSR_THRE | LSR_TEMT),
            LSR_THRE | LSR_TEMT
        );
    }

    #[test]
    fn divisor_latch() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_LCR, LCR_DLAB | 3);
        wr(&mut u, REG_DLL, 1);
        wr(&mut u, REG_DLM, 0);
        assert_eq!(rd(&mut u, REG_DLL), 1);
        assert_eq!(rd(&mut u, REG_DLM), 0);
        wr(&mut u, REG_LCR, 3);
        assert!(u.take_output().is_empty());
        assert_eq!(rd(&mut u, REG_IER), 0);
    }

    #[test]
    fn linux_autoconfig_probe() {
        let mut u = Uart16550::default();
        // scratch test via IER
        wr(&mut u, REG_IER, 0);
        assert_eq!(rd(&mut u, REG_IER) & 0x0F, 0);
        wr(&mut u, REG_IER, 0xFF);
        assert_eq!(rd(&mut u, REG_IER), 0x0F);
        wr(&mut u, REG_IER, 0);
        // loopback test: MCR = LOOP | OUT2 | RTS → MSR status = DCD | CTS
        wr(&mut u, REG_MCR, MCR_LOOP | 0x0A);
        assert_eq!(rd(&mut u, REG_MSR) & 0xF0, 0x90);
        wr(&mut u, REG_MCR, 0);
        // FIFO detection
        wr(&mut u, REG_FCR, FCR_ENABLE);
        assert_eq!(rd(&mut u, REG_IIR) >> 6, 3);
        wr(&mut u, REG_FCR, 0);
        assert_eq!(rd(&mut u, REG_IIR) >> 6, 0);
    }

    #[test]
    fn output_buffer_is_bounded() {
        let mut u = Uart16550::default();
        for i in 0..OUTPUT_CAP + 10 {
            u.write_reg(REG_THR, i as u8);
        }
        assert_eq!(u.output_dropped(), 10);
        let out = u.take_output();
        assert_eq!(out.len(), OUTPUT_CAP);
        assert_eq!(out[OUTPUT_CAP - 1], (OUTPUT_CAP - 1) as u8);
        // The guest sees an ordinary UART all along, and drained output flows again.
        assert_eq!(
            rd(&mut u, REG_LSR) & (LSR_THRE | LSR_TEMT),
            LSR_THRE | LSR_TEMT
        );
        u.write_reg(REG_THR, b'x');
        assert_eq!(u.take_output(), b"x");
        assert_eq!(u.output_dropped(), 10);
    }

    #[test]
    fn thre_interrupt_semantics() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_MCR, MCR_OUT2);
        assert_eq!(rd(&mut u, REG_IIR), IIR_NO_INT);
        // enabling ETBEI with THR empty raises THRE
        wr(&mut u, REG_IER, IER_ETBEI);
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR), IIR_THRE);
        // reading IIR cleared it
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR), IIR_NO_INT);
        // Linux's UART_BUG_THRE test: IER=0 then IER=THRI again → pending again
        wr(&mut u, REG_IER, 0);
        wr(&mut u, REG_IER, IER_ETBEI);
        assert_eq!(rd(&mut u, REG_IIR), IIR_THRE);
        // rewriting IER with ETBEI still set does not re-raise
        wr(&mut u, REG_IER, IER_ETBEI);
        assert_eq!(rd(&mut u, REG_IIR), IIR_NO_INT);
        // writing THR: the byte leaves at once, THR empty again → THRE pending
        wr(&mut u, REG_THR, b'x');
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR), IIR_THRE);
        // gated by OUT2
        wr(&mut u, REG_THR, b'y');
        wr(&mut u, REG_MCR, 0);
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR), IIR_THRE);
    }

    #[test]
    fn rx_fifo_and_trigger_levels() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_MCR, MCR_OUT2);
        wr(&mut u, REG_IER, IER_ERBFI);
        // non-FIFO mode: one byte
        assert_eq!(u.receive(b"abc"), 1);
        assert_eq!(rd(&mut u, REG_IIR), IIR_RDA);
        assert_eq!(rd(&mut u, REG_RBR), b'a');
        assert_eq!(rd(&mut u, REG_IIR), IIR_NO_INT);
        // FIFO with trigger 8
        wr(&mut u, REG_FCR, FCR_ENABLE | 0x80);
        assert_eq!(u.receive(b"1234"), 4);
        assert_eq!(rd(&mut u, REG_IIR), IIR_FIFO_ENABLED | IIR_CTI);
        assert_eq!(u.receive(b"5678"), 4);
        assert_eq!(rd(&mut u, REG_IIR), IIR_FIFO_ENABLED | IIR_RDA);
        assert_eq!(u.receive(&[0u8; 20]), 8);
        assert_eq!(u.rx_space(), 0);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut u, REG_RBR), b'1');
        // clear RX
        wr(&mut u, REG_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn loopback_and_overrun() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_MCR, MCR_LOOP);
        wr(&mut u, REG_FCR, FCR_ENABLE);
        assert_eq!(u.receive(b"x"), 0, "input disconnected in loopback");
        for i in 0..17u8 {
            wr(&mut u, REG_THR, i);
        }
        assert!(u.take_output().is_empty());
        wr(&mut u, REG_IER, IER_ELSI);
        assert_eq!(rd(&mut u, REG_IIR) & 0x0F, IIR_RLS);
        let lsr = rd(&mut u, REG_LSR);
        assert_eq!(lsr & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_OE, 0, "OE clears on read");
        for i in 0..16u8 {
            assert_eq!(rd(&mut u, REG_RBR), i);
        }
    }

    #[test]
    fn msr_deltas_and_interrupt() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_MCR, MCR_LOOP);
        rd(&mut u, REG_MSR); // clear deltas from entering loopback
        wr(&mut u, REG_MCR, MCR_LOOP | MCR_RTS | MCR_OUT1);
        wr(&mut u, REG_IER, IER_EDSSI);
        assert_eq!(rd(&mut u, REG_IIR), IIR_MSI);
        wr(&mut u, REG_MCR, MCR_LOOP | MCR_RTS);
        let msr = rd(&mut u, REG_MSR);
        assert_eq!(msr & MSR_DELTAS, MSR_DCTS | MSR_TERI);
        assert_eq!(msr & 0xF0, MSR_CTS);
        assert_eq!(rd(&mut u, REG_MSR) & MSR_DELTAS, 0);
        assert_eq!(rd(&mut u, REG_IIR), IIR_NO_INT);
    }

    #[test]
    fn priority_order() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_MCR, MCR_LOOP);
        wr(&mut u, REG_THR, 1);
        wr(&mut u, REG_THR, 2); // overrun in non-FIFO mode
        wr(&mut u, REG_IER, 0x0F);
        assert_eq!(rd(&mut u, REG_IIR), IIR_RLS);
        rd(&mut u, REG_LSR);
        assert_eq!(rd(&mut u, REG_IIR), IIR_RDA);
        rd(&mut u, REG_RBR);
        assert_eq!(rd(&mut u, REG_IIR), IIR_THRE);
        assert_eq!(rd(&mut u, REG_IIR), IIR_MSI);
        rd(&mut u, REG_MSR);
        assert_eq!(rd(&mut u, REG_IIR), IIR_NO_INT);
    }

    #[test]
    fn scratch_and_unmapped() {
        let mut u = Uart16550::default();
        wr(&mut u, REG_SCR, 0x5A);
        assert_eq!(rd(&mut u, REG_SCR), 0x5A);
        assert_eq!(u.pio_read(0x2F8, 1), 0xFF);
    }
}
