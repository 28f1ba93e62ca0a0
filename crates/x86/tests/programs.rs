//! Hand-written guest programs checked against known results (string ops, sorting, division,
//! #DE delivery). Each prints the engine's per-instruction counters (`--nocapture`).

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_x86::regs::*;
use tci64_x86::CpuExit;

/// Engine counters per guest instruction, for reports: (insns per TB translated, IR ops per
/// instruction before/after optimization, bytecode ops executed per instruction).
fn stats_line(cpu: &tci64_x86::Cpu) -> String {
    let s = cpu.core().stats;
    let per = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    format!(
        "insns/TB {:.1}, ops/insn before opt {:.2}, after opt {:.2}, executed ops/insn {:.2} ({} insns)",
        per(s.insns_translated, s.tbs_translated),
        per(s.ops_before_opt, s.insns_translated),
        per(s.ops_after_opt, s.insns_translated),
        per(s.ops_executed, cpu.icount()),
        cpu.icount()
    )
}

const IDT: u64 = 0x6000;

/// A 64-bit interrupt gate for `vector` to `handler` (CS 0x10) in an IDT at [`IDT`], and IDTR.
fn set_idt_gate(cpu: &mut tci64_x86::Cpu, vector: u8, handler: u64) {
    let lo =
        (handler & 0xffff) | (0x10 << 16) | (0x8eu64 << 40) | (((handler >> 16) & 0xffff) << 48);
    let core = cpu.core_mut();
    let e = IDT + vector as u64 * 16;
    core.mem.write_phys_u(e, 8, lo);
    core.mem.write_phys_u(e + 8, 8, handler >> 32);
    core.guest.idtr = tci64_x86::state::DescTable {
        base: IDT,
        limit: 0xfff,
    };
}

fn run(code: &[u8], setup: impl FnOnce(&mut tci64_x86::Cpu), budget: u64) -> tci64_x86::Cpu {
    let mut cpu = machine(code);
    setup(&mut cpu);
    let mut bus = TestBus::default();
    let e = run_to_hlt(&mut cpu, &mut bus, budget);
    assert!(
        matches!(e, CpuExit::Halted { .. }),
        "{e:?} at {:#x}",
        cpu.reg(RIP)
    );
    cpu
}

fn read(cpu: &tci64_x86::Cpu, a: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    assert!(cpu.read_phys(a, &mut v));
    v
}

const N: usize = 3000;

fn pattern() -> Vec<u8> {
    (0..N).map(|k| (k * 7 + k / 251) as u8).collect()
}

#[test]
fn memcpy_rep_movsb_and_loop() {
    let src = DATA;
    let d1 = DATA + 0x2000;
    let d2 = DATA + 0x4000;
    let code = assemble(|a| {
        // rep movsb, unaligned start, crossing pages
        a.mov(rsi, src + 1).unwrap();
        a.mov(rdi, d1 + 3).unwrap();
        a.mov(ecx, (N - 1) as u32).unwrap();
        a.cld().unwrap();
        a.rep().movsb().unwrap();
        // byte loop
        let mut top = a.create_label();
        a.mov(rsi, src).unwrap();
        a.mov(rdi, d2).unwrap();
        a.mov(ecx, N as u32).unwrap();
        a.set_label(&mut top).unwrap();
        a.mov(al, byte_ptr(rsi)).unwrap();
        a.mov(byte_ptr(rdi), al).unwrap();
        a.inc(rsi).unwrap();
        a.inc(rdi).unwrap();
        a.dec(rcx).unwrap();
        a.jnz(top).unwrap();
        // backwards rep movsq (overlapping move up by 8 bytes)
        a.mov(rsi, d2 + 8 * 99).unwrap();
        a.mov(rdi, d2 + 8 * 100).unwrap();
        a.mov(ecx, 100).unwrap();
        a.std().unwrap();
        a.rep().movsq().unwrap();
        a.cld().unwrap();
        a.hlt().unwrap();
    });
    let p = pattern();
    let cpu = run(&code, |c| assert!(c.write_phys(src, &p)), 1_000_000);
    assert_eq!(read(&cpu, d1 + 3, N - 1), p[1..]);
    let mut want = p.clone();
    want.copy_within(0..800, 8);
    assert_eq!(read(&cpu, d2, N), want);
    assert_eq!(cpu.reg(RCX), 0);
    eprintln!("memcpy: {}", stats_line(&cpu));
}

