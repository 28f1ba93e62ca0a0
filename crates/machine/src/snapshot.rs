//! Machine snapshots: the whole PC as bytes, and back (format: `docs/SNAPSHOT.md`).
//!
//! A snapshot is state, not live objects: every device's `State` type, the CPU's
//! [`CpuState`], the virtual clock, guest RAM, and per disk either its copy-on-write overlay or
//! a fingerprint of the image. Translated code, TLBs and host buffers are dropped on restore.
//! The host supplies the disks again ([`RestoreOptions`]); a disk that differs from the one
//! saved is refused.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "TCI64SNP" | format version u32 | file length u64 | header length u32 | header (postcard)
//! | codec u8 | body length u64 | raw body length u64 | body | CRC-32 of everything before u32
//! ```
//!
//! The body, once decompressed, is a list of sections `tag [u8; 4] | length u64 | payload`.

use crate::adapters::{PciDev, VirtioMmioDev};
use crate::board::Board;
use crate::interrupts::InterruptsState;
use crate::{DiskConfig, HostClock};
use crate::{Machine, MachineError, MachineShape, TraceFlags};
use serde::{Deserialize, Serialize};
use tci64_devices::block::{fingerprint, BlockBackend, Overlay};
use tci64_devices::cf9::ResetControl;
use tci64_devices::i8042::I8042State;
use tci64_devices::i8254::PitState;
use tci64_devices::mc146818::RtcState;
use tci64_devices::misc::{Port92, PostPort};
use tci64_devices::pci::PciBusState;
use tci64_devices::uart16550::UartState;
use tci64_devices::virtio::blk::VirtioBlk;
use tci64_devices::virtio::mmio::VirtioMmioState;
use tci64_devices::virtio::pci::VirtioPci;
use tci64_x86::CpuState;
use thiserror::Error;

/// The first eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"TCI64SNP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Guest RAM is saved in pages of this size; all-zero pages are left out.
pub const PAGE: usize = 4096;
/// Body codecs.
pub const CODEC_NONE: u8 = 0;
pub const CODEC_LZ4: u8 = 1;
pub const CODEC_DEFLATE: u8 = 2;
/// The codec [`Machine::save`] uses.
pub const DEFAULT_CODEC: u8 = CODEC_DEFLATE;
/// Deflate level (1 = fastest). Level 1 is within a few percent of level 6 on guest RAM and
/// several times faster.
const DEFLATE_LEVEL: u8 = 1;
/// The largest raw body a loader accepts before decompressing (bounds memory on a bad file).
const MAX_BODY: u64 = 1 << 40;

/// Why a snapshot could not be saved or restored. Each is one line for the user.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("not a tci64 snapshot (no TCI64SNP magic)")]
    NotASnapshot,
    #[error(
        "snapshot format version {found}; this tci64 ({}) reads version {FORMAT_VERSION}",
        env!("CARGO_PKG_VERSION")
    )]
    Version { found: u32 },
    #[error("the snapshot is truncated ({0})")]
    Truncated(&'static str),
    #[error("the snapshot is corrupt (checksum mismatch)")]
    Checksum,
    #[error("the snapshot is corrupt ({0})")]
    Corrupt(String),
    #[error(
        "the snapshot's guest has {need_mib} MiB of RAM; this build allows at most {max_mib} MiB"
    )]
    RamTooLarge { need_mib: u64, max_mib: u64 },
    #[error(
        "restoring needs {need_mib} MiB (the guest's RAM and the unpacked snapshot); this build allows at most {max_mib} MiB"
    )]
    TooLargeToUnpack { need_mib: u64, max_mib: u64 },
    #[error("disk {index}: {reason}")]
    Disk { index: usize, reason: String },
    #[error("the snapshot does not fit this machine: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Machine(#[from] MachineError),
}

fn corrupt(e: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Corrupt(e.to_string())
}

