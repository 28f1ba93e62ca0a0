//! A subset of QEMU's human monitor (HMP): the same command names and output layouts, so that
//! habits and scripts carry over. It runs on the console (Ctrl-A c, `-monitor stdio`) and
//! behind GDB's `monitor` command (qRcmd); both call [`execute`].

use std::fmt::Write;

use tci64_machine::memmap::RegionKind;
use tci64_machine::{DebugRegs, Mapping};

use crate::cli::parse_gdb;
use crate::vm::{Exec, Request, Vm};

/// The prompt, QEMU's (scripts wait for it).
pub const PROMPT: &str = "(qemu) ";

const HELP: &str = "\
cont|c -- resume emulation
gdbserver [device] -- start gdbserver on given device (default 'tcp::1234'), stop with 'none'
help|? [cmd] -- show the help
info status -- show the current VM status (running|paused)
info registers -- show the cpu registers
info tlb -- show virtual to physical memory mappings
info mem -- show the active virtual memory mappings
info pic -- show PIC state
info lapic -- show local apic state (all registers)
info block -- show the block devices
info mtree -- show memory tree
migrate file:PATH -- save a machine snapshot to PATH (resume with -incoming file:PATH)
quit|q -- quit the emulator
stop -- stop emulation
system_reset -- reset the system
x /fmt addr -- virtual memory dump starting at 'addr'
xp /fmt addr -- physical memory dump starting at 'addr'
  (fmt is count, format (x d u o c i) and size (b h w g); addr may use $reg and +/-)
";

/// Run one command line; returns what it prints (ending in a newline unless empty).
pub fn execute(vm: &mut Vm, line: &str) -> String {
    let line = line.trim();
    let (cmd, rest) = match line.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim()),
        None => (line, ""),
    };
    match cmd {
        "" => String::new(),
        "help" | "?" | "h" => HELP.to_string(),
        "info" | "i" => info(vm, rest),
        "stop" | "s" => {
            vm.running = false;
            String::new()
        }
        "cont" | "c" => {
            vm.resume(Exec::Continue);
            String::new()
        }
        "system_reset" => {
            vm.requests.push(Request::Reset);
            String::new()
        }
        "quit" | "q" => {
            vm.requests.push(Request::Quit(0));
            String::new()
        }
        "gdbserver" => {
            let dev = if rest.is_empty() { "tcp::1234" } else { rest };
            match parse_gdb(dev) {
                Ok(Some(a)) => {
                    if let Some(l) = &vm.gdb_listening {
                        return format!("gdbserver is already running on '{l}'\n");
                    }
                    vm.requests.push(Request::GdbServer(a));
                    format!("Waiting for gdb connection on device '{dev}'\n")
                }
                Ok(None) => "Disabled gdbserver (not supported: it keeps listening)\n".into(),
                Err(e) => format!("{e}\n"),
            }
        }
        "x" | "xp" => memory_dump(vm, cmd == "xp", rest),
        "migrate" => match rest.strip_prefix("file:") {
            Some(path) if !path.is_empty() => {
                match crate::run::save_snapshot(&mut vm.machine, std::path::Path::new(path)) {
                    Ok(msg) => format!("{msg}\n"),
                    Err(e) => format!("migrate: {e}\n"),
                }
            }
            _ => "migrate: only file:PATH is supported\n".into(),
        },
        "savevm" | "loadvm" => format!("{cmd}: not supported; use migrate file:PATH\n"),
        _ => format!("unknown command: '{cmd}'\n"),
    }
}

