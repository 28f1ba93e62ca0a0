//! Differential tests of the integer instructions against the host CPU.
//!
//! Each form is a short snippet of guest code assembled once; it runs natively (copied into
//! an executable page between a prologue that loads all GPRs but RSP and RFLAGS from a state
//! block, and an epilogue that stores them back) and in the emulator (the same bytes at
//! CODE followed by HLT, registers set directly). The data page sits at the same address in
//! both worlds (the host maps it at DATA with MAP_FIXED_NOREPLACE), so memory operands need
//! no relocation. Compared: the 15 GPRs (not RSP), RFLAGS under the form's defined-flags
//! mask, and the whole data page.
//!
//! Cases per form: 1000, or `TCI64_DIFF_CASES`.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod common;
use common::*;
use iced_x86::code_asm::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::{Mutex, OnceLock};
use tci64_x86::regs::fl;
use tci64_x86::Cpu;

/// Native state block (in the second page of the fixed mapping).
const ST: u64 = DATA + 0x1800;
const OUT: u64 = 0x100;
const FLAGS_IN: u64 = 0x80;
const SAVE_RSP: u64 = 0x300;
/// Random bytes go here; memory operands point near it.
const MEM: u64 = DATA + 0x800;
const MEM_LEN: usize = 64;

const GPRS: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];

unsafe fn mmap(addr: u64, len: u64, prot: u64, flags: u64) -> i64 {
    let ret: i64;
    core::arch::asm!("syscall", inlateout("rax") 9i64 => ret, in("rdi") addr, in("rsi") len,
        in("rdx") prot, in("r10") flags, in("r8") -1i64, in("r9") 0u64,
        lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

struct Native {
    code: u64,
}

/// The host side: the data page at DATA and an executable page. Failing to map them fails the
/// test (no silent skip).
fn native() -> &'static Mutex<Native> {
    static N: OnceLock<Mutex<Native>> = OnceLock::new();
    N.get_or_init(|| unsafe {
        // MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
        let d = mmap(DATA, 0x2000, 3, 0x2 | 0x20 | 0x100000);
        assert_eq!(
            d, DATA as i64,
            "diff tests: cannot map the data page at {DATA:#x}"
        );
        let c = mmap(0, 0x10000, 7, 0x2 | 0x20);
        assert!(c > 0, "diff tests: no executable mapping ({c})");
        Mutex::new(Native { code: c as u64 })
    })
}

/// The native routine around `snippet`, assembled at `ip`.
fn trampoline(ip: u64, snippet: &[u8]) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r).unwrap();
    }
    a.mov(rax, ST).unwrap();
    a.mov(qword_ptr(rax + SAVE_RSP as i32), rsp).unwrap();
    a.mov(rsp, rax).unwrap();
    a.push(qword_ptr(rsp + FLAGS_IN as i32)).unwrap();
    a.popfq().unwrap();
    for (k, r) in GPRS.iter().enumerate() {
        if k != 4 {
            a.mov(*r, qword_ptr(rsp + (k * 8) as i32)).unwrap();
        }
    }
    a.db(snippet).unwrap();
    for (k, r) in GPRS.iter().enumerate() {
        if k != 4 {
            a.mov(qword_ptr(rsp + (OUT as usize + k * 8) as i32), *r)
                .unwrap();
        }
    }
    a.pushfq().unwrap();
    a.pop(qword_ptr(rsp + (OUT + FLAGS_IN) as i32)).unwrap();
    a.cld().unwrap();
    a.mov(rsp, qword_ptr(rsp + SAVE_RSP as i32)).unwrap();
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    a.assemble(ip).unwrap()
}

#[derive(Clone, Debug)]
struct Case {
    regs: [u64; 16],
    flags: u64,
    mem: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    regs: [u64; 16],
    flags: u64,
    page: Vec<u8>,
}

const FLAGS_SETTABLE: u64 = fl::ARITH | fl::DF;

fn run_native(n: &Native, tramp: &[u8], c: &Case) -> Outcome {
    unsafe {
        let st = ST as *mut u64;
        for k in 0..16 {
            *st.add(k) = c.regs[k];
        }
        *st.add(FLAGS_IN as usize / 8) = (c.flags & FLAGS_SETTABLE) | 2;
        let page = std::slice::from_raw_parts_mut(DATA as *mut u8, 0x1000);
        page.fill(0);
        let off = (MEM - DATA) as usize;
        page[off..off + c.mem.len()].copy_from_slice(&c.mem);
        std::ptr::copy_nonoverlapping(tramp.as_ptr(), n.code as *mut u8, tramp.len());
        let f: extern "C" fn() = std::mem::transmute(n.code as usize);
        f();
        let mut regs = [0u64; 16];
        for (k, r) in regs.iter_mut().enumerate() {
            *r = *st.add(OUT as usize / 8 + k);
        }
        regs[4] = 0;
        let flags = *st.add((OUT + FLAGS_IN) as usize / 8);
        Outcome {
            regs,
            flags,
            page: page.to_vec(),
        }
    }
}

