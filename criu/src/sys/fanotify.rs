//! fanotify_init and fanotify_mark.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{Errno, SysResult};

/// `fanotify_init(flags, event_f_flags)`.
pub fn init(flags: u32, event_f_flags: u32) -> SysResult<OwnedFd> {
    // SAFETY: integer arguments only; returns a new fd or -1.
    let fd = unsafe { libc::fanotify_init(flags, event_f_flags) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `fanotify_mark(fd, flags, mask, AT_FDCWD, path)`.
pub fn mark(fd: BorrowedFd<'_>, flags: u32, mask: u64, path: &str) -> SysResult<()> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a valid C string for the whole call; the rest are
    // integers.
    let r = unsafe { libc::fanotify_mark(fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
