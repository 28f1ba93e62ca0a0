//! Machine snapshots of the bundled guest through the machine API: a restored shell answers,
//! a run cut by save/restore under `-icount` is byte-identical to a straight run (serial
//! output and disk), and bad files and mismatching disks are refused with clear errors.

use flate2::read::GzDecoder;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tci64_devices::block::{BlockBackend, BlockError, CowBackend, MemBackend};
use tci64_machine::{
    DiskConfig, HostClock, Machine, MachineConfig, MachineType, RestoreOptions, RunExit,
    SnapshotError, TraceFlags,
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

/// A disk the test can read back and hand to a second machine.
#[derive(Clone)]
struct SharedDisk(Arc<Mutex<Vec<u8>>>);

impl BlockBackend for SharedDisk {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let d = self.0.lock().unwrap();
        let end = offset as usize + buf.len();
        let src = d.get(offset as usize..end).ok_or(BlockError::OutOfRange {
            offset,
            len: buf.len() as u64,
            size: d.len() as u64,
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        let mut d = self.0.lock().unwrap();
        let size = d.len() as u64;
        let dst = d
            .get_mut(offset as usize..offset as usize + buf.len())
            .ok_or(BlockError::OutOfRange {
                offset,
                len: buf.len() as u64,
                size,
            })?;
        dst.copy_from_slice(buf);
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

fn clock() -> Box<dyn HostClock> {
    Box::new(Clock(Instant::now()))
}

fn config(
    kind: MachineType,
    mib: u64,
    cmdline: &str,
    disks: Vec<DiskConfig>,
    icount: Option<u32>,
) -> MachineConfig {
    MachineConfig {
        ram_bytes: mib << 20,
        kernel: guest_file("tiny.bzImage"),
        kernel_name: "guest/tiny.bzImage".into(),
        initrd: Some(guest_file("initramfs.cpio.gz")),
        cmdline: cmdline.into(),
        disks,
        icount_shift: icount,
        rtc_epoch_secs: 1_700_000_000,
        trace: TraceFlags::default(),
        virtio_legacy: false,
        machine: kind,
        // The tiny kernel has no ACPI: its microvm disks go on the command line (acpi=off).
        platform: tci64_machine::PlatformConfig {
            acpi: false,
            ..Default::default()
        },
    }
}

fn disk_of(d: &SharedDisk) -> DiskConfig {
    DiskConfig {
        backend: Box::new(d.clone()),
        read_only: false,
    }
}

fn restore(file: &[u8], disks: Vec<DiskConfig>) -> Result<Machine, SnapshotError> {
    Machine::restore(
        file,
        RestoreOptions {
            disks,
            clock: clock(),
            trace: TraceFlags::default(),
            max_ram_bytes: None,
        },
    )
}

/// Run in `chunk`-instruction calls until `stop(output)` holds, the guest resets, or
/// `limit` instructions in all. Returns whether the guest reset.
fn run_until(
    m: &mut Machine,
    out: &mut Vec<u8>,
    chunk: u64,
    limit: u64,
    mut stop: impl FnMut(&[u8]) -> bool,
) -> bool {
    let start = Instant::now();
    while m.stats().guest_instructions < limit {
        let e = m.run(chunk.min(limit - m.stats().guest_instructions));
        out.extend(m.take_serial_output());
        if stop(out) {
            return false;
        }
        match e {
            RunExit::Reset | RunExit::PowerOff => return true,
            RunExit::Halted => panic!("halted:\n{}", String::from_utf8_lossy(out)),
            RunExit::Idle { .. } => std::thread::sleep(std::time::Duration::from_micros(200)),
            RunExit::Budget => {}
            RunExit::Debug(d) => panic!("a debug stop ({d:?}) with no breakpoint set"),
        }
        assert!(
            start.elapsed().as_secs() < 400,
            "timed out:\n{}",
            String::from_utf8_lossy(out)
        );
    }
    false
}

fn at_prompt(out: &[u8]) -> bool {
    let s = String::from_utf8_lossy(out);
    s.contains("GUEST-BOOT-OK") && s.trim_end_matches("\x1b[6n").ends_with("# ")
}

/// Type `input` and run until `want` appears in the output after it.
fn type_and_expect(m: &mut Machine, input: &[u8], want: &str) -> String {
    let mut pending = input.to_vec();
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        let n = m.serial_input(&pending);
        pending.drain(..n);
        let e = m.run(1 << 20);
        out.extend(m.take_serial_output());
        let s = String::from_utf8_lossy(&out).replace('\r', "");
        if s.contains(want) {
            return s;
        }
        assert!(
            !matches!(e, RunExit::Reset | RunExit::Halted | RunExit::PowerOff),
            "guest ended: {s}"
        );
        if matches!(e, RunExit::Idle { .. }) {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        assert!(start.elapsed().as_secs() < 120, "no {want:?} in:\n{s}");
    }
}

/// Boot to the shell, save, drop the machine, restore a new one from the bytes: it answers.
#[test]
fn restored_shell_answers() {
    for kind in [MachineType::Microvm, MachineType::Pc] {
        let disk = SharedDisk(Arc::new(Mutex::new(fresh_disk())));
        let mut m = Machine::new(
            config(
                kind,
                256,
                "console=ttyS0 panic=-1 reboot=t",
                vec![disk_of(&disk)],
                None,
            ),
            clock(),
        )
        .unwrap();
        let mut out = Vec::new();
        run_until(&mut m, &mut out, 1 << 20, u64::MAX, at_prompt);
        assert!(at_prompt(&out), "{kind:?}: no prompt");
        for codec in [
            tci64_machine::snapshot::CODEC_NONE,
            tci64_machine::snapshot::CODEC_LZ4,
            tci64_machine::snapshot::CODEC_DEFLATE,
        ] {
            let t = Instant::now();
            let (_, info) = m.save_with(codec).unwrap();
            eprintln!(
                "{kind:?}: codec {codec}: {} non-zero pages, raw body {} bytes, file {} bytes, {:?}",
                info.ram_pages,
                info.raw_bytes,
                info.file_bytes,
                t.elapsed()
            );
        }
        let t = Instant::now();
        let file = m.save().unwrap();
        eprintln!("{kind:?}: saved {} bytes in {:?}", file.len(), t.elapsed());
        drop(m);
        let t = Instant::now();
        let mut r = restore(&file, vec![disk_of(&disk)]).unwrap();
        eprintln!("{kind:?}: restored in {:?}", t.elapsed());
        let s = type_and_expect(&mut r, b"echo h''i\n", "\nhi\n");
        assert!(s.contains("echo h''i"), "{s}");
    }
}

/// Under `-icount`, the disk test run straight and the same run cut by a save and a restore
/// (taken mid-boot, with different host budgets on each side) give the same serial output
/// and the same disk, byte for byte; and the test passes.
#[test]
fn icount_run_is_the_same_across_save_and_restore() {
    let cmdline = "console=ttyS0 panic=-1 reboot=t guest.test=1";
    let limit = 3_000_000_000;
    let straight_disk = SharedDisk(Arc::new(Mutex::new(fresh_disk())));
    let mut a = Machine::new(
        config(
            MachineType::Microvm,
            256,
            cmdline,
            vec![disk_of(&straight_disk)],
            Some(0),
        ),
        clock(),
    )
    .unwrap();
    let mut straight = Vec::new();
    assert!(
        run_until(&mut a, &mut straight, 1 << 20, limit, |_| false),
        "the straight run did not finish:\n{}",
        String::from_utf8_lossy(&straight)
    );
    let total = a.stats().guest_instructions;
    drop(a);

    let cut_disk = SharedDisk(Arc::new(Mutex::new(fresh_disk())));
    let mut b = Machine::new(
        config(
            MachineType::Microvm,
            256,
            cmdline,
            vec![disk_of(&cut_disk)],
            Some(0),
        ),
        clock(),
    )
    .unwrap();
    let mut cut = Vec::new();
    // Cut while the guest is using the disk (after the boot banner, before the test ends).
    run_until(&mut b, &mut cut, 777_777, limit, |o| {
        String::from_utf8_lossy(o).contains("GUEST-BOOT-OK")
    });
    let at = b.stats().guest_instructions;
    assert!(at < total, "cut at {at} of {total}");
    let file = b.save().unwrap();
    drop(b);
    let mut c = restore(&file, vec![disk_of(&cut_disk)]).unwrap();
    assert_eq!(c.stats().guest_instructions, at);
    assert!(run_until(&mut c, &mut cut, 1_234_567, limit, |_| false));
    let s = String::from_utf8_lossy(&cut).replace('\r', "");
    assert!(s.contains("GUEST-TEST-DONE"), "{s}");
    let sums = String::from_utf8(guest_file("disk.sha256")).unwrap();
    let sha = format!("{}  /mnt/blob.bin", sums.split_whitespace().next().unwrap());
    assert!(s.contains(&sha), "{s}");
    assert_eq!(
        String::from_utf8_lossy(&straight),
        String::from_utf8_lossy(&cut),
        "serial output differs (cut at {at} of {total} instructions)"
    );
    assert_eq!(c.stats().guest_instructions, total);
    assert!(
        *straight_disk.0.lock().unwrap() == *cut_disk.0.lock().unwrap(),
        "the disks differ"
    );
}

/// A small snapshot taken early in the boot, with one 1 MiB disk.
fn small_snapshot(disk: &SharedDisk) -> Vec<u8> {
    let mut m = Machine::new(
        config(
            MachineType::Microvm,
            32,
            "console=ttyS0",
            vec![disk_of(disk)],
            Some(0),
        ),
        clock(),
    )
    .unwrap();
    m.run(200_000);
    m.save().unwrap()
}

fn err_of(r: Result<Machine, SnapshotError>) -> String {
    match r {
        Ok(_) => panic!("restored a bad snapshot"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_snapshots_are_clear_errors() {
    let disk = SharedDisk(Arc::new(Mutex::new(vec![0x5a; 1 << 20])));
    let good = small_snapshot(&disk);
    // The good one restores.
    restore(&good, vec![disk_of(&disk)]).unwrap();

    let e = err_of(restore(b"hello, I am a text file", vec![disk_of(&disk)]));
    assert!(e.starts_with("not a tci64 snapshot"), "{e}");

    let mut other = good.clone();
    other[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = err_of(restore(&other, vec![disk_of(&disk)]));
    assert!(e.starts_with("snapshot format version 7;"), "{e}");

    for cut in [10, 30, good.len() / 2, good.len() - 1] {
        let e = err_of(restore(&good[..cut], vec![disk_of(&disk)]));
        assert!(e.starts_with("the snapshot is truncated"), "cut {cut}: {e}");
    }

    for at in [40, good.len() / 3, good.len() - 10] {
        let mut flipped = good.clone();
        flipped[at] ^= 0x10;
        let e = err_of(restore(&flipped, vec![disk_of(&disk)]));
        assert!(e.starts_with("the snapshot is corrupt"), "byte {at}: {e}");
    }

    let e = err_of(Machine::restore(
        &good,
        RestoreOptions {
            disks: vec![disk_of(&disk)],
            clock: clock(),
            trace: TraceFlags::default(),
            max_ram_bytes: Some(16 << 20),
        },
    ));
    assert_eq!(
        e,
        "the snapshot's guest has 32 MiB of RAM; this build allows at most 16 MiB"
    );

    let other_disk = SharedDisk(Arc::new(Mutex::new(vec![0x5a; 1 << 20])));
    other_disk.0.lock().unwrap()[12345] = 0;
    let e = err_of(restore(&good, vec![disk_of(&other_disk)]));
    assert!(
        e.starts_with("disk 0: not the disk saved: its contents differ"),
        "{e}"
    );
    let short_disk = SharedDisk(Arc::new(Mutex::new(vec![0x5a; 1 << 19])));
    let e = err_of(restore(&good, vec![disk_of(&short_disk)]));
    assert!(
        e.starts_with("disk 0: not the disk saved: 524288 bytes"),
        "{e}"
    );
    let e = err_of(restore(&good, vec![]));
    assert_eq!(
        e,
        "the snapshot does not fit this machine: the snapshot has 1 disk(s), 0 given"
    );
}

/// A copy-on-write disk's overlay travels in the snapshot; restoring needs an overlay disk.
#[test]
fn copy_on_write_overlay_is_saved() {
    let base = vec![0x11u8; 1 << 20];
    let mut cow = CowBackend::new(MemBackend::new(base.clone()));
    cow.write_at(8192, b"guest wrote this").unwrap();
    let mut m = Machine::new(
        config(
            MachineType::Microvm,
            32,
            "console=ttyS0",
            vec![DiskConfig {
                backend: Box::new(cow),
                read_only: false,
            }],
            Some(0),
        ),
        clock(),
    )
    .unwrap();
    m.run(100_000);
    let file = m.save().unwrap();
    let fresh = || DiskConfig {
        backend: Box::new(CowBackend::new(MemBackend::new(base.clone()))),
        read_only: false,
    };
    let r = restore(&file, vec![fresh()]);
    assert!(r.is_ok(), "{:?}", r.err().map(|e| e.to_string()));
    let e = err_of(restore(
        &file,
        vec![DiskConfig {
            backend: Box::new(MemBackend::new(base.clone())),
            read_only: false,
        }],
    ));
    assert!(e.contains("attach it with snapshot=on"), "{e}");
}
