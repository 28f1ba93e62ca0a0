//! Disk durability through the CLI: what reaches the image file on every way out, and how
//! bad image files are refused. Each boot runs the bundled tiny guest under `-icount`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn guest_path(name: &str) -> String {
    let p = format!("{}/guest/{name}", env!("CARGO_MANIFEST_DIR"));
    assert!(
        Path::new(&p).exists(),
        "the bundled guest file {p} is missing"
    );
    p
}

/// A fresh copy of the bundled test disk in a temporary file; its path and original bytes.
fn fresh_disk(tag: &str) -> (PathBuf, Vec<u8>) {
    let gz = std::fs::read(guest_path("disk.ext2.gz")).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut bytes).unwrap();
    let p = temp(&format!("{tag}.ext2"));
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tci64-durability-{}-{name}", std::process::id()))
}

/// A running tci64 with the tiny guest: stdout lines arrive on a channel, stderr is collected.
struct Guest {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Guest {
    fn start(append: &str, drive: &str) -> Guest {
        Self::start_with(append, drive, &[])
    }

    /// [`Guest::start`] with more arguments, and the disk's flushes logged on stderr.
    fn start_with(append: &str, drive: &str, more: &[&str]) -> Guest {
        let kernel = guest_path("tiny.bzImage");
        let initrd = guest_path("initramfs.cpio.gz");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
            .args([
                "-M",
                "microvm,acpi=off",
                "-m",
                "256M",
                "-nographic",
                "-no-reboot",
            ])
            .args(["-kernel", &kernel, "-initrd", &initrd, "-append", append])
            .args(["-icount", "shift=0,sleep=off", "-drive", drive])
            .args(more)
            .env("RUST_LOG", "warn,tci64::host::disk=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).split(b'\n') {
                let Ok(l) = l else { break };
                let l = String::from_utf8_lossy(&l).replace('\r', "");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        });
        Guest {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Wait for a stdout line containing `marker` (at most 300 s).
    fn wait_for(&mut self, marker: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    let hit = l.contains(marker);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!("no {marker:?} in stdout:\n{}", self.seen.join("\n"));
    }

    fn type_line(&mut self, line: &str) {
        self.type_bytes(line.as_bytes());
        self.type_bytes(b"\n");
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0, "kill({sig})");
    }

