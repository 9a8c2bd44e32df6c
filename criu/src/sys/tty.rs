//! Terminal ioctls nix has no safe wrapper for (ptys: index, lock, peer,
//! packet mode; termios2; window size).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{check, SysResult};

/// An ioctl that reads one `c_int` from the kernel.
fn get_int(fd: BorrowedFd<'_>, req: libc::Ioctl) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: `req` is one of the TIOCG* requests below that write a single
    // int into the pointed-to `v`, which lives for the whole call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) } as libc::c_long)?;
    Ok(v)
}

/// An ioctl that takes a pointer to one `c_int` from the caller.
fn set_int(fd: BorrowedFd<'_>, req: libc::Ioctl, v: i32) -> SysResult<()> {
    let v: libc::c_int = v;
    // SAFETY: `req` is one of the TIOCS* requests below that read a single
    // int from the pointed-to `v`, which lives for the whole call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const libc::c_int) } as libc::c_long)?;
    Ok(())
}

/// The pty index of master `fd` (TIOCGPTN): the N of /dev/pts/N.
pub fn pty_index(fd: BorrowedFd<'_>) -> SysResult<u32> {
    get_int(fd, libc::TIOCGPTN).map(|v| v as u32)
}

/// Whether the slave of master `fd` is locked (TIOCGPTLCK).
pub fn pty_locked(fd: BorrowedFd<'_>) -> SysResult<bool> {
    get_int(fd, libc::TIOCGPTLCK).map(|v| v != 0)
}

/// Locks or unlocks the slave of master `fd` (TIOCSPTLCK).
pub fn set_pty_locked(fd: BorrowedFd<'_>, locked: bool) -> SysResult<()> {
    set_int(fd, libc::TIOCSPTLCK, i32::from(locked))
}

/// Whether master `fd` is in packet mode (TIOCGPKT).
pub fn packet_mode(fd: BorrowedFd<'_>) -> SysResult<bool> {
    get_int(fd, libc::TIOCGPKT).map(|v| v != 0)
}

/// Turns packet mode of master `fd` on or off (TIOCPKT).
pub fn set_packet_mode(fd: BorrowedFd<'_>, on: bool) -> SysResult<()> {
    set_int(fd, libc::TIOCPKT, i32::from(on))
}

/// Whether terminal `fd` is in exclusive mode (TIOCGEXCL).
pub fn exclusive(fd: BorrowedFd<'_>) -> SysResult<bool> {
    get_int(fd, libc::TIOCGEXCL).map(|v| v != 0)
}

/// Puts terminal `fd` in exclusive mode (TIOCEXCL) or out of it (TIOCNXCL).
pub fn set_exclusive(fd: BorrowedFd<'_>, on: bool) -> SysResult<()> {
    let req = if on { libc::TIOCEXCL } else { libc::TIOCNXCL };
    // SAFETY: TIOCEXCL/TIOCNXCL take no argument.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req) } as libc::c_long)?;
    Ok(())
}

/// Opens the slave of pty master `fd` with `flags` (TIOCGPTPEER), without
/// going through a path.
pub fn open_peer(fd: BorrowedFd<'_>, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes the open flags as a plain integer argument
    // and returns a new fd.
    let new =
        check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTPEER, flags) } as libc::c_long)?;
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}

/// The kernel's termios of terminal `fd` (TCGETS2; for a pty master, that
/// of its slave).
pub fn termios(fd: BorrowedFd<'_>) -> SysResult<libc::termios2> {
    // SAFETY: termios2 is plain integers and arrays: all zeroes is valid.
    let mut t: libc::termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 writes one struct termios2 into `t`, which lives for
    // the whole call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS2, &mut t as *mut libc::termios2) }
            as libc::c_long,
    )?;
    Ok(t)
}

/// Sets the termios of terminal `fd` at once (TCSETS2).
pub fn set_termios(fd: BorrowedFd<'_>, t: &libc::termios2) -> SysResult<()> {
    // SAFETY: TCSETS2 reads one struct termios2 from `t`, which lives for
    // the whole call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCSETS2, t as *const libc::termios2) }
            as libc::c_long,
    )?;
    Ok(())
}

/// The window size of terminal `fd` (TIOCGWINSZ).
pub fn winsize(fd: BorrowedFd<'_>) -> SysResult<libc::winsize> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize into `w`, which lives for
    // the whole call.
    check(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut w as *mut libc::winsize,
        )
    } as libc::c_long)?;
    Ok(w)
}

/// Sets the window size of terminal `fd` (TIOCSWINSZ).
pub fn set_winsize(fd: BorrowedFd<'_>, w: &libc::winsize) -> SysResult<()> {
    // SAFETY: TIOCSWINSZ reads one struct winsize from `w`, which lives for
    // the whole call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, w as *const libc::winsize) }
            as libc::c_long,
    )?;
    Ok(())
}