fn run_emu(cpu: &mut Cpu, c: &Case) -> Outcome {
    let mut page = vec![0u8; 0x1000];
    let off = (MEM - DATA) as usize;
    page[off..off + c.mem.len()].copy_from_slice(&c.mem);
    cpu.write_phys(DATA, &page);
    {
        let core = cpu.core_mut();
        for k in 0..16 {
            core.regs.0[k] = c.regs[k];
        }
        core.regs.0[4] = STACK_TOP;
        core.regs.0[tci64_x86::regs::RIP as usize] = CODE;
        tci64_x86::cpu::set_rflags(core, (c.flags & FLAGS_SETTABLE) | 2);
        core.guest.halted = false;
    }
    let mut bus = TestBus::default();
    let e = cpu.run(&mut bus, 10_000);
    assert!(
        matches!(e, tci64_x86::CpuExit::Halted { .. }),
        "emulator did not reach HLT: {e:?} at {:#x}",
        cpu.reg(tci64_x86::regs::RIP)
    );
    let core = cpu.core();
    let mut regs = [0u64; 16];
    regs.copy_from_slice(&core.regs.0[..16]);
    regs[4] = 0;
    let flags = tci64_x86::cpu::rflags(core);
    cpu.read_phys(DATA, &mut page);
    Outcome { regs, flags, page }
}

/// One instruction form under test.
struct Form {
    name: String,
    code: Vec<u8>,
    /// Flags the SDM leaves undefined for this form.
    undef: u64,
    fix: Fix,
}

type Fix = fn(&mut Case);

fn cases() -> u32 {
    std::env::var("TCI64_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn val() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => any::<u64>(),
        1 => 0..4u64,
        1 => Just(u64::MAX),
        1 => (0..64u32).prop_map(|b| 1u64 << b),
        1 => (0..64u32).prop_map(|b| (1u64 << b).wrapping_sub(1)),
        1 => any::<u8>().prop_map(|b| b as u64),
        1 => any::<u32>().prop_map(|b| b as u64),
    ]
}

fn strategy() -> impl Strategy<Value = Case> {
    (
        prop::array::uniform16(val()),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), MEM_LEN),
    )
        .prop_map(|(regs, flags, mem)| Case {
            regs,
            flags: flags & !fl::DF,
            mem,
        })
}

fn check_forms(forms: Vec<Form>) {
    let n = native();
    vendor::host();
    for f in forms {
        // All ones, except where the vendor table relaxes this form on this host.
        let compared = vendor::gpr_compare_masks(&f.name);
        let mut code = f.code.clone();
        code.push(0xf4); // hlt
        let cpu = std::cell::RefCell::new(machine(&code));
        let tramp = {
            let g = n.lock().unwrap_or_else(|e| e.into_inner());
            trampoline(g.code, &f.code)
        };
        let mut runner = TestRunner::new(Config {
            failure_persistence: None,
            ..Config::with_cases(cases())
        });
        let defined = !(f.undef) & (fl::ARITH | fl::DF);
        let r = runner.run(&strategy(), |mut c| {
            (f.fix)(&mut c);
            let nat = {
                let g = n.lock().unwrap_or_else(|e| e.into_inner());
                run_native(&g, &tramp, &c)
            };
            let emu = run_emu(&mut cpu.borrow_mut(), &c);
            let nf = nat.flags & defined;
            let ef = emu.flags & defined;
            let mut msg = String::new();
            for (k, mask) in compared.iter().enumerate() {
                let (nv, ev) = (nat.regs[k], emu.regs[k]);
                if (nv ^ ev) & mask != 0 {
                    msg += &format!(" r{k}: native {nv:#x} emu {ev:#x};");
                }
            }
            if nf != ef {
                msg += &format!(" flags: native {nf:#x} emu {ef:#x};");
            }
            if nat.page != emu.page {
                let k = (0..0x1000).find(|&k| nat.page[k] != emu.page[k]).unwrap();
                msg += &format!(
                    " memory at {:#x}: native {:#x} emu {:#x};",
                    DATA + k as u64,
                    nat.page[k],
                    emu.page[k]
                );
            }
            if msg.is_empty() {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!("{}:{msg}", f.name)))
            }
        });
        if let Err(e) = r {
            panic!("{}: {e}", f.name);
        }
    }
}

