//! The 8254 programmable interval timer (Intel 8254 datasheet) at ports 0x40-0x43, clocked at
//! 1.193182 MHz, plus PC system control port B (0x61), which gates channel 2 and reads back
//! its output (OUT2) — Linux calibrates the TSC by polling channel 2 through 0x42/0x61.
//!
//! Counters are computed from the machine's virtual clock: elapsed input clocks are
//! `floor((now_ns - start_ns) * 1193182 / 1e9)`, so reads follow `now_ns` exactly.
//! All six modes are modelled (0, 2, 3 exactly; 1 and 5 wait for a gate rising edge; 4 pulses
//! once). The BCD flag is accepted and reported in the status byte, but counting is binary.
//!
//! Channel 0 drives IRQ 0. Its output pulses are shorter than any sensible poll interval, so
//! the machine asks for rising edges instead of a level: [`Pit::irq0_edges`] returns the number
//! of OUT0 rising edges since the previous call (pulse IRQ 0 once if it is non-zero), and
//! [`Pit::next_deadline_ns`] tells when the next one happens (to wake an idle CPU).

/// Input clock in Hz.
pub const PIT_FREQ_HZ: u64 = 1_193_182;
/// Channel 0 counter port.
pub const PORT_CH0: u16 = 0x40;
/// Channel 1 counter port.
pub const PORT_CH1: u16 = 0x41;
/// Channel 2 counter port.
pub const PORT_CH2: u16 = 0x42;
/// Mode/command register (write only).
pub const PORT_CMD: u16 = 0x43;
/// System control port B: gate 2, speaker, refresh toggle, OUT2.
pub const PORT_61: u16 = 0x61;
/// ISA IRQ driven by channel 0.
pub const PIT_IRQ: u8 = 0;

/// Command: select-counter field (bits 7:6), 3 = read-back.
pub const CMD_SC_SHIFT: u8 = 6;
/// Command: read/write field (bits 5:4): 0 latch, 1 LSB, 2 MSB, 3 LSB then MSB.
pub const CMD_RW_SHIFT: u8 = 4;
/// Command: BCD counting.
pub const CMD_BCD: u8 = 0x01;
/// Read-back: don't latch count (active low).
pub const RB_NO_COUNT: u8 = 0x20;
/// Read-back: don't latch status (active low).
pub const RB_NO_STATUS: u8 = 0x10;
/// Status byte: OUT pin state.
pub const STATUS_OUT: u8 = 0x80;
/// Status byte: null count (count written but not yet loaded).
pub const STATUS_NULL_COUNT: u8 = 0x40;

/// Port 0x61: timer 2 gate.
pub const P61_GATE2: u8 = 0x01;
/// Port 0x61: speaker data enable.
pub const P61_SPEAKER: u8 = 0x02;
/// Port 0x61: parity/channel check disables (read back as written).
pub const P61_CHECKS: u8 = 0x0C;
/// Port 0x61: DRAM refresh toggle (flips every 15.085 µs).
pub const P61_REFRESH: u8 = 0x10;
/// Port 0x61: timer 2 output.
pub const P61_OUT2: u8 = 0x20;
/// Refresh toggle half-period in ns.
pub const REFRESH_PERIOD_NS: u64 = 15_085;

const NS_PER_SEC: u128 = 1_000_000_000;

fn ns_to_ticks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_FREQ_HZ) / NS_PER_SEC) as u64
}

/// The smallest ns offset whose tick count reaches `ticks`.
fn ticks_to_ns_ceil(ticks: u64) -> u64 {
    let n = u128::from(ticks) * NS_PER_SEC;
    let f = u128::from(PIT_FREQ_HZ);
    n.div_ceil(f).min(u128::from(u64::MAX)) as u64
}

