//! Mount namespaces. `mountpoints-ID.img` lists every mount of the tree's
//! namespace, parents before their children, each of one of these kinds:
//!
//! - **root**: the namespace's root mount when it is not criu's (a
//!   container's rootfs): the first entry, at `/`; at restore the directory
//!   given with `--root` (RPC `root`) is bind-mounted in its place;
//! - **inherited**: the same mount as one of criu's (`ext_mount`, no
//!   `ext_key`): it comes with the copy of criu's namespace;
//! - **external**: a mount named at dump with `--external mnt[MP]:KEY`
//!   (`ext_mount` and `ext_key`): nothing of it is kept; at restore the
//!   host path given for KEY (`--external mnt[KEY]:PATH`) is bind-mounted;
//! - **fresh**: a filesystem the tree mounted itself (proc, sysfs, tmpfs,
//!   devpts, mqueue), mounted again with its options; a tmpfs's files
//!   (device nodes included) are kept in `tmpfs-dev-DEV.tar.gz.img` (CRIU's
//!   name and format: a gzipped tar) and unpacked into it;
//! - **bind**: a directory or file of an earlier mount of the list (same
//!   device, root below its root), bind-mounted again.
//!
//! Two ways to restore: a tree whose root mount is criu's gets a copy of
//! criu's namespace with criu's other mounts taken away and its own added;
//! a tree with a root entry gets its tree built from nothing under the
//! `--root` directory, then `pivot_root` into it. Read-only (of a mount or
//! of a superblock) is applied last, once every mount and file is in place.
//! The tree is built private; peer groups, masters and unbindable are
//! given afterwards ([`propagation`]). Other filesystems, and propagation
//! to or from mounts outside the tree, are refused at dump.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::proc::{self, MountInfo};
use crate::remote::Tracee;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

fn file(id: u32) -> String {
    format!("mountpoints-{id}.img")
}

/// Where in the puppet's scratch area the mount arguments go.
const ARGS_OFF: u64 = 1024;

/// One `--external mnt[KEY]:VAL` / `--ext-mount-map KEY:VAL` / RPC
/// `ext_mnt`. At dump KEY is a mount point of the tree and VAL the name it
/// is recorded under; at restore KEY is that name and VAL a path of criu's
/// (a directory or a file) bind-mounted in its place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtMount {
    pub key: String,
    pub val: String,
}

impl ExtMount {
    /// `KEY:VAL` (`--ext-mount-map`).
    pub fn from_map(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(ExtMount {
                key: k.to_string(),
                val: v.to_string(),
            }),
            _ => Err(format!("{s}: KEY:VALUE expected")),
        }
    }

    /// `mnt[KEY]:VAL` of `--external`; `None` when `s` names another kind
    /// of resource.
    pub fn from_external(s: &str) -> Option<std::result::Result<Self, String>> {
        let rest = s.strip_prefix("mnt[")?;
        Some(match rest.split_once("]:") {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(ExtMount {
                key: k.to_string(),
                val: v.to_string(),
            }),
            _ if rest.starts_with(']') => Err(format!(
                "{s}: automatic external mounts (mnt[]) are not supported; name each: mnt[KEY]:VALUE"
            )),
            _ => Err(format!("{s}: mnt[KEY]:VALUE expected")),
        })
    }
}

/// `--ext-sharing` and `--ext-masters` (RPC `ext_sharing`, `ext_masters`):
/// whether external mounts may keep propagation with mounts outside the
/// tree. Without them such a tree is refused at dump, and external mounts
/// are made private at restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtPropagation {
    /// A peer group the tree shares with criu's mount namespace, through
    /// an external mount of it: the restored external mount is a peer of
    /// the mount it is made of, and the tree's other members join it.
    pub sharing: bool,
    /// An external mount that is a slave of a peer group outside the tree:
    /// the restored one is a slave of the mount it is made of (or of that
    /// mount's master).
    pub masters: bool,
}

/// Runs `f` where paths are as /proc shows the paths of task `pid` to
/// criu: from the top of the task's mount namespace (in criu itself when
/// that is criu's own; else in a helper thread that joined it: a
/// container's paths are below its root).
fn in_mnt_ns_of<T: Send>(
    pid: i32,
    f: impl FnOnce() -> nix::Result<T> + Send,
    what: &str,
) -> Result<T> {
    let run = || {
        f().map_err(|errno| Error::Sys {
            pid,
            what: what.to_owned(),
            errno,
        })
    };
    if super::inode(pid, super::Kind::Mnt)? == super::own_inode(super::Kind::Mnt)? {
        run()
    } else {
        super::in_ns(pid, &[super::Kind::Mnt], run)
    }
}

/// `stat` of `path` as the mount namespace of `pid` sees it.
pub fn stat_in_ns_of(pid: i32, path: &str) -> Result<nix::sys::stat::FileStat> {
    in_mnt_ns_of(
        pid,
        || nix::sys::stat::stat(path),
        &format!("stat of {path}"),
    )
}

/// Opens `path` as the mount namespace of `pid` sees it.
pub fn open_in_ns_of(pid: i32, path: &str, flags: nix::fcntl::OFlag) -> Result<OwnedFd> {
    in_mnt_ns_of(
        pid,
        || nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()),
        &format!("opening {path}"),
    )
}

/// The tree's root as criu reaches it during a restore of a tree with a
/// mount namespace of its own (set once its mounts are in place): files
/// named by path in the images are found below it, in that namespace.
static TREE_ROOT: Mutex<Option<OwnedFd>> = Mutex::new(None);

fn set_tree_root(fd: Option<OwnedFd>) {
    if let Ok(mut g) = TREE_ROOT.lock() {
        *g = fd;
    }
}

/// Opens `path` (a path of the restored tree) with `flags`: below the
/// tree's root when it has a mount namespace of its own (symlinks
/// resolved inside it), else as criu sees it.
pub fn open_in_tree(path: &str, flags: nix::fcntl::OFlag) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    let g = TREE_ROOT.lock().map_err(|_| nix::errno::Errno::EDEADLK)?;
    match g.as_ref() {
        None => nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty()),
        Some(root) => nix::fcntl::openat2(
            root,
            path,
            OpenHow::new()
                .flags(flags)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT),
        ),
    }
}
/// The fstype code of the image format for a filesystem type.
pub fn fstype_code(fs: &str) -> pb::Fstype {
    match fs {
        "proc" => pb::Fstype::Proc,
        "sysfs" => pb::Fstype::Sysfs,
        "devtmpfs" => pb::Fstype::Devtmpfs,
        "binfmt_misc" => pb::Fstype::BinfmtMisc,
        "tmpfs" => pb::Fstype::Tmpfs,
        "devpts" => pb::Fstype::Devpts,
        "pstore" => pb::Fstype::Pstore,
        "securityfs" => pb::Fstype::Securityfs,
        "fusectl" => pb::Fstype::Fusectl,
        "debugfs" => pb::Fstype::Debugfs,
        "cgroup" => pb::Fstype::Cgroup,
        "cgroup2" => pb::Fstype::Cgroup2,
        "mqueue" => pb::Fstype::Mqueue,
        "overlay" => pb::Fstype::Overlayfs,
        "autofs" => pb::Fstype::Autofs,
        "tracefs" => pb::Fstype::Tracefs,
        _ => pb::Fstype::Auto,
    }
}

/// MS_* flags of the per-mount options (`rw,nosuid,relatime`).
pub fn mount_flags(opts: &str) -> u32 {
    opts.split(',')
        .map(|o| match o {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            _ => 0,
        })
        .fold(0, |a, f| a | f as u32)
}

/// The superblock flags among the per-superblock options (only `ro`).
fn sb_flags(super_options: &str) -> u32 {
    if super_options.split(',').any(|o| o == "ro") {
        libc::MS_RDONLY as u32
    } else {
        0
    }
}

/// The same mount seen from two namespaces (a copied namespace shares the
/// superblocks, so the device is the same too).
fn same_mount(a: &MountInfo, b: &MountInfo) -> bool {
    a.dev == b.dev
        && a.mount_point == b.mount_point
        && a.root == b.root
        && a.fs_type == b.fs_type
        && a.source == b.source
}

/// Filesystems the tree may have mounted itself, which are mounted anew at
/// restore.
const FRESH: &[&str] = &["proc", "sysfs", "tmpfs", "devpts", "mqueue"];

/// How a mount of the tree's namespace comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The namespace's own root mount: the `--root` directory.
    Root,
    /// One of criu's, there in the copy.
    Inherited,
    /// Bind-mounted from the host path given for its key.
    External,
    /// Mounted anew.
    Fresh,
    /// A bind mount of a directory of the earlier mount at this index.
    Bind(usize),
}

