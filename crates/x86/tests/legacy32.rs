//! The legacy instructions that exist outside 64-bit mode only (DAA, DAS, AAA, AAS, AAM, AAD,
//! SALC, PUSHA/POPA, BOUND, ARPL, LES/LDS), run in compatibility mode, with the SDM's worked
//! examples as the expected values; and the far-pointer loads and reserved NOPs of 64-bit mode.

mod common;
use common::*;
use iced_x86::code_asm::*;
use tci64_x86::{Cpu, CpuExit};

/// A 32-bit code segment (compatibility mode) at GDT selector 0x40.
const COMPAT_CS: u16 = 0x40;
/// Where the 32-bit code starts.
const COMPAT_CODE: u64 = 0x40000;
/// Results the test code stores (one dword each).
const OUT: u64 = DATA + 0x400;
/// The vector an exception handler recorded (0xff: none).
const VECTOR: u64 = DATA + 0x800;

/// Run `body` (32-bit code) in compatibility mode at CPL 0, ending in HLT; exceptions end at a
/// handler that records the vector and halts.
fn run32(body: impl FnOnce(&mut CodeAssembler)) -> Cpu {
    let entry = assemble(|a| {
        sys_prologue(a);
        a.push(COMPAT_CS as i32).unwrap();
        a.mov(rax, COMPAT_CODE).unwrap();
        a.push(rax).unwrap();
        a.db(&[0x48, 0xcb]).unwrap(); // RETFQ
    });
    let mut a = CodeAssembler::new(32).unwrap();
    body(&mut a);
    a.hlt().unwrap();
    let code32 = a.assemble(COMPAT_CODE).unwrap();
    let mut cpu = machine(&entry);
    system_tables(&mut cpu);
    write_u64(&mut cpu, GDT + COMPAT_CS as u64, 0x00cf_9b00_0000_ffff);
    // The GDTR image: limit 0x47 (up to the compat code segment).
    load(&mut cpu, DTPTR, &0x47u16.to_le_bytes());
    load(&mut cpu, COMPAT_CODE, &code32);
    record_exceptions(&mut cpu, VECTOR);
    let e = cpu.run(&mut TestBus::default(), 10_000);
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
    cpu
}

fn out(cpu: &Cpu, k: u64) -> u32 {
    read_u64(cpu, OUT + 4 * k) as u32
}

fn vector(cpu: &Cpu) -> u64 {
    read_u64(cpu, VECTOR)
}

/// Store AX and the low flags byte (CF, PF, AF, ZF, SF) at OUT + 4k, OUT + 4(k+1).
fn save(a: &mut CodeAssembler, k: u64) {
    a.mov(dword_ptr(OUT as u32 + 4 * k as u32), eax).unwrap();
    a.pushfd().unwrap();
    a.pop(ecx).unwrap();
    a.and(ecx, 0xd5).unwrap();
    a.mov(dword_ptr(OUT as u32 + 4 * (k as u32 + 1)), ecx)
        .unwrap();
}

const CF: u32 = 1;
const AF: u32 = 0x10;

#[test]
fn decimal_adjust_follows_the_sdm_examples() {
    let cpu = run32(|a| {
        // DAA: 79h + 35h = AEh, DAA -> 14h, CF = 1, AF = 1.
        a.mov(eax, 0x79).unwrap();
        a.add(al, 0x35).unwrap();
        a.daa().unwrap();
        save(a, 0);
        // DAS: 35h - 47h = EEh (CF = AF = 1), DAS -> 88h, CF = 1, AF = 1.
        a.mov(eax, 0x35).unwrap();
        a.sub(al, 0x47).unwrap();
        a.das().unwrap();
        save(a, 2);
        // AAA: 9 + 8 = 11h (AF = 1) -> AX = 0107h, CF = AF = 1.
        a.mov(eax, 0x09).unwrap();
        a.add(al, 0x08).unwrap();
        a.aaa().unwrap();
        save(a, 4);
        // AAS: 02h - 05h = FDh with AH = 1 (AF = 1) -> AX = 0007h, CF = AF = 1.
        a.mov(eax, 0x0102).unwrap();
        a.sub(al, 0x05).unwrap();
        a.aas().unwrap();
        save(a, 6);
        // AAM: 63 -> AH = 6, AL = 3. AAD: AX = 0603h -> AL = 63 (3Fh), AH = 0.
        a.mov(eax, 63).unwrap();
        a.aam(10).unwrap();
        save(a, 8);
        a.mov(eax, 0x0603).unwrap();
        a.aad(10).unwrap();
        save(a, 10);
        // SALC: AL = CF ? FFh : 0.
        a.mov(eax, 0x1234).unwrap();
        a.stc().unwrap();
        a.db(&[0xd6]).unwrap();
        a.mov(dword_ptr(OUT as u32 + 48), eax).unwrap();
        a.clc().unwrap();
        a.db(&[0xd6]).unwrap();
        a.mov(dword_ptr(OUT as u32 + 52), eax).unwrap();
    });
    assert_eq!(vector(&cpu), 0xff);
    assert_eq!(out(&cpu, 0) & 0xff, 0x14);
    assert_eq!(out(&cpu, 1) & (CF | AF), CF | AF);
    assert_eq!(out(&cpu, 2) & 0xff, 0x88);
    assert_eq!(out(&cpu, 3) & (CF | AF), CF | AF);
    assert_eq!(out(&cpu, 4) & 0xffff, 0x0107);
    assert_eq!(out(&cpu, 5) & (CF | AF), CF | AF);
    assert_eq!(out(&cpu, 6) & 0xffff, 0x0007);
    assert_eq!(out(&cpu, 7) & (CF | AF), CF | AF);
    assert_eq!(out(&cpu, 8) & 0xffff, 0x0603);
    assert_eq!(out(&cpu, 10) & 0xffff, 0x003f);
    assert_eq!(out(&cpu, 12), 0x12ff);
    assert_eq!(out(&cpu, 13), 0x1200);
}

