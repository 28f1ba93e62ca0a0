//! Small motherboard ports: the POST code sink at 0x80 and the PS/2 system control port A at
//! 0x92 (fast A20 gate and fast reset).

use crate::PioDevice;

/// POST diagnostic port (also used by Linux for I/O delays).
pub const PORT_POST: u16 = 0x80;
/// System control port A.
pub const PORT_92: u16 = 0x92;
/// Port 0x92: fast reset (a 0→1 transition resets the CPU).
pub const P92_RESET: u8 = 0x01;
/// Port 0x92: A20 gate enable.
pub const P92_A20: u8 = 0x02;

/// Port 0x80: keeps the last code written (reads return it, as on most chipsets).
/// Plain data: the device is its own snapshot state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostPort {
    pub last: u8,
    pub writes: u64,
}

impl PioDevice for PostPort {
    fn pio_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::from(self.last)
    }
    fn pio_write(&mut self, _port: u16, _size: u8, value: u32) {
        self.last = value as u8;
        self.writes += 1;
    }
}

/// Port 0x92.
/// Plain data: the device is its own snapshot state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port92 {
    value: u8,
    reset_request: bool,
}

impl Default for Port92 {
    fn default() -> Self {
        // A20 enabled: tci64 boots kernels directly, past the firmware that would enable it.
        Port92 {
            value: P92_A20,
            reset_request: false,
        }
    }
}

impl Port92 {
    /// Whether the A20 gate is enabled.
    pub fn a20_enabled(&self) -> bool {
        self.value & P92_A20 != 0
    }

    /// A reset was requested since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_request)
    }
}

impl PioDevice for Port92 {
    fn pio_read(&mut self, _port: u16, _size: u8) -> u32 {
        u32::from(self.value)
    }
    fn pio_write(&mut self, _port: u16, _size: u8, value: u32) {
        let v = value as u8;
        if v & P92_RESET != 0 && self.value & P92_RESET == 0 {
            log::info!("port 0x92: fast reset requested");
            self.reset_request = true;
        }
        self.value = v & (P92_RESET | P92_A20);
        // The reset bit self-clears once the reset has been signalled.
        self.value &= !P92_RESET;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_port() {
        let mut p = PostPort::default();
        p.pio_write(PORT_POST, 1, 0x42);
        assert_eq!(p.pio_read(PORT_POST, 1), 0x42);
        assert_eq!(p.writes, 1);
    }

    #[test]
    fn port92_a20_and_reset() {
        let mut p = Port92::default();
        assert!(p.a20_enabled());
        p.pio_write(PORT_92, 1, 0);
        assert!(!p.a20_enabled());
        assert!(!p.take_reset_request());
        p.pio_write(PORT_92, 1, u32::from(P92_RESET | P92_A20));
        assert!(p.take_reset_request());
        assert!(!p.take_reset_request());
        assert_eq!(p.pio_read(PORT_92, 1), u32::from(P92_A20));
    }
}
