//! The GDB remote stub, on the `gdbstub` crate (which implements the protocol): `-s`, `-gdb`,
//! and the monitor's `gdbserver`. The run loop feeds it the bytes a debugger sends
//! ([`GdbSession::feed`]) and the machine's debug stops ([`GdbSession::report`]); this file is
//! the [`Target`] glue between gdbstub and [`Vm`].
//!
//! - Registers: GDB's x86-64 core and SSE sets (gdbstub_arch's `X86_64CoreRegs`) plus
//!   `fs_base`/`gs_base` (GDB's segments feature), `k_gs_base`, CR0/2/3/4/8 and EFER.
//! - Memory: guest-virtual through the current page tables, without side effects, or
//!   physical after `maintenance packet Qqemu.PhyMemMode:1` (as with QEMU).
//! - Breakpoints (Z0, Z1) never patch guest memory; watchpoints (Z2-Z4) use the softmmu slow
//!   path of watched pages; single-step is a one-instruction block (not the guest's TF).

use std::io::Write;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread;

use gdbstub::arch::{Arch, RegId, Registers};
use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::single_register_access::{
    SingleRegisterAccess, SingleRegisterAccessOps,
};
use gdbstub::target::ext::base::singlethread::{
    SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep,
    SingleThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps,
    SwBreakpoint, SwBreakpointOps, WatchKind as GdbWatchKind,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use tci64_machine::{DebugRegs, DebugStop, WatchKind, Watchpoint};

use crate::cli::GdbAddr;
use crate::host::events::HostEvent;
use crate::vm::{Exec, Vm};

// ---- the architecture: GDB's x86-64 registers plus the system registers

/// x86-64 with the registers of GDB's `i386/64bit-core`, `64bit-sse` and `64bit-segments`
/// features, and a system feature (k_gs_base, CR0, CR2, CR3, CR4, CR8, EFER) as QEMU has.
pub enum X86_64System {}

/// Registers after the SSE ones, in target-description order.
const SYS_REGS: [&str; 9] = [
    "fs_base",
    "gs_base",
    "k_gs_base",
    "cr0",
    "cr2",
    "cr3",
    "cr4",
    "cr8",
    "efer",
];
/// Number of the first of [`SYS_REGS`] (after rax..r15, rip, eflags, 6 segments, st0-7, the 8
/// x87 control registers, xmm0-15 and mxcsr).
const FIRST_SYS_REG: usize = 57;

/// The register file GDB sees.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SysRegs {
    pub core: X86_64CoreRegs,
    /// [`SYS_REGS`] in order.
    pub sys: [u64; 9],
}

impl Registers for SysRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for v in &self.sys {
            for b in v.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        const CORE: usize = 0x218;
        if bytes.len() < CORE + 8 * SYS_REGS.len() {
            return Err(());
        }
        self.core.gdb_deserialize(&bytes[..CORE])?;
        for (i, v) in self.sys.iter_mut().enumerate() {
            let o = CORE + 8 * i;
            *v = u64::from_le_bytes(bytes[o..o + 8].try_into().map_err(|_| ())?);
        }
        Ok(())
    }
}

/// A register number of the target description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegNum(pub usize);

/// (offset, size) of register `n` in the `g` packet.
fn reg_layout(n: usize) -> Option<(usize, usize)> {
    let sizes = |i: usize| -> usize {
        match i {
            0..=16 => 8,
            17..=23 => 4,
            24..=31 => 10,
            32..=39 => 4,
            40..=55 => 16,
            56 => 4,
            _ => 8,
        }
    };
    if n >= FIRST_SYS_REG + SYS_REGS.len() {
        return None;
    }
    let off = (0..n).map(sizes).sum();
    Some((off, sizes(n)))
}

impl RegId for RegNum {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        let (_, size) = reg_layout(id)?;
        Some((RegNum(id), NonZeroUsize::new(size)))
    }
}

