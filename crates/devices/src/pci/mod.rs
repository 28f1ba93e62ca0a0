//! A conventional PCI bus 0 reached through configuration mechanism #1 (ports 0xCF8-0xCFF),
//! with a host bridge and devices implementing [`PciDevice`].
//!
//! - **Configuration mechanism #1.** A dword write to 0xCF8 sets the address register
//!   (bit 31 enable, bus 23:16, device 15:11, function 10:8, register 7:2). Accesses of 1, 2 or
//!   4 bytes at 0xCFC + n reach config byte `register + n`. Other sizes at 0xCF8 are not the
//!   address register (a byte write to 0xCFB is Linux's mechanism #2 probe; byte 0xCF9 is the
//!   reset control register, which the machine routes before the bus). With the enable bit
//!   clear, or no device at the address, reads return all ones and writes are dropped.
//! - **Config space semantics** live in [`PciConfig`]: read-only identification, per-byte write
//!   masks, BARs whose low bits are read-only and which read back their size mask after an
//!   all-ones write, the command register, INTERRUPT_LINE (read/write, for software) and
//!   INTERRUPT_PIN (read-only). Status bit 3 (interrupt status) follows the device's INTx.
//! - **No firmware.** [`PciBus::assign_resources`] does what a BIOS would: it places every BAR
//!   naturally aligned in the given windows, enables decoding and writes INTERRUPT_LINE with the
//!   line the machine wired the device's INTx to. Linux without ACPI and without a `$PIR` table
//!   keeps these assignments and takes the IRQ from INTERRUPT_LINE.
//! - **BAR dispatch.** [`PciBus::mmio_read`]/[`PciBus::mmio_write`] find the BAR containing an
//!   address, among BARs whose decoding is enabled in the command register. A BAR the guest
//!   moves over RAM is simply shadowed by RAM (the machine only asks the bus about addresses
//!   that are not RAM).
//! - **Work that needs guest memory** (a virtqueue notification) is not done inside the access:
//!   the write returns [`Access::NeedsService`] and the machine later calls
//!   [`PciBus::service`] with guest memory.

pub mod host_bridge;

use crate::state::{PciDeviceState, StateError};
use crate::virtio::GuestMemory;
use crate::PioDevice;
use std::any::Any;

/// Configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xCF8;
/// Configuration data ports 0xCFC-0xCFF.
pub const CONFIG_DATA: u16 = 0xCFC;

/// Vendor ID (16 bits).
pub const REG_VENDOR_ID: usize = 0x00;
/// Device ID (16 bits).
pub const REG_DEVICE_ID: usize = 0x02;
/// Command (16 bits).
pub const REG_COMMAND: usize = 0x04;
/// Status (16 bits).
pub const REG_STATUS: usize = 0x06;
/// Revision ID (8 bits).
pub const REG_REVISION: usize = 0x08;
/// Programming interface, subclass, class (3 bytes from 0x09).
pub const REG_CLASS_PROG: usize = 0x09;
/// Cache line size (8 bits).
pub const REG_CACHE_LINE_SIZE: usize = 0x0C;
/// Latency timer (8 bits).
pub const REG_LATENCY_TIMER: usize = 0x0D;
/// Header type (8 bits).
pub const REG_HEADER_TYPE: usize = 0x0E;
/// BAR 0; BAR n is at 0x10 + 4n.
pub const REG_BAR0: usize = 0x10;
/// Subsystem vendor ID (16 bits).
pub const REG_SUBSYSTEM_VENDOR_ID: usize = 0x2C;
/// Subsystem ID (16 bits).
pub const REG_SUBSYSTEM_ID: usize = 0x2E;
/// Expansion ROM base address (not implemented: reads 0).
pub const REG_ROM_ADDRESS: usize = 0x30;
/// Capabilities pointer (8 bits).
pub const REG_CAPABILITIES: usize = 0x34;
/// Interrupt line (8 bits, read/write scratch for software).
pub const REG_INTERRUPT_LINE: usize = 0x3C;
/// Interrupt pin (8 bits, read-only: 0 none, 1..4 INTA..INTD).
pub const REG_INTERRUPT_PIN: usize = 0x3D;
/// Size of the conventional config space.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Number of BARs in a type 0 header.
pub const NUM_BARS: usize = 6;