/// One counter's registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PitChannel {
    pub mode: u8,
    /// Access mode: 1 LSB, 2 MSB, 3 LSB then MSB.
    pub rw: u8,
    pub bcd: bool,
    /// Reload value, 1..=0x10000.
    pub count: u32,
    pub gate: bool,
    /// Counting has started (count loaded; for modes 1/5, triggered).
    pub running: bool,
    /// Counting resumed at this time (None = stopped/paused).
    pub start_ns: Option<u64>,
    /// Elapsed clocks accumulated before `start_ns`.
    pub base_ticks: u64,
    /// Counter value shown while not running.
    pub hold: u16,
    pub null_count: bool,
    /// Latched count and bytes left to read.
    pub latch: Option<(u16, u8)>,
    pub status_latch: Option<u8>,
    pub read_msb_next: bool,
    pub write_msb_next: bool,
    pub write_lsb: u8,
    /// Elapsed clocks already accounted for by the edge counter.
    pub edges_seen: u64,
    /// Rising edges counted but not yet taken.
    pub pending_edges: u32,
}

impl PitChannel {
    fn new(gate: bool, now_ns: u64) -> Self {
        // The state a PC BIOS leaves: mode 3, count 65536, loaded at power-on.
        PitChannel {
            mode: 3,
            rw: 3,
            bcd: false,
            count: 0x10000,
            gate,
            running: true,
            start_ns: gate.then_some(now_ns),
            base_ticks: 0,
            hold: 0,
            null_count: false,
            latch: None,
            status_latch: None,
            read_msb_next: false,
            write_msb_next: false,
            write_lsb: 0,
            edges_seen: 0,
            pending_edges: 0,
        }
    }

    fn elapsed(&self, now_ns: u64) -> u64 {
        self.base_ticks
            + self
                .start_ns
                .map_or(0, |s| ns_to_ticks(now_ns.saturating_sub(s)))
    }

    fn counter(&self, now_ns: u64) -> u16 {
        if !self.running {
            return self.hold;
        }
        let d = self.elapsed(now_ns);
        let c = u64::from(self.count);
        let v = match self.mode {
            2 => c - d % c,
            3 => c - (2 * d) % c,
            _ => c.wrapping_sub(d),
        };
        v as u16
    }

    fn out(&self, now_ns: u64) -> bool {
        if !self.running {
            return self.mode != 0;
        }
        if matches!(self.mode, 2 | 3) && !self.gate {
            return true;
        }
        let d = self.elapsed(now_ns);
        let c = u64::from(self.count);
        match self.mode {
            0 | 1 => d >= c,
            2 => d % c != c - 1,
            3 => d % c < c.div_ceil(2),
            _ => d != c,
        }
    }

    /// Elapsed-clock value of the first OUT rising edge strictly after `d`.
    fn next_edge_after(&self, d: u64) -> Option<u64> {
        let c = u64::from(self.count);
        match self.mode {
            2 | 3 => Some((d / c + 1) * c),
            0 | 1 => (d < c).then_some(c),
            _ => (d < c + 1).then_some(c + 1),
        }
    }

    /// Count the rising edges between the last accounting point and `now_ns`.
    fn account(&mut self, now_ns: u64) {
        if !self.running || self.start_ns.is_none() {
            return;
        }
        let d = self.elapsed(now_ns);
        let a = self.edges_seen;
        if d <= a {
            return;
        }
        let c = u64::from(self.count);
        let n = match self.mode {
            2 | 3 => d / c - a / c,
            0 | 1 => u64::from(a < c && c <= d),
            _ => u64::from(a <= c && c < d),
        };
        self.pending_edges = self
            .pending_edges
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.edges_seen = d;
    }

    fn status(&self, now_ns: u64) -> u8 {
        let mut s = (self.rw << 4) | (self.mode << 1) | u8::from(self.bcd);
        if self.out(now_ns) {
            s |= STATUS_OUT;
        }
        if self.null_count {
            s |= STATUS_NULL_COUNT;
        }
        s
    }

    fn latch_count(&mut self, now_ns: u64) {
        if self.latch.is_none() {
            let bytes = if self.rw == 3 { 2 } else { 1 };
            self.latch = Some((self.counter(now_ns), bytes));
        }
    }

    fn start(&mut self, now_ns: u64) {
        self.running = true;
        self.base_ticks = 0;
        self.edges_seen = 0;
        self.start_ns = Some(now_ns);
    }

