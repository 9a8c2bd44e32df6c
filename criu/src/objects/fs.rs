//! The task's filesystem context (`fs_entry`): cwd, root, umask.

use crate::image::pb;
use crate::proc;
use crate::remote::Tracee;

use super::files::FileTable;
use super::{read_proc_link, Error, Result};

/// Dump half.
pub fn dump(pid: i32, files: &mut FileTable) -> Result<pb::FsEntry> {
    let cwd = read_proc_link(pid, "cwd")?;
    let root = read_proc_link(pid, "root")?;
    if cwd.ends_with(" (deleted)") {
        return Err(Error::Unsupported {
            pid,
            what: format!("the working directory {cwd} was removed"),
        });
    }
    let umask = proc::read_status(pid)?.umask;
    Ok(pb::FsEntry {
        cwd_id: files.by_path(pid, &cwd)?,
        root_id: files.by_path(pid, &root)?,
        umask,
    })
}

fn path_of(files: &[pb::FileEntry], id: u32) -> Result<&str> {
    files
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| f.reg.as_ref())
        .map(|r| r.name.as_str())
        .ok_or_else(|| Error::Mismatch {
            what: format!("fs entry refers to file id {id}, which files.img does not have"),
        })
}

/// Restore half: chdir, chroot (when not /), umask. Both paths are from
/// the top of the mount namespace (as /proc shows them to criu), so the
/// working directory is entered before the root moves.
pub fn restore(
    t: &mut Tracee,
    e: &pb::FsEntry,
    files: &[pb::FileEntry],
    scratch_off: u64,
) -> Result<()> {
    let put = |t: &mut Tracee, s: &str| {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        t.scratch_put(scratch_off, &b)
    };
    let cwd = path_of(files, e.cwd_id)?;
    let a = put(t, cwd)?;
    t.syscall(libc::SYS_chdir, &[a])?;
    let root = path_of(files, e.root_id)?;
    if root != "/" {
        let a = put(t, root)?;
        t.syscall(libc::SYS_chroot, &[a])?;
    }
    if let Some(umask) = e.umask {
        t.syscall(libc::SYS_umask, &[u64::from(umask)])?;
    }
    Ok(())
}
