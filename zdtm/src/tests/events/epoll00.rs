use crate::prelude::*;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};

pub const DESC: Desc = Desc {
    name: "events/epoll00",
    family: "events",
    description: "an epoll set keeps its targets, event masks and data; ready events are reported",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    let ev = EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK).context("eventfd")?;
    let (s1, _s2) = std::os::unix::net::UnixStream::pair().context("socketpair")?;
    ep.add(r.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 7)).context("add pipe")?;
    ep.add(ev.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 9)).context("add eventfd")?;
    ep.add(s1.as_fd(), EpollEvent::new(EpollFlags::EPOLLOUT, 11)).context("add socket")?;
    std::fs::File::from(w.try_clone()?).write_all(b"x").context("write pipe")?;
    ev.write(1).context("write eventfd")?;
    let tfds = |s: &str| -> Vec<String> { s.lines().filter(|l| l.starts_with("tfd:")).map(|l| l.to_string()).collect() };
    let before = tfds(&fdinfo(ep.0.as_raw_fd())?);
    ensure!(before.len() == 3, "fdinfo shows {before:?}");
    t.daemon()?;
    t.wait_sig();
    let after = tfds(&fdinfo(ep.0.as_raw_fd())?);
    let strip = |v: &[String]| -> Vec<String> {
        // keep "tfd: N events: M data: D", drop pos/ino/sdev which may change;
        // the kernel lists targets in the order of its red-black tree, keyed
        // by the address of each target's struct file: not an order a
        // restore can (or should) reproduce, so compare them as a set.
        let mut v: Vec<String> =
            v.iter().map(|l| l.split_whitespace().take(6).collect::<Vec<_>>().join(" ")).collect();
        v.sort();
        v
    };
    ensure!(strip(&after) == strip(&before), "epoll targets were {before:?}, now {after:?}");
    let mut evs = [EpollEvent::empty(); 8];
    let n = ep.wait(&mut evs, EpollTimeout::from(1000u16)).context("epoll_wait")?;
    let mut got: Vec<(u64, bool, bool)> = evs[..n]
        .iter()
        .map(|e| (e.data(), e.events().contains(EpollFlags::EPOLLIN), e.events().contains(EpollFlags::EPOLLOUT)))
        .collect();
    got.sort();
    let want = vec![(7, true, false), (9, true, false), (11, false, true)];
    ensure!(got == want, "epoll_wait gave {got:?}, expected {want:?}");
    Ok(())
}
