//! A thread's scheduling state: policy, static priority, nice, timer slack,
//! CPU affinity and I/O priority — `sched_policy`, `sched_prio`,
//! `sched_nice` of `thread_core`, and three criu-rs extensions CRIU 4.2's
//! images have no field for: `timer_slack_ns` (1001), `cpu_affinity` (1002)
//! and `io_prio` (1003).
//!
//! Not carried: `SCHED_RESET_ON_FORK` (not visible in /proc), and
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

const IOPRIO_WHO_PROCESS: u64 = 1;
/// Bytes of CPU mask asked for: 1024 CPUs.
const AFFINITY_BYTES: usize = 128;

/// Dump half, from inside the thread: its CPU affinity, 64 CPUs a word.
pub fn dump_affinity(t: &mut Tracee, scratch_off: u64) -> Result<Vec<u64>> {
    let (base, _) = t.scratch().unwrap_or((0, 0));
    let n = t.syscall(
        libc::SYS_sched_getaffinity,
        &[0, AFFINITY_BYTES as u64, base + scratch_off],
    )? as usize;
    let mut mask = vec![0u8; n.min(AFFINITY_BYTES)];
    t.scratch_get(scratch_off, &mut mask)?;
    let mut words: Vec<u64> = mask
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}

/// Dump half, from inside the thread: its I/O priority.
pub fn dump_ioprio(t: &mut Tracee) -> Result<u32> {
    Ok(t.syscall(libc::SYS_ioprio_get, &[IOPRIO_WHO_PROCESS, 0])? as u32)
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
    if let Some(prio) = th.io_prio {
        t.syscall(
            libc::SYS_ioprio_set,
            &[IOPRIO_WHO_PROCESS, 0, u64::from(prio)],
        )?;
    }
    if !th.cpu_affinity.is_empty() {
        let mask: Vec<u8> = th
            .cpu_affinity
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        let addr = t.scratch_put(scratch_off, &mask)?;
        // CPUs of the dumping machine that this one lacks: the kernel says
        // EINVAL when none of the mask is left; the thread then keeps
        // criu's affinity, which the log says.
        let r = t.syscall_raw(libc::SYS_sched_setaffinity, &[0, mask.len() as u64, addr])?;
        if r < 0 {
            tracing::warn!(
                tid,
                "CPU affinity {:x?} cannot be set here: {}",
                th.cpu_affinity,
                nix::errno::Errno::from_raw(-r as i32)
            );
        }
    }
    Ok(())
}
