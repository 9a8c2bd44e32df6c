//! Regular files (and directories, character and block devices opened by
//! path): `reg_file_entry`.

use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;

use crate::image::pb;
use crate::proc;

use super::super::{Error, Result};
use super::no_owner;

fn stat_entry(st: &FileStat) -> (Option<u64>, Option<u32>) {
    let size = (st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64);
    (size, Some(st.st_mode))
}

/// Dump half for an fd: the file, its offset and open flags.
pub fn dump(
    _pid: i32,
    _fd: i32,
    id: u32,
    path: &str,
    info: &proc::Fdinfo,
    st: &FileStat,
) -> Result<pb::RegFileEntry> {
    let (size, mode) = stat_entry(st);
    Ok(pb::RegFileEntry {
        id,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        pos: info.pos,
        fown: no_owner(),
        name: path.to_string(),
        size,
        mode,
        ..Default::default()
    })
}

/// Dump half for a file known only by path (exe, mapping, cwd, root).
pub fn for_path(pid: i32, id: u32, path: &str) -> Result<pb::RegFileEntry> {
    let st = crate::objects::ns::mnt::stat_in_ns_of(pid, path)?;
    let (size, mode) = stat_entry(&st);
    Ok(pb::RegFileEntry {
        id,
        flags: 0,
        pos: 0,
        fown: no_owner(),
        name: path.to_string(),
        size,
        mode,
        ..Default::default()
    })
}

/// Refuses a file that is no longer what was dumped.
pub fn check_unchanged(e: &pb::RegFileEntry) -> Result<()> {
    let st =
        crate::objects::ns::mnt::open_in_tree(e.name.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC)
            .and_then(nix::sys::stat::fstat)
            .map_err(|errno| Error::Mismatch {
                what: format!("file {} (id {}) cannot be found: {errno}", e.name, e.id),
            })?;
    if let Some(size) = e.size {
        if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size as u64 != size {
            return Err(Error::Mismatch {
                what: format!(
                    "file {} (id {}) changed size since the dump: {} bytes then, {} now",
                    e.name, e.id, size, st.st_size
                ),
            });
        }
    }
    Ok(())
}

/// Restore half: opens the file again with its flags, at its offset.
pub fn open(e: &pb::RegFileEntry) -> Result<OwnedFd> {
    check_unchanged(e)?;
    let creation = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
    let flags = OFlag::from_bits_retain(e.flags as i32 & !creation) | OFlag::O_CLOEXEC;
    let fd = crate::objects::ns::mnt::open_in_tree(e.name.as_str(), flags).map_err(|errno| {
        Error::Mismatch {
            what: format!("cannot open {} (id {}): {errno}", e.name, e.id),
        }
    })?;
    if e.pos != 0 {
        nix::unistd::lseek(&fd, e.pos as i64, nix::unistd::Whence::SeekSet).map_err(|errno| {
            Error::Mismatch {
                what: format!("cannot seek {} to {}: {errno}", e.name, e.pos),
            }
        })?;
    }
    Ok(fd)
}
