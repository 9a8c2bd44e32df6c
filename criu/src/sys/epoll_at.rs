//! Registering a target in an epoll set under a chosen fd number.
//!
//! An epoll set remembers each target by (open file description, fd
//! number), and `/proc/PID/fdinfo` shows the number. At restore the target
//! files live in criu under other numbers, and criu's own fd table may hold
//! something at the number wanted. So the registration is done by a
//! short-lived forked child: it has its own copy of the fd table, puts the
//! target at the wanted number there and calls epoll_ctl. The registration
//! outlives the child, because it belongs to the open files, which criu
//! still holds.

use std::os::fd::AsRawFd;

use super::{check, Errno, SysResult};

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, number, {events, data})` where `number`
/// refers to `target`.
pub fn add_as(
    epfd: &impl AsRawFd,
    target: &impl AsRawFd,
    number: i32,
    events: u32,
    data: u64,
) -> SysResult<()> {
    let (ep, tg) = (epfd.as_raw_fd(), target.as_raw_fd());
    if number < 0 {
        return Err(Errno::EBADF);
    }
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: fork in a process that may have threads: the child only makes
    // async-signal-safe system calls (fcntl, dup2, epoll_ctl, _exit) on memory it
    // owns (its copy of `ev`), then exits without running any destructor.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: see above; all arguments are integers or a live local.
        unsafe {
            // The set itself may sit on the number wanted: move it away.
            let ep = if ep == number {
                libc::fcntl(ep, libc::F_DUPFD, number + 1)
            } else {
                ep
            };
            if ep < 0 {
                libc::_exit(*libc::__errno_location() & 0xff);
            }
            if tg != number && libc::dup2(tg, number) < 0 {
                libc::_exit(*libc::__errno_location() & 0xff);
            }
            if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, number, &mut ev) < 0 {
                libc::_exit(*libc::__errno_location() & 0xff);
            }
            libc::_exit(0);
        }
    }
    check(child as libc::c_long)?;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waits for our own child; writes one int into a live local.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == child {
            break;
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            e => Err(Errno::from_raw(e)),
        }
    } else {
        Err(Errno::ECHILD)
    }
}
