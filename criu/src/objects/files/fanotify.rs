//! fanotify groups: their `fanotify_init` flags and their marks on inodes
//! (found again by file handle) and on mounts (by mount point), in
//! upstream's `fanotify_file_entry`. Marks on whole filesystems are
//! refused by name (upstream's format has no place for them).

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::image::pb;
use crate::proc::{self, FanotifyMarkTarget};
use crate::sys;

use super::super::{Error, Result};
use super::inotify::{kernel_dev, pack_handle, resolve_handle, unpack_handle};
use super::no_owner;

const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;

fn mask32(pid: i32, fd: i32, what: &str, m: u64) -> Result<u32> {
    u32::try_from(m).map_err(|_| Error::Unsupported {
        pid,
        what: format!("fd {fd}: a fanotify {what} {m:#x} does not fit the image's 32 bits"),
    })
}

/// The entry of fanotify group `fd` of `pid`.
pub fn dump(pid: i32, fd: i32, id: u32, info: &proc::Fdinfo) -> Result<pb::FanotifyFileEntry> {
    let fa = info.fanotify.ok_or_else(|| Error::Unsupported {
        pid,
        what: format!("fd {fd} is a fanotify group whose fdinfo has no flags line"),
    })?;
    let mut marks = Vec::with_capacity(info.fanotify_marks.len());
    for m in &info.fanotify_marks {
        let mask = mask32(pid, fd, "mask", m.mask)?;
        let ignored_mask = mask32(pid, fd, "ignored mask", m.ignored_mask)?;
        let mut e = pb::FanotifyMarkEntry {
            id,
            r#type: 0,
            mflags: m.mflags,
            mask,
            ignored_mask,
            s_dev: 0,
            ie: None,
            me: None,
        };
        match &m.target {
            FanotifyMarkTarget::Inode { ino, dev, fhandle } => {
                let h = fhandle.as_ref().ok_or_else(|| Error::Unsupported {
                    pid,
                    what: format!(
                        "fd {fd}: a fanotify mark on inode {ino} is on a filesystem without file handles"
                    ),
                })?;
                let path = resolve_handle(*dev, h).ok_or_else(|| Error::Unsupported {
                    pid,
                    what: format!(
                        "fd {fd}: a fanotify mark on inode {ino} ({}:{}) has no path criu can reach",
                        dev.major, dev.minor
                    ),
                })?;
                e.r#type = pb::MarkType::Inode as i32;
                e.s_dev = kernel_dev(*dev);
                e.ie = Some(pb::FanotifyInodeMarkEntry {
                    i_ino: *ino,
                    f_handle: pb::FhEntry {
                        bytes: h.bytes.len() as u32,
                        r#type: h.handle_type as u32,
                        handle: pack_handle(&h.bytes),
                        path: Some(path),
                        mnt_id: None,
                    },
                });
            }
            FanotifyMarkTarget::Mount { mnt_id } => {
                let mounts = proc::read_mountinfo(pid)?;
                let mnt = mounts
                    .iter()
                    .find(|x| x.mnt_id == *mnt_id)
                    .ok_or_else(|| Error::Unsupported {
                        pid,
                        what: format!(
                            "fd {fd}: a fanotify mark on mount {mnt_id}, which the task's mountinfo lacks"
                        ),
                    })?;
                e.r#type = pb::MarkType::Mount as i32;
                e.s_dev = kernel_dev(mnt.dev);
                let p = mnt.mount_point.to_string_lossy();
                e.me = Some(pb::FanotifyMountMarkEntry {
                    mnt_id: *mnt_id as u32,
                    path: Some(p.trim_start_matches('/').to_string()),
                });
            }
            FanotifyMarkTarget::Filesystem { dev } => {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "fd {fd}: a fanotify mark on a whole filesystem ({}:{}), which criu-rs cannot dump",
                        dev.major, dev.minor
                    ),
                })
            }
        }
        marks.push(e);
    }
    Ok(pb::FanotifyFileEntry {
        id,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
        faflags: fa.flags,
        evflags: fa.event_flags,
        mark: marks,
    })
}

