//! A small AML encoder (ACPI 6.5 ch. 20): just what the DSDT needs — names, scopes, devices,
//! integers, strings, packages, EISA IDs and resource templates (ch. 6.4).

/// Encode a PkgLength (§20.2.4) for `len` bytes of content following it.
pub fn pkg_length(len: usize) -> Vec<u8> {
    // The length counts its own bytes.
    if len + 1 < 0x40 {
        return vec![(len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut v = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            for i in 0..extra {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            return v;
        }
    }
    panic!("AML package too large: {len} bytes");
}

/// A NameString (§20.2.2): `\` root prefix and `.`-separated segments of up to 4 characters
/// (padded with `_`).
pub fn name(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut p = path;
    if let Some(rest) = p.strip_prefix('\\') {
        out.push(b'\\');
        p = rest;
    }
    let segs: Vec<[u8; 4]> = p
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut seg = [b'_'; 4];
            seg[..s.len().min(4)].copy_from_slice(&s.as_bytes()[..s.len().min(4)]);
            seg
        })
        .collect();
    match segs.len() {
        0 => out.push(0),
        1 => {}
        2 => out.push(0x2e),
        n => {
            out.push(0x2f);
            out.push(n as u8);
        }
    }
    for s in segs {
        out.extend_from_slice(&s);
    }
    out
}

/// An integer constant, shortest encoding.
pub fn int(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00],
        1 => vec![0x01],
        2..=0xff => vec![0x0a, v as u8],
        0x100..=0xffff => {
            let mut o = vec![0x0b];
            o.extend_from_slice(&(v as u16).to_le_bytes());
            o
        }
        0x1_0000..=0xffff_ffff => {
            let mut o = vec![0x0c];
            o.extend_from_slice(&(v as u32).to_le_bytes());
            o
        }
        _ => {
            let mut o = vec![0x0e];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// A string constant.
pub fn string(s: &str) -> Vec<u8> {
    let mut o = vec![0x0d];
    o.extend_from_slice(s.as_bytes());
    o.push(0);
    o
}

/// `EisaId("PNP0501")` as its compressed 32-bit integer.
pub fn eisa_id(id: &str) -> Vec<u8> {
    let b = id.as_bytes();
    let c = |i: usize| ((b[i] - b'@') & 0x1f) as u32;
    let hex = |i: usize| (b[i] as char).to_digit(16).unwrap_or(0);
    let v = (c(0) << 26)
        | (c(1) << 21)
        | (c(2) << 16)
        | (hex(3) << 12)
        | (hex(4) << 8)
        | (hex(5) << 4)
        | hex(6);
    let mut o = vec![0x0c];
    o.extend_from_slice(&v.swap_bytes().to_le_bytes());
    o
}

/// `Name(path, value)`.
pub fn name_decl(path: &str, value: &[u8]) -> Vec<u8> {
    let mut o = vec![0x08];
    o.extend(name(path));
    o.extend_from_slice(value);
    o
}

fn with_pkg(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut o = prefix.to_vec();
    o.extend(pkg_length(body.len()));
    o.extend_from_slice(body);
    o
}

/// `Scope(path) { body }`.
pub fn scope(path: &str, body: &[u8]) -> Vec<u8> {
    let mut b = name(path);
    b.extend_from_slice(body);
    with_pkg(&[0x10], &b)
}

/// `Device(path) { body }`.
pub fn device(path: &str, body: &[u8]) -> Vec<u8> {
    let mut b = name(path);
    b.extend_from_slice(body);
    with_pkg(&[0x5b, 0x82], &b)
}

/// `Package() { elements }`.
pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![elements.len() as u8];
    for e in elements {
        b.extend_from_slice(e);
    }
    with_pkg(&[0x12], &b)
}

/// `Buffer() { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut b = int(bytes.len() as u64);
    b.extend_from_slice(bytes);
    with_pkg(&[0x11], &b)
}

/// `ResourceTemplate() { descriptors }`: a buffer ending in an End Tag (§6.4.2.9).
pub fn resource_template(descriptors: &[Vec<u8>]) -> Vec<u8> {
    let mut b: Vec<u8> = descriptors.concat();
    b.extend_from_slice(&[0x79, 0]);
    buffer(&b)
}

/// Resource descriptors (§6.4).
pub mod res {
    /// `IO(Decode16, base, base, 1, len)` (§6.4.2.5).
    pub fn io(base: u16, len: u8) -> Vec<u8> {
        let b = base.to_le_bytes();
        vec![0x47, 1, b[0], b[1], b[0], b[1], 1, len]
    }

    /// `IRQNoFlags() { irq }` (§6.4.2.1): edge, active high.
    pub fn irq(irq: u8) -> Vec<u8> {
        let m = (1u16 << irq).to_le_bytes();
        vec![0x22, m[0], m[1]]
    }

    /// `Memory32Fixed(ReadWrite, base, len)` (§6.4.3.4).
    pub fn memory32_fixed(base: u32, len: u32) -> Vec<u8> {
        let mut o = vec![0x86, 9, 0, 1];
        o.extend_from_slice(&base.to_le_bytes());
        o.extend_from_slice(&len.to_le_bytes());
        o
    }

    /// `Interrupt(ResourceConsumer, Level|Edge, ActiveHigh|Low, Exclusive) { gsi }`
    /// (§6.4.3.6).
    pub fn interrupt(gsi: u32, level: bool, active_low: bool) -> Vec<u8> {
        let flags = 1 | (!level as u8) << 1 | (active_low as u8) << 2;
        let mut o = vec![0x89, 6, 0, flags, 1];
        o.extend_from_slice(&gsi.to_le_bytes());
        o
    }

    /// A Word Address Space descriptor (§6.4.3.5.3): `kind` 1 = I/O, 2 = bus numbers; a
    /// producer range with fixed min and max.
    pub fn word_space(kind: u8, min: u16, max: u16) -> Vec<u8> {
        let type_flags = if kind == 1 { 3 } else { 0 };
        let mut o = vec![0x88, 13, 0, kind, 0x0c, type_flags];
        for v in [0, min, max, 0, max - min + 1] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// A DWord memory range (§6.4.3.5.2): producer, fixed, read-write, non-cacheable.
    pub fn dword_memory(min: u32, max: u32) -> Vec<u8> {
        let mut o = vec![0x87, 23, 0, 0, 0x0c, 1];
        for v in [0, min, max, 0, max - min + 1] {
            o.extend_from_slice(&v.to_le_bytes());
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_lengths() {
        assert_eq!(pkg_length(0), vec![1]);
        assert_eq!(pkg_length(0x3e), vec![0x3f]);
        // 0x3f + 2 bytes = 0x41.
        assert_eq!(pkg_length(0x3f), vec![0x41, 0x04]);
        assert_eq!(pkg_length(0x1000), vec![0x83, 0x00, 0x01]);
    }

    #[test]
    fn names_and_ids() {
        assert_eq!(name("\\_SB"), b"\\_SB_".to_vec());
        assert_eq!(name("\\_SB.COM1"), b"\\\x2e_SB_COM1".to_vec());
        assert_eq!(name("_S5"), b"_S5_".to_vec());
        // PNP0501 = 0x0105D041 stored little-endian as 41 D0 05 01.
        assert_eq!(eisa_id("PNP0501"), vec![0x0c, 0x41, 0xd0, 0x05, 0x01]);
        assert_eq!(int(0x1234), vec![0x0b, 0x34, 0x12]);
        assert_eq!(string("ab"), vec![0x0d, b'a', b'b', 0]);
    }
}
