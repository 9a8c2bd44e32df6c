//! File descriptors: the fd table of a task (`fdinfo-*.img`) and the open
//! files behind it (`files.img`), one module per kind of file.

pub mod inet;
pub mod reg;
pub mod sk_diag;
pub mod sk_queue;
pub mod socket;
pub mod sockopt;
pub mod tcp;
pub mod unix;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::image::{self, magic, pb};
use crate::proc;
use crate::sys;

use super::{read_proc_link, Error, IdGen, Result};

/// Every open file of a dump, each one entry of `files.img`.
#[derive(Debug, Default)]
pub struct FileTable {
    ids: IdGen,
    pub entries: Vec<pb::FileEntry>,
    /// Files named by path only (mapped files, exe, cwd, root).
    by_path: HashMap<String, u32>,
    /// One open file description seen through an fd: (pid, fd, id).
    described: Vec<(i32, i32, u32)>,
    /// Socket state of the whole dump (sock_diag, queues, TCP streams).
    pub sk: socket::SkDump,
}

impl FileTable {
    /// The id of a file criu only needs to find again by its path: the
    /// executable, mapped files, cwd and root.
    pub fn by_path(&mut self, pid: i32, path: &str) -> Result<u32> {
        if let Some(&id) = self.by_path.get(path) {
            return Ok(id);
        }
        let id = self.ids.next_id();
        let reg = reg::for_path(pid, id, path)?;
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id,
            reg: Some(reg),
            ..Default::default()
        });
        self.by_path.insert(path.to_string(), id);
        Ok(id)
    }

    /// Dumps the fd table of `pid` (whose fds criu can fetch through
    /// `pidfd`): one fdinfo entry per descriptor, one file entry per open
    /// file description.
    pub fn dump_fds(&mut self, pid: i32, pidfd: &OwnedFd) -> Result<Vec<pb::FdinfoEntry>> {
        let dir = format!("/proc/{pid}/fd");
        let rd = std::fs::read_dir(&dir).map_err(|source| Error::Io {
            pid,
            what: format!("listing {dir}"),
            source,
        })?;
        let mut fds: Vec<i32> = rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        let mut out = Vec::with_capacity(fds.len());
        for fd in fds {
            let info = proc::read_fdinfo(pid, fd)?;
            let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
            let id = match self.same_as_seen(pid, fd)? {
                Some(id) => id,
                None => {
                    let file = sys::pidfd::pidfd_getfd(pidfd, fd).map_err(|errno| Error::Sys {
                        pid,
                        what: format!("pidfd_getfd of fd {fd}"),
                        errno,
                    })?;
                    let id = self.ids.next_id();
                    let entry = dump_one(pid, fd, id, &info, file.as_fd(), &mut self.sk)?;
                    self.entries.push(entry);
                    self.described.push((pid, fd, id));
                    id
                }
            };
            let kind = self
                .entries
                .iter()
                .find(|e| e.id == id)
                .map_or(pb::FdTypes::Reg as i32, |e| e.r#type);
            out.push(pb::FdinfoEntry {
                id,
                flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
                r#type: kind,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
        }
        Ok(out)
    }

    /// The id of an open file description already dumped that `fd` of
    /// `pid` also refers to.
    fn same_as_seen(&self, pid: i32, fd: i32) -> Result<Option<u32>> {
        for &(p, f, id) in &self.described {
            match sys::kcmp::same_file(p, f, pid, fd) {
                Ok(true) => return Ok(Some(id)),
                Ok(false) => {}
                Err(errno) => {
                    return Err(Error::Sys {
                        pid,
                        what: format!("kcmp of fd {fd} with fd {f} of pid {p}"),
                        errno,
                    })
                }
            }
        }
        Ok(None)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        self.sk.write(dir)?;
        image::write_image(dir, "files.img", magic::FILES, &self.entries)?;
        Ok(())
    }
}

/// Dumps one open file description, fetched into criu as `file`.
fn dump_one(
    pid: i32,
    fd: i32,
    id: u32,
    info: &proc::Fdinfo,
    file: std::os::fd::BorrowedFd<'_>,
    sk: &mut socket::SkDump,
) -> Result<pb::FileEntry> {
    let st = nix::sys::stat::fstat(file).map_err(|errno| Error::Sys {
        pid,
        what: format!("fstat of fd {fd}"),
        errno,
    })?;
    let link = read_proc_link(pid, &format!("fd/{fd}"))?;
    let fmt = st.st_mode & libc::S_IFMT;
    let unsupported = |kind: &str| Error::Unsupported {
        pid,
        what: format!("fd {fd} ({link}) is {kind}, which criu-rs cannot dump yet"),
    };
    match fmt {
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK => {
            if link.ends_with(" (deleted)") {
                return Err(unsupported("an unlinked file"));
            }
            if !link.starts_with('/') {
                return Err(unsupported("an anonymous inode"));
            }
            let reg = reg::dump(pid, fd, id, &link, info, &st)?;
            Ok(pb::FileEntry {
                r#type: pb::FdTypes::Reg as i32,
                id,
                reg: Some(reg),
                ..Default::default()
            })
        }
        libc::S_IFIFO => Err(unsupported("a pipe or fifo")),
        libc::S_IFSOCK => socket::dump(sk, pid, fd, id, info.flags, file, st.st_ino as u32),
        _ => Err(unsupported("a file of an unknown kind")),
    }
}

/// Files opened in criu for restore, by image id: each open file
/// description is made once and handed to every fd that shares it.
#[derive(Debug, Default)]
pub struct Opened {
    files: HashMap<u32, OwnedFd>,
    /// Sockets: the images directory and their queued data.
    sk: socket::SkRestore,
}

impl Opened {
    /// For a restore from the images in `dir`.
    pub fn new(dir: &Path) -> Self {
        Opened {
            files: HashMap::new(),
            sk: socket::SkRestore::new(dir),
        }
    }

    /// The file of image id `id`, made on first use.
    pub fn get(&mut self, files: &[pb::FileEntry], id: u32) -> Result<&OwnedFd> {
        if !self.files.contains_key(&id) {
            let entry = files
                .iter()
                .find(|e| e.id == id)
                .ok_or_else(|| Error::Mismatch {
                    what: format!("files.img has no file with id {id}"),
                })?;
            let fd = match (pb::FdTypes::try_from(entry.r#type), &entry.reg) {
                (Ok(pb::FdTypes::Reg), Some(reg)) => reg::open(reg)?,
                _ if socket::handles(entry.r#type) => {
                    socket::open(&mut self.sk, files, entry, &mut self.files)?;
                    return self.files.get(&id).ok_or_else(|| Error::Mismatch {
                        what: format!("socket id {id} was not made"),
                    });
                }
                _ => {
                    return Err(Error::Mismatch {
                        what: format!(
                            "file id {id} is of type {} which criu-rs cannot restore yet",
                            entry.r#type
                        ),
                    })
                }
            };
            self.files.insert(id, fd);
        }
        self.files.get(&id).ok_or_else(|| Error::Mismatch {
            what: format!("file id {id} vanished"),
        })
    }
}
