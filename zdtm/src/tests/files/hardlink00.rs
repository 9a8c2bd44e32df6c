use crate::prelude::*;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

pub const DESC: Desc = Desc {
    name: "files/hardlink00",
    family: "files",
    description: "a file with two hard links opened by both names: two open files of one inode, each with its name and offset",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let a_path = dir.join("hardlink00.a");
    let b_path = dir.join("hardlink00.b");
    let _ = std::fs::remove_file(&b_path);
    std::fs::write(&a_path, vec![1u8; 4096]).context("write")?;
    std::fs::hard_link(&a_path, &b_path).context("link")?;
    let mut a = std::fs::OpenOptions::new().read(true).write(true).open(&a_path).context("open a")?;
    let mut b = std::fs::File::open(&b_path).context("open b")?;
    a.seek(SeekFrom::Start(10))?;
    b.seek(SeekFrom::Start(20))?;
    t.daemon()?;
    t.wait_sig();
    ensure!(fd_link(a.as_raw_fd())? == a_path.to_string_lossy(), "fd a points to {}", fd_link(a.as_raw_fd())?);
    ensure!(fd_link(b.as_raw_fd())? == b_path.to_string_lossy(), "fd b points to {}", fd_link(b.as_raw_fd())?);
    let (ma, mb) = (a.metadata()?, b.metadata()?);
    ensure!(ma.ino() == mb.ino(), "the two fds are of different inodes now");
    ensure!(ma.nlink() == 2, "nlink {}", ma.nlink());
    ensure!(a.stream_position()? == 10 && b.stream_position()? == 20, "offsets changed");
    a.write_all(b"Z")?;
    let mut c = [0u8; 1];
    b.seek(SeekFrom::Start(10))?;
    b.read_exact(&mut c)?;
    ensure!(&c == b"Z", "a write through a is not seen through b");
    Ok(())
}
