//! A thread's scheduling state: policy, static priority, nice and timer
//! slack — `sched_policy`, `sched_prio`, `sched_nice` of `thread_core`, and
//! `timer_slack_ns` (a criu-rs extension, field 1001).
//!
//! Not carried: CPU affinity and I/O priority (CRIU 4.2's images have no
//! field for them), `SCHED_RESET_ON_FORK` (not visible in /proc), and
//! SCHED_DEADLINE (refused).

use crate::image::pb;
use crate::remote::Tracee;

use super::{Error, Result};

const PR_GET_TIMERSLACK: u64 = 30;
const PR_SET_TIMERSLACK: u64 = 29;
const SCHED_DEADLINE: u32 = 6;

/// Dump half, from inside the thread: its timer slack in ns.
pub fn dump_slack(t: &mut Tracee) -> Result<u64> {
    Ok(t.syscall(libc::SYS_prctl, &[PR_GET_TIMERSLACK, 0, 0, 0, 0])?)
}

/// Restore half, run in the puppet thread while it is still root (before
/// credentials): raising priority needs CAP_SYS_NICE.
pub fn restore(t: &mut Tracee, th: &pb::ThreadCoreEntry, scratch_off: u64) -> Result<()> {
    let tid = t.pid();
    let policy = th.sched_policy.unwrap_or(0);
    let prio = th.sched_prio.unwrap_or(0);
    if policy == SCHED_DEADLINE {
        return Err(Error::Unsupported {
            pid: tid,
            what: "SCHED_DEADLINE threads are not restored".into(),
        });
    }
    let param = t.scratch_put(scratch_off, &(prio as i32).to_le_bytes())?;
    t.syscall(libc::SYS_sched_setscheduler, &[0, u64::from(policy), param])?;
    if let Some(nice) = th.sched_nice {
        t.syscall(
            libc::SYS_setpriority,
            &[libc::PRIO_PROCESS as u64, 0, nice as i64 as u64],
        )?;
    }
    if let Some(slack) = th.timer_slack_ns {
        t.syscall(libc::SYS_prctl, &[PR_SET_TIMERSLACK, slack, 0, 0, 0])?;
    }
    Ok(())
}
