//! Interval timers (`task_timers_entry`): ITIMER_REAL, ITIMER_VIRTUAL,
//! ITIMER_PROF, read and armed again with remote get/setitimer.

use crate::image::pb;
use crate::remote::Tracee;

use super::Result;

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
