//! File descriptor numbering.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{check, SysResult};

/// A close-on-exec duplicate of `fd` numbered `min` or above.
pub fn dup_above(fd: &impl AsRawFd, min: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers and returns a new fd.
    let new =
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) } as libc::c_long)?;
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}
