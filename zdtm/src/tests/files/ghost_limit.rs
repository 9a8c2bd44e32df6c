use crate::prelude::*;
use std::os::unix::fs::{FileExt, MetadataExt};

pub const DESC: Desc = Desc {
    name: "files/ghost_limit",
    family: "files",
    description: "an unlinked file bigger than --ghost-limit fails the dump, and the tree runs on untouched",
    flags: &[Flag::Crfail],
    // A dump expected to fail says nothing where the dump fails for another
    // reason (today: namespaces in ns/uns): host flavor only, until the
    // runner can check why a dump failed.
    flavors: &[Flavor::Host],
    dump_opts: &["--ghost-limit", "16K"],
    ..Desc::DEFAULT
};

/// An open file of `len` bytes of pattern `seed` whose name is gone.
pub fn unlinked(t: &Test, name: &str, len: usize, seed: u64) -> Result<(std::fs::File, Vec<u8>)> {
    let path = t.dir()?.join(name);
    let mut data = vec![0u8; len];
    pattern::fill(seed, &mut data);
    std::fs::write(&path, &data).context("write")?;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).context("open")?;
    std::fs::remove_file(&path).context("unlink")?;
    Ok((f, data))
}

pub fn check(f: &std::fs::File, data: &[u8], seed: u64) -> Result<()> {
    let m = f.metadata().context("fstat")?;
    ensure!(m.nlink() == 0, "nlink is {}", m.nlink());
    ensure!(m.len() == data.len() as u64, "size {} expected {}", m.len(), data.len());
    let mut buf = vec![0u8; data.len()];
    f.read_exact_at(&mut buf, 0).context("pread")?;
    check_pattern("unlinked file", seed, &buf)
}

pub fn run(t: &mut Test) -> Result<()> {
    let (f, data) = unlinked(t, "ghost_limit.data", 64 << 10, 103)?;
    t.daemon()?;
    t.wait_sig();
    check(&f, &data, 103)
}
