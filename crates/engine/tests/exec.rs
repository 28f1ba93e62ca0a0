//! The run loop through the toy guest: precise exceptions, self-modifying code and DMA,
//! chaining and the jump cache, the TB cache bound, MMIO and page-crossing accesses.

mod common;

use common::*;
use tci64_engine::{Access, Stop, Trap};

fn r(e: &tci64_engine::Engine<Toy>, i: u8) -> u64 {
    e.core.regs.0[i as usize]
}

fn set(e: &mut tci64_engine::Engine<Toy>, i: u8, v: u64) {
    e.core.regs.0[i as usize] = v;
}

#[test]
fn straight_line_and_halt() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(LI, 1, 0, 0, -5),
            enc(LI, 2, 0, 0, 7),
            enc(ADD, 3, 1, 2, 0),
            enc(SUB, 4, 1, 2, 0),
            enc(MUL, 5, 1, 2, 0),
            enc(ADD32, 6, 1, 1, 0),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 3), 2);
    assert_eq!(r(&e, 4), -12i64 as u64);
    assert_eq!(r(&e, 5), -35i64 as u64);
    assert_eq!(r(&e, 6), (-10i64 as u64) & 0xffff_ffff);
    assert_eq!(r(&e, PC), 0x1000 + 7 * 8);
    assert_eq!(e.core.icount, 7);
    assert_eq!(e.core.stats.tbs_translated, 1);
}

/// The third instruction's store faults: the first two instructions' effects are visible,
/// nothing after, and the PC/restore data name the third instruction. The optimizer must not
/// drop the first instruction's write to r1 although the fourth overwrites it.
#[test]
fn precise_exception_in_third_instruction() {
    for optimize in [true, false] {
        let mut e = engine();
        e.core.optimize = optimize;
        let mut bus = ToyBus::default();
        load(
            &mut e,
            0x1000,
            &[
                enc(LI, 1, 0, 0, 5),
                enc(ADDI, 2, 2, 0, 1),
                enc(ST64, 0, 3, 1, 8),
                enc(LI, 1, 0, 0, 9),
                enc(ADDI, 2, 2, 0, 100),
                enc(HALT, 0, 0, 0, 0),
            ],
        );
        set(&mut e, 2, 10);
        set(&mut e, 3, 0x8000);
        unmap(&mut e, 0x8000);
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
        assert_eq!(r(&e, 1), 5, "optimize={optimize}");
        assert_eq!(r(&e, 2), 11);
        assert_eq!(r(&e, PC), 0x1010);
        assert_eq!(e.core.guest.restores, vec![(0x1010, 2)]);
        assert_eq!(e.core.guest.faults, vec![(0x8008, Access::Write)]);
        assert_eq!(e.core.guest.traps, vec![Trap::Exception]);
        assert_eq!(e.core.icount, 2);
        assert_eq!(e.core.mem.read_phys_u(0x8008, 8), 0);
        // Map the page and resume at the faulting instruction.
        map(&mut e, 0x8000);
        assert_eq!(e.run(&mut bus, 1000), Stop::Guest(HALT_CODE));
        assert_eq!(r(&e, 1), 9);
        assert_eq!(r(&e, 2), 111);
        assert_eq!(e.core.mem.read_phys_u(0x8008, 8), 5);
        assert_eq!(e.core.icount, 6);
    }
}

/// A faulting load must not write its destination register.
#[test]
fn faulting_load_leaves_destination() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(LD64, 1, 3, 0, 0),
            enc(LD64, 2, 4, 0, 0),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    e.core.mem.write_phys_u(0x9000, 8, 0xabcd);
    set(&mut e, 1, 0x77);
    set(&mut e, 2, 0x88);
    set(&mut e, 3, 0x9000);
    set(&mut e, 4, 0xa000);
    unmap(&mut e, 0xa000);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
    assert_eq!((r(&e, 1), r(&e, 2)), (0xabcd, 0x88));
    assert_eq!(r(&e, PC), 0x1008);
}