/// The mount among `earlier` that `root` (on device `dev`) is a directory of.
fn bind_source<'a>(
    dev: u32,
    root: &str,
    earlier: impl Iterator<Item = (usize, u32, &'a str)>,
) -> Option<usize> {
    earlier
        .filter(|&(_, d, r)| d == dev && Path::new(root).starts_with(r))
        .map(|(i, _, _)| i)
        .next()
}

/// The mounts in the order they can be made in: the root first, each
/// mount after its parent, siblings (and mounts stacked on one another)
/// in the order of mountinfo. `None` when the list is not one tree.
pub fn tree_order(mounts: &[MountInfo]) -> Option<Vec<usize>> {
    let is_id = |id: i32| mounts.iter().any(|m| m.mnt_id == id);
    let mut roots = mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| !is_id(m.parent_id) || m.parent_id == m.mnt_id);
    let (root, _) = roots.next()?;
    if roots.next().is_some() {
        return None;
    }
    let mut out = vec![root];
    let mut next = 0;
    while next < out.len() {
        let parent = mounts[out[next]].mnt_id;
        for (i, m) in mounts.iter().enumerate() {
            if m.parent_id == parent && i != out[next] && !out.contains(&i) {
                out.push(i);
            }
        }
        next += 1;
    }
    (out.len() == mounts.len()).then_some(out)
}

/// Whether the images' first entry is a root of the tree's own.
fn has_own_root(mounts: &[pb::MntEntry]) -> bool {
    mounts
        .first()
        .is_some_and(|m| m.mountpoint == "/" && m.ext_mount != Some(true))
}

/// The image entries of `theirs` (a tree's mounts) against `ours` (criu's),
/// with the external mounts `ext` (mount point → key), or why they cannot
/// be restored.
pub fn entries(
    pid: i32,
    theirs: &[MountInfo],
    ours: &[MountInfo],
    ext: &[ExtMount],
    prop: ExtPropagation,
) -> Result<Vec<pb::MntEntry>> {
    let order = tree_order(theirs).ok_or_else(|| Error::Unsupported {
        pid,
        what: "its mount namespace's mounts do not make one tree (a mount's parent is missing)"
            .into(),
    })?;
    // A root that is not criu's: nothing of criu's is taken over then.
    let own_root = order
        .first()
        .is_some_and(|&r| !ours.iter().any(|o| same_mount(o, &theirs[r])));
    let mut out: Vec<pb::MntEntry> = Vec::with_capacity(theirs.len());
    // Peer groups shared with criu's mount namespace.
    let mut outside = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        let m = &theirs[i];
        if let Some(g) = m
            .shared()
            .filter(|&g| ours.iter().any(|o| o.shared() == Some(g)))
        {
            outside.push((g, m.mount_point.to_string_lossy().into_owned()));
        }
        let mountpoint = m.mount_point.to_string_lossy().into_owned();
        let key = (n > 0)
            .then(|| ext.iter().find(|e| e.key == mountpoint))
            .flatten();
        let inherited = !own_root && key.is_none() && ours.iter().any(|o| same_mount(o, m));
        let code = fstype_code(&m.fs_type);
        out.push(pb::MntEntry {
            fstype: code as u32,
            mnt_id: m.mnt_id as u32,
            root_dev: (m.dev.major << 20) | m.dev.minor,
            parent_mnt_id: m.parent_id as u32,
            flags: mount_flags(&m.options)
                | if m.unbindable() {
                    libc::MS_UNBINDABLE as u32
                } else {
                    0
                },
            root: m.root.to_string_lossy().into_owned(),
            mountpoint,
            source: m.source.to_string_lossy().into_owned(),
            options: m.super_options.clone(),
            fsname: (code == pb::Fstype::Auto).then(|| m.fs_type.clone()),
            ext_mount: (inherited || key.is_some()).then_some(true),
            ext_key: key.map(|k| k.val.clone()),
            sb_flags: Some(sb_flags(&m.super_options)),
            shared_id: m.shared(),
            master_id: m.master(),
            ..Default::default()
        });
    }
    // Sharing with mounts outside goes through an external mount of the
    // group, which the restore makes of a mount of that group.
    for (g, mp) in &outside {
        let through = out
            .iter()
            .any(|m| m.shared_id == Some(*g) && m.ext_key.is_some());
        if !prop.sharing || !through {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "the mount at {mp} is in peer group {g}, shared with criu's mount namespace: propagation to mounts outside the tree is restored only through an external mount of that group (--external mnt[MOUNTPOINT]:KEY) with --ext-sharing"
                ),
            });
        }
    }
    propagation(&out, prop).map_err(|what| Error::Unsupported { pid, what })?;
    for (m, o) in out.iter().zip(origins(&out)) {
        let fresh_ok = fs_name(m).is_some() && m.root == "/";
        if o == Origin::Fresh && !fresh_ok {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "its mount namespace has a {} mount at {} (source {:?}, root {}) that is neither criu's, nor one of {FRESH:?}, nor a bind mount of another, nor external (--external mnt[{}]:KEY); it cannot be restored yet",
                    fs_label(m),
                    m.mountpoint,
                    m.source,
                    m.root,
                    m.mountpoint
                ),
            });
        }
    }
    Ok(out)
}

/// The filesystem type of an entry, for messages.
fn fs_label(m: &pb::MntEntry) -> String {
    m.fsname.clone().unwrap_or_else(|| {
        pb::Fstype::try_from(m.fstype as i32)
            .map(|f| f.as_str_name().to_lowercase())
            .unwrap_or_else(|_| m.fstype.to_string())
    })
}

/// How each entry comes back (see [`Origin`]), in order.
pub fn origins(mounts: &[pb::MntEntry]) -> Vec<Origin> {
    let own_root = has_own_root(mounts);
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        out.push(if i == 0 && own_root {
            Origin::Root
        } else if m.ext_mount == Some(true) && m.ext_key.is_some() {
            Origin::External
        } else if m.ext_mount == Some(true) {
            Origin::Inherited
        } else if let Some(src) = bind_source(
            m.root_dev,
            &m.root,
            mounts[..i]
                .iter()
                .enumerate()
                .map(|(j, e)| (j, e.root_dev, e.root.as_str())),
        ) {
            Origin::Bind(src)
        } else {
            Origin::Fresh
        });
    }
    out
}

/// The propagation flags among an entry's `flags` (only `MS_UNBINDABLE`
/// is kept there; peer groups and masters have fields of their own).
const PROPAGATION: u32 =
    (libc::MS_UNBINDABLE | libc::MS_SHARED | libc::MS_SLAVE | libc::MS_PRIVATE) as u32;

/// One step of giving the made (private) mounts their propagation, on
/// their mount points as the restored tree sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    /// `mount(NULL, target, NULL, flag)`: `MS_SHARED` (a new peer group),
    /// `MS_SLAVE` (of the group it is in) or `MS_UNBINDABLE`.
    Make { target: String, flag: u64 },
    /// `move_mount(from, to, MOVE_MOUNT_SET_GROUP)`: `to` (private) joins
    /// the peer group of `from` and gets its master.
    SetGroup { from: String, to: String },
}

/// Whether an entry is an external mount named by a key (made at restore
/// of a path of criu's).
fn is_external(m: &pb::MntEntry) -> bool {
    m.ext_mount == Some(true) && m.ext_key.is_some()
}

/// Whether entry `a`'s root holds entry `b`'s (same filesystem, `b`'s
/// root at or below `a`'s): what `MOVE_MOUNT_SET_GROUP` from `a` to `b`
/// needs.
fn holds(a: &pb::MntEntry, b: &pb::MntEntry) -> bool {
    a.root_dev == b.root_dev && Path::new(&b.root).starts_with(&a.root)
}

