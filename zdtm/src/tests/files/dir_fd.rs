use crate::prelude::*;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{lseek, Whence};
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "files/dir_fd",
    family: "files",
    description: "a directory fd part way through reading its entries keeps its getdents offset",
    ..Desc::DEFAULT
};

fn names_from(fd: OwnedFd) -> Result<BTreeSet<String>> {
    let mut d = Dir::from_fd(fd).context("fdopendir")?;
    let mut out = BTreeSet::new();
    for e in d.iter() {
        let e = e.context("readdir")?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            out.insert(n);
        }
    }
    Ok(out)
}

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?.join("dir_fd.d");
    std::fs::create_dir_all(&dir)?;
    for i in 0..1500 {
        std::fs::write(dir.join(format!("entry-with-a-fairly-long-name-{i:05}")), b"")?;
    }
    let open = || nix::fcntl::open(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).context("open dir");
    // Read the first batch of entries through a dup, so that `fd` keeps
    // the offset the kernel moved to.
    let fd = open()?;
    {
        let mut d = Dir::from_fd(fd.try_clone()?).context("fdopendir")?;
        let mut it = d.iter();
        ensure!(it.next().is_some(), "empty directory");
        // nix rewinds the directory when its iterator is dropped.
        std::mem::forget(it);
    }
    let pos = lseek(&fd, 0, Whence::SeekCur).context("tell dir")?;
    ensure!(pos != 0, "getdents did not move the offset");
    // What is left from there, seen through another open file.
    let other = open()?;
    lseek(&other, pos, Whence::SeekSet).context("seek other")?;
    let rest = names_from(other)?;
    ensure!(!rest.is_empty() && rest.len() < 1500, "{} entries left at offset {pos}: pick more entries", rest.len());
    t.daemon()?;
    t.wait_sig();
    let now = lseek(&fd, 0, Whence::SeekCur).context("tell dir after restore")?;
    ensure!(now == pos, "dir offset {now}, expected {pos}");
    ensure!(fd_link(fd.as_raw_fd())? == dir.to_string_lossy(), "dir fd points to {}", fd_link(fd.as_raw_fd())?);
    let got = names_from(fd)?;
    ensure!(got == rest, "entries after the offset differ: {} now, {} before", got.len(), rest.len());
    Ok(())
}
