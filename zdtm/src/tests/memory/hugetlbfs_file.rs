use crate::prelude::*;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::hugetlb00::{meminfo, Reserved};

pub const DESC: Desc = Desc {
    name: "memory/hugetlbfs_file",
    family: "memory",
    description: "a file on a hugetlbfs mount mapped shared and private keeps its huge pages, the private copy's data and its link to the file",
    // Mounts hugetlbfs in the host's mount namespace and may raise
    // /proc/sys/vm/nr_hugepages: root, host only.
    flavors: &[Flavor::Host],
    // Alone: hugetlb tests share the host's pool of huge pages (nr_hugepages).
    flags: &[Flag::Suid, Flag::Excl],
    feature: Some("hugetlb"),
    ..Desc::DEFAULT
};

const HUGE: usize = 2 << 20;

/// A hugetlbfs mount, lazily unmounted on drop.
struct Mounted(PathBuf);

impl Mounted {
    fn make(at: &Path) -> Result<Mounted> {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(at).with_context(|| format!("mkdir {}", at.display()))?;
        mount(Some("zdtm_hugetlbfs"), at, Some("hugetlbfs"), MsFlags::empty(), Some("pagesize=2M"))
            .with_context(|| format!("mount hugetlbfs at {}", at.display()))?;
        Ok(Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn check_area(m: &Mapping, perms: &str, when: &str) -> Result<()> {
    let fl = smaps_vmflags(m.addr())?;
    ensure!(fl.iter().any(|f| f == "ht"), "{when}: {perms} area has no ht: {fl:?}");
    let p = maps_perms(m.addr())?;
    ensure!(p == perms, "{when}: area at {:#x} is {p}, was {perms}", m.addr());
    Ok(())
}

fn check(shared: &Mapping, private: &Mapping, when: &str) -> Result<()> {
    check_area(shared, "rw-s", when)?;
    check_area(private, "rw-p", when)?;
    pattern::check(201, shared.bytes())
        .map_err(|o| anyhow!("{when}: shared mapping differs at {o:#x}"))?;
    // Page 0 of the private mapping was only read: it is still the file's.
    pattern::check(201, private.range(0, HUGE))
        .map_err(|o| anyhow!("{when}: private mapping, file page, differs at {o:#x}"))?;
    // Page 1 was written: a private copy, not in the file.
    pattern::check(202, private.range(HUGE, HUGE))
        .map_err(|o| anyhow!("{when}: private mapping, written page, differs at {o:#x}"))?;
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    ensure!(meminfo("Hugepagesize:")? * 1024 == HUGE as u64, "the default huge page is not 2 MiB");
    // File page 0, the private copy of page 1, and room for the restore.
    let _pool = Reserved::make(4)?;
    let mnt = Mounted::make(&t.dir()?.join("hugetlbfs"))?;
    let path = mnt.0.join("data");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    f.set_len(2 * HUGE as u64).context("ftruncate")?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut shared = Mapping::file(f.as_fd(), HUGE, rw, libc::MAP_SHARED, 0).context("mmap shared")?;
    pattern::fill(201, shared.bytes_mut());
    let mut private = Mapping::file(f.as_fd(), 2 * HUGE, rw, libc::MAP_PRIVATE, 0).context("mmap private")?;
    pattern::fill(202, &mut private.bytes_mut()[HUGE..]);
    check(&shared, &private, "before dump")?;

    t.daemon()?;
    t.wait_sig();

    check(&shared, &private, "after restore")?;
    // Still the file: a write through the shared mapping reaches the file
    // and the private mapping's untouched page.
    let mut page = vec![0u8; 4096];
    pattern::fill(203, &mut page);
    shared.bytes_mut()[4096..8192].copy_from_slice(&page);
    pattern::check(203, private.range(4096, 4096))
        .map_err(|o| anyhow!("a write through the shared mapping is not seen in the private one at {o:#x}"))?;
    let mut back = vec![0u8; 4096];
    f.read_exact_at(&mut back, 4096).context("pread")?;
    ensure!(back == page, "a write through the shared mapping did not reach the file");
    drop(shared);
    drop(private);
    drop(f);
    Ok(())
}
