//! The machine as the CLI's debugger and monitor see it: whether it runs, what a debugger asked
//! for (continue or step), and requests (quit, reset, start the GDB stub) the run loop carries
//! out.

use tci64_machine::Machine;

use crate::cli::GdbAddr;

/// How the CPU runs while the VM is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// Run freely.
    Continue,
    /// One instruction, then stop (a debugger's single-step).
    Step,
}

/// Something only the run loop can do, asked for by the monitor or the debugger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// End tci64 with this status.
    Quit(i32),
    /// Rebuild the machine from the command line (`system_reset`).
    Reset,
    /// Start the GDB stub (`gdbserver`).
    GdbServer(GdbAddr),
}

/// A disk as `info block` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDesc {
    pub file: String,
    pub read_only: bool,
    pub snapshot: bool,
}

/// The machine plus its run state.
pub struct Vm {
    pub machine: Machine,
    /// The VM runs (QEMU's "running"); false = paused (`-S`, `stop`, a debugger stop).
    pub running: bool,
    pub exec: Exec,
    /// The current step only steps over a breakpoint: continue after it.
    pub step_then_continue: bool,
    /// Addresses of breakpoints a debugger set as hardware breakpoints (reported as such).
    pub hw_breakpoints: Vec<u64>,
    /// GDB's `maintenance packet Qqemu.PhyMemMode:1`: memory packets use physical addresses.
    pub phys_mem_mode: bool,
    /// For `info block`, in machine order.
    pub disks: Vec<DiskDesc>,
    /// Where the GDB stub listens, if it does (for `info status`-like messages).
    pub gdb_listening: Option<String>,
    /// Requests for the run loop, in order.
    pub requests: Vec<Request>,
}

impl Vm {
    pub fn new(machine: Machine, running: bool, disks: Vec<DiskDesc>) -> Self {
        Vm {
            machine,
            running,
            exec: Exec::Continue,
            step_then_continue: false,
            hw_breakpoints: Vec::new(),
            phys_mem_mode: false,
            disks,
            gdb_listening: None,
            requests: Vec::new(),
        }
    }

    /// Resume: run freely, or step one instruction. Continuing from a breakpoint address
    /// first steps over it (a debugger usually does that itself).
    pub fn resume(&mut self, exec: Exec) {
        self.exec = exec;
        self.running = true;
        self.step_then_continue = false;
        if exec == Exec::Continue {
            let pc = self.machine.regs().rip;
            if self.machine.breakpoints().contains(&pc) {
                self.exec = Exec::Step;
                self.step_then_continue = true;
            }
        }
    }
}