/// Command: I/O space decoding.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: bus master (the device may DMA).
pub const COMMAND_MASTER: u16 = 1 << 2;
/// Command: parity error response.
pub const COMMAND_PARITY: u16 = 1 << 6;
/// Command: SERR# enable.
pub const COMMAND_SERR: u16 = 1 << 8;
/// Command: INTx emulation disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status: INTx asserted (read-only).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status: a capabilities list is present.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Capability ID: vendor specific.
pub const CAP_ID_VENDOR: u8 = 0x09;

/// BAR low bits: I/O space indicator.
const BAR_IO: u32 = 1;
/// BAR low bits: 64-bit memory BAR.
const BAR_MEM_64: u32 = 0b100;
/// BAR low bits: prefetchable.
const BAR_PREFETCH: u32 = 0b1000;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// 32-bit memory.
    Mem32 { prefetchable: bool },
    /// 64-bit memory (takes this BAR and the next).
    Mem64 { prefetchable: bool },
}

impl BarKind {
    fn low_bits(self) -> u32 {
        match self {
            BarKind::Io => BAR_IO,
            BarKind::Mem32 { prefetchable } => {
                if prefetchable {
                    BAR_PREFETCH
                } else {
                    0
                }
            }
            BarKind::Mem64 { prefetchable } => {
                BAR_MEM_64 | if prefetchable { BAR_PREFETCH } else { 0 }
            }
        }
    }

    /// Is it a memory BAR?
    pub fn is_memory(self) -> bool {
        !matches!(self, BarKind::Io)
    }
}

/// One implemented BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub kind: BarKind,
    /// Size in bytes: a power of two, at least 16 (memory) or 4 (I/O).
    pub size: u64,
    /// The address the guest programmed (size-aligned).
    pub address: u64,
}

/// The guest-visible part of a configuration space, for a snapshot: the 256 bytes and the
/// programmed BAR addresses (BAR kinds and sizes, write masks and capabilities belong to the
/// device's construction).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PciConfigState {
    pub data: Vec<u8>,
    pub bar_addresses: [Option<u64>; NUM_BARS],
}

/// A type 0 configuration space: 256 bytes, per-byte write masks and up to six BARs.
#[derive(Clone)]
pub struct PciConfig {
    data: [u8; CONFIG_SPACE_SIZE],
    wmask: [u8; CONFIG_SPACE_SIZE],
    bars: [Option<Bar>; NUM_BARS],
    /// Where the last capability was appended (its next pointer is updated on append).
    last_cap: Option<usize>,
    next_cap_offset: usize,
}

impl std::fmt::Debug for PciConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciConfig")
            .field(
                "vendor",
                &format_args!("{:#06x}", self.read16(REG_VENDOR_ID)),
            )
            .field(
                "device",
                &format_args!("{:#06x}", self.read16(REG_DEVICE_ID)),
            )
            .field("command", &format_args!("{:#06x}", self.command()))
            .field("bars", &self.bars)
            .finish()
    }
}

