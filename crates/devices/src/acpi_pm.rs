//! The ACPI fixed-hardware PM registers of a PC chipset (ACPI 6.5 §4.8): the PM1a event block
//! (PM1_STS, PM1_EN), the PM1a control block (SCI_EN, SLP_TYP, SLP_EN) and the PM timer
//! (3.579545 MHz, 32 bits: the FADT sets TMR_VAL_EXT).
//!
//! Layout (I/O ports, relative to `base`; the machine puts it at 0x600 as QEMU's PIIX4 does):
//! `+0` PM1_STS (16 bits, write-1-to-clear), `+2` PM1_EN, `+4` PM1_CNT (16 bits), `+8` PM_TMR
//! (32 bits, read-only).
//!
//! Writing PM1_CNT with SLP_EN set and SLP_TYP = [`SLP_TYP_S5`] requests soft-off
//! ([`AcpiPm::take_poweroff_request`]); the DSDT's `_S5_` object hands the guest that value.
//! SCI_EN reads as 1: there is no SMI handler, ACPI mode is always on (the FADT's SMI_CMD is 0).
//! Nothing raises status bits yet (no power button, no timer carry), so the SCI stays low.

/// PM1_STS / PM1_EN offset.
pub const PM1_STS: u16 = 0;
pub const PM1_EN: u16 = 2;
/// PM1_CNT offset.
pub const PM1_CNT: u16 = 4;
/// PM_TMR offset.
pub const PM_TMR: u16 = 8;
/// Bytes of ports the block decodes.
pub const LEN: u16 = 12;
/// The PM timer's frequency.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// PM1_CNT: SCI_EN.
pub const CNT_SCI_EN: u16 = 1;
/// PM1_CNT: SLP_EN (write-only).
pub const CNT_SLP_EN: u16 = 1 << 13;
/// The SLP_TYP value of S5 on this board (what `_S5_` says).
pub const SLP_TYP_S5: u16 = 5;
/// PM1_STS: WAK_STS.
pub const STS_WAK: u16 = 1 << 15;

/// PM1_EN bits the guest can set: TMR_EN, GBL_EN, PWRBTN_EN, RTC_EN (§4.8.3.1.2).
pub const EN_MASK: u16 = 0x0521;
/// PM1_CNT bits that are kept: SCI_EN, BM_RLD, GBL_RLS, SLP_TYP (SLP_EN is write-only).
pub const CNT_MASK: u16 = 0x1c07;

/// The PM register block.
#[derive(Debug, Clone, Default)]
pub struct AcpiPm {
    base: u16,
    sts: u16,
    en: u16,
    cnt: u16,
    poweroff: bool,
}

/// The registers a snapshot keeps (the PM timer follows the virtual clock; a power-off
/// request is taken by the machine as soon as it is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcpiPmState {
    pub pm1_sts: u16,
    pub pm1_en: u16,
    pub pm1_cnt: u16,
}

impl AcpiPm {
    /// The block at I/O port `base`.
    pub fn new(base: u16) -> Self {
        AcpiPm {
            base,
            cnt: CNT_SCI_EN,
            ..Default::default()
        }
    }

    /// The registers, for a snapshot.
    pub fn state(&self) -> AcpiPmState {
        AcpiPmState {
            pm1_sts: self.sts,
            pm1_en: self.en,
            pm1_cnt: self.cnt,
        }
    }

    /// Put saved registers back; bits no guest could have set are refused.
    pub fn set_state(&mut self, s: &AcpiPmState) -> Result<(), crate::state::StateError> {
        let bad = |what: &str, v: u16| {
            Err(crate::state::StateError::new(
                "acpi-pm",
                format!("{what} {v:#06x} has bits the hardware does not keep"),
            ))
        };
        if s.pm1_sts & !(STS_WAK | 0x0531) != 0 {
            return bad("PM1_STS", s.pm1_sts);
        }
        if s.pm1_en & !EN_MASK != 0 {
            return bad("PM1_EN", s.pm1_en);
        }
        if s.pm1_cnt & !CNT_MASK != 0 || s.pm1_cnt & CNT_SCI_EN == 0 {
            return bad("PM1_CNT", s.pm1_cnt);
        }
        self.sts = s.pm1_sts;
        self.en = s.pm1_en;
        self.cnt = s.pm1_cnt;
        self.poweroff = false;
        Ok(())
    }

    /// The PM timer at virtual time `now_ns`.
    pub fn timer(now_ns: u64) -> u32 {
        ((now_ns as u128 * PM_TIMER_HZ as u128) / 1_000_000_000) as u32
    }

    /// The SCI output.
    pub fn sci_level(&self) -> bool {
        self.sts & self.en != 0
    }

    /// The guest asked for S5 since the last call.
    pub fn take_poweroff_request(&mut self) -> bool {
        std::mem::take(&mut self.poweroff)
    }

    /// Read `size` bytes at `port` (unaligned and partial accesses read the bytes they
    /// cover).
    pub fn pio_read(&mut self, now_ns: u64, port: u16, size: u8) -> u32 {
        let mut v = 0u32;
        for i in 0..size.min(4) as u16 {
            v |= (self.read_byte(now_ns, port.wrapping_sub(self.base) + i) as u32) << (8 * i);
        }
        v
    }