#[test]
fn strlen_repne_scasb() {
    let s = DATA + 0x100;
    let code = assemble(|a| {
        a.mov(rdi, s).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(rcx, -1i64).unwrap();
        a.repne().scasb().unwrap();
        a.not(rcx).unwrap();
        a.dec(rcx).unwrap();
        a.mov(rbx, rcx).unwrap();
        // memset with rep stosq, then compare with repe cmpsb
        a.mov(rdi, DATA + 0x3000).unwrap();
        a.mov(rax, 0x0101_0101_0101_0101u64).unwrap();
        a.mov(ecx, 64).unwrap();
        a.rep().stosq().unwrap();
        a.mov(rsi, DATA + 0x3000).unwrap();
        a.mov(rdi, DATA + 0x3100).unwrap();
        a.mov(ecx, 512).unwrap();
        a.repe().cmpsb().unwrap();
        a.setne(dl).unwrap();
        a.hlt().unwrap();
    });
    let mut text = b"hello, differential world".to_vec();
    text.push(0);
    let cpu = run(
        &code,
        |c| {
            assert!(c.write_phys(s, &text));
            let mut other = vec![1u8; 512];
            other[300] = 2;
            assert!(c.write_phys(DATA + 0x3100, &other));
        },
        100_000,
    );
    assert_eq!(cpu.reg(RBX), 25);
    assert_eq!(cpu.reg(RDX) & 0xff, 1);
    // Stopped after the mismatching byte 300.
    assert_eq!(cpu.reg(RCX), 512 - 301);
    assert_eq!(cpu.reg(RSI), DATA + 0x3000 + 301);
    eprintln!("strlen: {}", stats_line(&cpu));
}

#[test]
fn bubble_sort() {
    let arr = DATA;
    let n = 200u32;
    let code = assemble(|a| {
        let mut outer = a.create_label();
        let mut inner = a.create_label();
        let mut noswap = a.create_label();
        let mut done = a.create_label();
        a.mov(r8d, n - 1).unwrap();
        a.set_label(&mut outer).unwrap();
        a.test(r8d, r8d).unwrap();
        a.jz(done).unwrap();
        a.mov(rsi, arr).unwrap();
        a.mov(ecx, r8d).unwrap();
        a.set_label(&mut inner).unwrap();
        a.mov(eax, dword_ptr(rsi)).unwrap();
        a.mov(edx, dword_ptr(rsi + 4)).unwrap();
        a.cmp(eax, edx).unwrap();
        a.jle(noswap).unwrap();
        a.xchg(eax, edx).unwrap();
        a.mov(dword_ptr(rsi), eax).unwrap();
        a.mov(dword_ptr(rsi + 4), edx).unwrap();
        a.set_label(&mut noswap).unwrap();
        a.add(rsi, 4).unwrap();
        a.loop_(inner).unwrap();
        a.dec(r8d).unwrap();
        a.jmp(outer).unwrap();
        a.set_label(&mut done).unwrap();
        a.hlt().unwrap();
    });
    let mut vals: Vec<i32> = (0..n as i64)
        .map(|k| ((k * 7919 + 13) % 1000 - 500) as i32)
        .collect();
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let cpu = run(&code, |c| assert!(c.write_phys(arr, &bytes)), 10_000_000);
    vals.sort();
    let got: Vec<i32> = read(&cpu, arr, n as usize * 4)
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, vals);
    eprintln!("bubble sort: {}", stats_line(&cpu));
}

