//! epoll: `eventpoll_file_entry` with one `eventpoll_tfd_entry` per target
//! (the target's fd number in the owning task, events, data). At restore
//! the targets are other files of the same task; they are made first, and
//! registered under their old fd numbers (see `sys::epoll_at`).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::image::pb;
use crate::proc;
use crate::sys;

use super::super::{Error, Result};
use super::no_owner;

/// Dump half. `open_fds` are the fd numbers the task has: a target must be
/// one of them (a registration that outlived its fd cannot be restored).
pub fn dump(
    pid: i32,
    fd: i32,
    id: u32,
    info: &proc::Fdinfo,
    open_fds: &[i32],
) -> Result<pb::EventpollFileEntry> {
    let mut tfd = Vec::with_capacity(info.epoll.len());
    for t in &info.epoll {
        if !open_fds.contains(&t.tfd) {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} is an epoll set watching fd {}, which the task closed",
                    t.tfd
                ),
            });
        }
        tfd.push(pb::EventpollTfdEntry {
            // Upstream leaves this 0 for targets kept inside the file entry.
            id: 0,
            tfd: t.tfd as u32,
            events: t.events,
            data: t.data,
            dev: Some(super::inotify::kernel_dev(t.dev)),
            inode: Some(t.ino),
            pos: Some(t.pos),
        });
    }
    Ok(pb::EventpollFileEntry {
        id,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
        tfd,
    })
}

/// Restore half: an empty epoll set (targets are added by [`add_target`]).
pub fn create(e: &pb::EventpollFileEntry) -> Result<OwnedFd> {
    let fd = nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC)
        .map_err(|er| Error::Mismatch {
            what: format!("epoll id {}: epoll_create: {er}", e.id),
        })?
        .0;
    super::pipe::set_flags(
        std::os::fd::AsFd::as_fd(&fd),
        e.flags,
        &format!("epoll id {}", e.id),
    )?;
    Ok(fd)
}

/// Restore half: registers `target` as fd `t.tfd` in the set `ep`.
pub fn add_target(
    ep: &OwnedFd,
    e: &pb::EventpollFileEntry,
    t: &pb::EventpollTfdEntry,
    target: &impl AsRawFd,
) -> Result<()> {
    sys::epoll_at::add_as(ep, target, t.tfd as i32, t.events, t.data).map_err(|er| {
        Error::Mismatch {
            what: format!("epoll id {}: adding target fd {}: {er}", e.id, t.tfd),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn targets_keep_their_numbers_events_and_data() {
        let me = std::process::id() as i32;
        let (r, w) = nix::unistd::pipe().unwrap();
        let ep =
            nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        ep.add(
            r.as_fd(),
            nix::sys::epoll::EpollEvent::new(nix::sys::epoll::EpollFlags::EPOLLIN, 42),
        )
        .unwrap();
        let info = proc::read_fdinfo(me, ep.0.as_raw_fd()).unwrap();
        let e = dump(
            me,
            ep.0.as_raw_fd(),
            1,
            &info,
            &[r.as_raw_fd(), w.as_raw_fd()],
        )
        .unwrap();
        assert_eq!(e.tfd.len(), 1);
        assert_eq!(e.tfd[0].tfd, r.as_raw_fd() as u32);
        assert_eq!(e.tfd[0].data, 42);
        // Closed target: refused, naming both fds.
        let msg = dump(me, 77, 1, &info, &[]).unwrap_err().to_string();
        assert!(
            msg.contains("fd 77") && msg.contains(&format!("fd {}", r.as_raw_fd())),
            "{msg}"
        );

        // Restore onto a duplicate of the read end: the set shows the old
        // number even though criu's copy has another.
        let copy = sys::fd::dup_above(&r, 500).unwrap();
        let back = create(&e).unwrap();
        add_target(&back, &e, &e.tfd[0], &copy).unwrap();
        let info2 = proc::read_fdinfo(me, back.as_raw_fd()).unwrap();
        assert_eq!(info2.epoll.len(), 1);
        assert_eq!(info2.epoll[0].tfd, r.as_raw_fd());
        assert_eq!(info2.epoll[0].data, 42);
        nix::unistd::write(&w, b"x").unwrap();
        let ep2 = nix::sys::epoll::Epoll(back);
        let mut evs = [nix::sys::epoll::EpollEvent::empty(); 2];
        let n = ep2.wait(&mut evs, 1000u16).unwrap();
        assert_eq!(n, 1);
        assert_eq!(evs[0].data(), 42);
    }
}
