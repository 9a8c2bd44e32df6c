//! A thread's CPU state: general-purpose registers, the FPU/SSE/AVX/AVX-512
//! state (XSAVE), and the segment bases — `thread_info_x86` in `core-*.img`.

use crate::image::pb;
use crate::remote::{mem, Regs, Tracee};
use crate::sys::cpu;
use tracing::{debug, warn};

use super::{Error, Result};

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// The registers a task must resume with, given those it was stopped with:
/// a task stopped inside an interrupted syscall restarts it (or, where the
/// kernel's restart block cannot be carried over, sees EINTR) — as the kernel
/// itself would do on its way back to user space.
pub fn resume_regs(stopped: &Regs) -> Regs {
    let mut r = *stopped;
    if (r.orig_rax as i64) >= 0 {
        match -(r.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                r.rax = r.orig_rax;
                r.rip -= 2;
            }
            // poll without a timeout: its restart block holds nothing but
            // the arguments still in the registers, so it is issued again.
            ERESTART_RESTARTBLOCK if r.orig_rax as i64 == libc::SYS_poll && (r.rdx as i32) < 0 => {
                r.rax = r.orig_rax;
                r.rip -= 2;
            }
            ERESTART_RESTARTBLOCK => r.rax = (-(libc::EINTR as i64)) as u64,
            _ => {}
        }
    }
    // orig_ax keeps the syscall the task was in, as in CRIU's images:
    // restore reads it to resume an interrupted sleep.
    r
}

fn args(r: &Regs) -> [u64; 6] {
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
}

/// The syscall a thread stopped with `regs` is in, looking through
/// `restart_syscall`: a call that a pre-dump interrupted goes on in the
/// kernel as `restart_syscall` with the same instruction pointer and
/// argument registers; `records` (what the pre-dump saw) name the call.
/// `None` when the thread is in no syscall, or in a `restart_syscall` no
/// record explains.
pub fn syscall_of(tid: i32, regs: &Regs, records: &[pb::MmTrackRestart]) -> Option<u64> {
    if (regs.orig_rax as i64) < 0 {
        return None;
    }
    if regs.orig_rax as i64 != libc::SYS_restart_syscall {
        return Some(regs.orig_rax);
    }
    let a = args(regs);
    records
        .iter()
        .find(|r| r.tid == tid as u32 && r.ip == regs.rip && r.args[..] == a[..])
        .map(|r| r.nr)
}

/// What a (pre-)dump records of a thread it stopped with `regs` in an
/// interrupted syscall that the kernel resumes through `restart_syscall`
/// when the thread is let go; `prev` are the records of the previous
/// pre-dump (the thread may still be in the call it interrupted).
pub fn restart_record(
    tid: i32,
    regs: &Regs,
    prev: &[pb::MmTrackRestart],
) -> Option<pb::MmTrackRestart> {
    if -(regs.rax as i64) != ERESTART_RESTARTBLOCK {
        return None;
    }
    let nr = syscall_of(tid, regs, prev)?;
    (nr as i64 != libc::SYS_restart_syscall).then(|| pb::MmTrackRestart {
        tid: tid as u32,
        nr,
        ip: regs.rip,
        args: args(regs).to_vec(),
    })
}

/// A relative sleep the dump interrupted (image registers say EINTR from
/// nanosleep or clock_nanosleep): the kernel's restart block is gone, so
/// the call is issued again for the time that was left — what the kernel
/// itself would have done on a stop and continue. The remaining time is
/// the one the kernel wrote to the caller's `rem` when interrupted (the
/// whole request when there is none); a timespec for the new call goes
/// below the red zone of the thread's stack.
fn resume_sleep(pid: i32, r: &mut Regs) -> Result<()> {
    let eintr = (-(libc::EINTR as i64)) as u64;
    let nr = r.orig_rax as i64;
    if r.rax != eintr || (nr != libc::SYS_nanosleep && nr != libc::SYS_clock_nanosleep) {
        return Ok(());
    }
    let (clock, flags, req, rem) = if nr == libc::SYS_nanosleep {
        (libc::CLOCK_MONOTONIC as u64, 0, r.rdi, r.rsi)
    } else {
        (r.rdi, r.rsi, r.rdx, r.r10)
    };
    if flags & libc::TIMER_ABSTIME as u64 != 0 {
        return Ok(());
    }
    let mut ts = [0u8; 16];
    let from = if rem != 0 { rem } else { req };
    if let Err(e) = mem::read(pid, from, &mut ts) {
        // Leave the EINTR the images say.
        tracing::warn!(
            pid,
            "the time left of an interrupted sleep cannot be read at {from:#x} ({e}): it will see EINTR"
        );
        return Ok(());
    }
    tracing::debug!(
        pid,
        "an interrupted relative sleep goes on for the time it had left"
    );
    let at = (r.rsp - 256) & !15;
    mem::write(pid, at, &ts).map_err(|source| Error::Io {
        pid,
        what: format!("writing the time left of an interrupted sleep at {at:#x}"),
        source,
    })?;
    r.rax = libc::SYS_clock_nanosleep as u64;
    r.rdi = clock;
    r.rsi = 0;
    r.rdx = at;
    r.r10 = rem;
    r.rip -= 2;
    Ok(())
}

