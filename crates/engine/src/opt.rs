//! The translation-time optimizer: constant folding and propagation, copy propagation,
//! dead-code elimination (which is what makes lazy condition flags cheap: a flag state that a
//! later instruction overwrites before anything can observe it is never computed), fusion of
//! common pairs into superinstructions, and the final encoding into executable bytecode.

use crate::ir::{eval_pure, Barrier, Op, Slot};

/// A 256-bit slot set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct SlotSet(pub [u64; 4]);

impl SlotSet {
    /// The empty set.
    pub const EMPTY: SlotSet = SlotSet([0; 4]);
    /// Every slot.
    pub const ALL: SlotSet = SlotSet([u64::MAX; 4]);

    /// Slots `0..n`.
    pub fn below(n: u16) -> SlotSet {
        let mut s = SlotSet::EMPTY;
        for i in 0..n.min(256) {
            s.insert(i as Slot);
        }
        s
    }
    #[inline]
    pub fn insert(&mut self, s: Slot) {
        self.0[(s >> 6) as usize] |= 1 << (s & 63);
    }
    #[inline]
    pub fn remove(&mut self, s: Slot) {
        self.0[(s >> 6) as usize] &= !(1 << (s & 63));
    }
    #[inline]
    pub fn contains(&self, s: Slot) -> bool {
        self.0[(s >> 6) as usize] & (1 << (s & 63)) != 0
    }
    #[inline]
    pub fn union(&mut self, o: &SlotSet) {
        for i in 0..4 {
            self.0[i] |= o.0[i];
        }
    }
}

