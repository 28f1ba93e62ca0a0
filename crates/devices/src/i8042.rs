//! A minimal 8042 PS/2 controller: status/command port 0x64, data port 0x60. No keyboard or
//! mouse input is generated; the controller answers its own commands (self-test, command
//! byte, output port, interface tests), a keyboard that ACKs its commands, and no mouse
//! (aux commands answer 0xFE). Pulsing the reset line (command 0xFE, or output port bit 0
//! cleared) is a reset request the machine takes with [`I8042::take_reset_request`].

use crate::PioDevice;
use std::collections::VecDeque;

/// Data port.
pub const PORT_DATA: u16 = 0x60;
/// Status (read) / command (write) port.
pub const PORT_CMD: u16 = 0x64;

/// Status: output buffer full.
pub const STATUS_OBF: u8 = 0x01;
/// Status: input buffer full (never: commands complete instantly).
pub const STATUS_IBF: u8 = 0x02;
/// Status: system flag (passed self-test).
pub const STATUS_SYS: u8 = 0x04;
/// Status: last input byte was a command.
pub const STATUS_CMD: u8 = 0x08;
/// Status: keyboard not inhibited.
pub const STATUS_UNLOCKED: u8 = 0x10;
/// Status: output buffer holds aux (mouse) data.
pub const STATUS_AUX: u8 = 0x20;

/// Command byte: keyboard interrupt enable.
pub const CB_KBD_INT: u8 = 0x01;
/// Command byte: aux interrupt enable.
pub const CB_AUX_INT: u8 = 0x02;
/// Command byte: system flag.
pub const CB_SYS: u8 = 0x04;
/// Command byte: keyboard clock disabled.
pub const CB_KBD_DISABLE: u8 = 0x10;
/// Command byte: aux clock disabled.
pub const CB_AUX_DISABLE: u8 = 0x20;
/// Command byte: scancode translation.
pub const CB_XLATE: u8 = 0x40;

/// Controller command: read command byte.
pub const CMD_READ_CB: u8 = 0x20;
/// Controller command: write command byte.
pub const CMD_WRITE_CB: u8 = 0x60;
/// Controller command: disable aux.
pub const CMD_AUX_DISABLE: u8 = 0xA7;
/// Controller command: enable aux.
pub const CMD_AUX_ENABLE: u8 = 0xA8;
/// Controller command: aux interface test.
pub const CMD_AUX_TEST: u8 = 0xA9;
/// Controller command: self-test (answers 0x55).
pub const CMD_SELF_TEST: u8 = 0xAA;
/// Controller command: keyboard interface test.
pub const CMD_KBD_TEST: u8 = 0xAB;
/// Controller command: disable keyboard.
pub const CMD_KBD_DISABLE: u8 = 0xAD;
/// Controller command: enable keyboard.
pub const CMD_KBD_ENABLE: u8 = 0xAE;
/// Controller command: read input port.
pub const CMD_READ_INPUT: u8 = 0xC0;
/// Controller command: read output port.
pub const CMD_READ_OUTPUT: u8 = 0xD0;
/// Controller command: write output port.
pub const CMD_WRITE_OUTPUT: u8 = 0xD1;
/// Controller command: write keyboard output buffer.
pub const CMD_WRITE_KBD_OBUF: u8 = 0xD2;
/// Controller command: write aux output buffer.
pub const CMD_WRITE_AUX_OBUF: u8 = 0xD3;
/// Controller command: send next byte to the aux device.
pub const CMD_WRITE_AUX: u8 = 0xD4;
/// Controller command: pulse the reset line.
pub const CMD_PULSE_RESET: u8 = 0xFE;

/// Output port: system reset line (active low).
pub const OUT_RESET: u8 = 0x01;
/// Output port: A20 gate.
pub const OUT_A20: u8 = 0x02;

/// Everything of the 8042 a snapshot needs (the fields of [`I8042`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    pub command_byte: u8,
    pub output_port: u8,
    pub out: VecDeque<(u8, bool)>,
    pub last_out: u8,
    pub pending: Option<u8>,
    pub kbd_pending: bool,
    pub last_was_cmd: bool,
    pub reset_request: bool,
}

