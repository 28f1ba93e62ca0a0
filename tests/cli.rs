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
fn pc_machine_is_refused() {
    assert_eq!(
        one_line_error(&["-M", "pc"]),
        "tci64: -M pc: not supported yet (only microvm)"
    );
}

#[test]
fn missing_option_value() {
    assert_eq!(
        one_line_error(&["-kernel"]),
        "tci64: -kernel: missing value (expected a file name)"
    );
}

/// A full QEMU microvm command line (verify-guest.sh's `tiny-microvm-noapic`, without the disk)
/// gets past parsing and file loading. Until the machine is built, `Machine::new` refuses with
/// one line; after that the guest must boot to its shell, see end of input and exit by itself.
#[test]
fn verify_guest_command_line_boots() {
    let guest = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/guest");
    let kernel = format!("{guest}/tiny.bzImage");
    if !std::path::Path::new(&kernel).exists() {
        eprintln!("skipped: {kernel} not found");
        return;
    }
    let initrd = format!("{guest}/initramfs.cpio.gz");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
        .args([
            "-M",
            "microvm,acpi=off,pic=on,pit=on,rtc=on",
            "-cpu",
            "qemu64,-apic",
            "-accel",
            "tcg",
        ])
        .args([
            "-m",
            "256M",
            "-nographic",
            "-no-reboot",
            "-kernel",
            &kernel,
            "-initrd",
            &initrd,
        ])
        .args([
            "-append",
            "console=ttyS0 panic=-1 reboot=t",
            "-icount",
            "shift=0,sleep=off",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let (out, e) = (stdout(&o), stderr(&o));
    if e.contains("the machine is not built yet") {
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(e.lines().count(), 1, "{e}");
        return;
    }
    assert!(
        out.contains("GUEST-BOOT-OK"),
        "no GUEST-BOOT-OK; status {:?}\nstdout:\n{out}\nstderr:\n{e}",
        o.status
    );
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{e}");
}
