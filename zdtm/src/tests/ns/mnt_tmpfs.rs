use crate::prelude::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub const DESC: Desc = Desc {
    name: "ns/mnt_tmpfs",
    family: "ns",
    flavors: NS_FLAVORS,
    flags: &[Flag::Suid],
    description: "a tmpfs mounted in the test's own mount namespace keeps its options and content; a bind mount of a directory of it and a read-only bind mount stay; a mount the test removed stays removed",
    ..Desc::DEFAULT
};

/// The mount at `mp` in /proc/self/mountinfo: (root, options, fs type,
/// super options).
fn mount_at(mp: &Path) -> Result<Option<(String, String, String, String)>> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").context("mountinfo")?;
    let mp = mp.to_string_lossy();
    Ok(mi.lines().rev().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let pre: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        (*pre.get(4)? == mp).then(|| {
            (
                pre[3].to_string(),
                pre[5].to_string(),
                post[0].to_string(),
                post.get(2).unwrap_or(&"").to_string(),
            )
        })
    }))
}

pub fn run(t: &mut Test) -> Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let d = t.dir()?;
    let tmp = d.join("tmpfs");
    let bind = d.join("bind");
    let robind = d.join("robind");
    let gone = d.join("gone");
    for p in [&tmp, &bind, &robind, &gone] {
        std::fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))?;
    }
    mount(Some("zdtm_tmpfs"), &tmp, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("size=4m,mode=1750"))
        .context("mount tmpfs")?;
    std::fs::create_dir_all(tmp.join("sub/deep")).context("mkdir sub")?;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(tmp.join("sub/deep/data"), &data).context("write data")?;
    std::fs::write(tmp.join("empty"), b"").context("write empty")?;
    std::fs::set_permissions(tmp.join("empty"), std::fs::Permissions::from_mode(0o640)).context("chmod")?;
    std::os::unix::fs::symlink("sub/deep/data", tmp.join("link")).context("symlink")?;
    nix::unistd::chown(&tmp.join("sub"), Some(nix::unistd::Uid::from_raw(1000)), Some(nix::unistd::Gid::from_raw(1000)))
        .context("chown sub")?;
    mount(Some(&tmp.join("sub")), &bind, None::<&str>, MsFlags::MS_BIND, None::<&str>).context("bind sub")?;
    mount(Some(&tmp), &robind, None::<&str>, MsFlags::MS_BIND, None::<&str>).context("bind tmpfs")?;
    mount(None::<&str>, &robind, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>)
        .context("remount ro")?;
    mount(Some("zdtm_gone"), &gone, Some("tmpfs"), MsFlags::empty(), None::<&str>).context("mount gone")?;
    umount2(&gone, MntFlags::MNT_DETACH).context("umount gone")?;
    let before: Vec<_> = [&tmp, &bind, &robind, &gone].iter().map(|p| mount_at(p)).collect::<Result<_>>()?;

    t.daemon()?;
    t.wait_sig();

    let after: Vec<_> = [&tmp, &bind, &robind, &gone].iter().map(|p| mount_at(p)).collect::<Result<_>>()?;
    ensure!(before == after, "mounts changed: {before:?} -> {after:?}");
    ensure!(after[3].is_none(), "the unmounted tmpfs is back: {:?}", after[3]);
    let got = std::fs::read(bind.join("deep/data")).context("read data through the bind mount")?;
    ensure!(got == data, "data differs ({} bytes, expected {})", got.len(), data.len());
    let m = std::fs::metadata(tmp.join("empty")).context("stat empty")?;
    ensure!(m.len() == 0 && m.mode() & 0o7777 == 0o640, "empty: len {} mode {:o}", m.len(), m.mode());
    let m = std::fs::metadata(&tmp).context("stat tmpfs root")?;
    ensure!(m.mode() & 0o7777 == 0o1750, "tmpfs root mode {:o}", m.mode());
    let m = std::fs::metadata(tmp.join("sub")).context("stat sub")?;
    ensure!(m.uid() == 1000 && m.gid() == 1000, "sub owned by {}:{}", m.uid(), m.gid());
    let l = std::fs::read_link(tmp.join("link")).context("readlink")?;
    ensure!(l == Path::new("sub/deep/data"), "link points to {}", l.display());
    ensure!(
        std::fs::write(robind.join("x"), b"x").is_err(),
        "the read-only bind mount is writable"
    );
    Ok(())
}
