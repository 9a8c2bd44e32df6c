//! pidfd_open and pidfd_getfd: how criu takes a copy of a task's file
//! descriptors without a parasite.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::{check, SysResult};

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: a duplicate, in this process, of the
/// open file description behind `targetfd` in the task of `pidfd`.
pub fn pidfd_getfd(pidfd: &impl std::os::fd::AsRawFd, targetfd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: integers only; returns a new fd or -1.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), targetfd, 0) })?;
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
