//! pidfds (`pidfd_open`): of a task of the dumped tree, made again with
//! `pidfd_open` on the restored task; of a task that is gone ("dead"),
//! made again from a helper process that is killed once its pidfds exist.
//! Upstream's `pidfd_entry`: `nspid` is the pid in the task's own pid
//! namespace, -1 for a dead pidfd; `ino` ties the dead pidfds of one task.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::image::pb;
use crate::proc;
use crate::sys::pidfd_more::{pidfd_open_flags, Parked, PIDFD_THREAD};

use super::super::{Error, Result};

/// The flags pidfd_open takes again.
const OPEN_FLAGS: u32 = libc::O_NONBLOCK as u32 | PIDFD_THREAD;

/// The pidfd entry of `fd` of `pid`. `tree` maps the pids of the dumped
/// tree, as criu sees them, to their pids inside the tree.
pub fn dump(
    pid: i32,
    fd: i32,
    id: u32,
    info: &proc::Fdinfo,
    ino: u64,
    tree: &HashMap<i32, i32>,
    fown: pb::FownEntry,
) -> Result<pb::PidfdEntry> {
    let p = info.pidfd.as_ref().ok_or_else(|| Error::Unsupported {
        pid,
        what: format!("fd {fd} is a pidfd whose fdinfo has no Pid: line"),
    })?;
    let nspid = match p.pid {
        -1 => -1,
        0 => {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} is a pidfd of a task outside criu's pid namespace, which criu-rs cannot dump"
                ),
            })
        }
        target => {
            let inner = *tree.get(&target).ok_or_else(|| Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} is a pidfd of pid {target}, which is not part of the dumped tree"
                ),
            })?;
            let last = p.ns_pid.last().copied().unwrap_or(target);
            if last != inner {
                return Err(Error::Mismatch {
                    what: format!(
                        "pid {pid}: fd {fd}: pidfd of pid {target} shows NSpid {last}, but the tree knows it as {inner}"
                    ),
                });
            }
            inner
        }
    };
    Ok(pb::PidfdEntry {
        id,
        // upstream keeps the low 32 bits of the pidfs inode
        ino: ino as u32,
        flags: info.flags & !(libc::O_RDWR as u32 | libc::O_CLOEXEC as u32),
        nspid,
        fown,
    })
}

/// Pidfds made for restore that the orchestrator has not asked for yet
/// (the dead pidfds of one task are all made together).
#[derive(Debug, Default)]
pub struct PidfdRestore {
    ready: HashMap<u32, OwnedFd>,
}

impl PidfdRestore {
    /// The pidfd of entry `e` of `files`. `host_of` turns a pid of the
    /// restored tree into the pid criu sees.
    /// `pidns`: the pid namespace of the restored tree, where the helper of
    /// dead pidfds is born (a pidfd of another namespace's task behaves
    /// differently: EINVAL instead of ESRCH).
    pub fn open(
        &mut self,
        files: &[pb::FileEntry],
        e: &pb::PidfdEntry,
        host_of: &dyn Fn(i32) -> i32,
        pidns: Option<BorrowedFd<'_>>,
    ) -> Result<OwnedFd> {
        if let Some(fd) = self.ready.remove(&e.id) {
            return Ok(fd);
        }
        if e.nspid != -1 {
            let host = host_of(e.nspid);
            return pidfd_open_flags(host, e.flags & OPEN_FLAGS).map_err(|errno| Error::Sys {
                pid: host,
                what: format!(
                    "pidfd_open for file id {} (pid {} in the tree, flags {:#o})",
                    e.id, e.nspid, e.flags
                ),
                errno,
            });
        }
        // A dead pidfd: every dead pidfd of the same task (same inode) is
        // opened on one helper, which then dies.
        let helper = Parked::spawn(pidns).map_err(|errno| Error::Sys {
            pid: 0,
            what: format!("forking a helper for dead pidfd id {}", e.id),
            errno,
        })?;
        let open = |p: &pb::PidfdEntry| {
            pidfd_open_flags(helper.pid(), p.flags & OPEN_FLAGS).map_err(|errno| Error::Sys {
                pid: helper.pid(),
                what: format!("pidfd_open of the helper for dead pidfd id {}", p.id),
                errno,
            })
        };
        let mine = open(e)?;
        for other in files
            .iter()
            .filter_map(|f| f.pidfd.as_ref())
            .filter(|p| p.id != e.id && p.nspid == -1 && p.ino == e.ino)
        {
            let fd = open(other)?;
            self.ready.insert(other.id, fd);
        }
        helper.finish().map_err(|errno| Error::Sys {
            pid: 0,
            what: format!("killing the helper of dead pidfd id {}", e.id),
            errno,
        })?;
        Ok(mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_alive(fd: &OwnedFd) -> bool {
        crate::sys::pidfd_more::send_signal(std::os::fd::AsFd::as_fd(fd), 0).is_ok()
    }

    fn info(pid: i32, ns: &[i32], flags: u32) -> proc::Fdinfo {
        proc::Fdinfo {
            flags,
            pidfd: Some(proc::PidfdInfo {
                pid,
                ns_pid: ns.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn entries_follow_upstream() {
        let tree = HashMap::from([(500, 1)]);
        let e = dump(
            7,
            3,
            9,
            &info(500, &[500, 1], 0o4002),
            77,
            &tree,
            super::super::no_owner(),
        )
        .expect("in the tree");
        assert_eq!((e.id, e.ino, e.nspid, e.flags), (9, 77, 1, 0o4000));
        let dead = dump(
            7,
            3,
            9,
            &info(-1, &[-1], 0o2),
            5,
            &tree,
            super::super::no_owner(),
        )
        .expect("dead");
        assert_eq!(dead.nspid, -1);
    }

    #[test]
    fn outside_the_tree_names_pid_and_fd() {
        let tree = HashMap::from([(500, 500)]);
        let msg = dump(
            7,
            4,
            1,
            &info(42, &[42], 2),
            1,
            &tree,
            super::super::no_owner(),
        )
        .expect_err("outside")
        .to_string();
        assert!(
            msg.contains("pid 7") && msg.contains("fd 4") && msg.contains("pid 42"),
            "{msg}"
        );
    }

    #[test]
    fn dead_pidfds_of_one_task_share_a_helper() {
        let mk = |id, ino, flags| pb::FileEntry {
            r#type: pb::FdTypes::Pidfd as i32,
            id,
            pidfd: Some(pb::PidfdEntry {
                id,
                ino,
                flags,
                nspid: -1,
                fown: super::super::no_owner(),
            }),
            ..Default::default()
        };
        let files = vec![
            mk(1, 10, 0),
            mk(2, 10, libc::O_NONBLOCK as u32),
            mk(3, 11, 0),
        ];
        let mut r = PidfdRestore::default();
        let never = |_: i32| -> i32 { panic!("no live pid") };
        let a = r
            .open(&files, files[0].pidfd.as_ref().unwrap(), &never, None)
            .expect("a");
        assert!(!is_alive(&a));
        assert!(r.ready.contains_key(&2) && !r.ready.contains_key(&3));
        let b = r
            .open(&files, files[1].pidfd.as_ref().unwrap(), &never, None)
            .expect("b");
        let st = |f: &OwnedFd| nix::sys::stat::fstat(f).expect("fstat").st_ino;
        assert_eq!(st(&a), st(&b));
        let fl = nix::fcntl::fcntl(&b, nix::fcntl::FcntlArg::F_GETFL).expect("getfl");
        assert!(fl & libc::O_NONBLOCK != 0);
    }
}