pub fn regs_to_image(r: &Regs) -> pb::UserX86RegsEntry {
    pb::UserX86RegsEntry {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        bp: r.rbp,
        bx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        ax: r.rax,
        cx: r.rcx,
        dx: r.rdx,
        si: r.rsi,
        di: r.rdi,
        orig_ax: r.orig_rax,
        ip: r.rip,
        cs: r.cs,
        flags: r.eflags,
        sp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    }
}

pub fn regs_from_image(e: &pb::UserX86RegsEntry) -> Regs {
    let mut r = zeroed_regs();
    r.r15 = e.r15;
    r.r14 = e.r14;
    r.r13 = e.r13;
    r.r12 = e.r12;
    r.rbp = e.bp;
    r.rbx = e.bx;
    r.r11 = e.r11;
    r.r10 = e.r10;
    r.r9 = e.r9;
    r.r8 = e.r8;
    r.rax = e.ax;
    r.rcx = e.cx;
    r.rdx = e.dx;
    r.rsi = e.si;
    r.rdi = e.di;
    r.orig_rax = e.orig_ax;
    r.rip = e.ip;
    r.cs = e.cs;
    r.eflags = e.flags;
    r.rsp = e.sp;
    r.ss = e.ss;
    r.fs_base = e.fs_base;
    r.gs_base = e.gs_base;
    r.ds = e.ds;
    r.es = e.es;
    r.fs = e.fs;
    r.gs = e.gs;
    r
}

fn zeroed_regs() -> Regs {
    Regs {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        rbp: 0,
        rbx: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rax: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        orig_rax: 0,
        rip: 0,
        cs: 0,
        eflags: 0,
        rsp: 0,
        ss: 0,
        fs_base: 0,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
    }
}

fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap_or_default())
}
fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or_default())
}
fn u32s(b: &[u8], off: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| le_u32(b, off + 4 * i)).collect()
}
fn u64s(b: &[u8], off: usize, n: usize) -> Vec<u64> {
    (0..n).map(|i| le_u64(b, off + 8 * i)).collect()
}

/// The XSAVE components the image format has a field for: (component
/// number, number of 32- or 64-bit words).
const YMM: u32 = 2;
const BNDREGS: u32 = 3;
const BNDCSR: u32 = 4;
const OPMASK: u32 = 5;
const ZMM_HI256: u32 = 6;
const HI16_ZMM: u32 = 7;
const PKRU: u32 = 9;
const LEGACY_AREA: usize = 512;
const XSAVE_HEADER: usize = 64;

/// An XSAVE component and its image words, 32- or 64-bit.
type Component<'a> = (u32, Option<&'a [u32]>, Option<&'a [u64]>);

/// Component `n`'s bytes in a standard-format XSAVE buffer, when the CPU has
/// it enabled and the buffer holds it.
fn component(xcr0: u64, buf: &[u8], n: u32) -> Option<(usize, usize)> {
    if xcr0 & (1 << n) == 0 {
        return None;
    }
    let c = cpu::xsave_component(n);
    let (off, size) = (c.offset as usize, c.size as usize);
    (off + size <= buf.len() && size > 0).then_some((off, size))
}