/// The 8042 controller.
#[derive(Debug, Clone)]
pub struct I8042 {
    command_byte: u8,
    output_port: u8,
    /// Bytes waiting in the output buffer, with "is aux" flags.
    out: VecDeque<(u8, bool)>,
    last_out: u8,
    /// Controller command waiting for its data byte.
    pending: Option<u8>,
    /// Keyboard command waiting for its parameter.
    kbd_pending: bool,
    last_was_cmd: bool,
    reset_request: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    /// The controller as firmware leaves it: translation and keyboard interrupt on, A20 on.
    pub fn new() -> Self {
        I8042 {
            command_byte: CB_XLATE | CB_SYS | CB_KBD_INT,
            output_port: OUT_RESET | OUT_A20,
            out: VecDeque::new(),
            last_out: 0,
            pending: None,
            kbd_pending: false,
            last_was_cmd: false,
            reset_request: false,
        }
    }

    /// The registers and output buffer, for a snapshot.
    pub fn state(&self) -> I8042State {
        I8042State {
            command_byte: self.command_byte,
            output_port: self.output_port,
            out: self.out.clone(),
            last_out: self.last_out,
            pending: self.pending,
            kbd_pending: self.kbd_pending,
            last_was_cmd: self.last_was_cmd,
            reset_request: self.reset_request,
        }
    }

    /// A controller with a saved `state`.
    pub fn from_state(s: I8042State) -> Self {
        I8042 {
            command_byte: s.command_byte,
            output_port: s.output_port,
            out: s.out,
            last_out: s.last_out,
            pending: s.pending,
            kbd_pending: s.kbd_pending,
            last_was_cmd: s.last_was_cmd,
            reset_request: s.reset_request,
        }
    }

    /// A reset was requested since the last call.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_request)
    }

    /// Whether the A20 gate is enabled through the output port.
    pub fn a20_enabled(&self) -> bool {
        self.output_port & OUT_A20 != 0
    }

    /// IRQ 1: keyboard data in the output buffer and the keyboard interrupt enabled.
    pub fn irq1_level(&self) -> bool {
        matches!(self.out.front(), Some((_, false))) && self.command_byte & CB_KBD_INT != 0
    }

    /// IRQ 12: aux data in the output buffer and the aux interrupt enabled.
    pub fn irq12_level(&self) -> bool {
        matches!(self.out.front(), Some((_, true))) && self.command_byte & CB_AUX_INT != 0
    }

    fn push(&mut self, byte: u8, aux: bool) {
        if self.out.len() < 16 {
            self.out.push_back((byte, aux));
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if let Some((_, aux)) = self.out.front() {
            s |= STATUS_OBF;
            if *aux {
                s |= STATUS_AUX;
            }
        }
        if self.command_byte & CB_SYS != 0 {
            s |= STATUS_SYS;
        }
        if self.last_was_cmd {
            s |= STATUS_CMD;
        }
        s
    }

    fn write_output_port(&mut self, v: u8) {
        if v & OUT_RESET == 0 {
            log::info!("i8042: reset via output port");
            self.reset_request = true;
        }
        self.output_port = v | OUT_RESET;
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            CMD_READ_CB => self.push(self.command_byte, false),
            CMD_WRITE_CB | CMD_WRITE_OUTPUT | CMD_WRITE_KBD_OBUF | CMD_WRITE_AUX_OBUF
            | CMD_WRITE_AUX => self.pending = Some(cmd),
            CMD_AUX_DISABLE => self.command_byte |= CB_AUX_DISABLE,
            CMD_AUX_ENABLE => self.command_byte &= !CB_AUX_DISABLE,
            CMD_AUX_TEST | CMD_KBD_TEST => self.push(0x00, false),
            CMD_SELF_TEST => {
                self.command_byte |= CB_SYS;
                self.push(0x55, false);
            }
            CMD_KBD_DISABLE => self.command_byte |= CB_KBD_DISABLE,
            CMD_KBD_ENABLE => self.command_byte &= !CB_KBD_DISABLE,
            CMD_READ_INPUT => self.push(0x80, false),
            CMD_READ_OUTPUT => self.push(self.output_port, false),
            0xF0..=0xFF => {
                // Pulse output lines whose bit is 0; bit 0 is the reset line (0xFE).
                if cmd & 1 == 0 {
                    log::info!("i8042: reset pulse (command {cmd:#x})");
                    self.reset_request = true;
                }
            }
            _ => log::debug!("i8042: unhandled command {cmd:#x}"),
        }
    }

    fn data(&mut self, v: u8) {
        match self.pending.take() {
            Some(CMD_WRITE_CB) => self.command_byte = v,
            Some(CMD_WRITE_OUTPUT) => self.write_output_port(v),
            Some(CMD_WRITE_KBD_OBUF) => self.push(v, false),
            Some(CMD_WRITE_AUX_OBUF) => self.push(v, true),
            Some(_) => self.push(0xFE, true), // no mouse behind the aux port
            None => self.keyboard(v),
        }
    }

    /// A byte sent to the keyboard.
    fn keyboard(&mut self, v: u8) {
        if std::mem::take(&mut self.kbd_pending) {
            self.push(0xFA, false);
            return;
        }
        match v {
            0xFF => {
                self.push(0xFA, false);
                self.push(0xAA, false);
            }
            0xF2 => {
                self.push(0xFA, false);
                self.push(0xAB, false);
                self.push(0x83, false);
            }
            0xEE => self.push(0xEE, false),
            0xED | 0xF0 | 0xF3 => {
                self.kbd_pending = true;
                self.push(0xFA, false);
            }
            _ => self.push(0xFA, false),
        }
    }
}

