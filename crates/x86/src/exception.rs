//! Exception and interrupt delivery through the IDT (long mode and protected mode), with
//! stack switching, IST, error codes, and double/triple fault detection.

use crate::cpu::{rflags, set_rflags};
use crate::helpers::Bus;
use crate::regs::*;
use crate::state::{cr, vec, Event, EventKind, Segment};
use crate::X86;
use tci64_engine::{Core, Trap};

/// Why delivery itself failed: the exception to raise instead.
struct Nested(u8, Option<u32>);

fn nested_from_trap(c: &mut Core<X86>, _t: Trap) -> Nested {
    match c.guest.pending.take() {
        Some(e) => Nested(e.vector, e.error_code),
        None => Nested(vec::GP, Some(0)),
    }
}

/// Is this vector "contributory" for the double-fault rules?
fn contributory(v: u8) -> bool {
    matches!(v, vec::DE | vec::TS | vec::NP | vec::SS | vec::GP)
}

/// Deliver an event through the IDT.
pub fn deliver(c: &mut Core<X86>, bus: &mut Bus, ev: Event) {
    if c.trace.int {
        log::info!(target: "tci64::trace",
            "INT {:#04x} ({:?}) err={:?} at rip={:#x} cpl={} cr2={:#x} rsp={:#x}",
            ev.vector, ev.kind, ev.error_code, c.regs.0[RIP as usize], c.guest.cpl, c.guest.cr2, c.regs.0[RSP as usize]);
    }
    c.guest.halted = false;
    let mut ev = ev;
    for _ in 0..4 {
        match deliver_once(c, bus, ev) {
            Ok(()) => return,
            Err(Nested(v, code)) => {
                if ev.vector == vec::DF {
                    break;
                }
                // Only exceptions count as the first event (an external interrupt or INT n
                // with vector 13 is benign).
                let exc = ev.kind == EventKind::Exception;
                let df = (exc && contributory(ev.vector) && contributory(v))
                    || (exc && ev.vector == vec::PF && (contributory(v) || v == vec::PF));
                ev = if df {
                    Event {
                        vector: vec::DF,
                        error_code: Some(0),
                        kind: EventKind::Exception,
                    }
                } else {
                    Event {
                        vector: v,
                        error_code: code,
                        kind: EventKind::Exception,
                    }
                };
                if c.trace.int {
                    log::info!(target: "tci64::trace", "  delivery failed: {v:#x}; now delivering {:#x}", ev.vector);
                }
            }
        }
    }
    log::warn!("triple fault at rip={:#x}", c.regs.0[RIP as usize]);
    c.guest.reset_requested = true;
}

fn read_sys(c: &mut Core<X86>, bus: &mut Bus, addr: u64, size: usize) -> Result<u64, Nested> {
    c.read(bus, addr, size, 0)
        .map_err(|t| nested_from_trap(c, t))
}

fn write_sys(
    c: &mut Core<X86>,
    bus: &mut Bus,
    addr: u64,
    size: usize,
    v: u64,
) -> Result<(), Nested> {
    c.write(bus, addr, size, 0, v)
        .map_err(|t| nested_from_trap(c, t))
}

/// Read the descriptor for `sel` from the GDT/LDT (8 bytes).
pub(crate) fn read_descriptor(c: &mut Core<X86>, bus: &mut Bus, sel: u16) -> Result<u64, Nested2> {
    let (base, limit) = if sel & 4 != 0 {
        (c.guest.ldtr.base, c.guest.ldtr.limit)
    } else {
        (c.guest.gdtr.base, c.guest.gdtr.limit as u32)
    };
    let off = (sel & !7) as u32;
    if off + 7 > limit {
        return Err(Nested2::Gp(sel & !3));
    }
    c.read(bus, base + off as u64, 8, 0)
        .map_err(|_| Nested2::Fault)
}

/// Failure reading a descriptor.
pub(crate) enum Nested2 {
    /// #GP with this error code.
    Gp(u16),
    /// A page fault (recorded in `pending`).
    Fault,
}

/// The hidden-part fields of a descriptor's 8 bytes.
pub fn seg_from_descriptor(sel: u16, d: u64) -> Segment {
    let base = ((d >> 16) & 0xff_ffff) | (((d >> 56) & 0xff) << 24);
    let mut limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
    let attr = ((d >> 40) & 0xf0ff) as u16;
    if attr & Segment::ATTR_G != 0 {
        limit = (limit << 12) | 0xfff;
    }
    Segment {
        selector: sel,
        base,
        limit,
        attr,
    }
}