fn asm(f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a);
    a.assemble(CODE).unwrap()
}

/// RBX points into the random bytes.
fn mem_rbx(c: &mut Case) {
    c.regs[3] = MEM + (c.regs[3] & 31);
}
fn none(_: &mut Case) {}

macro_rules! form {
    ($v:ident, $undef:expr, $fix:expr, $($body:tt)*) => {
        $v.push(Form {
            name: stringify!($($body)*).to_string(),
            code: asm(|a| { a.$($body)*.unwrap(); }),
            undef: $undef,
            fix: $fix,
        })
    };
}

const AF: u64 = fl::AF;
const OF: u64 = fl::OF;
const CF: u64 = fl::CF;
const SZAP: u64 = fl::SF | fl::ZF | fl::AF | fl::PF;

#[test]
fn diff_base_arith() {
    let mut v = Vec::new();
    macro_rules! alu {
        ($op:ident, $u:expr) => {
            form!(v, $u, none, $op(al, dl));
            form!(v, $u, none, $op(ah, bl));
            form!(v, $u, none, $op(cx, si));
            form!(v, $u, none, $op(ecx, r9d));
            form!(v, $u, none, $op(rcx, r10));
            form!(v, $u, none, $op(r11, 0x7f));
            form!(v, $u, none, $op(edx, -5));
            form!(v, $u, mem_rbx, $op(qword_ptr(rbx + 8), rdi));
            form!(v, $u, mem_rbx, $op(dword_ptr(rbx), esi));
            form!(v, $u, mem_rbx, $op(r8w, word_ptr(rbx + 3)));
            form!(v, $u, mem_rbx, $op(byte_ptr(rbx + 1), 0x81));
        };
    }
    alu!(add, 0);
    alu!(sub, 0);
    alu!(adc, 0);
    alu!(sbb, 0);
    alu!(cmp, 0);
    alu!(and, AF);
    alu!(or, AF);
    alu!(xor, AF);
    form!(v, AF, none, test(rax, rdx));
    form!(v, AF, none, test(cl, 0x81));
    form!(v, AF, mem_rbx, test(dword_ptr(rbx), esi));
    form!(v, 0, none, sub(eax, eax));
    form!(v, AF, none, xor(r12d, r12d));
    for_unary(&mut v);
    check_forms(v);
}

fn for_unary(v: &mut Vec<Form>) {
    form!(v, 0, none, inc(al));
    form!(v, 0, none, inc(bh));
    form!(v, 0, none, inc(cx));
    form!(v, 0, none, inc(edx));
    form!(v, 0, none, inc(r9));
    form!(v, 0, mem_rbx, inc(dword_ptr(rbx)));
    form!(v, 0, none, dec(al));
    form!(v, 0, none, dec(si));
    form!(v, 0, none, dec(edi));
    form!(v, 0, none, dec(rbp));
    form!(v, 0, mem_rbx, dec(qword_ptr(rbx + 4)));
    form!(v, 0, none, neg(al));
    form!(v, 0, none, neg(cx));
    form!(v, 0, none, neg(r10d));
    form!(v, 0, none, neg(r11));
    form!(v, 0, mem_rbx, neg(word_ptr(rbx)));
    form!(v, 0, none, not(dl));
    form!(v, 0, none, not(r8w));
    form!(v, 0, none, not(esi));
    form!(v, 0, none, not(rdi));
    form!(v, 0, mem_rbx, not(qword_ptr(rbx)));
}

