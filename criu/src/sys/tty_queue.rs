//! Bytes queued on a terminal: how many (FIONREAD), and whether a read
//! would return at once.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{check, SysResult};

/// Bytes a read of terminal `fd` could return (FIONREAD).
pub fn queued(fd: BorrowedFd<'_>) -> SysResult<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, which lives for the call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) }
            as libc::c_long,
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Whether a read of `fd` would return without waiting (poll, no timeout).
pub fn readable_now(fd: BorrowedFd<'_>) -> SysResult<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = check(unsafe { libc::poll(&mut p, 1, 0) } as libc::c_long)?;
    Ok(n == 1 && p.revents & libc::POLLIN != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_pipe_with_bytes() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        assert_eq!(queued(r.as_fd()).expect("empty"), 0);
        assert!(!readable_now(r.as_fd()).expect("poll"));
        nix::unistd::write(&w, b"abc").expect("write");
        assert_eq!(queued(r.as_fd()).expect("three"), 3);
        assert!(readable_now(r.as_fd()).expect("poll"));
    }
}
