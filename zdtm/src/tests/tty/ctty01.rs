use super::ctty00::check;
use crate::prelude::*;
use nix::pty::openpty;
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "tty/ctty01",
    family: "tty",
    // pty indexes are the machine's: a restore needs its index free
    flags: &[Flag::Excl],
    description: "a pty opened by the parent, taken as controlling terminal by a child that leads its own session through the inherited fd, comes back as the child's",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    // Opened here: the child's fds share these open files.
    let pty = openpty(None, None).context("openpty")?;
    let leader = {
        let (page, pty) = (&page, &pty);
        fork_child(move || {
            nix::unistd::setsid().context("setsid")?;
            // SAFETY: TIOCSCTTY takes an integer argument.
            let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
            ensure!(r == 0, "TIOCSCTTY: {}", std::io::Error::last_os_error());
            check(&pty.slave).context("before the dump")?;
            sync::add_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            check(&pty.slave).context("after restore")?;
            // SAFETY: SIG_IGN is a valid disposition for SIGHUP.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
            Ok(())
        })?
    };
    let res = t.checks_in_child(&leader, "the session leader", || page.word(0).load(Ordering::SeqCst) == 1, page.word(1));
    drop(pty);
    res
}