#[test]
fn diff_base_moves_cc() {
    let mut v = Vec::new();
    form!(v, 0, none, movzx(eax, bl));
    form!(v, 0, none, movzx(ecx, dh));
    form!(v, 0, none, movzx(dx, r9b));
    form!(v, 0, none, movzx(r10d, si));
    form!(v, 0, mem_rbx, movzx(rdi, word_ptr(rbx + 5)));
    form!(v, 0, none, movsx(eax, bl));
    form!(v, 0, none, movsx(ecx, ah));
    form!(v, 0, none, movsx(dx, r9b));
    form!(v, 0, none, movsx(r10, si));
    form!(v, 0, mem_rbx, movsx(edi, byte_ptr(rbx + 5)));
    form!(v, 0, none, movsxd(r11, ecx));
    form!(v, 0, mem_rbx, movsxd(rsi, dword_ptr(rbx)));
    // LEA: every operand size, with and without displacement and scale (no memory access).
    form!(v, 0, none, lea(eax, ptr(rax + rcx)));
    form!(v, 0, none, lea(edx, ptr(rsi + rdi * 4)));
    form!(v, 0, none, lea(r9d, ptr(r9 + r10 * 2 - 7)));
    form!(v, 0, none, lea(ecx, ptr(rbx)));
    form!(v, 0, none, lea(rax, ptr(rbx + rcx)));
    form!(v, 0, none, lea(rdx, ptr(rdx + rdx * 8 + 0x1234)));
    form!(v, 0, none, lea(r11, ptr(rsi)));
    form!(v, 0, none, lea(si, ptr(rax + rbx)));
    form!(v, 0, none, lea(di, ptr(rcx * 2 + 3)));
    form!(v, 0, none, lea(eax, ptr(ebx + ecx)));
    form!(v, 0, none, lea(rax, ptr(ebx + ecx * 2 - 1)));
    macro_rules! cc {
        ($($s:ident $c:ident),*) => {$(
            form!(v, 0, none, $s(cl));
            form!(v, 0, none, $c(edx, esi));
            form!(v, 0, none, $c(r8, r9));
            form!(v, 0, none, $c(ax, bp));
        )*};
    }
    cc!(seto cmovo, setno cmovno, setb cmovb, setae cmovae, sete cmove, setne cmovne,
        setbe cmovbe, seta cmova, sets cmovs, setns cmovns, setp cmovp, setnp cmovnp,
        setl cmovl, setge cmovge, setle cmovle, setg cmovg);
    // Conditions straight after a flag-setting instruction (the translator's fast paths).
    macro_rules! after {
        ($($s:ident),*) => {$(
            v.push(Form {
                name: format!("cmp+{}", stringify!($s)),
                code: asm(|a| { a.cmp(rax, rdx).unwrap(); a.$s(cl).unwrap(); a.cmp(bx, si).unwrap(); a.$s(ch).unwrap(); a.test(edi, r8d).unwrap(); a.$s(r9b).unwrap(); a.sub(r10b, r11b).unwrap(); a.$s(r12b).unwrap(); }),
                undef: AF,
                fix: none,
            });
        )*};
    }
    after!(
        seto, setno, setb, setae, sete, setne, setbe, seta, sets, setns, setp, setnp, setl, setge,
        setle, setg
    );
    check_forms(v);
}

fn cl8(c: &mut Case) {
    c.regs[1] = (c.regs[1] & !0xff) | ((c.regs[1] & 0xff) % 8) | (c.regs[1] & 0x20);
}
fn cl16(c: &mut Case) {
    c.regs[1] = (c.regs[1] & !0xff) | ((c.regs[1] & 0xff) % 16);
}

/// A multi-instruction form.
fn seq(v: &mut Vec<Form>, name: &str, undef: u64, fix: fn(&mut Case), code: Vec<u8>) {
    v.push(Form {
        name: name.into(),
        code,
        undef,
        fix,
    });
}

