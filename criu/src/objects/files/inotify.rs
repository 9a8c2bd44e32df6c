//! inotify: `inotify_file_entry` with one `inotify_wd_entry` per watch
//! (inode, mask, watch number and the file handle of the watched inode,
//! with the path it resolves to at dump time). At restore each watch is
//! added again by path (or, failing that, through the handle) and made to
//! get its old watch number.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::image::pb;
use crate::proc::{self, Dev};
use crate::sys;

use super::super::{Error, Result};
use super::no_owner;

/// `fh_entry.handle` has at least this many words.
const FH_MIN_WORDS: usize = 16;

/// The handle bytes packed into little-endian u64 words, padded.
pub fn pack_handle(bytes: &[u8]) -> Vec<u64> {
    let mut words: Vec<u64> = bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    if words.len() < FH_MIN_WORDS {
        words.resize(FH_MIN_WORDS, 0);
    }
    words
}

/// The first `n` handle bytes out of its words.
pub fn unpack_handle(words: &[u64], n: usize) -> Vec<u8> {
    let mut out: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.truncate(n);
    out
}

/// The kernel-internal encoding of `dev`, as fdinfo prints it.
pub fn kernel_dev(dev: Dev) -> u32 {
    (dev.major << 20) | (dev.minor & 0xfffff)
}

/// The path of the inode behind a handle on the filesystem `dev`, through
/// any mount of it that criu sees.
pub fn resolve_handle(dev: Dev, h: &proc::FsHandle) -> Option<String> {
    let mounts = proc::read_mountinfo(std::process::id() as i32).ok()?;
    for m in mounts.iter().filter(|m| m.dev == dev) {
        let Ok(mfd) = nix::fcntl::open(
            &m.mount_point,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(f) = sys::events::open_by_handle_at(
            &mfd,
            h.handle_type,
            &h.bytes,
            libc::O_PATH | libc::O_CLOEXEC,
        ) else {
            continue;
        };
        if let Ok(p) = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&f)
        )) {
            let p = p.to_string_lossy().into_owned();
            if p.starts_with('/') && !p.ends_with(" (deleted)") {
                return Some(p);
            }
        }
    }
    None
}

/// Dump half.
pub fn dump(pid: i32, fd: i32, id: u32, info: &proc::Fdinfo) -> Result<pb::InotifyFileEntry> {
    let mut wds = Vec::with_capacity(info.inotify.len());
    for w in &info.inotify {
        let h = w.fhandle.as_ref().ok_or_else(|| Error::Unsupported {
            pid,
            what: format!(
                "fd {fd}: inotify watch {} is on a filesystem without file handles",
                w.wd
            ),
        })?;
        let path = resolve_handle(w.dev, h).ok_or_else(|| Error::Unsupported {
            pid,
            what: format!(
                "fd {fd}: inotify watch {} (inode {} on {}:{}) has no path criu can reach",
                w.wd, w.ino, w.dev.major, w.dev.minor
            ),
        })?;
        wds.push(pb::InotifyWdEntry {
            // Upstream leaves this 0 for watches kept inside the file entry.
            id: 0,
            i_ino: w.ino,
            mask: w.mask,
            ignored_mask: w.ignored_mask,
            s_dev: kernel_dev(w.dev),
            wd: w.wd as u32,
            f_handle: pb::FhEntry {
                bytes: h.bytes.len() as u32,
                r#type: h.handle_type as u32,
                handle: pack_handle(&h.bytes),
                path: Some(path),
                mnt_id: None,
            },
        });
    }
    Ok(pb::InotifyFileEntry {
        id,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
        wd: wds,
    })
}

/// Restore half.
pub fn open(e: &pb::InotifyFileEntry) -> Result<OwnedFd> {
    let err = |what: String, errno| Error::Mismatch {
        what: format!("inotify id {}: {what}: {errno}", e.id),
    };
    let fd =
        sys::events::inotify_init(libc::IN_CLOEXEC).map_err(|er| err("inotify_init".into(), er))?;
    for w in &e.wd {
        let path = match &w.f_handle.path {
            Some(p) => p.clone(),
            None => {
                let dev = Dev::from_kernel(w.s_dev);
                let h = proc::FsHandle {
                    handle_type: w.f_handle.r#type as i32,
                    bytes: unpack_handle(&w.f_handle.handle, w.f_handle.bytes as usize),
                };
                resolve_handle(dev, &h).ok_or_else(|| Error::Mismatch {
                    what: format!("inotify id {}: watch {} has no path", e.id, w.wd),
                })?
            }
        };
        // Watch numbers are handed out in order: add and drop until the
        // old one comes up.
        let mut tries = 0u32;
        loop {
            let got = sys::events::inotify_add_watch(&fd, &path, w.mask)
                .map_err(|er| err(format!("watching {path}"), er))?;
            if got as u32 == w.wd {
                break;
            }
            tries += 1;
            if got as u32 > w.wd || tries > 1 << 16 {
                return Err(Error::Mismatch {
                    what: format!(
                        "inotify id {}: watch on {path} came up as {got}, wanted {}",
                        e.id, w.wd
                    ),
                });
            }
            sys::events::inotify_rm_watch(&fd, got)
                .map_err(|er| err(format!("dropping watch {got}"), er))?;
        }
    }
    super::pipe::set_flags(fd.as_fd(), e.flags, &format!("inotify id {}", e.id))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn handle_words_match_upstream_layout() {
        let w = pack_handle(&[0xa7, 0xc4, 0x03, 0, 0, 0, 0, 0]);
        assert_eq!(w.len(), 16);
        assert_eq!(w[0], 246_951);
        assert_eq!(unpack_handle(&w, 8), vec![0xa7, 0xc4, 0x03, 0, 0, 0, 0, 0]);
        let long: Vec<u8> = (1..=20).collect();
        assert_eq!(unpack_handle(&pack_handle(&long), 20), long);
        assert_eq!(kernel_dev(Dev::from_kernel(0x0fe0_0001)), 0x0fe0_0001);
    }

    #[test]
    fn watches_survive_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let me = std::process::id() as i32;
        let fd = sys::events::inotify_init(libc::IN_NONBLOCK | libc::IN_CLOEXEC).unwrap();
        let p = dir.path().to_str().unwrap();
        let w1 = sys::events::inotify_add_watch(&fd, p, libc::IN_CREATE).unwrap();
        let w2 = sys::events::inotify_add_watch(&fd, a.to_str().unwrap(), libc::IN_DELETE).unwrap();
        sys::events::inotify_rm_watch(&fd, w1).unwrap();
        let info = proc::read_fdinfo(me, fd.as_raw_fd()).unwrap();
        let e = dump(me, fd.as_raw_fd(), 1, &info).unwrap();
        assert_eq!(e.wd.len(), 1);
        assert_eq!(e.wd[0].f_handle.path.as_deref(), a.to_str());
        let back = open(&e).unwrap();
        let info2 = proc::read_fdinfo(me, back.as_raw_fd()).unwrap();
        assert_eq!(info2.inotify.len(), 1);
        assert_eq!(info2.inotify[0].wd, w2);
        assert_eq!(info2.inotify[0].mask & libc::IN_ALL_EVENTS, libc::IN_DELETE);
    }
}
