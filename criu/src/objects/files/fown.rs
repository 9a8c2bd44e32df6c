//! File owners (`F_SETOWN`/`F_SETOWN_EX`, `F_SETSIG`, with `O_ASYNC`): the
//! `fown` of every file entry. Dumped from the open file fetched into criu;
//! restored inside the task once its fds, its threads and its creds exist,
//! so that the owner is the same pid in the task's pid namespace and the
//! owner's creds are the task's.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;

use crate::image::pb;
use crate::proc;
use crate::remote::Tracee;
use crate::sys;
use crate::sys::fown::{OwnerEx, F_SETOWN_EX, F_SETSIG};

use super::super::{Error, Result};

pub const F_OWNER_TID: u32 = 0;
pub const F_OWNER_PID: u32 = 1;
pub const F_OWNER_PGRP: u32 = 2;

/// The owner of `file` (fd `fd` of `pid`), its pid turned from criu's
/// pid namespace into the tree's with `tree` (criu's pid -> tree's pid).
pub fn dump(
    pid: i32,
    fd: i32,
    flags: u32,
    file: BorrowedFd<'_>,
    tree: &HashMap<i32, i32>,
) -> Result<pb::FownEntry> {
    let sys_err = |what: &str| {
        let what = format!("{what} of fd {fd}");
        move |errno| Error::Sys { pid, what, errno }
    };
    let mut out = super::no_owner();
    if flags & libc::O_PATH as u32 != 0 {
        return Ok(out);
    }
    out.signum = sys::fown::get_sig(file).map_err(sys_err("F_GETSIG"))? as u32;
    let o = sys::fown::get_owner(file).map_err(sys_err("F_GETOWN_EX"))?;
    if o.pid == 0 {
        return Ok(out);
    }
    let (uid, euid) = sys::fown::get_owner_uids(file).map_err(sys_err("F_GETOWNER_UIDS"))?;
    out.uid = uid;
    out.euid = euid;
    out.pid_type = o.kind as u32;
    out.pid = inner_pid(pid, fd, o.pid, tree)? as u32;
    Ok(out)
}

/// `real` (a pid, tid or pgid as criu sees it) in the tree's pid namespace.
fn inner_pid(pid: i32, fd: i32, real: i32, tree: &HashMap<i32, i32>) -> Result<i32> {
    if let Some(&inner) = tree.get(&real) {
        return Ok(inner);
    }
    // A thread, or a group whose leader is gone or outside the tree.
    if let Ok(st) = proc::read_status(real) {
        if let Some(&last) = st.ns_pid.last() {
            return Ok(last);
        }
    }
    if tree.iter().all(|(a, b)| a == b) {
        return Ok(real);
    }
    Err(Error::Unsupported {
        pid,
        what: format!(
            "fd {fd} is owned (F_SETOWN) by {real}, which criu cannot find in the tree's pid namespace"
        ),
    })
}

/// The `fown` of whichever kind `fe` is; None for kinds that keep it
/// elsewhere (a fifo keeps it in its path entry).
pub fn slot(fe: &mut pb::FileEntry) -> Option<&mut pb::FownEntry> {
    macro_rules! first {
        ($($f:ident),*) => {
            $(if let Some(x) = fe.$f.as_mut() {
                return Some(&mut x.fown);
            })*
        };
    }
    first!(
        reg, isk, usk, psk, nlsk, pipe, efd, epfd, sgfd, tfd, ify, ffy, tty, memfd, pidfd, ext, bpf
    );
    None
}

/// The `O_*` file flags kept in `fe`, for kinds that keep them.
fn file_flags(fe: &pb::FileEntry) -> Option<u32> {
    macro_rules! first {
        ($($f:ident),*) => {
            $(if let Some(x) = fe.$f.as_ref() {
                return Some(x.flags);
            })*
        };
    }
    first!(reg, isk, usk, psk, nlsk, pipe, efd, epfd, sgfd, tfd, ify, ffy, tty, memfd, pidfd, bpf);
    None
}

