//! The GDB stub and the monitor against the bundled guest, through the real `tci64` binary and
//! Debian's `gdb` (installed by scripts/setup.sh): a batch gdb session (breakpoint, registers,
//! memory, stepi, finish, a hardware watchpoint, physical memory, `monitor`), a monitor session
//! on stdio, and the same `-icount` output with a debugger attached and detached as without.
//!
//! Kernel addresses come from `guest/tiny.symbols` (extracted from the kernel's System.map;
//! the kernel is built without KASLR and is not relocatable, so they are fixed).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn guest_path(name: &str) -> String {
    let p = format!("{}/guest/{name}", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&p).exists(),
        "the bundled guest file {p} is missing"
    );
    p
}

/// The address of `name` in guest/tiny.symbols.
fn symbol(name: &str) -> u64 {
    let text = std::fs::read_to_string(guest_path("tiny.symbols")).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 && f[2] == name {
            return u64::from_str_radix(f[0], 16).unwrap();
        }
    }
    panic!("{name} is not in guest/tiny.symbols");
}

/// A Unix socket path of this test process for `-gdb unix:PATH` (a path, unlike a TCP port
/// picked by probing, cannot be taken by a test running beside it).
fn socket_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tci64-gdb-{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// A fresh copy of the bundled test disk in a temporary file.
fn fresh_disk(tag: &str) -> PathBuf {
    let gz = std::fs::read(guest_path("disk.ext2.gz")).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap();
    let p = std::env::temp_dir().join(format!("tci64-gdb-{tag}-{}.ext2", std::process::id()));
    std::fs::write(&p, &bytes).unwrap();
    p
}

/// The disk test under `-icount`, exiting by itself, with a fixed RTC date: a deterministic
/// guest run.
fn guest_args(disk: &std::path::Path) -> Vec<String> {
    let drive = format!("id=d0,file={},format=raw,if=none", disk.display());
    let mut a = shell_args("console=ttyS0 panic=-1 reboot=t guest.test=1");
    a.extend(
        ["-drive", &drive, "-device", "virtio-blk-device,drive=d0"]
            .iter()
            .map(|s| s.to_string()),
    );
    a
}

/// The bundled guest with kernel command line `append` (without guest.test=1: an interactive
/// shell that never exits by itself).
fn shell_args(append: &str) -> Vec<String> {
    [
        // QEMU's microvm command line for a kernel without ACPI (verify-guest.sh's tiny cases).
        "-M",
        "microvm,acpi=off",
        "-m",
        "256M",
        "-nographic",
        "-no-reboot",
        "-kernel",
        &guest_path("tiny.bzImage"),
        "-initrd",
        &guest_path("initramfs.cpio.gz"),
        "-append",
        append,
        "-icount",
        "shift=0,sleep=off",
        "-rtc",
        "base=2024-01-01T00:00:00",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A running tci64 whose stdout and stderr are collected by threads.
struct Tci64 {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    mut r: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// A test that fails half-way (say gdb could not connect) must not leave a tci64 waiting at
/// `-S` for a debugger that never comes.
impl Drop for Tci64 {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Tci64 {
    fn spawn(args: &[String], stdin: Stdio) -> Tci64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tci64"))
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let threads = vec![
            collect(child.stdout.take().unwrap(), out.clone()),
            collect(child.stderr.take().unwrap(), err.clone()),
        ];
        Tci64 {
            child,
            out,
            err,
            threads,
        }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).replace('\r', "")
    }

    /// Wait until stdout contains `what` (fails loudly after `secs`).
    fn wait_for(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.stdout().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on tci64's stdout after {secs} s:\n{}\nstderr:\n{}",
                self.stdout(),
                String::from_utf8_lossy(&self.err.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the process to end (killed after `secs`) and return everything it printed.
    fn finish(mut self, secs: u64) -> Output {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                eprintln!("tci64 killed after {secs} s");
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let stdout = self.out.lock().unwrap().clone();
        let stderr = self.err.lock().unwrap().clone();
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

/// Run `gdb -batch` with `script`, connecting to `target` (`HOST:PORT` or a socket path);
/// returns its output.
fn gdb_batch(target: &str, script: &str) -> String {
    let tag: String = target.chars().filter(char::is_ascii_alphanumeric).collect();
    let path = std::env::temp_dir().join(format!("tci64-gdb-{tag}-{}.gdb", std::process::id()));
    let full = format!(
        "set pagination off\nset confirm off\nset width 0\n\
         set tcp auto-retry on\nset tcp connect-timeout 120\n\
         target remote {target}\n{script}"
    );
    std::fs::write(&path, full).unwrap();
    let o = Command::new("gdb")
        .args(["-batch", "-nx", "-x"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run gdb (scripts/setup.sh installs it): {e}"));
    std::fs::remove_file(&path).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "gdb failed ({:?}):\n{text}", o.status);
    text
}

/// The value after `key ` on the line starting with `key` in gdb's output.
fn field(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no line starting with {key:?} in:\n{text}"));
    let v = line[key.len()..].split_whitespace().next().unwrap();
    u64::from_str_radix(v.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("{key}: {v:?} is not hex in:\n{text}"))
}

/// Hex words of gdb's `x/Ngx ADDR` output line for ADDR.
fn words_at(text: &str, addr: u64) -> Vec<u64> {
    let prefix = format!("{addr:#x}:");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no x/gx line for {prefix} in:\n{text}"));
    line[prefix.len()..]
        .split_whitespace()
        .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).unwrap())
        .collect()
}

#[test]
fn gdb_session_against_the_bundled_guest() {
    let start_kernel = symbol("start_kernel");
    let setup_arch = symbol("setup_arch");
    let next_after_start_kernel = symbol("do_one_initcall");
    let system_state = symbol("system_state");
    let banner = symbol("linux_banner");
    // `-s -S`, as a kernel developer starts QEMU: the stub on TCP port 1234. It is the only
    // test that listens on TCP (the others use Unix sockets), so nothing here races for it.
    let disk = fresh_disk("session");
    let mut args = guest_args(&disk);
    args.extend(["-s".into(), "-S".into()]);
    let vm = Tci64::spawn(&args, Stdio::null());
    let script = format!(
        "printf \"ENTRY %#lx\\n\", $pc\n\
         break *{start_kernel:#x}\n\
         continue\n\
         printf \"AT %#lx\\n\", $pc\n\
         info registers\n\
         printf \"RSP %#lx\\n\", $rsp\n\
         x/4gx $rsp\n\
         monitor x /4gx $rsp\n\
         x/2i $pc\n\
         stepi\n\
         printf \"STEPPED %#lx\\n\", $pc\n\
         break *{setup_arch:#x}\n\
         continue\n\
         printf \"RET %#lx\\n\", *(unsigned long *)$rsp\n\
         finish\n\
         printf \"FINISHED %#lx\\n\", $pc\n\
         monitor info registers\n\
         x/s {banner:#x}\n\
         maintenance packet Qqemu.PhyMemMode:1\n\
         x/4bx 0x7202\n\
         maintenance packet Qqemu.PhyMemMode:0\n\
         delete\n\
         watch *(int *){system_state:#x}\n\
         continue\n\
         printf \"STATE %d\\n\", *(int *){system_state:#x}\n\
         delete\n\
         continue\n"
    );
    let g = gdb_batch("127.0.0.1:1234", &script);
    let o = vm.finish(600);
    std::fs::remove_file(&disk).unwrap();
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let ctx = format!(
        "gdb:\n{g}\ntci64 stdout:\n{out}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // -S: the CPU waits at the bzImage's 64-bit entry (loaded at 1 MiB, entry + 0x200).
    assert_eq!(field(&g, "ENTRY"), 0x10_0200, "{ctx}");
    // The breakpoint stops at start_kernel.
    assert!(
        g.contains(&format!("Breakpoint 1, {start_kernel:#018x} in ?? ()")),
        "{ctx}"
    );
    assert_eq!(field(&g, "AT"), start_kernel, "{ctx}");
    // info registers: RIP, the system registers of the target description.
    assert_eq!(field(&g, "rip"), start_kernel, "{ctx}");
    assert_eq!(field(&g, "rsp"), field(&g, "RSP"), "{ctx}");
    for reg in [
        "rax", "eflags", "cs", "fs_base", "gs_base", "cr0", "cr3", "cr4", "efer",
    ] {
        assert!(
            g.lines().any(|l| l.starts_with(&format!("{reg} "))),
            "no {reg}: {ctx}"
        );
    }
    assert_ne!(field(&g, "cr0") & (1 << 31), 0, "paging is on: {ctx}");
    assert_eq!(field(&g, "efer") & 0x500, 0x500, "long mode: {ctx}");
    assert_eq!(field(&g, "cs"), 0x10, "{ctx}");
    // x/4gx $rsp: the same memory through gdb and the monitor's `x`.
    let rsp = field(&g, "RSP");
    let w = words_at(&g, rsp);
    assert_eq!(w.len(), 2, "{ctx}");
    let mon = format!("{rsp:016x}: 0x{:016x} 0x{:016x}", w[0], w[1]);
    assert!(
        g.contains(&mon),
        "monitor x differs from gdb's x ({mon}): {ctx}"
    );
    // stepi: to the second instruction `x/2i` listed.
    let second = g
        .lines()
        .skip_while(|l| !l.starts_with("=> "))
        .nth(1)
        .and_then(|l| l.trim().split(':').next())
        .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
        .unwrap_or_else(|| panic!("no x/2i listing: {ctx}"));
    assert!(second > start_kernel && second < start_kernel + 16, "{ctx}");
    assert_eq!(field(&g, "STEPPED"), second, "{ctx}");
    // finish from setup_arch returns into start_kernel, to the return address at entry.
    assert!(
        g.contains(&format!("Breakpoint 2, {setup_arch:#018x} in ?? ()")),
        "{ctx}"
    );
    let ret = field(&g, "RET");
    assert!(
        (start_kernel..next_after_start_kernel).contains(&ret),
        "{ctx}"
    );
    assert_eq!(field(&g, "FINISHED"), ret, "{ctx}");
    // The monitor (qRcmd) sees the same RIP as gdb.
    assert!(g.contains(&format!("RIP={ret:016x} ")), "{ctx}");
    // Virtual memory by kernel address, physical memory in PhyMemMode (boot_params' "HdrS").
    assert!(g.contains("\"Linux version 6.1."), "{ctx}");
    assert!(g.contains("0x7202:\t0x48\t0x64\t0x72\t0x53"), "{ctx}");
    // The hardware watchpoint fires when rest_init sets system_state to SYSTEM_SCHEDULING.
    assert!(
        g.contains(&format!("Hardware watchpoint 3: *(int *){system_state:#x}")),
        "{ctx}"
    );
    assert!(g.contains("Old value = 0\nNew value = 1\n"), "{ctx}");
    assert_eq!(field(&g, "STATE"), 1, "{ctx}");
    // And on to the end: the guest's own exit is the inferior's.
    assert!(g.contains("exited normally"), "{ctx}");
    for m in ["GUEST-BOOT-OK", "GUEST-TEST-DONE"] {
        assert!(out.lines().any(|l| l == m), "no {m}: {ctx}");
    }
    assert_eq!(o.status.code(), Some(0), "{ctx}");
}

#[test]
fn monitor_session_on_stdio() {
    let mut args = shell_args("console=ttyS0 panic=-1 reboot=t");
    args.extend(["-S".into(), "-monitor".into(), "stdio".into()]);
    let mut vm = Tci64::spawn(&args, Stdio::piped());
    let mut stdin = vm.child.stdin.take().unwrap();
    let mut cmd = |c: &str| stdin.write_all(format!("{c}\n").as_bytes()).unwrap();
    vm.wait_for("(qemu) ", 60);
    cmd("info status");
    vm.wait_for("VM status: paused", 60);
    cmd("info registers");
    vm.wait_for("RIP=", 60);
    cmd("xp /4bx 0x7202");
    vm.wait_for("0000000000007202:", 60);
    cmd("xp /1hx 0x71fe");
    vm.wait_for("00000000000071fe:", 60);
    cmd("info mtree");
    vm.wait_for("address-space: memory", 60);
    cmd("x /2i $pc");
    vm.wait_for("0x0000000000100201:", 60);
    cmd("cont");
    cmd("info status");
    vm.wait_for("VM status: running", 60);
    cmd("stop");
    cmd("info status");
    let paused_twice = || vm.stdout().matches("VM status: paused").count() >= 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !paused_twice() {
        assert!(
            Instant::now() < deadline,
            "no second pause:\n{}",
            vm.stdout()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cmd("cont");
    vm.wait_for("GUEST-BOOT-OK", 300);
    cmd("quit");
    let o = vm.finish(120);
    let out = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let ctx = format!(
        "stdout:\n{out}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // At -S the CPU is at the bzImage's 64-bit entry, the RIP gdb reports there too.
    assert!(out.contains("RIP=0000000000100200 "), "{ctx}");
    assert!(out.contains("CR0=80010033 "), "{ctx}");
    // boot_params at 0x7000: "HdrS" at 0x202 and the boot flag 0xAA55 at 0x1fe.
    assert!(
        out.contains("0000000000007202: 0x48 0x64 0x72 0x53\n"),
        "{ctx}"
    );
    assert!(out.contains("00000000000071fe: 0xaa55\n"), "{ctx}");
    // x /2i: the first two instructions of the 64-bit entry (head_64.S: cld, cli), in 64-bit
    // code.
    assert!(out.contains("0x0000000000100200:  fc "), "{ctx}");
    assert!(out.contains("0x0000000000100201:  fa "), "{ctx}");
    let insns: Vec<&str> = out
        .lines()
        .map(|l| l.trim_start_matches("(qemu) "))
        .filter(|l| l.starts_with("0x000000000010020"))
        .map(|l| l.split_whitespace().last().unwrap_or(""))
        .collect();
    assert_eq!(insns, ["cld", "cli"], "{ctx}");
    assert!(
        out.contains("0000000000100000-000000000fffffff (prio 0, ram): RAM\n"),
        "256 MiB of RAM from 1 MiB up: {ctx}"
    );
    assert_eq!(o.status.code(), Some(0), "quit exits 0: {ctx}");
}

#[test]
fn icount_output_is_the_same_with_a_debugger_attached_and_detached() {
    let start_kernel = symbol("start_kernel");
    let disk = fresh_disk("plain");
    let plain = Tci64::spawn(&guest_args(&disk), Stdio::null()).finish(600);
    std::fs::remove_file(&disk).unwrap();

    let sock = socket_path("debugged");
    let disk = fresh_disk("debugged");
    let mut args = guest_args(&disk);
    args.extend([
        "-gdb".into(),
        format!("unix:{}", sock.display()),
        "-S".into(),
    ]);
    let vm = Tci64::spawn(&args, Stdio::null());
    // gdb retries TCP connections, not socket paths: wait for the stub to listen.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "tci64 never created {sock:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The path appears at bind(); listen() follows within microseconds.
    std::thread::sleep(Duration::from_millis(50));
    let g = gdb_batch(
        &sock.display().to_string(),
        &format!(
            "break *{start_kernel:#x}\ncontinue\nprintf \"AT %#lx\\n\", $pc\n\
             info registers\nx/4gx $rsp\ndelete\ndetach\n"
        ),
    );
    let debugged = vm.finish(600);
    std::fs::remove_file(&disk).unwrap();
    let _ = std::fs::remove_file(&sock);
    assert_eq!(field(&g, "AT"), start_kernel, "gdb:\n{g}");
    let (a, b) = (
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&debugged.stdout),
    );
    assert!(a.contains("GUEST-TEST-DONE"), "the plain run failed:\n{a}");
    assert_eq!(
        a, b,
        "the serial output differs with a debugger attached and detached\ngdb:\n{g}"
    );
    assert_eq!(plain.status.code(), Some(0));
    assert_eq!(debugged.status.code(), Some(0));
}