#[test]
fn aam_0_is_a_divide_error() {
    let cpu = run32(|a| {
        a.mov(eax, 63).unwrap();
        a.aam(0).unwrap();
    });
    assert_eq!(vector(&cpu), 0);
}

#[test]
fn pushad_popad_round_trip_with_the_old_esp_in_the_frame() {
    let cpu = run32(|a| {
        for (k, r) in [eax, ecx, edx, ebx, ebp, esi, edi].into_iter().enumerate() {
            a.mov(r, 0x1000_0000u32 + k as u32).unwrap();
        }
        a.mov(dword_ptr(OUT as u32), esp).unwrap();
        a.pushad().unwrap();
        // The frame: EDI at [esp], ..., the old ESP at [esp+12], EAX at [esp+28].
        a.mov(eax, dword_ptr(esp + 12)).unwrap();
        a.mov(dword_ptr(OUT as u32 + 4), eax).unwrap();
        a.mov(eax, dword_ptr(esp)).unwrap();
        a.mov(dword_ptr(OUT as u32 + 8), eax).unwrap();
        a.mov(eax, dword_ptr(esp + 28)).unwrap();
        a.mov(dword_ptr(OUT as u32 + 12), eax).unwrap();
        a.mov(esi, 0).unwrap();
        a.mov(eax, 0).unwrap();
        // A different ESP in the frame is skipped by POPAD.
        a.mov(dword_ptr(esp + 12), 0x1234).unwrap();
        a.popad().unwrap();
        a.mov(dword_ptr(OUT as u32 + 16), esi).unwrap();
        a.mov(dword_ptr(OUT as u32 + 20), eax).unwrap();
        a.mov(dword_ptr(OUT as u32 + 24), esp).unwrap();
    });
    let sp0 = out(&cpu, 0);
    assert_eq!(out(&cpu, 1), sp0);
    assert_eq!(out(&cpu, 2), 0x1000_0006, "EDI at the lowest address");
    assert_eq!(out(&cpu, 3), 0x1000_0000, "EAX at the highest");
    assert_eq!(out(&cpu, 4), 0x1000_0005);
    assert_eq!(out(&cpu, 5), 0x1000_0000);
    assert_eq!(out(&cpu, 6), sp0);
}

#[test]
fn bound_raises_br_only_outside_the_bounds() {
    let bounds = |idx: i32| {
        run32(move |a| {
            a.mov(dword_ptr(OUT as u32 + 32), -5).unwrap();
            a.mov(dword_ptr(OUT as u32 + 36), 10).unwrap();
            a.mov(eax, idx).unwrap();
            a.bound(eax, qword_ptr(OUT as u32 + 32)).unwrap();
            a.mov(dword_ptr(OUT as u32), 1).unwrap();
        })
    };
    for ok in [-5, 0, 10] {
        let cpu = bounds(ok);
        assert_eq!((vector(&cpu), out(&cpu, 0)), (0xff, 1), "{ok}");
    }
    for bad in [-6, 11] {
        let cpu = bounds(bad);
        assert_eq!((vector(&cpu), out(&cpu, 0)), (5, 0), "{bad}");
    }
}

