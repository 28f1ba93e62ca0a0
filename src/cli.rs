//! The command line, spelled as QEMU spells it (`-kernel`, `-m 512M`, `-drive file=...`).
//!
//! [`parse`] turns the arguments into a [`Command`]; it reads no files. Every error is one line
//! that names the argument and says what was expected.

use std::fmt;
use std::path::PathBuf;

use tci64_machine::{MachineType, TraceFlags};

/// Guest RAM when `-m` is not given.
pub const DEFAULT_RAM_BYTES: u64 = 256 << 20;
/// The smallest `-m` accepted: the tiny kernel's decompressor alone needs about 28 MiB.
pub const MIN_RAM_BYTES: u64 = 32 << 20;
/// The largest `-m` accepted.
pub const MAX_RAM_BYTES: u64 = 64 << 30;
/// Where Ctrl-A S saves a snapshot when `--save-file` is not given.
pub const DEFAULT_SAVE_FILE: &str = "tci64.snapshot";
/// The largest `-icount shift=N` (QEMU's limit too).
pub const MAX_ICOUNT_SHIFT: u32 = 10;

/// One line of argument error; `Display` prints it without the `tci64: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&one_line(&self.0))
    }
}

/// `s` with control characters (newlines in an argument, say) escaped as `\n`, `\u{1}`, so an
/// error that quotes an argument stays one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl std::error::Error for CliError {}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-h`, `--help`.
    Help,
    /// `--version`.
    Version,
    /// `-d help`: list the trace items.
    TraceHelp,
    /// `-M help`: list the machines.
    MachineHelp,
    /// Boot a guest.
    Run(Box<Options>),
}

/// How `-drive` attaches a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveInterface {
    /// `if=virtio`: a virtio-blk disk of its own.
    Virtio,
    /// `if=none`: only a backend; a `-device virtio-blk-device,drive=ID` attaches it.
    None,
}

/// One `-drive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub file: PathBuf,
    pub id: Option<String>,
    pub interface: DriveInterface,
    /// `readonly=on`: guest writes fail.
    pub read_only: bool,
    /// `snapshot=on` (or `-snapshot`): guest writes stay in memory and are lost at exit.
    pub snapshot: bool,
}

/// A virtio-blk disk, in the order the machine should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub file: PathBuf,
    pub read_only: bool,
    pub snapshot: bool,
}

/// `-M microvm,...` switches, as QEMU 7.2's microvm spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicrovmOptions {
    /// `None` (not given) = QEMU 7.2's "auto": on for a `-kernel`, off for the bundled guest,
    /// whose kernel has no ACPI (see `run::platform_config`).
    pub acpi: Option<bool>,
    pub pic: bool,
    pub pit: bool,
    pub rtc: bool,
}

impl Default for MicrovmOptions {
    fn default() -> Self {
        // QEMU 7.2's defaults: acpi, pic, pit and rtc are all "auto" = on for a TCG microvm.
        MicrovmOptions {
            acpi: None,
            pic: true,
            pit: true,
            rtc: true,
        }
    }
}

/// `-icount shift=N[,sleep=on|off]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icount {
    /// 2^shift virtual nanoseconds per guest instruction.
    pub shift: u32,
    /// `sleep=on` (default): idle time passes in real time; `sleep=off`: it is skipped.
    pub sleep: bool,
}

/// Where the GDB stub listens (`-gdb`, `-s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GdbAddr {
    /// `tcp:[HOST]:PORT`; an empty host listens on every interface, as QEMU does.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`: a Unix-domain socket (created; an old socket file there is replaced).
    Unix(PathBuf),
}

impl fmt::Display for GdbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GdbAddr::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            GdbAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where the monitor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMode {
    /// Shares stdio with the serial console; Ctrl-A c switches to it (QEMU's `-nographic`
    /// default, `-serial mon:stdio`).
    Mux,
    /// `-monitor stdio`: as `Mux`, but the monitor has the console at start.
    Stdio,
    /// `-monitor none`.
    None,
}

/// Everything a boot needs, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-kernel`; `None` = the bundled guest.
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub ram_bytes: u64,
    /// Disks in command-line order (`-drive if=virtio` and `-device virtio-blk-device`).
    pub disks: Vec<Disk>,
    pub microvm: MicrovmOptions,
    /// `-M microvm` (default) or `-M pc`.
    pub machine: MachineType,
    /// `-cpu qemu64,-apic` turns the local APIC (and the IOAPIC) off.
    pub cpu_apic: bool,
    /// `-cpu qemu64,-x2apic` hides x2APIC from CPUID.
    pub cpu_x2apic: bool,
    /// `-global virtio-mmio.force-legacy=true|false`: legacy (version 1) or modern (version 2)
    /// virtio-mmio transports. QEMU 7.2 defaults to legacy. Not yet passed to the machine.
    pub virtio_mmio_force_legacy: bool,
    /// `-no-reboot`: a guest reset ends the run (status 0).
    pub no_reboot: bool,
    pub icount: Option<Icount>,
    /// `-d ITEMS`.
    pub trace: TraceFlags,
    /// `-D FILE`: where `-d` output goes (stderr otherwise).
    pub log_file: Option<PathBuf>,
    /// `--stats`: print counters at exit.
    pub stats: bool,
    /// `-incoming file:PATH`: restore the machine snapshot in PATH and continue.
    pub incoming: Option<PathBuf>,
    /// `--save-on-output STR PATH`: save a snapshot to PATH (and exit) as soon as the serial
    /// output first contains STR.
    pub save_on_output: Option<(String, PathBuf)>,
    /// `--save-file PATH`: where Ctrl-A S saves a snapshot.
    pub save_file: PathBuf,
    /// `-gdb DEV` / `-s`: start the GDB stub.
    pub gdb: Option<GdbAddr>,
    /// `-S`: do not start the CPU (wait for the monitor's `cont` or a debugger).
    pub start_stopped: bool,
    /// `-monitor`.
    pub monitor: MonitorMode,
    /// `-rtc base=DATE`: the RTC's time at power-on, seconds since 1970 (UTC); `None` = now.
    pub rtc_base: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kernel: None,
            initrd: None,
            append: None,
            ram_bytes: DEFAULT_RAM_BYTES,
            disks: Vec::new(),
            microvm: MicrovmOptions::default(),
            machine: MachineType::Microvm,
            cpu_apic: true,
            cpu_x2apic: true,
            virtio_mmio_force_legacy: true,
            no_reboot: false,
            icount: None,
            trace: TraceFlags::default(),
            log_file: None,
            stats: false,
            incoming: None,
            save_on_output: None,
            save_file: PathBuf::from(DEFAULT_SAVE_FILE),
            gdb: None,
            start_stopped: false,
            monitor: MonitorMode::Mux,
            rtc_base: None,
        }
    }
}