/// The steps that give `mounts` (all made, all private) their peer
/// groups, masters and unbindable flag, or why they cannot be given.
/// Each peer group gets a leader (the member whose root holds the others'):
/// the leader is first made a slave of its master group if it has one
/// (by joining that group, then `MS_SLAVE`), then `MS_SHARED`, and the
/// other members join its group. A slave that is no peer joins its
/// master group the same way and is made `MS_SLAVE`. Unbindable last.
pub fn propagation(
    mounts: &[pb::MntEntry],
    prop: ExtPropagation,
) -> std::result::Result<Vec<Prop>, String> {
    struct Plan<'a> {
        mounts: &'a [pb::MntEntry],
        prop: ExtPropagation,
        /// peer group -> its members, in entry order
        groups: Vec<(u32, Vec<usize>)>,
        done: Vec<u32>,
        busy: Vec<u32>,
        out: Vec<Prop>,
    }
    impl Plan<'_> {
        fn mp(&self, i: usize) -> String {
            self.mounts[i].mountpoint.clone()
        }
        /// The entries in peer group `g` (none for a group outside).
        fn members(&self, g: u32) -> &[usize] {
            self.groups
                .iter()
                .find(|(id, _)| *id == g)
                .map(|(_, v)| v.as_slice())
                .unwrap_or_default()
        }
        fn leader(&self, g: u32) -> std::result::Result<usize, String> {
            let members = self.members(g);
            // With --ext-sharing an external member leads: it is made of a
            // mount outside, in the group to join.
            let external = |&l: &usize| self.prop.sharing && is_external(&self.mounts[l]);
            members
                .iter()
                .copied()
                .filter(external)
                .chain(members.iter().copied().filter(|l| !external(l)))
                .find(|&l| {
                    members
                        .iter()
                        .all(|&o| holds(&self.mounts[l], &self.mounts[o]))
                })
                .ok_or_else(|| {
                    let mps: Vec<String> = members.iter().map(|&i| self.mp(i)).collect();
                    format!("the mounts of peer group {g} ({mps:?}) have no member whose root holds the others' roots; such a group cannot be remade yet")
                })
        }
        fn group(&mut self, g: u32) -> std::result::Result<(), String> {
            if self.done.contains(&g) {
                return Ok(());
            }
            if self.busy.contains(&g) {
                return Err(format!("peer group {g} is its own master"));
            }
            self.busy.push(g);
            let l = self.leader(g)?;
            if let Some(m) = self.mounts[l].master_id {
                self.slave(l, m)?;
            }
            self.out.push(Prop::Make {
                target: self.mp(l),
                flag: libc::MS_SHARED,
            });
            for o in self.members(g).to_vec().into_iter().filter(|&o| o != l) {
                self.out.push(Prop::SetGroup {
                    from: self.mp(l),
                    to: self.mp(o),
                });
            }
            self.done.push(g);
            Ok(())
        }
        fn slave(&mut self, x: usize, master: u32) -> std::result::Result<(), String> {
            if self.members(master).is_empty() {
                if self.prop.masters && is_external(&self.mounts[x]) {
                    // Made of a mount of the master group, or of one of
                    // its slaves: a slave of that group once made one.
                    self.out.push(Prop::Make {
                        target: self.mp(x),
                        flag: libc::MS_SLAVE,
                    });
                    return Ok(());
                }
                return Err(format!(
                    "the mount at {} is a slave of peer group {master}, which has no mount in the tree's mount namespace: a master outside is restored only for an external mount (--external mnt[MOUNTPOINT]:KEY) with --ext-masters",
                    self.mp(x)
                ));
            }
            self.group(master)?;
            let l = self.leader(master)?;
            if !holds(&self.mounts[l], &self.mounts[x]) {
                return Err(format!(
                    "the mount at {} (root {}) is a slave of peer group {master}, whose mount at {} (root {}) does not hold its root; it cannot be made its slave yet",
                    self.mp(x),
                    self.mounts[x].root,
                    self.mp(l),
                    self.mounts[l].root
                ));
            }
            self.out.push(Prop::SetGroup {
                from: self.mp(l),
                to: self.mp(x),
            });
            self.out.push(Prop::Make {
                target: self.mp(x),
                flag: libc::MS_SLAVE,
            });
            Ok(())
        }
    }
    let mut p = Plan {
        mounts,
        prop,
        groups: Vec::new(),
        done: Vec::new(),
        busy: Vec::new(),
        out: Vec::new(),
    };
    for (i, m) in mounts.iter().enumerate() {
        let has_prop = m.shared_id.is_some()
            || m.master_id.is_some()
            || m.flags & libc::MS_UNBINDABLE as u32 != 0;
        // a mount's path reaches the topmost of those on its mount point
        if has_prop && mounts[i + 1..].iter().any(|o| o.mountpoint == m.mountpoint) {
            return Err(format!(
                "the mount at {} has propagation and another mount on top of it; this cannot be restored yet",
                m.mountpoint
            ));
        }
        if let Some(g) = m.shared_id {
            match p.groups.iter_mut().find(|(id, _)| *id == g) {
                Some((_, v)) => v.push(i),
                None => p.groups.push((g, vec![i])),
            }
        }
    }
    let ids: Vec<u32> = p.groups.iter().map(|(id, _)| *id).collect();
    for g in ids {
        p.group(g)?;
    }
    for (i, m) in mounts.iter().enumerate() {
        if let (None, Some(master)) = (m.shared_id, m.master_id) {
            p.slave(i, master)?;
        }
    }
    for m in mounts {
        if m.flags & libc::MS_UNBINDABLE as u32 != 0 {
            if m.shared_id.is_some() {
                return Err(format!(
                    "the mount at {} is both shared and unbindable",
                    m.mountpoint
                ));
            }
            p.out.push(Prop::Make {
                target: m.mountpoint.clone(),
                flag: libc::MS_UNBINDABLE,
            });
        }
    }
    Ok(p.out)
}

/// The name of the image with the files of the tmpfs of device `dev`.
fn tmpfs_file(dev: u32) -> String {
    format!("tmpfs-dev-{dev}.tar.gz.img")
}

/// Adds the tree below `dir` (on device `dev`) to `tar` as `rel`; the
/// mount points of other mounts below become empty directories.
fn tar_tree<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    dev: u64,
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let (path, r) = (dir.join(&n), rel.join(&n));
        let md = std::fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        if std::os::unix::fs::FileTypeExt::is_socket(&ft) {
            tracing::debug!("tmpfs: socket {} not kept", path.display());
            continue;
        }
        if md.dev() != dev {
            // a mount point: an empty directory, or an empty file under a
            // file bind mount
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&md);
            h.set_entry_type(if md.is_dir() {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_size(0);
            tar.append_data(&mut h, &r, std::io::empty())?;
            continue;
        }
        use std::os::unix::fs::FileTypeExt;
        let special = if ft.is_char_device() {
            Some(tar::EntryType::Char)
        } else if ft.is_block_device() {
            Some(tar::EntryType::Block)
        } else if ft.is_fifo() {
            Some(tar::EntryType::Fifo)
        } else {
            None
        };
        if let Some(kind) = special {
            // (the tar crate names these by their source path)
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&md);
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_device_major(nix::sys::stat::major(md.rdev()) as u32)?;
            h.set_device_minor(nix::sys::stat::minor(md.rdev()) as u32)?;
            tar.append_data(&mut h, &r, std::io::empty())?;
            continue;
        }
        tar.append_path_with_name(&path, &r)?;
        if ft.is_dir() {
            tar_tree(tar, &path, &r, dev)?;
        }
    }
    Ok(())
}

/// Writes the files of the tmpfs mounted at `mp` in the namespace of `pid`
/// (walked from a helper thread inside that namespace: the mount may be
/// anywhere in its tree).
/// Saves the files of the tmpfs `dev` mounted at `mp` in the mount
/// namespace of `pid`. When `covered` mounts are stacked on it at `mp`,
/// the helper thread works in a private copy of the namespace where it
/// detaches them first.
fn dump_tmpfs(pid: i32, mp: &str, dev: u32, covered: usize, dir: &Path) -> Result<()> {
    let file = dir.join(tmpfs_file(dev));
    let io = |source: std::io::Error| Error::Io {
        pid,
        what: format!(
            "saving the files of the tmpfs at {mp} into {}",
            file.display()
        ),
        source,
    };
    let out = std::fs::File::create(&file).map_err(io)?;
    // A covered tmpfs is reached in a private copy of the namespace where
    // what covers it is gone, held by a child of criu (joined with the
    // namespace's owner, so that the copy's mounts are not locked).
    let copy = if covered > 0 {
        let user = if super::inode(pid, super::Kind::User)? == super::own_inode(super::Kind::User)?
        {
            None
        } else {
            Some(super::open_ns(pid, super::Kind::User)?)
        };
        let mnt = super::open_ns(pid, super::Kind::Mnt)?;
        let u = crate::sys::mount_api::uncover(
            user.as_ref().map(|f| f.as_fd()),
            mnt.as_fd(),
            Path::new(mp),
            covered,
        )
        .map_err(|(what, errno)| Error::Sys {
            pid,
            what: format!("uncovering the tmpfs at {mp}, under {covered} mount(s): {what}"),
            errno,
        })?;
        Some(u)
    } else {
        None
    };
    let ns_of = copy.as_ref().map_or(pid, |u| u.pid);
    super::in_ns(ns_of, &[super::Kind::Mnt], || {
        let gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(out),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        let top = Path::new(mp);
        let dev_here = std::fs::metadata(top).map_err(io)?.dev();
        let (major, minor) = (libc::major(dev_here), libc::minor(dev_here));
        if (major << 20) | minor != dev {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "the tmpfs at {mp} (device {}:{}) cannot be reached by its path: {mp} leads to device {major}:{minor}",
                    dev >> 20,
                    dev & 0xfffff
                ),
            });
        }
        tar_tree(&mut tar, top, Path::new("."), dev_here).map_err(io)?;
        let gz = tar.into_inner().map_err(io)?;
        let mut w = gz.finish().map_err(io)?;
        std::io::Write::flush(&mut w).map_err(io)
    })
}