/// Sum of digits of k for k in 1..=N in bases 10 and 7, via div/idiv, and a 128/64 division.
#[test]
fn division_heavy() {
    let n = 5000u32;
    let code = assemble(|a| {
        let mut outer = a.create_label();
        let mut digits = a.create_label();
        let mut digits7 = a.create_label();
        a.xor(r8d, r8d).unwrap(); // sum base 10
        a.xor(r9d, r9d).unwrap(); // sum base 7
        a.mov(r10d, 1).unwrap();
        a.mov(ebx, 10).unwrap();
        a.mov(r11, -7i64).unwrap();
        a.set_label(&mut outer).unwrap();
        a.mov(eax, r10d).unwrap();
        a.set_label(&mut digits).unwrap();
        a.xor(edx, edx).unwrap();
        a.div(ebx).unwrap();
        a.add(r8d, edx).unwrap();
        a.test(eax, eax).unwrap();
        a.jnz(digits).unwrap();
        // base 7 with negative divisor: idiv by -7, negate the quotient.
        a.mov(rax, r10).unwrap();
        a.set_label(&mut digits7).unwrap();
        a.cqo().unwrap();
        a.idiv(r11).unwrap();
        a.neg(rax).unwrap();
        a.add(r9, rdx).unwrap();
        a.test(rax, rax).unwrap();
        a.jnz(digits7).unwrap();
        a.inc(r10d).unwrap();
        a.cmp(r10d, n).unwrap();
        a.jbe(outer).unwrap();
        // 128/64: (2^64 * 5 + 17) / 7
        a.mov(edx, 5).unwrap();
        a.mov(eax, 17).unwrap();
        a.mov(ecx, 7).unwrap();
        a.div(rcx).unwrap();
        a.mov(r12, rax).unwrap();
        a.mov(r13, rdx).unwrap();
        // 8-bit idiv: -100 / 7
        a.mov(ax, -100i32).unwrap();
        a.mov(cl, 7).unwrap();
        a.idiv(cl).unwrap();
        a.movsx(r14d, al).unwrap();
        a.mov(r15d, eax).unwrap();
        a.shl(r15d, 16).unwrap();
        a.sar(r15d, 24).unwrap();
        a.hlt().unwrap();
    });
    let cpu = run(&code, |_| {}, 10_000_000);
    let digsum = |mut k: u64, b: u64| {
        let mut s = 0;
        while k > 0 {
            s += k % b;
            k /= b;
        }
        s
    };
    assert_eq!(
        cpu.reg(8),
        (1..=n as u64).map(|k| digsum(k, 10)).sum::<u64>()
    );
    assert_eq!(
        cpu.reg(9),
        (1..=n as u64).map(|k| digsum(k, 7)).sum::<u64>()
    );
    let big = (5u128 << 64) + 17;
    assert_eq!(cpu.reg(12), (big / 7) as u64);
    assert_eq!(cpu.reg(13), (big % 7) as u64);
    assert_eq!(cpu.reg(14) as i32, -14);
    assert_eq!(cpu.reg(15) as i32, -2);
    eprintln!("division: {}", stats_line(&cpu));
}

