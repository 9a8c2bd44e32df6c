//! Credentials of the calling thread alone. glibc's setresuid changes every
//! thread of the process; the raw syscalls change only the caller, which is
//! what a short-lived helper thread wants.

use super::{check, SysResult};

/// Sets the effective uid and gid of the calling thread only (real and
/// saved ids stay).
pub fn set_thread_effective_ids(uid: u32, gid: u32) -> SysResult<()> {
    let keep = u32::MAX as libc::c_long;
    // SAFETY: plain syscalls with integer arguments; they change the
    // credentials of this thread only.
    check(unsafe { libc::syscall(libc::SYS_setresgid, keep, gid as libc::c_long, keep) })?;
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) })?;
    Ok(())
}

/// Makes the calling thread create files as `uid`:`gid` (its filesystem
/// ids) while keeping its capabilities: the kernel would otherwise drop the
/// file capabilities (CAP_CHOWN, CAP_DAC_OVERRIDE, …) of a thread whose
/// fsuid leaves 0, so the thread first sets SECBIT_NO_SETUID_FIXUP for
/// itself. For a short-lived helper thread: it does not go back.
pub fn set_thread_fs_ids_keeping_caps(uid: u32, gid: u32) -> SysResult<()> {
    const SECBIT_NO_SETUID_FIXUP: libc::c_long = 1 << 2;
    // SAFETY: prctl with integer arguments; securebits are per thread.
    let now = check(unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) } as libc::c_long)?;
    // SAFETY: as above.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_SECUREBITS,
            now | SECBIT_NO_SETUID_FIXUP,
            0,
            0,
            0,
        )
    } as libc::c_long)?;
    // setfsuid/setfsgid report the previous id, never an error: check the
    // result by asking again (an invalid id leaves it unchanged).
    // SAFETY: plain syscalls with integer arguments, this thread only.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid as libc::c_long);
        libc::syscall(libc::SYS_setfsuid, uid as libc::c_long);
    }
    // SAFETY: -1 only queries.
    let (u, g) = unsafe {
        (
            libc::syscall(libc::SYS_setfsuid, -1 as libc::c_long),
            libc::syscall(libc::SYS_setfsgid, -1 as libc::c_long),
        )
    };
    if u != uid as libc::c_long || g != gid as libc::c_long {
        return Err(super::Errno::EPERM);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_thread_changes() {
        let me = nix::unistd::geteuid().as_raw();
        let got = std::thread::spawn(move || {
            set_thread_effective_ids(me, nix::unistd::getegid().as_raw())
                .map(|_| nix::unistd::geteuid().as_raw())
        })
        .join()
        .unwrap();
        assert_eq!(got, Ok(me));
        assert_eq!(nix::unistd::geteuid().as_raw(), me);
    }

    #[test]
    fn fs_ids_change_and_caps_stay() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || {
            set_thread_fs_ids_keeping_caps(4242, 4343).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
            // CAP_CHOWN is still there
            std::os::unix::fs::chown(d.join("f"), Some(7), Some(8)).unwrap();
        })
        .join()
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(dir.path().join("f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (7, 8));
        // the process's own fs ids did not move
        std::fs::write(dir.path().join("g"), b"y").unwrap();
        let m = std::fs::metadata(dir.path().join("g")).unwrap();
        assert_eq!(m.uid(), 0);
    }
}
