use crate::prelude::*;
use nix::fcntl::{fcntl, open, openat, readlinkat, FcntlArg, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

pub const DESC: Desc = Desc {
    name: "files/opath00",
    family: "files",
    description: "O_PATH fds of a file, a directory and a symlink (O_PATH|O_NOFOLLOW) keep their flags and targets",
    ..Desc::DEFAULT
};

fn flags(fd: &OwnedFd) -> Result<OFlag> {
    Ok(OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL).context("F_GETFL")?))
}

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let file = dir.join("opath00.data");
    let sub = dir.join("opath00.dir");
    let lnk = dir.join("opath00.lnk");
    std::fs::write(&file, b"opath data").context("write file")?;
    let _ = std::fs::create_dir(&sub);
    std::fs::write(sub.join("inner"), b"inner").context("write inner")?;
    let _ = std::fs::remove_file(&lnk);
    std::os::unix::fs::symlink("opath00.data", &lnk).context("symlink")?;

    let f = open(&file, OFlag::O_PATH, Mode::empty()).context("open file O_PATH")?;
    let d = open(&sub, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).context("open dir O_PATH")?;
    let l = open(&lnk, OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty()).context("open symlink O_PATH|O_NOFOLLOW")?;
    let lf0 = flags(&l)?;
    t.daemon()?;
    t.wait_sig();

    for (fd, what) in [(&f, "file"), (&d, "dir"), (&l, "symlink")] {
        let fl = flags(fd)?;
        ensure!(fl.contains(OFlag::O_PATH), "{what} fd lost O_PATH: {fl:?}");
    }
    ensure!(flags(&l)? == lf0, "symlink fd flags {:?}, were {lf0:?}", flags(&l)?);
    ensure!(flags(&l)?.contains(OFlag::O_NOFOLLOW), "symlink fd lost O_NOFOLLOW");
    ensure!(fd_link(f.as_raw_fd())? == file.to_string_lossy(), "file fd points to {}", fd_link(f.as_raw_fd())?);
    ensure!(fd_link(d.as_raw_fd())? == sub.to_string_lossy(), "dir fd points to {}", fd_link(d.as_raw_fd())?);
    ensure!(fd_link(l.as_raw_fd())? == lnk.to_string_lossy(), "symlink fd points to {}", fd_link(l.as_raw_fd())?);

    let st = fstat(f.as_fd()).context("fstat file")?;
    ensure!(st.st_ino == std::fs::metadata(&file)?.ino(), "file fd is another inode");
    let st = fstat(l.as_fd()).context("fstat symlink")?;
    ensure!(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK, "symlink fd is no symlink: mode {:o}", st.st_mode);
    ensure!(st.st_ino == std::fs::symlink_metadata(&lnk)?.ino(), "symlink fd is another inode");
    let target = readlinkat(l.as_fd(), "").context("readlinkat symlink fd")?;
    ensure!(target == "opath00.data", "symlink fd reads {target:?}");
    // An O_PATH directory still serves as a dirfd.
    let inner = openat(d.as_fd(), "inner", OFlag::O_RDONLY, Mode::empty()).context("openat through the dir fd")?;
    let mut buf = [0u8; 5];
    let n = nix::unistd::read(&inner, &mut buf).context("read inner")?;
    ensure!(&buf[..n] == b"inner", "inner reads {:?}", &buf[..n]);
    Ok(())
}
