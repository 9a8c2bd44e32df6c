use crate::prelude::*;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memory/deleted_file_map",
    family: "memory",
    description: "shared and private mappings of files unlinked after mmap (one still open, one only mapped) keep data; the shared one still mirrors the open file",
    ..Desc::DEFAULT
};

const LEN: usize = 4 * 4096;

fn create(path: &std::path::Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.set_len(LEN as u64).context("ftruncate")?;
    Ok(f)
}

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // Still open after the unlink.
    let path = dir.join("deleted_file_map.data");
    let f = create(&path)?;
    let mut sh = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_SHARED, 0).context("mmap shared")?;
    pattern::fill(41, sh.bytes_mut());
    let mut pr = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_PRIVATE, 0).context("mmap private")?;
    pattern::fill(42, &mut pr.bytes_mut()[..4096]);
    std::fs::remove_file(&path).with_context(|| format!("unlink {}", path.display()))?;
    // Only mapped: its fd closed, its name gone.
    let path2 = dir.join("deleted_file_map.only");
    let f2 = create(&path2)?;
    let mut only = Mapping::file(f2.as_fd(), LEN, rw, libc::MAP_SHARED, 0).context("mmap only")?;
    drop(f2);
    pattern::fill(43, only.bytes_mut());
    std::fs::remove_file(&path2).with_context(|| format!("unlink {}", path2.display()))?;

    t.daemon()?;
    t.wait_sig();

    check_pattern("shared mapping", 41, sh.bytes())?;
    check_pattern("private COW page", 42, pr.range(0, 4096))?;
    pattern::check_at(41, 4096, pr.range(4096, LEN - 4096))
        .map_err(|o| anyhow!("private clean pages differ at {o}"))?;
    check_pattern("mapping of the closed file", 43, only.bytes())?;
    ensure!(!path.exists() && !path2.exists(), "an unlinked file has a name again");
    let mut buf = vec![0u8; LEN];
    f.read_exact_at(&mut buf, 0).context("pread")?;
    check_pattern("file content", 41, &buf)?;
    sh.bytes_mut()[8192..8197].copy_from_slice(b"hello");
    sh.sync().context("msync")?;
    let mut got = [0u8; 5];
    f.read_exact_at(&mut got, 8192).context("pread")?;
    ensure!(&got == b"hello", "a write through the shared mapping did not reach the file");
    f.write_all_at(b"world", 4096).context("pwrite")?;
    ensure!(sh.range(4096, 5) == b"world", "pwrite not visible in the shared mapping");
    Ok(())
}