/// A helper that traps reports its instruction; one that writes globals is seen by later code.
#[test]
fn helper_trap_and_clobber() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(LI, 5, 0, 0, 1),
            enc(LI, 3, 0, 0, 2),
            enc(CALL, 7, 1, 2, H_CLOBBER as i32), // r3 = r1 ^ r2, r5 += 1, r7 = 3 * r2
            enc(ADD, 8, 3, 5, 0),                 // must see the helper's r3 and r5
            enc(CALL, 9, 4, 4, H_TRAP as i32),
            enc(LI, 10, 0, 0, 1),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    set(&mut e, 1, 0xf0);
    set(&mut e, 2, 0x0f);
    set(&mut e, 4, 0x15a);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
    assert_eq!(r(&e, 3), 0xff);
    assert_eq!(r(&e, 5), 2);
    assert_eq!(r(&e, 7), 0x2d);
    assert_eq!(r(&e, 8), 0x101);
    assert_eq!(r(&e, 10), 0);
    assert_eq!(r(&e, PC), 0x1020);
    assert_eq!(e.core.guest.restores, vec![(0x1020, 4)]);
}

/// A store through the guest into a page that holds translated code: the code is
/// retranslated and the new instruction runs.
#[test]
fn self_modifying_code_through_guest_store() {
    for optimize in [true, false] {
        let mut e = engine();
        e.core.optimize = optimize;
        let mut bus = ToyBus::default();
        // A: r1 = 1; jump to B.   B: overwrite A's first instruction; halt.
        load(
            &mut e,
            0x1000,
            &[enc(LI, 1, 0, 0, 1), enc(JMP, 0, 0, 0, 0x1000 - 0x10)],
        );
        load(
            &mut e,
            0x2000,
            &[enc(ST64, 0, 5, 6, 0), enc(HALT, 0, 0, 0, 0)],
        );
        set(&mut e, 5, 0x1000);
        set(&mut e, 6, u64::from_le_bytes(enc(LI, 1, 0, 0, 2)));
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
        assert_eq!(r(&e, 1), 1);
        assert_eq!(e.core.stats.tbs_invalidated, 1);
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
        assert_eq!(r(&e, 1), 2, "new code runs");
        // The data store again (page re-protected by the retranslation): still caught.
        set(&mut e, 6, u64::from_le_bytes(enc(LI, 1, 0, 0, 3)));
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
        assert_eq!(r(&e, 1), 3);
        // Every run rewrote the page once.
        assert_eq!(e.core.stats.tbs_invalidated, 4);
    }
}

/// The TLB maps a page writable (clean fast-path tag) before code is translated from it; the
/// translation must demote the tag so that later fast-path stores still invalidate.
#[test]
fn smc_page_written_before_it_became_code() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    // B at 0x2000: store r6 to [r5]; jump r7.
    load(
        &mut e,
        0x2000,
        &[enc(ST64, 0, 5, 6, 0), enc(JR, 0, 7, 0, 0)],
    );
    set(&mut e, 5, 0x5000);
    set(&mut e, 7, 0x5000);
    // First store writes `LI r1, 1` to 0x5000 through a clean TLB entry, then jumps there.
    e.core.mem.write_phys(0x5008, &enc(HALT, 0, 0, 0, 0));
    set(&mut e, 6, u64::from_le_bytes(enc(LI, 1, 0, 0, 1)));
    assert_eq!(run_at(&mut e, &mut bus, 0x2000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 1);
    // Now 0x5000 holds code; the same store (same TLB entry) rewrites it.
    set(&mut e, 6, u64::from_le_bytes(enc(LI, 1, 0, 0, 2)));
    assert_eq!(run_at(&mut e, &mut bus, 0x2000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 2, "stale translation ran");
    assert!(e.core.stats.tbs_invalidated >= 1);
}

/// Same through a second virtual alias of the code page (different virtual page, same
/// physical page): invalidation is by physical page.
#[test]
fn smc_through_virtual_alias() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    e.core.guest.alias.insert(0x40_0000_0000, 0x5000);
    load(
        &mut e,
        0x5000,
        &[enc(LI, 1, 0, 0, 1), enc(HALT, 0, 0, 0, 0)],
    );
    // Rewrite the immediate of `LI r1` through the alias, then jump to the code.
    load(
        &mut e,
        0x2000,
        &[enc(ST32, 0, 5, 6, 4), enc(JR, 0, 7, 0, 0)],
    );
    assert_eq!(run_at(&mut e, &mut bus, 0x5000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 1);
    set(&mut e, 5, 0x40_0000_0000);
    set(&mut e, 6, 42);
    set(&mut e, 7, 0x5000);
    assert_eq!(run_at(&mut e, &mut bus, 0x2000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 42);
    assert_eq!(e.core.stats.tbs_invalidated, 1);
}

/// DMA into a code page through `Engine::write_phys`.
#[test]
fn dma_into_code_page_invalidates() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[enc(LI, 1, 0, 0, 1), enc(HALT, 0, 0, 0, 0)],
    );
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 1);
    assert!(e.write_phys(0x1000, &enc(LI, 1, 0, 0, 3)));
    assert_eq!(e.core.stats.tbs_invalidated, 1);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 3);
    assert_eq!(e.core.stats.tbs_translated, 2);
    // DMA elsewhere invalidates nothing.
    assert!(e.write_phys(0x7000, &[1; 64]));
    assert_eq!(e.core.stats.tbs_invalidated, 1);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(e.core.stats.tbs_translated, 2);
}

