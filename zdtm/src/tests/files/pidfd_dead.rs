use super::pidfd00::{pid_and_flags, pidfd_open, pidfd_send_signal};
use crate::prelude::*;
use std::os::fd::AsFd;

pub const DESC: Desc = Desc {
    name: "files/pidfd_dead",
    family: "files",
    description: "pidfds of a child that exited and was reaped stay dead after restore; two of the same task still share their inode",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let kid = {
        let page = &page;
        fork_child(move || {
            sync::wait_until(page.word(0), |v| v != 0)?;
            Ok(())
        })?
    };
    let a = pidfd_open(kid.pid.as_raw(), 0);
    let b = pidfd_open(kid.pid.as_raw(), libc::O_NONBLOCK);
    sync::set_and_wake(page.word(0), 1)?;
    kid.wait_ok()?;
    let (a, b) = (a?, b?);
    let ino = |f: &std::os::fd::OwnedFd| nix::sys::stat::fstat(f.as_fd()).map(|s| s.st_ino).context("fstat of a pidfd");
    let shared_before = ino(&a)? == ino(&b)?;
    t.daemon()?;
    t.wait_sig();
    for (name, f) in [("first", &a), ("second", &b)] {
        let (p, _) = pid_and_flags(f)?;
        ensure!(p == -1, "the {name} dead pidfd now refers to pid {p}");
        let e = pidfd_send_signal(f, 0);
        ensure!(e == libc::ESRCH, "signal 0 through the {name} dead pidfd: errno {e}, expected ESRCH");
    }
    let (_, fl) = pid_and_flags(&b)?;
    ensure!(fl & libc::O_NONBLOCK as u32 != 0, "the second dead pidfd lost O_NONBLOCK (flags {fl:o})");
    if shared_before {
        ensure!(ino(&a)? == ino(&b)?, "the two dead pidfds of one task no longer share their inode");
    }
    Ok(())
}
