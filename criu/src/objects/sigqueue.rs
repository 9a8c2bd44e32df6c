//! Pending signals (`signal_queue_entry`): the queue of each thread and the
//! one the thread group shares, each siginfo as the kernel has it.
//!
//! Dump peeks at them with PTRACE_PEEKSIGINFO (nothing is dequeued, so a
//! task left running keeps them). Restore queues them again from inside the
//! task itself — rt_sigqueueinfo for the shared queue, rt_tgsigqueueinfo in
//! each thread for its own — which the kernel allows for any si_code when a
//! task signals itself. The puppet blocks every signal until the very end,
//! so they wait, queued in order, for the task's own mask.

use crate::image::pb;
use crate::remote::Tracee;
use crate::sys::ptrace::{peek_siginfo, SIGINFO_SIZE};

use super::{Error, Result};

/// Dump half: the thread's own queue, or with `shared` its group's.
pub fn dump(t: &Tracee, shared: bool) -> Result<pb::SignalQueueEntry> {
    let pid = nix::unistd::Pid::from_raw(t.pid());
    let infos = peek_siginfo(pid, shared).map_err(|errno| Error::Sys {
        pid: t.pid(),
        what: format!(
            "PTRACE_PEEKSIGINFO ({} queue)",
            if shared { "shared" } else { "thread" }
        ),
        errno,
    })?;
    Ok(pb::SignalQueueEntry {
        signals: infos
            .into_iter()
            .map(|si| pb::SiginfoEntry {
                siginfo: si.to_vec(),
            })
            .collect(),
    })
}

fn signo(si: &[u8]) -> Option<u64> {
    let b: [u8; 4] = si.get(0..4)?.try_into().ok()?;
    let s = i32::from_le_bytes(b);
    (1..=64).contains(&s).then_some(s as u64)
}

/// Restore half: queues the signals again from inside the thread `t`; with
/// `shared`, on its thread group. `tgid` names the task in errors.
pub fn restore(
    t: &mut Tracee,
    tgid: i32,
    q: &pb::SignalQueueEntry,
    shared: bool,
    scratch_off: u64,
) -> Result<()> {
    if q.signals.is_empty() {
        return Ok(());
    }
    // The ids as the task itself sees them (in its own pid namespace): the
    // kernel lets a task give any siginfo only to itself.
    let own_tgid = t.syscall(libc::SYS_getpid, &[])?;
    let own_tid = t.syscall(libc::SYS_gettid, &[])?;
    for e in &q.signals {
        let si = &e.siginfo;
        let (Some(sig), true) = (signo(si), si.len() == SIGINFO_SIZE) else {
            return Err(Error::Mismatch {
                what: format!(
                    "pid {tgid}: a pending signal's siginfo is malformed ({} bytes)",
                    si.len()
                ),
            });
        };
        let addr = t.scratch_put(scratch_off, si)?;
        if shared {
            t.syscall(libc::SYS_rt_sigqueueinfo, &[own_tgid, sig, addr])?;
        } else {
            t.syscall(libc::SYS_rt_tgsigqueueinfo, &[own_tgid, own_tid, sig, addr])?;
        }
    }
    Ok(())
}