/// The `-d` items, with QEMU's descriptions.
pub const TRACE_ITEMS: &[(&str, &str)] = &[
    ("in_asm", "show target assembly code for each compiled TB"),
    ("op", "show micro ops for each compiled TB"),
    ("op_opt", "show micro ops after optimization"),
    ("exec", "show trace before each executed TB (lots of logs)"),
    (
        "cpu",
        "show CPU registers before entering a TB (lots of logs)",
    ),
    ("int", "show interrupts/exceptions in short format"),
    ("unimp", "log unimplemented functionality"),
];

/// `--help` text.
pub fn usage() -> String {
    format!(
        "\
tci64 {version}: an x86-64 PC emulator with a translate-and-interpret CPU

usage: tci64 [options]          (no -kernel: boot the bundled guest in guest/)

Boot:
  -kernel FILE        Linux bzImage to boot
  -initrd FILE        initial ramdisk
  -append STR         kernel command line (bundled guest: 'console=ttyS0 panic=-1 reboot=t')
  -m SIZE             guest RAM: 512M, 2G, 1T; a plain number is MiB (default 256M)

Disks (virtio-blk over virtio-mmio on microvm, over PCI on pc):
  -drive file=F,format=raw,if=virtio[,readonly=on][,snapshot=on][,id=X]
  -drive id=X,file=F,format=raw,if=none  with  -device virtio-blk-device,drive=X  (microvm)
                                          or  -device virtio-blk-pci,drive=X     (pc)
  -snapshot           keep every disk's writes in memory (discarded at exit)

Machine (QEMU's spellings; local APIC + IOAPIC and ACPI tables by default, as QEMU 7.2):
  -M microvm[,acpi=on|off][,pic=on|off][,pit=on|off][,rtc=on|off]   (-M help lists machines)
                      acpi=on: hardware-reduced ACPI, disks in the DSDT; acpi=off: disks on
                      the kernel command line (virtio_mmio.device=). Default: on with -kernel,
                      off for the bundled guest (its kernel has no ACPI)
  -M pc               PCI bus, virtio-blk-pci disks, ACPI (PM1a, PM timer, _PRT), no firmware
  -cpu qemu64[,-apic][,-x2apic]   -apic: no local APIC/IOAPIC (8259 + PIT only)
  -accel tcg   -smp 1   -nographic   -serial stdio   -nic none
  -global virtio-mmio.force-legacy=true|false   legacy (v1, default) or modern (v2) transports
  -no-reboot          exit (status 0) when the guest resets
  -icount shift=N[,sleep=on|off]   virtual time: 2^N ns per instruction (N <= {max_shift})
  -rtc base=utc|YYYY-MM-DDTHH:MM:SS  the RTC's date at power-on (default: now)

Debugging (see README.md, \"Debugging a kernel\"):
  -s                  shorthand for -gdb tcp::1234
  -gdb DEV            GDB stub on DEV: tcp::PORT, tcp:HOST:PORT or unix:PATH
                      (connect with: gdb vmlinux -ex 'target remote :PORT')
  -S                  do not start the CPU at start-up (use 'c' in gdb or 'cont' in the monitor)
  -monitor stdio|none the monitor on the console from the start, or no monitor at all
                      (by default Ctrl-A c switches between the serial console and the monitor)
  -d ITEMS            comma-separated trace items (-d help lists them)
  -D FILE             write -d output to FILE instead of stderr
  --stats             print execution counters on stderr at exit

Snapshots (docs/SNAPSHOT.md; disks must be the ones saved, snapshot=on overlays travel along):
  -incoming file:PATH restore the machine saved in PATH and continue (no -kernel needed)
  --save-on-output STR PATH   save to PATH and exit once the serial output contains STR
  --save-file PATH    where Ctrl-A S saves (default {save_file})
  RUST_LOG=...        env_logger filter for everything else (e.g. RUST_LOG=debug)

  -h, --help          this text
  --version           print the version

Console: the serial port is on stdin/stdout. Ctrl-A x exits, Ctrl-A h shows the keys,
Ctrl-A s flushes the disks, Ctrl-A S saves a snapshot, Ctrl-A c switches to the monitor and
back ('help' lists its commands), Ctrl-A Ctrl-A sends Ctrl-A.
",
        version = env!("CARGO_PKG_VERSION"),
        save_file = DEFAULT_SAVE_FILE,
        max_shift = MAX_ICOUNT_SHIFT,
    )
}

/// `-d help` text.
pub fn trace_help() -> String {
    let mut s = String::from("Log items (comma separated):\n");
    for (name, what) in TRACE_ITEMS {
        s.push_str(&format!("{name:<10}{what}\n"));
    }
    s
}

/// `-M help` text.
pub fn machine_help() -> String {
    "Supported machines are:\n\
     microvm              microvm (i386) (the default)\n\
     pc                   Standard PC (i440FX-like PCI host bridge, no firmware)\n"
        .to_string()
}

/// Parse the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut o = Options::default();
    let mut drives: Vec<Drive> = Vec::new();
    // Disk order: each entry is an index into `drives`.
    let mut attached: Vec<usize> = Vec::new();
    let mut global_snapshot = false;
    // `-device` names, to check them against the machine at the end.
    let mut device_names: Vec<&'static str> = Vec::new();

    while let Some(arg) = args.next() {
        // QEMU accepts `--opt` for every `-opt`.
        let opt = match arg.strip_prefix("--") {
            Some(rest) if !rest.is_empty() => format!("-{rest}"),
            _ => arg.clone(),
        };
        let mut value = |name: &str| -> Result<String, CliError> {
            match args.next() {
                Some(v) => Ok(v),
                None => err(format!("{name}: missing value ({})", expects(name))),
            }
        };
        match opt.as_str() {
            "-h" | "-help" => return Ok(Command::Help),
            "-version" => return Ok(Command::Version),
            "-kernel" => o.kernel = Some(non_empty_path("-kernel", value("-kernel")?)?),
            "-initrd" => o.initrd = Some(non_empty_path("-initrd", value("-initrd")?)?),
            "-append" => o.append = Some(value("-append")?),
            "-m" => o.ram_bytes = parse_ram(&value("-m")?)?,
            "-drive" => {
                let d = parse_drive(&value("-drive")?)?;
                if let Some(id) = &d.id {
                    if drives.iter().any(|x| x.id.as_deref() == Some(id)) {
                        return err(format!("-drive: duplicate id={id}"));
                    }
                }
                if d.interface == DriveInterface::Virtio {
                    attached.push(drives.len());
                }
                drives.push(d);
            }
            "-device" => {
                let (name, id) = parse_device(&value("-device")?)?;
                device_names.push(name);
                let Some(i) = drives
                    .iter()
                    .position(|d| d.id.as_deref() == Some(id.as_str()))
                else {
                    return err(format!(
                        "-device: drive={id}: no -drive with id={id} before it"
                    ));
                };
                if drives[i].interface != DriveInterface::None {
                    return err(format!(
                        "-device: drive={id}: that drive is already attached (it has if=virtio; use if=none)"
                    ));
                }
                if attached.contains(&i) {
                    return err(format!("-device: drive={id} is attached twice"));
                }
                attached.push(i);
            }
            "-snapshot" => global_snapshot = true,
            "-M" | "-machine" => {
                let v = value(&opt)?;
                if v == "help" || v == "?" {
                    return Ok(Command::MachineHelp);
                }
                (o.machine, o.microvm) = parse_machine(&opt, &v)?;
            }
            "-accel" => {
                let v = value("-accel")?;
                let (name, rest) = v.split_once(',').unwrap_or((&v, ""));
                if name != "tcg" {
                    return err(format!("-accel {v}: only 'tcg' is supported"));
                }
                let opts = split_opts(rest).map_err(|e| CliError(format!("-accel {v}: {e}")))?;
                for (k, val) in opts {
                    // thread=single is what tci64 always does.
                    if !(k == "thread" && val == "single") {
                        return err(format!("-accel {v}: unsupported option '{k}'"));
                    }
                }
            }
            "-cpu" => (o.cpu_apic, o.cpu_x2apic) = parse_cpu(&value("-cpu")?)?,
            "-smp" => {
                let v = value("-smp")?;
                let n = v.strip_prefix("cpus=").unwrap_or(&v);
                if n != "1" {
                    return err(format!("-smp {v}: only one CPU is supported ('-smp 1')"));
                }
            }
            "-global" => o.virtio_mmio_force_legacy = parse_global(&value("-global")?)?,
            "-nographic" => {}
            "-serial" => {
                let v = value("-serial")?;
                if v != "stdio" && v != "mon:stdio" {
                    return err(format!("-serial {v}: only 'stdio' is supported"));
                }
            }
            "-nic" | "-net" => {
                let v = value(&opt)?;
                if v != "none" {
                    return err(format!(
                        "{opt} {v}: there is no network device; only 'none' is accepted"
                    ));
                }
            }
            "-no-reboot" => o.no_reboot = true,
            "-icount" => o.icount = Some(parse_icount(&value("-icount")?)?),
            "-d" => {
                let v = value("-d")?;
                if v == "help" || v == "?" {
                    return Ok(Command::TraceHelp);
                }
                o.trace = parse_trace(&v)?;
            }
            "-D" => o.log_file = Some(non_empty_path("-D", value("-D")?)?),
            "-stats" => o.stats = true,
            "-incoming" => {
                let v = value("-incoming")?;
                match v.strip_prefix("file:") {
                    Some(p) => o.incoming = Some(non_empty_path("-incoming", p.to_string())?),
                    None => {
                        return err(format!(
                            "-incoming {v}: only file:PATH is supported (a snapshot file)"
                        ))
                    }
                }
            }
            "-save-on-output" => {
                let s = value("--save-on-output")?;
                if s.is_empty() {
                    return err("--save-on-output: empty string to wait for");
                }
                let p = non_empty_path("--save-on-output", value("--save-on-output")?)?;
                o.save_on_output = Some((s, p));
            }
            "-save-file" => o.save_file = non_empty_path("--save-file", value("--save-file")?)?,
            "-s" => {
                o.gdb = Some(GdbAddr::Tcp {
                    host: String::new(),
                    port: 1234,
                })
            }
            "-S" => o.start_stopped = true,
            "-rtc" => o.rtc_base = parse_rtc(&value("-rtc")?)?,
            "-gdb" => o.gdb = parse_gdb(&value("-gdb")?)?,
            "-monitor" => {
                let v = value("-monitor")?;
                o.monitor = match v.as_str() {
                    "stdio" => MonitorMode::Stdio,
                    "none" => MonitorMode::None,
                    _ => {
                        return err(format!(
                            "-monitor {v}: only 'stdio' and 'none' are supported"
                        ))
                    }
                };
            }
            _ if opt.starts_with('-') => {
                return err(format!("{arg}: unknown option (see --help)"));
            }
            _ => {
                // An empty argument would otherwise make a message that names nothing.
                let shown = if arg.is_empty() { "''" } else { arg.as_str() };
                return err(format!(
                    "{shown}: unexpected argument (options start with '-'; a kernel is given with -kernel FILE)"
                ));
            }
        }
    }

    let (wrong, right) = match o.machine {
        MachineType::Microvm => ("virtio-blk-pci", "-M pc"),
        MachineType::Pc => ("virtio-blk-device", "-M microvm"),
    };
    if device_names.contains(&wrong) {
        return err(format!("-device {wrong}: needs {right}"));
    }
    if o.initrd.is_some() && o.kernel.is_none() {
        return err("-initrd: needs -kernel too (the bundled guest has its own initrd)");
    }
    if let Some(i) = drives
        .iter()
        .enumerate()
        .position(|(i, d)| d.interface == DriveInterface::None && !attached.contains(&i))
    {
        let id = drives[i].id.as_deref().unwrap_or("?");
        return err(format!(
            "-drive id={id},if=none: no '-device virtio-blk-device,drive={id}' attaches it"
        ));
    }
    o.disks = attached
        .iter()
        .map(|&i| {
            let d = &drives[i];
            Disk {
                file: d.file.clone(),
                read_only: d.read_only,
                snapshot: d.snapshot || global_snapshot,
            }
        })
        .collect();
    Ok(Command::Run(Box::new(o)))
}

/// What an option's value looks like, for "missing value" errors.
fn expects(opt: &str) -> &'static str {
    match opt {
        "-kernel" | "-initrd" | "-D" => "expected a file name",
        "-append" => "expected the kernel command line",
        "-m" => "expected a size such as 512M or 2G",
        "-drive" => "expected file=F,format=raw,if=virtio",
        "-device" => "expected virtio-blk-device,drive=ID or virtio-blk-pci,drive=ID",
        "-M" | "-machine" => "expected microvm or pc",
        "-accel" => "expected tcg",
        "-cpu" => "expected qemu64",
        "-smp" => "expected 1",
        "-global" => "expected virtio-mmio.force-legacy=true|false",
        "-serial" => "expected stdio",
        "-nic" | "-net" => "expected none",
        "-icount" => "expected shift=N[,sleep=on|off]",
        "-d" => "expected trace items, or 'help'",
        "-incoming" => "expected file:PATH",
        "--save-on-output" => "expected a string and a file name",
        "--save-file" => "expected a file name",
        "-gdb" => "expected tcp::PORT, tcp:HOST:PORT or unix:PATH",
        "-monitor" => "expected stdio or none",
        "-rtc" => "expected base=utc or base=YYYY-MM-DDTHH:MM:SS",
        _ => "expected a value",
    }
}