#[test]
fn diff_shifts() {
    let mut v = Vec::new();
    macro_rules! sh {
        ($op:ident, $u1:expr, $un:expr) => {
            form!(v, $u1, none, $op(al, 1));
            form!(v, $un, cl8, $op(dl, cl));
            form!(v, $un, none, $op(bh, 3));
            form!(v, $u1, none, $op(si, 1));
            form!(v, $un, cl16, $op(r9w, cl));
            form!(v, $u1, none, $op(edi, 1));
            form!(v, $un, none, $op(edx, cl));
            form!(v, $un, none, $op(r10d, 31));
            form!(v, $un, none, $op(r8d, 0));
            form!(v, $u1, none, $op(rax, 1));
            form!(v, $un, none, $op(r11, cl));
            form!(v, $un, none, $op(rdx, 45));
            form!(v, $un, mem_rbx, $op(qword_ptr(rbx), cl));
            form!(v, $un, mem_rbx, $op(word_ptr(rbx + 2), 5));
        };
    }
    sh!(shl, AF, AF | OF);
    sh!(shr, AF, AF | OF);
    sh!(sar, AF, AF | OF);
    sh!(rol, 0, OF);
    sh!(ror, 0, OF);
    sh!(rcl, 0, OF);
    sh!(rcr, 0, OF);
    form!(v, AF | OF, none, shld(eax, edx, cl));
    form!(v, AF | OF, none, shld(rax, rdx, cl));
    form!(v, AF | OF, cl16, shld(ax, dx, cl));
    form!(v, AF, none, shld(r8, r9, 1));
    form!(v, AF | OF, none, shld(r8d, r9d, 7));
    form!(v, AF | OF, mem_rbx, shld(qword_ptr(rbx), rsi, cl));
    form!(v, AF | OF, none, shrd(eax, edx, cl));
    form!(v, AF | OF, none, shrd(rax, rdx, cl));
    form!(v, AF | OF, cl16, shrd(ax, dx, cl));
    form!(v, AF, none, shrd(r8, r9, 1));
    form!(v, AF | OF, none, shrd(r8d, r9d, 7));
    form!(v, AF | OF, mem_rbx, shrd(dword_ptr(rbx), esi, cl));
    // Rotates whose flags later instructions overwrite (the translator skips merging them),
    // and ones whose flags are read, may trap or stay (it must not).
    seq(
        &mut v,
        "ror ror and",
        AF,
        none,
        asm(|a| {
            a.ror(eax, 6).unwrap();
            a.ror(edx, 11).unwrap();
            a.and(r15d, ebp).unwrap();
        }),
    );
    seq(
        &mut v,
        "rol mov lea xor",
        AF,
        none,
        asm(|a| {
            a.rol(ecx, 7).unwrap();
            a.mov(ebx, esi).unwrap();
            a.lea(r8d, ptr(rax + rcx)).unwrap();
            a.xor(edx, ecx).unwrap();
        }),
    );
    seq(
        &mut v,
        "ror shl test",
        AF,
        none,
        asm(|a| {
            a.ror(rax, 3).unwrap();
            a.shl(edx, 4).unwrap();
            a.test(eax, edx).unwrap();
        }),
    );
    seq(
        &mut v,
        "ror adc",
        0,
        none,
        asm(|a| {
            a.ror(eax, 5).unwrap();
            a.adc(edx, ecx).unwrap();
        }),
    );
    seq(
        &mut v,
        "ror mov",
        0,
        none,
        asm(|a| {
            a.ror(eax, 1).unwrap();
            a.mov(ecx, edx).unwrap();
        }),
    );
    seq(
        &mut v,
        "rol add mem",
        0,
        mem_rbx,
        asm(|a| {
            a.rol(r9d, 9).unwrap();
            a.add(eax, dword_ptr(rbx)).unwrap();
        }),
    );
    seq(
        &mut v,
        "ror rol-cl sub",
        0,
        none,
        asm(|a| {
            a.ror(si, 3).unwrap();
            a.rol(edi, cl).unwrap();
            a.sub(eax, 1).unwrap();
        }),
    );
    form!(v, 0, none, sarx(eax, edx, ecx));
    form!(v, 0, none, sarx(rax, rdx, rcx));
    form!(v, 0, none, shlx(eax, edx, ecx));
    form!(v, 0, mem_rbx, shlx(rax, qword_ptr(rbx), rcx));
    form!(v, 0, none, shrx(eax, edx, ecx));
    form!(v, 0, none, shrx(rax, rdx, rcx));
    form!(v, 0, none, rorx(eax, edx, 13));
    form!(v, 0, none, rorx(rax, rdx, 43));
    check_forms(v);
}

/// Dividend/divisor pairs that do not overflow (natively a #DE would kill the test).
fn div_fix(c: &mut Case, bits: u32, signed: bool) {
    let m = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    // Divisor in RCX.
    let mut d = c.regs[1] & m;
    if d == 0 {
        d = 7;
    }
    if signed {
        let sd = ((d << (64 - bits)) as i64) >> (64 - bits);
        if sd == -1 {
            d = 3;
        }
        // Dividend: sign extension of the low half.
        let lo = c.regs[0] & m;
        let neg = (lo >> (bits - 1)) & 1 != 0;
        let hi = if neg { m } else { 0 };
        set_hi(c, bits, hi);
    } else {
        let hi = (c.regs[2] & m) % d;
        set_hi(c, bits, hi);
    }
    c.regs[1] = (c.regs[1] & !m) | d;
}

fn set_hi(c: &mut Case, bits: u32, hi: u64) {
    match bits {
        8 => c.regs[0] = (c.regs[0] & !0xff00) | (hi << 8),
        16 => c.regs[2] = (c.regs[2] & !0xffff) | hi,
        32 => c.regs[2] = (c.regs[2] & !0xffff_ffff) | hi,
        _ => c.regs[2] = hi,
    }
}