    fn read_byte(&self, now_ns: u64, off: u16) -> u8 {
        let word = |w: u16, hi: bool| if hi { (w >> 8) as u8 } else { w as u8 };
        match off {
            0 | 1 => word(self.sts, off == 1),
            2 | 3 => word(self.en, off == 3),
            4 | 5 => word(self.cnt | CNT_SCI_EN, off == 5),
            8..=11 => (Self::timer(now_ns) >> (8 * (off - 8))) as u8,
            _ => 0,
        }
    }

    /// Write `size` bytes of `value` at `port`.
    pub fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        let off = port.wrapping_sub(self.base);
        let v16 = value as u16;
        match (off, size) {
            (PM1_STS, 2..) => self.sts &= !v16,
            (PM1_EN, 2..) => self.en = v16 & EN_MASK,
            (PM1_CNT, 2..) => self.write_cnt(v16),
            (5, 1) => self.write_cnt((self.cnt & 0xff) | (v16 & 0xff) << 8),
            (PM1_CNT, 1) => self.write_cnt((self.cnt & 0xff00) | (v16 & 0xff)),
            _ => log::debug!("acpi-pm: write {value:#x}/{size} at +{off:#x} ignored"),
        }
        if size == 4 && off == PM1_STS {
            // A dword write covers PM1_EN too.
            self.en = (value >> 16) as u16 & EN_MASK;
        }
    }

    fn write_cnt(&mut self, v: u16) {
        if v & CNT_SLP_EN != 0 {
            let typ = (v >> 10) & 7;
            if typ == SLP_TYP_S5 {
                self.poweroff = true;
            } else {
                log::warn!("acpi-pm: sleep type {typ} is not modelled (only S5 = {SLP_TYP_S5})");
            }
        }
        self.cnt = (v & CNT_MASK) | CNT_SCI_EN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_other_types_do_not() {
        let mut pm = AcpiPm::new(0x600);
        assert_eq!(pm.pio_read(0, 0x604, 2) & 1, 1, "SCI_EN");
        pm.pio_write(0x604, 2, (SLP_TYP_S5 << 10) as u32);
        assert!(!pm.take_poweroff_request(), "SLP_TYP alone does nothing");
        pm.pio_write(0x604, 2, ((SLP_TYP_S5 << 10) | CNT_SLP_EN) as u32);
        assert!(pm.take_poweroff_request());
        assert!(!pm.take_poweroff_request());
        assert_eq!(
            pm.pio_read(0, 0x604, 2) & CNT_SLP_EN as u32,
            0,
            "SLP_EN reads 0"
        );
        pm.pio_write(0x604, 2, ((3 << 10) | CNT_SLP_EN) as u32);
        assert!(!pm.take_poweroff_request());
    }

    #[test]
    fn pm_timer_counts_at_3_58_mhz() {
        let mut pm = AcpiPm::new(0x600);
        assert_eq!(pm.pio_read(0, 0x608, 4), 0);
        assert_eq!(pm.pio_read(1_000_000_000, 0x608, 4), 3_579_545);
        // 32-bit wrap after 2^32 ticks (about 20 minutes).
        let wrap_ns = (1u64 << 32) * 1_000_000_000 / PM_TIMER_HZ + 1;
        assert!(pm.pio_read(wrap_ns, 0x608, 4) < 10);
    }

    #[test]
    fn state_round_trips_and_refuses_impossible_bits() {
        let mut pm = AcpiPm::new(0x600);
        pm.pio_write(0x602, 2, 0x0121);
        pm.pio_write(0x604, 2, 3 << 10);
        pm.sts = STS_WAK;
        let s = pm.state();
        assert_eq!(
            s,
            AcpiPmState {
                pm1_sts: STS_WAK,
                pm1_en: 0x0121,
                pm1_cnt: (3 << 10) | CNT_SCI_EN
            }
        );
        let mut back = AcpiPm::new(0x600);
        back.set_state(&s).unwrap();
        assert_eq!(back.state(), s);
        assert_eq!(back.pio_read(0, 0x602, 2), 0x0121);
        for bad in [
            AcpiPmState {
                pm1_en: 0x8000,
                ..s
            },
            AcpiPmState { pm1_cnt: 0, ..s },
            AcpiPmState {
                pm1_cnt: CNT_SCI_EN | CNT_SLP_EN,
                ..s
            },
            AcpiPmState {
                pm1_sts: 0x4000,
                ..s
            },
        ] {
            assert!(back.set_state(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(back.state(), s, "a refused state changes nothing");
    }

    #[test]
    fn status_is_write_one_to_clear_and_drives_sci() {
        let mut pm = AcpiPm::new(0x600);
        pm.sts = STS_WAK | 1;
        pm.pio_write(0x602, 2, 1);
        assert!(pm.sci_level());
        pm.pio_write(0x600, 2, 1);
        assert_eq!(pm.pio_read(0, 0x600, 2), STS_WAK as u32);
        assert!(!pm.sci_level());
    }
}