fn non_empty_path(opt: &str, v: String) -> Result<PathBuf, CliError> {
    if v.is_empty() {
        return err(format!("{opt}: empty file name"));
    }
    Ok(PathBuf::from(v))
}

/// `-gdb`: `tcp::PORT`, `tcp:HOST:PORT`, `unix:PATH` (QEMU's `,server=on` and `,wait=off`
/// are accepted: the stub always listens, and never waits for a debugger before the guest
/// starts; `-S` does that), or `none`.
pub fn parse_gdb(v: &str) -> Result<Option<GdbAddr>, CliError> {
    let bad = |why: &str| err(format!("-gdb {v}: {why}"));
    if v == "none" {
        return Ok(None);
    }
    let mut parts = v.split(',');
    let dev = parts.next().unwrap_or("");
    for p in parts {
        if !matches!(
            p,
            "server" | "server=on" | "nowait" | "wait=off" | "ipv4=on" | "ipv4"
        ) {
            return bad(&format!(
                "unsupported option '{p}' (server=on, wait=off are accepted)"
            ));
        }
    }
    if let Some(path) = dev.strip_prefix("unix:") {
        if path.is_empty() {
            return bad("empty socket path");
        }
        return Ok(Some(GdbAddr::Unix(PathBuf::from(path))));
    }
    let Some(rest) = dev.strip_prefix("tcp:") else {
        return bad("expected tcp::PORT, tcp:HOST:PORT or unix:PATH");
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bad("expected tcp::PORT or tcp:HOST:PORT");
    };
    let port: u16 = match port.parse() {
        Ok(p) => p,
        Err(_) => return bad(&format!("'{port}' is not a TCP port number")),
    };
    Ok(Some(GdbAddr::Tcp {
        host: host.to_string(),
        port,
    }))
}

