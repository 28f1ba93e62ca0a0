//! Boot images: bzImage, ELF vmlinux and initrd placement against machines of varying RAM.
//!
//! Input: byte 0 picks the RAM size, byte 1 the flags (bit 0 `-M pc`, bit 1 "patch the
//! bundled kernel" mode, bit 2 an initrd, bit 3 legacy virtio-mmio, bit 4 the legacy PIC-only platform, bits 5/6
//! no ACPI / no x2APIC), bytes 2..6 the initrd
//! length. In raw mode the rest is the kernel (then the initrd); in patch mode the rest is a
//! list of patches (offset u32, length u8, bytes) applied to the bundled `guest/tiny.bzImage`
//! (so the setup header, the ELF-like payload offsets and the protocol fields of a real kernel
//! are mutated), then the initrd.
//!
//! Expected: `Machine::new` returns a clear `Err` or a machine that then runs a bounded
//! budget; never a panic, and no allocation beyond the RAM asked for plus a small multiple of
//! the input (checked by the counting allocator in [`crate::alloc`]).

use tci64_machine::{HostClock, Machine, MachineConfig, MachineType, PlatformConfig, TraceFlags};

/// The bundled kernel (the seed of patch mode).
pub static TINY_BZIMAGE: &[u8] = include_bytes!("../../guest/tiny.bzImage");

/// Instructions run after a successful load.
pub const BUDGET: u64 = 5_000;

struct FixedClock;
impl HostClock for FixedClock {
    fn now_ns(&self) -> u64 {
        0
    }
}

/// RAM sizes to try: small, unaligned, below the minimum, the usual ones, one past 4 GiB
/// (high RAM) is left out because the fuzzer's malloc limit would count it.
fn ram_bytes(sel: u8) -> u64 {
    match sel % 12 {
        0 => 2 << 20,
        1 => (2 << 20) - 4096,
        2 => 0,
        3 => (32 << 20) + 512,
        4 => 16 << 20,
        5 => 32 << 20,
        6 => 64 << 20,
        7 => 128 << 20,
        8 => 256 << 20,
        9 => 1 << 30,
        10 => 3 << 20,
        _ => (u64::from(sel) << 20) + 4096,
    }
}

/// The fuzz target.
pub fn boot_image(data: &[u8]) {
    let [sel, flags, a, b, c, d, rest @ ..] = data else {
        return;
    };
    let ram = ram_bytes(*sel);
    let initrd_len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
    let (kernel, initrd_src) = if flags & 2 != 0 {
        let mut k = TINY_BZIMAGE.to_vec();
        let mut r = rest;
        while let [o0, o1, o2, o3, n, tail @ ..] = r {
            let off = u32::from_le_bytes([*o0, *o1, *o2, *o3]) as usize % k.len();
            let n = usize::from(*n).min(tail.len());
            let end = (off + n).min(k.len());
            k[off..end].copy_from_slice(&tail[..end - off]);
            r = &tail[n..];
            if n == 0 {
                break;
            }
        }
        (k, r)
    } else {
        let split = rest.len() - initrd_len.min(rest.len());
        let (k, i) = if flags & 4 != 0 {
            rest.split_at(split)
        } else {
            (rest, &[][..])
        };
        (k.to_vec(), i)
    };
    let initrd = (flags & 4 != 0).then(|| initrd_src.to_vec());
    let input_len = kernel.len() + initrd.as_ref().map_or(0, Vec::len);
    let config = MachineConfig {
        ram_bytes: ram,
        kernel,
        kernel_name: "fuzz".into(),
        initrd,
        cmdline: "console=ttyS0".into(),
        disks: Vec::new(),
        icount_shift: Some(0),
        rtc_epoch_secs: 0,
        trace: TraceFlags::default(),
        virtio_legacy: flags & 8 != 0,
        machine: if flags & 1 != 0 {
            MachineType::Pc
        } else {
            MachineType::Microvm
        },
        platform: if flags & 16 != 0 {
            PlatformConfig::legacy()
        } else {
            PlatformConfig {
                acpi: flags & 32 == 0,
                x2apic: flags & 64 == 0,
                ..PlatformConfig::default()
            }
        },
    };
    let limit = crate::alloc::Limit::new(ram as usize + 4 * input_len + (64 << 20));
    match Machine::new(config, Box::new(FixedClock)) {
        Ok(mut m) => {
            let mut left = BUDGET;
            while left > 0 {
                let before = m.cpu().icount();
                match m.run(left) {
                    tci64_machine::RunExit::Budget | tci64_machine::RunExit::Idle { .. } => {}
                    _ => break,
                }
                let ran = m.cpu().icount() - before;
                if ran == 0 {
                    break;
                }
                left = left.saturating_sub(ran);
            }
            let _ = m.take_serial_output();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "error is not one line: {msg:?}"
            );
        }
    }
    limit.check();
}