/// What the optimizer needs to know about the guest's register file.
#[derive(Clone, Copy, Debug)]
pub struct OptConfig {
    /// Slots below this are guest globals; the rest are instruction-local temporaries.
    pub first_temp: Slot,
    /// Globals that must hold their architectural value wherever an op may trap (everything
    /// the guest cannot recompute from per-instruction restore data).
    pub trap_live: SlotSet,
    /// Run the optimizer at all (off: only encoding, for differential testing).
    pub enabled: bool,
    /// The guest's PC slot (exits that store a constant PC become [`Op::GotoI`]).
    pub pc_slot: Slot,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Val {
    Unknown,
    Const(u64),
    Copy(Slot),
}

/// Constant/copy propagation and folding, in place.
pub fn propagate(ops: &mut [Op], cfg: &OptConfig) {
    let mut known = [Val::Unknown; 256];
    // Slots that some other slot is a copy of (so a write to them must invalidate copies).
    let mut copied = SlotSet::EMPTY;
    // Slots whose value is known to fit in 32 bits (zero-extended).
    let mut narrow = SlotSet::EMPTY;
    for op in ops.iter_mut() {
        let info = op.info();
        match info.barrier {
            Barrier::Flow => {
                if matches!(op, Op::Label { .. }) {
                    known = [Val::Unknown; 256];
                    copied = SlotSet::EMPTY;
                    narrow = SlotSet::EMPTY;
                }
            }
            Barrier::Call => {
                let globals = SlotSet::below(cfg.first_temp as u16);
                for i in 0..4 {
                    narrow.0[i] &= !globals.0[i];
                }
                // Helpers may read and write any global: forget what we know about globals
                // (and copies of them); temporaries are untouched by helpers.
                for (s, k) in known.iter_mut().enumerate() {
                    let forget = match *k {
                        Val::Copy(src) => {
                            src < cfg.first_temp || (s as u16) < cfg.first_temp as u16
                        }
                        _ => (s as u16) < cfg.first_temp as u16,
                    };
                    if forget {
                        *k = Val::Unknown;
                    }
                }
            }
            _ => {}
        }
        // Copy propagation on sources.
        op.map_uses(|s| match known[s as usize] {
            Val::Copy(src) => src,
            _ => s,
        });
        simplify(op, &known);
        if let Op::Zx32 { d, a } = *op {
            if narrow.contains(a) {
                *op = if d == a { Op::Nop } else { Op::Mov { d, a } };
            }
        }
        // Record what the destination now holds.
        if let Some(d) = op.info().defs {
            if is_narrow(op, &narrow) {
                narrow.insert(d);
            } else {
                narrow.remove(d);
            }
            if copied.contains(d) {
                for k in known.iter_mut() {
                    if *k == Val::Copy(d) {
                        *k = Val::Unknown;
                    }
                }
                copied.remove(d);
            }
            known[d as usize] = match *op {
                Op::Const { imm, .. } => Val::Const(imm),
                Op::Mov { a, .. } if a != d => match known[a as usize] {
                    Val::Const(c) => Val::Const(c),
                    _ => {
                        copied.insert(a);
                        Val::Copy(a)
                    }
                },
                _ => Val::Unknown,
            };
        }
    }
}

/// True when `op`'s result is known to fit in 32 bits, given the slots known to.
fn is_narrow(op: &Op, narrow: &SlotSet) -> bool {
    use Op::*;
    let n = |s: Slot| narrow.contains(s);
    match *op {
        Const { imm, .. } => imm <= u32::MAX as u64,
        ShrI { imm, .. } if imm & 63 >= 32 => true,
        Mov { a, .. } | ShrI { a, .. } | Shr { a, .. } => n(a),
        Ld8 { .. } | Ld16 { .. } | Ld32 { .. } => true,
        Zx8 { .. } | Zx16 { .. } | Zx32 { .. } | Add32 { .. } | Sub32 { .. } | AddI32 { .. } => {
            true
        }
        And32 { .. } | Or32 { .. } | Xor32 { .. } | OrI32 { .. } | XorI32 { .. } => true,
        ShlI32 { .. } | Lea32 { .. } => true,
        Rotl32I { .. } | Bswap32 { .. } | Clz { .. } | Ctz { .. } | Popcnt { .. } => true,
        SetCond { .. } | SetCondI { .. } => true,
        Extract { len, .. } => len <= 32,
        And { a, b, .. } => n(a) || n(b),
        AndI { a, imm, .. } => imm >= 0 || n(a),
        Or { a, b, .. } | Xor { a, b, .. } => n(a) && n(b),
        OrI { a, imm, .. } | XorI { a, imm, .. } => imm >= 0 && n(a),
        Select { a, b, .. } => n(a) && n(b),
        _ => false,
    }
}

fn konst(known: &[Val; 256], s: Slot) -> Option<u64> {
    match known[s as usize] {
        Val::Const(c) => Some(c),
        _ => None,
    }
}

fn as_i32(v: u64) -> Option<i32> {
    i32::try_from(v as i64).ok()
}

/// Fold and strength-reduce one op given what is known.
fn simplify(op: &mut Op, known: &[Val; 256]) {
    use Op::*;
    let info = op.info();
    // Fold pure ops whose sources are all constant.
    if info.barrier == Barrier::None && info.defs.is_some() && !matches!(op, Const { .. }) {
        let all_const = info
            .uses
            .iter()
            .flatten()
            .all(|&s| konst(known, s).is_some());
        if all_const {
            if let Some(v) = eval_pure(op, |s| konst(known, s).unwrap_or(0)) {
                *op = Const {
                    d: info.defs.unwrap_or(0),
                    imm: v,
                };
                return;
            }
        }
    }
    let k = |s: Slot| konst(known, s);
    *op = match *op {
        Add { d, a, b } => match (k(a).and_then(as_i32), k(b).and_then(as_i32)) {
            (_, Some(imm)) => AddI { d, a, imm },
            (Some(imm), _) => AddI { d, a: b, imm },
            _ => *op,
        },
        Sub { d, a, b } => match k(b).and_then(|v| as_i32(v.wrapping_neg())) {
            Some(imm) => AddI { d, a, imm },
            None => *op,
        },
        And { d, a, b } => match (k(a).and_then(as_i32), k(b).and_then(as_i32)) {
            (_, Some(imm)) => AndI { d, a, imm },
            (Some(imm), _) => AndI { d, a: b, imm },
            _ => *op,
        },
        Or { d, a, b } => match (k(a).and_then(as_i32), k(b).and_then(as_i32)) {
            (_, Some(imm)) => OrI { d, a, imm },
            (Some(imm), _) => OrI { d, a: b, imm },
            _ => *op,
        },
        Xor { d, a, b } if a == b => Const { d, imm: 0 },
        Xor { d, a, b } => match (k(a).and_then(as_i32), k(b).and_then(as_i32)) {
            (_, Some(imm)) => XorI { d, a, imm },
            (Some(imm), _) => XorI { d, a: b, imm },
            _ => *op,
        },
        Shl { d, a, b } => match k(b) {
            Some(c) => ShlI {
                d,
                a,
                imm: (c & 63) as u8,
            },
            None => *op,
        },
        Shr { d, a, b } => match k(b) {
            Some(c) => ShrI {
                d,
                a,
                imm: (c & 63) as u8,
            },
            None => *op,
        },
        Sar { d, a, b } => match k(b) {
            Some(c) => SarI {
                d,
                a,
                imm: (c & 63) as u8,
            },
            None => *op,
        },
        AddI { d, a, imm: 0 } | OrI { d, a, imm: 0 } | XorI { d, a, imm: 0 } => Mov { d, a },
        ShlI { d, a, imm: 0 } | ShrI { d, a, imm: 0 } | SarI { d, a, imm: 0 } => Mov { d, a },
        AndI { d, a, imm: -1 } => Mov { d, a },
        SetCond { d, a, b, cond } => match k(b).and_then(as_i32) {
            Some(imm) => SetCondI { d, a, imm, cond },
            None => *op,
        },
        Select { d, c, a, b } => match k(c) {
            Some(0) => Mov { d, a: b },
            Some(_) => Mov { d, a },
            None if a == b => Mov { d, a },
            None => *op,
        },
        BrCond { a, b, cond, t } => match (k(a), k(b)) {
            (Some(x), Some(y)) => {
                if cond.eval(x, y) {
                    Br { t }
                } else {
                    Nop
                }
            }
            (_, Some(y)) if as_i32(y).is_some() => BrCondI {
                a,
                imm: y as i64 as i32,
                cond,
                t,
            },
            _ => *op,
        },
        BrCondI { a, imm, cond, t } => match k(a) {
            Some(x) => {
                if cond.eval(x, imm as i64 as u64) {
                    Br { t }
                } else {
                    Nop
                }
            }
            None => *op,
        },
        Mov { d, a } if d == a => Nop,
        other => other,
    };
}

/// Fuse adjacent pairs into superinstructions: the second op is replaced by one that computes
/// its result from the first op's sources (the first op is left for DCE to remove when its
/// result is otherwise dead). The fused op re-reads the first op's sources after the first
/// op ran, so it is only equivalent when the first op did not overwrite one of them.
pub fn fuse(ops: &mut [Op]) {
    use Op::*;
    for i in 1..ops.len() {
        let fused = match (ops[i - 1], ops[i]) {
            // 32-bit forms: op + zero-extension.
            (first, Zx32 { d, a: t }) => match first {
                Add { d: t2, a, b } if t2 == t && t != a && t != b => Some(Add32 { d, a, b }),
                Sub { d: t2, a, b } if t2 == t && t != a && t != b => Some(Sub32 { d, a, b }),
                And { d: t2, a, b } if t2 == t && t != a && t != b => Some(And32 { d, a, b }),
                Or { d: t2, a, b } if t2 == t && t != a && t != b => Some(Or32 { d, a, b }),
                Xor { d: t2, a, b } if t2 == t && t != a && t != b => Some(Xor32 { d, a, b }),
                AddI { d: t2, a, imm } if t2 == t && t != a => Some(AddI32 { d, a, imm }),
                OrI { d: t2, a, imm } if t2 == t && t != a => Some(OrI32 { d, a, imm }),
                XorI { d: t2, a, imm } if t2 == t && t != a => Some(XorI32 { d, a, imm }),
                ShlI { d: t2, a, imm } if t2 == t && t != a => Some(ShlI32 { d, a, imm }),
                Lea {
                    d: t2,
                    a,
                    b,
                    sh,
                    imm,
                } if t2 == t && t != a && t != b => Some(Lea32 { d, a, b, sh, imm }),
                _ => None,
            },
            // Address arithmetic: shift + add, add + add-immediate.
            (
                ShlI {
                    d: t,
                    a: x,
                    imm: sh,
                },
                Add { d, a, b },
            ) if t != x && (a == t) != (b == t) => {
                let other = if a == t { b } else { a };
                Some(Lea {
                    d,
                    a: other,
                    b: x,
                    sh,
                    imm: 0,
                })
            }
            (Add { d: t, a, b }, AddI { d: d2, a: t2, imm }) if t2 == t && t != a && t != b => {
                Some(Lea {
                    d: d2,
                    a,
                    b,
                    sh: 0,
                    imm,
                })
            }
            (
                Lea {
                    d: t,
                    a,
                    b,
                    sh,
                    imm: 0,
                },
                AddI { d: d2, a: t2, imm },
            ) if t2 == t && t != a && t != b => Some(Lea {
                d: d2,
                a,
                b,
                sh,
                imm,
            }),
            _ => None,
        };
        if let Some(f) = fused {
            ops[i] = f;
        }
    }
}

/// Which sources (bit `k` = use `k`, in [`Op::info`] order) an op reads only the low 32 bits of.
fn low32_uses(op: &Op) -> u8 {
    use Op::*;
    match *op {
        Rotl32I { .. } | AddI32 { .. } | OrI32 { .. } | XorI32 { .. } | ShlI32 { .. } => 1,
        Zx32 { .. } | Sx32 { .. } | Bswap32 { .. } | Zx8 { .. } | Zx16 { .. } => 1,
        Sx8 { .. } | Sx16 { .. } | St32 { .. } | St16 { .. } | St8 { .. } => 1,
        Add32 { .. } | Sub32 { .. } | And32 { .. } | Or32 { .. } | Xor32 { .. } => 3,
        Lea32 { .. } => 3,
        Extract { pos, len, .. } if (pos & 63) as u32 + len as u32 <= 32 => 1,
        Deposit { len, .. } if len <= 32 => 2,
        _ => 0,
    }
}

/// Bypass zero-extensions: where `t = zx32(a)` feeds an op that reads only the low 32 bits of
/// `t`, the op reads `a` instead (while `a` still holds the same value), so the extension is
/// left for DCE when nothing else reads it.
pub fn bypass_zx32(ops: &mut [Op], cfg: &OptConfig) {
    const NONE: u16 = u16::MAX;
    // src[t] = a when t == zx32(a) and neither was written since.
    let mut src = [NONE; 256];
    let mut is_src = SlotSet::EMPTY;
    for op in ops.iter_mut() {
        if matches!(op, Op::Label { .. }) {
            src = [NONE; 256];
            is_src = SlotSet::EMPTY;
            continue;
        }
        let low = low32_uses(op);
        if low != 0 {
            let mut k = 0;
            op.map_uses(|s| {
                let bit = low & (1 << k) != 0;
                k += 1;
                match src[s as usize] {
                    a if bit && a != NONE => a as Slot,
                    _ => s,
                }
            });
        }
        let info = op.info();
        let forget = |d: Slot, src: &mut [u16; 256], is_src: &mut SlotSet| {
            src[d as usize] = NONE;
            if is_src.contains(d) {
                for v in src.iter_mut() {
                    if *v == d as u16 {
                        *v = NONE;
                    }
                }
                is_src.remove(d);
            }
        };
        if info.barrier == Barrier::Call {
            // The helper may write any global.
            for g in 0..cfg.first_temp {
                forget(g, &mut src, &mut is_src);
            }
        }
        if let Some(d) = info.defs {
            forget(d, &mut src, &mut is_src);
            if let Op::Zx32 { d, a } = *op {
                if d != a {
                    src[d as usize] = a as u16;
                    is_src.insert(a);
                }
            }
        }
    }
}

/// Fold the constant stores that end a block into its exit (after every other pass, on the
/// final op list): `PC = c; Goto n` becomes `GotoI { n, pc: c }`, and a constant store of a
/// 32-bit value to a global right before it (the guest's static state, e.g. x86's lazy-flags
/// op) joins it as `GotoIK`. Only ops adjacent within one guest instruction are combined (no
/// label or instruction start between them), so nothing can observe the difference.
pub fn fuse_exits(ops: &mut [Op], cfg: &OptConfig) {
    let real =
        |ops: &[Op], from: usize| -> Option<usize> { (0..from).rev().find(|&k| ops[k] != Op::Nop) };
    for i in 0..ops.len() {
        let Op::Goto { n } = ops[i] else { continue };
        let Some(j) = real(ops, i) else { continue };
        let Op::Const { d, imm: pc } = ops[j] else {
            continue;
        };
        if d != cfg.pc_slot {
            continue;
        }
        ops[j] = Op::Nop;
        ops[i] = Op::GotoI { n, pc };
        let Some(k) = real(ops, j) else { continue };
        if let Op::Const { d: s, imm: k32 } = ops[k] {
            if s < cfg.first_temp && s != cfg.pc_slot && k32 <= u32::MAX as u64 {
                ops[k] = Op::Nop;
                ops[i] = Op::GotoIK {
                    n,
                    s,
                    k: k32 as u32,
                    pc,
                };
            }
        }
    }
}

/// The very last pass: two adjacent moves or zero-extensions (nothing but removed ops
/// between them, so never across a guest instruction's start or a label) become one op that
/// runs both in order ([`Op::Mov2`], [`Op::MovZx32`], [`Op::Zx32Mov`], [`Op::Zx32x2`]): one
/// dispatch instead of two for the lazy-flags copies and register shuffles that survive
/// the other passes. No pass may run after it (the pair's second destination is not in
/// [`Op::info`]).
pub fn pair_moves(ops: &mut [Op]) {
    use Op::*;
    let mut i = 0;
    while i < ops.len() {
        let Some(j) = (i + 1..ops.len()).find(|&k| ops[k] != Nop) else {
            break;
        };
        let pair = match (ops[i], ops[j]) {
            (Mov { d, a }, Mov { d: d2, a: b }) => Some(Mov2 { d, a, b, d2 }),
            (Mov { d, a }, Zx32 { d: d2, a: b }) => Some(MovZx32 { d, a, b, d2 }),
            (Zx32 { d, a }, Mov { d: d2, a: b }) => Some(Zx32Mov { d, a, b, d2 }),
            (Zx32 { d, a }, Zx32 { d: d2, a: b }) => Some(Zx32x2 { d, a, b, d2 }),
            _ => None,
        };
        if let Some(p) = pair {
            ops[i] = p;
            ops[j] = Nop;
            i = j + 1;
        } else {
            i = j;
        }
    }
}

/// Backward liveness over a block. Calls `visit(index, op, live_after)` for each op from the
/// last to the first; when `visit` returns true the op is deleted (it must be pure).
/// Forward branches use the live set recorded at their label; backward branches (label not
/// seen yet) are conservative (everything live).
///
/// A memory op or helper may also stop the block at the end of its guest instruction (a store
/// to a page holding translated code, a debugger watchpoint: the engine finishes the
/// instruction, then resumes at the next one in a fresh block). The state at that instruction
/// boundary must then be the restorable one, so at every instruction start that follows an
/// instruction with such an op, the trap-live globals are live (found by the guest_code fuzz
/// target: a flag store after a self-modifying store was deleted as overwritten later).
fn liveness(ops: &mut [Op], cfg: &OptConfig, mut visit: impl FnMut(usize, &Op, &SlotSet) -> bool) {
    let globals = SlotSet::below(cfg.first_temp as u16);
    let mut stop_after = vec![false; ops.len()];
    let mut may_stop = false;
    for (i, op) in ops.iter().enumerate() {
        if let Op::InsnStart { .. } = op {
            stop_after[i] = may_stop;
            may_stop = false;
        } else if matches!(op.info().barrier, Barrier::Trap | Barrier::Call) {
            may_stop = true;
        }
    }
    let mut live = SlotSet::EMPTY;
    let mut at_label: Vec<Option<SlotSet>> = Vec::new();
    let label_live = |at_label: &Vec<Option<SlotSet>>, t: u16| {
        at_label
            .get(t as usize)
            .copied()
            .flatten()
            .unwrap_or(SlotSet::ALL)
    };
    for i in (0..ops.len()).rev() {
        let op = ops[i];
        match op {
            Op::Label { id } => {
                let id = id as usize;
                if at_label.len() <= id {
                    at_label.resize(id + 1, None);
                }
                at_label[id] = Some(live);
                visit(i, &op, &live);
                continue;
            }
            Op::Br { t } => {
                live = label_live(&at_label, t);
                visit(i, &op, &live);
                continue;
            }
            Op::BrCond { a, b, t, .. } => {
                live.union(&label_live(&at_label, t));
                visit(i, &op, &live);
                live.insert(a);
                live.insert(b);
                continue;
            }
            Op::BrCondI { a, t, .. } => {
                live.union(&label_live(&at_label, t));
                visit(i, &op, &live);
                live.insert(a);
                continue;
            }
            Op::InsnStart { .. } if stop_after[i] => live.union(&cfg.trap_live),
            _ => {}
        }
        let info = op.info();
        if info.barrier == Barrier::Exit {
            live = globals;
        }
        if visit(i, &op, &live) {
            ops[i] = Op::Nop;
            continue;
        }
        if let Some(d) = info.defs {
            live.remove(d);
        }
        match info.barrier {
            Barrier::Trap => live.union(&cfg.trap_live),
            Barrier::Call => live.union(&globals),
            _ => {}
        }
        for s in info.uses.iter().flatten() {
            live.insert(*s);
        }
    }
}

/// Dead-code elimination by backward liveness, in place.
pub fn eliminate_dead(ops: &mut [Op], cfg: &OptConfig) {
    liveness(ops, cfg, |_, op, live| {
        let info = op.info();
        info.barrier == Barrier::None && info.defs.is_some_and(|d| !live.contains(d))
    });
}

/// Write a producer's result straight into the register it is then copied to:
/// `t = X; ...; g = t` becomes `g = X; ...` (later reads of `t` read `g`) when `t` is a
/// temporary, `g` a global, nothing in between touches `g` or may trap, and `g` is not
/// overwritten while `t` is still read.
pub fn coalesce(ops: &mut [Op], cfg: &OptConfig) {
    const WINDOW: usize = 64;
    let mut live_after = vec![SlotSet::EMPTY; ops.len()];
    liveness(ops, cfg, |i, _, live| {
        live_after[i] = *live;
        false
    });
    for i in 0..ops.len() {
        let Op::Mov { d: g, a: t } = ops[i] else {
            continue;
        };
        if t < cfg.first_temp || g >= cfg.first_temp {
            continue;
        }
        // The producer of `t`, with nothing between it and the copy that touches `g` or is a
        // barrier.
        let mut j = None;
        for k in (i.saturating_sub(WINDOW)..i).rev() {
            let info = ops[k].info();
            if info.defs == Some(t) {
                if !matches!(info.barrier, Barrier::None | Barrier::Trap) {
                    break;
                }
                j = Some(k);
                break;
            }
            if info.barrier != Barrier::None || info.defs == Some(g) || info.uses.contains(&Some(g))
            {
                break;
            }
        }
        let Some(j) = j else { continue };
        // Reads of `t` after the copy: renamed up to where `t` dies or is redefined; `g`
        // must not change (or be clobbered by a call, or control flow join) before then.
        let mut end = None;
        for k in i + 1..ops.len().min(i + 1 + WINDOW) {
            let info = ops[k].info();
            let t_live_after = live_after[k].contains(t) && info.defs != Some(t);
            let g_changes = info.defs == Some(g)
                || matches!(info.barrier, Barrier::Call | Barrier::Flow | Barrier::Exit);
            if g_changes && t_live_after {
                break;
            }
            if !t_live_after {
                end = Some(k);
                break;
            }
        }
        let end = match end {
            Some(e) => e,
            None if !live_after[i].contains(t) => i,
            None => continue,
        };
        if let Some(d) = ops[j].def_mut() {
            *d = g;
        }
        for op in ops[j + 1..i].iter_mut() {
            op.map_uses(|s| if s == t { g } else { s });
        }
        ops[i] = Op::Nop;
        for op in ops[i + 1..=end.max(i)].iter_mut() {
            op.map_uses(|s| if s == t { g } else { s });
        }
    }
}

/// The executable form of a block.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// The ops, ending in an unconditional exit or branch.
    pub code: Vec<Op>,
    /// For guest instruction `n` of the block, the index of its first op in `code`.
    pub insn_ops: Vec<u16>,
}

