//! What a host asks the machine to be: RAM, kernel, initrd, command line, disks, tracing.

/// One virtio-blk disk.
pub struct DiskConfig {
    /// The backing store (a mapped file natively, a byte buffer in the browser).
    pub backend: Box<dyn tci64_devices::block::BlockBackend>,
    /// Writes fail with an I/O error status.
    pub read_only: bool,
}

/// `-d` trace items, as QEMU spells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceFlags {
    pub in_asm: bool,
    pub op: bool,
    pub op_opt: bool,
    pub exec: bool,
    pub cpu: bool,
    pub int: bool,
    pub unimp: bool,
}

/// Which board to build (`-M`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MachineType {
    /// QEMU `microvm,acpi=off`-like: virtio-mmio disks announced with `virtio_mmio.device=`.
    #[default]
    Microvm,
    /// QEMU `pc`-like (without firmware or ACPI): a PCI bus with an i440FX-like host bridge and
    /// virtio-blk-pci disks on 8259 IRQs 10/11.
    Pc,
}

/// Everything needed to build a [`crate::Machine`].
pub struct MachineConfig {
    /// Guest RAM size in bytes (`-m`).
    pub ram_bytes: u64,
    /// The kernel image (a bzImage).
    pub kernel: Vec<u8>,
    /// A name for the kernel in error messages (the file name natively).
    pub kernel_name: String,
    /// The initial ramdisk, if any.
    pub initrd: Option<Vec<u8>>,
    /// The kernel command line (`-append`); the machine appends its own device arguments.
    pub cmdline: String,
    /// virtio-blk disks in command-line order.
    pub disks: Vec<DiskConfig>,
    /// `-icount shift=N`: deterministic time, 2^N ns per guest instruction; `None` = real time.
    pub icount_shift: Option<u32>,
    /// The RTC's time at power-on, in seconds since the Unix epoch.
    pub rtc_epoch_secs: u64,
    /// What to trace (`-d`), written through the `log` crate at target `tci64::trace`.
    pub trace: TraceFlags,
    /// virtio-mmio transports in legacy (version 1) form, as QEMU's default; `false` = modern
    /// (version 2).
    pub virtio_legacy: bool,
    /// The board (`-M microvm` or `-M pc`).
    pub machine: MachineType,
}
