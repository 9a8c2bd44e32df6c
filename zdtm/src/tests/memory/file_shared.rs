use crate::prelude::*;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memory/file_shared",
    family: "memory",
    description: "MAP_SHARED of a file in --dirname: data kept, and writes both ways still reach file and mapping",
    ..Desc::DEFAULT
};

const LEN: usize = 4 * 4096;

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("file_shared.data");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    f.set_len(LEN as u64).context("ftruncate")?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut m = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_SHARED, 0).context("mmap")?;
    pattern::fill(31, m.bytes_mut());
    t.daemon()?;
    t.wait_sig();
    check_pattern("mapping", 31, m.bytes())?;
    pattern::fill(32, m.bytes_mut());
    m.sync().context("msync")?;
    let mut buf = vec![0u8; LEN];
    f.read_exact_at(&mut buf, 0).context("pread")?;
    check_pattern("file after a write through the mapping", 32, &buf)?;
    let mut page = vec![0u8; 4096];
    pattern::fill(33, &mut page);
    f.write_all_at(&page, 4096).context("pwrite")?;
    pattern::check(33, m.range(4096, 4096)).map_err(|o| anyhow!("pwrite not seen in the mapping at {o:#x}"))?;
    Ok(())
}