/// #DE (divide by zero and quotient overflow) reaches the IDT handler with RIP at the DIV and
/// the registers unchanged.
#[test]
fn divide_error_delivered() {
    for overflow in [false, true] {
        let mut handler = 0u64;
        let mut div_at = 0u64;
        let code = assemble(|a| {
            let mut h = a.create_label();
            let mut d = a.create_label();
            a.mov(rax, 0x1234u64).unwrap();
            if overflow {
                a.mov(edx, 9).unwrap();
                a.mov(ecx, 9).unwrap();
            } else {
                a.mov(edx, 1).unwrap();
                a.xor(ecx, ecx).unwrap();
            }
            a.set_label(&mut d).unwrap();
            a.div(rcx).unwrap();
            a.mov(r15, 1u64).unwrap();
            a.hlt().unwrap();
            a.set_label(&mut h).unwrap();
            a.mov(r14, qword_ptr(rsp)).unwrap(); // saved RIP
            a.mov(r13, qword_ptr(rsp + 8)).unwrap(); // saved CS
            a.hlt().unwrap();
            a.zero_bytes().unwrap();
            let _ = (&mut handler, &mut div_at);
        });
        // Find the handler and the div by decoding.
        let mut dec = iced_x86::Decoder::with_ip(64, &code, CODE, 0);
        let mut hlts = 0;
        for i in &mut dec {
            if i.mnemonic() == iced_x86::Mnemonic::Div {
                div_at = i.ip();
            }
            if i.mnemonic() == iced_x86::Mnemonic::Hlt {
                hlts += 1;
                if hlts == 1 {
                    handler = i.next_ip();
                }
            }
        }
        let cpu = run(&code, |c| set_idt_gate(c, 0, handler), 1000);
        assert_eq!(cpu.reg(14), div_at, "saved RIP (overflow={overflow})");
        assert_eq!(cpu.reg(13), 0x10);
        assert_eq!(cpu.reg(15), 0, "the div did not complete");
        assert_eq!(cpu.reg(RAX), 0x1234);
        assert_eq!(cpu.reg(RDX), if overflow { 9 } else { 1 });
        assert_eq!(cpu.reg(RSP), STACK_TOP - 40);
    }
}

/// A long `rep stosb` yields to the run loop (interrupts) and still finishes exactly; a
/// page fault part-way leaves exact progress.
#[test]
fn long_rep_restarts() {
    let code = assemble(|a| {
        a.mov(rdi, DATA).unwrap();
        a.mov(ecx, 100_000).unwrap();
        a.mov(al, 0x5a).unwrap();
        a.rep().stosb().unwrap();
        a.hlt().unwrap();
    });
    let cpu = run(&code, |_| {}, 1_000_000);
    assert_eq!(cpu.reg(RCX), 0);
    assert_eq!(cpu.reg(RDI), DATA + 100_000);
    let m = read(&cpu, DATA, 100_001);
    assert!(m[..100_000].iter().all(|&b| b == 0x5a));
    assert_eq!(m[100_000], 0);
    eprintln!("long rep: {}", stats_line(&cpu));
}

#[test]
fn enter_leave_nested() {
    let code = assemble(|a| {
        a.mov(rbp, 0x1111u64).unwrap();
        a.enter(32u32, 0u32).unwrap();
        a.mov(r8, rbp).unwrap();
        a.mov(r9, rsp).unwrap();
        a.enter(16u32, 2u32).unwrap();
        a.mov(r10, rbp).unwrap();
        a.mov(r11, rsp).unwrap();
        a.mov(r12, qword_ptr(rsp + 16)).unwrap(); // copied frame pointer
        a.leave().unwrap();
        a.leave().unwrap();
        a.hlt().unwrap();
    });
    let cpu = run(
        &code,
        |c| c.core_mut().optimize = std::env::var("NOOPT").is_err(),
        1000,
    );
    let f1 = STACK_TOP - 8;
    assert_eq!(cpu.reg(8), f1);
    assert_eq!(cpu.reg(9), f1 - 32);
    let f2 = f1 - 32 - 8;
    assert_eq!(cpu.reg(10), f2);
    // level 2: pushes rbp, one outer frame pointer, and the new frame pointer.
    assert_eq!(cpu.reg(11), f2 - 16 - 16);
    assert_eq!(cpu.reg(12), f2);
    assert_eq!(cpu.reg(RBP), 0x1111);
    assert_eq!(cpu.reg(RSP), STACK_TOP);
}

