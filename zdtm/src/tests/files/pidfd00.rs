use crate::prelude::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub const DESC: Desc = Desc {
    name: "files/pidfd00",
    family: "files",
    description: "pidfds of the test itself and of a child (O_NONBLOCK) still refer to them after restore",
    ..Desc::DEFAULT
};

pub(crate) fn pidfd_open(pid: i32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    ensure!(r >= 0, "pidfd_open({pid}, {flags:#x}): {}", std::io::Error::last_os_error());
    // SAFETY: r is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// 0 if the signal was accepted, else the errno.
pub(crate) fn pidfd_send_signal(fd: &OwnedFd, sig: i32) -> i32 {
    // SAFETY: no pointer arguments besides a null siginfo.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0) };
    if r == 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) }
}

/// The `Pid:` and `flags:` of a pidfd's fdinfo.
pub(crate) fn pid_and_flags(fd: &OwnedFd) -> Result<(i32, u32)> {
    let info = fdinfo(fd.as_raw_fd())?;
    let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).ok_or_else(|| anyhow!("no {k} in fdinfo of fd {}: {info}", fd.as_raw_fd()));
    let pid = field("Pid:")?.parse().context("Pid:")?;
    let flags = u32::from_str_radix(field("flags:")?, 8).context("flags:")?;
    Ok((pid, flags))
}

fn readable(fd: &OwnedFd, ms: i32) -> Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    ensure!(r >= 0, "poll: {}", std::io::Error::last_os_error());
    Ok(r == 1 && p.revents & libc::POLLIN != 0)
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let me = std::process::id() as i32;
    let kid = {
        let page = &page;
        fork_child(move || {
            sync::wait_until(page.word(0), |v| v != 0)?;
            Ok(())
        })?
    };
    let res = (|| {
        let own = pidfd_open(me, 0)?;
        let child = pidfd_open(kid.pid.as_raw(), libc::O_NONBLOCK)?;
        t.daemon()?;
        t.wait_sig();
        let (p, _) = pid_and_flags(&own)?;
        ensure!(p == me, "own pidfd now refers to pid {p}, expected {me}");
        let (p, fl) = pid_and_flags(&child)?;
        ensure!(p == kid.pid.as_raw(), "child's pidfd now refers to pid {p}, expected {}", kid.pid);
        ensure!(fl & libc::O_NONBLOCK as u32 != 0, "child's pidfd lost O_NONBLOCK (flags {fl:o})");
        ensure!(pidfd_send_signal(&child, 0) == 0, "signal 0 through the child's pidfd failed");
        ensure!(!readable(&child, 0)?, "child's pidfd is readable while the child lives");
        sync::set_and_wake(page.word(0), 1)?;
        ensure!(readable(&child, 5000)?, "child's pidfd did not become readable when the child exited");
        kid.wait_ok()?;
        Ok(())
    })();
    if res.is_err() {
        kid.kill();
    }
    res
}
