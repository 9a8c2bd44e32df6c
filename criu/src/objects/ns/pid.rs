//! Pid namespaces. The images keep every PID as the tree sees it, in the
//! pid namespace of its root (its level of the `NSpid` lines); criu works
//! on the host PIDs. A tree in a pid namespace must be rooted at its init
//! (PID 1), which the restore makes by clone3 with `CLONE_NEWPID`; the
//! others are born inside with `set_tid` of their own levels.
//!
//! Pid namespaces nested in the tree's: a task born as the init of a new
//! one (`unshare(CLONE_NEWPID)` or `clone(CLONE_NEWPID)` in its parent) and
//! its descendants keep their PIDs of the deeper levels too ([`Inner::nested`],
//! the pstree's `nested_pids`/`nested_tids`), and a task whose children are
//! born in another pid namespace than its own (`pid_for_children` after an
//! unshare) names a task of that namespace (`pid_for_children` of the
//! pstree), which the restore joins with `setns` on a pidfd of it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Error, Result};
use crate::image::{self, magic, pb};
use crate::proc;
use crate::remote::Tracee;

/// The sysctl of the last PID given out, which answers for the pid
/// namespace of whoever reads or writes it (not that of the /proc).
const LAST_PID: &[u8] = b"/proc/sys/kernel/ns_last_pid\0";
/// Room of the scratch area used here: the path, then the number.
const LAST_PID_LEN: u64 = 64;

fn file(id: u32) -> String {
    format!("pidns-{id}.img")
}

/// Dump half, inside the init `t` of a pid namespace of the tree (stopped,
/// with its syscall instruction found and a scratch area mapped): the
/// namespace's `ns_last_pid`, so that the next task it makes after the
/// restore gets the PID it would have got. None (with a warning) when the
/// init's root has no /proc to read it from.
pub fn last_pid(t: &mut Tracee) -> Result<Option<u32>> {
    let pid = t.pid();
    let fd = open_last_pid(t, libc::O_RDONLY)?;
    if fd < 0 {
        tracing::warn!(
            pid,
            "ns_last_pid not kept: the init cannot open /proc/sys/kernel/ns_last_pid: {}",
            nix::errno::Errno::from_raw(-fd as i32)
        );
        return Ok(None);
    }
    let base = t.scratch().map_or(0, |s| s.0);
    let n = t.syscall_raw(libc::SYS_read, &[fd as u64, base + LAST_PID_LEN, 32]);
    t.syscall(libc::SYS_close, &[fd as u64])?;
    let n = n?;
    let mut buf = vec![0u8; n.clamp(0, 32) as usize];
    t.scratch_get(LAST_PID_LEN, &mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    text.trim().parse().map(Some).map_err(|_| Error::Mismatch {
        what: format!("pid {pid}: ns_last_pid read inside it is {text:?}, not a number"),
    })
}

/// Writes `pidns-ID.img` of the pid namespace `id` with its `last_pid`.
pub fn write(dir: &Path, id: u32, last_pid: Option<u32>) -> Result<()> {
    let e = pb::PidnsEntry {
        ext_key: None,
        last_pid,
    };
    image::write_image(dir, &file(id), magic::PIDNS, [&e])?;
    Ok(())
}

/// Opens the `ns_last_pid` sysctl inside `t` (path at the start of its
/// scratch area) with `flags`; the raw result (a negative errno on
/// failure).
fn open_last_pid(t: &mut Tracee, flags: i32) -> Result<i64> {
    let path = t.scratch_put(0, LAST_PID)?;
    Ok(t.syscall_raw(
        libc::SYS_openat,
        &[
            libc::AT_FDCWD as u64,
            path,
            (flags | libc::O_CLOEXEC) as u64,
        ],
    )?)
}

pub fn read(dir: &Path, id: u32) -> Result<Option<pb::PidnsEntry>> {
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    Ok(Some(image::read_one(dir, &file(id), magic::PIDNS)?))
}

/// Restore half: sets `ns_last_pid` of the new pid namespace from inside
/// its init `t`, before any other task of it is made (they get their
/// PIDs by `set_tid`, which leaves it alone).
pub fn restore(t: &mut Tracee, e: &pb::PidnsEntry) -> Result<()> {
    let Some(last) = e.last_pid else {
        return Ok(());
    };
    let pid = t.pid();
    let text = last.to_string();
    let val = t.scratch_put(LAST_PID_LEN, text.as_bytes())?;
    let fd = open_last_pid(t, libc::O_WRONLY)?;
    if fd < 0 {
        return Err(Error::Sys {
            pid,
            what: "opening /proc/sys/kernel/ns_last_pid of its pid namespace".into(),
            errno: nix::errno::Errno::from_raw(-fd as i32),
        });
    }
    let fd = fd as u64;
    let n = t.syscall_raw(libc::SYS_write, &[fd, val, text.len() as u64]);
    t.syscall(libc::SYS_close, &[fd])?;
    let n = n?;
    if n < 0 {
        return Err(Error::Sys {
            pid,
            what: format!("writing {last} to ns_last_pid of its pid namespace"),
            errno: nix::errno::Errno::from_raw(-n as i32),
        });
    }
    Ok(())
}

/// The PIDs of a task as the tree sees them: pid, pgid and sid in the pid
/// namespace of the tree's root, and its PIDs in the namespaces nested
/// below that one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inner {
    pub pid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Its PIDs in the pid namespaces below the tree's, outermost first
    /// (empty for a task of the tree's own namespace).
    pub nested: Vec<i32>,
}

