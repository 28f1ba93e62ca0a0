//! Counters the engine keeps (printed by `--stats` and the web API).

/// Engine counters. All are cumulative since the core was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks executed.
    pub tbs_executed: u64,
    /// Bytecode ops executed, counted exactly by the interpreter (one per op dispatched).
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
    /// Data accesses that left the inline fast path (fast-path hits are not counted).
    pub tlb_slow: u64,
    /// TLB refills through the guest's page walker, for data and for code fetches.
    pub tlb_misses: u64,
}