/// Makes group `e` again, its marks added; mount points are looked up
/// under `root` (the restored tree's root directory, as criu reaches it).
pub fn open(e: &pb::FanotifyFileEntry, root: &str) -> Result<OwnedFd> {
    let err = |what: String, errno| Error::Mismatch {
        what: format!("fanotify id {}: {what}: {errno}", e.id),
    };
    let flags = e.faflags | libc::FAN_CLOEXEC;
    let fd = sys::fanotify::init(flags, e.evflags)
        .map_err(|er| err(format!("fanotify_init({flags:#x}, {:#x})", e.evflags), er))?;
    for m in &e.mark {
        let (path, mut flags, _held) = match (pb::MarkType::try_from(m.r#type), &m.ie, &m.me) {
            (Ok(pb::MarkType::Inode), Some(ie), _) => {
                let h = &ie.f_handle;
                let path = match &h.path {
                    Some(p) => p.clone(),
                    None => resolve_handle(
                        proc::Dev::from_kernel(m.s_dev),
                        &proc::FsHandle {
                            handle_type: h.r#type as i32,
                            bytes: unpack_handle(&h.handle, h.bytes as usize),
                        },
                    )
                    .ok_or_else(|| Error::Mismatch {
                        what: format!("fanotify id {}: inode {} has no path", e.id, ie.i_ino),
                    })?,
                };
                (path, FAN_MARK_ADD, None)
            }
            (Ok(pb::MarkType::Mount), _, Some(me)) => {
                let p = format!("{root}/{}", me.path.as_deref().unwrap_or(""));
                let held =
                    nix::fcntl::open(p.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|er| err(format!("opening mount point {p}"), er))?;
                let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&held));
                (path, FAN_MARK_ADD | FAN_MARK_MOUNT, Some(held))
            }
            _ => {
                return Err(Error::Mismatch {
                    what: format!(
                        "fanotify id {}: a mark of type {} without its target",
                        e.id, m.r#type
                    ),
                })
            }
        };
        flags |= m.mflags & !FAN_MARK_IGNORED_SURV_MODIFY;
        if m.mask != 0 {
            sys::fanotify::mark(fd.as_fd(), flags, u64::from(m.mask), &path)
                .map_err(|er| err(format!("marking {path} with {:#x}", m.mask), er))?;
        }
        if m.ignored_mask != 0 {
            let f = flags | FAN_MARK_IGNORED_MASK | (m.mflags & FAN_MARK_IGNORED_SURV_MODIFY);
            sys::fanotify::mark(fd.as_fd(), f, u64::from(m.ignored_mask), &path).map_err(|er| {
                err(
                    format!("marking {path} with ignored mask {:#x}", m.ignored_mask),
                    er,
                )
            })?;
        }
    }
    super::pipe::set_flags(fd.as_fd(), e.flags, &format!("fanotify id {}", e.id))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_filesystem_marks_are_refused_by_name() {
        let info = proc::Fdinfo {
            fanotify: Some(proc::FanotifyInfo {
                flags: 0,
                event_flags: 0,
            }),
            fanotify_marks: vec![proc::FanotifyMark {
                target: FanotifyMarkTarget::Filesystem {
                    dev: proc::Dev { major: 8, minor: 1 },
                },
                mflags: 0,
                mask: 2,
                ignored_mask: 0,
            }],
            ..Default::default()
        };
        let msg = dump(5, 6, 1, &info).expect_err("sb mark").to_string();
        assert!(
            msg.contains("pid 5") && msg.contains("fd 6") && msg.contains("whole filesystem"),
            "{msg}"
        );
    }

    #[test]
    fn wide_masks_are_refused() {
        assert!(mask32(1, 2, "mask", 1 << 40).is_err());
        assert_eq!(mask32(1, 2, "mask", 0x8).expect("fits"), 0x8);
    }
}
