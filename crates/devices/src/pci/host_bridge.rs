//! The host bridge at 00:00.0: an Intel 440FX PMC's identity (8086:1237, class 0x0600), which is
//! what Linux expects to find on a `pc` machine. It has no BARs and no chipset features; its
//! only job is to make the bus look real (Linux's conf1 sanity check wants a host bridge).

use super::{Access, PciConfig, PciDevice};
use std::any::Any;

/// Intel.
pub const VENDOR_INTEL: u16 = 0x8086;
/// 82441FX PMC (440FX).
pub const DEVICE_I440FX: u16 = 0x1237;
/// Class: bridge, host bridge.
pub const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

/// The 440FX-like host bridge.
#[derive(Debug, Clone)]
pub struct HostBridge {
    config: PciConfig,
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBridge {
    pub fn new() -> Self {
        let mut config = PciConfig::new(VENDOR_INTEL, DEVICE_I440FX, CLASS_HOST_BRIDGE, 2);
        // A host bridge always decodes memory and masters the bus.
        config.write(
            super::REG_COMMAND,
            2,
            u32::from(super::COMMAND_MEMORY | super::COMMAND_MASTER),
        );
        HostBridge { config }
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) -> Access {
        Access::Done
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
