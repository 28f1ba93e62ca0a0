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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MachineType {
    /// QEMU `microvm,acpi=off`-like: virtio-mmio disks announced with `virtio_mmio.device=`.
    #[default]
    Microvm,
    /// QEMU `pc`-like (without firmware or ACPI): a PCI bus with an i440FX-like host bridge and
    /// virtio-blk-pci disks on 8259 IRQs 10/11.
    Pc,
}

/// The platform devices (`-M microvm,acpi=..,pic=..,pit=..,rtc=..`, `-cpu qemu64,-apic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlatformConfig {
    /// A local APIC per CPU and an IOAPIC (`-cpu qemu64,-apic` turns both off).
    pub apic: bool,
    /// CPUID advertises x2APIC (`-cpu qemu64,-x2apic` turns it off).
    pub x2apic: bool,
    /// ACPI tables (RSDP, XSDT, FADT, MADT, DSDT). On `-M microvm` this also decides how the
    /// virtio-mmio transports are announced: in the DSDT (on) or on the command line (off).
    pub acpi: bool,
    /// The 8259 pair.
    pub pic: bool,
    /// The 8254 PIT.
    pub pit: bool,
    /// The MC146818 RTC.
    pub rtc: bool,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            apic: true,
            x2apic: true,
            acpi: true,
            pic: true,
            pit: true,
            rtc: true,
        }
    }
}

impl PlatformConfig {
    /// Refuse combinations the machine cannot run.
    pub fn check(&self, machine: MachineType) -> Result<(), crate::MachineError> {
        let err = |m: &str| Err(crate::MachineError::Config(m.to_string()));
        if !self.apic && !self.pic {
            return err("pic=off needs the local APIC (drop -cpu qemu64,-apic): no interrupt controller is left");
        }
        if !self.apic && !self.pit {
            return err(
                "pit=off needs the local APIC timer (drop -cpu qemu64,-apic): no timer is left",
            );
        }
        if machine == MachineType::Microvm && self.acpi && !self.apic {
            return err("-M microvm with ACPI is hardware-reduced and needs the local APIC: add acpi=off or drop -cpu qemu64,-apic");
        }
        Ok(())
    }

    /// Today's legacy machine: no APIC, no ACPI (8259 + PIT).
    pub fn legacy() -> Self {
        PlatformConfig {
            apic: false,
            x2apic: false,
            acpi: false,
            ..Default::default()
        }
    }
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
    /// Interrupt controllers, firmware tables and the optional legacy devices.
    pub platform: PlatformConfig,
}