#[test]
fn arpl_raises_the_rpl_and_sets_zf() {
    let cpu = run32(|a| {
        a.mov(eax, 0x0010).unwrap();
        a.mov(ecx, 0x0003).unwrap();
        a.arpl(ax, cx).unwrap();
        a.setz(byte_ptr(OUT as u32 + 4)).unwrap();
        a.mov(dword_ptr(OUT as u32), eax).unwrap();
        a.arpl(ax, cx).unwrap();
        a.setz(byte_ptr(OUT as u32 + 8)).unwrap();
    });
    assert_eq!(out(&cpu, 0) & 0xffff, 0x0013);
    assert_eq!(out(&cpu, 1) & 0xff, 1);
    assert_eq!(out(&cpu, 2) & 0xff, 0);
}

#[test]
fn les_loads_the_far_pointer() {
    let cpu = run32(|a| {
        a.mov(dword_ptr(OUT as u32 + 32), 0x1234_5678).unwrap();
        a.mov(word_ptr(OUT as u32 + 36), KDATA as u32).unwrap();
        a.mov(eax, 0).unwrap();
        a.mov(ebx, 0).unwrap();
        a.mov(es, bx).unwrap();
        a.les(eax, fword_ptr(OUT as u32 + 32)).unwrap();
        a.mov(dword_ptr(OUT as u32), eax).unwrap();
        a.mov(ebx, es).unwrap();
        a.mov(dword_ptr(OUT as u32 + 4), ebx).unwrap();
        // A null-selector far pointer into SS faults (#GP) and leaves ECX alone.
        a.mov(word_ptr(OUT as u32 + 36), 0).unwrap();
        a.mov(ecx, 7).unwrap();
        a.mov(dword_ptr(OUT as u32 + 8), ecx).unwrap();
        a.lss(ecx, fword_ptr(OUT as u32 + 32)).unwrap();
        a.mov(dword_ptr(OUT as u32 + 8), ecx).unwrap();
    });
    assert_eq!(out(&cpu, 0), 0x1234_5678);
    assert_eq!(out(&cpu, 1) & 0xffff, KDATA as u32);
    assert_eq!(vector(&cpu), 13);
    assert_eq!(out(&cpu, 2), 7);
}

#[test]
fn lfs_lgs_lss_in_64_bit_mode_and_reserved_nops() {
    let code = assemble(|a| {
        a.mov(qword_ptr(DATA), 0x1122_3344_5566_7788u64 as i64 as i32)
            .unwrap();
        a.mov(dword_ptr(DATA + 4), 0x1122_3344).unwrap();
        a.mov(word_ptr(DATA + 8), KDATA as u32).unwrap();
        a.mov(rbx, DATA).unwrap();
        // REX.W LFS: m16:64.
        a.lfs(rax, qword_ptr(rbx)).unwrap();
        a.mov(qword_ptr(DATA + 0x100), rax).unwrap();
        a.mov(word_ptr(DATA + 4), KDATA as u32).unwrap();
        a.lss(ecx, fword_ptr(rbx)).unwrap();
        a.mov(qword_ptr(DATA + 0x108), rcx).unwrap();
        // Reserved NOPs (0F 18 /4, 0F 19-1E, 0F 0D reg): no access, even to unmapped memory.
        a.mov(rdx, 0x8000_0000_0000u64).unwrap();
        a.db(&[0x0f, 0x19, 0x02]).unwrap();
        a.db(&[0x0f, 0x18, 0x22]).unwrap();
        a.db(&[0x0f, 0x0d, 0xc0]).unwrap();
        // CVT(T)SS2SI/SD2SI with a memory source; MOVNTPS stores.
        a.mov(dword_ptr(DATA + 0x20), 2.5f32.to_bits() as i32)
            .unwrap();
        a.mov(dword_ptr(DATA + 0x24), 2.7f32.to_bits() as i32)
            .unwrap();
        a.cvtss2si(eax, dword_ptr(DATA + 0x20)).unwrap();
        a.mov(dword_ptr(DATA + 0x110), eax).unwrap();
        a.cvttss2si(rax, dword_ptr(DATA + 0x24)).unwrap();
        a.mov(qword_ptr(DATA + 0x118), rax).unwrap();
        a.mov(rax, (-3.5f64).to_bits()).unwrap();
        a.mov(qword_ptr(DATA + 0x28), rax).unwrap();
        a.cvtsd2si(rax, qword_ptr(DATA + 0x28)).unwrap();
        a.mov(qword_ptr(DATA + 0x120), rax).unwrap();
        a.movq(xmm1, rax).unwrap();
        a.movntps(xmmword_ptr(DATA + 0x130), xmm1).unwrap();
        a.hlt().unwrap();
    });
    let mut cpu = machine(&code);
    cpu.core_mut().guest.cr4 |= tci64_x86::state::cr::CR4_OSFXSR;
    let e = cpu.run(&mut TestBus::default(), 1000);
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
    assert_eq!(read_u64(&cpu, DATA + 0x100), 0x1122_3344_5566_7788);
    assert_eq!(cpu.core().guest.segs[4].selector, KDATA);
    assert_eq!(read_u64(&cpu, DATA + 0x108), 0x5566_7788);
    assert_eq!(cpu.core().guest.segs[2].selector, KDATA);
    assert_eq!(read_u64(&cpu, DATA + 0x110) as u32, 2, "2.5 rounds to even");
    assert_eq!(read_u64(&cpu, DATA + 0x118), 2, "2.7 truncates");
    assert_eq!(
        read_u64(&cpu, DATA + 0x120),
        -4i64 as u64,
        "-3.5 rounds to even"
    );
    assert_eq!(read_u64(&cpu, DATA + 0x130), -4i64 as u64);
}

