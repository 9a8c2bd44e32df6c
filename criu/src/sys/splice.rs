//! tee(2) and FIONREAD: look at the bytes queued in a pipe without taking
//! them out.

use std::os::fd::AsRawFd;

use super::{check, SysResult};

/// `tee(from, to, len, SPLICE_F_NONBLOCK)`: copies up to `len` queued bytes
/// of pipe `from` into pipe `to`, leaving them in `from`. Nothing queued
/// gives `Ok(0)`.
pub fn tee_nonblock(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> SysResult<usize> {
    // SAFETY: tee takes two fds, a length and flags; no memory is passed.
    let r = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    match check(r as libc::c_long) {
        Ok(n) => Ok(n as usize),
        Err(super::Errno::EAGAIN) => Ok(0),
        Err(e) => Err(e),
    }
}

/// `ioctl(fd, FIONREAD)`: bytes queued in a pipe (or readable on a socket).
pub fn fionread(fd: &impl AsRawFd) -> SysResult<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to
    // a live local.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) }
            as libc::c_long,
    )?;
    Ok(n.max(0) as usize)
}