/// The fown and file flags of file `id` (through the path entry for a
/// fifo).
fn of(files: &[pb::FileEntry], id: u32) -> Option<(pb::FownEntry, u32)> {
    let fe = files.iter().find(|e| e.id == id)?;
    if let Some(f) = &fe.fifo {
        let regf = f.regf_id?;
        return of(files, regf);
    }
    let flags = file_flags(fe).unwrap_or(0);
    let mut fe = fe.clone();
    slot(&mut fe).cloned().map(|o| (o, flags))
}

/// Sets the owners and signals of the fds of task `pid` (`t` its leader,
/// with a scratch area at `data_off`), and O_ASYNC where the owner is set.
pub fn restore(
    t: &mut Tracee,
    pid: i32,
    fdinfo: &[pb::FdinfoEntry],
    files: &[pb::FileEntry],
    data_off: u64,
) -> Result<()> {
    for fi in fdinfo {
        let Some((o, flags)) = of(files, fi.id) else {
            continue;
        };
        let async_io = flags & libc::O_ASYNC as u32 != 0;
        if o.signum == 0 && o.pid == 0 && !async_io {
            continue;
        }
        let fd = u64::from(fi.fd);
        let ctx = |what: &str, e: crate::remote::Error| Error::Mismatch {
            what: format!(
                "pid {pid}: restoring the owner of fd {} (pid {} type {} signal {}): {what}: {e}",
                fi.fd, o.pid, o.pid_type, o.signum
            ),
        };
        if o.signum != 0 {
            t.syscall(libc::SYS_fcntl, &[fd, F_SETSIG as u64, u64::from(o.signum)])
                .map_err(|e| ctx("F_SETSIG", e))?;
        }
        if o.pid != 0 {
            let ex = OwnerEx {
                kind: o.pid_type as i32,
                pid: o.pid as i32,
            };
            let addr = t.scratch_put(data_off, &ex.to_bytes())?;
            t.syscall(libc::SYS_fcntl, &[fd, F_SETOWN_EX as u64, addr])
                .map_err(|e| ctx("F_SETOWN_EX", e))?;
        }
        if async_io {
            // O_ASYNC goes on last, once the owner is there, and from the
            // task: the kernel names the fd in the signal by the number it
            // had when O_ASYNC was set (the file may have had it in criu).
            let fl = t
                .syscall(libc::SYS_fcntl, &[fd, libc::F_GETFL as u64, 0])
                .map_err(|e| ctx("F_GETFL", e))?;
            let async_flag = libc::O_ASYNC as u64;
            for set in [fl & !async_flag, fl | async_flag] {
                t.syscall(libc::SYS_fcntl, &[fd, libc::F_SETFL as u64, set])
                    .map_err(|e| ctx("F_SETFL O_ASYNC", e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_in_the_tree_namespace() {
        let tree = HashMap::from([(900, 1), (901, 2)]);
        assert_eq!(inner_pid(900, 3, 901, &tree).expect("in tree"), 2);
        let ident = HashMap::from([(900, 900)]);
        assert_eq!(
            inner_pid(900, 3, 999_999_999, &ident).expect("same ns"),
            999_999_999
        );
        let msg = inner_pid(900, 3, 999_999_999, &tree)
            .expect_err("lost")
            .to_string();
        assert!(msg.contains("pid 900") && msg.contains("fd 3"), "{msg}");
    }

    #[test]
    fn a_fifo_keeps_its_owner_in_its_path_entry() {
        let mut reg = pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: 2,
            reg: Some(pb::RegFileEntry::default()),
            ..Default::default()
        };
        if let Some(s) = slot(&mut reg) {
            s.pid = 77;
        }
        let fifo = pb::FileEntry {
            r#type: pb::FdTypes::Fifo as i32,
            id: 1,
            fifo: Some(pb::FifoEntry {
                id: 1,
                pipe_id: 5,
                regf_id: Some(2),
            }),
            ..Default::default()
        };
        assert_eq!(of(&[fifo, reg], 1).map(|(o, _)| o.pid), Some(77));
    }
}