/// Decodes an `NT_X86_XSTATE` buffer into the image's FPU entry.
pub fn fpregs_to_image(buf: &[u8]) -> pb::UserX86FpregsEntry {
    let mut b = buf.to_vec();
    b.resize(b.len().max(LEGACY_AREA + XSAVE_HEADER), 0);
    let (xcr0, _) = cpu::xsave_features();
    let words32 = |n: u32| component(xcr0, &b, n).map(|(o, s)| u32s(&b, o, s / 4));
    let words64 = |n: u32| component(xcr0, &b, n).map(|(o, s)| u64s(&b, o, s / 8));
    let xsave = pb::UserX86XsaveEntry {
        xstate_bv: le_u64(&b, LEGACY_AREA),
        ymmh_space: words32(YMM).unwrap_or_default(),
        bndreg_state: words64(BNDREGS).unwrap_or_default(),
        bndcsr_state: words64(BNDCSR).unwrap_or_default(),
        opmask_reg: words64(OPMASK).unwrap_or_default(),
        zmm_upper: words64(ZMM_HI256).unwrap_or_default(),
        hi16_zmm: words64(HI16_ZMM).unwrap_or_default(),
        pkru: words32(PKRU).unwrap_or_default(),
        cet: None,
    };
    pb::UserX86FpregsEntry {
        cwd: u32::from(le_u16(&b, 0)),
        swd: u32::from(le_u16(&b, 2)),
        twd: u32::from(b[4]),
        fop: u32::from(le_u16(&b, 6)),
        rip: le_u64(&b, 8),
        rdp: le_u64(&b, 16),
        mxcsr: le_u32(&b, 24),
        mxcsr_mask: le_u32(&b, 28),
        st_space: u32s(&b, 32, 32),
        xmm_space: u32s(&b, 160, 64),
        padding: u32s(&b, 416, 24),
        xsave: Some(xsave),
    }
}

