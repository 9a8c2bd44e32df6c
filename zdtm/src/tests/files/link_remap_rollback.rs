use crate::prelude::*;
use std::os::unix::fs::MetadataExt;

pub const DESC: Desc = Desc {
    name: "files/link_remap_rollback",
    family: "files",
    description: "a dump that fails after giving an unlinked file a temporary name (--link-remap) removes that name again, and the tree runs on",
    flags: &[Flag::Crfail],
    flavors: &[Flavor::Host],
    dump_opts: &["--link-remap"],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let a_path = dir.join("link_remap_rollback.a");
    let b_path = dir.join("link_remap_rollback.b");
    let gone_dir = dir.join("link_remap_rollback.d");
    let _ = std::fs::remove_file(&b_path);
    std::fs::write(&a_path, b"data").context("write")?;
    std::fs::hard_link(&a_path, &b_path).context("link")?;
    // Dumped first (lower fd): gets a link_remap name.
    let b = std::fs::File::open(&b_path).context("open b")?;
    std::fs::remove_file(&b_path).context("unlink b")?;
    // Dumped next: an unlinked directory, which fails the dump.
    std::fs::create_dir_all(&gone_dir).context("mkdir")?;
    let d = std::fs::File::open(&gone_dir).context("open dir")?;
    std::fs::remove_dir(&gone_dir).context("rmdir")?;
    t.daemon()?;
    t.wait_sig();
    let left: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("link_remap."))
        .collect();
    ensure!(left.is_empty(), "the failed dump left {left:?}");
    ensure!(b.metadata()?.nlink() == 1, "nlink {}", b.metadata()?.nlink());
    drop(d);
    Ok(())
}
