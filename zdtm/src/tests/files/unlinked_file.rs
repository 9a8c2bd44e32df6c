use crate::prelude::*;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

pub const DESC: Desc = Desc {
    name: "files/unlinked_file",
    family: "files",
    description: "an open file whose name was unlinked keeps its content, size and nlink 0",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("unlinked_file.data");
    let mut data = vec![0u8; 20000];
    pattern::fill(101, &mut data);
    std::fs::write(&path, &data).context("write")?;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).context("open")?;
    std::fs::remove_file(&path).context("unlink")?;
    t.daemon()?;
    t.wait_sig();
    let m = f.metadata().context("fstat")?;
    ensure!(m.nlink() == 0, "nlink is {}", m.nlink());
    ensure!(m.len() == data.len() as u64, "size {} expected {}", m.len(), data.len());
    ensure!(!path.exists(), "the unlinked name came back");
    let l = fd_link(f.as_raw_fd())?;
    ensure!(l.ends_with("(deleted)"), "fd link {l} does not say deleted");
    let mut buf = vec![0u8; data.len()];
    f.read_exact_at(&mut buf, 0).context("pread")?;
    check_pattern("unlinked file", 101, &buf)
}
