//! Fuzz targets for tci64, as plain library functions: the libFuzzer binaries in
//! `fuzz_targets/` call them, and `tests/corpus.rs` replays every input checked in under
//! `corpus/TARGET/` through them with `cargo test`, so CI re-runs every crash ever found.
//!
//! | target | surface |
//! |---|---|
//! | [`boot_image::boot_image`] | bzImage / ELF / initrd placement vs RAM size |
//! | [`virtio_script::virtio_script`] | virtio-mmio v1/v2 and virtio-pci with virtio-blk, as a hostile driver |
//! | [`guest_code::guest_code`] | random code at CPL 0/3, 64-bit and compat; optimizer on vs off |
//! | [`device_regs::device_regs`] | 16550, 8259, 8254, RTC, i8042, port 0x92/0xCF9, PCI conf1 |
//! | [`cli_args::cli_args`] | the CLI's option parsers |
//! | [`snapshot_file::snapshot_file`] | the machine-snapshot loader (length and CRC repaired) |
//!
//! Each target panics when a property fails; that is what libFuzzer reports as a crash.

pub mod alloc;
pub mod boot_image;
pub mod cli_args;
pub mod device_regs;
pub mod guest_code;
pub mod mutate;
pub mod snapshot_file;
pub mod virtio_script;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// A target body.
pub type Target = fn(&[u8]);

/// The targets by name (`scripts/fuzz.sh` runs them in this order).
pub const TARGETS: [(&str, Target); 6] = [
    ("boot_image", boot_image::boot_image),
    ("virtio_script", virtio_script::virtio_script),
    ("guest_code", guest_code::guest_code),
    ("device_regs", device_regs::device_regs),
    ("cli_args", cli_args::cli_args),
    ("snapshot_file", snapshot_file::snapshot_file),
];
