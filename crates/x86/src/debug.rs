//! What a debugger (GDB stub) or monitor needs from the CPU: the register view and its
//! changes, guest-virtual memory through the current page tables without side effects
//! ([`crate::mmu::probe`]), the list of mappings, and a QEMU-style register dump. Breakpoints,
//! watchpoints and single-step are the engine's ([`tci64_engine::debug`]).

use crate::cpu::{rflags, set_rflags};
use crate::regs::*;
use crate::state::{cr, Segment};
use crate::Cpu;
use std::fmt::Write;
use tci64_engine::mem::PAGE_MASK;

/// The registers a debugger sees, in architectural form (RFLAGS whole, x87 stack order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugRegs {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15 (encoding order).
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// Selectors of ES, CS, SS, DS, FS, GS.
    pub sel: [u16; 6],
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    /// ST(0)..ST(7) as 80-bit values (little-endian mantissa, then sign and exponent).
    pub st: [[u8; 10]; 8],
    pub fcw: u16,
    /// FSW with TOP in bits 11-13.
    pub fsw: u16,
    /// The full tag word (two bits per register).
    pub ftw: u16,
    pub fop: u16,
    pub fcs: u16,
    pub fip: u64,
    pub fds: u16,
    pub fdp: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
}

/// A selector a debugger wrote whose descriptor cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} selector {selector:#06x}: no loadable descriptor", SEG_NAMES[*seg])]
pub struct SelectorError {
    /// The segment register, as an index into ES, CS, SS, DS, FS, GS.
    pub seg: usize,
    pub selector: u16,
}

const SEG_NAMES: [&str; 6] = ["ES", "CS", "SS", "DS", "FS", "GS"];

/// One mapping of the current page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub vaddr: u64,
    pub paddr: u64,
    /// 4 KiB, 2 MiB, 4 MiB or 1 GiB.
    pub size: u64,
    pub writable: bool,
    pub user: bool,
    pub executable: bool,
    pub accessed: bool,
    pub dirty: bool,
    pub global: bool,
}

impl Cpu {
    /// The registers as a debugger sees them.
    pub fn debug_regs(&self) -> DebugRegs {
        let c = self.core();
        let g = &c.guest;
        let r = &c.regs.0;
        let mut d = DebugRegs {
            rip: r[RIP as usize],
            rflags: rflags(c),
            fs_base: r[FS_BASE as usize],
            gs_base: r[GS_BASE as usize],
            kernel_gs_base: g.kernel_gs_base,
            cr0: g.cr0,
            cr2: g.cr2,
            cr3: g.cr3,
            cr4: g.cr4,
            cr8: g.cr8,
            efer: g.efer,
            fcw: g.x87.fcw,
            fsw: (g.x87.fsw & !0x3800) | ((g.x87.top as u16 & 7) << 11),
            ftw: g.x87.ftw,
            fop: g.x87.fop,
            fcs: g.x87.fcs,
            fip: g.x87.fip,
            fds: g.x87.fds,
            fdp: g.x87.fdp,
            mxcsr: g.mxcsr,
            ..DebugRegs::default()
        };
        d.gpr.copy_from_slice(&r[..16]);
        for (s, seg) in d.sel.iter_mut().zip(&g.segs) {
            *s = seg.selector;
        }
        for i in 0..8 {
            let (m, se) = g.x87.regs[(g.x87.top as usize + i) & 7];
            d.st[i][..8].copy_from_slice(&m.to_le_bytes());
            d.st[i][8..].copy_from_slice(&se.to_le_bytes());
        }
        for (x, v) in d.xmm.iter_mut().zip(&g.xmm) {
            *x = v[0] as u128 | (v[1] as u128) << 64;
        }
        d
    }