fn info(vm: &mut Vm, what: &str) -> String {
    let m = &mut vm.machine;
    match what {
        "status" => format!(
            "VM status: {}\n",
            if vm.running { "running" } else { "paused" }
        ),
        "registers" => m.format_registers(),
        "tlb" => {
            let mut s = String::new();
            for p in m.mappings() {
                let _ = writeln!(
                    s,
                    "{:016x}: {:016x} {}{}{}{}{}--{}{}",
                    p.vaddr,
                    p.paddr,
                    if p.executable { '-' } else { 'X' },
                    if p.global { 'G' } else { '-' },
                    if p.size > 4096 { 'P' } else { '-' },
                    if p.dirty { 'D' } else { '-' },
                    if p.accessed { 'A' } else { '-' },
                    if p.user { 'U' } else { '-' },
                    if p.writable { 'W' } else { '-' },
                );
            }
            if s.is_empty() {
                s.push_str("PG disabled\n");
            }
            s
        }
        "mem" => info_mem(&m.mappings()),
        "pic" => {
            let Some(chips) = m.pic_chips() else {
                return "this machine has no 8259 PIC\n".into();
            };
            let mut s = String::new();
            for (i, c) in chips.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "pic{i}: irr={:02x} imr={:02x} isr={:02x} hprio={} irq_base={:02x} rr_sel={} elcr={:02x} fnm={}",
                    c.irr,
                    c.imr,
                    c.isr,
                    c.priority_add,
                    c.vector_base,
                    c.read_isr as u8,
                    c.elcr,
                    c.special_fully_nested as u8
                );
            }
            s
        }
        "lapic" => {
            let lapics = m.lapics();
            if lapics.is_empty() {
                return "this machine has no local APIC (-cpu qemu64,-apic)\n".into();
            }
            let mut s = String::new();
            for l in lapics {
                let _ = writeln!(
                    s,
                    "dumping local APIC state for CPU 0\n\nAPIC ID {:#x}, base MSR {:#x}: {}{}{}, PPR {:#04x}\n{l:#?}",
                    l.id(),
                    l.base_msr(),
                    if l.hw_enabled() { "enabled" } else { "disabled" },
                    if l.x2apic() { ", x2APIC mode" } else { "" },
                    if l.sw_enabled() { ", software enabled" } else { ", software disabled" },
                    l.ppr()
                );
            }
            s
        }
        "block" => {
            let views = m.disks();
            if views.is_empty() {
                return "(no block devices)\n".into();
            }
            let mut s = String::new();
            for (i, v) in views.iter().enumerate() {
                let d = vm.disks.get(i);
                let _ = writeln!(
                    s,
                    "disk{i} ({}): {} (raw{}{})\n    Attached to:      {}\n    Size:             {} bytes",
                    if i == 0 { "vda".to_string() } else { format!("vd{}", (b'a' + i as u8) as char) },
                    d.map_or("?", |d| d.file.as_str()),
                    if d.is_some_and(|d| d.read_only) { ", read-only" } else { "" },
                    if d.is_some_and(|d| d.snapshot) { ", snapshot" } else { "" },
                    v.transport,
                    v.bytes
                );
            }
            s
        }
        "mtree" => {
            let mut s = String::from("address-space: memory\n");
            for r in m.memory_regions() {
                let kind = match r.kind {
                    RegionKind::Ram | RegionKind::ReservedRam => "ram",
                    _ => "i/o",
                };
                let _ = writeln!(
                    s,
                    "  {:016x}-{:016x} (prio 0, {kind}): {}",
                    r.base,
                    r.end() - 1,
                    r.name
                );
            }
            s
        }
        "" => "info status|registers|tlb|mem|pic|lapic|block|mtree\n".into(),
        other => format!("info {other}: not supported (try 'help')\n"),
    }
}

/// QEMU's `info mem`: contiguous virtual ranges with the same permissions.
fn info_mem(maps: &[Mapping]) -> String {
    let mut s = String::new();
    let mut cur: Option<(u64, u64, bool, bool)> = None;
    let flush = |s: &mut String, c: (u64, u64, bool, bool)| {
        let _ = writeln!(
            s,
            "{:016x}-{:016x} {:016x} {}r{}",
            c.0,
            c.1,
            c.1.wrapping_sub(c.0),
            if c.2 { 'u' } else { '-' },
            if c.3 { 'w' } else { '-' }
        );
    };
    for m in maps {
        let end = m.vaddr.wrapping_add(m.size);
        match cur {
            Some((a, b, u, w)) if b == m.vaddr && u == m.user && w == m.writable => {
                cur = Some((a, end, u, w));
            }
            Some(c) => {
                flush(&mut s, c);
                cur = Some((m.vaddr, end, m.user, m.writable));
            }
            None => cur = Some((m.vaddr, end, m.user, m.writable)),
        }
    }
    if let Some(c) = cur {
        flush(&mut s, c);
    }
    if s.is_empty() {
        s.push_str("PG disabled\n");
    }
    s
}

