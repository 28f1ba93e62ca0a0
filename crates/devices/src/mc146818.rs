//! MC146818 CMOS real-time clock (Motorola MC146818A / Dallas DS12887 datasheets): index port
//! 0x70 (bit 7 = NMI disable, ignored for the index), data port 0x71, IRQ 8.
//!
//! Time is `epoch_secs` (Unix seconds given at construction) plus the machine's virtual time
//! `now_ns`; a deterministic machine passes a fixed epoch. Guest writes to the time registers
//! move the clock (keeping its sub-second phase); while register B's SET bit is on, updates are
//! frozen and the registers hold what the guest writes, and clearing SET restarts the clock from
//! them. The weekday is derived from the date (a written weekday is kept as an offset).
//!
//! Interrupt flags (register C: PF, AF, UF, IRQF) are brought up to date from virtual time on
//! every port access and by [`Rtc::update`]; the machine calls `update(now_ns)` then
//! [`Rtc::irq_level`], and [`Rtc::next_deadline_ns`] says when the next enabled event is due.

/// Index port.
pub const PORT_INDEX: u16 = 0x70;
/// Data port.
pub const PORT_DATA: u16 = 0x71;
/// ISA IRQ line of the RTC.
pub const RTC_IRQ: u8 = 8;

/// Seconds.
pub const REG_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const REG_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const REG_MINUTES_ALARM: u8 = 0x03;
/// Hours (bit 7 = PM in 12-hour mode).
pub const REG_HOURS: u8 = 0x04;
/// Hours alarm.
pub const REG_HOURS_ALARM: u8 = 0x05;
/// Day of week, 1 = Sunday.
pub const REG_WEEKDAY: u8 = 0x06;
/// Day of month.
pub const REG_DAY: u8 = 0x07;
/// Month.
pub const REG_MONTH: u8 = 0x08;
/// Year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Status A: UIP, divider, rate select.
pub const REG_A: u8 = 0x0A;
/// Status B: SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE.
pub const REG_B: u8 = 0x0B;
/// Status C: IRQF, PF, AF, UF (read-only, cleared on read).
pub const REG_C: u8 = 0x0C;
/// Status D: VRT.
pub const REG_D: u8 = 0x0D;
/// Century (IBM PC convention).
pub const REG_CENTURY: u8 = 0x32;

/// A: update in progress.
pub const A_UIP: u8 = 0x80;
/// A: divider field (bits 6:4); 010 = 32.768 kHz time base running.
pub const A_DV_MASK: u8 = 0x70;
/// A: rate select field.
pub const A_RS_MASK: u8 = 0x0F;
/// B: halt updates to set the time.
pub const B_SET: u8 = 0x80;
/// B: periodic interrupt enable.
pub const B_PIE: u8 = 0x40;
/// B: alarm interrupt enable.
pub const B_AIE: u8 = 0x20;
/// B: update-ended interrupt enable.
pub const B_UIE: u8 = 0x10;
/// B: binary (1) or BCD (0) data mode.
pub const B_DM_BINARY: u8 = 0x04;
/// B: 24-hour mode.
pub const B_24H: u8 = 0x02;
/// C: interrupt request flag.
pub const C_IRQF: u8 = 0x80;
/// C: periodic interrupt flag.
pub const C_PF: u8 = 0x40;
/// C: alarm flag.
pub const C_AF: u8 = 0x20;
/// C: update-ended flag.
pub const C_UF: u8 = 0x10;
/// D: valid RAM and time.
pub const D_VRT: u8 = 0x80;

/// UIP is set during the last 244 µs of each second.
pub const UIP_WINDOW_NS: u64 = 244_000;
const NS_PER_SEC: u64 = 1_000_000_000;
const TIMEBASE_HZ: u64 = 32_768;

/// A broken-down date and time (proleptic Gregorian, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: i64,
    /// 1..=31
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    /// 0 = Sunday.
    pub weekday: i64,
}

/// Days since 1970-01-01 of a civil date (month and day may be out of range; they carry).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Shift the year to start in March so the leap day is the last day of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9).rem_euclid(12); // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl DateTime {
    /// From Unix seconds.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            weekday: (days + 4).rem_euclid(7),
        }
    }

    /// To Unix seconds (out-of-range fields carry over).
    pub fn to_unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second
    }
}

/// Everything of the RTC a snapshot needs (the fields of [`Rtc`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RtcState {
    pub index: u8,
    #[serde(with = "serde_big_array::BigArray")]
    pub cmos: [u8; 128],
    pub flags: u8,
    pub base_secs: i64,
    pub base_ns: u64,
    pub frozen: Option<DateTime>,
    pub weekday_offset: i64,
    pub last_ns: u64,
}

