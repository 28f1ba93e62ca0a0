//! Counters the engine keeps (printed by `--stats` and the web API).
//!
//! TLB figures: all translated accesses = `tlb_fast_hits + tlb_slow`; of those,
//! `tlb_misses` needed a page walk, so the hit rate is `1 - tlb_misses / (tlb_fast_hits +
//! tlb_slow)`. All three are exact.

/// Engine counters. All are cumulative since the core was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks executed.
    pub tbs_executed: u64,
    /// Bytecode ops executed, exactly (the interpreter counts each straight run of ops when
    /// it ends: at a taken branch, an exit or a trap).
    pub ops_executed: u64,
    /// Blocks translated.
    pub tbs_translated: u64,
    /// Blocks invalidated because their code was written.
    pub tbs_invalidated: u64,
    /// Whole-cache flushes (size bound reached).
    pub tb_flushes: u64,
    /// Next block found through a direct chain link.
    pub chain_hits: u64,
    /// Next block found in the virtual-PC jump cache.
    pub jump_cache_hits: u64,
    /// Next block looked up in the physical hash table (hit or translate).
    pub hash_lookups: u64,
    /// Guest instructions translated.
    pub insns_translated: u64,
    /// IR ops before optimization, summed over translated blocks.
    pub ops_before_opt: u64,
    /// Bytecode ops after optimization, summed over translated blocks.
    pub ops_after_opt: u64,
    /// Guest loads and stores the interpreter served on the inline TLB fast path (a TLB hit
    /// to RAM, within one page).
    pub tlb_fast_hits: u64,
    /// Accesses through the slow path (`Core::read`/`write`): fast-path misses, page
    /// crossings, MMIO, code-page stores, and helpers' accesses. Each either hits the TLB
    /// there or refills it (`tlb_misses`).
    pub tlb_slow: u64,
    /// TLB refills through the guest's page walker (data and fetch).
    pub tlb_misses: u64,
}
