//! clone3 with set_tid: a new process with a chosen PID.

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
    let tid = [pid.unwrap_or(0)];
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if pid.is_some() {
        args.set_tid = tid.as_ptr() as u64;
        args.set_tid_size = 1;
    }
    // SAFETY: `args` and `tid` outlive the call; without CLONE_VM the child
    // runs on its own copy of this stack, exactly as after fork(2).
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
    match fork_with_pid(pid)? {
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