/// A loop block ends in a conditional branch back to itself: after the first pass it is
/// chained to itself.
#[test]
fn loop_block_chains_to_itself() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(LI, 1, 0, 0, 0),
            enc(LI, 2, 0, 0, 1000),
            enc(JMP, 0, 0, 0, 0), // to 0x1018
            enc(ADDI, 1, 1, 0, 1),
            enc(ADDI, 3, 3, 0, 3),
            enc(BNE, 0, 1, 2, -24), // to 0x1018
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 1000);
    assert_eq!(r(&e, 3), 3000);
    let s = e.core.stats;
    assert!(s.chain_hits >= 998, "{s:?}");
    assert_eq!(s.tbs_translated, 3);
    assert_eq!(e.core.icount, 3 + 3 * 1000 + 1);
}

/// Indirect exits (`GotoPtr`) find their successor in the jump cache.
#[test]
fn indirect_jumps_hit_the_jump_cache() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(ADDI, 1, 1, 0, 1), // 0x1000
            enc(BNE, 0, 1, 2, 8),  // 0x1008 -> 0x1018 if r1 != r2
            enc(HALT, 0, 0, 0, 0), // 0x1010
            enc(JR, 0, 7, 0, 0),   // 0x1018
        ],
    );
    set(&mut e, 2, 100);
    set(&mut e, 7, 0x1000);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 100);
    let s = e.core.stats;
    assert!(s.jump_cache_hits >= 98, "{s:?}");
    assert!(s.hash_lookups <= 5, "{s:?}");
}

/// With a tiny cache bound the cache is flushed repeatedly, and a long chain of distinct
/// blocks still runs correctly (twice, so chains are rebuilt after flushes).
#[test]
fn tb_cache_bound_flushes_and_keeps_running() {
    for optimize in [true, false] {
        let mut e = engine();
        e.core.optimize = optimize;
        e.tbs.max_ops = 40;
        let mut bus = ToyBus::default();
        // 300 blocks of `r1 += 1; jmp next`, then a counter and a branch back to the start.
        let mut prog = Vec::new();
        for _ in 0..300 {
            prog.push(enc(ADDI, 1, 1, 0, 1));
            prog.push(enc(JMP, 0, 0, 0, 0));
        }
        let back = -((prog.len() as i32 + 2) * 8);
        prog.push(enc(ADDI, 2, 2, 0, 1));
        prog.push(enc(BNE, 0, 2, 3, back));
        prog.push(enc(HALT, 0, 0, 0, 0));
        load(&mut e, 0x1_0000, &prog);
        set(&mut e, 3, 3);
        assert_eq!(run_at(&mut e, &mut bus, 0x1_0000), Stop::Guest(HALT_CODE));
        assert_eq!(r(&e, 1), 900);
        assert_eq!(r(&e, 2), 3);
        let s = e.core.stats;
        assert!(s.tb_flushes >= 10, "{s:?}");
        assert!(e.tbs.len() <= 40, "{}", e.tbs.len());
    }
}

