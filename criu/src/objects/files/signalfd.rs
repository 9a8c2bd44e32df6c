//! signalfd: `signalfd_entry` (the signal mask and flags). Signals pending
//! on the task are the task's (core image), not the signalfd's.

use std::os::fd::{AsFd, OwnedFd};

use crate::image::pb;
use crate::proc;
use crate::sys;

use super::super::{Error, Result};
use super::no_owner;

/// Dump half.
pub fn dump(pid: i32, fd: i32, id: u32, info: &proc::Fdinfo) -> Result<pb::SignalfdEntry> {
    let sigmask = info.signalfd_sigmask.ok_or_else(|| Error::Unsupported {
        pid,
        what: format!("fd {fd} is a signalfd but its fdinfo has no sigmask"),
    })?;
    Ok(pb::SignalfdEntry {
        id,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
        sigmask,
    })
}

/// Restore half.
pub fn open(e: &pb::SignalfdEntry) -> Result<OwnedFd> {
    let fd = sys::events::signalfd(e.sigmask, libc::SFD_CLOEXEC).map_err(|er| Error::Mismatch {
        what: format!("signalfd id {} (mask {:#x}): {er}", e.id, e.sigmask),
    })?;
    super::pipe::set_flags(fd.as_fd(), e.flags, &format!("signalfd id {}", e.id))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn mask_with_a_realtime_signal_survives() {
        let mask = (1u64 << (libc::SIGUSR1 - 1)) | (1u64 << (libc::SIGRTMIN() + 2 - 1));
        let fd = sys::events::signalfd(mask, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK).unwrap();
        let me = std::process::id() as i32;
        let info = proc::read_fdinfo(me, fd.as_raw_fd()).unwrap();
        let e = dump(me, fd.as_raw_fd(), 3, &info).unwrap();
        assert_eq!(e.sigmask, mask);
        assert!(e.flags & libc::O_NONBLOCK as u32 != 0);
        let back = open(&e).unwrap();
        let info2 = proc::read_fdinfo(me, back.as_raw_fd()).unwrap();
        assert_eq!(info2.signalfd_sigmask, Some(mask));
        assert_eq!(info2.flags & !(libc::O_CLOEXEC as u32), e.flags);
    }
}