#[test]
fn diff_muldiv() {
    let mut v = Vec::new();
    form!(v, SZAP, none, mul(cl));
    form!(v, SZAP, none, mul(cx));
    form!(v, SZAP, none, mul(ecx));
    form!(v, SZAP, none, mul(rcx));
    form!(v, SZAP, mem_rbx, mul(qword_ptr(rbx)));
    form!(v, SZAP, none, imul(cl));
    form!(v, SZAP, none, imul(bh));
    form!(v, SZAP, none, imul(cx));
    form!(v, SZAP, none, imul(ecx));
    form!(v, SZAP, none, imul(rcx));
    form!(v, SZAP, mem_rbx, imul(dword_ptr(rbx)));
    form!(v, SZAP, none, imul_2(dx, si));
    form!(v, SZAP, none, imul_2(edx, esi));
    form!(v, SZAP, none, imul_2(rdx, rsi));
    form!(v, SZAP, mem_rbx, imul_2(r9, qword_ptr(rbx + 8)));
    form!(v, SZAP, none, imul_3(dx, si, 1000));
    form!(v, SZAP, none, imul_3(edx, esi, -3));
    form!(v, SZAP, none, imul_3(rdx, rsi, 0x12345));
    form!(v, SZAP, mem_rbx, imul_3(r9d, dword_ptr(rbx + 8), 77));
    form!(v, 0, none, mulx(r8d, r9d, esi));
    form!(v, 0, none, mulx(r8, r9, rsi));
    form!(v, 0, none, mulx(r8, r8, rsi));
    macro_rules! div {
        ($op:ident, $r:ident, $bits:expr, $s:expr) => {
            v.push(Form {
                name: format!("{} {}", stringify!($op), stringify!($r)),
                code: asm(|a| {
                    a.$op($r).unwrap();
                }),
                undef: fl::ARITH,
                fix: |c| div_fix(c, $bits, $s),
            });
        };
    }
    div!(div, cl, 8, false);
    div!(div, cx, 16, false);
    div!(div, ecx, 32, false);
    div!(div, rcx, 64, false);
    div!(idiv, cl, 8, true);
    div!(idiv, cx, 16, true);
    div!(idiv, ecx, 32, true);
    div!(idiv, rcx, 64, true);
    check_forms(v);
}

fn bitoff(c: &mut Case) {
    mem_rbx(c);
    // A signed bit offset within +-256 bits of the operand.
    c.regs[6] = ((c.regs[6] as i64) % 256) as u64;
}

#[test]
fn diff_bits() {
    let mut v = Vec::new();
    let u = OF | fl::SF | AF | fl::PF;
    macro_rules! bt {
        ($op:ident) => {
            form!(v, u, none, $op(ax, dx));
            form!(v, u, none, $op(eax, edx));
            form!(v, u, none, $op(rax, rdx));
            form!(v, u, none, $op(r9, 45));
            form!(v, u, none, $op(r9d, 45));
            form!(v, u, mem_rbx, $op(dword_ptr(rbx + 8), 13));
            form!(v, u, bitoff, $op(qword_ptr(rbx + 16), rsi));
            form!(v, u, bitoff, $op(dword_ptr(rbx + 16), esi));
            form!(v, u, bitoff, $op(word_ptr(rbx + 16), si));
        };
    }
    bt!(bt);
    bt!(bts);
    bt!(btr);
    bt!(btc);
    let u2 = CF | OF | fl::SF | AF | fl::PF;
    for (name, code) in [
        ("bsf eax, edx", asm(|a| a.bsf(eax, edx).unwrap())),
        ("bsf rax, rdx", asm(|a| a.bsf(rax, rdx).unwrap())),
        ("bsf ax, dx", asm(|a| a.bsf(ax, dx).unwrap())),
        ("bsr eax, edx", asm(|a| a.bsr(eax, edx).unwrap())),
        ("bsr rax, rdx", asm(|a| a.bsr(rax, rdx).unwrap())),
        ("bsr ax, dx", asm(|a| a.bsr(ax, dx).unwrap())),
    ] {
        v.push(Form {
            name: name.into(),
            code,
            undef: u2,
            fix: none,
        });
    }
    form!(v, u2, mem_rbx, bsf(rcx, qword_ptr(rbx)));
    let u3 = OF | fl::SF | AF | fl::PF;
    form!(v, u3, none, tzcnt(ax, dx));
    form!(v, u3, none, tzcnt(eax, edx));
    form!(v, u3, none, tzcnt(rax, rdx));
    form!(v, u3, none, lzcnt(ax, dx));
    form!(v, u3, none, lzcnt(eax, edx));
    form!(v, u3, none, lzcnt(rax, rdx));
    form!(v, 0, none, popcnt(ax, dx));
    form!(v, 0, none, popcnt(eax, edx));
    form!(v, 0, mem_rbx, popcnt(rax, qword_ptr(rbx)));
    form!(v, AF | fl::PF, none, andn(eax, edx, esi));
    form!(v, AF | fl::PF, none, andn(rax, rdx, rsi));
    form!(v, AF | fl::PF | fl::SF, none, bextr(eax, edx, esi));
    form!(v, AF | fl::PF | fl::SF, none, bextr(rax, rdx, rsi));
    form!(v, AF | fl::PF, none, blsi(eax, edx));
    form!(v, AF | fl::PF, none, blsi(rax, rdx));
    form!(v, AF | fl::PF, none, blsmsk(eax, edx));
    form!(v, AF | fl::PF, none, blsmsk(rax, rdx));
    form!(v, AF | fl::PF, none, blsr(eax, edx));
    form!(v, AF | fl::PF, mem_rbx, blsr(rax, qword_ptr(rbx)));
    form!(v, AF | fl::PF, none, bzhi(eax, edx, esi));
    form!(v, AF | fl::PF, none, bzhi(rax, rdx, rsi));
    form!(v, 0, none, pdep(eax, edx, esi));
    form!(v, 0, none, pdep(rax, rdx, rsi));
    form!(v, 0, none, pext(eax, edx, esi));
    form!(v, 0, none, pext(rax, rdx, rsi));
    form!(v, 0, none, bswap(eax));
    form!(v, 0, none, bswap(r9));
    form!(v, 0, none, adcx(eax, edx));
    form!(v, 0, none, adcx(rax, rdx));
    form!(v, 0, none, adox(eax, edx));
    form!(v, 0, mem_rbx, adox(rax, qword_ptr(rbx)));
    form!(v, 0, none, lahf());
    form!(v, 0, none, sahf());
    check_forms(v);
}