fn deliver_once(c: &mut Core<X86>, bus: &mut Bus, ev: Event) -> Result<(), Nested> {
    let long = c.guest.efer & cr::EFER_LMA != 0;
    let v = ev.vector as u64;
    let ext = matches!(ev.kind, EventKind::External | EventKind::Exception) as u32;
    let idt_err = Some(((v as u32) << 3) | 2 | ext);
    let entry = if long { 16 } else { 8 };
    if c.guest.cr0 & cr::CR0_PE == 0 {
        return deliver_real(c, bus, ev);
    }
    if v * entry + entry - 1 > c.guest.idtr.limit as u64 {
        return Err(Nested(vec::GP, idt_err));
    }
    let gaddr = c.guest.idtr.base.wrapping_add(v * entry);
    let lo = read_sys(c, bus, gaddr, 8)?;
    let hi = if long {
        read_sys(c, bus, gaddr.wrapping_add(8), 8)?
    } else {
        0
    };
    let typ = (lo >> 40) & 0xf;
    let dpl = ((lo >> 45) & 3) as u8;
    let present = lo & (1 << 47) != 0;
    let valid_type = if long {
        typ == 0xe || typ == 0xf
    } else {
        matches!(typ, 0x6 | 0x7 | 0xe | 0xf)
    };
    if !valid_type {
        return Err(Nested(vec::GP, idt_err));
    }
    if let EventKind::Software { .. } = ev.kind {
        if dpl < c.guest.cpl {
            return Err(Nested(vec::GP, idt_err));
        }
    }
    if !present {
        return Err(Nested(vec::NP, idt_err));
    }
    let sel = ((lo >> 16) & 0xffff) as u16;
    let mut offset = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000);
    if long {
        offset |= (hi & 0xffff_ffff) << 32;
    }
    let ist = if long { (lo >> 32) & 7 } else { 0 };
    if sel & !3 == 0 {
        return Err(Nested(vec::GP, Some(ext)));
    }
    let desc = match read_descriptor(c, bus, sel) {
        Ok(d) => d,
        Err(Nested2::Gp(e)) => return Err(Nested(vec::GP, Some(e as u32 | ext))),
        Err(Nested2::Fault) => return Err(nested_from_trap(c, Trap::Exception)),
    };
    let cs_new = seg_from_descriptor(sel, desc);
    if cs_new.attr & Segment::ATTR_P == 0 {
        return Err(Nested(vec::NP, Some((sel & !3) as u32 | ext)));
    }
    // The target must be a code segment; in long mode a 64-bit one (L=1, D=0).
    let code_ok = cs_new.attr & 0x18 == 0x18
        && (!long || (cs_new.attr & Segment::ATTR_L != 0 && cs_new.attr & Segment::ATTR_DB == 0));
    if !code_ok {
        return Err(Nested(vec::GP, Some((sel & !3) as u32 | ext)));
    }
    let new_cpl = if cs_new.attr & 0x04 != 0 {
        // Conforming code keeps the current privilege.
        c.guest.cpl
    } else {
        cs_new.dpl()
    };
    let old_cpl = c.guest.cpl;
    if new_cpl > old_cpl {
        return Err(Nested(vec::GP, Some((sel & !3) as u32 | ext)));
    }
    let old_rip = match ev.kind {
        EventKind::Software { next_rip } => next_rip,
        _ => c.regs.0[RIP as usize],
    };
    let old_flags = rflags(c);
    let old_cs = c.guest.segs[CS].selector as u64;
    let old_ss = c.guest.segs[SS].selector as u64;
    let old_rsp = c.regs.0[RSP as usize];
    if long {
        let mut rsp = old_rsp;
        if ist != 0 {
            rsp = read_sys(c, bus, c.guest.tr.base + 0x24 + (ist - 1) * 8, 8)?;
        } else if new_cpl < old_cpl {
            rsp = read_sys(c, bus, c.guest.tr.base + 4 + new_cpl as u64 * 8, 8)?;
        }
        rsp &= !0xf;
        let mut push = |c: &mut Core<X86>, bus: &mut Bus, val: u64| -> Result<(), Nested> {
            rsp = rsp.wrapping_sub(8);
            write_sys(c, bus, rsp, 8, val)
        };
        push(c, bus, old_ss)?;
        push(c, bus, old_rsp)?;
        push(c, bus, old_flags)?;
        push(c, bus, old_cs)?;
        push(c, bus, old_rip)?;
        if let Some(e) = ev.error_code {
            push(c, bus, e as u64)?;
        }
        c.regs.0[RSP as usize] = rsp;
        if new_cpl < old_cpl {
            // SS becomes a null selector with RPL = new CPL.
            crate::system::seg::set_seg(
                c,
                SS,
                Segment {
                    selector: new_cpl as u16,
                    base: 0,
                    limit: 0,
                    attr: 0,
                },
            );
        }
    } else {
        // 32-bit protected mode.
        let mut rsp = old_rsp & 0xffff_ffff;
        let mut ss_base = c.regs.0[SS_BASE as usize];
        let stack_switch = new_cpl < old_cpl;
        if stack_switch {
            let tss = c.guest.tr.base;
            let esp = read_sys(c, bus, tss + 4 + new_cpl as u64 * 8, 4)?;
            let ss = read_sys(c, bus, tss + 8 + new_cpl as u64 * 8, 2)? as u16;
            let sd = match read_descriptor(c, bus, ss) {
                Ok(d) => d,
                Err(_) => return Err(Nested(vec::TS, Some((ss & !3) as u32))),
            };
            let sseg = seg_from_descriptor(ss, sd);
            crate::system::seg::set_seg(c, SS, sseg);
            ss_base = sseg.base;
            rsp = esp;
        }
        let gate32 = typ & 8 != 0;
        let w = if gate32 { 4 } else { 2 };
        let mut push = |c: &mut Core<X86>, bus: &mut Bus, val: u64| -> Result<(), Nested> {
            rsp = rsp.wrapping_sub(w as u64) & 0xffff_ffff;
            write_sys(c, bus, (ss_base + rsp) & 0xffff_ffff, w, val)
        };
        if stack_switch {
            push(c, bus, old_ss)?;
            push(c, bus, old_rsp)?;
        }
        push(c, bus, old_flags)?;
        push(c, bus, old_cs)?;
        push(c, bus, old_rip)?;
        if let Some(e) = ev.error_code {
            push(c, bus, e as u64)?;
        }
        c.regs.0[RSP as usize] = (c.regs.0[RSP as usize] & !0xffff_ffff) | rsp;
    }
    let mut cs = cs_new;
    cs.selector = (sel & !3) | new_cpl as u16;
    crate::system::seg::set_seg(c, CS, cs);
    c.guest.cpl = new_cpl;
    let mut f = old_flags & !(fl::TF | fl::NT | fl::RF | fl::VM);
    if typ & 1 == 0 {
        f &= !fl::IF;
    }
    set_rflags(c, f);
    c.regs.0[RIP as usize] = offset;
    if ev.kind == EventKind::External && ev.vector == vec::NMI {
        c.guest.nmi_blocked = true;
    }
    Ok(())
}