/// The RTC.
#[derive(Debug, Clone)]
pub struct Rtc {
    index: u8,
    /// Registers A, B, D, alarms and the RAM; time registers and C are computed.
    cmos: [u8; 128],
    flags: u8,
    /// Clock: `base_secs` at virtual time `base_ns`.
    base_secs: i64,
    base_ns: u64,
    /// Registers held while B.SET is on.
    frozen: Option<DateTime>,
    weekday_offset: i64,
    last_ns: u64,
}

fn to_bcd(v: i64) -> u8 {
    let v = v.rem_euclid(100) as u8;
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> i64 {
    i64::from(v >> 4) * 10 + i64::from(v & 0x0F)
}

impl Rtc {
    /// An RTC showing `epoch_secs` (Unix time) at virtual time 0: 24-hour BCD mode, 32.768 kHz
    /// time base, 1024 Hz rate selected, no interrupts enabled.
    pub fn new(epoch_secs: i64) -> Self {
        let mut cmos = [0u8; 128];
        cmos[usize::from(REG_A)] = 0x26;
        cmos[usize::from(REG_B)] = B_24H;
        cmos[usize::from(REG_D)] = D_VRT;
        Rtc {
            index: 0,
            cmos,
            flags: 0,
            base_secs: epoch_secs,
            base_ns: 0,
            frozen: None,
            weekday_offset: 0,
            last_ns: 0,
        }
    }

    /// The registers and clock, for a snapshot.
    pub fn state(&self) -> RtcState {
        RtcState {
            index: self.index,
            cmos: self.cmos,
            flags: self.flags,
            base_secs: self.base_secs,
            base_ns: self.base_ns,
            frozen: self.frozen,
            weekday_offset: self.weekday_offset,
            last_ns: self.last_ns,
        }
    }

    /// An RTC with a saved `state`.
    pub fn from_state(s: RtcState) -> Self {
        Rtc {
            index: s.index & 0x7f,
            cmos: s.cmos,
            flags: s.flags,
            base_secs: s.base_secs,
            base_ns: s.base_ns,
            frozen: s.frozen,
            weekday_offset: s.weekday_offset,
            last_ns: s.last_ns,
        }
    }

    /// Set a CMOS RAM byte (firmware-provided data such as memory sizes). Clock registers are
    /// not affected (indexes 0x00-0x0D are ignored).
    pub fn set_cmos(&mut self, index: u8, value: u8) {
        if (0x0E..0x80).contains(&index) {
            self.cmos[usize::from(index)] = value;
        }
    }

    fn secs_at(&self, now_ns: u64) -> i64 {
        self.base_secs + (now_ns.saturating_sub(self.base_ns) / NS_PER_SEC) as i64
    }

    fn b(&self) -> u8 {
        self.cmos[usize::from(REG_B)]
    }

    /// The current date and time shown by the registers.
    pub fn now(&self, now_ns: u64) -> DateTime {
        let mut dt = self
            .frozen
            .unwrap_or_else(|| DateTime::from_unix(self.secs_at(now_ns)));
        dt.weekday = (dt.weekday + self.weekday_offset).rem_euclid(7);
        dt
    }

    fn encode(&self, v: i64) -> u8 {
        if self.b() & B_DM_BINARY != 0 {
            v.rem_euclid(256) as u8
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> i64 {
        if self.b() & B_DM_BINARY != 0 {
            i64::from(v)
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, hour: i64) -> u8 {
        if self.b() & B_24H != 0 {
            self.encode(hour)
        } else {
            let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
            self.encode(h12) | if hour >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, v: u8) -> i64 {
        if self.b() & B_24H != 0 {
            self.decode(v)
        } else {
            self.decode(v & 0x7F) % 12 + if v & 0x80 != 0 { 12 } else { 0 }
        }
    }

    fn time_reg(&self, dt: &DateTime, reg: u8) -> u8 {
        match reg {
            REG_SECONDS => self.encode(dt.second),
            REG_MINUTES => self.encode(dt.minute),
            REG_HOURS => self.encode_hour(dt.hour),
            REG_WEEKDAY => self.encode(dt.weekday + 1),
            REG_DAY => self.encode(dt.day),
            REG_MONTH => self.encode(dt.month),
            REG_YEAR => self.encode(dt.year.rem_euclid(100)),
            _ => self.encode(dt.year.div_euclid(100)),
        }
    }

    /// Make the clock show `dt` from `now_ns` on, keeping the sub-second phase if `keep_phase`.
    fn set_clock(&mut self, now_ns: u64, dt: DateTime, keep_phase: bool) {
        let phase = if keep_phase {
            now_ns.saturating_sub(self.base_ns) % NS_PER_SEC
        } else {
            0
        };
        self.base_secs = dt.to_unix();
        self.base_ns = now_ns - phase;
        self.weekday_offset = 0;
    }

    fn write_time_reg(&mut self, now_ns: u64, reg: u8, value: u8) {
        let mut dt = self.now(now_ns);
        let shown_weekday = dt.weekday;
        match reg {
            REG_SECONDS => dt.second = self.decode(value & 0x7F),
            REG_MINUTES => dt.minute = self.decode(value),
            REG_HOURS => dt.hour = self.decode_hour(value),
            REG_DAY => dt.day = self.decode(value),
            REG_MONTH => dt.month = self.decode(value),
            REG_YEAR => dt.year = dt.year.div_euclid(100) * 100 + self.decode(value),
            REG_CENTURY => dt.year = self.decode(value) * 100 + dt.year.rem_euclid(100),
            _ => {
                // Weekday: an independent counter on the chip; keep it as an offset.
                let offset = self.decode(value) - 1 - (shown_weekday - self.weekday_offset);
                self.weekday_offset = offset.rem_euclid(7);
                return;
            }
        }
        let offset = self.weekday_offset;
        // Normalise (out-of-range values carry) and recompute the weekday from the date.
        let norm = DateTime::from_unix(dt.to_unix());
        if self.frozen.is_some() {
            self.frozen = Some(norm);
            self.weekday_offset = offset;
        } else {
            self.set_clock(now_ns, norm, true);
            self.weekday_offset = offset;
            self.last_ns = now_ns;
        }
    }

    fn periodic_ticks(&self) -> Option<u64> {
        let a = self.cmos[usize::from(REG_A)];
        let rs = a & A_RS_MASK;
        if rs == 0 || (a & A_DV_MASK) >> 4 >= 6 {
            return None;
        }
        Some(if rs <= 2 {
            1 << (rs + 6)
        } else {
            1 << (rs - 1)
        })
    }

    fn ticks32k(ns: u64) -> u64 {
        (u128::from(ns) * u128::from(TIMEBASE_HZ) / u128::from(NS_PER_SEC)) as u64
    }

    fn alarm_matches(&self, dt: &DateTime) -> bool {
        [
            (REG_SECONDS_ALARM, REG_SECONDS),
            (REG_MINUTES_ALARM, REG_MINUTES),
            (REG_HOURS_ALARM, REG_HOURS),
        ]
        .iter()
        .all(|&(alarm, reg)| {
            let a = self.cmos[usize::from(alarm)];
            a & 0xC0 == 0xC0 || a == self.time_reg(dt, reg)
        })
    }

    /// Bring the interrupt flags up to `now_ns`.
    pub fn update(&mut self, now_ns: u64) {
        let last = self.last_ns;
        if now_ns <= last {
            return;
        }
        if let Some(p) = self.periodic_ticks() {
            if Self::ticks32k(now_ns) / p > Self::ticks32k(last) / p {
                self.flags |= C_PF;
            }
        }
        if self.frozen.is_none() {
            let (s0, s1) = (self.secs_at(last), self.secs_at(now_ns));
            if s1 > s0 {
                self.flags |= C_UF;
                let first = s0.max(s1 - 86_400) + 1;
                if (first..=s1).any(|s| self.alarm_matches(&DateTime::from_unix(s))) {
                    self.flags |= C_AF;
                }
            }
        }
        self.last_ns = now_ns;
        if self.flags & self.b() & (C_PF | C_AF | C_UF) != 0 {
            self.flags |= C_IRQF;
        }
    }

    /// The IRQ 8 output (register C's IRQF) as of the last update.
    pub fn irq_level(&self) -> bool {
        self.flags & C_IRQF != 0
    }

    /// When the next enabled interrupt event (periodic, update-ended or alarm check) happens.
    pub fn next_deadline_ns(&self, now_ns: u64) -> Option<u64> {
        let b = self.b();
        let mut best: Option<u64> = None;
        if b & B_PIE != 0 {
            if let Some(p) = self.periodic_ticks() {
                let t = (Self::ticks32k(now_ns) / p + 1) * p;
                let ns = (u128::from(t) * u128::from(NS_PER_SEC)).div_ceil(u128::from(TIMEBASE_HZ));
                best = Some(ns.min(u128::from(u64::MAX)) as u64);
            }
        }
        if b & (B_UIE | B_AIE) != 0 && self.frozen.is_none() {
            let elapsed = now_ns.saturating_sub(self.base_ns);
            let next = self.base_ns + (elapsed / NS_PER_SEC + 1) * NS_PER_SEC;
            best = Some(best.map_or(next, |x| x.min(next)));
        }
        best
    }

    /// Read one byte at `port` (0x70 reads 0xFF: the index register is write-only).
    pub fn pio_read(&mut self, now_ns: u64, port: u16) -> u8 {
        if port != PORT_DATA {
            return 0xFF;
        }
        self.update(now_ns);
        let reg = self.index;
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                let dt = self.now(now_ns);
                self.time_reg(&dt, reg)
            }
            REG_A => {
                let mut a = self.cmos[usize::from(REG_A)] & !A_UIP;
                let sub = now_ns.saturating_sub(self.base_ns) % NS_PER_SEC;
                if self.frozen.is_none() && sub >= NS_PER_SEC - UIP_WINDOW_NS {
                    a |= A_UIP;
                }
                a
            }
            REG_C => std::mem::take(&mut self.flags),
            REG_D => D_VRT,
            _ => self.cmos[usize::from(reg & 0x7F)],
        }
    }

    /// Write one byte at `port`.
    pub fn pio_write(&mut self, now_ns: u64, port: u16, value: u8) {
        match port {
            PORT_INDEX => self.index = value & 0x7F,
            PORT_DATA => {
                self.update(now_ns);
                let reg = self.index;
                match reg {
                    REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
                    | REG_YEAR | REG_CENTURY => self.write_time_reg(now_ns, reg, value),
                    REG_A => self.cmos[usize::from(REG_A)] = value & !A_UIP,
                    REG_B => {
                        let old = self.b();
                        let mut new = value;
                        if new & B_SET != 0 {
                            new &= !B_UIE;
                            if old & B_SET == 0 {
                                let dt = self.now(now_ns);
                                let offset = self.weekday_offset;
                                self.frozen = Some(DateTime {
                                    weekday: (dt.weekday - offset).rem_euclid(7),
                                    ..dt
                                });
                            }
                        } else if let Some(dt) = self.frozen.take() {
                            let offset = self.weekday_offset;
                            self.set_clock(now_ns, dt, false);
                            self.weekday_offset = offset;
                        }
                        self.cmos[usize::from(REG_B)] = new;
                        // IRQF follows the new enables.
                        if self.flags & new & (C_PF | C_AF | C_UF) != 0 {
                            self.flags |= C_IRQF;
                        } else {
                            self.flags &= !C_IRQF;
                        }
                    }
                    REG_C | REG_D => {}
                    _ => self.cmos[usize::from(reg & 0x7F)] = value,
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(r: &mut Rtc, now: u64, reg: u8) -> u8 {
        r.pio_write(now, PORT_INDEX, 0x80 | reg); // NMI-disable bit ignored
        r.pio_read(now, PORT_DATA)
    }
    fn wr(r: &mut Rtc, now: u64, reg: u8, v: u8) {
        r.pio_write(now, PORT_INDEX, reg);
        r.pio_write(now, PORT_DATA, v);
    }

    #[test]
    fn date_conversion() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(
            civil_from_days(days_from_civil(2100, 3, 1) - 1),
            (2100, 2, 28)
        );
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        // 2024-02-29 12:34:56 UTC = 1709210096, a Thursday
        let dt = DateTime::from_unix(1_709_210_096);
        assert_eq!((dt.year, dt.month, dt.day), (2024, 2, 29));
        assert_eq!((dt.hour, dt.minute, dt.second, dt.weekday), (12, 34, 56, 4));
        assert_eq!(dt.to_unix(), 1_709_210_096);
    }

    #[test]
    fn reads_bcd_and_binary() {
        let mut r = Rtc::new(1_709_210_096);
        let t = 3 * NS_PER_SEC + 5;
        assert_eq!(rd(&mut r, t, REG_SECONDS), 0x59);
        assert_eq!(rd(&mut r, t, REG_MINUTES), 0x34);
        assert_eq!(rd(&mut r, t, REG_HOURS), 0x12);
        assert_eq!(rd(&mut r, t, REG_DAY), 0x29);
        assert_eq!(rd(&mut r, t, REG_MONTH), 0x02);
        assert_eq!(rd(&mut r, t, REG_YEAR), 0x24);
        assert_eq!(rd(&mut r, t, REG_CENTURY), 0x20);
        assert_eq!(rd(&mut r, t, REG_WEEKDAY), 5);
        assert_eq!(rd(&mut r, t, REG_D), D_VRT);
        wr(&mut r, t, REG_B, B_DM_BINARY); // binary, 12-hour
        assert_eq!(rd(&mut r, t, REG_SECONDS), 59);
        assert_eq!(rd(&mut r, t, REG_HOURS), 0x80 | 12);
        assert_eq!(rd(&mut r, 5 * NS_PER_SEC, REG_MINUTES), 35);
    }

    #[test]
    fn uip_window() {
        let mut r = Rtc::new(0);
        assert_eq!(rd(&mut r, 500_000_000, REG_A), 0x26);
        assert_eq!(rd(&mut r, NS_PER_SEC - 100_000, REG_A), 0x26 | A_UIP);
        assert_eq!(rd(&mut r, NS_PER_SEC, REG_A), 0x26);
    }

    #[test]
    fn set_time_with_set_bit() {
        let mut r = Rtc::new(0);
        let t = 10 * NS_PER_SEC + 300;
        wr(&mut r, t, REG_B, B_SET | B_24H);
        wr(&mut r, t, REG_YEAR, 0x99);
        wr(&mut r, t, REG_CENTURY, 0x19);
        wr(&mut r, t, REG_MONTH, 0x12);
        wr(&mut r, t, REG_DAY, 0x31);
        wr(&mut r, t, REG_HOURS, 0x23);
        wr(&mut r, t, REG_MINUTES, 0x59);
        wr(&mut r, t, REG_SECONDS, 0x58);
        // frozen while SET
        assert_eq!(rd(&mut r, t + 5 * NS_PER_SEC, REG_SECONDS), 0x58);
        let t2 = t + 5 * NS_PER_SEC;
        wr(&mut r, t2, REG_B, B_24H);
        assert_eq!(rd(&mut r, t2 + 2 * NS_PER_SEC, REG_SECONDS), 0x00);
        assert_eq!(rd(&mut r, t2 + 2 * NS_PER_SEC, REG_YEAR), 0x00);
        assert_eq!(rd(&mut r, t2 + 2 * NS_PER_SEC, REG_CENTURY), 0x20);
        assert_eq!(rd(&mut r, t2 + 2 * NS_PER_SEC, REG_MONTH), 0x01);
        // 2000-01-01 is a Saturday
        assert_eq!(rd(&mut r, t2 + 2 * NS_PER_SEC, REG_WEEKDAY), 7);
    }

    #[test]
    fn periodic_interrupt_and_reg_c() {
        let mut r = Rtc::new(0);
        wr(&mut r, 0, REG_A, 0x26); // 1024 Hz
        wr(&mut r, 0, REG_B, B_24H | B_PIE);
        let d = r.next_deadline_ns(0).unwrap();
        assert_eq!(d, 976_563);
        r.update(d - 1);
        assert!(!r.irq_level());
        r.update(d);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, d, REG_C), C_IRQF | C_PF);
        assert!(!r.irq_level());
        assert_eq!(rd(&mut r, d, REG_C), 0);
    }

    #[test]
    fn update_and_alarm_flags() {
        let mut r = Rtc::new(60); // 00:01:00
        wr(&mut r, 0, REG_SECONDS_ALARM, 0x05);
        wr(&mut r, 0, REG_MINUTES_ALARM, 0xC0);
        wr(&mut r, 0, REG_HOURS_ALARM, 0xFF);
        wr(&mut r, 0, REG_B, B_24H | B_UIE);
        r.update(NS_PER_SEC);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, NS_PER_SEC, REG_C) & !C_PF, C_IRQF | C_UF);
        wr(&mut r, NS_PER_SEC, REG_B, B_24H | B_AIE);
        assert_eq!(r.next_deadline_ns(NS_PER_SEC + 1), Some(2 * NS_PER_SEC));
        r.update(4 * NS_PER_SEC);
        assert!(!r.irq_level());
        r.update(5 * NS_PER_SEC);
        assert!(r.irq_level());
        assert_eq!(rd(&mut r, 5 * NS_PER_SEC, REG_C) & C_AF, C_AF);
    }

    #[test]
    fn cmos_ram() {
        let mut r = Rtc::new(0);
        wr(&mut r, 0, 0x40, 0xAB);
        assert_eq!(rd(&mut r, 0, 0x40), 0xAB);
        r.set_cmos(0x15, 0x80);
        assert_eq!(rd(&mut r, 0, 0x15), 0x80);
        assert_eq!(r.pio_read(0, PORT_INDEX), 0xFF);
        // garbage time writes do not panic
        for v in 0..=255u8 {
            for reg in [0u8, 2, 4, 6, 7, 8, 9, 0x32] {
                wr(&mut r, 0, reg, v);
                rd(&mut r, 0, reg);
            }
        }
    }
}
