//! The new mount API where nix lacks it: `open_tree` (a detached copy of a
//! mount, which keeps its peer group and master) and `move_mount` of such
//! a copy into the mount namespace of the calling thread.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{check, SysResult};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;

fn c_path(p: &Path) -> SysResult<CString> {
    CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
        .map_err(|_| nix::errno::Errno::EINVAL)
}

/// A detached copy of the mount at `path` (not of the mounts below it),
/// as `mount --bind` would make it: in the same peer group when that
/// mount is shared, a slave of the same master when it is a slave.
pub fn clone_mount(path: &Path) -> SysResult<OwnedFd> {
    let p = c_path(path)?;
    // SAFETY: `p` is a NUL-terminated string alive across the call; the
    // other arguments are integers. A non-negative result is a new fd we
    // then own.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by open_tree and is owned by no one.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches the detached mount `tree` (from [`clone_mount`]) at `target`,
/// in the mount namespace of the calling thread.
pub fn attach(tree: BorrowedFd<'_>, target: &Path) -> SysResult<()> {
    let to = c_path(target)?;
    let empty = c"";
    // SAFETY: both strings are NUL-terminated and alive across the call;
    // `tree` is a valid fd for its duration.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_is_enoent() {
        let e = clone_mount(Path::new("/nonexistent/criu-rs/mount")).unwrap_err();
        assert_eq!(e, nix::errno::Errno::ENOENT);
    }
}