impl PioDevice for I8042 {
    fn pio_read(&mut self, port: u16, _size: u8) -> u32 {
        match port {
            PORT_DATA => {
                if let Some((b, _)) = self.out.pop_front() {
                    self.last_out = b;
                }
                u32::from(self.last_out)
            }
            PORT_CMD => u32::from(self.status()),
            _ => 0xFF,
        }
    }

    fn pio_write(&mut self, port: u16, _size: u8, value: u32) {
        let v = value as u8;
        match port {
            PORT_DATA => {
                self.last_was_cmd = false;
                self.data(v);
            }
            PORT_CMD => {
                self.last_was_cmd = true;
                self.pending = None;
                self.command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_and_command_byte() {
        let mut k = I8042::new();
        assert_eq!(k.pio_read(PORT_CMD, 1) as u8 & STATUS_OBF, 0);
        k.pio_write(PORT_CMD, 1, u32::from(CMD_SELF_TEST));
        assert_eq!(k.pio_read(PORT_CMD, 1) as u8 & STATUS_OBF, STATUS_OBF);
        assert_eq!(k.pio_read(PORT_DATA, 1), 0x55);
        assert_eq!(k.pio_read(PORT_CMD, 1) as u8 & STATUS_OBF, 0);
        k.pio_write(PORT_CMD, 1, u32::from(CMD_WRITE_CB));
        k.pio_write(PORT_DATA, 1, 0x47);
        k.pio_write(PORT_CMD, 1, u32::from(CMD_READ_CB));
        assert_eq!(k.pio_read(PORT_DATA, 1), 0x47);
        assert!(!k.take_reset_request());
    }

    #[test]
    fn reset_pulse_and_output_port() {
        let mut k = I8042::new();
        k.pio_write(PORT_CMD, 1, u32::from(CMD_PULSE_RESET));
        assert!(k.take_reset_request());
        k.pio_write(PORT_CMD, 1, u32::from(CMD_WRITE_OUTPUT));
        k.pio_write(PORT_DATA, 1, 0x01);
        assert!(!k.a20_enabled());
        assert!(!k.take_reset_request());
        k.pio_write(PORT_CMD, 1, u32::from(CMD_WRITE_OUTPUT));
        k.pio_write(PORT_DATA, 1, 0x00);
        assert!(k.take_reset_request());
    }

    #[test]
    fn keyboard_acks() {
        let mut k = I8042::new();
        k.pio_write(PORT_DATA, 1, 0xFF);
        assert!(k.irq1_level());
        assert_eq!(k.pio_read(PORT_DATA, 1), 0xFA);
        assert_eq!(k.pio_read(PORT_DATA, 1), 0xAA);
        assert!(!k.irq1_level());
        k.pio_write(PORT_CMD, 1, u32::from(CMD_WRITE_AUX));
        k.pio_write(PORT_DATA, 1, 0xF4);
        assert_eq!(k.pio_read(PORT_CMD, 1) as u8 & STATUS_AUX, STATUS_AUX);
        assert_eq!(k.pio_read(PORT_DATA, 1), 0xFE);
    }
}