/// `x /Ni ADDR`: `count` instructions at `addr`, decoded in the CPU's current code width, one
/// per line as QEMU prints them (address, bytes, instruction; Intel syntax here).
fn disassemble(vm: &mut Vm, phys: bool, addr: u64, count: usize) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter};
    // At most 15 bytes per instruction.
    let mut buf = vec![0u8; count * 15];
    let got = if phys {
        // Stop at the end of RAM: read page by page.
        let mut n = 0;
        while n < buf.len() {
            let chunk = (4096 - (addr.wrapping_add(n as u64) & 4095) as usize).min(buf.len() - n);
            if !vm
                .machine
                .read_phys(addr.wrapping_add(n as u64), &mut buf[n..n + chunk])
            {
                break;
            }
            n += chunk;
        }
        n
    } else {
        vm.machine.read_virt(addr, &mut buf)
    };
    let bits = vm.machine.code_bits();
    let mut dec = Decoder::with_ip(bits, &buf[..got], addr, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    let mut s = String::new();
    let mut insn = Instruction::default();
    for _ in 0..count {
        let at = dec.position();
        if !dec.can_decode() {
            let _ = writeln!(
                s,
                "Cannot access memory at address {:#x}",
                addr.wrapping_add(at as u64)
            );
            break;
        }
        dec.decode_out(&mut insn);
        if insn.is_invalid() && dec.last_error() == iced_x86::DecoderError::NoMoreBytes {
            let _ = writeln!(
                s,
                "Cannot access memory at address {:#x}",
                addr.wrapping_add(got as u64)
            );
            break;
        }
        let bytes: Vec<String> = buf[at..at + insn.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut text = String::new();
        if insn.is_invalid() {
            text.push_str("(bad)");
        } else {
            fmt.format(&insn, &mut text);
        }
        let _ = writeln!(s, "{:#018x}:  {:<30} {text}", insn.ip(), bytes.join(" "));
    }
    s
}

/// `x /FMT ADDR` (virtual) and `xp /FMT ADDR` (physical).
fn memory_dump(vm: &mut Vm, phys: bool, args: &str) -> String {
    let (fmt, addr) = match args.strip_prefix('/') {
        Some(rest) => match rest.split_once(char::is_whitespace) {
            Some((f, a)) => (f, a.trim()),
            None => return "expected /fmt addr\n".into(),
        },
        None => ("", args),
    };
    let mut count = 1usize;
    let mut format = 'x';
    let mut size = 4usize;
    let digits: String = fmt.chars().take_while(|c| c.is_ascii_digit()).collect();
    if !digits.is_empty() {
        count = match digits.parse() {
            Ok(n) => n,
            Err(_) => return format!("invalid count '{digits}'\n"),
        };
    }
    for ch in fmt[digits.len()..].chars() {
        match ch {
            'x' | 'd' | 'u' | 'o' | 'c' | 'i' => format = ch,
            'b' => size = 1,
            'h' => size = 2,
            'w' => size = 4,
            'g' => size = 8,
            _ => return format!("invalid char in format: '{ch}'\n"),
        }
    }
    if format == 'c' {
        size = 1;
    }
    let regs = vm.machine.regs();
    let addr = match eval(addr, &regs) {
        Ok(a) => a,
        Err(e) => return format!("{e}\n"),
    };
    if format == 'i' {
        return disassemble(vm, phys, addr, count.min(1 << 12));
    }
    let len = count.min(1 << 16) * size;
    let mut buf = vec![0u8; len];
    let got = if phys {
        let ok = vm.machine.read_phys(addr, &mut buf);
        if !ok {
            return format!("Cannot access memory at physical address {addr:#x} (not RAM)\n");
        }
        len
    } else {
        vm.machine.read_virt(addr, &mut buf)
    };
    let line_size = if size == 1 { 8 } else { 16 };
    let mut s = String::new();
    let mut off = 0;
    while off < len {
        if off >= got {
            let _ = writeln!(
                s,
                "Cannot access memory at address {:#x}",
                addr.wrapping_add(off as u64)
            );
            break;
        }
        let _ = write!(s, "{:016x}:", addr.wrapping_add(off as u64));
        let end = (off + line_size).min(len).min(got.max(off));
        let mut o = off;
        while o + size <= end {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(&buf[o..o + size]);
            let v = u64::from_le_bytes(b);
            let bits = size * 8;
            let signed = ((v << (64 - bits)) as i64) >> (64 - bits);
            match format {
                'x' => {
                    let _ = write!(s, " 0x{v:0w$x}", w = size * 2);
                }
                'd' => {
                    let _ = write!(s, " {signed:>w$}", w = size * 3);
                }
                'u' => {
                    let _ = write!(s, " {v:>w$}", w = size * 3);
                }
                'o' => {
                    let _ = write!(s, " {v:#o}");
                }
                _ => {
                    let c = v as u8;
                    if c.is_ascii_graphic() || c == b' ' {
                        let _ = write!(s, " '{}'", c as char);
                    } else {
                        let _ = write!(s, " '\\x{c:02x}'");
                    }
                }
            }
            o += size;
        }
        s.push('\n');
        if o == off {
            break;
        }
        off = o;
    }
    s
}

/// A monitor address expression: numbers (`0x` hex or decimal), `$reg`, `+`, `-`.
pub fn eval(expr: &str, r: &DebugRegs) -> Result<u64, String> {
    let mut total = 0u64;
    let mut sign = 1i8;
    let mut rest = expr.trim();
    if rest.is_empty() {
        return Err("missing address".into());
    }
    loop {
        let end = rest.find(['+', '-']).unwrap_or(rest.len());
        let (term, tail) = rest.split_at(end);
        let term = term.trim();
        let v = term_value(term, r)?;
        total = if sign > 0 {
            total.wrapping_add(v)
        } else {
            total.wrapping_sub(v)
        };
        if tail.is_empty() {
            return Ok(total);
        }
        sign = if tail.starts_with('+') { 1 } else { -1 };
        rest = tail[1..].trim();
        if rest.is_empty() {
            return Err(format!("'{expr}': expected a term after the operator"));
        }
    }
}

fn term_value(t: &str, r: &DebugRegs) -> Result<u64, String> {
    if let Some(name) = t.strip_prefix('$') {
        let gpr = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ];
        let name = name.to_ascii_lowercase();
        if let Some(i) = gpr.iter().position(|g| *g == name) {
            return Ok(r.gpr[i]);
        }
        return match name.as_str() {
            "rip" | "pc" => Ok(r.rip),
            "eflags" | "rflags" => Ok(r.rflags),
            "sp" => Ok(r.gpr[4]),
            "cr0" => Ok(r.cr0),
            "cr2" => Ok(r.cr2),
            "cr3" => Ok(r.cr3),
            "cr4" => Ok(r.cr4),
            "fs_base" => Ok(r.fs_base),
            "gs_base" => Ok(r.gs_base),
            _ => Err(format!("unknown register '${name}'")),
        };
    }
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| format!("invalid number '{t}'"))
}