/// `-rtc base=utc|YYYY-MM-DDTHH:MM:SS|YYYY-MM-DD[,clock=vm|host]`: the power-on time of the RTC
/// (UTC). A fixed date makes `-icount` runs repeat exactly (the guest's own clock reads are
/// then the same).
pub fn parse_rtc(v: &str) -> Result<Option<u64>, CliError> {
    let mut base = None;
    for (k, val) in split_opts(v).map_err(|e| CliError(format!("-rtc {v}: {e}")))? {
        match k.as_str() {
            "base" if val == "utc" => base = None,
            "base" => {
                base = Some(parse_date(&val).ok_or_else(|| {
                    CliError(format!(
                        "-rtc {v}: base={val}: expected utc or YYYY-MM-DDTHH:MM:SS"
                    ))
                })?)
            }
            // The RTC always follows the machine's virtual clock.
            "clock" if val == "vm" || val == "host" || val == "rt" => {}
            _ => return err(format!("-rtc {v}: unsupported option '{k}={val}'")),
        }
    }
    Ok(base)
}

/// `YYYY-MM-DD[THH:MM:SS]` (UTC) as seconds since 1970.
fn parse_date(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let d: Vec<u64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<u64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d[..].try_into().ok()?, t[..].try_into().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    // Days from the civil date (the proleptic Gregorian calendar).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Split QEMU's `key=value,key=value` (a `,,` is a literal comma inside a value).
pub fn split_opts(s: &str) -> Result<Vec<(String, String)>, CliError> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    let mut parts: Vec<String> = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                parts.last_mut().unwrap().push(',');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut().unwrap().push(c);
        }
    }
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => return err(format!("'{p}' in '{s}': expected key=value")),
        }
    }
    Ok(out)
}

fn on_off(opt: &str, key: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => err(format!("{opt}: {key}={v}: expected on or off")),
    }
}

/// `-m`: `512M`, `2G`, `1T`, `65536K`, `size=512M`; a plain number is MiB.
pub fn parse_ram(v: &str) -> Result<u64, CliError> {
    let s = v.strip_prefix("size=").unwrap_or(v);
    let bad = || err(format!("-m {v}: expected a size such as 512M or 2G"));
    let (digits, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64 << 20),
        Some((i, _)) => {
            let mult = match &s[i..] {
                "B" | "b" => 1,
                "K" | "k" => 1 << 10,
                "M" | "m" => 1 << 20,
                "G" | "g" => 1 << 30,
                "T" | "t" => 1 << 40,
                _ => return bad(),
            };
            (&s[..i], mult)
        }
    };
    if digits.is_empty() {
        return bad();
    }
    let n: u64 = match digits.parse() {
        Ok(n) => n,
        Err(_) => return bad(),
    };
    let Some(bytes) = n.checked_mul(mult) else {
        return err(format!(
            "-m {v}: too large (at most {}G)",
            MAX_RAM_BYTES >> 30
        ));
    };
    if bytes < MIN_RAM_BYTES {
        return err(format!(
            "-m {v}: too small (at least {}M)",
            MIN_RAM_BYTES >> 20
        ));
    }
    if bytes > MAX_RAM_BYTES {
        return err(format!(
            "-m {v}: too large (at most {}G)",
            MAX_RAM_BYTES >> 30
        ));
    }
    if bytes % (1 << 20) != 0 {
        return err(format!("-m {v}: must be a whole number of MiB"));
    }
    Ok(bytes)
}

/// `-drive file=F,format=raw,if=virtio|none[,readonly=on][,snapshot=on][,id=X]`.
pub fn parse_drive(v: &str) -> Result<Drive, CliError> {
    let mut file = None;
    let mut id = None;
    let mut interface = DriveInterface::Virtio;
    let mut read_only = false;
    let mut snapshot = false;
    for (k, val) in split_opts(v).map_err(|e| CliError(format!("-drive: {e}")))? {
        match k.as_str() {
            "file" if !val.is_empty() => file = Some(PathBuf::from(val)),
            "file" => return err("-drive: file= is empty"),
            "id" if !val.is_empty() => id = Some(val),
            "id" => return err("-drive: id= is empty"),
            "format" if val == "raw" => {}
            "format" => {
                return err(format!(
                    "-drive: format={val}: only raw images are supported"
                ))
            }
            "if" => {
                interface = match val.as_str() {
                    "virtio" => DriveInterface::Virtio,
                    "none" => DriveInterface::None,
                    _ => return err(format!("-drive: if={val}: expected virtio or none")),
                }
            }
            "readonly" => read_only = on_off("-drive", &k, &val)?,
            "snapshot" => snapshot = on_off("-drive", &k, &val)?,
            "media" if val == "disk" => {}
            "media" => return err(format!("-drive: media={val}: only disk is supported")),
            // Host caching modes make no difference to a mapped file.
            "cache"
                if matches!(
                    val.as_str(),
                    "none" | "writeback" | "writethrough" | "unsafe" | "directsync"
                ) => {}
            "cache" => return err(format!("-drive: cache={val}: unknown cache mode")),
            _ => {
                return err(format!(
                    "-drive: unknown key '{k}' (expected file, format, if, id, readonly, snapshot)"
                ))
            }
        }
    }
    let Some(file) = file else {
        return err(format!("-drive {v}: missing file=F"));
    };
    if interface == DriveInterface::None && id.is_none() {
        return err(format!(
            "-drive {v}: if=none needs id=ID for -device to name it"
        ));
    }
    Ok(Drive {
        file,
        id,
        interface,
        read_only,
        snapshot,
    })
}