/// Exit code appended when a block would otherwise run off its end (a front-end bug).
pub const EXIT_FELL_OFF: u32 = u32::MAX;

/// Drop pseudo-ops, resolve labels to op indices and record instruction starts.
pub fn encode(ops: &[Op]) -> Encoded {
    let mut labels: Vec<u16> = Vec::new();
    let mut insn_ops = Vec::new();
    let mut n = 0u16;
    for op in ops {
        match *op {
            Op::Nop => {}
            Op::Label { id } => {
                let id = id as usize;
                if labels.len() <= id {
                    labels.resize(id + 1, u16::MAX);
                }
                labels[id] = n;
            }
            Op::InsnStart { .. } => insn_ops.push(n),
            _ => n += 1,
        }
    }
    let mut code = Vec::with_capacity(n as usize + 1);
    for op in ops {
        let fix = |t: u16| labels.get(t as usize).copied().unwrap_or(u16::MAX);
        match *op {
            Op::Nop | Op::Label { .. } | Op::InsnStart { .. } => {}
            Op::Br { t } => code.push(Op::Br { t: fix(t) }),
            Op::BrCond { a, b, cond, t } => code.push(Op::BrCond {
                a,
                b,
                cond,
                t: fix(t),
            }),
            Op::BrCondI { a, imm, cond, t } => code.push(Op::BrCondI {
                a,
                imm,
                cond,
                t: fix(t),
            }),
            o => code.push(o),
        }
    }
    let len = code.len() as u16;
    // Every branch must land inside the block; an unplaced label (front-end bug) or a
    // branch to the very end gets an explicit exit there.
    let mut need_tail = !code.last().is_some_and(Op::ends_block);
    for op in code.iter_mut() {
        match op {
            Op::Br { t } | Op::BrCond { t, .. } | Op::BrCondI { t, .. } if *t >= len => {
                *t = len;
                need_tail = true;
            }
            _ => {}
        }
    }
    if need_tail {
        code.push(Op::Exit {
            code: EXIT_FELL_OFF,
        });
    }
    Encoded { code, insn_ops }
}