impl Arch for X86_64System {
    type Usize = u64;
    type Registers = SysRegs;
    type RegId = RegNum;
    type BreakpointKind = usize;

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

/// The target description (register names, types and order of the `g` packet).
const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
<feature name="org.gnu.gdb.i386.core">
  <flags id="i386_eflags" size="4">
    <field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
    <field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
    <field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
    <field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
    <field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
    <field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
    <field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
    <field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
    <field name="ID" start="21" end="21"/>
  </flags>
  <reg name="rax" bitsize="64" type="int64"/>
  <reg name="rbx" bitsize="64" type="int64"/>
  <reg name="rcx" bitsize="64" type="int64"/>
  <reg name="rdx" bitsize="64" type="int64"/>
  <reg name="rsi" bitsize="64" type="int64"/>
  <reg name="rdi" bitsize="64" type="int64"/>
  <reg name="rbp" bitsize="64" type="data_ptr"/>
  <reg name="rsp" bitsize="64" type="data_ptr"/>
  <reg name="r8" bitsize="64" type="int64"/>
  <reg name="r9" bitsize="64" type="int64"/>
  <reg name="r10" bitsize="64" type="int64"/>
  <reg name="r11" bitsize="64" type="int64"/>
  <reg name="r12" bitsize="64" type="int64"/>
  <reg name="r13" bitsize="64" type="int64"/>
  <reg name="r14" bitsize="64" type="int64"/>
  <reg name="r15" bitsize="64" type="int64"/>
  <reg name="rip" bitsize="64" type="code_ptr"/>
  <reg name="eflags" bitsize="32" type="i386_eflags"/>
  <reg name="cs" bitsize="32" type="int32"/>
  <reg name="ss" bitsize="32" type="int32"/>
  <reg name="ds" bitsize="32" type="int32"/>
  <reg name="es" bitsize="32" type="int32"/>
  <reg name="fs" bitsize="32" type="int32"/>
  <reg name="gs" bitsize="32" type="int32"/>
  <reg name="st0" bitsize="80" type="i387_ext"/>
  <reg name="st1" bitsize="80" type="i387_ext"/>
  <reg name="st2" bitsize="80" type="i387_ext"/>
  <reg name="st3" bitsize="80" type="i387_ext"/>
  <reg name="st4" bitsize="80" type="i387_ext"/>
  <reg name="st5" bitsize="80" type="i387_ext"/>
  <reg name="st6" bitsize="80" type="i387_ext"/>
  <reg name="st7" bitsize="80" type="i387_ext"/>
  <reg name="fctrl" bitsize="32" type="int" group="float"/>
  <reg name="fstat" bitsize="32" type="int" group="float"/>
  <reg name="ftag" bitsize="32" type="int" group="float"/>
  <reg name="fiseg" bitsize="32" type="int" group="float"/>
  <reg name="fioff" bitsize="32" type="int" group="float"/>
  <reg name="foseg" bitsize="32" type="int" group="float"/>
  <reg name="fooff" bitsize="32" type="int" group="float"/>
  <reg name="fop" bitsize="32" type="int" group="float"/>
</feature>
<feature name="org.gnu.gdb.i386.sse">
  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>
  <flags id="i386_mxcsr" size="4">
    <field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
    <field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
    <field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
    <field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
    <field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
    <field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
    <field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
  </flags>
  <reg name="xmm0" bitsize="128" type="vec128" regnum="40"/>
  <reg name="xmm1" bitsize="128" type="vec128"/>
  <reg name="xmm2" bitsize="128" type="vec128"/>
  <reg name="xmm3" bitsize="128" type="vec128"/>
  <reg name="xmm4" bitsize="128" type="vec128"/>
  <reg name="xmm5" bitsize="128" type="vec128"/>
  <reg name="xmm6" bitsize="128" type="vec128"/>
  <reg name="xmm7" bitsize="128" type="vec128"/>
  <reg name="xmm8" bitsize="128" type="vec128"/>
  <reg name="xmm9" bitsize="128" type="vec128"/>
  <reg name="xmm10" bitsize="128" type="vec128"/>
  <reg name="xmm11" bitsize="128" type="vec128"/>
  <reg name="xmm12" bitsize="128" type="vec128"/>
  <reg name="xmm13" bitsize="128" type="vec128"/>
  <reg name="xmm14" bitsize="128" type="vec128"/>
  <reg name="xmm15" bitsize="128" type="vec128"/>
  <reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector"/>
</feature>
<feature name="org.gnu.gdb.i386.segments">
  <reg name="fs_base" bitsize="64" type="int" regnum="57"/>
  <reg name="gs_base" bitsize="64" type="int"/>
</feature>
<feature name="org.tci64.gdb.x86.sys">
  <reg name="k_gs_base" bitsize="64" type="int" group="system"/>
  <reg name="cr0" bitsize="64" type="int" group="system"/>
  <reg name="cr2" bitsize="64" type="int" group="system"/>
  <reg name="cr3" bitsize="64" type="int" group="system"/>
  <reg name="cr4" bitsize="64" type="int" group="system"/>
  <reg name="cr8" bitsize="64" type="int" group="system"/>
  <reg name="efer" bitsize="64" type="int" group="system"/>
</feature>
</target>
"#;

/// GDB's register order of the GPRs, as x86 encoding numbers.
const GDB_GPR: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];
/// GDB's segment order (cs, ss, ds, es, fs, gs) as indices into ES, CS, SS, DS, FS, GS.
const GDB_SEG: [usize; 6] = [1, 2, 3, 0, 4, 5];

