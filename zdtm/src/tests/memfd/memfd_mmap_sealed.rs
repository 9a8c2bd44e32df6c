use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memfd/memfd_mmap_sealed",
    family: "memfd",
    description: "a memfd mapped shared-writable before F_SEAL_FUTURE_WRITE keeps mapping, data and seals; a memfd only mapped (fd closed) keeps its shared and private data",
    ..Desc::DEFAULT
};

const LEN: usize = 4 * 4096;

pub fn run(t: &mut Test) -> Result<()> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let fd = memfd_create("zdtm-sealed", MFdFlags::MFD_ALLOW_SEALING).context("memfd_create")?;
    let f = std::fs::File::from(fd);
    f.set_len(LEN as u64).context("ftruncate")?;
    let mut sh = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_SHARED, 0).context("mmap shared")?;
    pattern::fill(51, sh.bytes_mut());
    let seals = libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
    fcntl(&f, FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(seals))).context("F_ADD_SEALS")?;

    // Only mapped: shared at an offset, and private.
    let fd2 = memfd_create("zdtm-only-mapped", MFdFlags::empty()).context("memfd_create 2")?;
    let f2 = std::fs::File::from(fd2);
    f2.set_len(2 * LEN as u64).context("ftruncate 2")?;
    let mut only = Mapping::file(f2.as_fd(), LEN, rw, libc::MAP_SHARED, LEN as i64).context("mmap only")?;
    pattern::fill(52, only.bytes_mut());
    let mut pr = Mapping::file(f2.as_fd(), 2 * LEN, rw, libc::MAP_PRIVATE, 0).context("mmap private")?;
    pattern::fill(53, &mut pr.bytes_mut()[..4096]);
    drop(f2);

    t.daemon()?;
    t.wait_sig();

    check_pattern("sealed memfd mapping", 51, sh.bytes())?;
    let got = fcntl(&f, FcntlArg::F_GET_SEALS).context("F_GET_SEALS")?;
    ensure!(got == seals, "seals are {got:#x}, not {seals:#x}");
    ensure!(f.write_all_at(b"x", 0).is_err(), "write to a future-write-sealed memfd succeeded");
    ensure!(
        Mapping::file(f.as_fd(), LEN, rw, libc::MAP_SHARED, 0).is_err(),
        "a new shared writable mapping of a future-write-sealed memfd was made"
    );
    sh.bytes_mut()[100..105].copy_from_slice(b"still");
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 100).context("pread")?;
    ensure!(&buf == b"still", "a write through the old mapping did not reach the memfd");

    check_pattern("mapping of the closed memfd", 52, only.bytes())?;
    check_pattern("private COW page", 53, pr.range(0, 4096))?;
    ensure!(pr.range(4096, LEN - 4096).iter().all(|&b| b == 0), "private clean pages not zero");
    pattern::check(52, pr.range(LEN, LEN)).map_err(|o| anyhow!("private view of the shared half differs at {o}"))?;
    Ok(())
}
