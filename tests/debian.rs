//! Debian's stock kernel on both machines, as a user runs it: the `tci64` binary with QEMU's
//! defaults (local APIC, IOAPIC and ACPI tables; no `acpi=off`, no `-cpu qemu64,-apic`) and the
//! guest protocol's command line without a test switch, so the guest's shell comes up. One boot
//! per machine does every check:
//!
//! - the kernel log shows our ACPI tables found (RSDP at 0xE0000, XSDT, FACP, APIC, DSDT) and
//!   no ACPI error or warning;
//! - the guest protocol's disk test: the `guest.test=1` block of the guest's own `/init`, run
//!   from the shell (so that the same boot can go on), must print the `DISK:` line, the
//!   blob's sha256 and GUEST-TEST-DONE, and leave `written-by-guest` in the disk image;
//! - `/proc/interrupts` shows the local APIC timer (LOC) counting and the disk's interrupt
//!   delivered;
//! - `poweroff -f` (ACPI S5) ends tci64 with status 0.
//!
//! The kernel and its initramfs come from `scripts/fetch-debian-kernel.sh` (run by
//! `scripts/setup.sh`) in `.cache/debian/`, or from `TCI64_DEBIAN_DIR`; missing is a failure.
//! `-icount` makes the guest's view of time independent of the host's load.

use flate2::read::GzDecoder;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A guard against a hung guest only (the test asserts nothing about speed): far above the
/// few minutes a boot takes in the dev profile on a loaded machine.
const HANG_GUARD: Duration = Duration::from_secs(40 * 60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn debian_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("TCI64_DEBIAN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/debian"));
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "Debian's kernel file {} is missing (run scripts/setup.sh, which fetches it with \
         scripts/fetch-debian-kernel.sh, or set TCI64_DEBIAN_DIR)",
        p.display()
    );
    p
}