/// The header: who wrote the file and what hardware it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The tci64 version that wrote it (informational; the format version decides).
    pub tci64_version: String,
    pub shape: MachineShape,
    /// Virtual time at the save, in nanoseconds since power-on.
    pub virtual_ns: u64,
    /// Guest instructions retired at the save.
    pub icount: u64,
}

/// The virtual clock's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    pub virtual_ns: u64,
    pub idle_ns: u64,
    pub slice_icount: u64,
    pub slice_end: u64,
}

/// The state of one device of the registry (`crate::registry::Device::state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    Serial(UartState),
    Pit(PitState),
    Rtc(RtcState),
    I8042(I8042State),
    PostPort(PostPort),
    Port92(Port92),
    ResetControl(ResetControl),
    /// A virtio-mmio transport and queue notifications not yet processed (in flight).
    VirtioMmio {
        transport: VirtioMmioState,
        notifies: Vec<u32>,
    },
    Pci(PciBusState),
    /// `-M pc`'s PM1a event/control registers.
    AcpiPm(tci64_devices::acpi_pm::AcpiPmState),
    /// `-M microvm`'s hardware-reduced sleep status register.
    AcpiSleep(tci64_devices::acpi_sleep::AcpiSleepState),
}

/// Every device of the board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardState {
    pub interrupts: InterruptsState,
    /// Each registry entry's name and state, in registry order.
    pub devices: Vec<(String, DeviceState)>,
    pub reset: bool,
    pub poweroff: bool,
    pub service: bool,
}

/// What a snapshot records of one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    /// Size in bytes of the image under any overlay.
    pub size: u64,
    /// 64-bit FNV-1a of that image (`tci64_devices::block::fingerprint`).
    pub hash: u64,
    /// The copy-on-write overlay (`snapshot=on`): (chunk index, bytes).
    pub overlay: Option<Vec<(u64, Vec<u8>)>>,
}

/// What a host passes to [`Machine::restore`]: the things a snapshot cannot carry.
pub struct RestoreOptions {
    /// The disks, in the order saved; each must be the image saved (checked).
    pub disks: Vec<DiskConfig>,
    pub clock: Box<dyn HostClock>,
    pub trace: TraceFlags,
    /// The most guest RAM this host can give (the wasm32 build's cap); `None` = no limit
    /// besides what the allocator grants.
    pub max_ram_bytes: Option<u64>,
}

const TAG_CPU: [u8; 4] = *b"CPU ";
const TAG_CLOCK: [u8; 4] = *b"CLK ";
const TAG_BOARD: [u8; 4] = *b"BORD";
const TAG_RAM: [u8; 4] = *b"RAM ";
const TAG_DISK: [u8; 4] = *b"DISK";

/// Sizes and times of the last save, for `--stats` and the notes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveInfo {
    /// Guest RAM pages that were not all zero.
    pub ram_pages: u64,
    /// The body before compression.
    pub raw_bytes: u64,
    /// The whole file.
    pub file_bytes: u64,
}

