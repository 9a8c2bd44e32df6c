//! eventfd: `eventfd_file_entry` (counter and flags).
//!
//! The image has no field for EFD_SEMAPHORE. An eventfd is always open
//! O_RDWR, so the access-mode bits of its flags carry nothing; criu-rs sets
//! bit 0 (EFD_SEMAPHORE's value) there for a semaphore eventfd. Upstream
//! CRIU hands these flags to F_SETFL, which ignores the access mode.

use std::os::fd::{AsFd, OwnedFd};

use crate::image::pb;
use crate::proc;
use crate::sys;

use super::super::{Error, Result};
use super::no_owner;

/// EFD_SEMAPHORE, kept in the access-mode bits of `flags`.
pub const SEMAPHORE_BIT: u32 = libc::EFD_SEMAPHORE as u32;

/// Dump half.
pub fn dump(pid: i32, fd: i32, id: u32, info: &proc::Fdinfo) -> Result<pb::EventfdFileEntry> {
    let e = info.eventfd.as_ref().ok_or_else(|| Error::Unsupported {
        pid,
        what: format!("fd {fd} is an eventfd but its fdinfo has no eventfd-count"),
    })?;
    let mut flags = info.flags & !(libc::O_CLOEXEC as u32);
    if e.semaphore == Some(true) {
        flags = (flags & !(libc::O_ACCMODE as u32)) | libc::O_RDWR as u32 | SEMAPHORE_BIT;
    }
    Ok(pb::EventfdFileEntry {
        id,
        flags,
        fown: no_owner(),
        counter: e.count,
    })
}

/// The eventfd(2) flags an entry's `flags` stand for.
pub fn create_flags(flags: u32) -> i32 {
    let mut f = libc::EFD_CLOEXEC;
    if flags & SEMAPHORE_BIT != 0 && flags & libc::O_ACCMODE as u32 == 3 {
        f |= libc::EFD_SEMAPHORE;
    }
    if flags & libc::O_NONBLOCK as u32 != 0 {
        f |= libc::EFD_NONBLOCK;
    }
    f
}

/// Restore half.
pub fn open(e: &pb::EventfdFileEntry) -> Result<OwnedFd> {
    let err = |what: &str, errno| Error::Mismatch {
        what: format!("eventfd id {}: {what}: {errno}", e.id),
    };
    let fd = sys::events::eventfd(create_flags(e.flags)).map_err(|er| err("eventfd", er))?;
    if e.counter != 0 {
        nix::unistd::write(fd.as_fd(), &e.counter.to_ne_bytes())
            .map_err(|er| err("setting the counter", er))?;
    }
    super::pipe::set_flags(fd.as_fd(), e.flags, &format!("eventfd id {}", e.id))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn roundtrip(flags: i32, initial: u64) -> (pb::EventfdFileEntry, OwnedFd) {
        let fd = sys::events::eventfd(flags | libc::EFD_CLOEXEC).unwrap();
        nix::unistd::write(&fd, &initial.to_ne_bytes()).unwrap();
        let info = proc::read_fdinfo(std::process::id() as i32, fd.as_raw_fd()).unwrap();
        let e = dump(0, fd.as_raw_fd(), 1, &info).unwrap();
        (e, open(&e).unwrap())
    }

    #[test]
    fn counter_beyond_32_bits_and_nonblock_survive() {
        let (e, fd) = roundtrip(libc::EFD_NONBLOCK, 1 << 40);
        assert_eq!(e.counter, 1 << 40);
        let mut b = [0u8; 8];
        nix::unistd::read(&fd, &mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(b), 1 << 40);
        assert!(
            nix::unistd::read(&fd, &mut b).is_err(),
            "still non-blocking"
        );
    }

    #[test]
    fn semaphore_survives() {
        let (e, fd) = roundtrip(libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE, 2);
        assert_eq!(e.flags & 3, 3);
        let mut b = [0u8; 8];
        nix::unistd::read(&fd, &mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(b), 1);
        nix::unistd::read(&fd, &mut b).unwrap();
        assert_eq!(u64::from_ne_bytes(b), 1);
    }

    #[test]
    fn plain_flags_as_upstream_writes_them() {
        assert_eq!(create_flags(2), libc::EFD_CLOEXEC);
        assert_eq!(
            create_flags(2 | libc::O_NONBLOCK as u32),
            libc::EFD_CLOEXEC | libc::EFD_NONBLOCK
        );
    }
}
