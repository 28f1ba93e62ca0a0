//! What a debugger (the CLI's GDB stub) and a monitor need from the machine: registers,
//! guest-virtual and physical memory without side effects, breakpoints, watchpoints and
//! single-step ([`Machine::step`]), and views of the devices and the memory map.
//!
//! Nothing here runs on the hot path: with no breakpoint or watchpoint set the CPU runs as
//! if this module did not exist.

use crate::adapters::{PciDev, VirtioMmioDev};
use crate::memmap::Region;
use crate::Machine;
use tci64_devices::i8259::PicChip;
use tci64_devices::lapic::Lapic;
use tci64_devices::virtio::blk::VirtioBlk;
use tci64_devices::virtio::pci::VirtioPci;
use tci64_engine::Watchpoint;
use tci64_x86::{DebugRegs, Mapping};

/// One disk as the monitor's `info block` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskView {
    /// `virtio-mmio@0xfeb00e00` or `virtio-blk-pci`.
    pub transport: String,
    /// Capacity in bytes.
    pub bytes: u64,
}

impl Machine {
    /// The registers as a debugger sees them.
    pub fn regs(&self) -> DebugRegs {
        self.cpu.debug_regs()
    }

    /// Change registers from a debugger. A selector whose descriptor cannot be loaded is
    /// refused, and then nothing changes.
    pub fn set_regs(&mut self, r: &DebugRegs) -> Result<(), tci64_x86::SelectorError> {
        self.cpu.set_debug_regs(r)
    }

    /// The width of the code the CPU runs now (16, 32 or 64), for disassembly.
    pub fn code_bits(&self) -> u32 {
        self.cpu.code_bits()
    }

    /// The physical address of guest-virtual `va` under the current page tables.
    pub fn virt_to_phys(&self, va: u64) -> Option<u64> {
        self.cpu.virt_to_phys(va)
    }

    /// Read guest-virtual memory (current CR3) without side effects: no TLB fill, no
    /// accessed/dirty bits, no fault. Returns the bytes read from the start of `buf`.
    pub fn read_virt(&self, va: u64, buf: &mut [u8]) -> usize {
        self.cpu.read_virt(va, buf)
    }

    /// Write guest-virtual memory (translated code stays coherent). Returns bytes written.
    pub fn write_virt(&mut self, va: u64, buf: &[u8]) -> usize {
        self.cpu.write_virt(va, buf)
    }

    /// Read guest-physical RAM; false if part of the range is not RAM (read as 0xff).
    pub fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> bool {
        self.cpu.read_phys(paddr, buf)
    }

    /// Write guest-physical RAM; false if part of the range is not RAM (dropped).
    pub fn write_phys(&mut self, paddr: u64, buf: &[u8]) -> bool {
        self.cpu.write_phys(paddr, buf)
    }

    /// The mappings of the current page tables.
    pub fn mappings(&self) -> Vec<Mapping> {
        self.cpu.mappings()
    }

    /// The registers in the layout of QEMU's `info registers`.
    pub fn format_registers(&self) -> String {
        self.cpu.format_registers()
    }

    /// Add a breakpoint at a guest-virtual PC (guest memory is not patched).
    pub fn add_breakpoint(&mut self, pc: u64) {
        self.cpu.engine.add_breakpoint(pc);
    }

    /// Remove a breakpoint; false if there was none at `pc`.
    pub fn remove_breakpoint(&mut self, pc: u64) -> bool {
        self.cpu.engine.remove_breakpoint(pc)
    }

    /// Add a watchpoint on guest-virtual memory.
    pub fn add_watchpoint(&mut self, w: Watchpoint) {
        self.cpu.engine.add_watchpoint(w);
    }

    /// Remove a watchpoint; false if there was none like `w`.
    pub fn remove_watchpoint(&mut self, w: Watchpoint) -> bool {
        self.cpu.engine.remove_watchpoint(w)
    }

    /// The breakpoints set (an address set twice appears twice).
    pub fn breakpoints(&self) -> &[u64] {
        self.cpu.core().debug().breakpoints()
    }

    /// The watchpoints set.
    pub fn watchpoints(&self) -> &[Watchpoint] {
        self.cpu.core().debug().watchpoints()
    }

    /// Remove every breakpoint and watchpoint.
    pub fn clear_debug(&mut self) {
        self.cpu.engine.clear_debug();
    }

    /// True while the CPU waits in HLT.
    pub fn halted(&self) -> bool {
        self.cpu.core().guest.halted
    }

    /// The two 8259 chips (master, slave), if the machine has them.
    pub fn pic_chips(&self) -> Option<[&PicChip; 2]> {
        self.board.intc.pic.as_ref().map(|p| [p.chip(0), p.chip(1)])
    }

    /// The local APICs (none with `-cpu qemu64,-apic`).
    pub fn lapics(&self) -> &[Lapic] {
        &self.board.intc.lapics
    }

    /// The memory map's regions.
    pub fn memory_regions(&self) -> &[Region] {
        self.board.map.regions()
    }

    /// The disks in the order the command line gave them.
    pub fn disks(&mut self) -> Vec<DiskView> {
        let mut out = Vec::new();
        for e in self.board.devices.entries_mut() {
            let any = e.dev.as_any_mut();
            if let Some(v) = any.downcast_mut::<VirtioMmioDev<VirtioBlk>>() {
                out.push(DiskView {
                    transport: format!("virtio-mmio@{:#x}", v.base),
                    bytes: v.dev.device_mut().backend_mut().size(),
                });
            } else if let Some(pci) = any.downcast_mut::<PciDev>() {
                for dev in pci.0.devices_mut() {
                    if let Some(blk) = dev.as_any_mut().downcast_mut::<VirtioPci<VirtioBlk>>() {
                        out.push(DiskView {
                            transport: "virtio-blk-pci".into(),
                            bytes: blk.device_mut().backend_mut().size(),
                        });
                    }
                }
            }
        }
        out
    }
}