impl PciConfig {
    /// A function with the given identification; `class` is class << 16 | subclass << 8 |
    /// prog-if. Header type 0, no BARs, no capabilities, no interrupt pin.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut c = PciConfig {
            data: [0; CONFIG_SPACE_SIZE],
            wmask: [0; CONFIG_SPACE_SIZE],
            bars: [None; NUM_BARS],
            last_cap: None,
            next_cap_offset: 0x40,
        };
        c.set16(REG_VENDOR_ID, vendor);
        c.set16(REG_DEVICE_ID, device);
        c.data[REG_REVISION] = revision;
        c.data[REG_CLASS_PROG] = class as u8;
        c.data[REG_CLASS_PROG + 1] = (class >> 8) as u8;
        c.data[REG_CLASS_PROG + 2] = (class >> 16) as u8;
        let cmd = COMMAND_IO
            | COMMAND_MEMORY
            | COMMAND_MASTER
            | COMMAND_PARITY
            | COMMAND_SERR
            | COMMAND_INTX_DISABLE;
        c.wmask[REG_COMMAND] = cmd as u8;
        c.wmask[REG_COMMAND + 1] = (cmd >> 8) as u8;
        c.wmask[REG_CACHE_LINE_SIZE] = 0xFF;
        c.wmask[REG_LATENCY_TIMER] = 0xFF;
        c.wmask[REG_INTERRUPT_LINE] = 0xFF;
        c
    }

    /// The guest-visible registers, for a snapshot.
    pub fn state(&self) -> PciConfigState {
        PciConfigState {
            data: self.data.to_vec(),
            bar_addresses: self.bars.map(|b| b.map(|b| b.address)),
        }
    }

    /// Put back a saved state. The BARs must be the ones this function declares.
    pub fn set_state(&mut self, s: &PciConfigState) -> Result<(), StateError> {
        let who = || {
            format!(
                "PCI function {:04x}:{:04x}",
                self.read16(REG_VENDOR_ID),
                self.read16(REG_DEVICE_ID)
            )
        };
        let data: [u8; CONFIG_SPACE_SIZE] = s.data.as_slice().try_into().map_err(|_| {
            StateError::new(who(), format!("config space of {} bytes", s.data.len()))
        })?;
        if data[..4] != self.data[..4] {
            return Err(StateError::new(who(), "a different device was saved here"));
        }
        for (bar, addr) in self.bars.iter().zip(s.bar_addresses) {
            if bar.is_some() != addr.is_some() {
                return Err(StateError::new(who(), "the saved BARs differ"));
            }
        }
        self.data = data;
        for (bar, addr) in self.bars.iter_mut().zip(s.bar_addresses) {
            if let (Some(bar), Some(a)) = (bar.as_mut(), addr) {
                bar.address = a & !(bar.size - 1);
            }
        }
        Ok(())
    }

    /// Set the subsystem vendor and ID.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.set16(REG_SUBSYSTEM_VENDOR_ID, vendor);
        self.set16(REG_SUBSYSTEM_ID, id);
    }

    /// Make bits of config bytes writable by the guest (`mask[i]` for byte `offset + i`).
    pub fn set_write_mask(&mut self, offset: usize, mask: &[u8]) {
        self.wmask[offset..offset + mask.len()].copy_from_slice(mask);
    }

    /// Store device-side bytes (ignores the write masks).
    pub fn set_bytes(&mut self, offset: usize, bytes: &[u8]) {
        self.data[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Set INTERRUPT_PIN (1 = INTA#).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.data[REG_INTERRUPT_PIN] = pin.min(4);
    }

    /// Declare BAR `index`. A 64-bit BAR also takes `index + 1`. Panics on a bad declaration
    /// (a programming error of the device model, never guest input).
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u64) {
        let min = if kind.is_memory() { 16 } else { 4 };
        assert!(size.is_power_of_two() && size >= min, "BAR size {size:#x}");
        let wide = matches!(kind, BarKind::Mem64 { .. });
        assert!(index < NUM_BARS && (!wide || index + 1 < NUM_BARS));
        assert!(matches!(kind, BarKind::Mem64 { .. }) || size <= 1 << 31);
        self.bars[index] = Some(Bar {
            kind,
            size,
            address: 0,
        });
        self.set32(REG_BAR0 + 4 * index, kind.low_bits());
    }

    /// Append a capability with `id` and `body` (the bytes after ID and next pointer); returns
    /// its offset. Capability bytes are read-only.
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> usize {
        let off = self.next_cap_offset;
        let len = 2 + body.len();
        assert!(off + len <= CONFIG_SPACE_SIZE, "capabilities overflow");
        self.data[off] = id;
        self.data[off + 1] = 0;
        self.data[off + 2..off + len].copy_from_slice(body);
        match self.last_cap {
            Some(prev) => self.data[prev + 1] = off as u8,
            None => self.data[REG_CAPABILITIES] = off as u8,
        }
        let status = self.read16(REG_STATUS) | STATUS_CAP_LIST;
        self.set16(REG_STATUS, status);
        self.last_cap = Some(off);
        self.next_cap_offset = (off + len).next_multiple_of(4);
        off
    }

    fn set16(&mut self, off: usize, v: u16) {
        self.data[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set32(&mut self, off: usize, v: u32) {
        self.data[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn read16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.data[off], self.data[off + 1]])
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.read16(REG_COMMAND)
    }

    /// INTERRUPT_PIN (0 = none).
    pub fn interrupt_pin(&self) -> u8 {
        self.data[REG_INTERRUPT_PIN]
    }

    /// INTERRUPT_LINE as software last wrote it.
    pub fn interrupt_line(&self) -> u8 {
        self.data[REG_INTERRUPT_LINE]
    }

    /// BAR `index` as declared and programmed.
    pub fn bar(&self, index: usize) -> Option<Bar> {
        self.bars.get(index).copied().flatten()
    }

    /// Where BAR `index` decodes now: `None` if it does not exist, its space is disabled in
    /// the command register, or it is unprogrammed (address 0).
    pub fn bar_window(&self, index: usize) -> Option<(u64, u64)> {
        let bar = self.bar(index)?;
        let enable = if bar.kind.is_memory() {
            COMMAND_MEMORY
        } else {
            COMMAND_IO
        };
        if self.command() & enable == 0 || bar.address == 0 {
            return None;
        }
        Some((bar.address, bar.size))
    }

    /// The BAR whose register (low or high dword) is at config offset `dword`.
    fn bar_at(&self, dword: usize) -> Option<(usize, bool)> {
        if !(REG_BAR0..REG_BAR0 + 4 * NUM_BARS).contains(&dword) {
            return None;
        }
        let i = (dword - REG_BAR0) / 4;
        if self.bars[i].is_some() {
            return Some((i, false));
        }
        if i > 0 {
            if let Some(Bar {
                kind: BarKind::Mem64 { .. },
                ..
            }) = self.bars[i - 1]
            {
                return Some((i - 1, true));
            }
        }
        None
    }

    /// The dword at `dword` (4-aligned) as the guest reads it.
    fn read_dword(&self, dword: usize) -> u32 {
        if let Some((i, high)) = self.bar_at(dword) {
            let bar = self.bars[i].expect("bar_at returns declared BARs");
            return if high {
                (bar.address >> 32) as u32
            } else {
                // Addresses are size-aligned, so the type bits are free.
                bar.address as u32 | bar.kind.low_bits()
            };
        }
        u32::from_le_bytes(self.data[dword..dword + 4].try_into().expect("4 bytes"))
    }

    /// Read `size` (1, 2, 4) bytes at `offset`; accesses that cross a dword or leave the space
    /// read as all ones.
    pub fn read(&self, offset: usize, size: usize) -> u32 {
        if !matches!(size, 1 | 2 | 4) || offset % 4 + size > 4 || offset >= CONFIG_SPACE_SIZE {
            return u32::MAX >> (32 - 8 * size.clamp(1, 4));
        }
        let dword = offset & !3;
        let v = self.read_dword(dword) >> (8 * (offset & 3));
        if size == 4 {
            v
        } else {
            v & ((1u32 << (8 * size)) - 1)
        }
    }

    /// Write the low `size` bytes of `value` at `offset` with the register semantics.
    pub fn write(&mut self, offset: usize, size: usize, value: u32) {
        if !matches!(size, 1 | 2 | 4) || offset % 4 + size > 4 || offset >= CONFIG_SPACE_SIZE {
            return;
        }
        let dword = offset & !3;
        if let Some((i, high)) = self.bar_at(dword) {
            // Merge the written bytes into the current register value, then apply the mask.
            let shift = 8 * (offset & 3);
            let bytes = if size == 4 {
                u32::MAX
            } else {
                ((1u32 << (8 * size)) - 1) << shift
            };
            let cur = self.read_dword(dword);
            let new = (cur & !bytes) | ((value << shift) & bytes);
            let bar = self.bars[i].as_mut().expect("bar_at returns declared BARs");
            let mask = !(bar.size - 1);
            if high {
                bar.address = ((u64::from(new) << 32) | (bar.address & 0xFFFF_FFFF)) & mask;
            } else {
                let low_mask = if bar.kind == BarKind::Io {
                    !3u32
                } else {
                    !0xFu32
                };
                let addr = u64::from(new & low_mask);
                bar.address = match bar.kind {
                    BarKind::Mem64 { .. } => (bar.address & !0xFFFF_FFFF) | addr,
                    _ => addr,
                } & mask;
                if bar.kind == BarKind::Io {
                    bar.address &= 0xFFFF;
                }
            }
            return;
        }
        if dword == REG_ROM_ADDRESS {
            return;
        }
        for k in 0..size {
            let o = offset + k;
            let b = (value >> (8 * k)) as u8;
            self.data[o] = (self.data[o] & !self.wmask[o]) | (b & self.wmask[o]);
        }
    }
}

/// The outcome of a BAR write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Done.
    Done,
    /// The device has work that needs guest memory: call [`PciBus::service`] soon.
    NeedsService,
}