/// A page fault part-way through `rep stosq` leaves exact progress: RDI at the faulting
/// page, RCX counting the elements left, everything before written; RIP at the instruction.
#[test]
fn rep_fault_exact_progress() {
    let start = 0x20_0000u64 - 8 * 100;
    let mut handler = 0u64;
    let mut rep_at = 0u64;
    let code = assemble(|a| {
        a.mov(rdi, start).unwrap();
        a.mov(ecx, 1000).unwrap();
        a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
        a.rep().stosq().unwrap();
        a.hlt().unwrap();
        // #PF handler: error code at [rsp], RIP at [rsp+8]
        a.mov(r14, qword_ptr(rsp + 8)).unwrap();
        a.mov(r13, qword_ptr(rsp)).unwrap();
        a.hlt().unwrap();
    });
    let dec = iced_x86::Decoder::with_ip(64, &code, CODE, 0);
    let mut hlts = 0;
    for i in dec {
        if i.mnemonic() == iced_x86::Mnemonic::Stosq {
            rep_at = i.ip();
        }
        if i.mnemonic() == iced_x86::Mnemonic::Hlt {
            hlts += 1;
            if hlts == 1 {
                handler = i.next_ip();
            }
        }
    }
    let cpu = run(
        &code,
        |c| {
            set_idt_gate(c, 14, handler);
            // Unmap 2..4 MiB.
            c.core_mut().mem.write_phys_u(0x3000 + 8, 8, 0);
        },
        10_000,
    );
    assert_eq!(cpu.reg(14), rep_at, "fault RIP is the rep instruction");
    assert_eq!(cpu.reg(13), 2, "error code: write, not present");
    assert_eq!(cpu.reg(RDI), 0x20_0000);
    assert_eq!(cpu.reg(RCX), 900);
    assert_eq!(cpu.core().guest.cr2, 0x20_0000);
    let m = read(&cpu, start, 800);
    assert!(m
        .chunks(8)
        .all(|c| u64::from_le_bytes(c.try_into().unwrap()) == 0x1122_3344_5566_7788));
}

/// What `rep movs` does element by element (the SDM's loop) on a byte image `m` indexed by
/// address - `base`: the reference for the bulk copies.
fn movs_reference(m: &mut [u8], base: u64, src: u64, dst: u64, n: usize, count: usize, df: bool) {
    let (mut s, mut d) = ((src - base) as isize, (dst - base) as isize);
    let step = if df { -(n as isize) } else { n as isize };
    for _ in 0..count {
        let mut e = [0u8; 8];
        e[..n].copy_from_slice(&m[s as usize..s as usize + n]);
        m[d as usize..d as usize + n].copy_from_slice(&e[..n]);
        s += step;
        d += step;
    }
}

/// Overlapping `rep movs` in both directions, by distances shorter than, equal to and longer
/// than the element, through two virtual aliases of one physical page, across pages: the
/// same bytes and registers as the element-by-element loop.
#[test]
fn rep_movs_overlaps_like_the_element_loop() {
    // 14-16 MiB virtual aliases physical 0-2 MiB (PD entry 7).
    const ALIAS: u64 = 7 << 21;
    let region = 3 * 4096usize;
    let cases: &[(u64, u64, usize, usize, bool)] = &[
        // (src, dst, element size, count, DF)
        (DATA + 10, DATA + 11, 1, 5000, false),
        (DATA + 10, ALIAS + DATA + 11, 1, 5000, false),
        (DATA + 100, DATA + 103, 2, 2000, false),
        (DATA + 100, DATA + 108, 8, 700, false),
        (DATA + 100, DATA + 105, 8, 700, false),
        (DATA + 8000, DATA + 7995, 4, 1500, true),
        (DATA + 8000, ALIAS + DATA + 7992, 8, 900, true),
        (DATA + 8000, DATA + 8003, 4, 1500, true),
        (DATA + 200, DATA + 100, 8, 1000, false),
        (DATA + 9000, DATA + 9100, 2, 3000, true),
    ];
    for &(src, dst, n, count, df) in cases {
        let code = assemble(|a| {
            a.mov(rsi, src).unwrap();
            a.mov(rdi, dst).unwrap();
            a.mov(ecx, count as u32).unwrap();
            if df {
                a.std().unwrap();
            }
            match n {
                1 => a.rep().movsb().unwrap(),
                2 => a.rep().movsw().unwrap(),
                4 => a.rep().movsd().unwrap(),
                _ => a.rep().movsq().unwrap(),
            }
            a.cld().unwrap();
            a.hlt().unwrap();
        });
        let mut img: Vec<u8> = (0..region).map(|k| (k * 13 + k / 97) as u8).collect();
        let cpu = run(
            &code,
            |c| {
                assert!(c.write_phys(DATA, &img));
                c.core_mut().mem.write_phys_u(0x3000 + 7 * 8, 8, 0x87);
            },
            100_000,
        );
        let un = |a: u64| a & !ALIAS;
        movs_reference(&mut img, DATA, un(src), un(dst), n, count, df);
        let what = format!("src {src:#x} dst {dst:#x} n {n} count {count} df {df}");
        assert_eq!(read(&cpu, DATA, region), img, "{what}");
        let moved = (n * count) as u64;
        let (s_end, d_end) = if df {
            (src - moved, dst - moved)
        } else {
            (src + moved, dst + moved)
        };
        assert_eq!(
            (cpu.reg(RSI), cpu.reg(RDI), cpu.reg(RCX)),
            (s_end, d_end, 0),
            "{what}"
        );
    }
}