#[test]
fn diff_xchg() {
    let mut v = Vec::new();
    form!(v, 0, none, xchg(al, dh));
    form!(v, 0, none, xchg(cx, si));
    form!(v, 0, none, xchg(ecx, esi));
    form!(v, 0, none, xchg(r8, r9));
    form!(v, 0, mem_rbx, xchg(qword_ptr(rbx), rsi));
    form!(v, 0, mem_rbx, xchg(word_ptr(rbx + 1), si));
    form!(v, 0, none, cmpxchg(cl, dl));
    form!(v, 0, none, cmpxchg(cx, dx));
    form!(v, 0, none, cmpxchg(ecx, edx));
    form!(v, 0, none, cmpxchg(rcx, rdx));
    form!(v, 0, none, cmpxchg(eax, edx));
    form!(v, 0, mem_rbx, cmpxchg(dword_ptr(rbx), edx));
    form!(v, 0, mem_rbx, cmpxchg(qword_ptr(rbx + 8), rdx));
    form!(v, 0, none, xadd(cl, dl));
    form!(v, 0, none, xadd(cx, dx));
    form!(v, 0, none, xadd(ecx, edx));
    form!(v, 0, none, xadd(ecx, ecx));
    form!(v, 0, none, xadd(rcx, rdx));
    form!(v, 0, mem_rbx, xadd(qword_ptr(rbx), rdx));
    // Equal compares are rare with random values: make half of them equal.
    fn eq8(c: &mut Case) {
        c.regs[7] = MEM + (c.regs[7] & 7) * 2;
        if c.regs[3] & 1 != 0 {
            let off = (c.regs[7] - MEM) as usize;
            c.mem[off..off + 4].copy_from_slice(&(c.regs[0] as u32).to_le_bytes());
            c.mem[off + 4..off + 8].copy_from_slice(&(c.regs[2] as u32).to_le_bytes());
        }
    }
    fn eq16(c: &mut Case) {
        c.regs[7] = MEM + (c.regs[7] & 1) * 16;
        if c.regs[3] & 1 != 0 {
            let off = (c.regs[7] - MEM) as usize;
            c.mem[off..off + 8].copy_from_slice(&c.regs[0].to_le_bytes());
            c.mem[off + 8..off + 16].copy_from_slice(&c.regs[2].to_le_bytes());
        }
    }
    form!(v, 0, eq8, cmpxchg8b(qword_ptr(rdi)));
    form!(v, 0, eq16, cmpxchg16b(xmmword_ptr(rdi)));
    form!(v, 0, mem_rbx, lock().cmpxchg(qword_ptr(rbx + 8), rdx));
    form!(v, 0, mem_rbx, lock().xadd(dword_ptr(rbx + 8), edx));
    form!(v, 0, bitoff, lock().bts(dword_ptr(rbx + 16), esi));
    form!(v, 0, mem_rbx, movbe(ax, word_ptr(rbx)));
    form!(v, 0, mem_rbx, movbe(eax, dword_ptr(rbx)));
    form!(v, 0, mem_rbx, movbe(rax, qword_ptr(rbx)));
    form!(v, 0, mem_rbx, movbe(qword_ptr(rbx + 3), rsi));
    form!(v, 0, mem_rbx, movbe(word_ptr(rbx + 3), si));
    form!(v, 0, mem_rbx, xlatb());
    check_forms(v);
}

