//! The translation-block cache: blocks keyed by (physical PC, virtual PC, mode flags), direct
//! chaining of exits, invalidation by physical page, and a bound on total size.

use crate::ir::Op;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Index of a block in the cache.
pub type TbId = u32;

/// One translated block.
pub struct Tb {
    pub pc: u64,
    pub phys_pc: u64,
    pub flags: u32,
    pub code: Box<[Op]>,
    /// Op index where each guest instruction starts.
    pub insn_ops: Box<[u16]>,
    /// PC and restore word of each guest instruction.
    pub insn_data: Box<[(u64, u32)]>,
    /// Physical code pages.
    pub pages: [u64; 2],
    pub n_pages: u8,
    /// Chained successors for `Goto { n: 0 }` and `Goto { n: 1 }`.
    pub links: [TbId; 2],
    /// For each link, the TLB generation it was made under, or [`ANY_GEN`] for a successor
    /// on the block's own virtual page (valid whatever the TLB does, as long as this block
    /// runs).
    pub link_gen: [u32; 2],
    pub valid: bool,
}

impl Tb {
    /// The guest instruction that op index `at` belongs to: the last one starting at or
    /// before it.
    pub fn insn_at(&self, at: u32) -> usize {
        self.insn_ops
            .partition_point(|&o| o as u32 <= at)
            .saturating_sub(1)
    }
}

/// No link.
pub const NO_TB: TbId = u32::MAX;

/// A link valid under every TLB generation.
pub const ANY_GEN: u32 = u32::MAX;

/// A small multiplicative hasher for the cache's integer keys.
#[derive(Default)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// The cache.
pub struct TbCache {
    pub(crate) tbs: Vec<Tb>,
    map: HashMap<(u64, u64, u32), TbId, FxBuild>,
    by_page: HashMap<u64, Vec<TbId>, FxBuild>,
    /// Total ops held; the cache is flushed when this passes `max_ops`.
    total_ops: usize,
    /// Bound on total ops before a full flush (bounds host memory).
    pub max_ops: usize,
}

impl Default for TbCache {
    fn default() -> Self {
        Self::new()
    }
}

impl TbCache {
    pub fn new() -> Self {
        TbCache {
            tbs: Vec::new(),
            map: HashMap::default(),
            by_page: HashMap::default(),
            total_ops: 0,
            max_ops: 8 << 20,
        }
    }

    /// Number of blocks held (valid or not).
    pub fn len(&self) -> usize {
        self.tbs.len()
    }

    /// True if no block is held.
    pub fn is_empty(&self) -> bool {
        self.tbs.is_empty()
    }

    /// The block `id`.
    #[inline]
    pub fn get(&self, id: TbId) -> &Tb {
        &self.tbs[id as usize]
    }

    /// Find a valid block.
    pub fn find(&self, phys_pc: u64, pc: u64, flags: u32) -> Option<TbId> {
        self.map.get(&(phys_pc, pc, flags)).copied()
    }

    /// True when adding `ops` more ops would pass the bound (the caller flushes first).
    pub fn needs_flush(&self, ops: usize) -> bool {
        self.total_ops + ops > self.max_ops
    }

    /// Drop everything.
    pub fn flush(&mut self) {
        self.tbs.clear();
        self.map.clear();
        self.by_page.clear();
        self.total_ops = 0;
    }

    /// Add a block and index it. A block whose code does not end in an unconditional exit
    /// or branch (not from [`crate::opt::encode`]) gets an `Exit` with
    /// [`crate::opt::EXIT_FELL_OFF`] appended: the interpreter enters cached blocks without
    /// checking that again.
    pub fn insert(&mut self, mut tb: Tb) -> TbId {
        if !tb.code.last().is_some_and(Op::ends_block) {
            let mut code = std::mem::take(&mut tb.code).into_vec();
            code.push(Op::Exit {
                code: crate::opt::EXIT_FELL_OFF,
            });
            tb.code = code.into_boxed_slice();
        }
        let id = self.tbs.len() as TbId;
        self.total_ops += tb.code.len();
        self.map.insert((tb.phys_pc, tb.pc, tb.flags), id);
        for p in &tb.pages[..tb.n_pages as usize] {
            self.by_page.entry(*p).or_default().push(id);
        }
        self.tbs.push(tb);
        id
    }

    /// Invalidate every block with code on the physical page `page`; returns how many.
    pub fn invalidate_page(&mut self, page: u64) -> u64 {
        let Some(ids) = self.by_page.remove(&page) else {
            return 0;
        };
        let mut n = 0;
        for id in ids {
            let tb = &mut self.tbs[id as usize];
            if tb.valid {
                tb.valid = false;
                n += 1;
                let key = (tb.phys_pc, tb.pc, tb.flags);
                if self.map.get(&key) == Some(&id) {
                    self.map.remove(&key);
                }
            }
        }
        n
    }

    /// Link exit `n` of `from` to `to`, valid under TLB generation `gen` ([`ANY_GEN`]:
    /// always).
    #[inline]
    pub fn link(&mut self, from: TbId, n: u8, to: TbId, gen: u32) {
        let tb = &mut self.tbs[from as usize];
        tb.links[(n & 1) as usize] = to;
        tb.link_gen[(n & 1) as usize] = gen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tb(code: Vec<Op>) -> Tb {
        Tb {
            pc: 0x1000,
            phys_pc: 0x1000,
            flags: 0,
            code: code.into_boxed_slice(),
            insn_ops: Box::new([0]),
            insn_data: Box::new([(0x1000, 0)]),
            pages: [0x1000, 0],
            n_pages: 1,
            links: [NO_TB; 2],
            link_gen: [ANY_GEN; 2],
            valid: true,
        }
    }

    /// The interpreter enters cached blocks without checking their last op: `insert` makes
    /// every block end in an exit.
    #[test]
    fn inserted_blocks_end_in_an_exit() {
        let mut c = TbCache::new();
        let fell = Op::Exit {
            code: crate::opt::EXIT_FELL_OFF,
        };
        let a = c.insert(tb(vec![]));
        assert_eq!(&*c.get(a).code, &[fell]);
        let b = c.insert(tb(vec![Op::Const { d: 1, imm: 2 }]));
        assert_eq!(&*c.get(b).code, &[Op::Const { d: 1, imm: 2 }, fell]);
        let ok = vec![Op::Const { d: 1, imm: 2 }, Op::Exit { code: 3 }];
        let d = c.insert(tb(ok.clone()));
        assert_eq!(&*c.get(d).code, &ok[..]);
    }
}