/// `rep stos` of every size in both directions across pages fills exactly its elements.
#[test]
fn rep_stos_fills_exactly() {
    for (n, df) in [
        (1usize, false),
        (2, true),
        (4, false),
        (8, true),
        (8, false),
    ] {
        let count = 9000 / n;
        let start = if df { DATA + 12_000 } else { DATA + 3 };
        let code = assemble(|a| {
            a.mov(rdi, start).unwrap();
            a.mov(ecx, count as u32).unwrap();
            a.mov(rax, 0x8877_6655_4433_2211u64).unwrap();
            if df {
                a.std().unwrap();
            }
            match n {
                1 => a.rep().stosb().unwrap(),
                2 => a.rep().stosw().unwrap(),
                4 => a.rep().stosd().unwrap(),
                _ => a.rep().stosq().unwrap(),
            }
            a.cld().unwrap();
            a.hlt().unwrap();
        });
        let cpu = run(&code, |_| {}, 100_000);
        let len = 16_384usize;
        let mut want = vec![0u8; len];
        let pat = 0x8877_6655_4433_2211u64.to_le_bytes();
        for k in 0..count {
            let at = if df {
                start - DATA - (k * n) as u64
            } else {
                start - DATA + (k * n) as u64
            } as usize;
            want[at..at + n].copy_from_slice(&pat[..n]);
        }
        assert_eq!(read(&cpu, DATA, len), want, "stos n {n} df {df}");
        assert_eq!(cpu.reg(RCX), 0);
    }
}

/// A `rep movsb` that overwrites code after it in its own page (a code page: the element loop
/// with its self-modifying-code checks) runs the new code.
#[test]
fn rep_movs_into_its_own_code_page() {
    let new_code = assemble(|a| {
        a.mov(eax, 42u32).unwrap();
        a.hlt().unwrap();
    });
    let code = assemble(|a| {
        let mut patch = a.create_label();
        a.mov(rsi, DATA).unwrap();
        a.lea(rdi, ptr(patch)).unwrap();
        a.mov(ecx, new_code.len() as u32).unwrap();
        a.rep().movsb().unwrap();
        a.set_label(&mut patch).unwrap();
        a.mov(eax, 1u32).unwrap();
        a.hlt().unwrap();
    });
    let cpu = run(&code, |c| assert!(c.write_phys(DATA, &new_code)), 1000);
    assert_eq!(cpu.reg(RAX), 42);
}

