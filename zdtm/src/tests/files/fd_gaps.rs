use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "files/fd_gaps",
    family: "files",
    description: "high fd numbers with gaps between them and their FD_CLOEXEC flags are kept",
    ..Desc::DEFAULT
};

fn is_open(fd: i32) -> bool {
    std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok()
}

pub fn run(t: &mut Test) -> Result<()> {
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).context("getrlimit")?;
    let top = (soft.min(1024) - 1) as i32;
    let null = std::fs::File::open("/dev/null").context("open /dev/null")?;
    let mut keep: Vec<(OwnedFd, bool)> = Vec::new();
    for (n, cloexec) in [(100, false), (101, true), (300, true), (top / 2 + 7, false), (top, true)] {
        let arg = if cloexec { FcntlArg::F_DUPFD_CLOEXEC(n) } else { FcntlArg::F_DUPFD(n) };
        let fd = fcntl(null.as_fd(), arg).with_context(|| format!("dup to {n}"))?;
        let owned = sys::own_fd(fd);
        ensure!(fd == n, "asked for fd {n}, got {fd}");
        keep.push((owned, cloexec));
    }
    t.daemon()?;
    t.wait_sig();
    for (f, cloexec) in &keep {
        let fd = f.as_raw_fd();
        let l = fd_link(fd)?;
        ensure!(l == "/dev/null", "fd {fd} points to {l}");
        let fl = fcntl(f.as_fd(), FcntlArg::F_GETFD).with_context(|| format!("F_GETFD {fd}"))?;
        let has = fl & libc::FD_CLOEXEC != 0;
        ensure!(has == *cloexec, "fd {fd}: FD_CLOEXEC={has}, expected {cloexec}");
    }
    for gap in [102, 200, 299, 301, top - 1] {
        if keep.iter().any(|(f, _)| f.as_raw_fd() == gap) {
            continue;
        }
        ensure!(!is_open(gap), "fd {gap} is open but was a gap");
    }
    Ok(())
}
