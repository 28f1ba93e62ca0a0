//! The `--stats` report.

use std::time::Duration;

use tci64_machine::Stats;

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The counters as a few aligned lines, for stderr at exit.
pub fn report(s: &Stats, wall: Duration) -> String {
    let secs = wall.as_secs_f64();
    let mips = if secs > 0.0 {
        s.guest_instructions as f64 / secs / 1e6
    } else {
        0.0
    };
    let ops_per_insn = if s.guest_instructions > 0 {
        format!("{:.2}", s.ops_executed as f64 / s.guest_instructions as f64)
    } else {
        "-".to_string()
    };
    let insns_per_tb = if s.tbs_executed > 0 {
        format!("{:.1}", s.guest_instructions as f64 / s.tbs_executed as f64)
    } else {
        "-".to_string()
    };
    let lookups = s.chain_hits + s.jump_cache_hits + s.tb_lookups;
    // Every translated data access takes the inline fast path or the slow path; page walks
    // (refills, data and code fetch) are what missed the TLB.
    let tlb_accesses = s.tlb_fast_hits + s.tlb_slow;
    let tlb_hit_rate = if tlb_accesses > 0 {
        format!(
            "{:.2}%",
            (1.0 - s.tlb_misses as f64 / tlb_accesses as f64) * 100.0
        )
    } else {
        "-".to_string()
    };
    format!(
        "\
tci64 stats:
  wall time            {secs:.3} s
  virtual time         {virt:.3} s
  guest instructions   {insns} ({mips:.1} MIPS)
  TBs translated       {tbs} ({inval} invalidated)
  TBs executed         {tbs_exec} ({insns_per_tb} guest insns per TB)
  ops per guest insn   {ops_per_insn} ({ops} ops executed)
  TLB data accesses    {tlb_accesses}: fast path {tlb_fast}, slow path {tlb_slow} (misses, MMIO, page crossings, code-page stores)
  TLB page walks       {tlb_misses} (data and code fetch); hit rate {tlb_hit_rate} (1 - walks / data accesses)
  TB lookups           {lookups}: chained {chain}, jump cache {jc}, hash table {hash}
",
        virt = s.virtual_ns as f64 / 1e9,
        insns = s.guest_instructions,
        tbs = s.tbs_translated,
        inval = s.tbs_invalidated,
        tbs_exec = s.tbs_executed,
        ops = s.ops_executed,
        tlb_fast = pct(s.tlb_fast_hits, tlb_accesses),
        tlb_slow = pct(s.tlb_slow, tlb_accesses),
        tlb_misses = s.tlb_misses,
        chain = pct(s.chain_hits, lookups),
        jc = pct(s.jump_cache_hits, lookups),
        hash = pct(s.tb_lookups, lookups),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_with_counters() {
        let s = Stats {
            guest_instructions: 50_000_000,
            ops_executed: 150_000_000,
            tbs_translated: 1234,
            tbs_executed: 10_000_000,
            tlb_fast_hits: 3000,
            tlb_slow: 1000,
            tlb_misses: 10,
            chain_hits: 80,
            jump_cache_hits: 15,
            tb_lookups: 5,
            virtual_ns: 2_000_000_000,
            ..Stats::default()
        };
        let r = report(&s, Duration::from_secs(2));
        assert!(r.contains("50000000 (25.0 MIPS)"), "{r}");
        assert!(r.contains("3.00 (150000000 ops executed)"), "{r}");
        assert!(r.contains("10000000 (5.0 guest insns per TB)"), "{r}");
        assert!(
            r.contains("TLB data accesses    4000: fast path 75.0%, slow path 25.0%"),
            "{r}"
        );
        assert!(
            r.contains("TLB page walks       10 (data and code fetch); hit rate 99.75%"),
            "{r}"
        );
        assert!(
            r.contains("chained 80.0%, jump cache 15.0%, hash table 5.0%"),
            "{r}"
        );
    }

    #[test]
    fn report_with_nothing_divides_by_nothing() {
        let r = report(&Stats::default(), Duration::ZERO);
        assert!(r.contains("0 (0.0 MIPS)"), "{r}");
        assert!(
            r.contains("TBs executed         0 (- guest insns per TB)"),
            "{r}"
        );
        assert!(
            r.contains("TLB data accesses    0: fast path -, slow path -"),
            "{r}"
        );
        assert!(r.contains("0 (data and code fetch); hit rate -"), "{r}");
    }
}