/// A fresh copy of the bundled test disk in a file of its own.
fn fresh_disk(tag: &str) -> PathBuf {
    let gz = std::fs::read(root().join("guest/disk.ext2.gz")).expect("guest/disk.ext2.gz");
    let mut bytes = Vec::new();
    GzDecoder::new(&gz[..]).read_to_end(&mut bytes).unwrap();
    let p = std::env::temp_dir().join(format!("tci64-debian-{tag}-{}.ext2", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The `guest.test=1` block of the guest's `/init` (and its `wait_for` helper), run in the
/// shell with `finish` (normally `reboot -f`) replaced by a marker.
const DISK_TEST: &str = "has() { :; }; finish() { echo DISK-TEST-FINISHED; }; \
    eval \"$(sed -n '/^wait_for()/,/^}/p; /^if has guest.test=1/,/^fi/p' /init)\"";

/// What the harness types at successive shell prompts.
const STEPS: [&str; 3] = [
    DISK_TEST,
    "cat /proc/interrupts; usleep 200000; grep LOC: /proc/interrupts",
    "poweroff -f",
];

/// The count in a `/proc/interrupts` line of one CPU (`  NAME:  COUNT  ...`).
fn count(line: &str) -> u64 {
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

fn boot(machine: &str, disk_device: &str) {
    let disk = fresh_disk(machine);
    let kernel = debian_file("vmlinuz");
    let initrd = debian_file("initramfs.cpio.gz");
    let drive = format!("id=d0,file={},format=raw,if=none", disk.display());
    let device = format!("{disk_device},drive=d0");
    let mut args: Vec<&str> = vec!["-M", machine];
    if machine == "pc" {
        args.extend(["-nic", "none"]);
    }
    args.extend([
        "-m",
        "256M",
        "-nographic",
        "-no-reboot",
        "-kernel",
        kernel.to_str().unwrap(),
        "-initrd",
        initrd.to_str().unwrap(),
        "-append",
        "console=ttyS0 panic=-1 reboot=t",
        "-drive",
        &drive,
        "-device",
        &device,
        "-icount",
        "shift=0,sleep=off",
        "-rtc",
        "base=2026-01-01T00:00:00",
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
        .args(&args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running tci64");
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let start = Instant::now();
    let mut out = String::new();
    let mut sent = 0;
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // Busybox follows each prompt with a cursor-position query (ESC [6n).
        let prompts = out.matches("guest# ").count();
        if sent < STEPS.len() && prompts > sent && out.trim_end_matches("\x1b[6n").ends_with("# ") {
            writeln!(stdin, "{}", STEPS[sent]).expect("writing to tci64's stdin");
            stdin.flush().unwrap();
            sent += 1;
        }
        if start.elapsed() > HANG_GUARD {
            let _ = child.kill();
            panic!("-M {machine}: no exit after {HANG_GUARD:?}; output so far:\n{out}");
        }
    }
    let status = child.wait().unwrap();
    let err = err_thread.join().unwrap();
    let out = out.replace('\r', "");
    let ctx = || format!("-M {machine}: output:\n{out}\nstderr:\n{err}");

    // ACPI: our tables found, nothing to complain about.
    for t in [
        "ACPI: RSDP 0x00000000000E0000",
        "ACPI: XSDT 0x",
        "ACPI: FACP 0x",
        "ACPI: APIC 0x",
        "ACPI: DSDT 0x",
        "ACPI: Using ACPI (MADT) for SMP configuration information",
        "ACPI: Interpreter enabled",
        "ACPI: Using IOAPIC for interrupt routing",
    ] {
        assert!(out.contains(t), "no {t:?} in the kernel log; {}", ctx());
    }
    for bad in [
        "ACPI Error",
        "ACPI BIOS Error",
        "ACPI Warning",
        "APIC disabled",
    ] {
        assert!(!out.contains(bad), "{bad:?} in the kernel log; {}", ctx());
    }

    // The disk test.
    assert!(out.contains("GUEST-BOOT-OK"), "{}", ctx());
    assert_eq!(
        sent,
        STEPS.len(),
        "the shell did not prompt for every step; {}",
        ctx()
    );
    let want_sha = std::fs::read_to_string(root().join("guest/disk.sha256")).unwrap();
    let want_sha = want_sha.split_whitespace().next().unwrap();
    for l in [
        "DISK: hello from virtio-blk".to_string(),
        format!("{want_sha}  /mnt/blob.bin"),
        "GUEST-TEST-DONE".to_string(),
        "DISK-TEST-FINISHED".to_string(),
    ] {
        assert!(out.lines().any(|x| x == l), "no line {l:?}; {}", ctx());
    }
    assert!(!out.contains("GUEST-TEST-FAIL"), "{}", ctx());
    let image = std::fs::read(&disk).unwrap();
    let _ = std::fs::remove_file(&disk);
    assert!(
        image.windows(16).any(|w| w == b"written-by-guest"),
        "written.txt's content is not in the disk image; {}",
        ctx()
    );

    // The local APIC timer ticks; the disk's interrupt arrived.
    let locs: Vec<u64> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("LOC:"))
        .map(count)
        .collect();
    assert_eq!(locs.len(), 2, "two LOC lines expected; {}", ctx());
    assert!(
        locs[0] > 0 && locs[1] > locs[0],
        "LOC does not count: {locs:?}; {}",
        ctx()
    );
    let virtio: Vec<&str> = out
        .lines()
        .filter(|l| {
            let irq = l.split_whitespace().next().unwrap_or("");
            l.contains("virtio0")
                && irq.ends_with(':')
                && irq.trim_end_matches(':').parse::<u32>().is_ok()
        })
        .collect();
    assert!(
        virtio.iter().any(|l| count(l) > 0),
        "no virtio0 interrupts counted ({virtio:?}); {}",
        ctx()
    );

    // Shown with --nocapture: how the guest's interrupts were routed.
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("CPU0"))
        .take_while(|l| !l.contains("guest# "))
        .collect();
    println!("-M {machine}: /proc/interrupts\n{}", table.join("\n"));

    // ACPI S5.
    assert!(out.contains("reboot: Power down"), "{}", ctx());
    assert_eq!(status.code(), Some(0), "poweroff's exit status; {}", ctx());
}

#[test]
fn debian_microvm() {
    boot("microvm", "virtio-blk-device");
}

#[test]
fn debian_pc() {
    boot("pc", "virtio-blk-pci");
}