/// A long `rep` ends a run's instruction budget part-way, with exact progress (each yield
/// to the run loop counts as one instruction), and the next run finishes it.
#[test]
fn long_rep_respects_the_budget() {
    let count = 1u32 << 20;
    let code = assemble(|a| {
        a.mov(rdi, DATA).unwrap();
        a.mov(ecx, count).unwrap();
        a.mov(al, 0x77).unwrap();
        a.rep().stosb().unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    let mut bus = TestBus::default();
    assert_eq!(cpu.run(&mut bus, 8), CpuExit::Budget);
    let left = cpu.reg(RCX);
    assert!(left > 0 && left < u64::from(count), "RCX {left:#x}");
    assert_eq!(cpu.reg(RDI) - DATA, u64::from(count) - left);
    let e = run_to_hlt(&mut cpu, &mut bus, 1_000_000);
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
    assert_eq!((cpu.reg(RCX), cpu.reg(RDI)), (0, DATA + u64::from(count)));
    let m = read(&cpu, DATA, count as usize + 1);
    assert!(m[..count as usize].iter().all(|&b| b == 0x77));
    assert_eq!(m[count as usize], 0);
}

/// Straight-line code storing into the page it runs from at every instruction (each store
/// invalidates the running block): the block after such a store is one instruction long, so
/// each store costs one instruction of translation, not a translation of the rest of the page.
#[test]
fn storing_into_its_own_code_page_translates_one_instruction_per_store() {
    const STORES: usize = 300;
    let code = assemble(|a| {
        a.mov(rbx, CODE + 0xf00).unwrap();
        for k in 0..STORES {
            a.mov(byte_ptr(rbx + (k % 64) as i32), al).unwrap();
        }
        a.hlt().unwrap();
    });
    assert!(code.len() < 0xf00);
    let mut cpu = machine(&code);
    let e = run_to_hlt(&mut cpu, &mut TestBus::default(), 10_000);
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
    let s = cpu.core().stats;
    eprintln!("self-modifying stores: {}", stats_line(&cpu));
    // Before: the rest of the page was retranslated after every store, ~STORES^2/2.
    assert!(
        s.insns_translated < 3 * STORES as u64,
        "{} instructions translated for {STORES} stores",
        s.insns_translated
    );
}

/// A rotate at a block start (lazy flags unknown) whose flags the next instructions overwrite
/// merges no flags (no helper call); the flags after are the overwriter's, exactly.
#[test]
fn dead_rotate_flags_cost_nothing() {
    let ops_of = |tail: &dyn Fn(&mut CodeAssembler)| {
        let code = assemble(|a| {
            let mut top = a.create_label();
            a.mov(ecx, 1000u32).unwrap();
            a.mov(eax, 0x8000_0001u32).unwrap();
            a.set_label(&mut top).unwrap();
            a.ror(eax, 6).unwrap();
            a.mov(edx, eax).unwrap();
            tail(a);
            a.dec(ecx).unwrap();
            a.jnz(top).unwrap();
            a.pushfq().unwrap();
            a.pop(rbx).unwrap();
            a.hlt().unwrap();
        });
        let cpu = run(&code, |_| {}, 100_000);
        (
            cpu.core().stats.ops_executed,
            cpu.reg(RAX),
            cpu.reg(RBX) & 0x8d5,
        )
    };
    // `and edx, edx` overwrites every flag: the rotate's flags are dead.
    let (dead, rax_a, fl_a) = ops_of(&|a| a.and(edx, edx).unwrap());
    // `adc edx, 0` reads CF: the rotate's flags are live (and merged into the old ones).
    let (live, rax_b, _) = ops_of(&|a| a.adc(edx, 0).unwrap());
    assert_eq!(rax_a, rax_b);
    // After the loop the flags are dec's (ZF, PF set; CF from and = 0 is kept by dec).
    assert_eq!(fl_a, 0x44, "flags {fl_a:#x}");
    eprintln!("dead rotate flags: {dead} ops, live: {live}");
    // Per iteration: rotate, mov, and + its flags (2), dec + its flags, the branch: 7 ops;
    // merging the rotate's flags at the block start costs a helper call and its argument.
    assert!(dead <= 7 * 1000 + 20, "{dead} ops executed");
}