fn section(out: &mut Vec<u8>, tag: [u8; 4], payload: &[u8]) {
    out.extend_from_slice(&tag);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, SnapshotError> {
    postcard::to_allocvec(v).map_err(|e| SnapshotError::Corrupt(format!("encoding: {e}")))
}

fn decode<'a, T: Deserialize<'a>>(what: &str, b: &'a [u8]) -> Result<T, SnapshotError> {
    postcard::from_bytes(b).map_err(|e| SnapshotError::Corrupt(format!("{what} section: {e}")))
}

/// RAM as pages: the page count, a bitmap of the non-zero pages, then those pages.
fn encode_ram(ram: &[u8], out: &mut Vec<u8>) -> u64 {
    let pages = ram.len().div_ceil(PAGE);
    out.extend_from_slice(&(ram.len() as u64).to_le_bytes());
    let bitmap_at = out.len();
    out.resize(bitmap_at + pages.div_ceil(8), 0);
    let mut n = 0;
    for (i, page) in ram.chunks(PAGE).enumerate() {
        if page.iter().any(|&b| b != 0) {
            out[bitmap_at + i / 8] |= 1 << (i % 8);
            out.extend_from_slice(page);
            n += 1;
        }
    }
    n
}

fn decode_ram(b: &[u8], ram: &mut [u8]) -> Result<(), SnapshotError> {
    let len = b
        .get(..8)
        .ok_or_else(|| corrupt("RAM section too short"))?
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(corrupt)?;
    if len != ram.len() as u64 {
        return Err(corrupt(format!(
            "RAM section holds {len} bytes, the machine has {}",
            ram.len()
        )));
    }
    let pages = ram.len().div_ceil(PAGE);
    let bitmap = b
        .get(8..8 + pages.div_ceil(8))
        .ok_or_else(|| corrupt("RAM bitmap truncated"))?;
    let mut data = &b[8 + bitmap.len()..];
    for (i, page) in ram.chunks_mut(PAGE).enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            let src = data
                .get(..page.len())
                .ok_or_else(|| corrupt("RAM pages truncated"))?;
            page.copy_from_slice(src);
            data = &data[page.len()..];
        } else {
            page.fill(0);
        }
    }
    if !data.is_empty() {
        return Err(corrupt("extra bytes after the RAM pages"));
    }
    Ok(())
}

fn compress(codec: u8, raw: &[u8]) -> Vec<u8> {
    match codec {
        CODEC_LZ4 => lz4_flex::block::compress(raw),
        CODEC_DEFLATE => miniz_oxide::deflate::compress_to_vec(raw, DEFLATE_LEVEL),
        _ => raw.to_vec(),
    }
}

fn decompress(codec: u8, body: &[u8], raw_len: u64) -> Result<Vec<u8>, SnapshotError> {
    if raw_len > MAX_BODY {
        return Err(corrupt(format!("body of {raw_len} bytes")));
    }
    let raw = match codec {
        CODEC_NONE => body.to_vec(),
        CODEC_LZ4 => lz4_flex::block::decompress(body, raw_len as usize).map_err(corrupt)?,
        CODEC_DEFLATE => miniz_oxide::inflate::decompress_to_vec_with_limit(body, raw_len as usize)
            .map_err(|e| corrupt(format!("deflate: {:?}", e.status)))?,
        c => return Err(corrupt(format!("unknown codec {c}"))),
    };
    if raw.len() as u64 != raw_len {
        return Err(corrupt("body length differs from the header"));
    }
    Ok(raw)
}

/// A cursor over the file that reports truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        if (self.0.len() as u64) < n {
            return Err(SnapshotError::Truncated(what));
        }
        let (a, b) = self.0.split_at(n as usize);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// A parsed (not yet applied) snapshot.
pub struct Parsed {
    pub header: Header,
    /// The decompressed body.
    pub raw: Vec<u8>,
    /// Its sections: (tag, payload's byte range in `raw`).
    pub sections: Vec<([u8; 4], std::ops::Range<usize>)>,
}

/// Check and unpack a snapshot file: magic, version, lengths, checksum, decompression.
pub fn parse(file: &[u8]) -> Result<Parsed, SnapshotError> {
    parse_checked(file, |_, _| Ok(()))
}

