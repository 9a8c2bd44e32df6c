use crate::prelude::*;
use nix::pty::openpty;
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "tty/ctty_member",
    family: "tty",
    description: "a task that shares its session leader's controlling pty without leading the session gets it back (from its leader)",
    flags: &[Flag::Excl],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let leader = {
        let page = &page;
        fork_child(move || {
            nix::unistd::setsid().context("setsid")?;
            let pty = openpty(None, None).context("openpty")?;
            // SAFETY: TIOCSCTTY takes an integer argument.
            let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
            ensure!(r == 0, "TIOCSCTTY: {}", std::io::Error::last_os_error());
            // The member inherits the terminal with the fork.
            let member = fork_child(|| {
                sync::add_and_wake(page.word(0), 1)?;
                sync::wait_until(page.word(1), |v| v != 0)?;
                let sid = nix::sys::termios::tcgetsid(&pty.slave).context("tcgetsid in the member")?;
                ensure!(sid == nix::unistd::getsid(None)?, "the member's terminal belongs to session {sid}");
                // /dev/tty opens only with a controlling terminal: ours.
                let ctty = std::fs::File::open("/dev/tty").context("open /dev/tty in the member")?;
                let s2 = nix::sys::termios::tcgetsid(&ctty).context("tcgetsid of /dev/tty")?;
                ensure!(s2 == sid, "/dev/tty belongs to session {s2}, the slave to {sid}");
                Ok(())
            })?;
            let r = member.wait_ok();
            // SAFETY: SIG_IGN is a valid disposition for SIGHUP.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
            r
        })?
    };
    let res = t.checks_in_child(&leader, "the session", || page.word(0).load(Ordering::SeqCst) == 1, page.word(1));
    res
}