/// Real-mode delivery through the IVT.
fn deliver_real(c: &mut Core<X86>, bus: &mut Bus, ev: Event) -> Result<(), Nested> {
    let v = ev.vector as u64;
    if v * 4 + 3 > c.guest.idtr.limit as u64 {
        return Err(Nested(vec::GP, Some(0)));
    }
    let ent = read_sys(c, bus, c.guest.idtr.base + v * 4, 4)?;
    let old_rip = match ev.kind {
        EventKind::Software { next_rip } => next_rip,
        _ => c.regs.0[RIP as usize],
    };
    let flags = rflags(c);
    let ss_base = c.regs.0[SS_BASE as usize];
    let mut sp = c.regs.0[RSP as usize] & 0xffff;
    for val in [
        flags & 0xffff,
        c.guest.segs[CS].selector as u64,
        old_rip & 0xffff,
    ] {
        sp = sp.wrapping_sub(2) & 0xffff;
        write_sys(c, bus, ss_base + sp, 2, val)?;
    }
    c.regs.0[RSP as usize] = (c.regs.0[RSP as usize] & !0xffff) | sp;
    let sel = (ent >> 16) as u16;
    c.guest.segs[CS].selector = sel;
    c.regs.0[CS_BASE as usize] = (sel as u64) << 4;
    c.regs.0[RIP as usize] = ent & 0xffff;
    set_rflags(c, flags & !(fl::IF | fl::TF | fl::AC));
    Ok(())
}
