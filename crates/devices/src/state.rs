//! Snapshot state shared by several devices: the error a restore can fail with, and the closed
//! sets of state types behind the `dyn` device traits ([`crate::virtio::VirtioDevice`],
//! [`crate::pci::PciDevice`]).
//!
//! Every device keeps its registers in a plain serde type (`UartState`, `PitState`, ...) apart
//! from its behaviour: `state()` returns it, `from_state` (or `set_state` for devices behind a
//! trait object, which keep their host-side resources such as a disk backend) puts it back.
//! Translated code, TLBs and host buffers are not state.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A saved state that does not fit the device it is restored into.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{device}: {reason}")]
pub struct StateError {
    /// Which device (e.g. "virtio-blk-pci 00:03.0").
    pub device: String,
    pub reason: String,
}

impl StateError {
    pub fn new(device: impl Into<String>, reason: impl Into<String>) -> Self {
        StateError {
            device: device.into(),
            reason: reason.into(),
        }
    }
}

/// The state of a virtio device model (the part behind the transport).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VirtioDeviceState {
    Blk(crate::virtio::blk::VirtioBlkState),
}

/// The state of one PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PciDeviceState {
    /// A function whose only state is its configuration space (the host bridge).
    Config(crate::pci::PciConfigState),
    Virtio(crate::virtio::pci::VirtioPciState),
}