/// Line editing for the monitor on a console: echo, backspace, Enter.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: Vec<u8>,
}

impl LineEditor {
    /// Feed typed bytes. Finished lines go to `lines`; what to echo is appended to `echo`
    /// (when the console does not echo by itself).
    pub fn feed(&mut self, input: &[u8], lines: &mut Vec<String>, echo: &mut Vec<u8>) {
        for &b in input {
            match b {
                b'\r' | b'\n' => {
                    echo.extend_from_slice(b"\r\n");
                    lines.push(String::from_utf8_lossy(&self.line).into_owned());
                    self.line.clear();
                }
                0x7f | 0x08 => {
                    if self.line.pop().is_some() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x15 => {
                    // Ctrl-U: drop the line.
                    for _ in 0..self.line.len() {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                    self.line.clear();
                }
                0x20..=0x7e => {
                    self.line.push(b);
                    echo.push(b);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        let r = DebugRegs {
            rip: 0x1000,
            gpr: [7, 0, 0, 0, 0x8000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..DebugRegs::default()
        };
        assert_eq!(eval("0x7000", &r), Ok(0x7000));
        assert_eq!(eval("4096", &r), Ok(4096));
        assert_eq!(eval("$rsp + 0x10", &r), Ok(0x8010));
        assert_eq!(eval("$pc-1", &r), Ok(0xfff));
        assert_eq!(eval("$RAX", &r), Ok(7));
        assert!(eval("$nope", &r).is_err());
        assert!(eval("12zz", &r).is_err());
        assert!(eval("1 +", &r).is_err());
    }

    #[test]
    fn line_editor() {
        let mut e = LineEditor::default();
        let (mut lines, mut echo) = (Vec::new(), Vec::new());
        e.feed(b"inf", &mut lines, &mut echo);
        e.feed(b"x\x7fo status\r", &mut lines, &mut echo);
        assert_eq!(lines, vec!["info status".to_string()]);
        assert_eq!(echo, b"infx\x08 \x08o status\r\n");
    }

    #[test]
    fn info_mem_merges_ranges() {
        let m = |vaddr: u64, size: u64, writable: bool| Mapping {
            vaddr,
            paddr: 0,
            size,
            writable,
            user: false,
            executable: true,
            accessed: false,
            dirty: false,
            global: false,
        };
        let s = info_mem(&[
            m(0, 4096, true),
            m(4096, 4096, true),
            m(0x3000, 0x1000, false),
        ]);
        assert_eq!(
            s,
            "0000000000000000-0000000000002000 0000000000002000 -rw\n\
             0000000000003000-0000000000004000 0000000000001000 -r-\n"
        );
    }
}