/// Run the whole pipeline on a block's ops.
// A `Vec` on purpose: later passes may insert or drop ops (public API, kept stable).
#[allow(clippy::ptr_arg)]
pub fn optimize(ops: &mut Vec<Op>, cfg: &OptConfig) {
    if !cfg.enabled {
        return;
    }
    propagate(ops, cfg);
    fuse(ops);
    bypass_zx32(ops, cfg);
    eliminate_dead(ops, cfg);
    coalesce(ops, cfg);
    // A second round catches what the first exposed (folded branches, dead copies).
    propagate(ops, cfg);
    fuse(ops);
    bypass_zx32(ops, cfg);
    eliminate_dead(ops, cfg);
    fuse_exits(ops, cfg);
    pair_moves(ops);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Cond;

    fn cfg() -> OptConfig {
        OptConfig {
            first_temp: 16,
            trap_live: SlotSet::below(16),
            enabled: true,
            pc_slot: 15,
        }
    }

    #[test]
    fn fuse_only_when_the_first_op_keeps_its_sources() {
        // `t = t + b; d = zx32(t)` must not become `d = zx32(t + b)` (t already updated).
        let mut ops = [
            Op::Add {
                d: 20,
                a: 20,
                b: 21,
            },
            Op::Zx32 { d: 1, a: 20 },
        ];
        fuse(&mut ops);
        assert_eq!(ops[1], Op::Zx32 { d: 1, a: 20 });
        let mut ops = [
            Op::AddI {
                d: 20,
                a: 20,
                imm: 1,
            },
            Op::Zx32 { d: 1, a: 20 },
        ];
        fuse(&mut ops);
        assert_eq!(ops[1], Op::Zx32 { d: 1, a: 20 });
        let mut ops = [
            Op::Sub {
                d: 20,
                a: 21,
                b: 20,
            },
            Op::Zx32 { d: 1, a: 20 },
        ];
        fuse(&mut ops);
        assert_eq!(ops[1], Op::Zx32 { d: 1, a: 20 });
        // The ordinary case still fuses.
        let mut ops = [Op::Sub { d: 20, a: 1, b: 2 }, Op::Zx32 { d: 1, a: 20 }];
        fuse(&mut ops);
        assert_eq!(ops[1], Op::Sub32 { d: 1, a: 1, b: 2 });
    }

    #[test]
    fn zero_extensions_are_bypassed_only_for_low_half_readers() {
        let mut ops = [
            Op::Zx32 { d: 20, a: 1 },
            Op::Rotl32I {
                d: 2,
                a: 20,
                imm: 3,
            },
            Op::Add { d: 3, a: 20, b: 20 },
            Op::Const { d: 1, imm: 0 },
            Op::Rotl32I {
                d: 4,
                a: 20,
                imm: 3,
            },
        ];
        bypass_zx32(&mut ops, &cfg());
        // Reads only the low half: bypassed.
        assert_eq!(ops[1], Op::Rotl32I { d: 2, a: 1, imm: 3 });
        // Reads all 64 bits: not.
        assert_eq!(ops[2], Op::Add { d: 3, a: 20, b: 20 });
        // r1 changed since the extension: not.
        assert_eq!(
            ops[4],
            Op::Rotl32I {
                d: 4,
                a: 20,
                imm: 3
            }
        );
    }

    #[test]
    fn helper_calls_forget_globals_but_not_temps() {
        let mut ops = vec![
            Op::Const { d: 1, imm: 5 },
            Op::Const { d: 20, imm: 6 },
            Op::Mov { d: 21, a: 2 },
            Op::Call {
                f: 0,
                d: 22,
                a: 0,
                b: 0,
                c: 0,
            },
            Op::Add { d: 3, a: 1, b: 20 },
            Op::Mov { d: 4, a: 21 },
            Op::Exit { code: 0 },
        ];
        optimize(&mut ops, &cfg());
        // r1 may have been changed by the helper: not folded; the temp constant is.
        assert_eq!(ops[4], Op::AddI { d: 3, a: 1, imm: 6 });
        // r21 is a copy of r2 from before the call: must not be read as r2 after it.
        assert_eq!(ops[5], Op::Mov { d: 4, a: 21 });
    }

    #[test]
    fn trap_live_writes_survive_until_the_memory_op() {
        let mut ops = vec![
            Op::InsnStart { n: 0 },
            Op::Const { d: 1, imm: 5 },
            Op::InsnStart { n: 1 },
            Op::St64 {
                v: 2,
                a: 3,
                disp: 0,
                mmu: 0,
            },
            Op::InsnStart { n: 2 },
            Op::Const { d: 1, imm: 9 },
            Op::Const { d: 20, imm: 1 },
            Op::Exit { code: 0 },
        ];
        optimize(&mut ops, &cfg());
        assert_eq!(ops[1], Op::Const { d: 1, imm: 5 });
        assert_eq!(ops[6], Op::Nop, "dead temporary");
    }

    #[test]
    fn writes_after_a_store_in_its_instruction_survive_to_its_end() {
        // Instruction 0 stores, then writes global 1 (as `add [m], r` writes its flags after
        // the store); instruction 1 overwrites global 1. A store to a code page stops the
        // block at the end of instruction 0, where global 1 must hold instruction 0's value.
        // Without a store in instruction 1, its own overwritten write is still dead.
        let mut ops = vec![
            Op::InsnStart { n: 0 },
            Op::St64 {
                v: 2,
                a: 3,
                disp: 0,
                mmu: 0,
            },
            Op::Const { d: 1, imm: 5 },
            Op::InsnStart { n: 1 },
            Op::Const { d: 4, imm: 6 },
            Op::InsnStart { n: 2 },
            Op::Const { d: 1, imm: 9 },
            Op::Const { d: 4, imm: 7 },
            Op::Exit { code: 0 },
        ];
        optimize(&mut ops, &cfg());
        assert_eq!(ops[2], Op::Const { d: 1, imm: 5 });
        assert_eq!(
            ops[4],
            Op::Nop,
            "overwritten, and no stop after instruction 1"
        );
    }

    #[test]
    fn encode_resolves_labels_and_clamps_stray_branches() {
        let ops = [
            Op::InsnStart { n: 0 },
            Op::BrCond {
                a: 1,
                b: 2,
                cond: Cond::Eq,
                t: 0,
            },
            Op::Nop,
            Op::Const { d: 1, imm: 1 },
            Op::Label { id: 0 },
            Op::InsnStart { n: 1 },
            Op::Br { t: 7 },
        ];
        let e = encode(&ops);
        assert_eq!(e.insn_ops, vec![0, 2]);
        assert_eq!(
            e.code,
            vec![
                Op::BrCond {
                    a: 1,
                    b: 2,
                    cond: Cond::Eq,
                    t: 2
                },
                Op::Const { d: 1, imm: 1 },
                Op::Br { t: 3 },
                Op::Exit {
                    code: EXIT_FELL_OFF
                },
            ]
        );
        // An empty block still ends in an exit.
        assert_eq!(
            encode(&[]).code,
            vec![Op::Exit {
                code: EXIT_FELL_OFF
            }]
        );
    }
}