    /// Wait for the exit (at most 120 s): (exit code or None if killed, stderr, stdout seen).
    fn finish(mut self) -> (Option<i32>, Option<i32>, String, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        use std::os::unix::process::ExitStatusExt;
        let stderr = self.stderr.join().unwrap();
        (status.code(), status.signal(), stderr, self.seen.join("\n"))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The guest's `sync` (a virtio-blk FLUSH, then the unmount) returned before it printed
/// GUEST-TEST-DONE: a SIGKILL right then loses nothing it wrote.
#[test]
fn sigkill_right_after_the_guest_synced_loses_nothing() {
    let (disk, _) = fresh_disk("sigkill");
    let drive = format!("file={},format=raw,if=virtio", disk.display());
    let mut g = Guest::start("console=ttyS0 panic=-1 reboot=t guest.test=1", &drive);
    g.wait_for("GUEST-TEST-DONE");
    g.signal(libc::SIGKILL);
    let (code, sig, err, out) = g.finish();
    let after = std::fs::read(&disk).unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert_eq!(
        (code, sig),
        (None, Some(libc::SIGKILL)),
        "stderr:\n{err}\nstdout:\n{out}"
    );
    assert!(
        contains(&after, b"written-by-guest"),
        "written.txt did not reach the image file before the SIGKILL"
    );
}

/// SIGTERM and SIGHUP end the run through its normal exit: one line saying so, disks flushed,
/// status 0 (as QEMU). The guest first writes a sector with O_SYNC-like `conv=fsync`.
#[test]
fn sigterm_and_sighup_exit_cleanly_with_the_data_in_the_file() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let (disk, _) = fresh_disk(name);
        let drive = format!("file={},format=raw,if=virtio", disk.display());
        let mut g = Guest::start("console=ttyS0 panic=-1", &drive);
        g.wait_for("GUEST-BOOT-OK");
        let mark = format!("tci64-{name}-marker");
        g.type_line(&format!(
            "echo {mark} | dd of=/dev/vda bs=512 seek=3000 conv=fsync 2>/dev/null; echo WROTE-$((6*7))"
        ));
        g.wait_for("WROTE-42");
        g.signal(sig);
        let (code, killed_by, err, out) = g.finish();
        let after = std::fs::read(&disk).unwrap();
        std::fs::remove_file(&disk).unwrap();
        assert_eq!(
            (code, killed_by),
            (Some(0), None),
            "{name}: stderr:\n{err}\nstdout:\n{out}"
        );
        assert!(
            err.contains(&format!("tci64: terminating on signal {sig} ({name})")),
            "{name}: stderr:\n{err}"
        );
        assert_eq!(
            &after[3000 * 512..3000 * 512 + mark.len()],
            mark.as_bytes(),
            "{name}: the sector the guest wrote is not in the file"
        );
    }
}

/// Ctrl-A x, a guest reset (with -no-reboot) and an error that ends the run (here: the
/// snapshot `--save-on-output` asks for cannot be written) each end through the exit path that
/// msyncs the written disk: the flush's debug line is on stderr, after the guest wrote a sector.
#[test]
fn ctrl_a_x_a_guest_reset_and_an_error_exit_flush_the_disk() {
    let bad_save = temp("no-such-dir").join("x.snapshot");
    let bad_save = bad_save.display().to_string();
    let ways: [(&str, &[&str]); 3] = [
        ("ctrl-a-x", &[]),
        ("reset", &[]),
        ("error", &["--save-on-output", "WROTE-42", &bad_save]),
    ];
    for (way, more) in ways {
        let (disk, _) = fresh_disk(way);
        let drive = format!("file={},format=raw,if=virtio", disk.display());
        let mut g = Guest::start_with("console=ttyS0 panic=-1 reboot=t", &drive, more);
        g.wait_for("GUEST-BOOT-OK");
        let mark = format!("tci64-{way}-marker");
        g.type_line(&format!(
            "echo {mark} | dd of=/dev/vda bs=512 seek=3000 2>/dev/null; echo WROTE-$((6*7))"
        ));
        match way {
            "ctrl-a-x" => {
                g.wait_for("WROTE-42");
                g.type_bytes(&[0x01, b'x']);
            }
            "reset" => {
                g.wait_for("WROTE-42");
                g.type_line("reboot -f");
            }
            _ => {}
        }
        let (code, killed_by, err, out) = g.finish();
        std::fs::remove_file(&disk).unwrap();
        let want = if way == "error" { Some(1) } else { Some(0) };
        assert_eq!(
            (code, killed_by),
            (want, None),
            "{way}: stderr:\n{err}\nstdout:\n{out}"
        );
        assert!(
            err.contains(&format!("{}: flushed (msync)", disk.display())),
            "{way}: no flush of the disk on the way out; stderr:\n{err}"
        );
        if way == "error" {
            assert!(err.contains(&bad_save), "{way}: stderr:\n{err}");
        }
    }
}

/// A disk image that shrinks under the running guest: when the guest reads the missing part,
/// the mapping raises SIGBUS, and tci64 says so in one line and exits with status 135 instead
/// of dying silently.
#[test]
fn an_image_that_shrinks_while_mapped_is_reported_not_silent() {
    let (disk, _) = fresh_disk("shrink");
    let drive = format!("file={},format=raw,if=virtio", disk.display());
    let mut g = Guest::start("console=ttyS0 panic=-1", &drive);
    g.wait_for("GUEST-BOOT-OK");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(4096)
        .unwrap();
    // Far past anything the guest read at boot, so it is not in the guest's page cache.
    g.type_line("dd if=/dev/vda of=/dev/null bs=4096 skip=1500 count=4");
    let (code, sig, err, out) = g.finish();
    std::fs::remove_file(&disk).unwrap();
    assert_eq!(
        (code, sig),
        (Some(135), None),
        "stderr:\n{err}\nstdout:\n{out}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("SIGBUS"))
        .unwrap_or_else(|| panic!("no SIGBUS line in stderr:\n{err}"));
    assert!(line.contains("shrank while mapped"), "{line}");
}

/// `readonly=on`: Linux sees VIRTIO_BLK_F_RO and cannot mount the disk read-write, so the disk
/// test fails in the guest, the host reports no error, exits 0, and the file is untouched.
/// (A driver that writes anyway gets VIRTIO_BLK_S_IOERR: the virtio fuzz target checks that.)
#[test]
fn readonly_disk_is_never_written_and_the_host_never_errors() {
    let (disk, before) = fresh_disk("readonly");
    let drive = format!("file={},format=raw,if=virtio,readonly=on", disk.display());
    let mut g = Guest::start("console=ttyS0 panic=-1 reboot=t guest.test=1", &drive);
    g.wait_for("GUEST-TEST-");
    let (code, sig, err, out) = g.finish();
    let after = std::fs::read(&disk).unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert!(out.contains("GUEST-TEST-FAIL"), "stdout:\n{out}");
    assert_eq!(
        (code, sig),
        (Some(0), None),
        "stderr:\n{err}\nstdout:\n{out}"
    );
    assert!(
        !err.contains("tci64:"),
        "the host reported an error:\n{err}"
    );
    assert!(after == before, "readonly=on changed the image file");
}

/// `snapshot=on` on one drive: the guest's writes stay in memory; the file is byte-identical.
#[test]
fn snapshot_on_leaves_the_file_byte_identical() {
    let (disk, before) = fresh_disk("snapshot");
    let drive = format!("file={},format=raw,if=virtio,snapshot=on", disk.display());
    let mut g = Guest::start("console=ttyS0 panic=-1 reboot=t guest.test=1", &drive);
    g.wait_for("GUEST-TEST-DONE");
    let (code, sig, err, out) = g.finish();
    let after = std::fs::read(&disk).unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert_eq!(
        (code, sig),
        (Some(0), None),
        "stderr:\n{err}\nstdout:\n{out}"
    );
    assert!(after == before, "snapshot=on changed the image file");
}

/// Run tci64 with `-drive file=PATH` and a kernel that is no kernel: the drive is opened first,
/// so its error (or warning) comes before the kernel's.
fn open_drive(
    path: &Path,
    extra: &str,
    pre: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> (Option<i32>, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let not_a_kernel = temp(&format!("not-a-kernel-{n}"));
    std::fs::write(&not_a_kernel, b"not a kernel").unwrap();
    let drive = format!("file={},format=raw,if=virtio{extra}", path.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tci64"));
    cmd.args(["-kernel", not_a_kernel.to_str().unwrap(), "-drive", &drive]);
    use std::os::unix::process::CommandExt;
    // SAFETY: `pre` only makes prctl(2) calls, which are async-signal-safe.
    unsafe { cmd.pre_exec(pre) };
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    std::fs::remove_file(&not_a_kernel).unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn no_pre() -> std::io::Result<()> {
    Ok(())
}

#[test]
fn a_missing_file_and_a_directory_are_one_line_errors_naming_the_file() {
    let missing = temp("missing.img");
    let (code, err) = open_drive(&missing, "", no_pre);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("tci64: -drive file={}: ", missing.display())),
        "{err}"
    );
    assert!(err.contains("No such file"), "{err}");

    let dir = temp("dir.img");
    std::fs::create_dir_all(&dir).unwrap();
    for extra in ["", ",readonly=on", ",snapshot=on"] {
        let (code, err) = open_drive(&dir, extra, no_pre);
        assert_eq!(code, Some(1), "{extra}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("tci64: -drive file={}: ", dir.display())),
            "{err}"
        );
        assert!(err.to_lowercase().contains("directory"), "{err}");
    }
    std::fs::remove_dir(&dir).unwrap();
}

/// A file without read/write permission. Root bypasses file modes through CAP_DAC_OVERRIDE,
/// so the child drops that capability (and CAP_DAC_READ_SEARCH) from its bounding set first;
/// an ordinary user is refused by the mode alone.
#[test]
fn a_file_without_permission_is_a_one_line_error() {
    let p = temp("noperm.img");
    std::fs::write(&p, vec![0u8; 4096]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let drop_dac = || {
        for cap in [1, 2] {
            // CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2. SAFETY: prctl with plain integers.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            // EINVAL/EPERM: not privileged to begin with, nothing to drop.
            let _ = r;
        }
        Ok(())
    };
    for extra in ["", ",readonly=on"] {
        let (code, err) = open_drive(&p, extra, drop_dac);
        assert_eq!(code, Some(1), "{extra}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("tci64: -drive file={}: ", p.display())),
            "{err}"
        );
        assert!(err.contains("Permission denied"), "{err}");
    }
    std::fs::remove_file(&p).unwrap();
}

/// The documented rule for an image whose size is not a multiple of 512: the guest sees the
/// whole sectors only, the tail is never read or written, and tci64 warns once.
#[test]
fn an_image_that_is_not_whole_sectors_gets_a_warning_with_the_rule() {
    let p = temp("odd.img");
    std::fs::write(&p, vec![0u8; 1000]).unwrap();
    let (code, err) = open_drive(&p, "", no_pre);
    std::fs::remove_file(&p).unwrap();
    assert_eq!(code, Some(1), "{err}");
    let mut lines = err.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "tci64: warning: -drive file={}: 1000 bytes is not a multiple of 512; the guest sees 1 sector and the last 488 bytes are never read or written",
                p.display()
            )
            .as_str()
        ),
        "{err}"
    );
    // Then the kernel error: the drive was accepted.
    assert!(lines.next().unwrap_or("").contains("not-a-kernel"), "{err}");
}
