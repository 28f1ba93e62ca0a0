//! Boot the bundled Linux guest through the machine API: the guest protocol's disk test, and
//! the interactive shell answering over the serial port.

use flate2::read::GzDecoder;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tci64_devices::block::{BlockBackend, BlockError};
use tci64_machine::{
    DiskConfig, HostClock, Machine, MachineConfig, MachineType, RunExit, TraceFlags,
};

fn guest_file(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("guest")
        .join(name);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("the bundled guest file {} is missing: {e}", p.display()))
}

fn fresh_disk() -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(&guest_file("disk.ext2.gz")[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A disk the test can read back after the machine is done with it.
#[derive(Clone)]
struct SharedDisk(Arc<Mutex<Vec<u8>>>);

impl BlockBackend for SharedDisk {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let d = self.0.lock().unwrap();
        let end = offset as usize + buf.len();
        if end > d.len() {
            return Err(BlockError::OutOfRange {
                offset,
                len: buf.len() as u64,
                size: d.len() as u64,
            });
        }
        buf.copy_from_slice(&d[offset as usize..end]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        let mut d = self.0.lock().unwrap();
        let end = offset as usize + buf.len();
        if end > d.len() {
            return Err(BlockError::OutOfRange {
                offset,
                len: buf.len() as u64,
                size: d.len() as u64,
            });
        }
        d[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

struct Clock(Instant);
impl HostClock for Clock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

fn machine(cmdline: &str, disk: Option<SharedDisk>) -> Machine {
    machine_of(MachineType::Microvm, cmdline, disk)
}

fn machine_of(kind: MachineType, cmdline: &str, disk: Option<SharedDisk>) -> Machine {
    let config = MachineConfig {
        ram_bytes: 256 << 20,
        kernel: guest_file("tiny.bzImage"),
        kernel_name: "guest/tiny.bzImage".into(),
        initrd: Some(guest_file("initramfs.cpio.gz")),
        cmdline: cmdline.into(),
        disks: disk
            .into_iter()
            .map(|d| DiskConfig {
                backend: Box::new(d),
                read_only: false,
            })
            .collect(),
        icount_shift: None,
        rtc_epoch_secs: 1_700_000_000,
        trace: TraceFlags::default(),
        virtio_legacy: false,
        machine: kind,
        // As the CLI builds them: -M pc always has its ACPI tables (the tiny kernel ignores
        // them); on microvm the tiny kernel, which has no ACPI, needs acpi=off to be told
        // about its disk.
        platform: tci64_machine::PlatformConfig {
            acpi: kind == MachineType::Pc,
            ..Default::default()
        },
    };
    Machine::new(config, Box::new(Clock(Instant::now()))).expect("machine")
}

/// Run until the guest resets (its way of exiting) or `secs` of wall time pass; returns the
/// serial output and whether it exited by itself.
fn run(
    m: &mut Machine,
    secs: u64,
    mut on_output: impl FnMut(&mut Machine, &str),
) -> (String, bool) {
    let start = Instant::now();
    let mut out = String::new();
    loop {
        let e = m.run(2_000_000);
        let bytes = m.take_serial_output();
        out.push_str(&String::from_utf8_lossy(&bytes));
        on_output(m, &out);
        match e {
            RunExit::Reset => return (out, true),
            RunExit::Halted | RunExit::PowerOff => return (out, false),
            RunExit::Idle { .. } => std::thread::sleep(std::time::Duration::from_micros(200)),
            RunExit::Budget => {}
            RunExit::Debug(d) => panic!("a debug stop ({d:?}) with no breakpoint set"),
        }
        if start.elapsed().as_secs() > secs {
            return (out, false);
        }
    }
}

#[test]
fn tiny_guest_disk_test() {
    disk_test(MachineType::Microvm);
}

/// The same over PCI: conf1 scan, virtio-blk-pci with INTx on a level-triggered 8259 line.
#[test]
fn tiny_guest_disk_test_pc() {
    disk_test(MachineType::Pc);
}

fn disk_test(kind: MachineType) {
    let disk = SharedDisk(Arc::new(Mutex::new(fresh_disk())));
    let mut m = machine_of(
        kind,
        "console=ttyS0 panic=-1 reboot=t guest.test=1",
        Some(disk.clone()),
    );
    let (out, exited) = run(&mut m, 240, |_, _| {});
    let want_sha = String::from_utf8(guest_file("disk.sha256")).unwrap();
    let want_sha = want_sha.split_whitespace().next().unwrap().to_string();
    assert!(out.contains("GUEST-BOOT-OK"), "no GUEST-BOOT-OK in:\n{out}");
    assert!(
        out.contains("DISK: hello from virtio-blk"),
        "no DISK line in:\n{out}"
    );
    assert!(
        out.contains(&format!("{want_sha}  /mnt/blob.bin")),
        "wrong or no sha256 in:\n{out}"
    );
    assert!(
        out.contains("GUEST-TEST-DONE"),
        "no GUEST-TEST-DONE in:\n{out}"
    );
    assert!(exited, "the guest did not exit by itself:\n{out}");
    let d = disk.0.lock().unwrap();
    assert!(
        d.windows(16).any(|w| w == b"written-by-guest"),
        "written.txt's content is not in the disk image"
    );
}

#[test]
fn tiny_guest_shell_answers() {
    let mut m = machine("console=ttyS0 panic=-1 reboot=t", None);
    let mut sent = false;
    let mut pending: Vec<u8> = Vec::new();
    let (out, _) = run(&mut m, 240, |m, out| {
        // The prompt is followed by a cursor-position query (ESC [6n) that busybox sends.
        let prompt = out.trim_end_matches("\x1b[6n");
        if !sent && out.contains("GUEST-BOOT-OK") && prompt.ends_with("# ") {
            sent = true;
            pending.extend_from_slice(b"echo hel''lo; exit\n");
        }
        // The UART's receive FIFO holds 16 bytes: offer the rest as it drains.
        let n = m.serial_input(&pending);
        pending.drain(..n);
    });
    assert!(sent, "never saw a shell prompt:\n{out}");
    assert!(out.contains("\nhello"), "the shell did not answer:\n{out}");
}
