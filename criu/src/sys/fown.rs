//! The owner of an open file (who gets SIGIO/SIGURG): `F_GETOWN_EX`,
//! `F_GETOWNER_UIDS`, `F_GETSIG`.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{check, SysResult};

pub const F_SETSIG: i32 = 10;
pub const F_GETSIG: i32 = 11;
pub const F_SETOWN_EX: i32 = 15;
pub const F_GETOWN_EX: i32 = 16;
/// Only with CONFIG_CHECKPOINT_RESTORE: the uid and euid recorded with the
/// owner.
pub const F_GETOWNER_UIDS: i32 = 17;

/// `struct f_owner_ex`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnerEx {
    /// F_OWNER_TID (0), F_OWNER_PID (1), F_OWNER_PGRP (2).
    pub kind: i32,
    /// In the caller's pid namespace; 0 when there is no owner.
    pub pid: i32,
}

impl OwnerEx {
    /// The bytes of the struct, for a remote `F_SETOWN_EX`.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.kind.to_ne_bytes());
        b[4..].copy_from_slice(&self.pid.to_ne_bytes());
        b
    }
}

/// `F_GETOWN_EX`.
pub fn get_owner(fd: BorrowedFd<'_>) -> SysResult<OwnerEx> {
    let mut o = OwnerEx::default();
    // SAFETY: `o` is a writable f_owner_ex (same layout) for the call.
    check(unsafe {
        libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut o as *mut OwnerEx) as libc::c_long
    })?;
    Ok(o)
}

/// `F_GETOWNER_UIDS`: (uid, euid) of whoever set the owner.
pub fn get_owner_uids(fd: BorrowedFd<'_>) -> SysResult<(u32, u32)> {
    let mut v = [0u32; 2];
    // SAFETY: the kernel writes two u32 into `v`.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWNER_UIDS, v.as_mut_ptr()) as libc::c_long })?;
    Ok((v[0], v[1]))
}

/// `F_GETSIG`: 0 for the default SIGIO.
pub fn get_sig(fd: BorrowedFd<'_>) -> SysResult<i32> {
    // SAFETY: integer arguments only.
    let r = check(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) as libc::c_long })?;
    Ok(r as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn owner_of_a_pipe() {
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        assert_eq!(get_owner(r.as_fd()).expect("get"), OwnerEx::default());
        let me = std::process::id() as i32;
        let o = OwnerEx { kind: 1, pid: me };
        // SAFETY: test only: a valid f_owner_ex.
        let rc = unsafe { libc::fcntl(r.as_raw_fd(), F_SETOWN_EX, &o as *const OwnerEx) };
        assert_eq!(rc, 0);
        // SAFETY: test only: integers.
        assert_eq!(unsafe { libc::fcntl(r.as_raw_fd(), F_SETSIG, 40) }, 0);
        assert_eq!(get_owner(r.as_fd()).expect("get"), o);
        assert_eq!(get_sig(r.as_fd()).expect("sig"), 40);
        let (uid, euid) = get_owner_uids(r.as_fd()).expect("uids");
        assert_eq!(
            (uid, euid),
            (
                nix::unistd::getuid().as_raw(),
                nix::unistd::geteuid().as_raw()
            )
        );
        assert_eq!(&o.to_bytes()[..4], &1i32.to_ne_bytes());
    }
}