    fn load(&mut self, now_ns: u64, value: u16) {
        self.account(now_ns);
        self.count = if value == 0 {
            0x10000
        } else {
            u32::from(value)
        };
        self.null_count = false;
        if matches!(self.mode, 1 | 5) {
            // Wait for a gate rising edge.
            if !self.running {
                self.hold = value;
            }
            return;
        }
        self.start(now_ns);
        if !self.gate {
            self.start_ns = None;
            self.hold = value;
        }
    }

    fn set_gate(&mut self, now_ns: u64, gate: bool) {
        if gate == self.gate {
            return;
        }
        self.account(now_ns);
        self.gate = gate;
        match (self.mode, gate) {
            (1 | 5, true) => {
                if !self.null_count {
                    self.start(now_ns);
                }
            }
            (1 | 5, false) => {}
            (2 | 3, true) => {
                if self.running {
                    self.start(now_ns);
                }
            }
            (_, false) => {
                if self.running {
                    self.base_ticks = self.elapsed(now_ns);
                    self.start_ns = None;
                }
            }
            (_, true) => {
                if self.running {
                    self.start_ns = Some(now_ns);
                }
            }
        }
    }

    fn set_mode(&mut self, now_ns: u64, cmd: u8) {
        self.account(now_ns);
        let hold = self.counter(now_ns);
        self.rw = (cmd >> CMD_RW_SHIFT) & 3;
        let mode = (cmd >> 1) & 7;
        self.mode = if mode > 5 { mode - 4 } else { mode };
        self.bcd = cmd & CMD_BCD != 0;
        self.running = false;
        self.start_ns = None;
        self.base_ticks = 0;
        self.hold = hold;
        self.null_count = true;
        self.latch = None;
        self.status_latch = None;
        self.read_msb_next = false;
        self.write_msb_next = false;
    }

    fn read(&mut self, now_ns: u64) -> u8 {
        if let Some(s) = self.status_latch.take() {
            return s;
        }
        if let Some((v, left)) = self.latch {
            let b = match (self.rw, left) {
                (2, _) => (v >> 8) as u8,
                (3, 1) => (v >> 8) as u8,
                _ => v as u8,
            };
            self.latch = (left > 1).then_some((v, left - 1));
            return b;
        }
        let v = self.counter(now_ns);
        match self.rw {
            1 => v as u8,
            2 => (v >> 8) as u8,
            _ => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    v as u8
                } else {
                    (v >> 8) as u8
                }
            }
        }
    }

    fn write(&mut self, now_ns: u64, value: u8) {
        match self.rw {
            1 => self.load(now_ns, u16::from(value)),
            2 => self.load(now_ns, u16::from(value) << 8),
            _ => {
                if self.write_msb_next {
                    self.write_msb_next = false;
                    self.load(now_ns, u16::from(self.write_lsb) | (u16::from(value) << 8));
                } else {
                    self.write_lsb = value;
                    self.write_msb_next = true;
                    if self.mode == 0 {
                        // Mode 0: writing the first byte stops the count.
                        self.account(now_ns);
                        self.hold = self.counter(now_ns);
                        self.running = false;
                        self.start_ns = None;
                    }
                }
            }
        }
    }
}

/// Everything of the PIT a snapshot needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PitState {
    pub channels: [PitChannel; 3],
    /// Port 0x61 bits 1-3 as written.
    pub port61: u8,
}

/// The 8254 with port 0x61.
#[derive(Debug, Clone)]
pub struct Pit {
    channels: [PitChannel; 3],
    /// Port 0x61 bits 1-3 as written.
    port61: u8,
}

impl Pit {
    /// A PIT in the state a BIOS leaves it at `now_ns`: every channel in mode 3 with count
    /// 65536, channel 2's gate low.
    pub fn new(now_ns: u64) -> Self {
        Pit {
            channels: [
                PitChannel::new(true, now_ns),
                PitChannel::new(true, now_ns),
                PitChannel::new(false, now_ns),
            ],
            port61: 0,
        }
    }

    /// The registers, for a snapshot.
    pub fn state(&self) -> PitState {
        PitState {
            channels: self.channels.clone(),
            port61: self.port61,
        }
    }

    /// A PIT with a saved `state`.
    pub fn from_state(state: PitState) -> Self {
        Pit {
            channels: state.channels,
            port61: state.port61 & 0x0e,
        }
    }