fn own_mounts() -> Result<Vec<MountInfo>> {
    Ok(proc::read_mountinfo(std::process::id() as i32)?)
}

/// Dump half: the mounts of the namespace of `pid` (image id `id`), with
/// the external mounts `ext` (mount point → key), into `dir`.
pub fn dump(pid: i32, id: u32, dir: &Path, ext: &[ExtMount], prop: ExtPropagation) -> Result<()> {
    let theirs = proc::read_mountinfo(pid)?;
    let e = entries(pid, &theirs, &own_mounts()?, ext, prop)?;
    for (i, (m, o)) in e.iter().zip(origins(&e)).enumerate() {
        if o == Origin::Fresh && m.fstype == pb::Fstype::Tmpfs as u32 {
            let covered = e[i + 1..]
                .iter()
                .filter(|x| x.mountpoint == m.mountpoint)
                .count();
            dump_tmpfs(pid, &m.mountpoint, m.root_dev, covered, dir)?;
        }
    }
    image::write_image(dir, &file(id), magic::MNTS, &e)?;
    Ok(())
}

/// What the images say of a mount namespace, and what the restore was
/// told of its outside.
#[derive(Debug, Clone)]
pub struct Images {
    pub mounts: Vec<pb::MntEntry>,
    /// Where the tmpfs archives are.
    pub dir: PathBuf,
    /// `--root`: the directory the tree's own root mount is made of.
    pub root: Option<PathBuf>,
    /// `--external mnt[KEY]:PATH`: the host paths of external mounts.
    pub ext: Vec<ExtMount>,
    /// `--ext-sharing`, `--ext-masters` of the restore.
    pub prop: ExtPropagation,
}

impl Images {
    /// Takes the restore's `--root` and external mount paths, and checks
    /// that everything the images need from outside was given.
    pub fn configure(&mut self, root: Option<&Path>, ext: &[ExtMount]) -> Result<()> {
        self.root = root
            .filter(|r| r.as_os_str().as_bytes().iter().any(|&b| b != b'/'))
            .map(Path::to_path_buf);
        self.ext = ext.to_vec();
        let origins = origins(&self.mounts);
        if origins.first() == Some(&Origin::Root) {
            let Some(r) = &self.root else {
                let m = &self.mounts[0];
                return Err(Error::Unsupported {
                    pid: 0,
                    what: format!(
                        "the tree's root mount (a {} of {:?}, root {}) is not criu's: restore it with --root DIR (RPC root), the directory to make it of",
                        fs_label(m),
                        m.source,
                        m.root
                    ),
                });
            };
            if !r.is_absolute() || !r.is_dir() {
                return Err(Error::Mismatch {
                    what: format!(
                        "--root {}: not an absolute path of a directory",
                        r.display()
                    ),
                });
            }
        }
        for (m, o) in self.mounts.iter().zip(&origins) {
            if *o != Origin::External {
                continue;
            }
            let key = m.ext_key.as_deref().unwrap_or_default();
            if self.host_path(key).is_none() {
                return Err(Error::Unsupported {
                    pid: 0,
                    what: format!(
                        "the mount at {} is external with key {key:?}: restore it with --external mnt[{key}]:PATH (RPC ext_mnt key {key:?})",
                        m.mountpoint
                    ),
                });
            }
        }
        Ok(())
    }

    fn host_path(&self, key: &str) -> Option<&str> {
        self.ext
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.val.as_str())
    }
}

