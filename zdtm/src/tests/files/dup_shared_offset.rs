use crate::prelude::*;
use std::io::{Seek, SeekFrom};

pub const DESC: Desc = Desc {
    name: "files/dup_shared_offset",
    family: "files",
    description: "dup'ed fds share one file description (offset); a separate open does not",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("dup_shared_offset.data");
    std::fs::write(&path, vec![7u8; 4096]).context("write")?;
    let mut a = std::fs::File::open(&path).context("open")?;
    let mut b = a.try_clone().context("dup")?;
    let mut c = std::fs::File::open(&path).context("open again")?;
    a.seek(SeekFrom::Start(777)).context("seek a")?;
    c.seek(SeekFrom::Start(5)).context("seek c")?;
    t.daemon()?;
    t.wait_sig();
    let pb = b.stream_position().context("tell b")?;
    ensure!(pb == 777, "dup'ed fd offset {pb}, expected 777");
    b.seek(SeekFrom::Start(1000)).context("seek b")?;
    let pa = a.stream_position().context("tell a")?;
    ensure!(pa == 1000, "after seeking the dup, the original is at {pa} (not shared)");
    let pc = c.stream_position().context("tell c")?;
    ensure!(pc == 5, "separately opened fd is at {pc}, expected 5");
    Ok(())
}