    /// Change registers from a debugger. A changed selector reloads its descriptor cache the
    /// way the CPU would, without the CPU's checks or side effects: in real and virtual-8086
    /// mode the base becomes selector * 16; in protected mode the descriptor is read from the
    /// GDT or LDT through the current page tables (no accessed bit is set), and a new CS
    /// selector sets the CPL to its RPL. A selector whose descriptor cannot be read (beyond
    /// the table limit, unmapped, a null CS) is refused and nothing changes. Changing CR0, CR3,
    /// CR4 or EFER flushes the TLB.
    pub fn set_debug_regs(&mut self, d: &DebugRegs) -> Result<(), SelectorError> {
        let old = self.debug_regs();
        let mut loads = Vec::new();
        for n in 0..6 {
            if d.sel[n] != old.sel[n] {
                loads.push((n, self.debug_segment(n, d.sel[n])?));
            }
        }
        let c = self.core_mut();
        c.regs.0[..16].copy_from_slice(&d.gpr);
        c.regs.0[RIP as usize] = d.rip;
        if d.rflags != old.rflags {
            set_rflags(c, d.rflags);
        }
        let protected = c.guest.cr0 & cr::CR0_PE != 0 && c.regs.0[RFLAGS as usize] & fl::VM == 0;
        for (n, s) in loads {
            crate::system::seg::set_seg(c, n, s);
            if n == CS && protected {
                c.guest.cpl = (s.selector & 3) as u8;
            }
        }
        if d.fs_base != old.fs_base {
            set_base(c, FS, d.fs_base);
        }
        if d.gs_base != old.gs_base {
            set_base(c, GS, d.gs_base);
        }
        let g = &mut c.guest;
        g.kernel_gs_base = d.kernel_gs_base;
        let paging_changed = (d.cr0, d.cr3, d.cr4, d.efer) != (old.cr0, old.cr3, old.cr4, old.efer);
        g.cr0 = d.cr0;
        g.cr2 = d.cr2;
        g.cr3 = d.cr3;
        g.cr4 = d.cr4;
        g.cr8 = d.cr8 & 0xf;
        g.efer = d.efer;
        if d.st != old.st || d.fsw != old.fsw {
            let top = ((d.fsw >> 11) & 7) as u8;
            g.x87.top = top;
            for i in 0..8 {
                let m = u64::from_le_bytes(d.st[i][..8].try_into().unwrap_or([0; 8]));
                let se = u16::from_le_bytes([d.st[i][8], d.st[i][9]]);
                g.x87.regs[(top as usize + i) & 7] = (m, se);
            }
        }
        g.x87.fcw = d.fcw;
        g.x87.fsw = d.fsw & !0x3800;
        g.x87.ftw = d.ftw;
        g.x87.fop = d.fop & 0x7ff;
        g.x87.fcs = d.fcs;
        g.x87.fip = d.fip;
        g.x87.fds = d.fds;
        g.x87.fdp = d.fdp;
        for (v, x) in g.xmm.iter_mut().zip(&d.xmm) {
            *v = [*x as u64, (*x >> 64) as u64];
        }
        g.mxcsr = d.mxcsr;
        if paging_changed {
            c.tlb_flush_all();
        }
        Ok(())
    }

    /// The descriptor cache segment register `n` gets when a debugger writes selector `sel`
    /// (see [`Cpu::set_debug_regs`]).
    fn debug_segment(&self, n: usize, sel: u16) -> Result<Segment, SelectorError> {
        let c = self.core();
        let g = &c.guest;
        let err = SelectorError {
            seg: n,
            selector: sel,
        };
        let vm86 = c.regs.0[RFLAGS as usize] & fl::VM != 0;
        if g.cr0 & cr::CR0_PE == 0 || vm86 {
            let mut s = crate::system::seg::seg(c, n);
            s.selector = sel;
            s.base = (sel as u64) << 4;
            if vm86 {
                s.limit = 0xffff;
                s.attr = 0xf3;
            }
            return Ok(s);
        }
        if sel & !3 == 0 {
            if n == CS {
                return Err(err);
            }
            return Ok(Segment {
                selector: sel,
                base: 0,
                limit: 0,
                attr: 0,
            });
        }
        let a = crate::system::seg::desc_addr(g, sel).ok_or(err)?;
        let mut b = [0u8; 8];
        if self.read_virt(a, &mut b) != 8 {
            return Err(err);
        }
        Ok(crate::exception::seg_from_descriptor(
            sel,
            u64::from_le_bytes(b),
        ))
    }

    /// The width of the code the CPU runs now: 64 (long mode, CS.L), 32 (CS.D) or 16.
    pub fn code_bits(&self) -> u32 {
        let g = &self.core().guest;
        let cs = g.segs[CS];
        if g.cr0 & cr::CR0_PE == 0 {
            16
        } else if g.efer & cr::EFER_LMA != 0 && cs.attr & Segment::ATTR_L != 0 {
            64
        } else if cs.attr & Segment::ATTR_DB != 0 {
            32
        } else {
            16
        }
    }

    /// The physical address of virtual `va` in the current address space (no side effects).
    pub fn virt_to_phys(&self, va: u64) -> Option<u64> {
        crate::mmu::probe(self.core(), va)
    }

