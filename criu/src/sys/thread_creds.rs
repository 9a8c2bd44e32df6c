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
}