/// A PCI function on the bus.
pub trait PciDevice: Any {
    /// The configuration space.
    fn config(&self) -> &PciConfig;
    /// The configuration space, mutably.
    fn config_mut(&mut self) -> &mut PciConfig;
    /// Read `data.len()` bytes at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// Write `data` at `offset` inside BAR `bar`.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) -> Access;
    /// Do deferred work with guest memory (after [`Access::NeedsService`]).
    fn service(&mut self, _mem: &mut dyn GuestMemory) {}
    /// The device's INTx output, before the command register's INTx disable.
    fn intx_level(&self) -> bool {
        false
    }
    /// For downcasting to the concrete device.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Make completed writes durable (disks flush their backend).
    fn flush(&mut self) -> Result<(), crate::block::BlockError> {
        Ok(())
    }

    /// A config space read (the bus adds status bit 3 from [`PciDevice::intx_level`]). Devices
    /// with config registers that have side effects override it.
    fn config_read(&mut self, offset: usize, size: usize) -> u32 {
        self.config().read(offset, size)
    }
    /// A config space write. Devices with config registers that act override it; it may ask
    /// for service like a BAR write.
    fn config_write(&mut self, offset: usize, size: usize, value: u32) -> Access {
        self.config_mut().write(offset, size, value);
        Access::Done
    }
    /// The function's state, for a snapshot (by default: its configuration space alone).
    fn state(&self) -> PciDeviceState {
        PciDeviceState::Config(self.config().state())
    }
    /// Put back a saved state.
    fn set_state(&mut self, state: &PciDeviceState) -> Result<(), StateError> {
        match state {
            PciDeviceState::Config(c) => self.config_mut().set_state(c),
            _ => Err(StateError::new(
                "PCI",
                "a different kind of device was saved in this slot",
            )),
        }
    }
}

