use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd};

pub const DESC: Desc = Desc {
    name: "files/file_read",
    family: "files",
    description: "open regular files keep path, offset and open flags (O_RDONLY, O_RDWR|O_APPEND)",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("file_read.data");
    let mut data = vec![0u8; 65536];
    pattern::fill(91, &mut data);
    std::fs::write(&path, &data).context("write data file")?;
    let mut ro = std::fs::File::open(&path).context("open ro")?;
    ro.seek(SeekFrom::Start(12345)).context("seek")?;
    let mut ap = std::fs::OpenOptions::new().read(true).append(true).open(&path).context("open append")?;
    ap.seek(SeekFrom::Start(100)).context("seek ap")?;
    t.daemon()?;
    t.wait_sig();
    for f in [&ro, &ap] {
        let l = fd_link(f.as_raw_fd())?;
        ensure!(l == path.to_string_lossy(), "fd {} points to {l}", f.as_raw_fd());
    }
    let fl = OFlag::from_bits_truncate(fcntl(ro.as_fd(), FcntlArg::F_GETFL).context("F_GETFL")?);
    ensure!(fl & OFlag::O_ACCMODE == OFlag::O_RDONLY, "ro fd flags {fl:?}");
    let fl = OFlag::from_bits_truncate(fcntl(ap.as_fd(), FcntlArg::F_GETFL).context("F_GETFL")?);
    ensure!(fl & OFlag::O_ACCMODE == OFlag::O_RDWR && fl.contains(OFlag::O_APPEND), "append fd flags {fl:?}");
    let pos = ro.stream_position().context("tell")?;
    ensure!(pos == 12345, "ro offset {pos}, expected 12345");
    let pos = ap.stream_position().context("tell ap")?;
    ensure!(pos == 100, "append fd offset {pos}, expected 100");
    let mut buf = vec![0u8; 1000];
    ro.read_exact(&mut buf).context("read")?;
    pattern::check_at(91, 12345, &buf).map_err(|o| anyhow!("data at 12345+{o} differs"))?;
    Ok(())
}
