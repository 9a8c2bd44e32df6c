use crate::prelude::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

pub const DESC: Desc = Desc {
    name: "ns/mnt_fs",
    family: "ns",
    flavors: NS_FLAVORS,
    flags: &[Flag::Suid],
    description: "in the test's own mount namespace: a tmpfs overmounted by another (the lower one's file comes back once the upper is unmounted), an mqueue, a devpts instance with a pty open through its ptmx, a file open on the upper tmpfs, and a child chrooted into a directory of a tmpfs keep their mounts, files and root",
    ..Desc::DEFAULT
};

/// The file system types mounted at `mp` (bottom first).
fn types_at(mp: &Path) -> Result<Vec<String>> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").context("mountinfo")?;
    let mp = mp.to_string_lossy();
    Ok(mi
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (pre.split_whitespace().nth(4)? == mp).then(|| post.split_whitespace().next().unwrap_or("").to_string())
        })
        .collect())
}

struct Paths {
    over: PathBuf,
    mq: PathBuf,
    pts: PathBuf,
    jail: PathBuf,
}

fn setup(d: &Path) -> Result<Paths> {
    let p = Paths { over: d.join("over"), mq: d.join("mq"), pts: d.join("pts"), jail: d.join("jail") };
    for dir in [&p.over, &p.mq, &p.pts, &p.jail] {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    mount(Some("lower"), &p.over, Some("tmpfs"), MsFlags::empty(), Some("size=1m")).context("mount the lower tmpfs")?;
    std::fs::write(p.over.join("lower"), b"below").context("write in the lower tmpfs")?;
    mount(Some("upper"), &p.over, Some("tmpfs"), MsFlags::empty(), Some("size=1m")).context("mount the upper tmpfs")?;
    std::fs::write(p.over.join("upper"), b"above").context("write in the upper tmpfs")?;
    mount(Some("mqueue"), &p.mq, Some("mqueue"), MsFlags::empty(), None::<&str>).context("mount mqueue")?;
    mount(Some("devpts"), &p.pts, Some("devpts"), MsFlags::empty(), Some("newinstance,ptmxmode=0666,mode=620"))
        .context("mount devpts")?;
    mount(Some("jail"), &p.jail, Some("tmpfs"), MsFlags::empty(), Some("size=1m")).context("mount the jail")?;
    std::fs::create_dir_all(p.jail.join("inner")).context("mkdir in the jail")?;
    std::fs::write(p.jail.join("inner/inside"), b"jailed").context("write in the jail")?;
    Ok(p)
}

pub fn run(t: &mut Test) -> Result<()> {
    let d = t.dir()?;
    let p = setup(&d)?;
    // A pty of the devpts instance (index 0 there, whatever the host's).
    let ptmx = std::fs::OpenOptions::new().read(true).write(true).open(p.pts.join("ptmx")).context("open the instance's ptmx")?;
    let ptmx_link = fd_link(std::os::fd::AsRawFd::as_raw_fd(&ptmx))?;
    // A file of a mount only this mount namespace has, open across C/R.
    let mut upper = std::fs::OpenOptions::new().read(true).write(true).open(p.over.join("upper")).context("open the upper file")?;
    let page = SharedPage::new()?;
    let jailed = {
        let (jail, page) = (p.jail.join("inner"), &page);
        fork_child(move || {
            nix::unistd::chroot(&jail).context("chroot")?;
            std::env::set_current_dir("/").context("chdir /")?;
            sync::set_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            let got = std::fs::read("/inside").context("read /inside in the chroot")?;
            ensure!(got == b"jailed", "/inside in the chroot holds {got:?}");
            ensure!(!Path::new("/proc").exists(), "the chroot shows /proc: it is not the jail");
            Ok(())
        })?
    };
    let before = [&p.over, &p.mq, &p.pts, &p.jail].map(|m| types_at(m));
    t.checks_in_child(&jailed, "the chrooted child", || page.word(0).load(Ordering::SeqCst) == 1, page.word(1))?;
    let after = [&p.over, &p.mq, &p.pts, &p.jail].map(|m| types_at(m));
    for (b, a) in before.iter().zip(&after) {
        let (b, a) = (b.as_ref().map_err(|e| anyhow!("{e:#}"))?, a.as_ref().map_err(|e| anyhow!("{e:#}"))?);
        ensure!(a == b, "mounts {b:?} became {a:?}");
    }
    ensure!(after[0].as_ref().map_or(0, Vec::len) == 2, "the overmount is not two tmpfs: {:?}", after[0]);
    let up = std::fs::read(p.over.join("upper")).context("read the upper tmpfs")?;
    ensure!(up == b"above", "the upper tmpfs holds {up:?}");
    std::fs::read_dir(&p.mq).context("list the mqueue mount")?;
    ensure!(p.pts.join("ptmx").exists(), "the devpts instance has no ptmx");
    let link = fd_link(std::os::fd::AsRawFd::as_raw_fd(&ptmx))?;
    ensure!(link == ptmx_link, "the pty master was opened through {ptmx_link}, is now through {link}");
    let pts: Vec<_> = std::fs::read_dir(&p.pts).context("list devpts")?.flatten().map(|e| e.file_name()).collect();
    ensure!(pts.iter().any(|n| n == "0"), "the pty of the devpts instance is gone: {pts:?}");
    drop(ptmx);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut upper, &mut got).context("read the open upper file")?;
    ensure!(got == b"above", "the file open on the upper tmpfs reads {got:?}");
    drop(upper);
    umount2(&p.over, MntFlags::empty()).context("unmount the upper tmpfs")?;
    let low = std::fs::read(p.over.join("lower")).context("read the lower tmpfs once uncovered")?;
    ensure!(low == b"below", "the lower tmpfs holds {low:?}");
    Ok(())
}