/// The budget stops the run loop between blocks; running on continues exactly.
#[test]
fn budget_and_resume() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(ADDI, 1, 1, 0, 1),
            enc(BNE, 0, 1, 2, -16),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    set(&mut e, 2, 500);
    e.core.regs.0[PC as usize] = 0x1000;
    assert_eq!(e.run(&mut bus, 100), Stop::Budget);
    assert_eq!(e.core.icount, 100);
    assert_eq!(r(&e, 1), 50);
    assert_eq!(e.run(&mut bus, 1_000_000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 500);
}

const MMIO_BASE: u64 = 0xf000_0000;

/// Loads and stores to an MMIO page reach the bus with the physical address and size;
/// values are truncated to the access size both ways.
#[test]
fn mmio_loads_and_stores_reach_the_bus() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    // Virtual 0x7000_0000 is an alias of the MMIO page.
    e.core.guest.alias.insert(0x7000_0000, MMIO_BASE);
    load(
        &mut e,
        0x1000,
        &[
            enc(LD8, 1, 5, 0, 1),
            enc(LD16, 2, 5, 0, 2),
            enc(LD32, 3, 5, 0, 4),
            enc(LD64, 4, 5, 0, 8),
            enc(ST8, 0, 5, 9, 0x10),
            enc(ST16, 0, 5, 9, 0x12),
            enc(ST32, 0, 5, 9, 0x14),
            enc(ST64, 0, 5, 9, 0x18),
            enc(LD32, 6, 7, 0, 0x20),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    set(&mut e, 5, MMIO_BASE);
    set(&mut e, 7, 0x7000_0000);
    set(&mut e, 9, 0x1122_3344_5566_7788);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    let b = MMIO_BASE;
    assert_eq!(
        bus.log,
        vec![
            Mmio::Read {
                paddr: b + 1,
                size: 1
            },
            Mmio::Read {
                paddr: b + 2,
                size: 2
            },
            Mmio::Read {
                paddr: b + 4,
                size: 4
            },
            Mmio::Read {
                paddr: b + 8,
                size: 8
            },
            Mmio::Write {
                paddr: b + 0x10,
                size: 1,
                value: 0x88
            },
            Mmio::Write {
                paddr: b + 0x12,
                size: 2,
                value: 0x7788
            },
            Mmio::Write {
                paddr: b + 0x14,
                size: 4,
                value: 0x5566_7788
            },
            Mmio::Write {
                paddr: b + 0x18,
                size: 8,
                value: 0x1122_3344_5566_7788
            },
            Mmio::Read {
                paddr: b + 0x20,
                size: 4
            },
        ]
    );
    // Loads zero-extend whatever the device returns.
    assert_eq!(r(&e, 1), mmio_pattern(b + 1) & 0xff);
    assert_eq!(r(&e, 2), mmio_pattern(b + 2) & 0xffff);
    assert_eq!(r(&e, 3), mmio_pattern(b + 4) & 0xffff_ffff);
    assert_eq!(r(&e, 4), mmio_pattern(b + 8));
    assert_eq!(r(&e, 6), mmio_pattern(b + 0x20) & 0xffff_ffff);
    // MMIO never goes through the RAM fast path: a second run hits the bus again.
    bus.log.clear();
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(bus.log.len(), 9);
}

/// Loads and stores crossing a page boundary (slow path) between two RAM pages mapped to
/// non-adjacent physical pages.
#[test]
fn page_crossing_accesses() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    // Virtual 0x20_0000_0000 -> phys 0x9000, virtual +0x1000 -> phys 0x3000.
    e.core.guest.alias.insert(0x20_0000_0000, 0x9000);
    e.core.guest.alias.insert(0x20_0000_1000, 0x3000);
    e.core.mem.write_phys(0x9ffc, &[1, 2, 3, 4]);
    e.core.mem.write_phys(0x3000, &[5, 6, 7, 8]);
    load(
        &mut e,
        0x1000,
        &[
            enc(LD64, 1, 5, 0, 0xffc),
            enc(LD32, 2, 5, 0, 0xffe),
            enc(LD16, 3, 5, 0, 0xfff),
            enc(ST64, 0, 5, 9, 0xffa),
            enc(ST32, 0, 5, 9, 0xfff),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    set(&mut e, 5, 0x20_0000_0000);
    set(&mut e, 9, 0x1122_3344_5566_7788);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 0x0807_0605_0403_0201);
    assert_eq!(r(&e, 2), 0x0605_0403);
    assert_eq!(r(&e, 3), 0x0504);
    let mut b = [0u8; 6];
    e.core.mem.read_phys(0x9ffa, &mut b);
    assert_eq!(b, [0x88, 0x77, 0x66, 0x55, 0x44, 0x88]);
    let mut b = [0u8; 4];
    e.core.mem.read_phys(0x3000, &mut b);
    assert_eq!(b, [0x77, 0x66, 0x55, 0x08]);
    assert!(bus.log.is_empty());
}

/// A crossing store whose second page faults writes nothing (and names the second page);
/// a crossing load whose second page faults leaves its register alone.
#[test]
fn crossing_store_with_faulting_second_page_writes_nothing() {
    for optimize in [true, false] {
        let mut e = engine();
        e.core.optimize = optimize;
        let mut bus = ToyBus::default();
        load(
            &mut e,
            0x1000,
            &[enc(ST64, 0, 5, 9, 0xffc), enc(HALT, 0, 0, 0, 0)],
        );
        e.core.mem.write_phys(0x9ff8, &[0xaa; 8]);
        set(&mut e, 5, 0x9000);
        set(&mut e, 9, u64::MAX);
        unmap(&mut e, 0xa000);
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
        assert_eq!(e.core.mem.read_phys_u(0x9ff8, 8), 0xaaaa_aaaa_aaaa_aaaa);
        assert_eq!(e.core.guest.faults, vec![(0xa000, Access::Write)]);
        assert_eq!(r(&e, PC), 0x1000);
        // Read-only second page: same.
        e.core.guest.faults.clear();
        map(&mut e, 0xa000);
        e.core.guest.read_only.insert(0xa000);
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
        assert_eq!(e.core.mem.read_phys_u(0x9ff8, 8), 0xaaaa_aaaa_aaaa_aaaa);
        assert_eq!(e.core.guest.faults, vec![(0xa000, Access::Write)]);
        // Writable: the store completes.
        e.core.guest.read_only.clear();
        e.core.tlb_flush_all();
        assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
        assert_eq!(e.core.mem.read_phys_u(0x9ff8, 8), 0xffff_ffff_aaaa_aaaa);
        assert_eq!(e.core.mem.read_phys_u(0xa000, 4), 0xffff_ffff);
    }
    // The load version.
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[enc(LD64, 1, 5, 0, 0xffc), enc(HALT, 0, 0, 0, 0)],
    );
    set(&mut e, 1, 0x55);
    set(&mut e, 5, 0x9000);
    unmap(&mut e, 0xa000);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
    assert_eq!(r(&e, 1), 0x55);
    assert_eq!(e.core.guest.faults, vec![(0xa000, Access::Read)]);
}

