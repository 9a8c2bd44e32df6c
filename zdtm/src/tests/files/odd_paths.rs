use crate::prelude::*;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "files/odd_paths",
    family: "files",
    description: "files whose paths hold spaces, a newline, unicode and \" (deleted)\" keep path and offset",
    ..Desc::DEFAULT
};

const NAMES: &[&str] = &[
    "with space.data",
    "new\nline.data",
    "ünï©ødé ✓ 文件.data",
    "tab\there.data",
    "looks (deleted)",
];

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?.join("odd dir ✓");
    std::fs::create_dir_all(&dir).context("mkdir odd dir")?;
    let mut files = Vec::new();
    for (i, n) in NAMES.iter().enumerate() {
        let p = dir.join(n);
        let mut data = vec![0u8; 4096];
        pattern::fill(200 + i as u64, &mut data);
        std::fs::write(&p, &data).with_context(|| format!("write {p:?}"))?;
        let mut f = std::fs::File::open(&p).with_context(|| format!("open {p:?}"))?;
        f.seek(SeekFrom::Start(100 + i as u64)).context("seek")?;
        files.push((p, f));
    }
    t.daemon()?;
    t.wait_sig();
    for (i, (p, f)) in files.iter_mut().enumerate() {
        let l = fd_link(f.as_raw_fd())?;
        ensure!(l == p.to_string_lossy(), "fd of {p:?} points to {l:?}");
        let pos = f.stream_position().context("tell")?;
        ensure!(pos == 100 + i as u64, "{p:?}: offset {pos}");
        let mut buf = vec![0u8; 16];
        f.read_exact(&mut buf).context("read")?;
        pattern::check_at(200 + i as u64, pos as usize, &buf)
            .map_err(|o| anyhow!("{p:?}: data at {pos}+{o} differs"))?;
    }
    Ok(())
}
