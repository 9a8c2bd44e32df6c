use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memfd/memfd00",
    family: "memfd",
    description: "a memfd keeps its name, content, size and seals",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let fd = memfd_create("zdtm-memfd00", MFdFlags::MFD_ALLOW_SEALING).context("memfd_create")?;
    let f = std::fs::File::from(fd);
    let mut data = vec![0u8; 10000];
    pattern::fill(111, &mut data);
    f.write_all_at(&data, 0).context("write")?;
    let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    fcntl(f.as_fd(), FcntlArg::F_ADD_SEALS(seals)).context("F_ADD_SEALS")?;
    t.daemon()?;
    t.wait_sig();
    let l = fd_link(f.as_raw_fd())?;
    ensure!(l == "/memfd:zdtm-memfd00 (deleted)", "memfd link is {l}");
    let got = SealFlag::from_bits_truncate(fcntl(f.as_fd(), FcntlArg::F_GET_SEALS).context("F_GET_SEALS")?);
    ensure!(got == seals, "seals {got:?}, expected {seals:?}");
    let len = f.metadata().context("fstat")?.len();
    ensure!(len == 10000, "size {len}");
    let mut buf = vec![0u8; 10000];
    f.read_exact_at(&mut buf, 0).context("read")?;
    check_pattern("memfd", 111, &buf)?;
    ensure!(f.write_all_at(b"x", 10000).is_err(), "F_SEAL_GROW no longer enforced");
    Ok(())
}
