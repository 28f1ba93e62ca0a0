//! Building the IR of one translation block.

use crate::ir::{Cond, Op, Slot, Target};

/// Collects the ops of one translation block while the front end translates it.
///
/// Temporaries are instruction-local: [`Builder::insn_start`] releases every temporary of the
/// previous guest instruction, so the register file never runs out however long a block is.
pub struct Builder {
    pub(crate) ops: Vec<Op>,
    first_temp: Slot,
    next_temp: u16,
    next_label: Target,
    pub(crate) n_insns: u16,
    /// Per guest instruction: its PC and the front end's restore word.
    pub(crate) insn_data: Vec<(u64, u32)>,
    /// Physical pages (4 KiB aligned) the block's code was fetched from.
    pub(crate) pages: [u64; 2],
    pub(crate) n_pages: usize,
}

impl Builder {
    /// A builder whose temporaries start at slot `first_temp` (the slots below are the guest's).
    pub fn new(first_temp: Slot) -> Self {
        Builder {
            ops: Vec::with_capacity(256),
            first_temp,
            next_temp: first_temp as u16,
            next_label: 0,
            n_insns: 0,
            insn_data: Vec::with_capacity(64),
            pages: [0; 2],
            n_pages: 0,
        }
    }

    /// Forget everything; reuse the allocation for the next block.
    pub fn reset(&mut self) {
        self.ops.clear();
        self.next_temp = self.first_temp as u16;
        self.next_label = 0;
        self.n_insns = 0;
        self.insn_data.clear();
        self.n_pages = 0;
    }

    /// The ops emitted so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of guest instructions started so far.
    pub fn insn_count(&self) -> u16 {
        self.n_insns
    }

    /// Number of ops emitted so far (a cheap size measure for block-length caps).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing has been emitted.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Mark the start of the guest instruction at `pc` and release the previous one's
    /// temporaries. `aux` comes back to [`crate::Guest::restore`] if the instruction traps.
    pub fn insn_start(&mut self, pc: u64, aux: u32) {
        self.ops.push(Op::InsnStart { n: self.n_insns });
        self.insn_data.push((pc, aux));
        self.n_insns += 1;
        self.next_temp = self.first_temp as u16;
    }

    /// Remove every op emitted since op index `mark` (used to drop a half-translated
    /// instruction that turned out to end the block).
    pub fn truncate(&mut self, mark: usize) {
        self.ops.truncate(mark);
        self.n_insns = self
            .ops
            .iter()
            .filter(|o| matches!(o, Op::InsnStart { .. }))
            .count() as u16;
        self.insn_data.truncate(self.n_insns as usize);
    }

    /// Record a physical code page the block was fetched from.
    pub fn add_page(&mut self, page: u64) {
        let page = page & !0xfff;
        if self.pages[..self.n_pages].contains(&page) {
            return;
        }
        if self.n_pages < 2 {
            self.pages[self.n_pages] = page;
            self.n_pages += 1;
        }
    }

    /// Number of distinct code pages recorded (at most 2).
    pub fn page_count(&self) -> usize {
        self.n_pages
    }

    /// A fresh temporary. Panics only on a front-end bug (more than the register file holds in
    /// one guest instruction).
    pub fn temp(&mut self) -> Slot {
        let t = self.next_temp;
        assert!(
            t <= 255,
            "front end used more temporaries than the register file holds"
        );
        self.next_temp += 1;
        t as Slot
    }

    /// A fresh label.
    pub fn label(&mut self) -> Target {
        let l = self.next_label;
        self.next_label += 1;
        l
    }

    /// Place a label here.
    pub fn set_label(&mut self, id: Target) {
        self.ops.push(Op::Label { id });
    }

    /// Append an op.
    #[inline]
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    // ---- conveniences that return a fresh temporary

    /// `t = imm`
    pub fn konst(&mut self, imm: u64) -> Slot {
        let d = self.temp();
        self.push(Op::Const { d, imm });
        d
    }

    /// `d = a`
    pub fn mov(&mut self, d: Slot, a: Slot) {
        if d != a {
            self.push(Op::Mov { d, a });
        }
    }

    /// `d = imm`
    pub fn set(&mut self, d: Slot, imm: u64) {
        self.push(Op::Const { d, imm });
    }

    /// `t = a + imm`
    pub fn addi(&mut self, a: Slot, imm: i64) -> Slot {
        let d = self.temp();
        self.addi_to(d, a, imm);
        d
    }

    /// `d = a + imm`
    pub fn addi_to(&mut self, d: Slot, a: Slot, imm: i64) {
        if let Ok(imm) = i32::try_from(imm) {
            self.push(Op::AddI { d, a, imm });
        } else {
            let k = self.konst(imm as u64);
            self.push(Op::Add { d, a, b: k });
        }
    }

    /// `t = op(a, b)` for a binary op constructor.
    pub fn bin(&mut self, f: fn(Slot, Slot, Slot) -> Op, a: Slot, b: Slot) -> Slot {
        let d = self.temp();
        self.push(f(d, a, b));
        d
    }

    /// `t = op(a)` for a unary op constructor.
    pub fn un(&mut self, f: fn(Slot, Slot) -> Op, a: Slot) -> Slot {
        let d = self.temp();
        self.push(f(d, a));
        d
    }

    /// `t = (a cond b)`
    pub fn setcond(&mut self, cond: Cond, a: Slot, b: Slot) -> Slot {
        let d = self.temp();
        self.push(Op::SetCond { d, a, b, cond });
        d
    }

    /// `t = helper(a, b, c)`
    pub fn call(&mut self, f: u16, a: Slot, b: Slot, c: Slot) -> Slot {
        let d = self.temp();
        self.push(Op::Call { f, d, a, b, c });
        d
    }

    /// `t = pure_helper(a, b, c)` (removed by the optimizer when unused)
    pub fn call_pure(&mut self, f: u16, a: Slot, b: Slot, c: Slot) -> Slot {
        let d = self.temp();
        self.push(Op::CallPure { f, d, a, b, c });
        d
    }
}

/// Constructors usable with [`Builder::bin`].
pub mod mk {
    use crate::ir::{Op, Slot};
    macro_rules! bin {
        ($($name:ident => $v:ident),* $(,)?) => {$(
            #[inline]
            pub fn $name(d: Slot, a: Slot, b: Slot) -> Op { Op::$v { d, a, b } }
        )*};
    }
    macro_rules! un {
        ($($name:ident => $v:ident),* $(,)?) => {$(
            #[inline]
            pub fn $name(d: Slot, a: Slot) -> Op { Op::$v { d, a } }
        )*};
    }
    bin!(add => Add, sub => Sub, mul => Mul, mulhu => MulHu, mulhs => MulHs, and => And,
         or => Or, xor => Xor, shl => Shl, shr => Shr, sar => Sar, rotl => Rotl, rotr => Rotr);
    un!(neg => Neg, not => Not, zx8 => Zx8, zx16 => Zx16, zx32 => Zx32, sx8 => Sx8,
        sx16 => Sx16, sx32 => Sx32, clz => Clz, ctz => Ctz, popcnt => Popcnt,
        bswap64 => Bswap64, bswap32 => Bswap32);
}