impl Inner {
    /// Is the task the init (PID 1) of its own pid namespace, the tree's
    /// or one nested below?
    pub fn is_ns_init(&self) -> bool {
        self.nested.last().copied().unwrap_or(self.pid) == 1
    }
}

/// The innermost level of an `NS*` line of status (the whole value when
/// the kernel shows one level only).
pub fn innermost(levels: &[i32], outer: i32) -> i32 {
    levels.last().copied().unwrap_or(outer)
}

/// Level `level` of an `NS*` line of status (`outer` when the kernel shows
/// no levels).
fn at(levels: &[i32], level: usize, outer: i32) -> i32 {
    if levels.is_empty() {
        outer
    } else {
        levels.get(level).copied().unwrap_or(0)
    }
}

/// The level of the `NS*` lines that is the tree's: that of the
/// innermost pid namespace of its root.
pub fn tree_level(root: i32) -> Result<usize> {
    Ok(proc::read_status(root)?.ns_pid.len().saturating_sub(1))
}

/// `pid`'s ids in its own pid namespace. A pgid or sid outside that
/// namespace shows as 0 there.
pub fn inner(pid: i32) -> Result<Inner> {
    let st = proc::read_status(pid)?;
    Ok(Inner {
        pid: innermost(&st.ns_pid, st.pid),
        pgid: innermost(&st.ns_pgid, 0),
        sid: innermost(&st.ns_sid, 0),
        nested: Vec::new(),
    })
}

/// `pid`'s ids as a tree whose pid namespace is at `level` sees them (see
/// [`tree_level`]), with its PIDs in the namespaces nested below.
pub fn inner_at(pid: i32, level: usize) -> Result<Inner> {
    let st = proc::read_status(pid)?;
    Ok(Inner {
        pid: at(&st.ns_pid, level, st.pid),
        pgid: at(&st.ns_pgid, level, 0),
        sid: at(&st.ns_sid, level, 0),
        nested: st.ns_pid.get(level + 1..).unwrap_or_default().to_vec(),
    })
}

/// The PID of thread `tid` (of `pid`) in its own pid namespace.
pub fn inner_tid(pid: i32, tid: i32) -> Result<i32> {
    let st = proc::read_task_status(pid, tid)?;
    Ok(innermost(&st.ns_pid, tid))
}

/// The TID of thread `tid` of the process whose ids are `leader`, as the
/// tree sees it, and its TIDs in the namespaces nested below (a thread
/// lives in its leader's pid namespace, with as many levels).
pub fn inner_tid_like(pid: i32, tid: i32, leader: &Inner) -> Result<(i32, Vec<i32>)> {
    let st = proc::read_task_status(pid, tid)?;
    let deeper = leader.nested.len();
    if st.ns_pid.len() <= deeper {
        return Ok((tid, Vec::new()));
    }
    let split = st.ns_pid.len() - deeper;
    Ok((st.ns_pid[split - 1], st.ns_pid[split..].to_vec()))
}

