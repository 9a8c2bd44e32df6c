use crate::prelude::*;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "files/hardlink_unlinked_map",
    family: "files",
    dump_opts: &["--link-remap"],
    description: "a shared mapping of a file by a name since unlinked while another hard link stays: still the inode of the other name",
    ..Desc::DEFAULT
};

const LEN: usize = 2 * 4096;

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let a_path = dir.join("hardlink_unlinked_map.a");
    let b_path = dir.join("hardlink_unlinked_map.b");
    let _ = std::fs::remove_file(&b_path);
    let mut data = vec![0u8; LEN];
    pattern::fill(61, &mut data);
    std::fs::write(&a_path, &data).context("write")?;
    std::fs::hard_link(&a_path, &b_path).context("link")?;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&b_path).context("open b")?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut m = Mapping::file(f.as_fd(), LEN, rw, libc::MAP_SHARED, 0).context("mmap b")?;
    drop(f);
    std::fs::remove_file(&b_path).context("unlink b")?;
    t.daemon()?;
    t.wait_sig();
    check_pattern("mapping", 61, m.bytes())?;
    m.bytes_mut()[100] ^= 0xff;
    m.sync().context("msync")?;
    let a = std::fs::File::open(&a_path).context("open a")?;
    let mut b = [0u8; 1];
    a.read_exact_at(&mut b, 100).context("pread a")?;
    ensure!(b[0] == data[100] ^ 0xff, "a write through the mapping is not seen through {a_path:?}");
    let names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("link_remap") || n == "hardlink_unlinked_map.b")
        .collect();
    ensure!(names.is_empty(), "names left behind in the test dir: {names:?}");
    Ok(())
}