/// The bus's state for a snapshot: the conf1 address latch and each plugged function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PciBusState {
    pub address: u32,
    pub service_requested: bool,
    /// (device number, state) in slot order.
    pub devices: Vec<(u8, PciDeviceState)>,
}

/// A device on the bus with the interrupt line the board wired its INTx to.
struct Slot {
    dev: Box<dyn PciDevice>,
    irq: Option<u8>,
}

/// A decoded BAR window, cached for dispatch.
#[derive(Debug, Clone, Copy)]
struct Window {
    base: u64,
    end: u64,
    slot: usize,
    bar: usize,
    io: bool,
}

/// Bus 0: up to 32 single-function devices, and the configuration mechanism #1 ports.
pub struct PciBus {
    address: u32,
    slots: Vec<Option<Slot>>,
    windows: Vec<Window>,
    /// A config space write asked for service.
    service_requested: bool,
}

impl Default for PciBus {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PciBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciBus")
            .field("address", &format_args!("{:#x}", self.address))
            .field("windows", &self.windows)
            .finish()
    }
}

/// Why BARs could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignError(pub String);

impl std::fmt::Display for AssignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AssignError {}

impl PciBus {
    /// An empty bus.
    pub fn new() -> Self {
        PciBus {
            address: 0,
            slots: (0..32).map(|_| None).collect(),
            windows: Vec::new(),
            service_requested: false,
        }
    }

