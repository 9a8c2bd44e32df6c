use crate::prelude::*;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

pub const DESC: Desc = Desc {
    name: "files/hardlink_unlinked",
    family: "files",
    dump_opts: &["--link-remap"],
    description: "a file opened by a name that was then unlinked while another hard link stays: still that inode, nlink 1",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let a_path = dir.join("hardlink_unlinked.a");
    let b_path = dir.join("hardlink_unlinked.b");
    let _ = std::fs::remove_file(&b_path);
    let mut data = vec![0u8; 6000];
    pattern::fill(77, &mut data);
    std::fs::write(&a_path, &data).context("write")?;
    std::fs::hard_link(&a_path, &b_path).context("link")?;
    let mut b = std::fs::OpenOptions::new().read(true).write(true).open(&b_path).context("open b")?;
    b.seek(SeekFrom::Start(33))?;
    std::fs::remove_file(&b_path).context("unlink b")?;
    t.daemon()?;
    t.wait_sig();
    let l = fd_link(b.as_raw_fd())?;
    ensure!(l.ends_with(" (deleted)"), "fd link {l} does not say deleted");
    let ma = std::fs::metadata(&a_path).context("stat a")?;
    let mb = b.metadata()?;
    ensure!(ma.ino() == mb.ino() && ma.dev() == mb.dev(), "the fd is no longer the inode of {a_path:?}");
    ensure!(mb.nlink() == 1, "nlink {} (a link made by criu stayed?)", mb.nlink());
    ensure!(b.stream_position()? == 33, "offset {}", b.stream_position()?);
    let names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with("hardlink_unlinked.a"))
        .filter(|n| n.contains("hardlink_unlinked") || n.contains("link_remap"))
        .collect();
    ensure!(names.is_empty(), "names left behind in the test dir: {names:?}");
    b.write_all(b"Q")?;
    let mut a = std::fs::File::open(&a_path)?;
    let mut buf = vec![0u8; 40];
    a.read_exact(&mut buf)?;
    ensure!(buf[33] == b'Q', "a write through the fd is not seen through the other name");
    check_pattern("head of the file", 77, &buf[..33])
}