    /// Whether `port` belongs to this device (0x40-0x43, 0x61).
    pub fn handles(port: u16) -> bool {
        matches!(port, PORT_CH0..=PORT_CMD | PORT_61)
    }

    /// A channel's registers, for inspection.
    pub fn channel(&self, index: usize) -> &PitChannel {
        &self.channels[index.min(2)]
    }

    /// Current counter value of channel `ch` (0..=2).
    pub fn counter(&self, now_ns: u64, ch: usize) -> u16 {
        self.channels[ch.min(2)].counter(now_ns)
    }

    /// Current OUT pin of channel `ch` (0..=2).
    pub fn out(&self, now_ns: u64, ch: usize) -> bool {
        self.channels[ch.min(2)].out(now_ns)
    }

    /// Read one byte at `port`.
    pub fn pio_read(&mut self, now_ns: u64, port: u16) -> u8 {
        match port {
            PORT_CH0..=PORT_CH2 => self.channels[usize::from(port - PORT_CH0)].read(now_ns),
            PORT_61 => {
                let ch2 = &self.channels[2];
                let mut v = self.port61 & (P61_SPEAKER | P61_CHECKS);
                if ch2.gate {
                    v |= P61_GATE2;
                }
                if (now_ns / REFRESH_PERIOD_NS) & 1 != 0 {
                    v |= P61_REFRESH;
                }
                if ch2.out(now_ns) {
                    v |= P61_OUT2;
                }
                v
            }
            _ => 0xFF, // 0x43 is write-only
        }
    }

    /// Write one byte at `port`.
    pub fn pio_write(&mut self, now_ns: u64, port: u16, value: u8) {
        match port {
            PORT_CH0..=PORT_CH2 => {
                self.channels[usize::from(port - PORT_CH0)].write(now_ns, value);
            }
            PORT_CMD => {
                let sc = value >> CMD_SC_SHIFT;
                if sc == 3 {
                    for (i, ch) in self.channels.iter_mut().enumerate() {
                        if value & (2 << i) == 0 {
                            continue;
                        }
                        if value & RB_NO_COUNT == 0 {
                            ch.latch_count(now_ns);
                        }
                        if value & RB_NO_STATUS == 0 && ch.status_latch.is_none() {
                            ch.status_latch = Some(ch.status(now_ns));
                        }
                    }
                } else {
                    let ch = &mut self.channels[usize::from(sc)];
                    if (value >> CMD_RW_SHIFT) & 3 == 0 {
                        ch.latch_count(now_ns);
                    } else {
                        ch.set_mode(now_ns, value);
                    }
                }
            }
            PORT_61 => {
                self.port61 = value & (P61_SPEAKER | P61_CHECKS);
                self.channels[2].set_gate(now_ns, value & P61_GATE2 != 0);
            }
            _ => {}
        }
    }

    /// Number of OUT0 rising edges since the previous call (saturating). Pulse IRQ 0 if > 0.
    pub fn irq0_edges(&mut self, now_ns: u64) -> u32 {
        let ch = &mut self.channels[0];
        ch.account(now_ns);
        std::mem::take(&mut ch.pending_edges)
    }

