//! clone3 with set_tid: a new process with a chosen PID, as criu's child
//! or (`CLONE_PARENT`, with a pidfd) as its sibling.

use std::os::fd::{FromRawFd, OwnedFd};

use super::{check, SysResult};

/// What [`fork_with_pid`] gives back in each process.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    Parent(i32),
    Child,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A fork (no shared memory, files or signal handlers) whose child gets
/// `pid` in the caller's pid namespace (or any free PID when `pid` is
/// `None`). Fails with `EEXIST` when the PID is taken (a zombie still counts).
///
/// Like `fork(2)`, the child of a multi-threaded caller must restrict itself
/// to async-signal-safe work.
pub fn fork_with_pid(pid: Option<i32>) -> SysResult<Forked> {
    match pid {
        Some(p) => fork_in_ns(0, &[p]),
        None => fork_in_ns(0, &[]),
    }
}

/// A fork whose child starts in the new namespaces of `ns_flags`
/// (`CLONE_NEWPID`, `CLONE_NEWNS`, … — namespace flags only) with the PIDs
/// `set_tid`, innermost pid namespace first (empty: any free PIDs). With
/// `CLONE_NEWPID` the child is PID 1 of its new namespace, so `set_tid` may
/// be `[1]` or `[1, pid in the caller's namespace]`.
pub fn fork_in_ns(ns_flags: u64, set_tid: &[i32]) -> SysResult<Forked> {
    fork_raw(ns_flags, set_tid, None)
}

/// [`fork_in_ns`] with extra clone flags `more` (`CLONE_PARENT`,
/// `CLONE_PIDFD` — nothing that shares memory); with `CLONE_PIDFD` the
/// pidfd is written to `pidfd`.
fn fork_raw(ns_flags: u64, set_tid: &[i32], pidfd: Option<&mut i32>) -> SysResult<Forked> {
    let more = if pidfd.is_some() {
        (libc::CLONE_PARENT | libc::CLONE_PIDFD) as u64
    } else {
        0
    };
    const NS_MASK: u64 = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWTIME) as u64;
    if ns_flags & !NS_MASK != 0 || set_tid.len() > 32 {
        return Err(super::Errno::EINVAL);
    }
    let tids: Vec<libc::pid_t> = set_tid.to_vec();
    let mut args = CloneArgs {
        flags: ns_flags | more,
        // With CLONE_PARENT the child takes criu's own exit signal; clone3
        // wants 0 here.
        exit_signal: if more == 0 { libc::SIGCHLD as u64 } else { 0 },
        ..Default::default()
    };
    if let Some(p) = pidfd {
        args.pidfd = p as *mut i32 as u64;
    }
    if !tids.is_empty() {
        args.set_tid = tids.as_ptr() as u64;
        args.set_tid_size = tids.len() as u64;
    }
    // SAFETY: `args`, `tids` and the pidfd slot outlive the call; only
    // namespace flags, CLONE_PARENT and CLONE_PIDFD are passed (checked
    // above; none shares memory), so without CLONE_VM the child runs on its own
    // copy of this stack, exactly as after fork(2).
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    Ok(if ret == 0 {
        Forked::Child
    } else {
        Forked::Parent(ret as i32)
    })
}

/// Starts a puppet: a fork of criu (with PID `pid` when given) that does
/// nothing but wait, to be seized and remade by remote syscalls. It dies
/// with criu.
pub fn spawn_puppet(pid: Option<i32>) -> SysResult<i32> {
    match pid {
        Some(p) => spawn_puppet_in_ns(0, &[p]),
        None => spawn_puppet_in_ns(0, &[]),
    }
}

/// [`spawn_puppet`] in new namespaces: see [`fork_in_ns`].
pub fn spawn_puppet_in_ns(ns_flags: u64, set_tid: &[i32]) -> SysResult<i32> {
    match fork_in_ns(ns_flags, set_tid)? {
        Forked::Parent(p) => Ok(p),
        Forked::Child => {
            // SAFETY: async-signal-safe calls only, in the child of a fork;
            // it never returns into criu's code.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                loop {
                    libc::pause();
                }
            }
        }
    }
}

/// [`spawn_puppet_in_ns`] as a sibling of criu: the puppet is born a child
/// of criu's parent (`CLONE_PARENT`), so criu cannot wait for it; the pidfd
/// that comes with it (`CLONE_PIDFD`) lets criu still signal it without a
/// race on its PID. No parent-death signal: its parent is not criu.
pub fn spawn_sibling_puppet_in_ns(ns_flags: u64, set_tid: &[i32]) -> SysResult<(i32, OwnedFd)> {
    let mut raw: i32 = -1;
    match fork_raw(ns_flags, set_tid, Some(&mut raw))? {
        Forked::Parent(p) => {
            // SAFETY: clone3 with CLONE_PIDFD succeeded, so `raw` is a new
            // pidfd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            Ok((p, fd))
        }
        Forked::Child => {
            // SAFETY: async-signal-safe calls only, in the child of a fork;
            // it never returns into criu's code.
            unsafe {
                loop {
                    libc::pause();
                }
            }
        }
    }
}