/// `-device virtio-blk-device,drive=ID` or `-device virtio-blk-pci,drive=ID`: returns the
/// device name and the drive id.
pub fn parse_device(v: &str) -> Result<(&'static str, String), CliError> {
    let (name, rest) = v.split_once(',').unwrap_or((v, ""));
    let name = match name {
        "virtio-blk-device" => "virtio-blk-device",
        "virtio-blk-pci" => "virtio-blk-pci",
        _ => {
            return err(format!(
                "-device {name}: unknown device (only virtio-blk-device and virtio-blk-pci are supported)"
            ))
        }
    };
    let mut drive = None;
    for (k, val) in split_opts(rest).map_err(|e| CliError(format!("-device: {e}")))? {
        match k.as_str() {
            "drive" => drive = Some(val),
            "id" => {}
            _ => {
                return err(format!(
                    "-device {name}: unknown property '{k}' (expected drive=ID)"
                ))
            }
        }
    }
    match drive {
        Some(d) if !d.is_empty() => Ok((name, d)),
        _ => err(format!("-device {v}: missing drive=ID")),
    }
}

/// `-M microvm[,acpi=..,pic=..,pit=..,rtc=..]` (also `type=microvm,...`) or `-M pc`.
pub fn parse_machine(opt: &str, v: &str) -> Result<(MachineType, MicrovmOptions), CliError> {
    let (first, rest) = v.split_once(',').unwrap_or((v, ""));
    let name = first.strip_prefix("type=").unwrap_or(first);
    match name {
        "microvm" => {}
        "pc" | "pc-i440fx-7.2" => {
            if let Some((k, _)) = split_opts(rest)
                .map_err(|e| CliError(format!("{opt}: {e}")))?
                .first()
            {
                return err(format!("{opt} pc: unknown property '{k}' (pc takes none)"));
            }
            return Ok((MachineType::Pc, MicrovmOptions::default()));
        }
        "q35" | "pc-q35-7.2" => {
            return err(format!("{opt} {name}: not supported (only microvm and pc)"))
        }
        _ => {
            return err(format!(
                "{opt} {name}: unknown machine (only microvm and pc; -M help lists them)"
            ))
        }
    }
    let mut m = MicrovmOptions::default();
    for (k, val) in split_opts(rest).map_err(|e| CliError(format!("{opt}: {e}")))? {
        let on = on_off(opt, &k, &val);
        match k.as_str() {
            "acpi" => m.acpi = Some(on?),
            "pic" => m.pic = on?,
            "pit" => m.pit = on?,
            "rtc" => m.rtc = on?,
            _ => {
                return err(format!(
                    "{opt} microvm: unknown property '{k}' (expected acpi, pic, pit, rtc)"
                ))
            }
        }
    }
    Ok((MachineType::Microvm, m))
}

/// `-cpu qemu64[,±apic|,apic=on|off][,±x2apic|,x2apic=on|off]`: returns whether the local APIC
/// and x2APIC are present.
pub fn parse_cpu(v: &str) -> Result<(bool, bool), CliError> {
    let mut parts = v.split(',');
    let model = parts.next().unwrap_or("");
    if model != "qemu64" {
        return err(format!("-cpu {model}: unknown CPU model (only qemu64)"));
    }
    let (mut apic, mut x2apic) = (true, true);
    for p in parts {
        match p {
            "-apic" | "apic=off" => apic = false,
            "+apic" | "apic=on" => apic = true,
            "-x2apic" | "x2apic=off" => x2apic = false,
            "+x2apic" | "x2apic=on" => x2apic = true,
            _ => {
                return err(format!(
                    "-cpu {v}: unsupported feature '{p}' (only apic and x2apic can be switched)"
                ))
            }
        }
    }
    Ok((apic, x2apic))
}

/// `-global virtio-mmio.force-legacy=true|false`: returns force-legacy.
pub fn parse_global(v: &str) -> Result<bool, CliError> {
    match v.split_once('=') {
        Some(("virtio-mmio.force-legacy", val)) => match val {
            "true" | "on" | "yes" => Ok(true),
            "false" | "off" | "no" => Ok(false),
            _ => err(format!("-global {v}: expected true or false")),
        },
        _ => err(format!(
            "-global {v}: unsupported (only virtio-mmio.force-legacy=true|false)"
        )),
    }
}

/// `-icount shift=N[,sleep=on|off]` or `-icount N`.
pub fn parse_icount(v: &str) -> Result<Icount, CliError> {
    let mut shift = None;
    let mut sleep = true;
    let opts = if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() {
        vec![("shift".to_string(), v.to_string())]
    } else {
        split_opts(v).map_err(|e| CliError(format!("-icount: {e}")))?
    };
    for (k, val) in opts {
        match k.as_str() {
            "shift" => match val.parse::<u32>() {
                Ok(n) if n <= MAX_ICOUNT_SHIFT => shift = Some(n),
                _ if val == "auto" => {
                    return err("-icount shift=auto: not supported (give a number 0..10)")
                }
                _ => {
                    return err(format!(
                        "-icount shift={val}: expected a number from 0 to {MAX_ICOUNT_SHIFT}"
                    ))
                }
            },
            "sleep" => sleep = on_off("-icount", &k, &val)?,
            _ => {
                return err(format!(
                    "-icount {v}: unknown key '{k}' (expected shift, sleep)"
                ))
            }
        }
    }
    match shift {
        Some(shift) => Ok(Icount { shift, sleep }),
        None => err(format!("-icount {v}: missing shift=N")),
    }
}

