//! The PIIX/ICH reset control register at port 0xCF9 (byte access only; 0xCF8-0xCFB as a
//! dword is the PCI configuration address, which the machine routes elsewhere).

use crate::PioDevice;

/// Reset control register port.
pub const PORT_CF9: u16 = 0xCF9;
/// System reset (hard reset when set together with RST_CPU).
pub const CF9_SYS_RST: u8 = 0x02;
/// Reset CPU: writing 1 triggers the reset.
pub const CF9_RST_CPU: u8 = 0x04;
/// Full reset (power cycle) type select.
pub const CF9_FULL_RST: u8 = 0x08;

/// Port 0xCF9.
/// Plain data: the device is its own snapshot state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResetControl {
    value: u8,
    reset_request: bool,
}

impl ResetControl {
    /// A reset was requested since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_request)
    }
}

impl PioDevice for ResetControl {
    fn pio_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::from(self.value)
    }
    fn pio_write(&mut self, _port: u16, _size: u8, value: u32) {
        let v = value as u8;
        if v & CF9_RST_CPU != 0 {
            log::info!("port 0xcf9: reset requested ({v:#x})");
            self.reset_request = true;
        }
        self.value = v & (CF9_SYS_RST | CF9_FULL_RST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_cf9_reboot() {
        let mut r = ResetControl::default();
        r.pio_write(PORT_CF9, 1, 0x02);
        assert!(!r.take_reset_request());
        assert_eq!(r.pio_read(PORT_CF9, 1), 0x02);
        r.pio_write(PORT_CF9, 1, 0x06);
        assert!(r.take_reset_request());
        assert!(!r.take_reset_request());
    }
}