    /// The bus and every function, for a snapshot.
    pub fn state(&self) -> PciBusState {
        PciBusState {
            address: self.address,
            service_requested: self.service_requested,
            devices: self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i as u8, s.as_ref()?.dev.state())))
                .collect(),
        }
    }

    /// Put back a saved state: the same functions must be plugged in the same slots.
    pub fn set_state(&mut self, s: &PciBusState) -> Result<(), StateError> {
        let plugged: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect();
        let saved: Vec<usize> = s.devices.iter().map(|(i, _)| *i as usize).collect();
        if plugged != saved {
            return Err(StateError::new(
                "PCI bus",
                format!("devices were saved in slots {saved:?}, this machine has {plugged:?}"),
            ));
        }
        for (i, d) in &s.devices {
            if let Some(Some(slot)) = self.slots.get_mut(*i as usize) {
                slot.dev.set_state(d)?;
            }
        }
        self.address = s.address;
        self.service_requested = s.service_requested;
        self.rebuild_windows();
        Ok(())
    }

    /// Plug `dev` in at device number `slot` (0..32, function 0), its INTx wired to 8259 line
    /// `irq`. Returns the device back if the slot is taken or out of range.
    pub fn add_device(
        &mut self,
        slot: usize,
        dev: Box<dyn PciDevice>,
        irq: Option<u8>,
    ) -> Result<(), Box<dyn PciDevice>> {
        match self.slots.get_mut(slot) {
            Some(s @ None) => {
                *s = Some(Slot { dev, irq });
                self.rebuild_windows();
                Ok(())
            }
            _ => Err(dev),
        }
    }

    /// The device at `slot`.
    pub fn device_mut(&mut self, slot: usize) -> Option<&mut dyn PciDevice> {
        Some(self.slots.get_mut(slot)?.as_mut()?.dev.as_mut())
    }

    /// Every device, in slot order.
    pub fn devices_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn PciDevice>> {
        self.slots.iter_mut().flatten().map(|s| &mut s.dev)
    }

    /// Firmware's job: place every BAR, naturally aligned, memory BARs in `mem` and I/O BARs
    /// in `io` (largest first, so nothing is wasted on alignment); enable the decoding of the
    /// spaces a device uses, and write INTERRUPT_LINE with the wired IRQ.
    pub fn assign_resources(
        &mut self,
        mem: std::ops::Range<u64>,
        io: std::ops::Range<u64>,
    ) -> Result<(), AssignError> {
        let mut want: Vec<(u64, usize, usize, bool)> = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            for b in 0..NUM_BARS {
                if let Some(bar) = slot.dev.config().bar(b) {
                    want.push((bar.size, s, b, bar.kind.is_memory()));
                }
            }
        }
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let (mut next_mem, mut next_io) = (mem.start, io.start);
        for (size, s, b, is_mem) in want {
            let (next, range) = if is_mem {
                (&mut next_mem, &mem)
            } else {
                (&mut next_io, &io)
            };
            let base = next.next_multiple_of(size);
            let end = base
                .checked_add(size)
                .filter(|&e| e <= range.end)
                .ok_or_else(|| {
                    AssignError(format!(
                    "PCI device {s:02x}.0 BAR {b}: {size:#x} bytes do not fit in [{:#x}, {:#x})",
                    range.start, range.end
                ))
                })?;
            *next = end;
            let dev = &mut self.slots[s].as_mut().expect("listed above").dev;
            dev.config_write(REG_BAR0 + 4 * b, 4, base as u32);
            if matches!(
                dev.config().bar(b).map(|x| x.kind),
                Some(BarKind::Mem64 { .. })
            ) {
                dev.config_write(REG_BAR0 + 4 * (b + 1), 4, (base >> 32) as u32);
            }
            let cmd = dev.config().command() | if is_mem { COMMAND_MEMORY } else { COMMAND_IO };
            dev.config_write(REG_COMMAND, 2, u32::from(cmd));
        }
        for slot in self.slots.iter_mut().flatten() {
            if let (Some(irq), true) = (slot.irq, slot.dev.config().interrupt_pin() != 0) {
                slot.dev.config_write(REG_INTERRUPT_LINE, 1, u32::from(irq));
            }
        }
        self.rebuild_windows();
        Ok(())
    }

    fn rebuild_windows(&mut self) {
        self.windows.clear();
        for (s, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let c = slot.dev.config();
            for b in 0..NUM_BARS {
                if let (Some((base, size)), Some(bar)) = (c.bar_window(b), c.bar(b)) {
                    let Some(end) = base.checked_add(size) else {
                        continue;
                    };
                    self.windows.push(Window {
                        base,
                        end,
                        slot: s,
                        bar: b,
                        io: !bar.kind.is_memory(),
                    });
                }
            }
        }
    }

    fn find(&self, addr: u64, len: u64, io: bool) -> Option<(usize, usize, u64)> {
        self.windows.iter().find_map(|w| {
            (w.io == io && addr >= w.base && addr.checked_add(len)? <= w.end)
                .then(|| (w.slot, w.bar, addr - w.base))
        })
    }

    /// Does a memory BAR decode `paddr`?
    pub fn claims_mmio(&self, paddr: u64) -> bool {
        self.find(paddr, 1, false).is_some()
    }

    /// A memory read of `data.len()` bytes at `paddr`; `false` if no BAR decodes it.
    pub fn mmio_read(&mut self, paddr: u64, data: &mut [u8]) -> bool {
        let Some((s, b, off)) = self.find(paddr, data.len() as u64, false) else {
            return false;
        };
        let dev = &mut self.slots[s].as_mut().expect("window of a device").dev;
        dev.bar_read(b, off, data);
        true
    }

    /// A memory write at `paddr`; `None` if no BAR decodes it.
    pub fn mmio_write(&mut self, paddr: u64, data: &[u8]) -> Option<Access> {
        let (s, b, off) = self.find(paddr, data.len() as u64, false)?;
        let dev = &mut self.slots[s].as_mut().expect("window of a device").dev;
        Some(dev.bar_write(b, off, data))
    }

    /// An I/O read at `port` inside an I/O BAR; `None` if no BAR decodes it.
    pub fn io_read(&mut self, port: u16, size: u8) -> Option<u32> {
        let (s, b, off) = self.find(u64::from(port), u64::from(size), true)?;
        let dev = &mut self.slots[s].as_mut().expect("window of a device").dev;
        let mut buf = [0u8; 4];
        let n = usize::from(size).min(4);
        dev.bar_read(b, off, &mut buf[..n]);
        Some(u32::from_le_bytes(buf))
    }

    /// An I/O write at `port` inside an I/O BAR; `None` if no BAR decodes it.
    pub fn io_write(&mut self, port: u16, size: u8, value: u32) -> Option<Access> {
        let (s, b, off) = self.find(u64::from(port), u64::from(size), true)?;
        let dev = &mut self.slots[s].as_mut().expect("window of a device").dev;
        let n = usize::from(size).min(4);
        Some(dev.bar_write(b, off, &value.to_le_bytes()[..n]))
    }

    /// Let every device do its deferred work with guest memory. Devices that are not bus
    /// masters get no memory (their work waits until the driver enables bus mastering).
    pub fn service(&mut self, mem: &mut dyn GuestMemory) {
        for slot in self.slots.iter_mut().flatten() {
            if slot.dev.config().command() & COMMAND_MASTER != 0 {
                slot.dev.service(mem);
            }
        }
    }

    /// Flush every function (see [`PciDevice::flush`]).
    pub fn flush(&mut self) -> Result<(), crate::block::BlockError> {
        for slot in self.slots.iter_mut().flatten() {
            slot.dev.flush()?;
        }
        Ok(())
    }

    /// Each populated slot's INTx wiring: (device number, line), for the firmware's routing
    /// table (ACPI `_PRT`).
    pub fn intx_routes(&self) -> Vec<(usize, u8)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(n, s)| Some((n, s.as_ref()?.irq?)))
            .collect()
    }

    /// The 8259 lines PCI devices are wired to (bit n = IRQ n).
    pub fn irq_lines(&self) -> u16 {
        self.slots
            .iter()
            .flatten()
            .filter_map(|s| s.irq)
            .filter(|&l| l < 16)
            .fold(0, |m, l| m | 1 << l)
    }

    /// The asserted lines (bit n = IRQ n): the OR of the INTx outputs wired to each line,
    /// leaving out devices whose INTx is disabled in the command register.
    pub fn irq_levels(&self) -> u16 {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.dev.intx_level() && s.dev.config().command() & COMMAND_INTX_DISABLE == 0)
            .filter_map(|s| s.irq)
            .filter(|&l| l < 16)
            .fold(0, |m, l| m | 1 << l)
    }

    /// The function the address register selects, and the register offset, if enabled.
    fn selected(&self) -> Option<(usize, usize)> {
        let a = self.address;
        if a & 0x8000_0000 == 0 {
            return None;
        }
        let bus = (a >> 16) & 0xFF;
        let dev = ((a >> 11) & 0x1F) as usize;
        let func = (a >> 8) & 7;
        if bus != 0 || func != 0 || self.slots[dev].is_none() {
            return None;
        }
        Some((dev, (a & 0xFC) as usize))
    }

    /// Read config space of bus 0 device `slot`, function 0, as the guest sees it: status
    /// bit 3 (interrupt status) follows the device's INTx.
    pub fn config_read(&mut self, slot: usize, offset: usize, size: usize) -> u32 {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return u32::MAX;
        };
        let v = s.dev.config_read(offset, size);
        let status_bit = REG_STATUS * 8 + 3; // STATUS_INTERRUPT's bit index in config space
        let first = offset * 8;
        if s.dev.intx_level() && (first..first + 8 * size).contains(&status_bit) {
            v | 1 << (status_bit - first)
        } else {
            v
        }
    }

    /// Did a config space write since the last call ask for [`PciBus::service`]?
    pub fn take_service_request(&mut self) -> bool {
        std::mem::take(&mut self.service_requested)
    }
}

impl PioDevice for PciBus {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let ones = if size >= 4 {
            u32::MAX
        } else {
            (1u32 << (8 * size)) - 1
        };
        match port {
            CONFIG_ADDRESS if size == 4 => self.address,
            CONFIG_DATA..=0xCFF => {
                let byte = usize::from(port - CONFIG_DATA);
                match self.selected() {
                    Some((s, reg)) if byte + usize::from(size) <= 4 => {
                        self.config_read(s, reg + byte, usize::from(size))
                    }
                    _ => ones,
                }
            }
            _ => ones,
        }
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        match port {
            CONFIG_ADDRESS if size == 4 => self.address = value & 0x80FF_FFFC,
            CONFIG_DATA..=0xCFF => {
                let byte = usize::from(port - CONFIG_DATA);
                if let Some((s, reg)) = self.selected() {
                    if byte + usize::from(size) <= 4 {
                        let dev = &mut self.slots[s].as_mut().expect("selected").dev;
                        let a = dev.config_write(reg + byte, usize::from(size), value);
                        self.service_requested |= a == Access::NeedsService;
                        self.rebuild_windows();
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
