//! Running one instruction body natively and in the emulator on the same context block (the
//! SIMD differential tests). The body addresses the context through RBX; on the host it runs
//! from an executable page (so immediate forms need no inline-asm variant per immediate), in
//! the emulator at CODE with the context at DATA.
#![allow(dead_code)]

use super::{assemble, machine, TestBus, CODE, DATA};
use iced_x86::code_asm::*;
use std::arch::asm;
use tci64_x86::regs::RIP;
use tci64_x86::state::cr;
use tci64_x86::Cpu;

/// Cases per form: `TCI64_DIFF_CASES`, else 200.
pub fn cases() -> u32 {
    std::env::var("TCI64_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

/// An RWX anonymous mapping (raw syscall: no libc dependency).
fn mmap_exec(len: usize) -> *mut u8 {
    let ret: isize;
    // SAFETY: mmap(NULL, len, RWX, PRIVATE|ANONYMOUS, -1, 0) touches no existing memory.
    unsafe {
        asm!("syscall",
            inlateout("rax") 9isize => ret,
            in("rdi") 0usize, in("rsi") len, in("rdx") 7usize,
            in("r10") 0x22usize, in("r8") -1isize, in("r9") 0usize,
            lateout("rcx") _, lateout("r11") _);
    }
    assert!(ret > 0, "mmap failed: {ret}");
    ret as *mut u8
}

/// The body compiled for the host: `extern "C" fn(&mut C)`. RBX, RSI, RDI and MXCSR are
/// saved and restored around the body.
pub struct Host<C> {
    f: extern "C" fn(*mut C),
}

impl<C: Copy> Host<C> {
    pub fn new(body: impl FnOnce(&mut CodeAssembler)) -> Host<C> {
        super::vendor::host();
        let p = mmap_exec(4096);
        let mut a = CodeAssembler::new(64).unwrap();
        a.push(rbx).unwrap();
        a.push(rsi).unwrap();
        a.push(rdi).unwrap();
        a.mov(rbx, rdi).unwrap();
        a.sub(rsp, 8).unwrap();
        a.stmxcsr(dword_ptr(rsp)).unwrap();
        body(&mut a);
        a.ldmxcsr(dword_ptr(rsp)).unwrap();
        a.add(rsp, 8).unwrap();
        a.pop(rdi).unwrap();
        a.pop(rsi).unwrap();
        a.pop(rbx).unwrap();
        a.ret().unwrap();
        let code = a.assemble(p as u64).unwrap();
        assert!(code.len() <= 4096);
        // SAFETY: `p` is a fresh 4 KiB RWX mapping, the code fits, and it is a complete
        // function with the C ABI taking one pointer argument.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), p, code.len());
            Host {
                f: std::mem::transmute::<*mut u8, extern "C" fn(*mut C)>(p),
            }
        }
    }

    pub fn run(&self, inp: &C) -> C {
        let mut c = *inp;
        (self.f)(&mut c);
        c
    }
}

/// The same body in the emulator (64-bit mode, CR4.OSFXSR|OSXMMEXCPT), on the context at DATA.
pub struct Guest {
    cpu: Cpu,
    bus: TestBus,
}

impl Guest {
    pub fn new(body: impl FnOnce(&mut CodeAssembler)) -> Guest {
        let code = assemble(|a| {
            a.mov(rbx, DATA).unwrap();
            body(a);
            a.hlt().unwrap();
        });
        let mut cpu = machine(&code);
        cpu.core_mut().guest.cr4 |= cr::CR4_OSFXSR | cr::CR4_OSXMMEXCPT;
        Guest {
            cpu,
            bus: TestBus::default(),
        }
    }

    /// Copy `inp` to DATA, run to HLT, and read the context back.
    pub fn run<C: Copy>(&mut self, inp: &C) -> C {
        let size = std::mem::size_of::<C>();
        // SAFETY: `C` is a plain `Copy` context struct; its bytes are read, not interpreted.
        let bytes = unsafe { std::slice::from_raw_parts(inp as *const C as *const u8, size) };
        assert!(self.cpu.write_phys(DATA, bytes));
        let c = self.cpu.core_mut();
        c.regs.0[RIP as usize] = CODE;
        c.guest.halted = false;
        let e = self.cpu.run(&mut self.bus, 10_000);
        assert!(
            matches!(e, tci64_x86::CpuExit::Halted { .. }),
            "guest did not reach HLT: {e:?}"
        );
        assert_eq!(self.cpu.reg(RIP) & !0xfff, CODE, "guest took an exception");
        let mut out = *inp;
        // SAFETY: as above; every byte of `out` is overwritten with the guest's context, which
        // has the same layout (the test's context structs are plain integer arrays).
        let ob = unsafe { std::slice::from_raw_parts_mut(&mut out as *mut C as *mut u8, size) };
        assert!(self.cpu.read_phys(DATA, ob));
        out
    }
}
