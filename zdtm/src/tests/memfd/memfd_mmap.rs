use crate::prelude::*;
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memfd/memfd_mmap",
    family: "memfd",
    description: "shared and private mappings of a memfd keep data; the shared one still mirrors the file",
    ..Desc::DEFAULT
};

const LEN: usize = 4 * 4096;

pub fn run(t: &mut Test) -> Result<()> {
    let fd = memfd_create("zdtm-memfd-mmap", MFdFlags::empty()).context("memfd_create")?;
    let f = std::fs::File::from(fd);
    f.set_len(LEN as u64).context("ftruncate")?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut sh = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_SHARED, 0).context("mmap shared")?;
    pattern::fill(121, sh.bytes_mut());
    let mut pr = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_PRIVATE, 0).context("mmap private")?;
    pattern::fill(122, &mut pr.bytes_mut()[..4096]);
    t.daemon()?;
    t.wait_sig();
    check_pattern("shared mapping", 121, sh.bytes())?;
    check_pattern("private COW page", 122, pr.range(0, 4096))?;
    pattern::check_at(121, 4096, pr.range(4096, 4096)).map_err(|o| anyhow!("private clean page differs at {o}"))?;
    let mut buf = vec![0u8; LEN];
    f.read_exact_at(&mut buf, 0).context("pread")?;
    check_pattern("memfd content", 121, &buf)?;
    f.write_all_at(b"hello", 8192).context("pwrite")?;
    ensure!(sh.range(8192, 5) == b"hello", "pwrite not visible in the shared mapping");
    Ok(())
}
