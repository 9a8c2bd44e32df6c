use crate::prelude::*;
use nix::pty::openpty;
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "tty/ctty00",
    family: "tty",
    // pty indexes are the machine's: a restore needs its index free
    flags: &[Flag::Excl],
    description: "a session leader whose controlling terminal is a pty slave it holds gets it back: tcgetsid, tty_nr, the foreground group and /dev/tty",
    ..Desc::DEFAULT
};

/// tty_nr (field 7) of /proc/self/stat.
fn tty_nr() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace().nth(4).unwrap_or("").parse().context("tty_nr")
}

fn encode(rdev: u64) -> u64 {
    let (ma, mi) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
    (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12)
}

pub(crate) fn check(slave: &OwnedFd) -> Result<()> {
    let me = nix::unistd::getpid();
    let sid = nix::sys::termios::tcgetsid(slave).context("tcgetsid")?;
    ensure!(sid == me, "tcgetsid says {sid}, expected {me}");
    let fg = nix::unistd::tcgetpgrp(slave).context("tcgetpgrp")?;
    ensure!(fg == me, "foreground group {fg}, expected {me}");
    let rdev = nix::sys::stat::fstat(slave).context("fstat slave")?.st_rdev;
    let nr = tty_nr()?;
    ensure!(nr == encode(rdev), "tty_nr is {nr:#x}, expected {:#x}", encode(rdev));
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").context("open /dev/tty")?;
    let trdev = nix::sys::stat::fstat(&tty).context("fstat /dev/tty")?.st_rdev;
    ensure!(libc::major(trdev) == 5 && libc::minor(trdev) == 0, "/dev/tty is {trdev:#x}");
    Ok(())
}

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
            check(&pty.slave).context("before the dump")?;
            sync::add_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            check(&pty.slave).context("after restore")?;
            // Closing the master hangs the terminal up: SIGHUP for us.
            // SAFETY: SIG_IGN is a valid disposition for SIGHUP.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
            drop(pty.master);
            Ok(())
        })?
    };
    let res = t.checks_in_child(&leader, "the session leader", || page.word(0).load(Ordering::SeqCst) == 1, page.word(1));
    res
}