/// A block whose first instruction cannot be fetched reports the fault without restore.
#[test]
fn fetch_fault() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(&mut e, 0x1000, &[enc(JMP, 0, 0, 0, 0x4000 - 0x1008)]);
    unmap(&mut e, 0x4000);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
    assert_eq!(e.core.guest.faults, vec![(0x4000, Access::Fetch)]);
    assert!(e.core.guest.restores.is_empty());
    assert_eq!(r(&e, PC), 0x4000);
}

/// Write-protect faults on a read-only page are precise too.
#[test]
fn read_only_page() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    e.core.guest.read_only.insert(0x6000);
    load(
        &mut e,
        0x1000,
        &[
            enc(LD64, 1, 5, 0, 0),
            enc(ST64, 0, 5, 1, 0),
            enc(HALT, 0, 0, 0, 0),
        ],
    );
    e.core.mem.write_phys_u(0x6000, 8, 99);
    set(&mut e, 5, 0x6000);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(FAULT_STOP));
    assert_eq!(r(&e, 1), 99);
    assert_eq!(e.core.guest.faults, vec![(0x6000, Access::Write)]);
    assert_eq!(r(&e, PC), 0x1008);
}

/// `ops_executed` is exact (a taken branch skips ops, which are not counted), and every
/// interpreter load and store is counted once: on the inline fast path or the slow path.
#[test]
fn op_and_tlb_counts_are_exact() {
    use tci64_engine::ir::Cond;
    use tci64_engine::Op;
    let mut e = engine_with_ram(0x8000);
    e.core.optimize = false;
    e.core.guest.hand_ir = Some(vec![
        Op::InsnStart { n: 0 },
        Op::Const { d: 1, imm: 5 },
        Op::BrCondI {
            a: 1,
            imm: 5,
            cond: Cond::Eq,
            t: 0,
        },
        Op::Const { d: 2, imm: 1 },
        Op::Const { d: 3, imm: 1 },
        Op::Label { id: 0 },
        Op::Ld64 {
            d: 4,
            a: 9,
            disp: 0,
            mmu: 0,
        },
        Op::St64 {
            v: 4,
            a: 9,
            disp: 8,
            mmu: 0,
        },
        Op::Ld64 {
            d: 5,
            a: 9,
            disp: 0,
            mmu: 0,
        },
        Op::Exit { code: 7 },
    ]);
    set(&mut e, 9, 0x2000);
    let mut bus = ToyBus::default();
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(7));
    let s = e.core.stats;
    // Const, BrCondI (taken), Ld64, St64, Ld64, Exit.
    assert_eq!(s.ops_executed, 6, "{s:?}");
    assert_eq!(r(&e, 2), 0);
    // The first load walks the page tables; the store and the second load hit inline.
    assert_eq!((s.tlb_slow, s.tlb_fast_hits), (1, 2), "{s:?}");
    assert_eq!(s.tlb_misses, 2, "one data refill, one fetch: {s:?}");
}

