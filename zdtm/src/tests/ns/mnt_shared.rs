use crate::prelude::*;
use std::collections::HashMap;
use std::path::Path;

pub const DESC: Desc = Desc {
    name: "ns/mnt_shared",
    family: "ns",
    flavors: NS_FLAVORS,
    flags: &[Flag::Suid],
    description: "mount propagation in the test's own mount namespace: a shared tmpfs with a peer bind mount and a slave bind mount (and a mount propagated to all three), and an unbindable mount, keep their peer groups and masters: a mount made under one peer appears under the other and the slave, one made under the slave not under its master",
    ..Desc::DEFAULT
};

/// The mounts below `d` as (mount point below `d`, root, fs type,
/// propagation), the peer group and master ids renumbered in the order
/// they are first met (sorted by mount point), so two listings compare
/// equal when their propagation has the same shape.
fn shape(d: &Path) -> Result<Vec<(String, String, String, String)>> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").context("mountinfo")?;
    let top = d.to_string_lossy();
    let mut rows = Vec::new();
    for l in mi.lines() {
        let Some((pre, post)) = l.split_once(" - ") else { continue };
        let pre: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        let (Some(mp), Some(root), Some(fs)) = (pre.get(4), pre.get(3), post.first()) else { continue };
        let Some(rel) = mp.strip_prefix(top.as_ref()) else { continue };
        if !rel.starts_with('/') {
            continue;
        }
        let opt: Vec<String> = pre[6..].iter().map(|s| s.to_string()).collect();
        rows.push((rel.to_string(), root.to_string(), fs.to_string(), opt));
    }
    rows.sort();
    let mut ids: HashMap<String, usize> = HashMap::new();
    Ok(rows
        .into_iter()
        .map(|(mp, root, fs, opt)| {
            let prop: Vec<String> = opt
                .iter()
                .map(|o| match o.split_once(':') {
                    Some((k, v)) => {
                        let n = ids.len();
                        format!("{k}:{}", ids.entry(v.to_string()).or_insert(n))
                    }
                    None => o.clone(),
                })
                .collect();
            (mp, root, fs, prop.join(" "))
        })
        .collect())
}

fn is_mount(p: &Path) -> Result<bool> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").context("mountinfo")?;
    let p = p.to_string_lossy();
    Ok(mi.lines().any(|l| l.split_whitespace().nth(4) == Some(p.as_ref())))
}

pub fn run(t: &mut Test) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let d = t.dir()?;
    let master = d.join("master");
    let peer = d.join("peer");
    let slave = d.join("slave");
    let unb = d.join("unb");
    for p in [&master, &peer, &slave, &unb] {
        std::fs::create_dir_all(p).with_context(|| format!("mkdir {}", p.display()))?;
    }
    let none = None::<&str>;
    mount(Some("zdtm_shared"), &master, Some("tmpfs"), MsFlags::empty(), none).context("mount tmpfs")?;
    for sub in ["pre", "x", "y"] {
        std::fs::create_dir(master.join(sub)).with_context(|| format!("mkdir {sub}"))?;
    }
    std::fs::write(master.join("file"), b"shared").context("write file")?;
    mount(none, &master, none, MsFlags::MS_SHARED, none).context("make shared")?;
    mount(Some(&master), &peer, none, MsFlags::MS_BIND, none).context("bind peer")?;
    mount(Some(&master), &slave, none, MsFlags::MS_BIND, none).context("bind slave")?;
    mount(none, &slave, none, MsFlags::MS_SLAVE, none).context("make slave")?;
    // propagated to master/pre and slave/pre
    mount(Some("zdtm_pre"), &peer.join("pre"), Some("tmpfs"), MsFlags::empty(), none).context("mount pre")?;
    mount(Some("zdtm_unb"), &unb, Some("tmpfs"), MsFlags::empty(), none).context("mount unb")?;
    mount(none, &unb, none, MsFlags::MS_UNBINDABLE, none).context("make unbindable")?;
    let before = shape(&d)?;
    ensure!(before.len() == 7, "expected 7 mounts below {}: {before:?}", d.display());

    t.daemon()?;
    t.wait_sig();

    let after = shape(&d)?;
    ensure!(before == after, "propagation changed:\n{before:?}\n->\n{after:?}");
    let got = std::fs::read(peer.join("file")).context("read file through the peer")?;
    ensure!(got == b"shared", "file through the peer: {got:?}");
    mount(Some("zdtm_x"), &peer.join("x"), Some("tmpfs"), MsFlags::empty(), none).context("mount under the peer")?;
    for p in [master.join("x"), slave.join("x")] {
        ensure!(is_mount(&p)?, "a mount under the peer did not propagate to {}", p.display());
    }
    mount(Some("zdtm_y"), &slave.join("y"), Some("tmpfs"), MsFlags::empty(), none).context("mount under the slave")?;
    for p in [master.join("y"), peer.join("y")] {
        ensure!(!is_mount(&p)?, "a mount under the slave propagated to {}", p.display());
    }
    let bind = d.join("bind_unb");
    std::fs::create_dir_all(&bind).context("mkdir bind_unb")?;
    ensure!(
        mount(Some(&unb), &bind, none, MsFlags::MS_BIND, none).is_err(),
        "the unbindable mount could be bind-mounted"
    );
    Ok(())
}
