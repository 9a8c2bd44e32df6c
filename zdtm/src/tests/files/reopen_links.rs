use crate::prelude::*;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

pub const DESC: Desc = Desc {
    name: "files/reopen_links",
    family: "files",
    description: "a file opened through a symlink and again through /proc/self/fd/N: two open files of the target, each with its offset",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let file = dir.join("reopen_links.data");
    let lnk = dir.join("reopen_links.lnk");
    std::fs::write(&file, vec![3u8; 8192]).context("write")?;
    let _ = std::fs::remove_file(&lnk);
    std::os::unix::fs::symlink(&file, &lnk).context("symlink")?;
    let mut a = std::fs::OpenOptions::new().read(true).write(true).open(&lnk).context("open via symlink")?;
    a.seek(SeekFrom::Start(111)).context("seek a")?;
    let mut b = std::fs::File::open(format!("/proc/self/fd/{}", a.as_raw_fd())).context("open via /proc/self/fd")?;
    b.seek(SeekFrom::Start(222)).context("seek b")?;
    t.daemon()?;
    t.wait_sig();
    let ino = std::fs::metadata(&file)?.ino();
    for (f, pos, what) in [(&mut a, 111, "via symlink"), (&mut b, 222, "via /proc/self/fd")] {
        let l = fd_link(f.as_raw_fd())?;
        ensure!(l == file.to_string_lossy(), "fd opened {what} points to {l}");
        ensure!(f.metadata()?.ino() == ino, "fd opened {what} is another inode");
        let p = f.stream_position()?;
        ensure!(p == pos, "fd opened {what} at offset {p}, expected {pos}");
    }
    a.seek(SeekFrom::Start(5))?;
    ensure!(b.stream_position()? == 222, "the two opens share an offset now");
    let fl = nix::fcntl::fcntl(&b, nix::fcntl::FcntlArg::F_GETFL)?;
    ensure!(fl & libc::O_ACCMODE == libc::O_RDONLY, "the /proc/self/fd open is not read-only: {fl:#o}");
    Ok(())
}
