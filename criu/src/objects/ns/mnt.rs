//! Mount namespaces, for the shape zdtm's namespaces have: the mounts of
//! criu's own namespace (inherited when the namespace was made, made
//! private), plus fresh proc mounts on top. `mountpoints-ID.img` lists every
//! mount; those found in criu's namespace are marked external (`ext_mount`)
//! and come back by copying criu's namespace (the root puppet is born with
//! `CLONE_NEWNS`), the proc mounts are made again inside it. Any other
//! mount, or a mount of criu's the tree has not, is refused at dump.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::proc::{self, MountInfo};
use crate::remote::Tracee;

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

/// The image entries of `theirs` (a tree's mounts) against `ours` (criu's),
/// or why they cannot be restored.
pub fn entries(pid: i32, theirs: &[MountInfo], ours: &[MountInfo]) -> Result<Vec<pb::MntEntry>> {
    let mut out = Vec::with_capacity(theirs.len());
    for m in theirs {
        let inherited = ours.iter().any(|o| same_mount(o, m));
        if !inherited && m.fs_type != "proc" {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "its mount namespace has a {} mount at {} (source {:?}) that criu's has not; only fresh proc mounts can be restored yet",
                    m.fs_type,
                    m.mount_point.display(),
                    m.source
                ),
            });
        }
        if m.shared().is_some() || m.master().is_some() {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "the mount at {} is shared or a slave; only private mounts can be restored yet",
                    m.mount_point.display()
                ),
            });
        }
        let code = fstype_code(&m.fs_type);
        out.push(pb::MntEntry {
            fstype: code as u32,
            mnt_id: m.mnt_id as u32,
            root_dev: (m.dev.major << 20) | m.dev.minor,
            parent_mnt_id: m.parent_id as u32,
            flags: mount_flags(&m.options),
            root: m.root.to_string_lossy().into_owned(),
            mountpoint: m.mount_point.to_string_lossy().into_owned(),
            source: m.source.to_string_lossy().into_owned(),
            options: m.super_options.clone(),
            fsname: (code == pb::Fstype::Auto).then(|| m.fs_type.clone()),
            ext_mount: inherited.then_some(true),
            ..Default::default()
        });
    }
    for o in ours {
        if !theirs.iter().any(|m| same_mount(o, m)) {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "criu's mount namespace has a {} mount at {} that the tree's has not; it cannot be taken away yet",
                    o.fs_type,
                    o.mount_point.display()
                ),
            });
        }
    }
    Ok(out)
}

fn own_mounts() -> Result<Vec<MountInfo>> {
    Ok(proc::read_mountinfo(std::process::id() as i32)?)
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let theirs = proc::read_mountinfo(pid)?;
    let e = entries(pid, &theirs, &own_mounts()?)?;
    image::write_image(dir, &file(id), magic::MNTS, &e)?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Vec<pb::MntEntry>>> {
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    let v: Vec<pb::MntEntry> = image::read_image(dir, &file(id), magic::MNTS)?;
    let ours = own_mounts()?;
    for m in &v {
        if m.ext_mount == Some(true) {
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
        } else if m.fstype != pb::Fstype::Proc as u32 {
            return Err(Error::Unsupported {
                pid: 0,
                what: format!(
                    "{}: mount at {} is not a proc mount; cannot make it yet",
                    file(id),
                    m.mountpoint
                ),
            });
        }
    }
    Ok(Some(v))
}

fn cstr(s: &str) -> Result<Vec<u8>> {
    CString::new(s)
        .map(|c| c.into_bytes_with_nul())
        .map_err(|_| Error::Mismatch {
            what: format!("mount path {s:?} has a NUL byte"),
        })
}

/// Inside the root puppet, born in a copy of criu's mount namespace: every
/// mount private, then the proc mounts made again.
pub fn restore(t: &mut Tracee, mounts: &[pb::MntEntry]) -> Result<()> {
    let root = cstr("/")?;
    let a = t.scratch_put(ARGS_OFF, &root)?;
    t.syscall(
        libc::SYS_mount,
        &[0, a, 0, libc::MS_REC | libc::MS_PRIVATE, 0],
    )?;
    for m in mounts.iter().filter(|m| m.ext_mount != Some(true)) {
        let mut b = cstr("proc")?;
        let fs_at = b.len() as u64;
        b.extend(cstr("proc")?);
        let mp_at = b.len() as u64;
        b.extend(cstr(&m.mountpoint)?);
        let base = t.scratch_put(ARGS_OFF, &b)?;
        let flags = u64::from(m.flags & !(libc::MS_RELATIME as u32));
        t.syscall(
            libc::SYS_mount,
            &[base, base + mp_at, base + fs_at, flags, 0],
        )?;
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
    fn refusals() {
        let extra = "99 98 254:0 / / rw - ext4 /dev/vda rw\n100 99 0:21 / /proc rw - proc proc rw\n102 99 0:60 / /tmp rw - tmpfs tmpfs rw\n";
        assert!(entries(1, &mi(extra), &mi(HOST)).is_err());
        let missing = "99 98 254:0 / / rw - ext4 /dev/vda rw\n";
        assert!(entries(1, &mi(missing), &mi(HOST)).is_err());
        let shared = "99 98 254:0 / / rw shared:1 - ext4 /dev/vda rw\n100 99 0:21 / /proc rw - proc proc rw\n";
        assert!(entries(1, &mi(shared), &mi(HOST)).is_err());
    }
}
