//! Mount namespaces. The root puppet is born with `CLONE_NEWNS`, so its
//! namespace starts as a copy of criu's; `mountpoints-ID.img` lists every
//! mount of the tree's namespace, each of one of these kinds:
//!
//! - **inherited**: the same mount as one of criu's (`ext_mount`): it comes
//!   with the copy;
//! - **fresh**: a filesystem the tree mounted itself (proc, sysfs, tmpfs,
//!   devpts, mqueue), mounted again with its options; a tmpfs's files are
//!   kept in `tmpfs-dev-DEV.tar.gz.img` (CRIU's name and format: a gzipped
//!   tar) and unpacked into it;
//! - **bind**: a directory of an earlier mount of the list (same device,
//!   root below its root), bind-mounted again, then given its flags.
//!
//! Mounts of criu's the tree has not are unmounted from the copy. Other
//! filesystems and shared or slave propagation are refused at dump.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
    /// One of criu's, there in the copy.
    Inherited,
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

/// The image entries of `theirs` (a tree's mounts) against `ours` (criu's),
/// or why they cannot be restored.
pub fn entries(pid: i32, theirs: &[MountInfo], ours: &[MountInfo]) -> Result<Vec<pb::MntEntry>> {
    let mut out: Vec<pb::MntEntry> = Vec::with_capacity(theirs.len());
    for m in theirs {
        if m.shared().is_some() || m.master().is_some() {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "the mount at {} is shared or a slave; only private mounts can be restored yet",
                    m.mount_point.display()
                ),
            });
        }
        let root_dev = (m.dev.major << 20) | m.dev.minor;
        let root = m.root.to_string_lossy().into_owned();
        let inherited = ours.iter().any(|o| same_mount(o, m));
        let bind = bind_source(
            root_dev,
            &root,
            out.iter()
                .enumerate()
                .map(|(i, e)| (i, e.root_dev, e.root.as_str())),
        );
        let fresh = FRESH.contains(&m.fs_type.as_str()) && m.root == Path::new("/");
        if !inherited && bind.is_none() && !fresh {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "its mount namespace has a {} mount at {} (source {:?}, root {}) that is neither criu's, nor one of {FRESH:?}, nor a bind mount of another; it cannot be restored yet",
                    m.fs_type,
                    m.mount_point.display(),
                    m.source,
                    m.root.display()
                ),
            });
        }
        let code = fstype_code(&m.fs_type);
        out.push(pb::MntEntry {
            fstype: code as u32,
            mnt_id: m.mnt_id as u32,
            root_dev,
            parent_mnt_id: m.parent_id as u32,
            flags: mount_flags(&m.options),
            root,
            mountpoint: m.mount_point.to_string_lossy().into_owned(),
            source: m.source.to_string_lossy().into_owned(),
            options: m.super_options.clone(),
            fsname: (code == pb::Fstype::Auto).then(|| m.fs_type.clone()),
            ext_mount: inherited.then_some(true),
            ..Default::default()
        });
    }
    Ok(out)
}