fn put32(b: &mut [u8], off: usize, words: &[u32], max: usize) {
    for (i, w) in words.iter().take(max).enumerate() {
        b[off + 4 * i..off + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
}
fn put64(b: &mut [u8], off: usize, words: &[u64], max: usize) {
    for (i, w) in words.iter().take(max).enumerate() {
        b[off + 8 * i..off + 8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
}

/// Builds the `NT_X86_XSTATE` buffer for this CPU from the image's FPU entry.
pub fn fpregs_from_image(e: &pb::UserX86FpregsEntry) -> Vec<u8> {
    let (xcr0, size) = cpu::xsave_features();
    let mut b = vec![0u8; (size as usize).max(LEGACY_AREA + XSAVE_HEADER)];
    b[0..2].copy_from_slice(&(e.cwd as u16).to_le_bytes());
    b[2..4].copy_from_slice(&(e.swd as u16).to_le_bytes());
    b[4] = e.twd as u8;
    b[6..8].copy_from_slice(&(e.fop as u16).to_le_bytes());
    b[8..16].copy_from_slice(&e.rip.to_le_bytes());
    b[16..24].copy_from_slice(&e.rdp.to_le_bytes());
    b[24..28].copy_from_slice(&e.mxcsr.to_le_bytes());
    b[28..32].copy_from_slice(&e.mxcsr_mask.to_le_bytes());
    put32(&mut b, 32, &e.st_space, 32);
    put32(&mut b, 160, &e.xmm_space, 64);
    // Legacy x87 and SSE state are always present.
    let mut bv = 0b11;
    if let Some(x) = &e.xsave {
        bv = x.xstate_bv & xcr0;
        let parts: [Component; 7] = [
            (YMM, Some(&x.ymmh_space), None),
            (BNDREGS, None, Some(&x.bndreg_state)),
            (BNDCSR, None, Some(&x.bndcsr_state)),
            (OPMASK, None, Some(&x.opmask_reg)),
            (ZMM_HI256, None, Some(&x.zmm_upper)),
            (HI16_ZMM, None, Some(&x.hi16_zmm)),
            (PKRU, Some(&x.pkru), None),
        ];
        for (n, w32, w64) in parts {
            if let Some((off, sz)) = component(xcr0, &b, n) {
                if let Some(w) = w32 {
                    put32(&mut b, off, w, sz / 4);
                }
                if let Some(w) = w64 {
                    put64(&mut b, off, w, sz / 8);
                }
            }
        }
    }
    b[LEGACY_AREA..LEGACY_AREA + 8].copy_from_slice(&bv.to_le_bytes());
    b
}

/// Dump half: the CPU state of a seized thread, registers already adjusted
/// so that an interrupted syscall restarts on restore. `restarts`: what the
/// parent pre-dump recorded of threads it interrupted (see
/// [`syscall_of`]): a thread still in such a call is dumped as in the call
/// itself, so that restore resumes it as after a plain dump.
pub fn dump(
    t: &Tracee,
    clear_tid_addr: u64,
    restarts: &[pb::MmTrackRestart],
) -> Result<pb::ThreadInfoX86> {
    let xstate = t.xstate()?;
    let mut regs = *t.regs();
    if regs.orig_rax as i64 == libc::SYS_restart_syscall {
        match syscall_of(t.pid(), &regs, restarts) {
            Some(nr) => {
                debug!(
                    tid = t.pid(),
                    "in restart_syscall of {}",
                    crate::remote::syscall_name(nr as i64)
                );
                regs.orig_rax = nr;
            }
            None => warn!(
                tid = t.pid(),
                "resumes a syscall interrupted before through restart_syscall, which criu cannot name: it will see EINTR after restore"
            ),
        }
    }
    Ok(pb::ThreadInfoX86 {
        clear_tid_addr,
        gpregs: regs_to_image(&resume_regs(&regs)),
        fpregs: fpregs_to_image(&xstate),
        tls: Vec::new(),
    })
}

/// Restore half: give the puppet thread its CPU state back. Called last,
/// right before the thread is let go.
pub fn restore(t: &mut Tracee, ti: &pb::ThreadInfoX86) -> Result<()> {
    t.set_xstate(&fpregs_from_image(&ti.fpregs))?;
    let mut r = regs_from_image(&ti.gpregs);
    resume_sleep(t.pid(), &mut r)?;
    r.orig_rax = u64::MAX;
    t.set_regs(&r)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_syscalls_restart_or_fail_with_eintr() {
        let mut r = zeroed_regs();
        r.orig_rax = 35; // nanosleep
        r.rip = 0x1002;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        let n = resume_regs(&r);
        assert_eq!(n.rax as i64, -(libc::EINTR as i64));
        assert_eq!(n.rip, 0x1002);

        r.orig_rax = 34; // pause
        r.rax = (-ERESTARTNOHAND) as u64;
        let n = resume_regs(&r);
        assert_eq!((n.rax, n.rip), (34, 0x1000));

        r.orig_rax = u64::MAX; // not in a syscall: untouched
        r.rax = (-ERESTARTSYS) as u64;
        assert_eq!(resume_regs(&r).rip, 0x1002);
    }

    #[test]
    fn restart_syscall_is_seen_through_by_the_pre_dump_record() {
        let mut r = zeroed_regs();
        r.orig_rax = libc::SYS_nanosleep as u64;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        r.rip = 0x7000_1002;
        (r.rdi, r.rsi) = (0x7ffc_0010, 0x7ffc_0020);
        // The pre-dump stops the thread in nanosleep and records it.
        let rec = restart_record(42, &r, &[]).expect("a record");
        let recs = std::slice::from_ref(&rec);
        assert_eq!((rec.tid, rec.nr, rec.ip), (42, 35, 0x7000_1002));
        // Not interrupted that way: nothing to record.
        let mut other = r;
        other.rax = (-ERESTARTNOHAND) as u64;
        assert!(restart_record(42, &other, &[]).is_none());

        // Let go, the kernel resumes it as restart_syscall: same ip, same
        // argument registers.
        let mut later = r;
        later.orig_rax = libc::SYS_restart_syscall as u64;
        assert_eq!(syscall_of(42, &later, recs), Some(35));
        assert_eq!(syscall_of(42, &later, &[]), None);
        assert_eq!(syscall_of(43, &later, recs), None);
        let mut moved = later;
        moved.rsi = 0;
        assert_eq!(syscall_of(42, &moved, recs), None);
        // A second pre-dump carries the record on.
        assert_eq!(restart_record(42, &later, recs), Some(rec.clone()));
        assert!(restart_record(42, &later, &[]).is_none());
        // Not in a syscall, or in an ordinary one.
        let mut idle = r;
        idle.orig_rax = u64::MAX;
        assert_eq!(syscall_of(42, &idle, recs), None);
        assert_eq!(syscall_of(42, &r, &[]), Some(35));
    }

    #[test]
    fn fpu_state_survives_image_round_trip() {
        let (_, size) = cpu::xsave_features();
        let mut buf = vec![0u8; size as usize];
        for (i, b) in buf.iter_mut().enumerate().take(416) {
            *b = (i * 7) as u8;
        }
        buf[5] = 0; // reserved, not in the image
        buf[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        buf[LEGACY_AREA..LEGACY_AREA + 8].copy_from_slice(&3u64.to_le_bytes());
        let img = fpregs_to_image(&buf);
        let back = fpregs_from_image(&img);
        assert_eq!(&back[..416], &buf[..416]);
        assert_eq!(img.xsave.as_ref().map(|x| x.xstate_bv), Some(3));
    }
}