/// [`parse`], with `check(header, raw body length)` run before the body is decompressed (so
/// a host can refuse a snapshot too large for it before allocating anything for it).
pub fn parse_checked(
    file: &[u8],
    check: impl FnOnce(&Header, u64) -> Result<(), SnapshotError>,
) -> Result<Parsed, SnapshotError> {
    let mut r = Reader(file);
    if file.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(file) && !file.is_empty() {
            SnapshotError::Truncated("magic")
        } else {
            SnapshotError::NotASnapshot
        });
    }
    if r.take(8, "magic")? != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = r.u32("format version")?;
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    // The whole file's length first, then the checksum: a short file is "truncated", any
    // other damage (including to a length field) "corrupt", before anything is decoded.
    let file_len = r.u64("file length")?;
    if file_len > file.len() as u64 {
        return Err(SnapshotError::Truncated("shorter than its header says"));
    }
    if file_len != file.len() as u64 || file.len() < 4 {
        return Err(SnapshotError::Checksum);
    }
    let (covered, crc) = file.split_at(file.len() - 4);
    if crc32fast::hash(covered) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(SnapshotError::Checksum);
    }
    let header_len = r.u32("header length")?;
    let header_bytes = r.take(u64::from(header_len), "header")?;
    let codec = r.take(1, "codec")?[0];
    let body_len = r.u64("body length")?;
    let raw_len = r.u64("body length")?;
    let body = r.take(body_len, "body")?;
    r.u32("checksum")?;
    if !r.0.is_empty() {
        return Err(corrupt("bytes after the checksum"));
    }
    let header: Header = decode("header", header_bytes)?;
    check(&header, raw_len)?;
    let raw = decompress(codec, body, raw_len)?;
    let mut sections = Vec::new();
    let mut r = Reader(&raw);
    while !r.0.is_empty() {
        let mut tag = [0u8; 4];
        tag.copy_from_slice(r.take(4, "section tag")?);
        let len = r.u64("section length")?;
        let start = raw.len() - r.0.len();
        r.take(len, "section")?;
        sections.push((tag, start..start + len as usize));
    }
    Ok(Parsed {
        header,
        raw,
        sections,
    })
}

impl Parsed {
    /// The payload of the first section `tag` (removed from the list), or a clear error.
    fn take(&mut self, tag: [u8; 4]) -> Result<std::ops::Range<usize>, SnapshotError> {
        let i = self
            .sections
            .iter()
            .position(|(t, _)| *t == tag)
            .ok_or_else(|| {
                corrupt(format!(
                    "no {} section",
                    String::from_utf8_lossy(&tag).trim_end()
                ))
            })?;
        Ok(self.sections.remove(i).1)
    }
}

/// Every disk backend of the machine, in command-line order.
fn disks_mut(board: &mut Board) -> Vec<&mut dyn BlockBackend> {
    let mut v: Vec<&mut dyn BlockBackend> = Vec::new();
    for e in board.devices.entries_mut() {
        let any = e.dev.as_any_mut();
        if any.is::<VirtioMmioDev<VirtioBlk>>() {
            if let Some(d) = any.downcast_mut::<VirtioMmioDev<VirtioBlk>>() {
                v.push(d.dev.device_mut().backend_mut());
            }
        } else if let Some(p) = any.downcast_mut::<PciDev>() {
            for dev in p.0.devices_mut() {
                if let Some(blk) = dev.as_any_mut().downcast_mut::<VirtioPci<VirtioBlk>>() {
                    v.push(blk.device_mut().backend_mut());
                }
            }
        }
    }
    v
}

impl Board {
    /// Every device's state.
    pub fn state(&mut self) -> BoardState {
        BoardState {
            interrupts: self.intc.state(),
            devices: self
                .devices
                .entries_mut()
                .iter()
                .map(|e| (e.name.clone(), e.dev.state()))
                .collect(),
            reset: self.events.reset,
            poweroff: self.events.poweroff,
            service: self.events.service,
        }
    }

    /// Put every device's state back (the board must have the devices saved).
    pub fn set_state(&mut self, s: BoardState) -> Result<(), SnapshotError> {
        let entries = self.devices.entries_mut();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let saved: Vec<&str> = s.devices.iter().map(|(n, _)| n.as_str()).collect();
        if names != saved {
            return Err(SnapshotError::Mismatch(format!(
                "devices {saved:?} were saved, this machine has {names:?}"
            )));
        }
        for (e, (_, st)) in entries.iter_mut().zip(s.devices) {
            e.dev
                .set_state(st)
                .map_err(|err| SnapshotError::Mismatch(format!("{}: {err}", e.name)))?;
        }
        self.intc
            .set_state(s.interrupts)
            .map_err(SnapshotError::Mismatch)?;
        self.events.reset = s.reset;
        self.events.poweroff = s.poweroff;
        self.events.service = s.service;
        Ok(())
    }
}

