//! The `tci64` binary's command line, run as a process.

use std::process::{Command, Output};

fn tci64(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tci64"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running tci64")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An argument error: status 1, nothing on stdout, exactly one line on stderr.
fn one_line_error(args: &[&str]) -> String {
    let o = tci64(args);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
    assert!(o.stdout.is_empty(), "{args:?}: stdout {:?}", stdout(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{args:?}: stderr {e:?}");
    assert!(e.starts_with("tci64: "), "{e:?}");
    e.trim_end().to_string()
}

#[test]
fn help_prints_usage_and_exits_0() {
    for flag in ["--help", "-h"] {
        let o = tci64(&[flag]);
        assert_eq!(o.status.code(), Some(0));
        let out = stdout(&o);
        assert!(out.contains("usage: tci64"), "{out}");
        for opt in [
            "-kernel", "-initrd", "-append", "-m SIZE", "-drive", "-device", "-icount", "-d ITEMS",
            "--stats",
        ] {
            assert!(out.contains(opt), "--help lacks {opt}");
        }
        assert!(o.stderr.is_empty());
    }
}

#[test]
fn version() {
    let o = tci64(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), format!("tci64 {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn trace_help_lists_items() {
    let o = tci64(&["-d", "help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for item in ["in_asm", "op_opt", "exec", "cpu", "int", "unimp"] {
        assert!(out.contains(item), "{out}");
    }
}

#[test]
fn missing_kernel_file_is_named() {
    let e = one_line_error(&["-kernel", "/nonexistent/bzImage"]);
    assert!(
        e.starts_with("tci64: -kernel /nonexistent/bzImage: "),
        "{e}"
    );
}

#[test]
fn missing_initrd_file_is_named() {
    // The kernel must exist for the initrd to be looked at: use this test binary itself.
    let exe = env!("CARGO_BIN_EXE_tci64");
    let e = one_line_error(&["-kernel", exe, "-initrd", "/nonexistent/rd.gz"]);
    assert!(e.starts_with("tci64: -initrd /nonexistent/rd.gz: "), "{e}");
}

#[test]
fn missing_disk_file_is_named() {
    let exe = env!("CARGO_BIN_EXE_tci64");
    let e = one_line_error(&[
        "-kernel",
        exe,
        "-drive",
        "file=/nonexistent/d.img,format=raw,if=virtio",
    ]);
    assert!(
        e.starts_with("tci64: -drive file=/nonexistent/d.img: "),
        "{e}"
    );
}

#[test]
fn bad_memory_sizes() {
    assert_eq!(
        one_line_error(&["-m", "1K"]),
        "tci64: -m 1K: too small (at least 32M)"
    );
    assert_eq!(
        one_line_error(&["-m", "abc"]),
        "tci64: -m abc: expected a size such as 512M or 2G"
    );
}

#[test]
fn unknown_option() {
    assert_eq!(
        one_line_error(&["-frobnicate"]),
        "tci64: -frobnicate: unknown option (see --help)"
    );
}

#[test]
fn bad_trace_item() {
    assert_eq!(
        one_line_error(&["-d", "bogus"]),
        "tci64: -d bogus: unknown item 'bogus' (expected in_asm, op, op_opt, exec, cpu, int, unimp)"
    );
}

#[test]
fn q35_machine_is_refused() {
    assert_eq!(
        one_line_error(&["-M", "q35"]),
        "tci64: -M q35: not supported (only microvm and pc)"
    );
}

#[test]
fn pc_machine_needs_virtio_blk_pci() {
    assert_eq!(
        one_line_error(&[
            "-M",
            "pc",
            "-drive",
            "id=d0,file=x,format=raw,if=none",
            "-device",
            "virtio-blk-device,drive=d0"
        ]),
        "tci64: -device virtio-blk-device: needs -M microvm"
    );
}

#[test]
fn missing_option_value() {
    assert_eq!(
        one_line_error(&["-kernel"]),
        "tci64: -kernel: missing value (expected a file name)"
    );
}

#[test]
fn a_file_that_is_no_kernel_is_one_line() {
    let p = std::env::temp_dir().join(format!("tci64-cli-not-a-kernel-{}", std::process::id()));
    std::fs::write(&p, b"hello\n").unwrap();
    let e = one_line_error(&["-kernel", p.to_str().unwrap()]);
    assert!(e.contains("not a Linux kernel"), "{e}");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn a_truncated_bzimage_is_one_line() {
    let full = std::fs::read(guest_path("tiny.bzImage")).unwrap();
    let p = std::env::temp_dir().join(format!("tci64-cli-truncated-{}", std::process::id()));
    std::fs::write(&p, &full[..full.len() / 2]).unwrap();
    let e = one_line_error(&["-kernel", p.to_str().unwrap()]);
    std::fs::remove_file(&p).unwrap();
    assert!(
        e.contains(p.to_str().unwrap()),
        "the error does not name the file: {e}"
    );
    assert!(e.contains("truncated"), "{e}");
}

/// The bundled guest's files (`guest/`); the tests need nothing from outside the repository.
fn guest_path(name: &str) -> String {
    let p = format!("{}/guest/{name}", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&p).exists(),
        "the bundled guest file {p} is missing"
    );
    p
}

/// A fresh copy of the bundled test disk (unpacked from `guest/disk.ext2.gz`) in a temporary
/// file; returns its path and its original bytes.
fn fresh_disk(tag: &str) -> (std::path::PathBuf, Vec<u8>) {
    let gz = std::fs::read(guest_path("disk.ext2.gz")).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut bytes).unwrap();
    let p = std::env::temp_dir().join(format!("tci64-cli-{tag}-{}.ext2", std::process::id()));
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

/// Run a QEMU microvm command line (verify-guest.sh's `tiny-microvm-noapic`) on the bundled tiny
/// kernel, with stdin at end of file, for at most `timeout`.
fn boot_tiny(append: &str, extra: &[&str], timeout: std::time::Duration) -> Output {
    let kernel = guest_path("tiny.bzImage");
    let initrd = guest_path("initramfs.cpio.gz");
    let mut args = vec![
        "-M",
        "microvm,acpi=off,pic=on,pit=on,rtc=on",
        "-cpu",
        "qemu64,-apic",
    ];
    args.extend(["-accel", "tcg", "-m", "256M", "-nographic", "-no-reboot"]);
    args.extend(["-kernel", &kernel, "-initrd", &initrd, "-append", append]);
    args.extend(["-icount", "shift=0,sleep=off"]);
    args.extend(extra);
    run_with_timeout(&args, timeout)
}

/// Run tci64 with `args`, stdin at end of file, for at most `timeout`.
fn run_with_timeout(args: &[&str], timeout: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes on threads so a chatty guest cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).map(|_| v)
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).map(|_| v)
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let st = child.wait().unwrap();
            eprintln!("killed after {timeout:?}");
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap().unwrap();
    let stderr = t_err.join().unwrap().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// The guest protocol's disk-test markers are all there and the run ended by itself with 0.
fn assert_disk_test_passed(o: &Output) {
    let (out, e) = (stdout(o), stderr(o));
    let out = out.replace('\r', "");
    let sums = std::fs::read_to_string(guest_path("disk.sha256")).unwrap();
    let sha = format!("{}  /mnt/blob.bin", sums.split_whitespace().next().unwrap());
    for line in [
        "GUEST-BOOT-OK",
        "DISK: hello from virtio-blk",
        sha.as_str(),
        "GUEST-TEST-DONE",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no {line}; status {:?}\nstdout:\n{out}\nstderr:\n{e}",
            o.status
        );
    }
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{e}");
}

/// verify-guest.sh's `tiny-microvm-noapic` case: the guest mounts the disk, checks a 4 MiB file's
/// sha256, writes `written.txt`, and exits by itself; the write reaches the image file.
#[test]
fn tiny_kernel_passes_the_disk_test_and_writes_the_image() {
    let (disk, _) = fresh_disk("microvm");
    let drive = format!("id=d0,file={},format=raw,if=none", disk.display());
    let extra = ["-drive", &drive, "-device", "virtio-blk-device,drive=d0"];
    let append = "console=ttyS0 panic=-1 reboot=t guest.test=1";
    let o = boot_tiny(append, &extra, std::time::Duration::from_secs(300));
    let after = std::fs::read(&disk).unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert_disk_test_passed(&o);
    assert!(
        after.windows(16).any(|w| w == b"written-by-guest"),
        "written.txt's content did not reach the image file"
    );
}

/// The bundled guest (no `-kernel`) on plain `-M microvm` with a disk: its kernel has no ACPI,
/// so the machine's ACPI default is off for it and the disk is announced on the command line.
#[test]
fn bundled_guest_on_plain_microvm_finds_its_disk() {
    let (disk, _) = fresh_disk("bundled");
    let drive = format!("file={},format=raw,if=virtio", disk.display());
    let args = [
        "-M",
        "microvm",
        "-nographic",
        "-no-reboot",
        "-append",
        "console=ttyS0 panic=-1 reboot=t guest.test=1",
        "-drive",
        &drive,
        "-icount",
        "shift=0,sleep=off",
    ];
    let o = run_with_timeout(&args, std::time::Duration::from_secs(300));
    std::fs::remove_file(&disk).unwrap();
    assert_disk_test_passed(&o);
    assert!(
        stdout(&o).contains("virtio_mmio.device=512@0xfeb00e00:12"),
        "the kernel's command line lacks the disk"
    );
}

/// verify-guest.sh's `tiny-pc` case through the CLI: `-M pc` (a later `-M` replaces the
/// helper's microvm) with the disk on `-device virtio-blk-pci`, under `-snapshot`: the image
/// file stays byte-identical.
#[test]
fn tiny_kernel_passes_the_disk_test_on_pc_and_snapshot_keeps_the_image() {
    let (disk, before) = fresh_disk("pc");
    let drive = format!("id=d0,file={},format=raw,if=none", disk.display());
    let extra = [
        "-M",
        "pc",
        "-nic",
        "none",
        "-snapshot",
        "-drive",
        &drive,
        "-device",
        "virtio-blk-pci,drive=d0",
    ];
    let append = "console=ttyS0 panic=-1 reboot=t guest.test=1";
    let o = boot_tiny(append, &extra, std::time::Duration::from_secs(300));
    let after = std::fs::read(&disk).unwrap();
    std::fs::remove_file(&disk).unwrap();
    assert_disk_test_passed(&o);
    assert!(after == before, "-snapshot changed the image file");
}

/// `-d cpu` logs the CPU state before each block, in QEMU's layout; the first block is the
/// bzImage's 64-bit entry (load address 0x100000 + 0x200) with paging and long mode on.
#[test]
fn d_cpu_logs_the_state_before_each_block() {
    let log = std::env::temp_dir().join(format!("tci64-d-cpu-{}.log", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
        .args(["-nographic", "-d", "cpu,exec", "-D"])
        .arg(&log)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("running tci64");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.matches("EFER=").count() >= 2 || std::time::Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    let first: Vec<&str> = text.lines().take(16).collect();
    assert!(first.len() == 16, "{text:.2000}");
    assert!(
        first[0].starts_with("RAX=0000000000000000 RBX="),
        "{first:?}"
    );
    assert!(
        first[1].starts_with("RSI=0000000000007000 "),
        "boot_params in RSI: {first:?}"
    );
    assert!(
        first[4].starts_with("RIP=0000000000100200 RFL=00000002 [-------] CPL=0"),
        "{first:?}"
    );
    assert!(first[6].starts_with("CS =0010 "), "{first:?}");
    assert!(first[13].starts_with("CR0=80010033 "), "{first:?}");
    assert_eq!(first[14], "EFER=0000000000000500");
    assert!(
        first[15].starts_with("Trace 0: [0000000000100200/"),
        "{first:?}"
    );
}

/// `--save-on-output 'guest# ' PATH` boots the bundled guest to its prompt, saves and exits;
/// `-incoming file:PATH` in a fresh process resumes at the prompt and the shell answers.
#[test]
fn save_on_output_then_incoming_answers() {
    let snap = std::env::temp_dir().join(format!("tci64-cli-{}.snapshot", std::process::id()));
    let path = snap.to_str().unwrap();
    let o = tci64(&["--save-on-output", "guest# ", path]);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    assert!(stderr(&o).contains("saved a snapshot to"), "{}", stderr(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
        .args(["-incoming", &format!("file:{path}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"echo h''i\n").unwrap();
    let mut so = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut so, &mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen)
                .replace('\r', "")
                .contains("\nhi\n")
            {
                break;
            }
        }
        seen
    });
    let start = std::time::Instant::now();
    while !reader.is_finished() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
    std::fs::remove_file(&snap).unwrap();
    assert!(
        out.contains("\nhi\n"),
        "the restored shell did not answer:\n{out}"
    );
}

#[test]
fn incoming_errors_are_one_line() {
    let e = one_line_error(&["-incoming", "tcp:1234"]);
    assert!(e.contains("only file:PATH is supported"), "{e}");
    let bad = std::env::temp_dir().join(format!("tci64-bad-{}.snapshot", std::process::id()));
    std::fs::write(&bad, b"not a snapshot at all").unwrap();
    let e = one_line_error(&["-incoming", &format!("file:{}", bad.display())]);
    std::fs::remove_file(&bad).unwrap();
    assert!(e.contains("not a tci64 snapshot"), "{e}");
}
