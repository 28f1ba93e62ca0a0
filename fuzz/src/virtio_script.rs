//! Virtio as a hostile driver sees it: a script of register accesses to virtio-mmio (version 1
//! or 2) or to virtio-pci (configuration space through conf1, the common/ISR/device/notify
//! areas of BAR 4), interleaved with writes of descriptor tables, available rings and buffers
//! into guest RAM, in front of a virtio-blk disk held in memory.
//!
//! The script reaches every hostile case by construction: raw register writes in any order
//! (notifies before DRIVER_OK, resets in the middle of a request, queue sizes that are not
//! powers of two, rings at unaligned or out-of-RAM addresses), raw descriptors (loops,
//! indirect tables inside indirect tables, lengths that overflow, addresses past RAM), and
//! well-formed requests the fuzzer can then corrupt.
//!
//! Checked: no panic and no hang; the device never asks the backend for bytes outside the
//! disk; a read-only disk is never written; disk bytes only change through the backend's
//! `write_at` inside requested ranges; and after the script, a reset followed by a clean
//! driver setup always works again: a write of one sector lands exactly there (no other disk
//! byte changes) and reads back.

use std::cell::RefCell;
use std::rc::Rc;
use tci64_devices::block::{BlockBackend, BlockError, MemBackend};
use tci64_devices::pci::{Access, PciBus};
use tci64_devices::virtio::blk::{
    VirtioBlk, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use tci64_devices::virtio::mmio::{self as m, VirtioMmio};
use tci64_devices::virtio::pci::{self as p, VirtioPci};
use tci64_devices::virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use tci64_devices::virtio::{
    STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use tci64_devices::PioDevice;

/// Guest RAM (small, so random 16-bit addresses hit it).
pub const RAM: usize = 64 * 1024;
/// Disk size.
pub const DISK: usize = 64 * 1024;
/// Where the harness's own queue lives: descriptor table, available ring, used ring, data.
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const DATA: u64 = 0x8000;
/// Where the PCI BAR 4 of the function lands (the only BAR on the bus).
const BAR_BASE: u64 = 0xFE00_0000;
/// PCI device number of the function.
const PCI_SLOT: u32 = 1;
/// Steps of a script at most (inputs are short anyway; bounds the work per input).
const MAX_STEPS: usize = 256;

/// What the recording backend saw.
#[derive(Debug, Default)]
pub struct Record {
    /// Byte ranges written.
    pub writes: Vec<(u64, u64)>,
    /// Accesses the device asked for outside the disk.
    pub out_of_range: Vec<(u64, usize)>,
}

/// A [`MemBackend`] that records every write (shared with the harness).
struct Recording {
    disk: Rc<RefCell<MemBackend>>,
    rec: Rc<RefCell<Record>>,
}

impl Recording {
    fn check(&self, offset: u64, len: usize) {
        let size = self.disk.borrow().size();
        if offset.checked_add(len as u64).is_none_or(|e| e > size) {
            self.rec.borrow_mut().out_of_range.push((offset, len));
        }
    }
}

impl BlockBackend for Recording {
    fn size(&self) -> u64 {
        self.disk.borrow().size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(offset, buf.len());
        self.disk.borrow_mut().read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check(offset, buf.len());
        self.rec
            .borrow_mut()
            .writes
            .push((offset, buf.len() as u64));
        self.disk.borrow_mut().write_at(offset, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// The device under test behind one of the transports.
enum Transport {
    Mmio(Box<VirtioMmio<VirtioBlk>>, bool),
    Pci(Box<PciBus>),
}

/// Reads script bytes; past the end everything reads 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    /// An address: mostly inside RAM, sometimes anywhere.
    fn addr(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => self.u64(),
            1 => RAM as u64 - u64::from(self.u8()),
            _ => u64::from(self.u16()),
        }
    }
}

struct Harness {
    t: Transport,
    ram: Vec<u8>,
    /// Next available index the harness's own ring operations use.
    avail_idx: u16,
    /// Queue size the harness's ring operations assume.
    qsize: u16,
}

impl Harness {
    fn mmio_write(&mut self, off: u64, v: u32) {
        if let Transport::Mmio(d, _) = &mut self.t {
            d.mmio_write(off, &v.to_le_bytes(), &mut self.ram);
        }
    }

    fn cfg_write(bus: &mut PciBus, reg: u32, size: u8, v: u32) {
        bus.pio_write(0xCF8, 4, 0x8000_0000 | PCI_SLOT << 11 | (reg & 0xFC));
        bus.pio_write(0xCFC + (reg & 3) as u16, size, v);
    }

    fn bar_write(&mut self, off: u64, data: &[u8]) {
        if let Transport::Pci(bus) = &mut self.t {
            let a = bus.mmio_write(BAR_BASE + off, data);
            if a == Some(Access::NeedsService) || bus.take_service_request() {
                bus.service(&mut self.ram);
            }
        }
    }

    fn bar_read(&mut self, off: u64, len: usize) {
        if let Transport::Pci(bus) = &mut self.t {
            let mut b = [0u8; 8];
            bus.mmio_read(BAR_BASE + off, &mut b[..len]);
        }
    }

    /// The driver's side of a clean setup of queue 0 at DESC/AVAIL/USED with `size` entries.
    fn setup(&mut self, features: u64, size: u16) {
        self.avail_idx = 0;
        self.qsize = size;
        // Fresh rings (legacy: available ring after the table, used ring at the next page).
        let (_, avail) = self.rings();
        let ram = &mut self.ram;
        for at in [avail, AVAIL, USED] {
            if let Some(r) = ram.get_mut(at as usize..at as usize + 4) {
                r.fill(0);
            }
        }
        match &mut self.t {
            Transport::Mmio(d, legacy) => {
                let mut w = |off: u64, v: u32| d.mmio_write(off, &v.to_le_bytes(), ram);
                w(m::REG_STATUS, 0);
                w(m::REG_STATUS, STATUS_ACKNOWLEDGE);
                w(m::REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
                w(m::REG_DRIVER_FEATURES_SEL, 0);
                w(m::REG_DRIVER_FEATURES, features as u32);
                w(m::REG_DRIVER_FEATURES_SEL, 1);
                w(m::REG_DRIVER_FEATURES, (features >> 32) as u32);
                let mut st = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
                if !*legacy {
                    st |= STATUS_FEATURES_OK;
                    w(m::REG_STATUS, st);
                }
                w(m::REG_QUEUE_SEL, 0);
                w(m::REG_QUEUE_NUM, u32::from(size));
                if *legacy {
                    // desc = PFN * 4096, avail right after it, used at the next 4 KiB.
                    w(m::REG_GUEST_PAGE_SIZE, 4096);
                    w(m::REG_QUEUE_ALIGN, 4096);
                    w(m::REG_QUEUE_PFN, (DESC / 4096) as u32);
                } else {
                    w(m::REG_QUEUE_DESC_LOW, DESC as u32);
                    w(m::REG_QUEUE_DESC_HIGH, 0);
                    w(m::REG_QUEUE_DRIVER_LOW, AVAIL as u32);
                    w(m::REG_QUEUE_DRIVER_HIGH, 0);
                    w(m::REG_QUEUE_DEVICE_LOW, USED as u32);
                    w(m::REG_QUEUE_DEVICE_HIGH, 0);
                    w(m::REG_QUEUE_READY, 1);
                }
                w(m::REG_STATUS, st | STATUS_DRIVER_OK);
            }
            Transport::Pci(bus) => {
                // Memory decoding and bus mastering on; BAR 4 back where it belongs.
                Self::cfg_write(bus, 0x20, 4, BAR_BASE as u32);
                Self::cfg_write(bus, 0x24, 4, (BAR_BASE >> 32) as u32);
                Self::cfg_write(bus, 0x04, 2, 0x6);
                let mut w = |off: u64, v: &[u8]| {
                    bus.mmio_write(BAR_BASE + p::COMMON_OFFSET + off, v);
                };
                w(p::common::DEVICE_STATUS, &[0]);
                w(p::common::DEVICE_STATUS, &[STATUS_ACKNOWLEDGE as u8]);
                w(
                    p::common::DEVICE_STATUS,
                    &[(STATUS_ACKNOWLEDGE | STATUS_DRIVER) as u8],
                );
                w(p::common::DRIVER_FEATURE_SELECT, &0u32.to_le_bytes());
                w(p::common::DRIVER_FEATURE, &(features as u32).to_le_bytes());
                w(p::common::DRIVER_FEATURE_SELECT, &1u32.to_le_bytes());
                w(
                    p::common::DRIVER_FEATURE,
                    &((features >> 32) as u32).to_le_bytes(),
                );
                let st = (STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK) as u8;
                w(p::common::DEVICE_STATUS, &[st]);
                w(p::common::QUEUE_SELECT, &0u16.to_le_bytes());
                w(p::common::QUEUE_SIZE, &size.to_le_bytes());
                w(p::common::QUEUE_DESC, &DESC.to_le_bytes()[..4]);
                w(p::common::QUEUE_DESC + 4, &[0; 4]);
                w(p::common::QUEUE_DRIVER, &AVAIL.to_le_bytes()[..4]);
                w(p::common::QUEUE_DRIVER + 4, &[0; 4]);
                w(p::common::QUEUE_DEVICE, &USED.to_le_bytes()[..4]);
                w(p::common::QUEUE_DEVICE + 4, &[0; 4]);
                w(p::common::QUEUE_ENABLE, &1u16.to_le_bytes());
                w(p::common::DEVICE_STATUS, &[st | STATUS_DRIVER_OK as u8]);
            }
        }
    }

    /// The harness's own ring: descriptor table and available ring addresses for the
    /// transport (legacy puts the available ring right after the table).
    fn rings(&self) -> (u64, u64) {
        match self.t {
            Transport::Mmio(_, true) => (DESC, DESC + 16 * u64::from(self.qsize)),
            _ => (DESC, AVAIL),
        }
    }

    fn put_desc(&mut self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let (desc, _) = self.rings();
        let at = desc as usize + 16 * usize::from(index % 256);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        if let Some(s) = self.ram.get_mut(at..at + 16) {
            s.copy_from_slice(&d);
        }
    }

    fn push_avail(&mut self, head: u16) {
        let (_, avail) = self.rings();
        let slot = avail as usize + 4 + 2 * usize::from(self.avail_idx % self.qsize.max(1));
        if let Some(s) = self.ram.get_mut(slot..slot + 2) {
            s.copy_from_slice(&head.to_le_bytes());
        }
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let idx = avail as usize + 2;
        if let Some(s) = self.ram.get_mut(idx..idx + 2) {
            s.copy_from_slice(&self.avail_idx.to_le_bytes());
        }
    }

    fn notify(&mut self, queue: u16) {
        match &mut self.t {
            Transport::Mmio(d, _) => d.mmio_write(
                m::REG_QUEUE_NOTIFY,
                &u32::from(queue).to_le_bytes(),
                &mut self.ram,
            ),
            Transport::Pci(_) => self.bar_write(
                p::NOTIFY_OFFSET + 4 * u64::from(queue),
                &queue.to_le_bytes(),
            ),
        }
    }

    /// A three-descriptor request (header, data, status) at descriptors `first..first+3`.
    fn request(&mut self, first: u16, ty: u32, sector: u64, data: u64, len: u32) {
        let hdr = DATA as usize + 16 * usize::from(first % 64);
        let status = DATA as usize + 0x400 + usize::from(first % 64);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.ram[hdr..hdr + 16].copy_from_slice(&h);
        self.ram[status] = 0xFF;
        let n = self.qsize.max(1);
        let (a, b, c) = (
            first % n,
            first.wrapping_add(1) % n,
            first.wrapping_add(2) % n,
        );
        let wflag = if ty == VIRTIO_BLK_T_IN {
            VIRTQ_DESC_F_WRITE
        } else {
            0
        };
        self.put_desc(a, hdr as u64, 16, VIRTQ_DESC_F_NEXT, b);
        self.put_desc(b, data, len, VIRTQ_DESC_F_NEXT | wflag, c);
        self.put_desc(c, status as u64, 1, VIRTQ_DESC_F_WRITE, 0);
        self.push_avail(a);
    }
}

fn features(legacy: bool, bits: u8) -> u64 {
    let mut f = 0;
    if !legacy {
        f |= VIRTIO_F_VERSION_1;
    }
    if bits & 1 != 0 {
        f |= VIRTIO_F_RING_INDIRECT_DESC;
    }
    if bits & 2 != 0 {
        f |= VIRTIO_F_RING_EVENT_IDX;
    }
    if bits & 4 != 0 {
        f |= 1 << 9; // FLUSH
    }
    f
}

/// The fuzz target.
pub fn virtio_script(data: &[u8]) {
    let mut inp = Input(data);
    let head = inp.u8();
    let read_only = head & 4 != 0;
    // The initial disk contents (built once: per-byte loops cost a coverage callback each).
    static DISK0: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let disk0 = DISK0
        .get_or_init(|| (0..DISK).map(|i| (i * 7 + i / 512) as u8).collect())
        .clone();
    let disk = Rc::new(RefCell::new(MemBackend::new(disk0.clone())));
    let rec = Rc::new(RefCell::new(Record::default()));
    let backend = Recording {
        disk: disk.clone(),
        rec: rec.clone(),
    };
    let blk = VirtioBlk::new(Box::new(backend), read_only);
    let t = match head % 3 {
        0 => Transport::Mmio(Box::new(VirtioMmio::new(blk, true)), true),
        1 => Transport::Mmio(Box::new(VirtioMmio::new(blk, false)), false),
        _ => {
            let mut bus = PciBus::new();
            assert!(bus
                .add_device(PCI_SLOT as usize, Box::new(VirtioPci::new(blk)), Some(11))
                .is_ok());
            bus.assign_resources(BAR_BASE..BAR_BASE + (1 << 24), 0xC000..0x10000)
                .expect("one BAR fits");
            Transport::Pci(Box::new(bus))
        }
    };
    let legacy = matches!(t, Transport::Mmio(_, true));
    let mut h = Harness {
        t,
        ram: vec![0u8; RAM],
        avail_idx: 0,
        qsize: 256,
    };

    for _ in 0..MAX_STEPS {
        if inp.0.is_empty() {
            break;
        }
        match inp.u8() % 14 {
            0 => {
                let (off, v) = (u64::from(inp.u8()) * 4 % 0x120, inp.u32());
                h.mmio_write(off, v);
            }
            1 => {
                if let Transport::Mmio(d, _) = &mut h.t {
                    let off = u64::from(inp.u16()) % 0x140;
                    let mut b = [0u8; 8];
                    let n = [1, 2, 4, 8][usize::from(inp.u8() % 4)];
                    d.mmio_read(off, &mut b[..n]);
                }
            }
            2 => {
                // Raw bytes into RAM.
                let at = usize::from(inp.u16());
                let n = usize::from(inp.u8() % 32);
                for i in 0..n {
                    let b = inp.u8();
                    if let Some(x) = h.ram.get_mut(at + i) {
                        *x = b;
                    }
                }
            }
            3 => {
                let (i, a, l, f, n) = (inp.u8(), inp.addr(), inp.u32(), inp.u16() % 8, inp.u8());
                let l = if inp.u8() & 1 == 0 { l % 4096 } else { l };
                h.put_desc(u16::from(i), a, l, f, u16::from(n));
            }
            4 => {
                let head = u16::from(inp.u8());
                h.push_avail(head);
            }
            5 => {
                let q = u16::from(inp.u8() % 3);
                h.notify(q);
            }
            6 => {
                let f = features(legacy, inp.u8());
                let size = match inp.u8() % 4 {
                    0 => 256,
                    1 => 8,
                    2 => u16::from(inp.u8()),
                    _ => inp.u16(),
                };
                h.setup(f, size);
            }
            7 => {
                // Status write (0 = reset, possibly mid-request).
                let v = inp.u8();
                match &mut h.t {
                    Transport::Mmio(d, _) => {
                        d.mmio_write(m::REG_STATUS, &u32::from(v).to_le_bytes(), &mut h.ram)
                    }
                    Transport::Pci(_) => {
                        h.bar_write(p::COMMON_OFFSET + p::common::DEVICE_STATUS, &[v])
                    }
                }
            }
            8 => {
                if let Transport::Pci(bus) = &mut h.t {
                    let (reg, size, v) = (
                        u32::from(inp.u8()),
                        [1, 2, 4][usize::from(inp.u8() % 3)],
                        inp.u32(),
                    );
                    Harness::cfg_write(bus, reg, size, v);
                    if bus.take_service_request() {
                        bus.service(&mut h.ram);
                    }
                    bus.pio_write(0xCF8, 4, 0x8000_0000 | PCI_SLOT << 11 | (reg & 0xFC));
                    let _ = bus.pio_read(0xCFC + (reg & 3) as u16, size);
                }
            }
            9 => {
                let off = u64::from(inp.u16()) % 0x4000;
                let n = [1, 2, 4, 8][usize::from(inp.u8() % 4)];
                let v = inp.u64().to_le_bytes();
                h.bar_write(off, &v[..n]);
            }
            10 => {
                let off = u64::from(inp.u16()) % 0x4000;
                let n = [1, 2, 4, 8][usize::from(inp.u8() % 4)];
                h.bar_read(off, n);
            }
            11 => {
                // A well-formed request (the script may corrupt it before notifying).
                let first = u16::from(inp.u8());
                let ty = match inp.u8() % 6 {
                    0 => VIRTIO_BLK_T_IN,
                    1 => VIRTIO_BLK_T_OUT,
                    2 => 4,
                    3 => 8,
                    4 => 13,
                    _ => inp.u32(),
                };
                let sector = match inp.u8() % 4 {
                    0 => inp.u64(),
                    _ => u64::from(inp.u8()),
                };
                let len = match inp.u8() % 4 {
                    0 => inp.u32(),
                    1 => 512,
                    _ => 512 * u32::from(inp.u8() % 8),
                };
                let data = DATA + 0x1000;
                h.request(first, ty, sector, data, len);
            }
            12 => {
                // An indirect descriptor pointing at a table in RAM.
                let (i, table, len) = (inp.u8(), inp.addr(), u32::from(inp.u16()));
                h.put_desc(
                    u16::from(i),
                    table,
                    len,
                    4 | (inp.u8() as u16 & 3),
                    u16::from(inp.u8()),
                );
            }
            _ => {
                // Interrupt acknowledge / ISR read.
                match &mut h.t {
                    Transport::Mmio(d, _) => {
                        let mut b = [0u8; 4];
                        d.mmio_read(m::REG_INTERRUPT_STATUS, &mut b);
                        d.mmio_write(m::REG_INTERRUPT_ACK, &b, &mut h.ram);
                    }
                    Transport::Pci(_) => h.bar_read(p::ISR_OFFSET, 1),
                }
            }
        }
    }

    // Invariants over everything the script did.
    {
        let r = rec.borrow();
        assert!(
            r.out_of_range.is_empty(),
            "backend access outside the disk: {:?}",
            r.out_of_range
        );
        if read_only {
            assert!(
                r.writes.is_empty(),
                "read-only disk written: {:?}",
                r.writes
            );
        }
        let now = disk.borrow();
        // Byte by byte only when something changed (a per-byte loop costs a coverage callback
        // per byte in the instrumented build).
        let changed = disk0[..] != *now.as_slice();
        for (i, (a, b)) in disk0
            .iter()
            .zip(now.as_slice())
            .enumerate()
            .take(if changed { DISK } else { 0 })
        {
            if a != b {
                let i = i as u64;
                assert!(
                    r.writes.iter().any(|&(o, l)| i >= o && i < o + l),
                    "disk byte {i} changed without a write covering it"
                );
            }
        }
    }

    // Recovery: reset, clean setup, one write and one read of sector `s`.
    let s = u64::from(data.last().copied().unwrap_or(0)) % (DISK as u64 / 512);
    h.setup(features(legacy, 0), 8);
    let before = disk.borrow().as_slice().to_vec();
    rec.borrow_mut().writes.clear();
    let payload: Vec<u8> = (0..512).map(|i| (i as u8) ^ 0x5A).collect();
    let buf = DATA + 0x2000;
    h.ram[buf as usize..buf as usize + 512].copy_from_slice(&payload);
    h.request(0, VIRTIO_BLK_T_OUT, s, buf, 512);
    h.notify(0);
    let status = h.ram[DATA as usize + 0x400];
    if read_only {
        assert_eq!(
            status, VIRTIO_BLK_S_IOERR,
            "a write to a read-only disk must fail with IOERR"
        );
        assert_eq!(disk.borrow().as_slice(), &before[..]);
        return;
    }
    assert_eq!(status, VIRTIO_BLK_S_OK, "a clean write after reset failed");
    let after = disk.borrow().as_slice().to_vec();
    let range = (s * 512) as usize..(s * 512 + 512) as usize;
    assert_eq!(&after[range.clone()], &payload[..]);
    assert!(
        before[..range.start] == after[..range.start] && before[range.end..] == after[range.end..],
        "bytes outside the written sector {s} changed"
    );
    h.ram[buf as usize..buf as usize + 512].fill(0);
    h.request(3, VIRTIO_BLK_T_IN, s, buf, 512);
    h.notify(0);
    assert_eq!(
        h.ram[DATA as usize + 0x403],
        VIRTIO_BLK_S_OK,
        "a clean read after reset failed"
    );
    assert_eq!(&h.ram[buf as usize..buf as usize + 512], &payload[..]);
}
