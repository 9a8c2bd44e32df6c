//! The anonymous-inode files of the "events" family whose nix wrappers are
//! missing or too narrow: eventfd with a 64-bit counter, signalfd with any
//! (real-time too) signal mask, timerfd, inotify and open_by_handle_at.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{check, Errno, SysResult};

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that
    // nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// `eventfd(0, flags)`.
pub fn eventfd(flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: integers only.
    let fd = check(unsafe { libc::eventfd(0, flags) } as libc::c_long)?;
    Ok(owned(fd))
}

/// `signalfd4(-1, mask, flags)`; bit N-1 of `mask` is signal N.
pub fn signalfd(mask: u64, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: the kernel reads 8 bytes of sigset from a live local.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            std::mem::size_of::<u64>(),
            flags,
        )
    })?;
    Ok(owned(fd))
}

/// `timerfd_create(clockid, flags)`.
pub fn timerfd_create(clockid: i32, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: integers only.
    let fd = check(unsafe { libc::timerfd_create(clockid, flags) } as libc::c_long)?;
    Ok(owned(fd))
}

fn ts(t: (u64, u64)) -> libc::timespec {
    libc::timespec {
        tv_sec: t.0 as libc::time_t,
        tv_nsec: t.1 as libc::c_long,
    }
}

/// `timerfd_settime(fd, flags, {interval, value})`, times as (sec, nsec).
pub fn timerfd_settime(
    fd: &impl AsRawFd,
    flags: i32,
    value: (u64, u64),
    interval: (u64, u64),
) -> SysResult<()> {
    let new = libc::itimerspec {
        it_interval: ts(interval),
        it_value: ts(value),
    };
    // SAFETY: the kernel reads one itimerspec from a live local; the old
    // value pointer is null.
    check(
        unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &new, std::ptr::null_mut()) }
            as libc::c_long,
    )?;
    Ok(())
}

/// `ioctl(fd, TFD_IOC_SET_TICKS, &ticks)`: expirations not yet read.
pub fn timerfd_set_ticks(fd: &impl AsRawFd, ticks: u64) -> SysResult<()> {
    // _IOW('T', 0, u64)
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    // SAFETY: the kernel reads one u64 from a live local.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) }
            as libc::c_long,
    )?;
    Ok(())
}

/// `clock_gettime(clockid)` as (sec, nsec).
pub fn clock_now(clockid: i32) -> SysResult<(u64, u64)> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into a live local.
    check(unsafe { libc::clock_gettime(clockid, &mut t) } as libc::c_long)?;
    Ok((t.tv_sec as u64, t.tv_nsec as u64))
}

/// `inotify_init1(flags)`.
pub fn inotify_init(flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: integers only.
    let fd = check(unsafe { libc::inotify_init1(flags) } as libc::c_long)?;
    Ok(owned(fd))
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor.
pub fn inotify_add_watch(fd: &impl AsRawFd, path: &str, mask: u32) -> SysResult<i32> {
    let c = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    let wd = check(
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) } as libc::c_long,
    )?;
    Ok(wd as i32)
}

/// `inotify_rm_watch(fd, wd)`.
pub fn inotify_rm_watch(fd: &impl AsRawFd, wd: i32) -> SysResult<()> {
    // SAFETY: integers only.
    check(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) } as libc::c_long)?;
    Ok(())
}

/// `open_by_handle_at(mount_fd, handle, flags)` for a handle of
/// `handle_type` whose bytes are `bytes`.
pub fn open_by_handle_at(
    mount_fd: &impl AsRawFd,
    handle_type: i32,
    bytes: &[u8],
    flags: i32,
) -> SysResult<OwnedFd> {
    const MAX_HANDLE_SZ: usize = 128;
    if bytes.len() > MAX_HANDLE_SZ {
        return Err(Errno::EINVAL);
    }
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    // laid out in a u32 buffer so that it is aligned.
    let mut buf = [0u32; 2 + MAX_HANDLE_SZ / 4];
    buf[0] = bytes.len() as u32;
    buf[1] = handle_type as u32;
    for (i, b) in bytes.iter().enumerate() {
        let word = &mut buf[2 + i / 4];
        let mut le = word.to_ne_bytes();
        le[i % 4] = *b;
        *word = u32::from_ne_bytes(le);
    }
    // SAFETY: `buf` is a properly aligned, initialised struct file_handle
    // whose handle_bytes does not exceed the space behind it.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_mut_ptr(),
            flags,
        )
    })?;
    Ok(owned(fd))
}