impl Machine {
    /// Disk `index` (command-line order) as the machine holds it, e.g. to read back what the
    /// guest wrote through a copy-on-write overlay.
    pub fn disk_mut(&mut self, index: usize) -> Option<&mut dyn BlockBackend> {
        disks_mut(&mut self.board).into_iter().nth(index)
    }

    /// The whole machine as a snapshot file (see the module docs and `docs/SNAPSHOT.md`).
    /// Call it between [`Machine::run`] calls. Disks are read to fingerprint them.
    pub fn save(&mut self) -> Result<Vec<u8>, SnapshotError> {
        self.save_with(DEFAULT_CODEC).map(|(b, _)| b)
    }

    /// [`save`](Self::save) with a chosen body codec, also returning sizes.
    pub fn save_with(&mut self, codec: u8) -> Result<(Vec<u8>, SaveInfo), SnapshotError> {
        let icount = self.cpu.icount();
        let c = &self.board.clock;
        let clock = ClockState {
            virtual_ns: self.now_ns(),
            idle_ns: c.idle_ns,
            slice_icount: c.slice_icount,
            slice_end: c.slice_end,
        };
        let header = Header {
            tci64_version: env!("CARGO_PKG_VERSION").into(),
            shape: self.shape.clone(),
            virtual_ns: clock.virtual_ns,
            icount,
        };
        let mut body = Vec::new();
        section(&mut body, TAG_CPU, &encode(&self.cpu.state())?);
        section(&mut body, TAG_CLOCK, &encode(&clock)?);
        section(&mut body, TAG_BOARD, &encode(&self.board.state())?);
        for (i, d) in disks_mut(&mut self.board).into_iter().enumerate() {
            let disk_err = |e: tci64_devices::block::BlockError| SnapshotError::Disk {
                index: i,
                reason: e.to_string(),
            };
            let (size, hash) = fingerprint(d).map_err(disk_err)?;
            let overlay = d
                .overlay()
                .map(|o| o.iter().map(|(&k, v)| (k, v.to_vec())).collect());
            section(
                &mut body,
                TAG_DISK,
                &encode(&DiskState {
                    size,
                    hash,
                    overlay,
                })?,
            );
        }
        let mut ram = Vec::new();
        let ram_pages = encode_ram(self.cpu.core().mem.ram(), &mut ram);
        section(&mut body, TAG_RAM, &ram);
        drop(ram);
        let packed = compress(codec, &body);
        let header_bytes = encode(&header)?;
        let mut out = Vec::with_capacity(packed.len() + header_bytes.len() + 64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let total = 8 + 4 + 8 + 4 + header_bytes.len() + 1 + 8 + 8 + packed.len() + 4;
        out.extend_from_slice(&(total as u64).to_le_bytes());
        out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&header_bytes);
        out.push(codec);
        out.extend_from_slice(&(packed.len() as u64).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&packed);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), total);
        let info = SaveInfo {
            ram_pages,
            raw_bytes: body.len() as u64,
            file_bytes: out.len() as u64,
        };
        Ok((out, info))
    }

    /// A machine restored from a snapshot file, ready to [`run`](Self::run) on. The header
    /// is checked before any RAM is allocated.
    pub fn restore(file: &[u8], opts: RestoreOptions) -> Result<Machine, SnapshotError> {
        // RAM and the unpacked body live side by side while restoring: a host with a cap
        // (the wasm32 build) refuses what cannot fit before decompressing anything.
        let max = opts.max_ram_bytes;
        let mut p = parse_checked(file, |h, raw_len| {
            let ram = h.shape.ram_bytes;
            if let Some(max) = max {
                if ram > max {
                    return Err(SnapshotError::RamTooLarge {
                        need_mib: ram >> 20,
                        max_mib: max >> 20,
                    });
                }
                if ram.saturating_add(raw_len) > max {
                    return Err(SnapshotError::TooLargeToUnpack {
                        need_mib: ram.saturating_add(raw_len).div_ceil(1 << 20),
                        max_mib: max >> 20,
                    });
                }
            }
            if usize::try_from(ram).is_err() {
                return Err(SnapshotError::RamTooLarge {
                    need_mib: ram >> 20,
                    max_mib: (usize::MAX as u64) >> 20,
                });
            }
            Ok(())
        })?;
        let shape = p.header.shape.clone();
        if opts.disks.len() != shape.disks_read_only.len() {
            return Err(SnapshotError::Mismatch(format!(
                "the snapshot has {} disk(s), {} given",
                shape.disks_read_only.len(),
                opts.disks.len()
            )));
        }
        let mut disks = opts.disks;
        for (i, (d, &ro)) in disks.iter_mut().zip(&shape.disks_read_only).enumerate() {
            if d.read_only != ro {
                return Err(SnapshotError::Disk {
                    index: i,
                    reason: format!(
                        "saved attached {}, given {}",
                        if ro { "read-only" } else { "read-write" },
                        if d.read_only {
                            "read-only"
                        } else {
                            "read-write"
                        }
                    ),
                });
            }
        }
        // Disks first: a wrong disk is the likeliest mistake, and the cheapest to report.
        let mut disk_states = Vec::new();
        for _ in 0..disks.len() {
            let r = p.take(TAG_DISK)?;
            disk_states.push(decode::<DiskState>("disk", &p.raw[r])?);
        }
        for (i, (d, s)) in disks.iter_mut().zip(&disk_states).enumerate() {
            let (size, hash) =
                fingerprint(d.backend.as_mut()).map_err(|e| SnapshotError::Disk {
                    index: i,
                    reason: e.to_string(),
                })?;
            if size != s.size {
                return Err(SnapshotError::Disk {
                    index: i,
                    reason: format!(
                        "not the disk saved: {size} bytes, the snapshot's was {} bytes",
                        s.size
                    ),
                });
            }
            if hash != s.hash {
                return Err(SnapshotError::Disk {
                    index: i,
                    reason: format!(
                        "not the disk saved: its contents differ (fingerprint {hash:016x}, saved {:016x})",
                        s.hash
                    ),
                });
            }
        }
        for (i, (d, s)) in disks.iter_mut().zip(disk_states).enumerate() {
            if let Some(chunks) = s.overlay {
                let o: Overlay = chunks
                    .into_iter()
                    .map(|(k, v)| (k, v.into_boxed_slice()))
                    .collect();
                d.backend.set_overlay(o).map_err(|e| SnapshotError::Disk {
                    index: i,
                    reason: format!("the snapshot holds its copy-on-write overlay: {e}"),
                })?;
            }
        }
        let (cpu, clock, board) = (p.take(TAG_CPU)?, p.take(TAG_CLOCK)?, p.take(TAG_BOARD)?);
        let cpu: CpuState = decode("CPU", &p.raw[cpu])?;
        let clock: ClockState = decode("clock", &p.raw[clock])?;
        let board: BoardState = decode("board", &p.raw[board])?;
        let ram = p.take(TAG_RAM)?;
        if let Some((tag, _)) = p.sections.first() {
            return Err(corrupt(format!(
                "unknown section {:?}",
                String::from_utf8_lossy(tag)
            )));
        }
        let mut m = Machine::hardware(&shape, disks, opts.clock, 0, opts.trace)?;
        decode_ram(&p.raw[ram], m.cpu.core_mut().mem.ram_mut())?;
        m.cpu
            .set_state(&cpu)
            .map_err(|e| SnapshotError::Mismatch(e.to_string()))?;
        m.board.set_state(board)?;
        let c = &mut m.board.clock;
        c.idle_ns = clock.idle_ns;
        c.slice_icount = clock.slice_icount;
        c.slice_end = clock.slice_end;
        c.resume_at(clock.virtual_ns);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MachineShape, MachineType, PlatformConfig};
    use tci64_engine::MmioBus;
    use tci64_x86::X86Bus;

    struct Zero;
    impl HostClock for Zero {
        fn now_ns(&self) -> u64 {
            0
        }
    }

    fn bare(machine: MachineType) -> Machine {
        let shape = MachineShape {
            machine,
            platform: PlatformConfig::default(),
            ram_bytes: 64 << 20,
            icount_shift: Some(0),
            virtio_legacy: true,
            disks_read_only: vec![],
        };
        Machine::hardware(&shape, vec![], Box::new(Zero), 0, TraceFlags::default()).unwrap()
    }

    fn restore(file: &[u8]) -> Machine {
        Machine::restore(
            file,
            RestoreOptions {
                disks: vec![],
                clock: Box::new(Zero),
                trace: TraceFlags::default(),
                max_ram_bytes: None,
            },
        )
        .unwrap()
    }

    /// What the guest programmed into the ACPI registers survives a save and restore.
    #[test]
    fn acpi_registers_travel_in_the_snapshot() {
        let mut m = bare(MachineType::Pc);
        let pm = crate::acpi::PM_BASE;
        m.board.pio_write(pm + 2, 2, 0x0121); // PM1_EN: TMR_EN, GBL_EN, RTC_EN
        m.board.pio_write(pm + 4, 2, 3 << 10); // PM1_CNT: SLP_TYP 3, no SLP_EN
        let mut r = restore(&m.save().unwrap());
        assert_eq!(r.board.pio_read(pm + 2, 2), 0x0121);
        assert_eq!(r.board.pio_read(pm + 4, 2), (3 << 10) | 1);

        let mut m = bare(MachineType::Microvm);
        let mut r = restore(&m.save().unwrap());
        assert_eq!(r.board.mmio_read(crate::acpi::SLEEP_BASE + 1, 1), 0);
        // A power-off written before the save is the board's event, which travels too.
        r.board
            .mmio_write(crate::acpi::SLEEP_BASE, 1, (5 << 2) | (1 << 5));
        r.board.update_irqs(0);
        assert!(restore(&r.save().unwrap()).board.events.poweroff);
    }

    #[test]
    fn ram_pages_round_trip_and_zero_pages_are_left_out() {
        let mut ram = vec![0u8; 10 * PAGE + 100];
        ram[3 * PAGE + 5] = 7;
        ram[10 * PAGE + 99] = 9;
        let mut out = Vec::new();
        assert_eq!(encode_ram(&ram, &mut out), 2);
        assert_eq!(out.len(), 8 + 2 + PAGE + 100);
        let mut back = vec![0xffu8; ram.len()];
        decode_ram(&out, &mut back).unwrap();
        assert_eq!(back, ram);
        assert!(decode_ram(&out[..out.len() - 1], &mut back).is_err());
        let mut small = vec![0u8; PAGE];
        assert!(decode_ram(&out, &mut small).is_err());
    }

    #[test]
    fn codecs_round_trip() {
        let raw: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for codec in [CODEC_NONE, CODEC_LZ4, CODEC_DEFLATE] {
            let c = compress(codec, &raw);
            assert_eq!(decompress(codec, &c, raw.len() as u64).unwrap(), raw);
            assert!(decompress(codec, &c, raw.len() as u64 + 1).is_err());
        }
        assert!(decompress(9, &raw, raw.len() as u64).is_err());
    }
}