/// How each entry comes back (see [`Origin`]), in order.
pub fn origins(mounts: &[pb::MntEntry]) -> Vec<Origin> {
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        out.push(if m.ext_mount == Some(true) {
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
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&md);
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
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
fn dump_tmpfs(pid: i32, mp: &str, dev: u32, dir: &Path) -> Result<()> {
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
    super::in_ns(pid, &[super::Kind::Mnt], || {
        let gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(out),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        let top = Path::new(mp);
        let dev_here = std::fs::metadata(top).map_err(io)?.dev();
        tar_tree(&mut tar, top, Path::new("."), dev_here).map_err(io)?;
        let gz = tar.into_inner().map_err(io)?;
        let mut w = gz.finish().map_err(io)?;
        std::io::Write::flush(&mut w).map_err(io)
    })
}

fn own_mounts() -> Result<Vec<MountInfo>> {
    Ok(proc::read_mountinfo(std::process::id() as i32)?)
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let theirs = proc::read_mountinfo(pid)?;
    let e = entries(pid, &theirs, &own_mounts()?)?;
    for (m, o) in e.iter().zip(origins(&e)) {
        if o == Origin::Fresh && m.fstype == pb::Fstype::Tmpfs as u32 {
            dump_tmpfs(pid, &m.mountpoint, m.root_dev, dir)?;
        }
    }
    image::write_image(dir, &file(id), magic::MNTS, &e)?;
    Ok(())
}

/// What the images say of a mount namespace.
#[derive(Debug, Clone)]
pub struct Images {
    pub mounts: Vec<pb::MntEntry>,
    /// Where the tmpfs archives are.
    pub dir: PathBuf,
}

/// The filesystem type name of a fresh mount.
fn fs_name(m: &pb::MntEntry) -> Option<&'static str> {
    let code = pb::Fstype::try_from(m.fstype as i32).ok()?;
    FRESH.iter().copied().find(|f| fstype_code(f) == code)
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Images>> {
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
                        m.fstype,
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
    t.syscall(
        libc::SYS_mount,
        &[
            base,
            base + target_at,
            opt(fs.is_some(), fs_at),
            flags,
            opt(data.is_some(), data_at),
        ],
    )?;
    Ok(())
}

/// Unpacks the files of a tmpfs (its image) into it, from a helper thread
/// inside the puppet's mount namespace.
fn restore_tmpfs(
    pid: i32,
    m: &pb::MntEntry,
    dir: &Path,
    user: Option<&pb::UsernsEntry>,
) -> Result<()> {
    let file = dir.join(tmpfs_file(m.root_dev));
    let io = |source: std::io::Error| Error::Io {
        pid,
        what: format!(
            "unpacking {} into the tmpfs at {}",
            file.display(),
            m.mountpoint
        ),
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
        tar.unpack(&m.mountpoint).map_err(io)
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

/// Inside the root puppet `t`, born in a copy of criu's mount namespace:
/// every mount made private, criu's mounts the tree has not taken away,
/// then the tree's own mounts made in order.
pub fn restore(t: &mut Tracee, i: &Images, user: Option<&pb::UsernsEntry>) -> Result<()> {
    let mounts = &i.mounts;
    remote_mount(t, "", "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    let mut gone: Vec<MountInfo> = own_mounts()?
        .into_iter()
        .filter(|o| {
            !mounts.iter().any(|m| {
                m.ext_mount == Some(true)
                    && o.mount_point.as_os_str().as_bytes() == m.mountpoint.as_bytes()
                    && o.root.as_os_str().as_bytes() == m.root.as_bytes()
            })
        })
        .collect();
    // the deepest first
    gone.sort_by_key(|o| std::cmp::Reverse(o.mount_point.components().count()));
    for o in gone {
        let mp = cstr(&o.mount_point.to_string_lossy())?;
        let a = t.scratch_put(ARGS_OFF, &mp)?;
        t.syscall(libc::SYS_umount2, &[a, libc::MNT_DETACH as u64])?;
    }
    let relatime = libc::MS_RELATIME as u32;
    for (m, o) in mounts.iter().zip(origins(mounts)) {
        let flags = u64::from(m.flags & !relatime);
        match o {
            Origin::Inherited => {}
            Origin::Fresh => {
                let fs = fs_name(m).unwrap_or("none");
                let opts = options_inside(&m.options, user);
                remote_mount(t, &m.source, &m.mountpoint, Some(fs), flags, Some(&opts))?;
                if fs == "tmpfs" {
                    restore_tmpfs(t.pid(), m, &i.dir, user)?;
                }
            }
            Origin::Bind(src) => {
                let s = &mounts[src];
                let below = Path::new(&m.root)
                    .strip_prefix(&s.root)
                    .unwrap_or(Path::new(""));
                let from = Path::new(&s.mountpoint).join(below);
                remote_mount(
                    t,
                    &from.to_string_lossy(),
                    &m.mountpoint,
                    None,
                    libc::MS_BIND,
                    None,
                )?;
                if flags != 0 {
                    remote_mount(
                        t,
                        "",
                        &m.mountpoint,
                        None,
                        libc::MS_REMOUNT | libc::MS_BIND | flags,
                        None,
                    )?;
                }
            }
        }
    }
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
        let e = entries(1, &mi(ns), &mi(HOST)).unwrap();
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
        let e = entries(1, &mi(ns), &mi(HOST)).unwrap();
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
        let why = entries(1, &mi(other_fs), &mi(HOST))
            .unwrap_err()
            .to_string();
        assert!(why.contains("/x") && why.contains("fuse.sshfs"), "{why}");
        let shared = "99 98 254:0 / / rw shared:1 - ext4 /dev/vda rw\n100 99 0:21 / /proc rw - proc proc rw\n";
        assert!(entries(1, &mi(shared), &mi(HOST)).is_err());
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