/// The filesystem type name of a fresh mount.
fn fs_name(m: &pb::MntEntry) -> Option<&'static str> {
    let code = pb::Fstype::try_from(m.fstype as i32).ok()?;
    FRESH.iter().copied().find(|f| fstype_code(f) == code)
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Images>> {
    // a new restore: files are found as criu sees them until a tree root
    // of its own is in place
    set_tree_root(None);
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    let v: Vec<pb::MntEntry> = image::read_image(dir, &file(id), magic::MNTS)?;
    let ours = own_mounts()?;
    for (m, o) in v.iter().zip(origins(&v)) {
        match o {
            Origin::Inherited => {
                let there = ours.iter().any(|o| {
                    o.mount_point.as_os_str().as_bytes() == m.mountpoint.as_bytes()
                        && o.root.as_os_str().as_bytes() == m.root.as_bytes()
                });
                if !there {
                    return Err(Error::Unsupported {
                        pid: 0,
                        what: format!(
                            "{}: the mount at {} came from criu's mount namespace, which has it no longer",
                            file(id),
                            m.mountpoint
                        ),
                    });
                }
            }
            Origin::Fresh if fs_name(m).is_none() => {
                return Err(Error::Unsupported {
                    pid: 0,
                    what: format!(
                        "{}: the mount at {} is of filesystem type {} (source {:?}); criu-rs mounts anew only {FRESH:?}",
                        file(id),
                        m.mountpoint,
                        fs_label(m),
                        m.source
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(Some(Images {
        mounts: v,
        dir: dir.to_path_buf(),
        root: None,
        ext: Vec::new(),
        prop: ExtPropagation::default(),
    }))
}

fn cstr(s: &str) -> Result<Vec<u8>> {
    CString::new(s)
        .map(|c| c.into_bytes_with_nul())
        .map_err(|_| Error::Mismatch {
            what: format!("mount path {s:?} has a NUL byte"),
        })
}

/// `mount(2)` inside the puppet, its strings put in the scratch area.
fn remote_mount(
    t: &mut Tracee,
    source: &str,
    target: &str,
    fs: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<()> {
    match try_remote_mount(t, source, target, fs, flags, data)? {
        0 => Ok(()),
        errno => Err(mount_error(t.pid(), source, target, fs, flags, data, errno)),
    }
}

fn mount_error(
    pid: i32,
    source: &str,
    target: &str,
    fs: Option<&str>,
    flags: u64,
    data: Option<&str>,
    errno: i32,
) -> Error {
    Error::Sys {
        pid,
        what: format!("mounting {source:?} ({fs:?}, flags {flags:#x}, {data:?}) at {target}"),
        errno: nix::errno::Errno::from_raw(errno),
    }
}

/// [`remote_mount`], its errno returned (0: done).
fn try_remote_mount(
    t: &mut Tracee,
    source: &str,
    target: &str,
    fs: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> Result<i32> {
    let mut b = cstr(source)?;
    let target_at = b.len() as u64;
    b.extend(cstr(target)?);
    let fs_at = b.len() as u64;
    b.extend(cstr(fs.unwrap_or(""))?);
    let data_at = b.len() as u64;
    b.extend(cstr(data.unwrap_or(""))?);
    let base = t.scratch_put(ARGS_OFF, &b)?;
    let opt = |present: bool, at: u64| if present { base + at } else { 0 };
    tracing::debug!(source, target, fs, flags, data, "mount");
    let ret = t.syscall_raw(
        libc::SYS_mount,
        &[
            base,
            base + target_at,
            opt(fs.is_some(), fs_at),
            flags,
            opt(data.is_some(), data_at),
        ],
    )?;
    Ok(i32::try_from(-ret).unwrap_or(libc::EIO))
}

/// Makes the missing mount point `target` in the puppet's namespace (from
/// a helper thread that joined it): a file when what is mounted there
/// (`source`, a path of the same namespace, for a bind) is not a
/// directory, else a directory, with its missing parents.
fn make_mountpoint(pid: i32, source: Option<&str>, target: &str) -> Result<()> {
    super::in_ns(pid, &[super::Kind::Mnt], || {
        let io = |source: std::io::Error| Error::Io {
            pid,
            what: format!("making the missing mount point {target}"),
            source,
        };
        let file = source
            .and_then(|s| std::fs::metadata(s).ok())
            .is_some_and(|m| !m.is_dir());
        let t = Path::new(target);
        if file {
            if let Some(parent) = t.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(t)
                .map(drop)
                .map_err(io)
        } else {
            std::fs::create_dir_all(t).map_err(io)
        }
    })
}

/// A syscall of the puppet taking one path (`chdir`, `umount2` …).
fn remote_path_call(t: &mut Tracee, nr: i64, path: &str, args: &[u64]) -> Result<u64> {
    let p = cstr(path)?;
    let a = t.scratch_put(ARGS_OFF, &p)?;
    let mut all = vec![a];
    all.extend_from_slice(args);
    Ok(t.syscall(nr, &all)?)
}

/// Unpacks a tmpfs archive into `dst`: what the tar crate makes itself,
/// and device nodes and fifos (which it would make regular files of).
fn unpack<R: std::io::Read>(tar: &mut tar::Archive<R>, dst: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::path::Component;
    for e in tar.entries()? {
        let mut e = e?;
        let kind = e.header().entry_type();
        let node = if kind.is_character_special() {
            SFlag::S_IFCHR
        } else if kind.is_block_special() {
            SFlag::S_IFBLK
        } else if kind.is_fifo() {
            SFlag::S_IFIFO
        } else {
            e.unpack_in(dst)?;
            continue;
        };
        let rel = e.path()?.into_owned();
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(std::io::Error::other(format!(
                "archive entry {} leaves the directory",
                rel.display()
            )));
        }
        let path = dst.join(&rel);
        let h = e.header();
        let mode = h.mode()? & 0o7777;
        let dev = makedev(
            u64::from(h.device_major()?.unwrap_or(0)),
            u64::from(h.device_minor()?.unwrap_or(0)),
        );
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        mknod(&path, node, Mode::from_bits_truncate(mode), dev).map_err(std::io::Error::from)?;
        std::os::unix::fs::lchown(&path, Some(h.uid()? as u32), Some(h.gid()? as u32))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    Ok(())
}

/// Unpacks the files of a tmpfs (its image) into it (at `at` in the
/// puppet's namespace), from a helper thread inside that namespace.
fn restore_tmpfs(
    pid: i32,
    m: &pb::MntEntry,
    at: &str,
    dir: &Path,
    user: Option<&pb::UsernsEntry>,
) -> Result<()> {
    let file = dir.join(tmpfs_file(m.root_dev));
    let io = |source: std::io::Error| Error::Io {
        pid,
        what: format!("unpacking {} into the tmpfs at {at}", file.display()),
        source,
    };
    let f = match std::fs::File::open(&file) {
        Ok(f) => f,
        // an empty tmpfs need not have an archive
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    super::in_ns(pid, &[super::Kind::Mnt], || {
        // A filesystem mounted in a user namespace takes files only from
        // ids mapped there: create them as the namespace's root.
        if let Some((uid, gid)) = user.and_then(super::user::root_ids) {
            crate::sys::thread_creds::set_thread_fs_ids_keeping_caps(uid, gid).map_err(
                |errno| Error::Sys {
                    pid,
                    what: format!("becoming {uid}:{gid} for files in a helper thread"),
                    errno,
                },
            )?;
        }
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
        let mut tar = tar::Archive::new(gz);
        tar.set_preserve_permissions(true);
        tar.set_preserve_ownerships(true);
        tar.set_preserve_mtime(true);
        tar.set_overwrite(true);
        unpack(&mut tar, Path::new(at)).map_err(io)
    })
}

/// Mount options as the puppet must give them: `uid=`/`gid=` are shown
/// as ids of criu's user namespace and are taken as ids of the mounter's.
fn options_inside(opts: &str, user: Option<&pb::UsernsEntry>) -> String {
    let Some(u) = user else {
        return opts.to_string();
    };
    opts.split(',')
        .map(|o| match o.split_once('=') {
            Some(("uid", v)) => match v.parse() {
                Ok(id) => format!("uid={}", super::user::to_inner(&u.uid_map, id)),
                Err(_) => o.to_string(),
            },
            Some(("gid", v)) => match v.parse() {
                Ok(id) => format!("gid={}", super::user::to_inner(&u.gid_map, id)),
                Err(_) => o.to_string(),
            },
            _ => o.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The superblock options with `ro` made `rw`: a read-only filesystem is
/// mounted writable, filled, then made read-only.
fn options_writable(opts: &str) -> String {
    opts.split(',')
        .map(|o| if o == "ro" { "rw" } else { o })
        .collect::<Vec<_>>()
        .join(",")
}

/// Where an entry's mount point is while the tree is built: below
/// `prefix` (the `--root` directory) or, without one, where it is.
fn target(prefix: &str, mountpoint: &str) -> String {
    if prefix.is_empty() {
        mountpoint.to_string()
    } else if mountpoint == "/" {
        prefix.to_string()
    } else {
        format!("{}{mountpoint}", prefix.trim_end_matches('/'))
    }
}

/// One step of making the mounts of the images, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `mount(source, target, fs, flags, data)`.
    Mount {
        source: String,
        target: String,
        fs: Option<String>,
        flags: u64,
        data: Option<String>,
    },
    /// Unpack the files of entry `entry` (a tmpfs just mounted) at `target`.
    Fill { entry: usize, target: String },
    /// A copy of criu's mount at `source` (an external mount's path),
    /// attached at `target`: in `source`'s peer group or a slave of its
    /// master, as a bind mount of it would be; made private unless `keep`.
    Attach {
        source: String,
        target: String,
        keep: bool,
    },
}

/// The mounts to make for `mounts` (their `origins`), under `prefix`:
/// every mount first (writable; a tmpfs filled right after it is mounted,
/// before anything is mounted on it), then the flags of binds and
/// read-only applied from the deepest up.
pub fn plan(
    mounts: &[pb::MntEntry],
    prefix: &str,
    ext: &[ExtMount],
    prop: ExtPropagation,
    user: Option<&pb::UsernsEntry>,
) -> Result<Vec<Step>> {
    let origins = origins(mounts);
    let relatime = libc::MS_RELATIME as u32;
    let rdonly = libc::MS_RDONLY as u32;
    let mut made = Vec::new();
    let mut flags = Vec::new();
    let mount = |source: &str, target: &str, fs: Option<&str>, flags: u32, data: Option<String>| {
        Step::Mount {
            source: source.to_string(),
            target: target.to_string(),
            fs: fs.map(str::to_string),
            flags: u64::from(flags),
            data,
        }
    };
    let bind = |from: &str, to: &str| mount(from, to, None, libc::MS_BIND as u32, None);
    // An external mount keeps the propagation its copy brings from the
    // outside when that is what it had (and the restore allows it).
    let kept = |m: &pb::MntEntry| {
        (prop.sharing && m.shared_id.is_some()) || (prop.masters && m.master_id.is_some())
    };
    let remount_bind = |to: &str, f: u32| {
        mount(
            "",
            to,
            None,
            (libc::MS_REMOUNT | libc::MS_BIND) as u32 | f,
            None,
        )
    };
    for (i, (m, o)) in mounts.iter().zip(&origins).enumerate() {
        let to = target(prefix, &m.mountpoint);
        // no atime option shown is strictatime (a fresh mount would get
        // relatime)
        let strict = if m.flags & (relatime | libc::MS_NOATIME as u32) == 0 {
            libc::MS_STRICTATIME as u32
        } else {
            0
        };
        let per_mount = (m.flags & !relatime & !PROPAGATION) | strict;
        match *o {
            Origin::Inherited => {}
            Origin::Root => {
                made.push(bind(prefix, &to));
                if per_mount != 0 {
                    flags.push(remount_bind(&to, per_mount));
                }
            }
            Origin::External => {
                let key = m.ext_key.as_deref().unwrap_or_default();
                let from = ext
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| e.val.as_str())
                    .ok_or_else(|| Error::Unsupported {
                        pid: 0,
                        what: format!(
                            "the mount at {} is external with key {key:?}, for which no path was given (--external mnt[{key}]:PATH)",
                            m.mountpoint
                        ),
                    })?;
                made.push(Step::Attach {
                    source: from.to_string(),
                    target: to.clone(),
                    keep: kept(m),
                });
                if per_mount != 0 {
                    flags.push(remount_bind(&to, per_mount));
                }
            }
            Origin::Fresh => {
                let fs = fs_name(m).unwrap_or("none");
                let opts = options_inside(&m.options, user);
                if fs != "tmpfs" {
                    // (never a remount of the superblock: it may be shared
                    // with criu's, as sysfs of the same network namespace)
                    made.push(mount(&m.source, &to, Some(fs), per_mount, Some(opts)));
                    continue;
                }
                // a tmpfs is mounted writable, filled, then made read-only
                let sb = m.sb_flags.unwrap_or_else(|| sb_flags(&m.options)) & rdonly;
                let data = if sb != 0 {
                    options_writable(&opts)
                } else {
                    opts.clone()
                };
                made.push(mount(
                    &m.source,
                    &to,
                    Some(fs),
                    per_mount & !rdonly,
                    Some(data),
                ));
                made.push(Step::Fill {
                    entry: i,
                    target: to.clone(),
                });
                if sb != 0 {
                    flags.push(mount(
                        "",
                        &to,
                        None,
                        libc::MS_REMOUNT as u32 | sb | per_mount,
                        Some(opts),
                    ));
                } else if per_mount & rdonly != 0 {
                    flags.push(remount_bind(&to, per_mount));
                }
            }
            Origin::Bind(src) => {
                let s = &mounts[src];
                let below = Path::new(&m.root)
                    .strip_prefix(&s.root)
                    .unwrap_or(Path::new(""));
                let base = target(prefix, &s.mountpoint);
                let from = if below.as_os_str().is_empty() {
                    base
                } else {
                    format!("{}/{}", base.trim_end_matches('/'), below.display())
                };
                made.push(bind(&from, &to));
                // a bind of a mount that kept its propagation with the
                // outside would share it: its own is given at the end
                if origins[src] == Origin::External && kept(s) {
                    made.push(mount("", &to, None, libc::MS_PRIVATE as u32, None));
                }
                if per_mount != 0 {
                    flags.push(remount_bind(&to, per_mount));
                }
            }
        }
    }
    flags.reverse();
    made.extend(flags);
    Ok(made)
}

/// Inside the root puppet `t`, born in a copy of criu's mount namespace:
/// every mount made private; then either criu's mounts the tree has not
/// are taken away and the tree's own made in order, or (a tree with a
/// root of its own) the whole tree is made under the `--root` directory
/// and the puppet's root moved there with `pivot_root`.
pub fn restore(t: &mut Tracee, i: &Images, user: Option<&pb::UsernsEntry>) -> Result<()> {
    let mounts = &i.mounts;
    let props = propagation(&outside_dropped(mounts, i.prop), i.prop)
        .map_err(|what| Error::Unsupported { pid: t.pid(), what })?;
    remote_mount(t, "", "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    let own_root = has_own_root(mounts);
    let prefix = if own_root {
        i.root
            .as_deref()
            .ok_or_else(|| Error::Unsupported {
                pid: t.pid(),
                what: "the tree has a root mount of its own: restore it with --root DIR".into(),
            })?
            .to_string_lossy()
            .into_owned()
    } else {
        // the puppet's own copy: criu's namespace may have changed since
        let mut gone: Vec<MountInfo> = proc::read_mountinfo(t.pid())?
            .into_iter()
            .filter(|o| {
                !mounts.iter().any(|m| {
                    m.ext_mount == Some(true)
                        && m.ext_key.is_none()
                        && o.mount_point.as_os_str().as_bytes() == m.mountpoint.as_bytes()
                        && o.root.as_os_str().as_bytes() == m.root.as_bytes()
                })
            })
            .collect();
        // the deepest first
        gone.sort_by_key(|o| std::cmp::Reverse(o.mount_point.components().count()));
        for o in gone {
            let mp = o.mount_point.to_string_lossy();
            let p = cstr(&mp)?;
            let a = t.scratch_put(ARGS_OFF, &p)?;
            let ret = t.syscall_raw(libc::SYS_umount2, &[a, libc::MNT_DETACH as u64])?;
            // A mount hidden under another mounted on the same place (or
            // gone with its parent) is no longer reachable by its path:
            // it cannot be seen from the tree either.
            match i32::try_from(-ret).unwrap_or(libc::EIO) {
                0 => {}
                libc::EINVAL | libc::ENOENT => {
                    tracing::debug!(mountpoint = %mp, ret, "not reachable by its path: left")
                }
                e => {
                    return Err(Error::Sys {
                        pid: t.pid(),
                        what: format!("unmounting {mp}, which the tree has not"),
                        errno: nix::errno::Errno::from_raw(e),
                    })
                }
            }
        }
        String::new()
    };
    for step in plan(mounts, &prefix, &i.ext, i.prop, user)? {
        match step {
            Step::Mount {
                source,
                target,
                fs,
                flags,
                data,
            } => {
                let (fs, data) = (fs.as_deref(), data.as_deref());
                let first = try_remote_mount(t, &source, &target, fs, flags, data)?;
                if first == libc::ENOENT && flags & libc::MS_REMOUNT == 0 {
                    // a mount point the root (or a filled tmpfs) lacks
                    let bind = flags & libc::MS_BIND != 0;
                    make_mountpoint(t.pid(), bind.then_some(source.as_str()), &target)?;
                    tracing::debug!(target, "mount point made");
                    remote_mount(t, &source, &target, fs, flags, data)?;
                } else if first != 0 {
                    return Err(mount_error(
                        t.pid(),
                        &source,
                        &target,
                        fs,
                        flags,
                        data,
                        first,
                    ));
                }
            }
            Step::Fill { entry, target } => {
                restore_tmpfs(t.pid(), &mounts[entry], &target, &i.dir, user)?
            }
            Step::Attach {
                source,
                target,
                keep,
            } => attach(t.pid(), &source, &target, keep)?,
        }
    }
    if own_root {
        pivot(t, &prefix)?;
    }
    {
        // Paths of the tree resolve in its namespace from here on, whether
        // or not its root is its own.
        let root = format!("/proc/{}/root", t.pid());
        let fd = nix::fcntl::open(
            root.as_str(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| Error::Sys {
            pid: t.pid(),
            what: format!("opening {root}, the restored tree's root"),
            errno,
        })?;
        set_tree_root(Some(fd));
    }
    // (after pivot_root, which refuses a shared root)
    for p in props {
        apply_prop(t, &p)?;
    }
    Ok(())
}

/// The entries as a restore without `--ext-masters` makes them: an
/// external mount whose master is outside the tree is private (with a
/// warning) rather than refused.
fn outside_dropped(mounts: &[pb::MntEntry], prop: ExtPropagation) -> Vec<pb::MntEntry> {
    let mut out = mounts.to_vec();
    if prop.masters {
        return out;
    }
    for m in out.iter_mut().filter(|m| is_external(m)) {
        let Some(master) = m.master_id else { continue };
        if !mounts.iter().any(|o| o.shared_id == Some(master)) {
            tracing::warn!(
                mountpoint = %m.mountpoint,
                "external mount dumped as a slave of a mount outside the tree: made private (restore with --ext-masters to keep it a slave)"
            );
            m.master_id = None;
        }
    }
    out
}

/// Attaches a copy of criu's mount at `source` at `target` in the mount
/// namespace of puppet `pid` (made private unless `keep`): the copy is
/// made in criu's namespace, where the path was given, and attached by a
/// helper thread that joined the puppet's.
fn attach(pid: i32, source: &str, target: &str, keep: bool) -> Result<()> {
    let copy =
        crate::sys::mount_api::clone_mount(Path::new(source)).map_err(|errno| Error::Sys {
            pid,
            what: format!("copying the mount at {source}, to be attached at {target} (open_tree)"),
            errno,
        })?;
    let what = |step: &str| format!("{step} the copy of the mount at {source} at {target}");
    // In the puppet's namespace: attached (and made private unless kept),
    // or why it could not be attached.
    let in_puppet = || {
        super::in_ns(pid, &[super::Kind::Mnt], || {
            if let Err(errno) = crate::sys::mount_api::attach(copy.as_fd(), Path::new(target)) {
                return Ok(Err(errno));
            }
            if !keep {
                nix::mount::mount(
                    None::<&str>,
                    target,
                    None::<&str>,
                    nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(|errno| Error::Sys {
                    pid,
                    what: what("making private"),
                    errno,
                })?;
            }
            Ok(Ok(()))
        })
    };
    let mut attached = in_puppet()?;
    if attached == Err(nix::errno::Errno::ENOENT) {
        make_mountpoint(pid, Some(source), target)?;
        tracing::debug!(target, "mount point made");
        attached = in_puppet()?;
    }
    attached.map_err(|errno| Error::Sys {
        pid,
        what: what("attaching (move_mount)"),
        errno,
    })?;
    Ok(())
}

/// Does one [`Prop`] step inside the puppet.
fn apply_prop(t: &mut Tracee, p: &Prop) -> Result<()> {
    match p {
        Prop::Make { target, flag } => remote_mount(t, "", target, None, *flag, None),
        Prop::SetGroup { from, to } => {
            let mut b = cstr(from)?;
            let to_at = b.len() as u64;
            b.extend(cstr(to)?);
            let base = t.scratch_put(ARGS_OFF, &b)?;
            let cwd = libc::AT_FDCWD as i64 as u64;
            let ret = t.syscall_raw(
                libc::SYS_move_mount,
                &[cwd, base, cwd, base + to_at, MOVE_MOUNT_SET_GROUP],
            )?;
            match i32::try_from(-ret).unwrap_or(libc::EIO) {
                0 => Ok(()),
                e => Err(Error::Sys {
                    pid: t.pid(),
                    what: format!(
                        "making the mount at {to} join the peer group of the mount at {from} (move_mount MOVE_MOUNT_SET_GROUP, Linux 5.15+)"
                    ),
                    errno: nix::errno::Errno::from_raw(e),
                }),
            }
        }
    }
}

/// `move_mount` flag: copy the sharing group (linux/mount.h).
const MOVE_MOUNT_SET_GROUP: u64 = 0x100;

/// Makes `dir` (a mount) the puppet's root, and detaches the old one.
fn pivot(t: &mut Tracee, dir: &str) -> Result<()> {
    let what = |step: &str, e: crate::remote::Error| Error::Mismatch {
        what: format!("moving the restored tree's root to {dir}: {step}: {e}"),
    };
    remote_path_call(t, libc::SYS_chdir, dir, &[]).map_err(|e| match e {
        Error::Remote(r) => what("chdir", r),
        e => e,
    })?;
    let dot = t.scratch_put(ARGS_OFF, b".\0")?;
    t.syscall(libc::SYS_pivot_root, &[dot, dot])
        .map_err(|e| what("pivot_root", e))?;
    t.syscall(libc::SYS_umount2, &[dot, libc::MNT_DETACH as u64])
        .map_err(|e| what("detaching the old root", e))?;
    let slash = t.scratch_put(ARGS_OFF, b"/\0")?;
    t.syscall(libc::SYS_chdir, &[slash])
        .map_err(|e| what("chdir /", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mi(text: &str) -> Vec<MountInfo> {
        crate::proc::mountinfo::parse_mountinfo(text).unwrap()
    }

    const HOST: &str = "22 27 0:21 / /proc rw,relatime - proc proc rw\n27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";

    #[test]
    fn inherited_and_fresh_proc() {
        let ns = "100 99 0:21 / /proc rw,relatime - proc proc rw\n99 98 254:0 / / rw,relatime - ext4 /dev/vda rw\n101 100 0:50 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n";
        // the fresh proc looks like the host's but for its device
        let e = entries(1, &mi(ns), &mi(HOST), &[], ExtPropagation::default()).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].ext_mount, Some(true));
        assert_eq!(e[2].ext_mount, None);
        assert_eq!(e[2].fstype, pb::Fstype::Proc as u32);
        assert_eq!(
            e[2].flags,
            (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME) as u32
        );
        assert_eq!(e[2].root_dev, 50);
    }

    #[test]
    fn fresh_bind_and_refused_mounts() {
        let ns = "99 98 254:0 / / rw - ext4 /dev/vda rw\n100 99 0:21 / /proc rw - proc proc rw\n102 99 0:60 / /tmp rw - tmpfs tmpfs rw\n103 99 0:60 /sub /mnt ro - tmpfs tmpfs rw\n104 99 254:0 /etc /e rw - ext4 /dev/vda rw\n";
        let e = entries(1, &mi(ns), &mi(HOST), &[], ExtPropagation::default()).unwrap();
        assert_eq!(
            origins(&e),
            [
                Origin::Inherited,
                Origin::Inherited,
                Origin::Fresh,
                Origin::Bind(2),
                Origin::Bind(0)
            ]
        );
        assert_eq!(e[3].flags, libc::MS_RDONLY as u32);
        let other_fs = "99 98 254:0 / / rw - ext4 /dev/vda rw\n100 99 0:21 / /proc rw - proc proc rw\n105 99 0:70 / /x rw - fuse.sshfs host:/ rw\n";
        let why = entries(1, &mi(other_fs), &mi(HOST), &[], ExtPropagation::default())
            .unwrap_err()
            .to_string();
        assert!(why.contains("/x") && why.contains("fuse.sshfs"), "{why}");
        // a peer group shared with criu's namespace is refused
        let shared = "99 98 254:0 / / rw shared:1 - ext4 /dev/vda rw\n100 99 0:21 / /proc rw - proc proc rw\n";
        let host_shared = HOST.replace("rw,relatime - ext4", "rw,relatime shared:1 - ext4");
        let why = entries(
            1,
            &mi(shared),
            &mi(&host_shared),
            &[],
            ExtPropagation::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            why.contains("peer group 1") && why.contains("ext-sharing"),
            "{why}"
        );
    }

    /// A runc busybox container's mounts (cgroup v1), listed as the
    /// kernel lists them: some children before their parents.
    const RUNC: &str = "\
65 43 254:0 /tmp/rc/bundle/rootfs / ro,relatime - ext4 /dev/vda rw
44 66 0:40 /bus /proc/bus ro,relatime - proc proc rw
66 65 0:40 / /proc rw,relatime - proc proc rw
67 65 0:41 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
68 67 0:42 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
69 67 0:43 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
70 67 0:39 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
71 65 0:44 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
72 71 0:45 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
73 72 0:29 /test1 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
74 72 0:30 /test1 /sys/fs/cgroup/freezer ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,freezer
48 66 0:46 / /proc/acpi ro,relatime - tmpfs tmpfs ro
49 66 0:41 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
51 71 0:47 / /sys/firmware ro,relatime - tmpfs tmpfs ro
";

    /// The entries of runc's container, with its external mounts.
    fn runc_entries() -> Vec<pb::MntEntry> {
        entries(
            1,
            &mi(RUNC),
            &mi(HOST),
            &runc_ext(),
            ExtPropagation::default(),
        )
        .unwrap()
    }

    fn runc_ext() -> Vec<ExtMount> {
        [
            ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu"),
            ("/sys/fs/cgroup/freezer", "/sys/fs/cgroup/freezer"),
            ("/proc/keys", "/dev/null"),
            // a key that matches no mount is unused
            ("/dev/null", "/dev/null"),
        ]
        .iter()
        .map(|(k, v)| ExtMount {
            key: k.to_string(),
            val: v.to_string(),
        })
        .collect()
    }

    #[test]
    fn container_tree_order_origins_and_keys() {
        let e = runc_entries();
        let mps: Vec<&str> = e.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(
            mps,
            [
                "/",
                "/proc",
                "/dev",
                "/sys",
                "/proc/bus",
                "/proc/acpi",
                "/proc/keys",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys/fs/cgroup",
                "/sys/firmware",
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/freezer"
            ]
        );
        use Origin::*;
        assert_eq!(
            origins(&e),
            [
                Root,
                Fresh,
                Fresh,
                Fresh,
                Bind(1),
                Fresh,
                External,
                Fresh,
                Fresh,
                Fresh,
                Fresh,
                Fresh,
                External,
                External
            ]
        );
        assert_eq!(e[0].ext_mount, None);
        assert_eq!(e[6].ext_key.as_deref(), Some("/dev/null"));
        assert_eq!(e[12].ext_key.as_deref(), Some("/sys/fs/cgroup/cpu"));
        assert_eq!(e[3].sb_flags, Some(libc::MS_RDONLY as u32));
        assert_eq!(e[1].sb_flags, Some(0));
        // without the key, /proc/keys is a file bind of /dev/null of the
        // container's /dev, and the cgroup mounts cannot be restored
        let why = entries(1, &mi(RUNC), &mi(HOST), &[], ExtPropagation::default())
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("cgroup") && why.contains("/sys/fs/cgroup/cpu"),
            "{why}"
        );
        let no_cg: String = RUNC
            .lines()
            .filter(|l| !l.contains("cgroup cgroup"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = entries(1, &mi(&no_cg), &mi(HOST), &[], ExtPropagation::default()).unwrap();
        let keys = e.iter().position(|m| m.mountpoint == "/proc/keys").unwrap();
        let dev = e.iter().position(|m| m.mountpoint == "/dev").unwrap();
        assert_eq!(origins(&e)[keys], Origin::Bind(dev));
    }

    #[test]
    fn container_plan_mounts_then_fills_then_flags() {
        let e = runc_entries();
        let mut ext = runc_ext();
        // restore: key -> host path
        ext[0].val = "/sys/fs/cgroup/cpu/x".into();
        let steps = plan(
            &e,
            "/run/r/criu-root",
            &ext,
            ExtPropagation::default(),
            None,
        )
        .unwrap();
        let show: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Mount {
                    source,
                    target,
                    fs,
                    flags,
                    data,
                } => format!(
                    "{source} {target} {} {flags:#x} {}",
                    fs.as_deref().unwrap_or("-"),
                    data.as_deref().unwrap_or("-")
                ),
                Step::Fill { entry, target } => format!("fill {entry} {target}"),
                Step::Attach {
                    source,
                    target,
                    keep,
                } => format!("attach {source} {target} keep={keep}"),
            })
            .collect();
        insta::assert_snapshot!(show.join("\n"));
        // remounts (read-only …) come after every mount and fill, and no
        // tmpfs is mounted read-only before its files are in
        let remount =
            |s: &Step| matches!(s, Step::Mount { flags, .. } if flags & libc::MS_REMOUNT != 0);
        let first = steps.iter().position(remount).unwrap();
        assert!(steps[first..].iter().all(remount));
        assert!(steps.iter().all(|s| !matches!(s,
            Step::Mount { fs: Some(fs), flags, .. } if fs == "tmpfs" && flags & libc::MS_RDONLY != 0)));
        let missing = plan(&e, "/r", &[], ExtPropagation::default(), None)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("/proc/keys") && missing.contains("/dev/null"),
            "{missing}"
        );
    }

    #[test]
    fn restore_needs_root_and_keys() {
        let e = runc_entries();
        let mut i = Images {
            mounts: e,
            dir: PathBuf::from("/nonexistent"),
            root: None,
            ext: Vec::new(),
            prop: ExtPropagation::default(),
        };
        let why = i.configure(None, &runc_ext()).unwrap_err().to_string();
        assert!(why.contains("--root"), "{why}");
        let why = i
            .configure(Some(Path::new("/")), &runc_ext())
            .unwrap_err()
            .to_string();
        assert!(why.contains("--root"), "{why}");
        let why = i
            .configure(Some(Path::new("/tmp")), &runc_ext()[1..])
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("/sys/fs/cgroup/cpu") && why.contains("mnt[/sys/fs/cgroup/cpu]"),
            "{why}"
        );
        i.configure(Some(Path::new("/tmp")), &runc_ext()).unwrap();
        assert_eq!(i.root.as_deref(), Some(Path::new("/tmp")));
    }

    #[test]
    fn external_options() {
        assert_eq!(
            ExtMount::from_external("mnt[/a/b]:k:x"),
            Some(Ok(ExtMount {
                key: "/a/b".into(),
                val: "k:x".into()
            }))
        );
        assert_eq!(ExtMount::from_external("veth[a]:b"), None);
        assert!(ExtMount::from_external("mnt[]:x").unwrap().is_err());
        assert!(ExtMount::from_external("mnt[a]").unwrap().is_err());
        assert_eq!(
            ExtMount::from_map("/a:k"),
            Ok(ExtMount {
                key: "/a".into(),
                val: "k".into()
            })
        );
        assert!(ExtMount::from_map("/a").is_err());
    }

    fn show_props(p: &[Prop]) -> Vec<String> {
        p.iter()
            .map(|p| match p {
                Prop::Make { target, flag } => {
                    let f = match *flag {
                        libc::MS_SHARED => "shared",
                        libc::MS_SLAVE => "slave",
                        libc::MS_UNBINDABLE => "unbindable",
                        _ => "?",
                    };
                    format!("{f} {target}")
                }
                Prop::SetGroup { from, to } => format!("join {to} to {from}"),
            })
            .collect()
    }

    const PROP_NS: &str = "\
99 98 254:0 / / rw - ext4 /dev/vda rw
100 99 0:21 / /proc rw - proc proc rw
110 99 0:60 / /m rw shared:5 - tmpfs t rw
111 99 0:60 / /p rw shared:5 - tmpfs t rw
112 99 0:60 / /s rw master:5 - tmpfs t rw
117 99 0:60 /x /q rw shared:7 master:5 - tmpfs t rw
118 99 0:60 /x/y /r rw shared:7 master:5 - tmpfs t rw
113 110 0:61 / /m/pre rw shared:6 - tmpfs t rw
114 111 0:61 / /p/pre rw shared:6 - tmpfs t rw
115 112 0:61 / /s/pre rw master:6 - tmpfs t rw
116 99 0:62 / /u rw unbindable - tmpfs t rw
";

    #[test]
    fn propagation_peers_slaves_unbindable() {
        let e = entries(1, &mi(PROP_NS), &mi(HOST), &[], ExtPropagation::default()).unwrap();
        let m = e.iter().find(|m| m.mountpoint == "/q").unwrap();
        assert_eq!((m.shared_id, m.master_id), (Some(7), Some(5)));
        let u = e.iter().find(|m| m.mountpoint == "/u").unwrap();
        assert_eq!(u.flags & PROPAGATION, libc::MS_UNBINDABLE as u32);
        assert_eq!(u.shared_id, None);
        assert_eq!(
            show_props(&propagation(&e, ExtPropagation::default()).unwrap()),
            [
                "shared /m",
                "join /p to /m",
                "join /q to /m",
                "slave /q",
                "shared /q",
                "join /r to /q",
                "shared /m/pre",
                "join /p/pre to /m/pre",
                "join /s to /m",
                "slave /s",
                "join /s/pre to /m/pre",
                "slave /s/pre",
                "unbindable /u",
            ]
        );
        // unbindable is no per-mount flag of the remounts
        let steps = plan(&e, "", &[], ExtPropagation::default(), None).unwrap();
        assert!(steps.iter().all(|s| !matches!(s,
            Step::Mount { flags, .. } if *flags & u64::from(PROPAGATION) != 0)));
    }

    #[test]
    fn propagation_refusals_name_the_mount() {
        let why = |ns: &str| {
            entries(1, &mi(ns), &mi(HOST), &[], ExtPropagation::default())
                .unwrap_err()
                .to_string()
        };
        let base = "99 98 254:0 / / rw - ext4 /dev/vda rw\n";
        let outside = format!("{base}110 99 0:60 / /s rw master:9 - tmpfs t rw\n");
        let w = why(&outside);
        assert!(w.contains("/s") && w.contains("ext-masters"), "{w}");
        // the slave's root is not below its master's
        let wide = format!("{base}110 99 0:60 /a /m rw shared:5 - tmpfs t rw\n111 99 0:60 / /s rw master:5 - tmpfs t rw\n");
        let w = why(&wide);
        assert!(w.contains("/s") && w.contains("/m"), "{w}");
        // two peers, neither holding the other's root
        let apart = format!("{base}110 99 0:60 /a /m rw shared:5 - tmpfs t rw\n111 99 0:60 /b /p rw shared:5 - tmpfs t rw\n");
        let w = why(&apart);
        assert!(w.contains("peer group 5") && w.contains("/p"), "{w}");
        let stacked = format!(
            "{base}110 99 0:60 / /m rw shared:5 - tmpfs t rw\n111 110 0:61 / /m rw - tmpfs t rw\n"
        );
        let w = why(&stacked);
        assert!(w.contains("/m") && w.contains("on top"), "{w}");
    }

    #[test]
    fn tree_order_refuses_a_forest() {
        let two = "1 0 0:1 / / rw - tmpfs t rw\n2 9 0:2 / /x rw - tmpfs t rw\n";
        assert_eq!(tree_order(&mi(two)), None);
        let chain = "3 2 0:3 / /a/b rw - tmpfs t rw\n2 1 0:2 / /a rw - tmpfs t rw\n1 0 0:1 / / rw - tmpfs t rw\n";
        assert_eq!(tree_order(&mi(chain)), Some(vec![2, 1, 0]));
    }

    #[test]
    fn special_files_unpack() {
        let src = tempfile::tempdir().unwrap();
        let fifo = src.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
        std::fs::write(src.path().join("f"), b"x").unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let dev = std::fs::metadata(src.path()).unwrap().dev();
        tar_tree(&mut tar, src.path(), Path::new("."), dev).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_size(0);
        tar.append_data(&mut h, "null", std::io::empty()).unwrap();
        let bytes = tar.into_inner().unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(&mut tar::Archive::new(&bytes[..]), dst.path()).unwrap();
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let p = std::fs::symlink_metadata(dst.path().join("p")).unwrap();
        assert!(p.file_type().is_fifo());
        assert_eq!(p.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read(dst.path().join("f")).unwrap(), b"x");
        // device nodes need CAP_MKNOD (tests run as root here)
        if nix::unistd::geteuid().is_root() {
            let n = std::fs::symlink_metadata(dst.path().join("null")).unwrap();
            assert!(n.file_type().is_char_device());
            assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
        }
    }

    #[test]
    fn paths_of_a_task_in_criu_namespace_are_criu_paths() {
        let me = std::process::id() as i32;
        let st = stat_in_ns_of(me, "/").unwrap();
        assert_eq!(st.st_ino, nix::sys::stat::stat("/").unwrap().st_ino);
        let why = stat_in_ns_of(me, "/nonexistent/x").unwrap_err().to_string();
        assert!(why.contains("/nonexistent/x"), "{why}");
    }

    #[test]
    fn tmpfs_archive_round_trip() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("a/b/f", src.path().join("l")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        let dev = std::fs::metadata(src.path()).unwrap().dev();
        tar_tree(&mut tar, src.path(), Path::new("."), dev).unwrap();
        let bytes = tar.into_inner().unwrap();
        let dst = tempfile::tempdir().unwrap();
        tar::Archive::new(&bytes[..]).unpack(dst.path()).unwrap();
        assert_eq!(std::fs::read(dst.path().join("a/b/f")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(dst.path().join("l")).unwrap(),
            Path::new("a/b/f")
        );
    }
}