/// RSI/RDI into the data page, RCX small, DF random (the case's flag bit 10 is free).
fn strfix(c: &mut Case) {
    c.regs[6] = MEM - 0x100 + (c.regs[6] & 0x1ff);
    c.regs[7] = MEM - 0x100 + (c.regs[7] & 0x1ff);
    c.regs[1] &= 31;
    if c.regs[5] & 1 != 0 {
        c.flags |= fl::DF;
    }
    // Often make the compared data equal, for REPE.
    if c.regs[5] & 2 != 0 {
        c.regs[6] = MEM;
        c.regs[7] = MEM + 32;
        let (a, b) = c.mem.split_at_mut(32);
        b[..24].copy_from_slice(&a[..24]);
    }
}

fn strfix32(c: &mut Case) {
    strfix(c);
    // Garbage above the 32-bit address and count.
    c.regs[6] |= c.regs[8] << 32;
    c.regs[7] |= c.regs[9] << 32;
    c.regs[1] |= c.regs[10] << 32;
}

#[test]
fn diff_string() {
    let mut v = Vec::new();
    macro_rules! s {
        ($($op:ident),*) => {$(
            form!(v, 0, strfix, $op());
            form!(v, 0, strfix, rep().$op());
        )*};
    }
    s!(movsb, movsw, movsd, movsq, stosb, stosw, stosd, stosq, lodsb, lodsw, lodsd, lodsq);
    macro_rules! sc {
        ($($op:ident),*) => {$(
            form!(v, 0, strfix, $op());
            form!(v, 0, strfix, repe().$op());
            form!(v, 0, strfix, repne().$op());
        )*};
    }
    sc!(scasb, scasw, scasd, scasq, cmpsb, cmpsw, cmpsd, cmpsq);
    for (name, bytes) in [
        ("a32 rep movsb", vec![0x67, 0xf3, 0xa4]),
        ("a32 rep stosd", vec![0x67, 0xf3, 0xab]),
        ("a32 repe cmpsb", vec![0x67, 0xf3, 0xa6]),
        ("a32 repne scasw", vec![0x67, 0x66, 0xf2, 0xaf]),
        ("a32 lodsq", vec![0x67, 0x48, 0xad]),
    ] {
        v.push(Form {
            name: name.into(),
            code: bytes,
            undef: 0,
            fix: strfix32,
        });
    }
    check_forms(v);
}

#[test]
fn diff_loops() {
    let mut v = Vec::new();
    macro_rules! lp {
        ($op:ident) => {
            v.push(Form {
                name: stringify!($op).into(),
                code: asm(|a| {
                    let mut l = a.create_label();
                    let mut e = a.create_label();
                    a.cmp(rdx, rsi).unwrap();
                    a.set_label(&mut l).unwrap();
                    a.inc(r8).unwrap();
                    a.$op(l).unwrap();
                    a.jmp(e).unwrap();
                    a.set_label(&mut e).unwrap();
                    a.nop().unwrap();
                }),
                undef: 0,
                fix: |c| {
                    c.regs[1] = (c.regs[1] & 0xff) + 1;
                    if c.regs[3] & 1 != 0 {
                        c.regs[2] = c.regs[6];
                    }
                },
            });
        };
    }
    lp!(loop_);
    lp!(loope);
    lp!(loopne);
    v.push(Form {
        name: "jrcxz".into(),
        code: asm(|a| {
            let mut l = a.create_label();
            a.jrcxz(l).unwrap();
            a.inc(r8).unwrap();
            a.set_label(&mut l).unwrap();
            a.nop().unwrap();
        }),
        undef: 0,
        fix: |c| {
            if c.regs[3] & 1 != 0 {
                c.regs[1] = 0
            }
        },
    });
    v.push(Form {
        name: "jecxz".into(),
        code: asm(|a| {
            a.db(&[0x67, 0xe3, 0x03]).unwrap();
            a.inc(r8).unwrap();
            a.nop().unwrap();
        }),
        undef: 0,
        fix: |c| {
            if c.regs[3] & 1 != 0 {
                c.regs[1] &= !0xffff_ffff
            }
        },
    });
    check_forms(v);
}
