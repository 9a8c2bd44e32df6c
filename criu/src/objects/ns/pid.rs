//! Pid namespaces. The images keep every PID as the tree sees it, in its
//! own pid namespace (the last of the `NSpid` levels); criu works on the
//! host PIDs. A tree in a pid namespace must be rooted at its init (PID 1),
//! which the restore makes by clone3 with `CLONE_NEWPID`; the others are
//! born inside with `set_tid` of their own level.

use super::{Error, Result};
use crate::proc;

/// The PIDs of a task as the tree sees them: pid, pgid and sid in the
/// innermost pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    pub pid: i32,
    pub pgid: i32,
    pub sid: i32,
}

/// The innermost level of an `NS*` line of status (the whole value when
/// the kernel shows one level only).
pub fn innermost(levels: &[i32], outer: i32) -> i32 {
    levels.last().copied().unwrap_or(outer)
}

/// `pid`'s ids in its own pid namespace. A pgid or sid outside that
/// namespace shows as 0 there.
pub fn inner(pid: i32) -> Result<Inner> {
    let st = proc::read_status(pid)?;
    Ok(Inner {
        pid: innermost(&st.ns_pid, st.pid),
        pgid: innermost(&st.ns_pgid, 0),
        sid: innermost(&st.ns_sid, 0),
    })
}

/// The PID of thread `tid` (of `pid`) in its own pid namespace.
pub fn inner_tid(pid: i32, tid: i32) -> Result<i32> {
    let st = proc::read_task_status(pid, tid)?;
    Ok(innermost(&st.ns_pid, tid))
}

/// A root in another pid namespace than criu must be its init.
pub fn check_root(root: i32) -> Result<()> {
    let st = proc::read_status(root)?;
    let me = innermost(&st.ns_pid, st.pid);
    if st.ns_pid.len() < 2 || me != 1 {
        return Err(Error::Unsupported {
            pid: root,
            what: format!(
                "lives in another pid namespace than criu as PID {me}, not as its init; only a whole pid namespace can be dumped"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(innermost(&[4242, 7, 1], 4242), 1);
        assert_eq!(innermost(&[], 99), 99);
        assert_eq!(innermost(&[5], 0), 5);
    }

    #[test]
    fn own_ids_in_own_namespace() {
        let me = std::process::id() as i32;
        let i = inner(me).unwrap();
        assert_eq!(i.pid, me);
        assert_eq!(i.sid, nix::unistd::getsid(None).unwrap().as_raw());
    }

    #[test]
    fn criu_is_no_namespace_init() {
        assert!(check_root(std::process::id() as i32).is_err());
    }
}