/// The machine's registers in GDB's layout.
pub fn to_gdb(d: &DebugRegs) -> SysRegs {
    let mut r = SysRegs::default();
    for (i, &e) in GDB_GPR.iter().enumerate() {
        r.core.regs[i] = d.gpr[e];
    }
    r.core.rip = d.rip;
    r.core.eflags = d.rflags as u32;
    let s = &mut r.core.segments;
    let sel = |i: usize| d.sel[GDB_SEG[i]] as u32;
    (s.cs, s.ss, s.ds, s.es, s.fs, s.gs) = (sel(0), sel(1), sel(2), sel(3), sel(4), sel(5));
    r.core.st = d.st;
    let f = &mut r.core.fpu;
    f.fctrl = d.fcw as u32;
    f.fstat = d.fsw as u32;
    f.ftag = d.ftw as u32;
    f.fiseg = d.fcs as u32;
    f.fioff = d.fip as u32;
    f.foseg = d.fds as u32;
    f.fooff = d.fdp as u32;
    f.fop = d.fop as u32;
    r.core.xmm = d.xmm;
    r.core.mxcsr = d.mxcsr;
    r.sys = [
        d.fs_base,
        d.gs_base,
        d.kernel_gs_base,
        d.cr0,
        d.cr2,
        d.cr3,
        d.cr4,
        d.cr8,
        d.efer,
    ];
    r
}

/// GDB's registers applied to the machine's view `d` (fields GDB does not carry are kept).
pub fn from_gdb(r: &SysRegs, d: &mut DebugRegs) {
    for (i, &e) in GDB_GPR.iter().enumerate() {
        d.gpr[e] = r.core.regs[i];
    }
    d.rip = r.core.rip;
    d.rflags = (d.rflags & !0xffff_ffff) | r.core.eflags as u64;
    let s = &r.core.segments;
    for (i, v) in [s.cs, s.ss, s.ds, s.es, s.fs, s.gs].iter().enumerate() {
        d.sel[GDB_SEG[i]] = *v as u16;
    }
    d.st = r.core.st;
    let f = &r.core.fpu;
    d.fcw = f.fctrl as u16;
    d.fsw = f.fstat as u16;
    d.ftw = f.ftag as u16;
    d.fcs = f.fiseg as u16;
    d.fip = (d.fip & !0xffff_ffff) | f.fioff as u64;
    d.fds = f.foseg as u16;
    d.fdp = (d.fdp & !0xffff_ffff) | f.fooff as u64;
    d.fop = f.fop as u16;
    d.xmm = r.core.xmm;
    d.mxcsr = r.core.mxcsr;
    [
        d.fs_base,
        d.gs_base,
        d.kernel_gs_base,
        d.cr0,
        d.cr2,
        d.cr3,
        d.cr4,
        d.cr8,
        d.efer,
    ] = r.sys;
}