/// Direct jumps across pages are chained too, until the next TLB flush: then the link is
/// not taken (the target page's mapping may have changed) and the successor is looked up.
#[test]
fn cross_page_links_hold_until_a_tlb_flush() {
    let mut e = engine();
    let mut bus = ToyBus::default();
    load(
        &mut e,
        0x1000,
        &[
            enc(ADDI, 1, 1, 0, 1),    // 0x1000
            enc(BNE, 0, 1, 2, 0xff0), // 0x1008 -> 0x2000 while r1 != r2
            enc(HALT, 0, 0, 0, 0),    // 0x1010
        ],
    );
    load(&mut e, 0x2000, &[enc(JMP, 0, 0, 0, -0x1008)]); // 0x2000 -> 0x1000
    set(&mut e, 2, 100);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 100);
    let s = e.core.stats;
    assert!(s.chain_hits >= 190, "{s:?}");
    assert!(s.jump_cache_hits + s.hash_lookups <= 6, "{s:?}");
    // After a flush the old links are not followed: each is looked up once, then relinked.
    e.core.tlb_flush_page(0x2000);
    set(&mut e, 1, 0);
    assert_eq!(run_at(&mut e, &mut bus, 0x1000), Stop::Guest(HALT_CODE));
    assert_eq!(r(&e, 1), 100);
    let t = e.core.stats;
    let lookups = (t.jump_cache_hits + t.hash_lookups) - (s.jump_cache_hits + s.hash_lookups);
    assert!((3..=6).contains(&lookups), "{lookups} lookups: {t:?}");
    assert!(t.chain_hits - s.chain_hits >= 190, "{t:?}");
}
