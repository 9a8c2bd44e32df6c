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

/// A child of criu that waits in a private copy of a mount namespace where
/// the `covered` mounts stacked at a mount point are detached: the mount
/// below is reached through `/proc/PID/root`. Killed and reaped on drop.
#[derive(Debug)]
pub struct Uncovered {
    pub pid: i32,
}

impl Drop for Uncovered {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

/// Forks an [`Uncovered`]: the child joins `userns` (when given: the owner
/// of the namespace, so that its copy's mounts are not locked) and
/// `mntns`, makes a private copy of it (`unshare(CLONE_NEWNS)`, all
/// private), detaches `covered` mounts at `mp` there and waits. The error
/// is the first failing step's, with its name.
pub fn uncover(
    userns: Option<BorrowedFd<'_>>,
    mntns: BorrowedFd<'_>,
    mp: &Path,
    covered: usize,
) -> Result<Uncovered, (&'static str, nix::errno::Errno)> {
    let mp = c_path(mp).map_err(|e| ("the mount point", e))?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ("pipe", e))?;
    let user = userns.map(|f| f.as_raw_fd());
    let mnt = mntns.as_raw_fd();
    let wfd = w.as_raw_fd();
    match super::clone3::fork_with_pid(None).map_err(|e| ("fork", e))? {
        super::clone3::Forked::Child => {
            // SAFETY: in the child of a fork of a multi-threaded process:
            // raw async-signal-safe syscalls only, on fds and a C string
            // made before the fork; it never returns into criu's code.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let step: u8 = 'steps: {
                    if let Some(u) = user {
                        if libc::setns(u, libc::CLONE_NEWUSER) != 0 {
                            break 'steps 1;
                        }
                    }
                    if libc::setns(mnt, libc::CLONE_NEWNS) != 0 {
                        break 'steps 2;
                    }
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        break 'steps 3;
                    }
                    let root = c"/";
                    let flags = libc::MS_REC | libc::MS_PRIVATE;
                    if libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) != 0
                    {
                        break 'steps 4;
                    }
                    for _ in 0..covered {
                        if libc::umount2(mp.as_ptr(), libc::MNT_DETACH) != 0 {
                            break 'steps 5;
                        }
                    }
                    0
                };
                let errno = if step == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
                let msg = [step, errno as u8];
                libc::write(wfd, msg.as_ptr().cast(), 2);
                if step != 0 {
                    libc::_exit(1);
                }
                loop {
                    libc::pause();
                }
            }
        }
        super::clone3::Forked::Parent(pid) => {
            drop(w);
            let child = Uncovered { pid };
            let mut msg = [0u8; 2];
            let n =
                nix::unistd::read(&r, &mut msg).map_err(|e| ("reading the helper's answer", e))?;
            const STEPS: [&str; 6] = [
                "",
                "joining the user namespace",
                "joining the mount namespace",
                "unshare(CLONE_NEWNS)",
                "making the copy private",
                "detaching a mount stacked on it",
            ];
            match (n, msg[0]) {
                (2, 0) => Ok(child),
                (2, s) => Err((
                    STEPS.get(s as usize).copied().unwrap_or("?"),
                    nix::errno::Errno::from_raw(i32::from(msg[1])),
                )),
                _ => Err(("the helper ended without an answer", nix::errno::Errno::EIO)),
            }
        }
    }
}