// ---- the connection

/// Bytes to a debugger; gdbstub writes a packet and flushes it.
pub struct GdbConn {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl Connection for GdbConn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.buf.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.buf.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        let r = self
            .out
            .write_all(&self.buf)
            .and_then(|()| self.out.flush());
        self.buf.clear();
        r
    }
}

/// Start listening for debuggers on `addr`: an accept thread sends
/// [`HostEvent::GdbConnected`], and a reader thread per connection its bytes. Returns the
/// address as QEMU spells it.
pub fn listen(addr: &GdbAddr, tx: Sender<HostEvent>) -> Result<String, String> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    match addr {
        GdbAddr::Tcp { host, port } => {
            let bind_host = if host.is_empty() { "0.0.0.0" } else { host };
            let l =
                TcpListener::bind((bind_host, *port)).map_err(|e| format!("-gdb {addr}: {e}"))?;
            thread::Builder::new()
                .name("gdb-accept".into())
                .spawn(move || {
                    for s in l.incoming() {
                        let Ok(s) = s else { continue };
                        let _ = s.set_nodelay(true);
                        let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                        let Ok(w) = s.try_clone() else { continue };
                        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                        spawn_reader(id, s, tx.clone());
                        if tx
                            .send(HostEvent::GdbConnected {
                                id,
                                writer: Box::new(w),
                                peer,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(format!("tcp:{host}:{port}"))
        }
        GdbAddr::Unix(path) => {
            // A stale socket file from an earlier run would make bind fail.
            if std::fs::symlink_metadata(path)
                .map(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                })
                .unwrap_or(false)
            {
                let _ = std::fs::remove_file(path);
            }
            let l = UnixListener::bind(path).map_err(|e| format!("-gdb {addr}: {e}"))?;
            thread::Builder::new()
                .name("gdb-accept".into())
                .spawn(move || {
                    for s in l.incoming() {
                        let Ok(s) = s else { continue };
                        let Ok(w) = s.try_clone() else { continue };
                        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                        spawn_reader(id, s, tx.clone());
                        if tx
                            .send(HostEvent::GdbConnected {
                                id,
                                writer: Box::new(w),
                                peer: "unix socket".into(),
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(format!("unix:{}", path.display()))
        }
    }
}

fn spawn_reader<R: std::io::Read + Send + 'static>(id: u64, mut r: R, tx: Sender<HostEvent>) {
    let _ = thread::Builder::new()
        .name(format!("gdb-{id}"))
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .send(HostEvent::GdbData {
                                id,
                                bytes: buf[..n].to_vec(),
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = tx.send(HostEvent::GdbClosed { id });
        });
}

// ---- the session

/// What the run loop must do after feeding a debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Still connected.
    Open,
    /// The debugger detached or went away: the guest runs on.
    Detached,
    /// The debugger sent `kill`: tci64 exits.
    Killed,
}

/// One connected debugger.
pub struct GdbSession {
    pub id: u64,
    sm: Option<GdbStubStateMachine<'static, Vm, GdbConn>>,
    /// Packet framing, to answer QEMU's `Qqemu.PhyMemMode` packets (gdbstub has no hook for
    /// vendor packets).
    sniff: Sniffer,
}

impl GdbSession {
    /// Start a session on a new connection. The VM stops, as QEMU's does when GDB attaches.
    pub fn new(id: u64, writer: Box<dyn Write + Send>, vm: &mut Vm) -> Result<Self, String> {
        let conn = GdbConn {
            out: writer,
            buf: Vec::new(),
        };
        let stub = GdbStub::<Vm, GdbConn>::builder(conn)
            .build()
            .map_err(|e| e.to_string())?;
        vm.running = false;
        let sm = stub.run_state_machine(vm).map_err(|e| e.to_string())?;
        Ok(GdbSession {
            id,
            sm: Some(sm),
            sniff: Sniffer::default(),
        })
    }

    /// True while the debugger thinks the target runs (it waits for a stop reply).
    pub fn target_running(&self) -> bool {
        matches!(self.sm, Some(GdbStubStateMachine::Running(_)))
    }

    /// Feed bytes from the debugger.
    pub fn feed(&mut self, vm: &mut Vm, bytes: &[u8]) -> SessionEnd {
        for &b in bytes {
            match self.sniff.push(b) {
                SniffResult::Pass(pass) => {
                    for p in pass {
                        if let e @ (SessionEnd::Detached | SessionEnd::Killed) = self.byte(vm, p) {
                            return e;
                        }
                    }
                }
                SniffResult::Hold => {}
                SniffResult::Vendor(payload) => {
                    let reply = vendor_packet(vm, &payload);
                    self.send_raw(&reply);
                }
            }
        }
        SessionEnd::Open
    }

    /// Send a reply packet for a vendor packet, acknowledged (no-ack mode is off).
    fn send_raw(&mut self, payload: &str) {
        let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        let pkt = format!("+${payload}#{sum:02x}");
        if let Some(sm) = &mut self.sm {
            let conn = match sm {
                GdbStubStateMachine::Idle(s) => s.borrow_conn(),
                GdbStubStateMachine::Running(s) => s.borrow_conn(),
                GdbStubStateMachine::CtrlCInterrupt(s) => s.borrow_conn(),
                GdbStubStateMachine::Disconnected(s) => s.borrow_conn(),
            };
            let _ = conn.write_all(pkt.as_bytes());
            let _ = conn.flush();
        }
    }

    fn byte(&mut self, vm: &mut Vm, b: u8) -> SessionEnd {
        let Some(sm) = self.sm.take() else {
            return SessionEnd::Detached;
        };
        let next = match sm {
            GdbStubStateMachine::Idle(s) => s.incoming_data(vm, b),
            GdbStubStateMachine::Running(s) => s.incoming_data(vm, b),
            GdbStubStateMachine::CtrlCInterrupt(s) => {
                // Not reached: interrupts are answered right below.
                s.interrupt_handled(
                    vm,
                    Some(SingleThreadStopReason::<u64>::Signal(Signal::SIGINT)),
                )
            }
            GdbStubStateMachine::Disconnected(_) => return SessionEnd::Detached,
        };
        let mut next = match next {
            Ok(n) => n,
            Err(e) => {
                log::warn!("gdb: {e}");
                return SessionEnd::Detached;
            }
        };
        if let GdbStubStateMachine::CtrlCInterrupt(s) = next {
            // Ctrl-C: stop the guest where it is.
            vm.running = false;
            next = match s.interrupt_handled(
                vm,
                Some(SingleThreadStopReason::<u64>::Signal(Signal::SIGINT)),
            ) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!("gdb: {e}");
                    return SessionEnd::Detached;
                }
            };
        }
        match next {
            GdbStubStateMachine::Disconnected(s) => {
                let reason = s.get_reason();
                vm.machine.clear_debug();
                vm.hw_breakpoints.clear();
                vm.phys_mem_mode = false;
                match reason {
                    DisconnectReason::Kill => SessionEnd::Killed,
                    _ => SessionEnd::Detached,
                }
            }
            other => {
                self.sm = Some(other);
                SessionEnd::Open
            }
        }
    }

    /// Tell the debugger why the machine stopped (if it is waiting for that).
    pub fn report(&mut self, vm: &mut Vm, stop: SingleThreadStopReason<u64>) -> SessionEnd {
        let Some(sm) = self.sm.take() else {
            return SessionEnd::Detached;
        };
        match sm {
            GdbStubStateMachine::Running(s) => match s.report_stop(vm, stop) {
                Ok(GdbStubStateMachine::Disconnected(d)) => {
                    vm.machine.clear_debug();
                    match d.get_reason() {
                        DisconnectReason::Kill => SessionEnd::Killed,
                        _ => SessionEnd::Detached,
                    }
                }
                Ok(n) => {
                    self.sm = Some(n);
                    SessionEnd::Open
                }
                Err(e) => {
                    log::warn!("gdb: {e}");
                    SessionEnd::Detached
                }
            },
            other => {
                self.sm = Some(other);
                SessionEnd::Open
            }
        }
    }

    /// The machine stopped for a debug reason: report it in GDB's terms.
    pub fn report_debug(&mut self, vm: &mut Vm, d: DebugStop) -> SessionEnd {
        let reason = match d {
            DebugStop::Step => SingleThreadStopReason::DoneStep,
            DebugStop::Breakpoint => {
                if vm.hw_breakpoints.contains(&vm.machine.regs().rip) {
                    SingleThreadStopReason::HwBreak(())
                } else {
                    SingleThreadStopReason::SwBreak(())
                }
            }
            DebugStop::Watch { addr, kind } => SingleThreadStopReason::Watch {
                tid: (),
                kind: match kind {
                    WatchKind::Write => GdbWatchKind::Write,
                    WatchKind::Read => GdbWatchKind::Read,
                    WatchKind::Access => GdbWatchKind::ReadWrite,
                },
                addr,
            },
        };
        self.report(vm, reason)
    }
}

/// Answer a packet gdbstub does not know (QEMU's vendor packets).
fn vendor_packet(vm: &mut Vm, payload: &str) -> String {
    if let Some(v) = payload.strip_prefix("Qqemu.PhyMemMode:") {
        match v {
            "1" => vm.phys_mem_mode = true,
            "0" => vm.phys_mem_mode = false,
            _ => return "E22".into(),
        }
        return "OK".into();
    }
    if payload == "qqemu.PhyMemMode" {
        return if vm.phys_mem_mode { "1" } else { "0" }.into();
    }
    String::new()
}

/// Splits the byte stream into packets just enough to take out QEMU's vendor packets.
#[derive(Default)]
struct Sniffer {
    /// Inside a packet: the bytes so far (from `$`).
    pkt: Option<Vec<u8>>,
    /// Checksum digits still to come.
    sum_left: u8,
}

enum SniffResult {
    /// Pass these bytes on to gdbstub.
    Pass(Vec<u8>),
    /// Keep collecting.
    Hold,
    /// A vendor packet (payload), already taken out of the stream.
    Vendor(String),
}

impl Sniffer {
    fn push(&mut self, b: u8) -> SniffResult {
        let Some(pkt) = &mut self.pkt else {
            if b == b'$' {
                self.pkt = Some(vec![b]);
                return SniffResult::Hold;
            }
            return SniffResult::Pass(vec![b]);
        };
        pkt.push(b);
        if self.sum_left > 0 {
            self.sum_left -= 1;
            if self.sum_left == 0 {
                let pkt = self.pkt.take().unwrap_or_default();
                let payload = &pkt[1..pkt.len() - 3];
                if payload.starts_with(b"Qqemu.") || payload.starts_with(b"qqemu.") {
                    return SniffResult::Vendor(String::from_utf8_lossy(payload).into_owned());
                }
                return SniffResult::Pass(pkt);
            }
            return SniffResult::Hold;
        }
        if b == b'#' {
            self.sum_left = 2;
        }
        SniffResult::Hold
    }
}

// ---- gdbstub's target

impl Target for Vm {
    type Arch = X86_64System;
    type Error = String;

    #[inline(always)]
    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    #[inline(always)]
    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn use_no_ack_mode(&self) -> bool {
        // Acknowledged packets keep the vendor-packet replies simple.
        false
    }
}

impl SingleThreadBase for Vm {
    fn read_registers(&mut self, regs: &mut SysRegs) -> TargetResult<(), Self> {
        *regs = to_gdb(&self.machine.regs());
        Ok(())
    }

    fn write_registers(&mut self, regs: &SysRegs) -> TargetResult<(), Self> {
        let mut d = self.machine.regs();
        from_gdb(regs, &mut d);
        self.machine.set_regs(&d).map_err(|e| {
            log::warn!("gdb: register write refused: {e}");
            TargetError::Errno(22)
        })
    }

    #[inline(always)]
    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, (), Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        let n = if self.phys_mem_mode {
            if self.machine.read_phys(start, data) {
                data.len()
            } else {
                0
            }
        } else {
            self.machine.read_virt(start, data)
        };
        if n == 0 && !data.is_empty() {
            return Err(TargetError::Errno(14));
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8]) -> TargetResult<(), Self> {
        let ok = if self.phys_mem_mode {
            self.machine.write_phys(start, data)
        } else {
            self.machine.write_virt(start, data) == data.len()
        };
        if ok {
            Ok(())
        } else {
            Err(TargetError::Errno(14))
        }
    }

    #[inline(always)]
    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<()> for Vm {
    fn read_register(&mut self, _: (), reg: RegNum, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let Some((off, size)) = reg_layout(reg.0) else {
            return Err(TargetError::NonFatal);
        };
        let mut all = Vec::new();
        to_gdb(&self.machine.regs()).gdb_serialize(|b| all.push(b.unwrap_or(0)));
        let n = size.min(buf.len());
        buf[..n].copy_from_slice(&all[off..off + n]);
        Ok(n)
    }

    fn write_register(&mut self, _: (), reg: RegNum, val: &[u8]) -> TargetResult<(), Self> {
        let Some((off, size)) = reg_layout(reg.0) else {
            return Err(TargetError::NonFatal);
        };
        if val.len() != size {
            return Err(TargetError::NonFatal);
        }
        let mut d = self.machine.regs();
        let mut all = Vec::new();
        to_gdb(&d).gdb_serialize(|b| all.push(b.unwrap_or(0)));
        all[off..off + size].copy_from_slice(val);
        let mut r = SysRegs::default();
        r.gdb_deserialize(&all)
            .map_err(|()| TargetError::NonFatal)?;
        from_gdb(&r, &mut d);
        self.machine.set_regs(&d).map_err(|e| {
            log::warn!("gdb: register write refused: {e}");
            TargetError::Errno(22)
        })
    }
}

impl SingleThreadResume for Vm {
    fn resume(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            log::debug!("gdb: continue with a signal: the signal is ignored");
        }
        Vm::resume(self, Exec::Continue);
        Ok(())
    }

    #[inline(always)]
    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for Vm {
    fn step(&mut self, signal: Option<Signal>) -> Result<(), Self::Error> {
        if signal.is_some() {
            log::debug!("gdb: step with a signal: the signal is ignored");
        }
        Vm::resume(self, Exec::Step);
        Ok(())
    }
}

impl Breakpoints for Vm {
    #[inline(always)]
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for Vm {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.machine.add_breakpoint(addr);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_breakpoint(addr))
    }
}

impl HwBreakpoint for Vm {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.machine.add_breakpoint(addr);
        self.hw_breakpoints.push(addr);
        Ok(true)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if let Some(i) = self.hw_breakpoints.iter().position(|&a| a == addr) {
            self.hw_breakpoints.remove(i);
        }
        Ok(self.machine.remove_breakpoint(addr))
    }
}

fn watchpoint(addr: u64, len: u64, kind: GdbWatchKind) -> Watchpoint {
    Watchpoint {
        addr,
        len,
        kind: match kind {
            GdbWatchKind::Write => WatchKind::Write,
            GdbWatchKind::Read => WatchKind::Read,
            GdbWatchKind::ReadWrite => WatchKind::Access,
        },
    }
}

impl HwWatchpoint for Vm {
    fn add_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        if len == 0 {
            return Ok(false);
        }
        self.machine.add_watchpoint(watchpoint(addr, len, kind));
        Ok(true)
    }

    fn remove_hw_watchpoint(
        &mut self,
        addr: u64,
        len: u64,
        kind: GdbWatchKind,
    ) -> TargetResult<bool, Self> {
        Ok(self.machine.remove_watchpoint(watchpoint(addr, len, kind)))
    }
}

impl MonitorCmd for Vm {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), String> {
        let cmd = String::from_utf8_lossy(cmd);
        let text = crate::monitor::execute(self, &cmd);
        out.write_raw(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_layout_matches_the_description() {
        // rip at 0x80, eflags at 0x88, st0 at 0xa4, xmm0 at 0x114, mxcsr at 0x214.
        assert_eq!(reg_layout(16), Some((0x80, 8)));
        assert_eq!(reg_layout(17), Some((0x88, 4)));
        assert_eq!(reg_layout(24), Some((0xa4, 10)));
        assert_eq!(reg_layout(40), Some((0x114, 16)));
        assert_eq!(reg_layout(56), Some((0x214, 4)));
        assert_eq!(reg_layout(57), Some((0x218, 8)));
        assert_eq!(reg_layout(65), Some((0x218 + 64, 8)));
        assert_eq!(reg_layout(66), None);
        // The description lists every register of the layout, in order.
        let names = TARGET_XML.matches("<reg name=").count();
        assert_eq!(names, FIRST_SYS_REG + SYS_REGS.len());
        let mut bytes = Vec::new();
        SysRegs::default().gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        assert_eq!(bytes.len(), 0x218 + 72);
    }

    #[test]
    fn gdb_view_round_trips() {
        let mut d = DebugRegs {
            rip: 0xffff_ffff_8100_0000,
            rflags: 0x246,
            cr3: 0x1234_5000,
            efer: 0xd01,
            fs_base: 0x7f00_0000_1000,
            ..DebugRegs::default()
        };
        for i in 0..16 {
            d.gpr[i] = 0x1000 + i as u64;
        }
        d.sel = [0x10, 0x08, 0x18, 0x20, 0x28, 0x30];
        let g = to_gdb(&d);
        assert_eq!(g.core.regs[1], 0x1003, "rbx is gdb's second register");
        assert_eq!(g.core.regs[7], 0x1004, "rsp is gdb's eighth register");
        assert_eq!(g.core.segments.cs, 0x08);
        assert_eq!(g.sys[0], 0x7f00_0000_1000);
        let mut back = DebugRegs::default();
        from_gdb(&g, &mut back);
        assert_eq!(back, d);
    }

    #[test]
    fn sniffer_takes_out_vendor_packets_only() {
        let mut s = Sniffer::default();
        let mut passed = Vec::new();
        let mut vendor = Vec::new();
        for &b in b"+$g#67$Qqemu.PhyMemMode:1#3c\x03" {
            match s.push(b) {
                SniffResult::Pass(p) => passed.extend(p),
                SniffResult::Hold => {}
                SniffResult::Vendor(v) => vendor.push(v),
            }
        }
        assert_eq!(passed, b"+$g#67\x03");
        assert_eq!(vendor, vec!["Qqemu.PhyMemMode:1".to_string()]);
    }
}
