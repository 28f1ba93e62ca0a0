//! The hardware-reduced ACPI sleep control and status registers and the reset register
//! (ACPI 6.5 §4.8.3.7, §4.8.3.6), as QEMU's microvm exposes them next to its Generic Event
//! Device: three byte registers in an MMIO page.
//!
//! | offset | register | bits |
//! |---|---|---|
//! | 0 | SLEEP_CONTROL_REG | SLP_TYPx 4:2, SLP_EN 5 (write-only) |
//! | 1 | SLEEP_STATUS_REG | WAK_STS 7 (write-1-to-clear) |
//! | 2 | RESET_REG | writing [`RESET_VALUE`] resets the machine |
//!
//! SLP_EN with SLP_TYPx = [`SLP_TYP_S5`] (what the DSDT's `_S5_` says) requests soft-off.

/// SLEEP_CONTROL_REG offset.
pub const SLEEP_CONTROL: u64 = 0;
/// SLEEP_STATUS_REG offset.
pub const SLEEP_STATUS: u64 = 1;
/// RESET_REG offset.
pub const RESET: u64 = 2;
/// The FADT's RESET_VALUE.
pub const RESET_VALUE: u8 = 0x42;
/// SLP_TYPx of S5.
pub const SLP_TYP_S5: u8 = 5;
/// SLEEP_CONTROL_REG: SLP_EN.
pub const SLP_EN: u8 = 1 << 5;

/// SLEEP_STATUS_REG: WAK_STS.
pub const WAK_STS: u8 = 1 << 7;

/// The registers.
#[derive(Debug, Clone, Default)]
pub struct AcpiSleep {
    status: u8,
    poweroff: bool,
    reset: bool,
}

/// What a snapshot keeps: the status register (requests are taken by the machine as soon as
/// they are written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AcpiSleepState {
    pub sleep_status: u8,
}

impl AcpiSleep {
    pub fn new() -> Self {
        Self::default()
    }

    /// The registers, for a snapshot.
    pub fn state(&self) -> AcpiSleepState {
        AcpiSleepState {
            sleep_status: self.status,
        }
    }

    /// Put saved registers back; bits the register does not have are refused.
    pub fn set_state(&mut self, s: &AcpiSleepState) -> Result<(), crate::state::StateError> {
        if s.sleep_status & !WAK_STS != 0 {
            return Err(crate::state::StateError::new(
                "acpi-sleep",
                format!("SLEEP_STATUS_REG {:#04x} has reserved bits", s.sleep_status),
            ));
        }
        *self = AcpiSleep {
            status: s.sleep_status,
            ..Default::default()
        };
        Ok(())
    }

    /// The guest asked for S5 since the last call.
    pub fn take_poweroff_request(&mut self) -> bool {
        std::mem::take(&mut self.poweroff)
    }

    /// The guest asked for a reset since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset)
    }

    /// A byte read at `offset`.
    pub fn mmio_read(&self, offset: u64) -> u8 {
        match offset {
            SLEEP_STATUS => self.status,
            _ => 0,
        }
    }

    /// A byte write at `offset`.
    pub fn mmio_write(&mut self, offset: u64, v: u8) {
        match offset {
            SLEEP_CONTROL if v & SLP_EN != 0 => {
                let typ = (v >> 2) & 7;
                if typ == SLP_TYP_S5 {
                    self.poweroff = true;
                } else {
                    log::warn!("acpi-sleep: sleep type {typ} is not modelled (only S5)");
                }
            }
            SLEEP_STATUS => self.status &= !v,
            RESET if v == RESET_VALUE => self.reset = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_and_reset() {
        let mut s = AcpiSleep::new();
        s.mmio_write(SLEEP_CONTROL, SLP_TYP_S5 << 2);
        assert!(!s.take_poweroff_request(), "no SLP_EN");
        s.mmio_write(SLEEP_CONTROL, (SLP_TYP_S5 << 2) | SLP_EN);
        assert!(s.take_poweroff_request());
        s.mmio_write(SLEEP_CONTROL, (3 << 2) | SLP_EN);
        assert!(!s.take_poweroff_request());
        s.mmio_write(RESET, 0x41);
        assert!(!s.take_reset_request());
        s.mmio_write(RESET, RESET_VALUE);
        assert!(s.take_reset_request());
        assert_eq!(s.mmio_read(SLEEP_STATUS), 0);
    }

    #[test]
    fn state_round_trips_and_refuses_reserved_bits() {
        let mut s = AcpiSleep::new();
        s.status = WAK_STS;
        let st = s.state();
        let mut back = AcpiSleep::new();
        back.set_state(&st).unwrap();
        assert_eq!(back.mmio_read(SLEEP_STATUS), WAK_STS);
        back.mmio_write(SLEEP_STATUS, WAK_STS);
        assert_eq!(back.mmio_read(SLEEP_STATUS), 0, "write-1-to-clear");
        assert!(back.set_state(&AcpiSleepState { sleep_status: 1 }).is_err());
    }
}