    /// Read guest-virtual memory through the current page tables, without side effects.
    /// Returns how many bytes from the start could be read (it stops at an unmapped page or
    /// at memory that is not RAM).
    pub fn read_virt(&self, va: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let a = va.wrapping_add(done as u64);
            let chunk = ((PAGE_MASK + 1 - (a & PAGE_MASK)) as usize).min(buf.len() - done);
            let Some(pa) = self.virt_to_phys(a) else {
                break;
            };
            if !self.read_phys(pa, &mut buf[done..done + chunk]) {
                break;
            }
            done += chunk;
        }
        done
    }

    /// Write guest-virtual memory (page permissions are not checked, as debuggers expect;
    /// translated code on the pages is invalidated). Returns how many bytes were written.
    pub fn write_virt(&mut self, va: u64, buf: &[u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let a = va.wrapping_add(done as u64);
            let chunk = ((PAGE_MASK + 1 - (a & PAGE_MASK)) as usize).min(buf.len() - done);
            let Some(pa) = self.virt_to_phys(a) else {
                break;
            };
            let mut probe = [0u8; 1];
            if !self.read_phys(pa, &mut probe) || !self.write_phys(pa, &buf[done..done + chunk]) {
                break;
            }
            done += chunk;
        }
        done
    }

    /// Every mapping of the current page tables, in virtual-address order (empty without
    /// paging).
    pub fn mappings(&self) -> Vec<Mapping> {
        let c = self.core();
        let g = &c.guest;
        let mut out = Vec::new();
        if g.cr0 & cr::CR0_PG == 0 {
            return out;
        }
        let rd = |a: u64, size: usize| c.mem.read_phys_u(a, size);
        let nxe = g.efer & cr::EFER_NXE != 0;
        let leaf =
            |va: u64, e: u64, size: u64, frame_mask: u64, perms: (bool, bool, bool)| Mapping {
                vaddr: va,
                paddr: e & frame_mask & !(size - 1),
                size,
                writable: perms.0 && e & 2 != 0,
                user: perms.1 && e & 4 != 0,
                executable: perms.2 && !(nxe && e & (1 << 63) != 0),
                accessed: e & 0x20 != 0,
                dirty: e & 0x40 != 0,
                global: e & 0x100 != 0,
            };
        const ADDR: u64 = 0x000f_ffff_ffff_f000;
        if g.efer & cr::EFER_LMA != 0 {
            // Four levels, depth first; each level keeps the permissions of those above.
            // (table, index shift, virtual base, permissions so far).
            type Level = (u64, u32, u64, (bool, bool, bool));
            let mut stack: Vec<Level> = vec![(g.cr3 & ADDR, 39, 0, (true, true, true))];
            while let Some((table, shift, va_base, perms)) = stack.pop() {
                for i in 0..512u64 {
                    let e = rd(table + i * 8, 8);
                    if e & 1 == 0 {
                        continue;
                    }
                    let mut va = va_base | (i << shift);
                    if shift == 39 && i >= 256 {
                        va |= 0xffff_0000_0000_0000;
                    }
                    if shift == 12 || (shift < 39 && e & 0x80 != 0) {
                        out.push(leaf(va, e, 1 << shift, ADDR, perms));
                    } else {
                        let p = (
                            perms.0 && e & 2 != 0,
                            perms.1 && e & 4 != 0,
                            perms.2 && !(nxe && e & (1 << 63) != 0),
                        );
                        stack.push((e & ADDR, shift - 9, va, p));
                    }
                }
            }
            out.sort_by_key(|m| m.vaddr);
            return out;
        }
        let pae = g.cr4 & cr::CR4_PAE != 0;
        let pse = g.cr4 & cr::CR4_PSE != 0;
        if pae {
            for i in 0..4u64 {
                let pdpte = rd((g.cr3 & 0xffff_ffe0) + i * 8, 8);
                if pdpte & 1 == 0 {
                    continue;
                }
                for j in 0..512u64 {
                    let pde = rd((pdpte & ADDR) + j * 8, 8);
                    if pde & 1 == 0 {
                        continue;
                    }
                    let va = (i << 30) | (j << 21);
                    let p = (pde & 2 != 0, pde & 4 != 0, !(nxe && pde & (1 << 63) != 0));
                    if pde & 0x80 != 0 {
                        out.push(leaf(va, pde, 1 << 21, ADDR, (true, true, true)));
                        continue;
                    }
                    for k in 0..512u64 {
                        let pte = rd((pde & ADDR) + k * 8, 8);
                        if pte & 1 != 0 {
                            out.push(leaf(va | (k << 12), pte, 1 << 12, ADDR, p));
                        }
                    }
                }
            }
        } else {
            for i in 0..1024u64 {
                let pde = rd((g.cr3 & 0xffff_f000) + i * 4, 4);
                if pde & 1 == 0 {
                    continue;
                }
                let va = i << 22;
                if pse && pde & 0x80 != 0 {
                    out.push(leaf(va, pde, 1 << 22, 0xffff_f000, (true, true, true)));
                    continue;
                }
                let p = (pde & 2 != 0, pde & 4 != 0, true);
                for k in 0..1024u64 {
                    let pte = rd((pde & 0xffff_f000) + k * 4, 4);
                    if pte & 1 != 0 {
                        out.push(leaf(va | (k << 12), pte, 1 << 12, 0xffff_f000, p));
                    }
                }
            }
        }
        out
    }

    /// The registers in the layout of QEMU's `info registers` (64-bit form).
    pub fn format_registers(&self) -> String {
        let c = self.core();
        let g = &c.guest;
        let r = &c.regs.0;
        let fl = rflags(c);
        let mut s = String::new();
        let names = [
            "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", "R8", "R9", "R10", "R11",
            "R12", "R13", "R14", "R15",
        ];
        let slots = [
            RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, 8, 9, 10, 11, 12, 13, 14, 15,
        ];
        for (k, (n, slot)) in names.iter().zip(slots).enumerate() {
            let _ = write!(s, "{n:<3}={:016x}", r[slot as usize]);
            s.push(if k % 4 == 3 { '\n' } else { ' ' });
        }
        let flag_names = [
            (crate::regs::fl::DF, 'D'),
            (crate::regs::fl::OF, 'O'),
            (crate::regs::fl::SF, 'S'),
            (crate::regs::fl::ZF, 'Z'),
            (crate::regs::fl::AF, 'A'),
            (crate::regs::fl::PF, 'P'),
            (crate::regs::fl::CF, 'C'),
        ];
        let flags: String = flag_names
            .iter()
            .map(|&(b, ch)| if fl & b != 0 { ch } else { '-' })
            .collect();
        let _ = writeln!(
            s,
            "RIP={:016x} RFL={:08x} [{flags}] CPL={} II={} A20=1 SMM=0 HLT={}",
            r[RIP as usize], fl, g.cpl, g.irq_shadow as u8, g.halted as u8
        );
        let seg_line = |s: &mut String, name: &str, sel: u16, base: u64, limit: u32, attr: u16| {
            let _ = writeln!(
                s,
                "{name:<3}={sel:04x} {base:016x} {limit:08x} {:08x}",
                (attr as u32 & 0xf0ff) << 8
            );
        };
        for (n, name) in ["ES", "CS", "SS", "DS", "FS", "GS"].iter().enumerate() {
            let g = &g.segs[n];
            let base = r[SEG_BASE as usize + n];
            seg_line(&mut s, name, g.selector, base, g.limit, g.attr);
        }
        let (l, t) = (&g.ldtr, &g.tr);
        seg_line(&mut s, "LDT", l.selector, l.base, l.limit, l.attr);
        seg_line(&mut s, "TR", t.selector, t.base, t.limit, t.attr);
        let _ = writeln!(s, "GDT=     {:016x} {:08x}", g.gdtr.base, g.gdtr.limit);
        let _ = writeln!(s, "IDT=     {:016x} {:08x}", g.idtr.base, g.idtr.limit);
        let _ = writeln!(
            s,
            "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
            g.cr0, g.cr2, g.cr3, g.cr4
        );
        let _ = writeln!(
            s,
            "DR0={:016x} DR1={:016x} DR2={:016x} DR3={:016x}",
            g.dr[0], g.dr[1], g.dr[2], g.dr[3]
        );
        let _ = writeln!(s, "DR6={:016x} DR7={:016x}", g.dr[6], g.dr[7]);
        let _ = writeln!(s, "EFER={:016x} CR8={:x}", g.efer, g.cr8);
        let _ = writeln!(
            s,
            "FCW={:04x} FSW={:04x} [ST={}] FTW={:04x} MXCSR={:08x}",
            g.x87.fcw,
            (g.x87.fsw & !0x3800) | ((g.x87.top as u16 & 7) << 11),
            g.x87.top,
            g.x87.ftw,
            g.mxcsr
        );
        for (i, x) in g.xmm.iter().enumerate() {
            let _ = write!(s, "XMM{i:02}={:016x}{:016x}", x[1], x[0]);
            s.push(if i % 2 == 1 { '\n' } else { ' ' });
        }
        s
    }
}

/// Set segment `n`'s base (the engine slot is its one home).
fn set_base(c: &mut tci64_engine::Core<crate::X86>, n: usize, base: u64) {
    c.regs.0[SEG_BASE as usize + n] = base;
}
