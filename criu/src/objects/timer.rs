//! Interval timers (`task_timers_entry`): ITIMER_REAL, ITIMER_VIRTUAL,
//! ITIMER_PROF, read and armed again with remote get/setitimer.

use crate::image::pb;
use crate::remote::Tracee;

use super::{Error, Result};

fn get(t: &mut Tracee, which: i32, off: u64) -> Result<pb::ItimerEntry> {
    let (base, _) = t.scratch().unwrap_or((0, 0));
    t.syscall(libc::SYS_getitimer, &[which as u64, base + off])?;
    let mut b = [0u8; 32];
    t.scratch_get(off, &mut b)?;
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    Ok(pb::ItimerEntry {
        isec: w(0),
        iusec: w(1),
        vsec: w(2),
        vusec: w(3),
    })
}

/// Dump half.
pub fn dump(t: &mut Tracee, scratch_off: u64) -> Result<pb::TaskTimersEntry> {
    Ok(pb::TaskTimersEntry {
        real: get(t, libc::ITIMER_REAL, scratch_off)?,
        virt: get(t, libc::ITIMER_VIRTUAL, scratch_off)?,
        prof: get(t, libc::ITIMER_PROF, scratch_off)?,
        posix: Vec::new(),
    })
}

/// Restore half: arms the timers that were armed.
pub fn restore(t: &mut Tracee, timers: &pb::TaskTimersEntry, scratch_off: u64) -> Result<()> {
    for (which, it) in [
        (libc::ITIMER_REAL, &timers.real),
        (libc::ITIMER_VIRTUAL, &timers.virt),
        (libc::ITIMER_PROF, &timers.prof),
    ] {
        if it.vsec == 0 && it.vusec == 0 {
            continue;
        }
        let mut b = Vec::with_capacity(32);
        for v in [it.isec, it.iusec, it.vsec, it.vusec] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let addr = t.scratch_put(scratch_off, &b)?;
        t.syscall(libc::SYS_setitimer, &[which as u64, addr, 0])?;
    }
    Ok(())
}

/// prctl to ask timer_create for the id in `*timerid` (Linux 6.13+).
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

fn timespec_pair(b: &[u8; 32]) -> (u64, u64, u64, u64) {
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    (w(0), w(1), w(2), w(3))
}

/// Dump half of POSIX timers: what /proc/PID/timers says of each, plus its
/// remaining time, interval and overrun asked from inside the task.
pub fn dump_posix(t: &mut Tracee, pid: i32, scratch_off: u64) -> Result<Vec<pb::PosixTimerEntry>> {
    let (base, _) = t.scratch().unwrap_or((0, 0));
    let mut out = Vec::new();
    for pt in crate::proc::read_timers(pid)? {
        let id = pt.id as u64;
        t.syscall(libc::SYS_timer_gettime, &[id, base + scratch_off])?;
        let mut its = [0u8; 32];
        t.scratch_get(scratch_off, &mut its)?;
        let (isec, insec, vsec, vnsec) = timespec_pair(&its);
        let overrun = t.syscall(libc::SYS_timer_getoverrun, &[id])? as u32;
        let thread = pt.notify & crate::proc::timers::SIGEV_THREAD_ID != 0;
        out.push(pb::PosixTimerEntry {
            it_id: pt.id as u32,
            clock_id: pt.clock as u32,
            si_signo: pt.signo as u32,
            it_sigev_notify: pt.notify as u32,
            sival_ptr: pt.sival,
            overrun,
            isec,
            insec,
            vsec,
            vnsec,
            notify_thread_id: thread.then_some(pt.target),
        });
    }
    Ok(out)
}

/// Restore half of POSIX timers: each made again with its id (the kernel
/// hands out the requested id once PR_TIMER_CREATE_RESTORE_IDS is on), its
/// clock and notification, and armed with the time it had left.
pub fn restore_posix(
    t: &mut Tracee,
    pid: i32,
    timers: &[pb::PosixTimerEntry],
    scratch_off: u64,
) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let on = t.syscall_raw(libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0])?;
    if on < 0 {
        return Err(Error::Unsupported {
            pid,
            what:
                "restoring POSIX timer ids needs PR_TIMER_CREATE_RESTORE_IDS (Linux 6.13 or later)"
                    .into(),
        });
    }
    let (base, _) = t.scratch().unwrap_or((0, 0));
    let res = (|| -> Result<()> {
        for e in timers {
            // struct sigevent: value, signo, notify, then the thread id.
            let mut sev = [0u8; 64];
            sev[0..8].copy_from_slice(&e.sival_ptr.to_le_bytes());
            sev[8..12].copy_from_slice(&e.si_signo.to_le_bytes());
            sev[12..16].copy_from_slice(&e.it_sigev_notify.to_le_bytes());
            sev[16..20].copy_from_slice(&e.notify_thread_id.unwrap_or(0).to_le_bytes());
            t.scratch_put(scratch_off, &sev)?;
            t.scratch_put(scratch_off + 64, &e.it_id.to_le_bytes())?;
            t.syscall(
                libc::SYS_timer_create,
                &[
                    u64::from(e.clock_id),
                    base + scratch_off,
                    base + scratch_off + 64,
                ],
            )?;
            let mut got = [0u8; 4];
            t.scratch_get(scratch_off + 64, &mut got)?;
            if u32::from_le_bytes(got) != e.it_id {
                return Err(Error::Mismatch {
                    what: format!(
                        "pid {pid}: POSIX timer {} came back as {}",
                        e.it_id,
                        u32::from_le_bytes(got)
                    ),
                });
            }
            if e.vsec != 0 || e.vnsec != 0 {
                let mut its = Vec::with_capacity(32);
                for v in [e.isec, e.insec, e.vsec, e.vnsec] {
                    its.extend_from_slice(&v.to_le_bytes());
                }
                t.scratch_put(scratch_off, &its)?;
                t.syscall(
                    libc::SYS_timer_settime,
                    &[u64::from(e.it_id), 0, base + scratch_off, 0],
                )?;
            }
        }
        Ok(())
    })();
    t.syscall(libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0])?;
    res
}