/// `-d in_asm,op,...`.
pub fn parse_trace(v: &str) -> Result<TraceFlags, CliError> {
    let mut t = TraceFlags::default();
    for item in v.split(',') {
        match item {
            "in_asm" => t.in_asm = true,
            "op" => t.op = true,
            "op_opt" => t.op_opt = true,
            "exec" => t.exec = true,
            "cpu" => t.cpu = true,
            "int" => t.int = true,
            "unimp" => t.unimp = true,
            _ => {
                let names: Vec<&str> = TRACE_ITEMS.iter().map(|(n, _)| *n).collect();
                return err(format!(
                    "-d {v}: unknown item '{item}' (expected {})",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args.iter().copied()) {
            Ok(Command::Run(o)) => *o,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn fails(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => {
                assert!(!e.0.contains('\n'), "multi-line error: {e}");
                e.0
            }
            Ok(c) => panic!("{args:?} parsed as {c:?}"),
        }
    }

    #[test]
    fn no_arguments_is_the_bundled_guest_with_defaults() {
        let o = run(&[]);
        assert_eq!(o, Options::default());
        assert_eq!(o.ram_bytes, 256 << 20);
        assert!(o.kernel.is_none());
    }

    #[test]
    fn debugger_and_monitor_options() {
        let tcp = |port| GdbAddr::Tcp {
            host: String::new(),
            port,
        };
        assert_eq!(run(&["-s"]).gdb, Some(tcp(1234)));
        let o = run(&["-gdb", "tcp::4321", "-S"]);
        assert_eq!((o.gdb, o.start_stopped), (Some(tcp(4321)), true));
        assert_eq!(
            run(&["-gdb", "tcp:127.0.0.1:9"]).gdb,
            Some(GdbAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 9
            })
        );
        assert_eq!(
            run(&["-gdb", "unix:/tmp/g.sock,server=on,wait=off"]).gdb,
            Some(GdbAddr::Unix("/tmp/g.sock".into()))
        );
        assert_eq!(run(&["-s", "-gdb", "none"]).gdb, None);
        assert!(fails(&["-gdb", "tcp::99999"]).contains("not a TCP port"));
        assert!(fails(&["-gdb", "stdio"]).starts_with("-gdb stdio:"));
        assert!(fails(&["-gdb", "tcp::1,reconnect=1"]).contains("unsupported option"));
        assert_eq!(run(&["-monitor", "stdio"]).monitor, MonitorMode::Stdio);
        assert_eq!(run(&["-monitor", "none"]).monitor, MonitorMode::None);
        assert_eq!(run(&[]).monitor, MonitorMode::Mux);
        assert!(fails(&["-monitor", "vc"]).contains("only 'stdio' and 'none'"));
    }

    #[test]
    fn rtc_base_dates() {
        assert_eq!(run(&["-rtc", "base=1970-01-01T00:00:00"]).rtc_base, Some(0));
        assert_eq!(
            run(&["-rtc", "base=2020-02-29T12:34:56,clock=vm"]).rtc_base,
            Some(1_582_979_696)
        );
        assert_eq!(
            run(&["-rtc", "base=2000-03-01"]).rtc_base,
            Some(951_868_800)
        );
        assert_eq!(run(&["-rtc", "base=utc"]).rtc_base, None);
        assert!(fails(&["-rtc", "base=2020-13-01"]).contains("expected utc or"));
        assert!(fails(&["-rtc", "driftfix=slew"]).contains("unsupported option"));
    }

    #[test]
    fn help_and_version() {
        for a in ["-h", "--help", "-help"] {
            assert_eq!(parse([a]), Ok(Command::Help));
        }
        assert_eq!(parse(["--version"]), Ok(Command::Version));
        assert_eq!(parse(["-version"]), Ok(Command::Version));
        assert_eq!(parse(["-d", "help"]), Ok(Command::TraceHelp));
        assert_eq!(parse(["-M", "help"]), Ok(Command::MachineHelp));
        assert!(usage().contains("-kernel FILE"));
        assert!(trace_help().contains("in_asm"));
    }

    #[test]
    fn boot_options() {
        let o = run(&[
            "-kernel",
            "bz",
            "-initrd",
            "rd",
            "-append",
            "console=ttyS0 x=1",
        ]);
        assert_eq!(o.kernel, Some(PathBuf::from("bz")));
        assert_eq!(o.initrd, Some(PathBuf::from("rd")));
        assert_eq!(o.append.as_deref(), Some("console=ttyS0 x=1"));
        // Double-dash spellings work too.
        let o = run(&["--kernel", "bz", "--append", ""]);
        assert_eq!(o.append.as_deref(), Some(""));
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram("512M"), Ok(512 << 20));
        assert_eq!(parse_ram("512m"), Ok(512 << 20));
        assert_eq!(parse_ram("2G"), Ok(2 << 30));
        assert_eq!(parse_ram("256"), Ok(256 << 20));
        assert_eq!(parse_ram("65536K"), Ok(64 << 20));
        assert_eq!(parse_ram("size=1G"), Ok(1 << 30));
        assert_eq!(run(&["-m", "1G"]).ram_bytes, 1 << 30);
        assert_eq!(fails(&["-m", "1K"]), "-m 1K: too small (at least 32M)");
        assert_eq!(
            fails(&["-m", "abc"]),
            "-m abc: expected a size such as 512M or 2G"
        );
        assert_eq!(
            fails(&["-m", "12X"]),
            "-m 12X: expected a size such as 512M or 2G"
        );
        assert_eq!(
            fails(&["-m", "M"]),
            "-m M: expected a size such as 512M or 2G"
        );
        assert_eq!(
            fails(&["-m", "-5"]),
            "-m -5: expected a size such as 512M or 2G"
        );
        assert_eq!(fails(&["-m", "1T"]), "-m 1T: too large (at most 64G)");
        assert_eq!(
            fails(&["-m", "99999999999999999999G"]),
            "-m 99999999999999999999G: expected a size such as 512M or 2G"
        );
        assert_eq!(
            fails(&["-m", "9999999999999G"]),
            "-m 9999999999999G: too large (at most 64G)"
        );
        assert_eq!(
            fails(&["-m", "33554433B"]),
            "-m 33554433B: must be a whole number of MiB"
        );
        assert_eq!(
            fails(&["-m"]),
            "-m: missing value (expected a size such as 512M or 2G)"
        );
    }

    #[test]
    fn drives_if_virtio() {
        let o = run(&[
            "-drive",
            "file=a.img,format=raw,if=virtio",
            "-drive",
            "file=b,,c.img,if=virtio,readonly=on,id=x",
            "-drive",
            "format=raw,file=d.img,snapshot=on,cache=unsafe,media=disk",
        ]);
        assert_eq!(
            o.disks,
            vec![
                Disk {
                    file: "a.img".into(),
                    read_only: false,
                    snapshot: false
                },
                Disk {
                    file: "b,c.img".into(),
                    read_only: true,
                    snapshot: false
                },
                Disk {
                    file: "d.img".into(),
                    read_only: false,
                    snapshot: true
                },
            ]
        );
        let o = run(&["-snapshot", "-drive", "file=a.img,if=virtio"]);
        assert!(o.disks[0].snapshot);
        let o = run(&["-drive", "file=a.img,if=virtio", "-snapshot"]);
        assert!(o.disks[0].snapshot);
    }

    #[test]
    fn drives_if_none_with_device() {
        let o = run(&[
            "-drive",
            "file=first,if=virtio",
            "-drive",
            "id=d0,file=disk.ext2,format=raw,if=none",
            "-device",
            "virtio-blk-device,drive=d0",
        ]);
        assert_eq!(o.disks.len(), 2);
        assert_eq!(o.disks[1].file, PathBuf::from("disk.ext2"));
        // The -device order decides the disk order.
        let o = run(&[
            "-drive",
            "id=a,file=A,if=none",
            "-drive",
            "id=b,file=B,if=none",
            "-device",
            "virtio-blk-device,drive=b",
            "-device",
            "virtio-blk-device,drive=a,id=dev0",
        ]);
        assert_eq!(o.disks[0].file, PathBuf::from("B"));
        assert_eq!(o.disks[1].file, PathBuf::from("A"));
    }

    #[test]
    fn drive_errors() {
        assert_eq!(
            fails(&["-drive", "format=raw"]),
            "-drive format=raw: missing file=F"
        );
        assert_eq!(
            fails(&["-drive", "file=x,format=qcow2"]),
            "-drive: format=qcow2: only raw images are supported"
        );
        assert_eq!(
            fails(&["-drive", "file=x,if=ide"]),
            "-drive: if=ide: expected virtio or none"
        );
        assert_eq!(
            fails(&["-drive", "file=x,readonly=maybe"]),
            "-drive: readonly=maybe: expected on or off"
        );
        assert_eq!(
            fails(&["-drive", "file=x,snapshot=2"]),
            "-drive: snapshot=2: expected on or off"
        );
        assert_eq!(
            fails(&["-drive", "file=x,bogus=1"]),
            "-drive: unknown key 'bogus' (expected file, format, if, id, readonly, snapshot)"
        );
        assert_eq!(
            fails(&["-drive", "file=x,junk"]),
            "-drive: 'junk' in 'file=x,junk': expected key=value"
        );
        assert_eq!(fails(&["-drive", "file="]), "-drive: file= is empty");
        assert_eq!(fails(&["-drive", "file=x,id="]), "-drive: id= is empty");
        assert_eq!(
            fails(&["-drive", "file=x,media=cdrom"]),
            "-drive: media=cdrom: only disk is supported"
        );
        assert_eq!(
            fails(&["-drive", "file=x,cache=fast"]),
            "-drive: cache=fast: unknown cache mode"
        );
        assert_eq!(
            fails(&["-drive", "file=x,if=none"]),
            "-drive file=x,if=none: if=none needs id=ID for -device to name it"
        );
        assert_eq!(
            fails(&["-drive", "file=x,if=none,id=d0"]),
            "-drive id=d0,if=none: no '-device virtio-blk-device,drive=d0' attaches it"
        );
        assert_eq!(
            fails(&[
                "-drive",
                "file=x,id=a,if=none",
                "-drive",
                "file=y,id=a,if=none"
            ]),
            "-drive: duplicate id=a"
        );
        assert_eq!(
            fails(&["-drive"]),
            "-drive: missing value (expected file=F,format=raw,if=virtio)"
        );
    }

    #[test]
    fn device_errors() {
        assert_eq!(
            fails(&["-device", "virtio-blk-device,drive=d0"]),
            "-device: drive=d0: no -drive with id=d0 before it"
        );
        assert_eq!(
            fails(&[
                "-drive",
                "file=x,id=d0,if=virtio",
                "-device",
                "virtio-blk-device,drive=d0"
            ]),
            "-device: drive=d0: that drive is already attached (it has if=virtio; use if=none)"
        );
        assert_eq!(
            fails(&[
                "-drive",
                "file=x,id=d0,if=none",
                "-device",
                "virtio-blk-device,drive=d0",
                "-device",
                "virtio-blk-device,drive=d0",
            ]),
            "-device: drive=d0 is attached twice"
        );
        assert_eq!(
            fails(&[
                "-drive",
                "file=x,id=d0,if=none",
                "-device",
                "virtio-blk-pci,drive=d0"
            ]),
            "-device virtio-blk-pci: needs -M pc"
        );
        assert_eq!(
            fails(&[
                "-M",
                "pc",
                "-drive",
                "file=x,id=d0,if=none",
                "-device",
                "virtio-blk-device,drive=d0"
            ]),
            "-device virtio-blk-device: needs -M microvm"
        );
        assert_eq!(
            fails(&["-device", "e1000"]),
            "-device e1000: unknown device (only virtio-blk-device and virtio-blk-pci are supported)"
        );
        assert_eq!(
            fails(&["-device", "virtio-blk-device"]),
            "-device virtio-blk-device: missing drive=ID"
        );
        assert_eq!(
            fails(&["-device", "virtio-blk-device,serial=1"]),
            "-device virtio-blk-device: unknown property 'serial' (expected drive=ID)"
        );
    }

    #[test]
    fn machine_options() {
        let o = run(&["-M", "microvm,acpi=off,pic=on,pit=on,rtc=on"]);
        assert_eq!(
            o.microvm,
            MicrovmOptions {
                acpi: Some(false),
                pic: true,
                pit: true,
                rtc: true
            }
        );
        let o = run(&["-machine", "type=microvm,pic=off,pit=off,rtc=off"]);
        assert_eq!(
            o.microvm,
            MicrovmOptions {
                acpi: None,
                pic: false,
                pit: false,
                rtc: false
            }
        );
        assert_eq!(run(&["-M", "microvm"]).microvm, MicrovmOptions::default());
        assert_eq!(run(&["-M", "microvm"]).machine, MachineType::Microvm);
        assert_eq!(run(&[]).machine, MachineType::Microvm);
        let o = run(&[
            "-M",
            "pc",
            "-drive",
            "file=x,id=d0,if=none",
            "-device",
            "virtio-blk-pci,drive=d0",
        ]);
        assert_eq!(o.machine, MachineType::Pc);
        assert_eq!(o.disks.len(), 1);
        // -M after -device, if=virtio on pc
        let o = run(&[
            "-drive",
            "file=x,id=d0,if=none",
            "-device",
            "virtio-blk-pci,drive=d0",
            "-drive",
            "file=y,if=virtio",
            "-machine",
            "type=pc",
        ]);
        assert_eq!((o.machine, o.disks.len()), (MachineType::Pc, 2));
        assert_eq!(
            fails(&["-M", "pc,acpi=off"]),
            "-M pc: unknown property 'acpi' (pc takes none)"
        );
        assert_eq!(
            fails(&["-machine", "q35"]),
            "-machine q35: not supported (only microvm and pc)"
        );
        assert_eq!(
            fails(&["-M", "isapc"]),
            "-M isapc: unknown machine (only microvm and pc; -M help lists them)"
        );
        assert_eq!(
            fails(&["-M", "microvm,x-option-roms=off"]),
            "-M microvm: unknown property 'x-option-roms' (expected acpi, pic, pit, rtc)"
        );
        assert_eq!(
            fails(&["-M", "microvm,acpi=auto"]),
            "-M: acpi=auto: expected on or off"
        );
        assert!(machine_help().contains("microvm"));
        assert!(machine_help().contains("\npc "));
    }

    #[test]
    fn accepted_qemu_compat_options() {
        let o = run(&[
            "-accel",
            "tcg",
            "-nographic",
            "-serial",
            "stdio",
            "-smp",
            "1",
            "-nic",
            "none",
            "-no-reboot",
            "-accel",
            "tcg,thread=single",
            "-smp",
            "cpus=1",
            "-serial",
            "mon:stdio",
        ]);
        assert!(o.no_reboot);
        assert_eq!(
            fails(&["-accel", "kvm"]),
            "-accel kvm: only 'tcg' is supported"
        );
        assert_eq!(
            fails(&["-accel", "tcg,tb-size=64"]),
            "-accel tcg,tb-size=64: unsupported option 'tb-size'"
        );
        // Found by the cli_args fuzz target: an argument with a newline made a two-line error.
        let e = parse(["-g\nx"]).unwrap_err().to_string();
        assert_eq!(e, "-g\\nx: unknown option (see --help)");
        // Found by the cli_args fuzz target: an empty argument was named by nothing.
        assert!(fails(&[""]).starts_with("'': unexpected argument"));
        // Found by the cli_args fuzz target: the key=value error used to omit the option.
        assert_eq!(
            fails(&["-accel", "tcg,foo"]),
            "-accel tcg,foo: 'foo' in 'foo': expected key=value"
        );
        assert_eq!(
            fails(&["-smp", "2"]),
            "-smp 2: only one CPU is supported ('-smp 1')"
        );
        assert_eq!(
            fails(&["-serial", "pty"]),
            "-serial pty: only 'stdio' is supported"
        );
        assert_eq!(
            fails(&["-nic", "user"]),
            "-nic user: there is no network device; only 'none' is accepted"
        );
        assert_eq!(fails(&["-accel"]), "-accel: missing value (expected tcg)");
    }

    #[test]
    fn cpu_and_global() {
        assert!(run(&["-cpu", "qemu64"]).cpu_apic);
        assert!(run(&["-cpu", "qemu64"]).cpu_x2apic);
        assert!(!run(&["-cpu", "qemu64,-x2apic"]).cpu_x2apic);
        assert!(run(&["-cpu", "qemu64,-x2apic,+x2apic"]).cpu_x2apic);
        assert!(run(&["-cpu", "qemu64,x2apic=on"]).cpu_x2apic);
        assert!(!run(&["-cpu", "qemu64,-apic"]).cpu_apic);
        assert!(!run(&["-cpu", "qemu64,apic=off"]).cpu_apic);
        assert!(run(&["-cpu", "qemu64,-apic,+apic"]).cpu_apic);
        assert_eq!(
            fails(&["-cpu", "host"]),
            "-cpu host: unknown CPU model (only qemu64)"
        );
        assert_eq!(
            fails(&["-cpu", "qemu64,+avx"]),
            "-cpu qemu64,+avx: unsupported feature '+avx' (only apic and x2apic can be switched)"
        );
        assert!(run(&[]).virtio_mmio_force_legacy);
        assert!(!run(&["-global", "virtio-mmio.force-legacy=false"]).virtio_mmio_force_legacy);
        assert!(run(&["-global", "virtio-mmio.force-legacy=true"]).virtio_mmio_force_legacy);
        assert_eq!(
            fails(&["-global", "virtio-mmio.force-legacy=maybe"]),
            "-global virtio-mmio.force-legacy=maybe: expected true or false"
        );
        assert_eq!(
            fails(&["-global", "isa-serial.iobase=1"]),
            "-global isa-serial.iobase=1: unsupported (only virtio-mmio.force-legacy=true|false)"
        );
    }

    #[test]
    fn icount() {
        assert_eq!(
            run(&["-icount", "shift=0,sleep=off"]).icount,
            Some(Icount {
                shift: 0,
                sleep: false
            })
        );
        assert_eq!(
            run(&["-icount", "shift=3"]).icount,
            Some(Icount {
                shift: 3,
                sleep: true
            })
        );
        assert_eq!(
            run(&["-icount", "7"]).icount,
            Some(Icount {
                shift: 7,
                sleep: true
            })
        );
        assert_eq!(
            fails(&["-icount", "shift=11"]),
            "-icount shift=11: expected a number from 0 to 10"
        );
        assert_eq!(
            fails(&["-icount", "shift=x"]),
            "-icount shift=x: expected a number from 0 to 10"
        );
        assert_eq!(
            fails(&["-icount", "shift=auto"]),
            "-icount shift=auto: not supported (give a number 0..10)"
        );
        assert_eq!(
            fails(&["-icount", "sleep=off"]),
            "-icount sleep=off: missing shift=N"
        );
        assert_eq!(
            fails(&["-icount", "shift=1,sleep=2"]),
            "-icount: sleep=2: expected on or off"
        );
        assert_eq!(
            fails(&["-icount", "shift=1,align=on"]),
            "-icount shift=1,align=on: unknown key 'align' (expected shift, sleep)"
        );
    }

    #[test]
    fn trace_items() {
        let o = run(&[
            "-d",
            "in_asm,op,op_opt,exec,cpu,int,unimp",
            "-D",
            "trace.log",
        ]);
        assert_eq!(
            o.trace,
            TraceFlags {
                in_asm: true,
                op: true,
                op_opt: true,
                exec: true,
                cpu: true,
                int: true,
                unimp: true
            }
        );
        assert_eq!(o.log_file, Some(PathBuf::from("trace.log")));
        assert_eq!(
            run(&["-d", "int"]).trace,
            TraceFlags {
                int: true,
                ..TraceFlags::default()
            }
        );
        assert_eq!(
            fails(&["-d", "bogus"]),
            "-d bogus: unknown item 'bogus' (expected in_asm, op, op_opt, exec, cpu, int, unimp)"
        );
        assert_eq!(
            fails(&["-d", "int,,cpu"]),
            "-d int,,cpu: unknown item '' (expected in_asm, op, op_opt, exec, cpu, int, unimp)"
        );
        assert_eq!(fails(&["-D", ""]), "-D: empty file name");
        assert_eq!(
            fails(&["-d"]),
            "-d: missing value (expected trace items, or 'help')"
        );
    }

    #[test]
    fn misc_flags_and_errors() {
        let o = run(&["--stats", "-no-reboot"]);
        assert!(o.stats && o.no_reboot);
        assert!(run(&["-stats"]).stats);
        assert_eq!(fails(&["-bogus"]), "-bogus: unknown option (see --help)");
        assert_eq!(fails(&["--bogus"]), "--bogus: unknown option (see --help)");
        assert_eq!(
            fails(&["bzImage"]),
            "bzImage: unexpected argument (options start with '-'; a kernel is given with -kernel FILE)"
        );
        assert_eq!(
            fails(&["-kernel"]),
            "-kernel: missing value (expected a file name)"
        );
        assert_eq!(fails(&["-kernel", ""]), "-kernel: empty file name");
        assert_eq!(
            fails(&["-initrd", "rd"]),
            "-initrd: needs -kernel too (the bundled guest has its own initrd)"
        );
        assert_eq!(
            fails(&["-append"]),
            "-append: missing value (expected the kernel command line)"
        );
    }

    #[test]
    fn verify_guest_microvm_command_lines_parse() {
        // The microvm cases of ../shared/guest/verify-guest.sh.
        let base = [
            "-accel",
            "tcg",
            "-m",
            "256M",
            "-nographic",
            "-no-reboot",
            "-kernel",
            "tiny.bzImage",
            "-initrd",
            "initramfs.cpio.gz",
            "-append",
            "console=ttyS0 panic=-1 reboot=t guest.test=1",
            "-drive",
            "id=d0,file=COPY.ext2,format=raw,if=none",
            "-device",
            "virtio-blk-device,drive=d0",
        ];
        let prefixes: [&[&str]; 4] = [
            &["-M", "microvm,acpi=off"],
            &[
                "-M",
                "microvm,acpi=off,pic=on,pit=on,rtc=on",
                "-cpu",
                "qemu64,-apic",
            ],
            &[
                "-M",
                "microvm,acpi=off",
                "-global",
                "virtio-mmio.force-legacy=false",
            ],
            &["-M", "microvm"],
        ];
        for p in prefixes {
            let mut args: Vec<&str> = p.to_vec();
            args.extend_from_slice(&base);
            args.extend_from_slice(&["-icount", "shift=0,sleep=off"]);
            let o = run(&args);
            assert_eq!(o.disks.len(), 1);
            assert_eq!(o.ram_bytes, 256 << 20);
        }
    }
}