/// The PID process `viewer` sees process `target` under (both criu's
/// PIDs): `target`'s PID at the level of `viewer`'s own pid namespace;
/// None when `target` lives above it.
pub fn seen_by(viewer: i32, target: i32) -> Result<Option<i32>> {
    let v = proc::read_status(viewer)?.ns_pid.len().max(1);
    let t = proc::read_status(target)?;
    if t.ns_pid.is_empty() {
        return Ok((v == 1).then_some(target));
    }
    Ok(t.ns_pid.get(v - 1).copied())
}

/// The inode of `pid`'s `ns/pid` or `ns/pid_for_children` (None when the
/// link cannot be read: a zombie, or no children's namespace yet).
fn ns_inode(pid: i32, which: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/{which}"))
        .ok()
        .map(|m| m.ino())
}

/// Checks that task `pid`, in another pid namespace than the tree's root,
/// can be remade: born into its parent's namespace (`parent`, host PID), or
/// as the init of a new one right below it.
pub fn check_nested(pid: i32, parent: i32) -> Result<()> {
    let st = proc::read_status(pid)?;
    let here = innermost(&st.ns_pid, pid);
    if ns_inode(pid, "pid") == ns_inode(parent, "pid") {
        return Ok(());
    }
    let pst = proc::read_status(parent)?;
    if here == 1 && st.ns_pid.len() == pst.ns_pid.len() + 1 {
        return Ok(());
    }
    // Born into the namespace its parent unshared for its children, whose
    // init is found (and checked) by [`children_ns_task`].
    if st.ns_pid.len() == pst.ns_pid.len() + 1
        && ns_inode(pid, "pid") == ns_inode(parent, "pid_for_children")
    {
        return Ok(());
    }
    Err(Error::Unsupported {
        pid,
        what: format!(
            "lives in a pid namespace nested in the tree's as PID {here}, neither its parent's ({parent}) nor one it is the init of; only tasks born into their parent's pid namespace or as init of a new one can be dumped"
        ),
    })
}

/// The task of `tree` (host PIDs, parents first) whose pid namespace the
/// children of `pid` are born into, when that is not `pid`'s own; an error
/// when no task of the tree is in it yet (an unshare with no fork after).
pub fn children_ns_task(pid: i32, tree: &[i32]) -> Result<Option<i32>> {
    let (Some(own), Some(kids)) = (ns_inode(pid, "pid"), ns_inode(pid, "pid_for_children")) else {
        return Ok(None);
    };
    if own == kids {
        return Ok(None);
    }
    // Its init, made first at restore, rather than any other task of it.
    let inside: Vec<i32> = tree
        .iter()
        .copied()
        .filter(|&t| ns_inode(t, "pid") == Some(kids))
        .collect();
    inside
        .iter()
        .copied()
        .find(|&t| proc::read_status(t).is_ok_and(|st| innermost(&st.ns_pid, t) == 1))
        .or(inside.first().copied())
        .map(Some)
        .ok_or_else(|| Error::Unsupported {
            pid,
            what: "has unshared its pid namespace for children that no task of the tree lives in yet; such a namespace cannot be remade".into(),
        })
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
    fn level_of_the_tree() {
        // A task two levels below the tree's, seen from a host where the
        // tree's namespace is level 1.
        assert_eq!(at(&[4242, 7, 1, 3], 1, 4242), 7);
        assert_eq!(at(&[4242, 7], 3, 4242), 0);
        assert_eq!(at(&[], 1, 99), 99);
    }

    #[test]
    fn tree_level_ids_of_a_task_in_the_trees_namespace() {
        let me = std::process::id() as i32;
        let level = tree_level(me).unwrap();
        let i = inner_at(me, level).unwrap();
        assert_eq!(i, inner(me).unwrap());
        assert!(i.nested.is_empty());
        assert_eq!(inner_tid_like(me, me, &i).unwrap(), (i.pid, Vec::new()));
        assert_eq!(children_ns_task(me, &[me]).unwrap(), None);
    }

    #[test]
    fn a_process_sees_itself_and_its_parent_by_their_pids() {
        let me = std::process::id() as i32;
        assert_eq!(seen_by(me, me).unwrap(), Some(me));
        let parent = nix::unistd::getppid().as_raw();
        if parent > 0 && std::path::Path::new(&format!("/proc/{parent}")).exists() {
            assert_eq!(seen_by(me, parent).unwrap(), Some(parent));
        }
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