#[test]
fn sysenter_from_compat_user_code_and_sysexit_back() {
    const USER32: u64 = USER_CODE;
    const USER_RET: u64 = USER_CODE + 0x100;
    const KENTRY: u64 = HANDLERS + 0x1000;
    const KSTACK: u64 = RSP0 - 0x100;
    const USER_STACK2: u64 = USER_STACK - 0x200;
    const UCODE32: u16 = 0x43;
    let kernel = assemble(|a| {
        sys_prologue(a);
        for (msr, v) in [(0x174u32, KCODE as u64), (0x175, KSTACK), (0x176, KENTRY)] {
            a.mov(ecx, msr).unwrap();
            a.mov(eax, v as u32).unwrap();
            a.mov(edx, 0).unwrap();
            a.wrmsr().unwrap();
        }
        a.push(UDATA as i32).unwrap();
        a.push(USER_STACK as i32).unwrap();
        a.push(2).unwrap();
        a.push(UCODE32 as i32).unwrap();
        a.push(USER32 as i32).unwrap();
        a.iretq().unwrap();
    });
    let mut cpu = machine(&kernel);
    system_tables(&mut cpu);
    write_u64(&mut cpu, GDT + 0x40, 0x00cf_fb00_0000_ffff);
    load(&mut cpu, DTPTR, &0x47u16.to_le_bytes());
    let user = {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(ecx, 0x1111).unwrap();
        a.sysenter().unwrap();
        a.assemble(USER32).unwrap()
    };
    load(&mut cpu, USER32, &user);
    let kentry = assemble_at(KENTRY, |a| {
        a.mov(rax, cs).unwrap();
        a.mov(qword_ptr(OUT), rax).unwrap();
        a.mov(rax, ss).unwrap();
        a.mov(qword_ptr(OUT + 8), rax).unwrap();
        a.mov(qword_ptr(OUT + 16), rsp).unwrap();
        a.pushfq().unwrap();
        a.pop(rax).unwrap();
        a.mov(qword_ptr(OUT + 24), rax).unwrap();
        a.mov(rdx, USER_RET).unwrap();
        a.mov(rcx, USER_STACK2).unwrap();
        a.sysexit().unwrap();
    });
    load(&mut cpu, KENTRY, &kentry);
    let back = {
        let mut a = CodeAssembler::new(32).unwrap();
        a.mov(eax, cs).unwrap();
        a.mov(dword_ptr(OUT as u32 + 32), eax).unwrap();
        a.mov(eax, ss).unwrap();
        a.mov(dword_ptr(OUT as u32 + 36), eax).unwrap();
        a.mov(dword_ptr(OUT as u32 + 40), esp).unwrap();
        a.ud2().unwrap();
        a.assemble(USER_RET).unwrap()
    };
    load(&mut cpu, USER_RET, &back);
    record_exceptions(&mut cpu, VECTOR);
    let e = cpu.run(&mut TestBus::default(), 10_000);
    assert!(matches!(e, CpuExit::Halted { .. }), "{e:?}");
    // SYSENTER: CS = IA32_SYSENTER_CS (64-bit code), SS = CS + 8, the stack of the MSR, IF off.
    assert_eq!(read_u64(&cpu, OUT), KCODE as u64);
    assert_eq!(read_u64(&cpu, OUT + 8), KCODE as u64 + 8);
    assert_eq!(read_u64(&cpu, OUT + 16), KSTACK);
    assert_eq!(read_u64(&cpu, OUT + 24) & 0x200, 0);
    // SYSEXIT (32-bit): CS = SYSENTER_CS + 16 | 3, SS = + 24 | 3, ESP = ECX, at EDX.
    assert_eq!(read_u64(&cpu, OUT + 32) as u32, KCODE as u32 + 16 + 3);
    assert_eq!(read_u64(&cpu, OUT + 36) as u32, KCODE as u32 + 24 + 3);
    assert_eq!(read_u64(&cpu, OUT + 40) as u32, USER_STACK2 as u32);
    assert_eq!(vector(&cpu), 6, "the UD2 after the return");
}
