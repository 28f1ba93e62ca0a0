//! A deterministic mutation driver: each target runs a fixed number of inputs mutated from its
//! checked-in corpus by a seeded generator, so `cargo test` (and CI) fuzzes every target for a
//! bounded amount of work with no instrumented build and no extra tool, and a failure repeats
//! exactly (the panic message names the iteration and prints the input). libFuzzer
//! (`scripts/fuzz.sh`) is the coverage-guided, open-ended complement.

use std::path::Path;

/// xorshift64*: small, seedable, the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that often sit on a boundary.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// One to four mutations of `data` (`other`: a second corpus input to splice from).
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let n = [1, 2, 4, 8][rng.below(4)];
                let i = rng.below(len);
                let n = n.min(len - i);
                data[i..i + n].copy_from_slice(&v[..n]);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(i..i, bytes);
            }
            4 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                data.drain(i..i + n);
            }
            5 if len > 1 => {
                // Duplicate a piece somewhere else.
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let piece = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, piece);
            }
            6 if !other.is_empty() => {
                // Splice: our head, the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                // Add or subtract a small number at a byte.
                let i = rng.below(len);
                data[i] = data[i].wrapping_add(rng.below(33) as u8).wrapping_sub(16);
            }
            _ => data.push(rng.next_u64() as u8),
        }
    }
    data.truncate(max_len);
}

/// The inputs checked in under `corpus/NAME/`, sorted by file name.
pub fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no inputs", dir.display());
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Run `target` on `iterations` inputs mutated from `corpus`, starting from `seed`. A panic
/// is reported with the iteration and the input (hex), and propagated.
pub fn run(
    name: &str,
    target: crate::Target,
    corpus: &[Vec<u8>],
    iterations: u64,
    seed: u64,
    max_len: usize,
) {
    let mut rng = Rng::new(seed);
    // Grown inputs join the pool, so mutations stack (a little like a fuzzer's corpus).
    let mut pool: Vec<Vec<u8>> = corpus.to_vec();
    for i in 0..iterations {
        let mut input = pool[rng.below(pool.len())].clone();
        let other = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input, &other, max_len);
        let r = std::panic::catch_unwind(|| target(&input));
        if let Err(e) = r {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            eprintln!("{name}: iteration {i} (seed {seed}) failed on input {hex}");
            std::panic::resume_unwind(e);
        }
        if pool.len() < 4 * corpus.len() + 64 && rng.below(8) == 0 {
            pool.push(input);
        }
    }
}
