//! The snapshot loader (`Machine::restore`) on hostile files. The target repairs the file
//! length and CRC-32 fields of inputs that start with the magic, so mutations reach the
//! decoders behind the checksum (header, codecs, sections, RAM pages, device states) instead
//! of stopping at "checksum mismatch". Property: a clear error or a machine, never a panic,
//! and no allocation beyond the RAM cap.

use std::time::Instant;
use tci64_machine::snapshot::MAGIC;
use tci64_machine::{HostClock, Machine, RestoreOptions, TraceFlags};

struct Clock(Instant);
impl HostClock for Clock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Fix the file length (bytes 12..20) and the trailing CRC-32 of a magic-prefixed input.
pub fn repair(data: &[u8]) -> Vec<u8> {
    let mut f = data.to_vec();
    if f.len() >= 24 && f[..8] == MAGIC {
        let n = f.len() as u64;
        f[12..20].copy_from_slice(&n.to_le_bytes());
        let at = f.len() - 4;
        let crc = crc32fast::hash(&f[..at]);
        f[at..].copy_from_slice(&crc.to_le_bytes());
    }
    f
}

pub fn snapshot_file(data: &[u8]) {
    let file = repair(data);
    let r = Machine::restore(
        &file,
        RestoreOptions {
            disks: Vec::new(),
            clock: Box::new(Clock(Instant::now())),
            trace: TraceFlags::default(),
            max_ram_bytes: Some(64 << 20),
        },
    );
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
    }
}