    /// The virtual time of the next OUT0 rising edge at or after `now_ns` (`now_ns` itself if
    /// edges are waiting to be taken), or None if channel 0 will not raise IRQ 0 again.
    pub fn next_deadline_ns(&self, now_ns: u64) -> Option<u64> {
        let ch = &self.channels[0];
        if ch.pending_edges > 0 {
            return Some(now_ns);
        }
        let start = ch.start_ns?;
        if !ch.running {
            return None;
        }
        let d = ch.elapsed(now_ns).max(ch.edges_seen);
        let next = ch.next_edge_after(d)?;
        let ticks = next.checked_sub(ch.base_ticks)?;
        Some(start.saturating_add(ticks_to_ns_ceil(ticks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks_ns(t: u64) -> u64 {
        ticks_to_ns_ceil(t)
    }

    #[test]
    fn mode0_channel2_tsc_calibration() {
        // Linux's pit_calibrate_tsc: gate high, speaker off, mode 0, latch = 11932 (10 ms).
        let mut p = Pit::new(0);
        let t0 = 1_000_000;
        let v = p.pio_read(t0, PORT_61);
        p.pio_write(t0, PORT_61, (v & !P61_SPEAKER) | P61_GATE2);
        p.pio_write(t0, PORT_CMD, 0xB0);
        p.pio_write(t0, PORT_CH2, (11932 & 0xFF) as u8);
        assert_eq!(
            p.pio_read(t0, PORT_61) & P61_OUT2,
            0,
            "mode 0: OUT low after write"
        );
        p.pio_write(t0, PORT_CH2, (11932 >> 8) as u8);
        assert_eq!(p.pio_read(t0 + 9_000_000, PORT_61) & P61_OUT2, 0);
        let tc = t0 + ticks_ns(11932);
        assert_eq!(p.pio_read(tc - 1, PORT_61) & P61_OUT2, 0);
        assert_eq!(p.pio_read(tc, PORT_61) & P61_OUT2, P61_OUT2);
    }

    #[test]
    fn quick_calibrate_msb_reads_follow_time() {
        let mut p = Pit::new(0);
        p.pio_write(0, PORT_61, P61_GATE2);
        p.pio_write(0, PORT_CMD, 0xB0);
        p.pio_write(0, PORT_CH2, 0xFF);
        p.pio_write(0, PORT_CH2, 0xFF);
        for k in [0u64, 1, 255, 256, 1000, 40000] {
            let t = ticks_ns(k);
            let lo = p.pio_read(t, PORT_CH2);
            let hi = p.pio_read(t, PORT_CH2);
            assert_eq!(
                u16::from(lo) | (u16::from(hi) << 8),
                0xFFFF - k as u16,
                "k={k}"
            );
        }
    }

    #[test]
    fn mode2_periodic_edges_and_deadline() {
        let mut p = Pit::new(0);
        p.pio_write(0, PORT_CMD, 0x34); // ch0, lo/hi, mode 2
        p.pio_write(0, PORT_CH0, (1193 & 0xFF) as u8);
        p.pio_write(0, PORT_CH0, (1193 >> 8) as u8);
        assert_eq!(p.irq0_edges(0), 0);
        let first = p.next_deadline_ns(0).unwrap();
        assert_eq!(first, ticks_ns(1193));
        assert_eq!(p.irq0_edges(first - 1), 0);
        assert_eq!(p.irq0_edges(first), 1);
        assert_eq!(p.next_deadline_ns(first), Some(ticks_ns(2 * 1193)));
        assert_eq!(p.irq0_edges(ticks_ns(10 * 1193)), 9);
        // OUT low only for the last clock before reload
        assert!(p.out(ticks_ns(1191), 0));
        assert!(!p.out(ticks_ns(1192), 0));
        assert!(p.out(ticks_ns(1193), 0));
        assert_eq!(p.counter(ticks_ns(1192), 0), 1);
    }

    #[test]
    fn mode3_square_wave() {
        let mut p = Pit::new(0);
        p.pio_write(0, PORT_CMD, 0x36);
        p.pio_write(0, PORT_CH0, 100);
        p.pio_write(0, PORT_CH0, 0);
        assert!(p.out(ticks_ns(49), 0));
        assert!(!p.out(ticks_ns(50), 0));
        assert_eq!(p.counter(ticks_ns(10), 0), 80);
        assert_eq!(p.irq0_edges(ticks_ns(350)), 3);
    }

    #[test]
    fn mode0_oneshot_single_edge() {
        let mut p = Pit::new(0);
        p.irq0_edges(0);
        p.pio_write(0, PORT_CMD, 0x30);
        p.pio_write(0, PORT_CH0, 10);
        p.pio_write(0, PORT_CH0, 0);
        assert_eq!(p.next_deadline_ns(0), Some(ticks_ns(10)));
        assert_eq!(p.irq0_edges(ticks_ns(1000)), 1);
        assert_eq!(p.next_deadline_ns(ticks_ns(1000)), None);
        assert_eq!(p.counter(ticks_ns(11), 0), 0xFFFF, "wraps after TC");
    }

    #[test]
    fn latch_and_readback() {
        let mut p = Pit::new(0);
        p.pio_write(0, PORT_CMD, 0x34);
        p.pio_write(0, PORT_CH0, 0x00);
        p.pio_write(0, PORT_CH0, 0x10); // 0x1000
        p.pio_write(ticks_ns(0x10), PORT_CMD, 0x00); // latch ch0
        let later = ticks_ns(0x300);
        assert_eq!(p.pio_read(later, PORT_CH0), 0xF0);
        assert_eq!(p.pio_read(later, PORT_CH0), 0x0F);
        // read-back status + count of ch0
        p.pio_write(later, PORT_CMD, 0xC2);
        let st = p.pio_read(later, PORT_CH0);
        assert_eq!(st & 0x3F, 0x34);
        assert_eq!(st & STATUS_OUT, STATUS_OUT);
        assert_eq!(p.pio_read(later, PORT_CH0), 0x00);
        assert_eq!(p.pio_read(later, PORT_CH0), 0x0D);
        // status of a freshly programmed channel shows null count
        p.pio_write(later, PORT_CMD, 0x90); // ch2 LSB mode 0
        p.pio_write(later, PORT_CMD, 0xE8); // read-back status ch2
        assert_eq!(p.pio_read(later, PORT_CH2), 0x10 | STATUS_NULL_COUNT);
    }

    #[test]
    fn gate_pauses_mode0_and_restarts_mode2() {
        let mut p = Pit::new(0);
        p.pio_write(0, PORT_61, P61_GATE2);
        p.pio_write(0, PORT_CMD, 0x90); // ch2, LSB, mode 0
        p.pio_write(0, PORT_CH2, 200);
        p.pio_write(ticks_ns(50), PORT_61, 0);
        assert_eq!(p.counter(ticks_ns(120), 2), 150);
        p.pio_write(ticks_ns(120), PORT_61, P61_GATE2);
        assert_eq!(p.counter(ticks_ns(120) + ticks_ns(10), 2), 140);
        p.pio_write(0, PORT_CMD, 0x94); // mode 2
        p.pio_write(0, PORT_CH2, 100);
        p.pio_write(ticks_ns(1000), PORT_61, 0);
        assert!(p.out(ticks_ns(1099), 2), "gate low forces OUT high");
        p.pio_write(ticks_ns(2000), PORT_61, P61_GATE2);
        assert_eq!(p.counter(ticks_ns(2000) + ticks_ns(30), 2), 70);
    }

    #[test]
    fn mode1_waits_for_trigger() {
        let mut p = Pit::new(0);
        p.pio_write(0, PORT_CMD, 0x92); // ch2 LSB mode 1
        p.pio_write(0, PORT_CH2, 50);
        assert!(p.out(1_000_000, 2));
        p.pio_write(1_000_000, PORT_61, P61_GATE2);
        assert!(!p.out(1_000_000 + ticks_ns(49), 2));
        assert!(p.out(1_000_000 + ticks_ns(50), 2));
    }

    #[test]
    fn refresh_toggle() {
        let mut p = Pit::new(0);
        let a = p.pio_read(0, PORT_61) & P61_REFRESH;
        let b = p.pio_read(REFRESH_PERIOD_NS, PORT_61) & P61_REFRESH;
        assert_ne!(a, b);
    }

    #[test]
    fn bios_default_runs_at_18hz() {
        let mut p = Pit::new(0);
        assert_eq!(p.irq0_edges(1_000_000_000), 18);
    }

    #[test]
    fn garbage_never_panics() {
        let mut p = Pit::new(0);
        let mut x: u64 = 7;
        let mut t = 0u64;
        for _ in 0..50000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += (x >> 50) % 5000;
            let port = [0x40, 0x41, 0x42, 0x43, 0x61][(x >> 20) as usize % 5];
            if x & 1 == 0 {
                p.pio_write(t, port, (x >> 32) as u8);
            } else {
                p.pio_read(t, port);
            }
            p.irq0_edges(t);
            if let Some(d) = p.next_deadline_ns(t) {
                assert!(d >= t);
            }
        }
    }
}
