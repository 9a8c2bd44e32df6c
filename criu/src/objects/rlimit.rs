//! Resource limits (`task_rlimits_entry`).
//!
//! Read from /proc/PID/limits (prlimit on another user's task needs
//! CAP_SYS_RESOURCE, which criu may not have). Restored with a remote
//! prlimit64 on the puppet itself: lowering is always allowed, raising a
//! hard limit above criu's own is not without CAP_SYS_RESOURCE, and is
//! reported as such.

use crate::image::pb;
use crate::proc;
use crate::remote::Tracee;

use super::{Error, Result};

/// Dump half.
pub fn dump(pid: i32) -> Result<pb::TaskRlimitsEntry> {
    let limits = proc::read_limits(pid)?;
    Ok(pb::TaskRlimitsEntry {
        rlimits: limits
            .rlimits
            .iter()
            .map(|l| pb::RlimitEntry {
                cur: l.soft,
                max: l.hard,
            })
            .collect(),
    })
}

/// Restore half: sets each limit that differs from the puppet's.
pub fn restore(t: &mut Tracee, pid: i32, e: &pb::TaskRlimitsEntry, scratch_off: u64) -> Result<()> {
    let mine = proc::read_limits(t.pid())?;
    for (res, want) in e.rlimits.iter().enumerate() {
        let Some(have) = mine.rlimits.get(res) else {
            break;
        };
        if have.soft == want.cur && have.hard == want.max {
            continue;
        }
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&want.cur.to_le_bytes());
        b.extend_from_slice(&want.max.to_le_bytes());
        let addr = t.scratch_put(scratch_off, &b)?;
        let ret = t.syscall_raw(libc::SYS_prlimit64, &[0, res as u64, addr, 0])?;
        if ret == -(libc::EPERM as i64) {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "rlimit {res} wants hard limit {} above criu's own {} (raising it needs CAP_SYS_RESOURCE)",
                    want.max, have.hard
                ),
            });
        }
        if ret < 0 {
            return Err(Error::Sys {
                pid,
                what: format!("setting rlimit {res} to {}/{}", want.cur, want.max),
                errno: nix::errno::Errno::from_raw(-ret as i32),
            });
        }
    }
    Ok(())
}
