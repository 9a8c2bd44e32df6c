//! File descriptors: the fd table of a task (`fdinfo-*.img`) and the open
//! files behind it (`files.img`), one module per kind of file.

pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fifo;
pub mod fown;
pub mod ghost;
pub mod inet;
pub mod inotify;
pub mod locks;
pub mod memfd;
pub mod netlink;
pub mod netlock;
pub mod packet;
pub mod pidfd;
pub mod pipe;
pub mod reg;
pub mod signalfd;
pub mod sk_diag;
pub mod sk_queue;
pub mod socket;
pub mod sockopt;
pub mod tcp;
pub mod timerfd;
pub mod tty;
pub mod unix;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use crate::image::{self, magic, pb};
use crate::proc;
use crate::sys;

use super::{read_proc_link, Error, IdGen, Result};

/// The `remap_type` of a file opened through another name of its inode.
pub const REMAP_LINKED: i32 = 0;

/// A file owner that says "none": each kind starts with it, and
/// `FileTable::dump_fds` puts the real owner in (see `fown`).
pub(crate) fn no_owner() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

/// A new open file description of the file behind `fd`, opened through
/// /proc/self/fd with `flags` (close-on-exec added).
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: OFlag) -> sys::SysResult<OwnedFd> {
    nix::fcntl::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// What kind of file an fd is, as far as dumping goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A file criu finds again by its path (regular file, directory, device).
    Path,
    /// A regular file whose last name is gone.
    Ghost,
    /// A regular file opened by a name that is gone while it has another
    /// (`--link-remap`).
    Linked,
    Memfd,
    Pipe,
    Fifo,
    Eventfd,
    Signalfd,
    Timerfd,
    Inotify,
    Epoll,
    Pidfd,
    Fanotify,
    /// Not known to criu-rs: what it is, in words.
    Unsupported(String),
}

/// Tells the kind of an fd from its /proc link, its file type (`S_IFMT`
/// bits), its link count, and whether it lives on the memfd device.
pub fn classify(link: &str, fmt: u32, nlink: u64, on_memfd_dev: bool) -> Kind {
    let no = |s: &str| Kind::Unsupported(s.to_string());
    if let Some(anon) = link.strip_prefix("anon_inode:") {
        return match anon {
            "[eventfd]" => Kind::Eventfd,
            "[signalfd]" => Kind::Signalfd,
            "[timerfd]" => Kind::Timerfd,
            "inotify" => Kind::Inotify,
            "[eventpoll]" => Kind::Epoll,
            "[io_uring]" => no("an io_uring instance"),
            "bpf-map" => no("a BPF map"),
            "bpf-prog" => no("a BPF program"),
            "bpf_link" | "bpf-link" => no("a BPF link"),
            "[perf_event]" => no("a perf event"),
            "[pidfd]" => Kind::Pidfd,
            "[fanotify]" => Kind::Fanotify,
            "[userfaultfd]" => no("a userfaultfd"),
            "[fscontext]" => no("a filesystem context"),
            other => Kind::Unsupported(format!("an anonymous inode of kind {other}")),
        };
    }
    if link.starts_with("pidfd:") {
        return Kind::Pidfd;
    }
    match fmt {
        libc::S_IFIFO if link.starts_with("pipe:") => Kind::Pipe,
        libc::S_IFIFO if link.starts_with('/') => Kind::Fifo,
        libc::S_IFIFO => Kind::Unsupported(format!("a fifo criu cannot name ({link})")),
        libc::S_IFSOCK => no("a socket"),
        libc::S_IFREG if on_memfd_dev && memfd::name_of(link).is_some() => Kind::Memfd,
        libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK => {
            if link.ends_with(" (deleted)") {
                if fmt == libc::S_IFREG && nlink == 0 {
                    Kind::Ghost
                } else if fmt == libc::S_IFREG {
                    Kind::Linked
                } else {
                    no("an unlinked directory or device")
                }
            } else if !link.starts_with('/') {
                no("an anonymous inode")
            } else {
                Kind::Path
            }
        }
        // Only an O_PATH|O_NOFOLLOW open gives an fd of a symlink.
        libc::S_IFLNK if link.starts_with('/') && !link.ends_with(" (deleted)") => Kind::Path,
        libc::S_IFLNK => no("an unlinked symlink"),
        _ => no("a file of an unknown kind"),
    }
}

/// Whether `link` (an fd's /proc link ending in " (deleted)", of `pid`)
/// is in fact the live name of the file `st`: a file may be named
/// "x (deleted)". The name is looked up as `pid` sees it.
fn live_name(pid: i32, link: &str, st: &FileStat) -> bool {
    nix::sys::stat::lstat(format!("/proc/{pid}/root{link}").as_str())
        .is_ok_and(|l| l.st_dev == st.st_dev && l.st_ino == st.st_ino)
}

/// The error for an fd criu-rs cannot dump: names the fd, its link and its
/// kind.
pub fn unsupported(pid: i32, fd: i32, link: &str, kind: &str) -> Error {
    Error::Unsupported {
        pid,
        what: format!("fd {fd} ({link}) is {kind}, which criu-rs cannot dump yet"),
    }
}

/// Every open file of a dump, each one entry of `files.img`, and what goes
/// with them into other images (pipe data, ghost files, memfd contents).
#[derive(Debug)]
pub struct FileTable {
    ids: IdGen,
    pub entries: Vec<pb::FileEntry>,
    /// Files named by path only (mapped files, exe, cwd, root).
    by_path: HashMap<String, u32>,
    /// One open file description seen through an fd: (pid, fd, id).
    described: Vec<(i32, i32, u32)>,
    /// Pipes whose data is saved already.
    data_seen: HashSet<u32>,
    pipe_data: Vec<(u32, pipe::Queued)>,
    fifo_data: Vec<(u32, pipe::Queued)>,
    /// Ghost files by (st_dev, st_ino).
    ghost_ids: HashMap<(u64, u64), u32>,
    ghosts: Vec<ghost::Ghost>,
    remaps: Vec<pb::RemapFilePathEntry>,
    /// Unlinked files bigger than this (bytes on disk) fail the dump
    /// (`--ghost-limit`).
    pub ghost_limit: u64,
    /// memfd inodes by st_ino.
    memfd_ids: HashMap<u64, u32>,
    memfds: Vec<memfd::Inode>,
    memfd_dev: Option<Option<u64>>,
    /// Mapped unlinked files and memfds by (st_dev, st_ino): their file id
    /// and whether they are memfds.
    mapped_deleted: HashMap<(u64, u64), (u32, bool)>,
    /// First `pages-<id>.img` number for memfd contents; ids below are
    /// left to task memory.
    pub shmem_pages_base: u32,
    /// Socket state of the whole dump (sock_diag, queues, TCP streams).
    pub sk: socket::SkDump,
    /// File locks held (`--file-locks` in `locks.enabled`).
    pub locks: locks::LockDump,
    /// Terminals (pty pairs).
    pub tty: tty::TtyDump,
    /// Files carried in socket queues, open in criu until the dump ends.
    carried_files: Vec<OwnedFd>,
    /// The processes of the dumped tree: pid as criu sees it -> pid inside
    /// the tree (pidfds may only refer to these).
    pub tree: HashMap<i32, i32>,
    /// `--file-validation`: what restore checks files against.
    pub file_validation: reg::Validation,
    /// `--link-remap`: a file open by a name unlinked since, which has
    /// another name, gets a temporary name (`link_remap.ID`) beside the
    /// old one for restore to open it through.
    pub link_remap: bool,
    link_remaps: LinkRemaps,
}

/// The `link_remap.ID` names a dump made: removed again unless the dump
/// succeeds (then restore removes them).
#[derive(Debug, Default)]
struct LinkRemaps {
    made: Vec<PathBuf>,
    kept: bool,
}

impl Drop for LinkRemaps {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for p in &self.made {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!("removing link remap {}: {e}", p.display());
            }
        }
    }
}

impl Default for FileTable {
    fn default() -> Self {
        FileTable {
            ids: IdGen::default(),
            entries: Vec::new(),
            by_path: HashMap::new(),
            described: Vec::new(),
            data_seen: HashSet::new(),
            pipe_data: Vec::new(),
            fifo_data: Vec::new(),
            ghost_ids: HashMap::new(),
            ghosts: Vec::new(),
            remaps: Vec::new(),
            ghost_limit: ghost::DEFAULT_GHOST_LIMIT,
            memfd_ids: HashMap::new(),
            memfds: Vec::new(),
            memfd_dev: None,
            mapped_deleted: HashMap::new(),
            shmem_pages_base: 0x1_0000,
            sk: socket::SkDump::default(),
            locks: locks::LockDump::default(),
            tty: tty::TtyDump::default(),
            carried_files: Vec::new(),
            tree: HashMap::new(),
            file_validation: reg::Validation::default(),
            link_remap: false,
            link_remaps: LinkRemaps::default(),
        }
    }
}

impl FileTable {
    /// The id of a file criu only needs to find again by its path: the
    /// executable, mapped files, cwd and root.
    pub fn by_path(&mut self, pid: i32, path: &str) -> Result<u32> {
        if let Some(&id) = self.by_path.get(path) {
            return Ok(id);
        }
        let id = self.ids.next_id();
        let reg = reg::for_path(pid, id, path, self.file_validation)?;
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
        self.tty.begin_task(pid, &self.tree)?;
        for &fd in &fds {
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
                    // Known before it is dumped: a socket may carry itself
                    // in its own queue.
                    self.described.push((pid, fd, id));
                    let mut entry = self.dump_one(pid, fd, id, &info, file.as_fd(), &fds)?;
                    let owner = fown::dump(pid, fd, info.flags, file.as_fd(), &self.tree)?;
                    self.set_fown(&mut entry, owner);
                    self.entries.push(entry);
                    id
                }
            };
            self.locks.note(pid, fd, id, &info.locks)?;
            let entry = self.entries.iter().find(|e| e.id == id);
            let kind = entry.map_or(pb::FdTypes::Reg as i32, |e| e.r#type);
            if let Some(info_id) = entry.and_then(|e| e.tty.as_ref()).map(|t| t.tty_info_id) {
                self.tty.note_fd(pid, fd, info_id, &self.tree)?;
            }
            out.push(pb::FdinfoEntry {
                id,
                flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
                r#type: kind,
                fd: fd as u32,
                xattr_security_selinux: None,
            });
        }
        self.tty.end_task()?;
        Ok(out)
    }

    /// Puts `owner` into `entry` (a fifo's into its path entry).
    fn set_fown(&mut self, entry: &mut pb::FileEntry, owner: pb::FownEntry) {
        if let Some(regf) = entry.fifo.as_ref().and_then(|f| f.regf_id) {
            if let Some(slot) = self
                .entries
                .iter_mut()
                .find(|e| e.id == regf)
                .and_then(fown::slot)
            {
                *slot = owner;
            }
        } else if let Some(slot) = fown::slot(entry) {
            *slot = owner;
        }
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

    fn on_memfd_dev(&mut self, st: &FileStat) -> bool {
        let dev = *self.memfd_dev.get_or_insert_with(memfd::memfd_dev);
        dev == Some(st.st_dev)
    }

    /// Dumps one open file description, fetched into criu as `file`.
    /// `open_fds` are all the fd numbers of the task.
    fn dump_one(
        &mut self,
        pid: i32,
        fd: i32,
        id: u32,
        info: &proc::Fdinfo,
        file: BorrowedFd<'_>,
        open_fds: &[i32],
    ) -> Result<pb::FileEntry> {
        let st = nix::sys::stat::fstat(file).map_err(|errno| Error::Sys {
            pid,
            what: format!("fstat of fd {fd}"),
            errno,
        })?;
        let link = read_proc_link(pid, &format!("fd/{fd}"))?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFSOCK {
            let sk = socket::SkFd {
                pid,
                fd,
                id,
                flags: info.flags,
                file,
                ino: st.st_ino as u32,
            };
            let entry = socket::dump(&mut self.sk, sk, &self.tree)?;
            for (index, fds) in std::mem::take(&mut self.sk.carried) {
                let mut ids = Vec::with_capacity(fds.len());
                for f in fds {
                    ids.push(self.dump_carried(pid, fd, f)?);
                }
                self.sk.queues.set_rights(index, ids);
            }
            return Ok(entry);
        }
        if fmt == libc::S_IFCHR && tty::kind(st.st_rdev).is_some() {
            let mut t = tty::dump(&mut self.tty, pid, fd, id, info.flags, &link, file, &st)?;
            // A master opened through the ptmx of another devpts instance
            // (a container's) names it, for the restore to open it again.
            if tty::is_ptmx(st.st_rdev) && link != "/dev/ptmx" {
                t.regf_id = Some(self.by_path(pid, &link)?);
            }
            return Ok(pb::FileEntry {
                id,
                r#type: pb::FdTypes::Tty as i32,
                tty: Some(t),
                ..Default::default()
            });
        }
        let memfd_dev = fmt == libc::S_IFREG && self.on_memfd_dev(&st);
        let kind = if link.ends_with(" (deleted)") && live_name(pid, &link, &st) {
            Kind::Path
        } else {
            classify(&link, fmt, st.st_nlink, memfd_dev)
        };
        let v = self.file_validation;
        let mut fe = pb::FileEntry {
            id,
            ..Default::default()
        };
        match kind {
            Kind::Path => {
                fe.r#type = pb::FdTypes::Reg as i32;
                fe.reg = Some(reg::dump(pid, fd, id, &link, info, &st, Some(file), v)?);
            }
            Kind::Linked => {
                let path = ghost::strip_deleted(&link).to_string();
                self.link_remap_of(pid, fd, id, &path, file)?;
                fe.r#type = pb::FdTypes::Reg as i32;
                fe.reg = Some(reg::dump(pid, fd, id, &path, info, &st, Some(file), v)?);
            }
            Kind::Ghost => {
                let path = ghost::strip_deleted(&link).to_string();
                self.ghost_of(pid, fd, id, &path, file, &st)?;
                fe.r#type = pb::FdTypes::Reg as i32;
                fe.reg = Some(reg::dump(pid, fd, id, &path, info, &st, Some(file), v)?);
            }
            Kind::Memfd => {
                let name = memfd::name_of(&link).unwrap_or_default().to_string();
                let inode_id = self.memfd_inode(pid, fd, &name, file, &st)?;
                fe.r#type = pb::FdTypes::Memfd as i32;
                fe.memfd = Some(memfd::entry(id, info.flags, info.pos, inode_id));
            }
            Kind::Pipe | Kind::Fifo => {
                let pipe_id = pipe::pipe_id(st.st_ino);
                // Like upstream, one data entry per pipe whose read end is
                // dumped (even when empty) and none for a lone write end;
                // but the bytes queued behind a write end are kept too.
                let write_end = info.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
                if !self.data_seen.contains(&pipe_id) {
                    let q = pipe::peek(pid, fd, file, info.flags)?;
                    if write_end && q.data.is_empty() {
                        // nothing to keep; a read end met later writes it
                    } else if kind == Kind::Pipe {
                        self.data_seen.insert(pipe_id);
                        self.pipe_data.push((pipe_id, q));
                    } else {
                        self.data_seen.insert(pipe_id);
                        self.fifo_data.push((pipe_id, q));
                    }
                }
                if kind == Kind::Pipe {
                    fe.r#type = pb::FdTypes::Pipe as i32;
                    fe.pipe = Some(pipe::entry(id, pipe_id, info.flags));
                } else {
                    let regf_id = self.ids.next_id();
                    self.entries.push(pb::FileEntry {
                        r#type: pb::FdTypes::Reg as i32,
                        id: regf_id,
                        reg: Some(reg::dump(pid, fd, regf_id, &link, info, &st, None, v)?),
                        ..Default::default()
                    });
                    fe.r#type = pb::FdTypes::Fifo as i32;
                    fe.fifo = Some(fifo::entry(id, pipe_id, regf_id));
                }
            }
            Kind::Eventfd => {
                fe.r#type = pb::FdTypes::Eventfd as i32;
                fe.efd = Some(eventfd::dump(pid, fd, id, info)?);
            }
            Kind::Signalfd => {
                fe.r#type = pb::FdTypes::Signalfd as i32;
                fe.sgfd = Some(signalfd::dump(pid, fd, id, info)?);
            }
            Kind::Timerfd => {
                fe.r#type = pb::FdTypes::Timerfd as i32;
                fe.tfd = Some(timerfd::dump(pid, fd, id, info)?);
            }
            Kind::Inotify => {
                fe.r#type = pb::FdTypes::Inotify as i32;
                fe.ify = Some(inotify::dump(pid, fd, id, info)?);
            }
            Kind::Epoll => {
                fe.r#type = pb::FdTypes::Eventpoll as i32;
                fe.epfd = Some(epoll::dump(pid, fd, id, info, open_fds)?);
            }
            Kind::Pidfd => {
                fe.r#type = pb::FdTypes::Pidfd as i32;
                let ino = info.ino.unwrap_or(st.st_ino);
                fe.pidfd = Some(pidfd::dump(pid, fd, id, info, ino, &self.tree, no_owner())?);
            }
            Kind::Fanotify => {
                fe.r#type = pb::FdTypes::Fanotify as i32;
                fe.ffy = Some(fanotify::dump(pid, fd, id, info)?);
            }
            Kind::Unsupported(what) => return Err(unsupported(pid, fd, &link, &what)),
        }
        Ok(fe)
    }

    /// The file id of `file`, an fd carried in a message queued in socket
    /// `fd` of `pid`, which criu got by peeking: the id of an open file
    /// already dumped when it is one, else a new file dumped from criu's
    /// own fd (kept open for the rest of the dump, for kcmp).
    fn dump_carried(&mut self, pid: i32, fd: i32, file: OwnedFd) -> Result<u32> {
        let me = std::process::id() as i32;
        let raw = file.as_raw_fd();
        if let Some(id) = self.same_as_seen(me, raw)? {
            return Ok(id);
        }
        let info = proc::read_fdinfo(me, raw)?;
        let link = read_proc_link(me, &format!("fd/{raw}"))?;
        if link.starts_with("anon_inode:[eventpoll]") {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "socket fd {fd} carries an epoll set in its queue, which criu-rs cannot dump"
                ),
            });
        }
        let id = self.ids.next_id();
        self.described.push((me, raw, id));
        let outer = self.sk.net_pid.replace(pid);
        let entry = self.dump_one(me, raw, id, &info, file.as_fd(), &[]);
        self.sk.net_pid = outer;
        let mut entry = entry?;
        // Carried fds have no fd flags of their own.
        if let Some(u) = entry.usk.as_mut() {
            u.flags &= !(libc::O_CLOEXEC as u32);
        }
        self.entries.push(entry);
        self.carried_files.push(file);
        Ok(id)
    }

    /// The ghost of unlinked file `path` (saved once per inode, within
    /// `--ghost-limit`), tied to file id `id` in `remap-fpath.img`.
    fn ghost_of(
        &mut self,
        pid: i32,
        fd: i32,
        id: u32,
        path: &str,
        file: BorrowedFd<'_>,
        st: &FileStat,
    ) -> Result<()> {
        let key = (st.st_dev, st.st_ino);
        let remap_id = match self.ghost_ids.get(&key) {
            Some(&g) => g,
            None => {
                let g = self.ghosts.len() as u32 + 1;
                let saved = ghost::dump(pid, fd, g, path, file, st, self.ghost_limit)?;
                self.ghosts.push(saved);
                self.ghost_ids.insert(key, g);
                g
            }
        };
        self.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id,
            remap_type: Some(ghost::REMAP_GHOST),
        });
        Ok(())
    }

    /// Gives file `file` (open as `fd` of `pid` by `path`, a name since
    /// unlinked; it has another) a new name beside the old one,
    /// `link_remap.ID`, recorded in `files.img` and tied to file `id` in
    /// `remap-fpath.img` as a linked remap.
    fn link_remap_of(
        &mut self,
        pid: i32,
        fd: i32,
        id: u32,
        path: &str,
        file: BorrowedFd<'_>,
    ) -> Result<()> {
        let by = if fd < 0 {
            "a mapping".to_string()
        } else {
            format!("fd {fd}")
        };
        if !self.link_remap {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "{by} is {path}, unlinked while the file has another name: dump with --link-remap to give it a temporary one"
                ),
            });
        }
        let parent = Path::new(path).parent().ok_or_else(|| Error::Mismatch {
            what: format!("{by} of pid {pid}: unlinked file {path} has no directory"),
        })?;
        let remap_id = self.ids.next_id();
        let name = parent.join(format!("link_remap.{remap_id}"));
        // Made as the task sees the directory: the link must be on the
        // file's own mount.
        let theirs = format!("/proc/{pid}/root{}", name.display());
        nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
            nix::fcntl::AT_FDCWD,
            theirs.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(|errno| Error::Sys {
            pid,
            what: format!(
                "linking {by} ({path}, unlinked) to {} for --link-remap",
                name.display()
            ),
            errno,
        })?;
        self.link_remaps.made.push(PathBuf::from(theirs));
        let st = nix::sys::stat::fstat(file).map_err(|errno| Error::Sys {
            pid,
            what: format!("fstat of fd {fd}"),
            errno,
        })?;
        let info = proc::Fdinfo::default();
        let shown = name.to_string_lossy();
        let mut remap = reg::dump(
            pid,
            fd,
            remap_id,
            &shown,
            &info,
            &st,
            None,
            reg::Validation::FileSize,
        )?;
        remap.size = None;
        self.entries.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: remap_id,
            reg: Some(remap),
            ..Default::default()
        });
        self.remaps.push(pb::RemapFilePathEntry {
            orig_id: id,
            remap_id,
            remap_type: Some(REMAP_LINKED),
        });
        Ok(())
    }

    /// The inode id of memfd `file` in `memfd.img`, its content saved once
    /// whether it is seen through fds, mappings or both.
    fn memfd_inode(
        &mut self,
        pid: i32,
        fd: i32,
        name: &str,
        file: BorrowedFd<'_>,
        st: &FileStat,
    ) -> Result<u32> {
        if let Some(&i) = self.memfd_ids.get(&st.st_ino) {
            return Ok(i);
        }
        let i = self.memfds.len() as u32 + 1;
        let pages_id = self.shmem_pages_base + i;
        let ino = memfd::dump_inode(pid, fd, name, file, st, i, pages_id)?;
        self.memfds.push(ino);
        self.memfd_ids.insert(st.st_ino, i);
        Ok(i)
    }

    /// The file id for a mapping of an unlinked file or of a memfd
    /// (`/path (deleted)`, `/memfd:NAME (deleted)`) at `[start, end)` of
    /// `pid`, one per inode; true when it is a memfd. The file is fetched
    /// through /proc/PID/map_files; its content goes to the same images as
    /// that of its fds (memfd inode, ghost file).
    pub fn for_deleted_mapping(
        &mut self,
        pid: i32,
        path: &str,
        (start, end): (u64, u64),
    ) -> Result<(u32, bool)> {
        let at = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
        let file = std::fs::File::open(&at).map_err(|source| Error::Io {
            pid,
            what: format!("opening {at} (mapping of {path})"),
            source,
        })?;
        let st = nix::sys::stat::fstat(&file).map_err(|errno| Error::Sys {
            pid,
            what: format!("fstat of {at}"),
            errno,
        })?;
        if let Some(&(id, memfd)) = self.mapped_deleted.get(&(st.st_dev, st.st_ino)) {
            return Ok((id, memfd));
        }
        let is_memfd = st.st_mode & libc::S_IFMT == libc::S_IFREG
            && self.on_memfd_dev(&st)
            && memfd::name_of(path).is_some();
        if !is_memfd {
            // A live file whose name ends in " (deleted)".
            let named = format!("{} (deleted)", ghost::strip_deleted(path));
            if live_name(pid, &named, &st) {
                let id = self.by_path(pid, &named)?;
                self.mapped_deleted
                    .insert((st.st_dev, st.st_ino), (id, false));
                return Ok((id, false));
            }
        }
        let id = self.ids.next_id();
        let mut fe = pb::FileEntry {
            id,
            ..Default::default()
        };
        if is_memfd {
            let name = memfd::name_of(path).unwrap_or_default().to_string();
            let inode_id = self.memfd_inode(pid, -1, &name, file.as_fd(), &st)?;
            fe.r#type = pb::FdTypes::Memfd as i32;
            fe.memfd = Some(memfd::entry(id, libc::O_RDWR as u32, 0, inode_id));
        } else {
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "mapping {start:#x}-{end:#x} is of the unlinked {path}, mode {:o}, which is no regular file",
                        st.st_mode
                    ),
                });
            }
            if st.st_nlink > 0 && self.link_remap {
                // Another name stays: the mapping keeps that inode.
                self.link_remap_of(pid, -1, id, ghost::strip_deleted(path), file.as_fd())?;
            } else {
                self.ghost_of(pid, -1, id, path, file.as_fd(), &st)?;
            }
            let info = proc::Fdinfo {
                flags: libc::O_RDWR as u32,
                ..Default::default()
            };
            fe.r#type = pb::FdTypes::Reg as i32;
            let v = self.file_validation;
            fe.reg = Some(reg::dump(
                pid,
                -1,
                id,
                path,
                &info,
                &st,
                Some(file.as_fd()),
                v,
            )?);
        }
        self.entries.push(fe);
        self.mapped_deleted
            .insert((st.st_dev, st.st_ino), (id, is_memfd));
        Ok((id, is_memfd))
    }

    /// The dump succeeded: names made for `--link-remap` stay for restore.
    pub fn keep_link_remaps(&mut self) {
        self.link_remaps.kept = true;
    }

    /// Writes `files.img` and the images that go with it.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.sk.write(dir)?;
        let next = self.entries.iter().map(|e| e.id).max().unwrap_or(0) + 1;
        let external = self.sk.externals(next)?;
        image::write_image(
            dir,
            "files.img",
            magic::FILES,
            self.entries.iter().chain(&external),
        )?;
        if !self.pipe_data.is_empty() {
            pipe::write_data(dir, "pipes-data.img", magic::PIPES_DATA, &self.pipe_data)?;
        }
        if !self.fifo_data.is_empty() {
            pipe::write_data(dir, "fifo-data.img", magic::FIFO_DATA, &self.fifo_data)?;
        }
        for g in &self.ghosts {
            ghost::write(dir, g)?;
        }
        if !self.remaps.is_empty() {
            image::write_image(dir, "remap-fpath.img", magic::REMAP_FPATH, &self.remaps)?;
        }
        if !self.memfds.is_empty() {
            memfd::write(dir, &self.memfds)?;
        }
        self.locks.write(dir)?;
        self.tty.write(dir)?;
        Ok(())
    }
}

/// Files opened in criu for restore, by image id: each open file
/// description is made once and handed to every fd that shares it.
/// A file of the images that the caller gives criu instead of letting it
/// open it (`--inherit-fd fd[N]:KEY`, RPC `inherit_fd`): every fd of the
/// images whose file has key `key` (see [`inherit_key`]) becomes a
/// duplicate of `fd`.
#[derive(Debug, Clone)]
pub struct InheritFd {
    pub key: String,
    pub fd: std::sync::Arc<OwnedFd>,
}

/// The name CRIU matches `--inherit-fd` keys against: `pipe:[INODE]` for a
/// pipe, the path without its leading `/` for a regular file; None for
/// kinds that cannot be inherited.
pub fn inherit_key(e: &pb::FileEntry) -> Option<String> {
    match pb::FdTypes::try_from(e.r#type).ok()? {
        pb::FdTypes::Pipe => e.pipe.as_ref().map(|p| format!("pipe:[{}]", p.pipe_id)),
        pb::FdTypes::Reg => e
            .reg
            .as_ref()
            .map(|r| r.name.trim_start_matches('/').to_string()),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct Opened {
    /// Files given by criu's caller (`--inherit-fd`).
    inherited: Vec<InheritFd>,
    dir: Option<PathBuf>,
    /// fd number -> file id, of the task being restored (epoll targets).
    task_fds: HashMap<u32, u32>,
    files: HashMap<u32, OwnedFd>,
    /// Ids being made (a loop of epoll sets would never end).
    opening: HashSet<u32>,
    pipe_data: Option<HashMap<u32, pipe::Queued>>,
    fifo_data: Option<HashMap<u32, pipe::Queued>>,
    pipes: HashMap<u32, pipe::Made>,
    fifos: HashMap<u32, fifo::Held>,
    /// remap-fpath.img by orig_id.
    remaps: Option<HashMap<u32, pb::RemapFilePathEntry>>,
    /// Ghost files made, by remap id: an fd holding each.
    ghosts: HashMap<u32, OwnedFd>,
    memfd_inodes: Option<Vec<pb::MemfdInodeEntry>>,
    /// memfds made, by inode id: the memfd, and whether its own fd is still
    /// free to hand out.
    memfds: HashMap<u64, (OwnedFd, bool)>,
    /// memfds made whose seals wait for their mappings.
    unsealed: Vec<pb::MemfdInodeEntry>,
    /// Sockets: the images directory and their queued data.
    sk: socket::SkRestore,
    /// `--file-locks`: locks of file-locks.img are taken again.
    pub file_locks: bool,
    locks: Option<Vec<pb::FileLockEntry>>,
    /// Ptys made, by index.
    tty: tty::TtyRestore,
    /// Queues carrying fds are being sent.
    flushing: bool,
    /// Dead pidfds made ahead of their turn.
    pidfds: pidfd::PidfdRestore,
    /// Pids of the restored tree -> pids as criu sees them.
    host_pids: HashMap<i32, i32>,
    /// The pid namespace of the restored tree, when it is not criu's.
    tree_pidns: Option<OwnedFd>,
    /// The root of the restored tree, as criu sees it.
    root_host: Option<i32>,
    /// `--file-validation`: build-ids recorded at dump are compared too
    /// (unless `filesize` was asked for).
    pub file_validation: Option<reg::Validation>,
    /// The task whose files are made now (named in errors).
    task_pid: Option<i32>,
    /// `link_remap.ID` names opened through, removed once the restore
    /// succeeded ([`Opened::remove_link_remaps`]).
    link_remaps: Vec<String>,
}

impl Opened {
    /// Restore from the images in `dir`.
    /// `--inherit-fd`: these files are taken from criu's caller.
    pub fn set_inherited(&mut self, fds: &[InheritFd]) {
        self.inherited = fds.to_vec();
    }

    /// A duplicate of the inherited fd that stands for file `id`, when its
    /// key was given.
    fn inherited_for(&self, files: &[pb::FileEntry], id: u32) -> Option<Result<OwnedFd>> {
        if self.inherited.is_empty() {
            return None;
        }
        let key = inherit_key(files.iter().find(|e| e.id == id)?)?;
        let inh = self.inherited.iter().find(|i| i.key == key)?;
        tracing::info!(id, key, fd = ?inh.fd, "file restored from an inherited fd");
        Some(inh.fd.try_clone().map_err(|source| Error::Io {
            pid: 0,
            what: format!(
                "duplicating the inherited fd {:?} for {key} (file id {id})",
                inh.fd
            ),
            source,
        }))
    }

    pub fn new(dir: &Path) -> Self {
        Opened {
            dir: Some(dir.to_path_buf()),
            sk: socket::SkRestore::new(dir),
            ..Default::default()
        }
    }

    /// Restore options for sockets: `--tcp-established` (established TCP
    /// connections may be restored) and `--tcp-close` (they come back
    /// closed).
    pub fn set_sk_opts(&mut self, tcp_established: bool, tcp_close: bool) {
        self.sk.tcp_established = tcp_established;
        self.sk.tcp_close = tcp_close;
    }

    /// `--ext-unix-sk`: unix sockets connected to a socket outside the
    /// dumped tree connect to its name again.
    pub fn set_ext_unix_sk(&mut self, on: bool) {
        self.sk.ext_unix_sk = on;
    }

    /// `--network-lock`: with nftables, a lock left by the dump (named
    /// after its run id) that cannot be removed fails the restore.
    pub fn set_network_lock(&mut self, m: netlock::Method, run_id: Option<String>) {
        self.sk.network_lock = m;
        self.sk.run_id = run_id;
    }

    /// Called once every file of the restore is made: TCP connections
    /// restored in repair mode leave it (their peers exist now).
    pub fn release_tcp(&mut self) -> Result<()> {
        self.sk.release_tcp()
    }

    /// Where each task of the restored tree is, as criu sees it: pid in the
    /// tree -> pid in criu's pid namespace (pidfds are opened from criu).
    /// `root` is the root of the tree, as criu sees it.
    pub fn set_host_pids(
        &mut self,
        root: i32,
        pids: impl IntoIterator<Item = (i32, i32)>,
    ) -> Result<()> {
        self.host_pids = pids.into_iter().collect();
        self.root_host = Some(root);
        self.sk.set_tree(root, self.host_pids.clone());
        let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let theirs = format!("/proc/{root}/ns/pid");
        let io = |what: &str, source| Error::Io {
            pid: root,
            what: what.to_string(),
            source,
        };
        let same = ino(&theirs).map_err(|e| io("stat of its pid namespace", e))?
            == ino("/proc/self/ns/pid").map_err(|e| io("stat of criu's pid namespace", e))?;
        self.tree_pidns = if same {
            None
        } else {
            Some(
                std::fs::File::open(&theirs)
                    .map_err(|e| io("opening its pid namespace", e))?
                    .into(),
            )
        };
        Ok(())
    }

    /// The fd table of the task whose files are made next (epoll sets name
    /// their targets by fd number).
    pub fn set_task_fds(&mut self, fdinfo: &[pb::FdinfoEntry]) {
        self.task_fds = fdinfo.iter().map(|f| (f.fd, f.id)).collect();
    }

    /// Like [`Opened::set_task_fds`], naming the task too (errors about
    /// its files then say which pid and fd they are for).
    pub fn set_task(&mut self, pid: i32, fdinfo: &[pb::FdinfoEntry]) {
        self.set_task_fds(fdinfo);
        self.task_pid = Some(pid);
    }

    /// Who file `id` is made for: the task set last and the lowest of its
    /// fds that refers to it.
    fn holder(&self, id: u32) -> reg::Holder {
        reg::Holder {
            pid: self.task_pid,
            fd: self
                .task_fds
                .iter()
                .filter(|(_, &i)| i == id)
                .map(|(&fd, _)| fd)
                .min(),
        }
    }

    /// The restore succeeded: the temporary names a `--link-remap` dump
    /// gave unlinked files are removed (a failed restore leaves them, so
    /// that it can be tried again).
    pub fn remove_link_remaps(&mut self) {
        for p in std::mem::take(&mut self.link_remaps) {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::debug!("link remap {p} removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("removing link remap {p}: {e}"),
            }
        }
    }

    /// Opens file `reg` (id `id`) through `remap`, another name of its
    /// inode: the old name is linked again, opened and unlinked (so the
    /// fd names it as unlinked, as it did), or when that name is taken,
    /// the file is opened through `remap` itself.
    fn open_linked(
        &mut self,
        reg: &pb::RegFileEntry,
        remap: &pb::RegFileEntry,
        who: reg::Holder,
    ) -> Result<OwnedFd> {
        let build_ids = self.file_validation != Some(reg::Validation::FileSize);
        if !self.link_remaps.contains(&remap.name) {
            self.link_remaps.push(remap.name.clone());
        }
        match nix::unistd::linkat(
            nix::fcntl::AT_FDCWD,
            remap.name.as_str(),
            nix::fcntl::AT_FDCWD,
            reg.name.as_str(),
            nix::fcntl::AtFlags::empty(),
        ) {
            Ok(()) => {
                let fd = reg::open(reg, who, build_ids);
                if let Err(errno) = nix::unistd::unlink(reg.name.as_str()) {
                    tracing::warn!("unlinking {} again: {errno}", reg.name);
                }
                fd
            }
            Err(nix::errno::Errno::EEXIST) => {
                tracing::info!(
                    "{} is taken: {} opened through {}",
                    reg.name,
                    who,
                    remap.name
                );
                reg::open_at_path(reg, &remap.name, who, build_ids)
            }
            Err(errno) => Err(Error::Mismatch {
                what: format!(
                    "linking {} back to {} ({who}, file id {}): {errno}",
                    remap.name, reg.name, reg.id
                ),
            }),
        }
    }

    /// Gives task `pid` (`t`, its fds in place, scratch space at
    /// `data_off`) its controlling terminal back, if it had one.
    pub fn restore_ctty(
        &mut self,
        t: &mut crate::remote::Tracee,
        pid: i32,
        fdinfo: &[pb::FdinfoEntry],
        files: &[pb::FileEntry],
        data_off: u64,
    ) -> Result<()> {
        let ttys: Vec<(u32, &pb::TtyFileEntry)> = fdinfo
            .iter()
            .filter_map(|fi| {
                let e = files.iter().find(|e| e.id == fi.id)?.tty.as_ref()?;
                Some((fi.fd, e))
            })
            .collect();
        if ttys.is_empty() {
            return Ok(());
        }
        let dir = self.dir()?.to_path_buf();
        self.tty.restore_ctty(&dir, t, pid, &ttys, data_off)
    }

    /// For session leader `pid`, just after it made its session: a new
    /// open file of the pty slave that was its controlling terminal, for
    /// it to take (TIOCSCTTY) before its session's members are born, so
    /// that they inherit it. None when it had none.
    pub fn session_ctty(&mut self, pid: i32) -> Result<Option<OwnedFd>> {
        let dir = self.dir()?.to_path_buf();
        self.tty.session_ctty(&dir, pid)
    }

    /// The file locks to take again (none without `--file-locks`); tasks
    /// pick theirs with `locks::restore`.
    pub fn file_locks(&mut self) -> Result<&[pb::FileLockEntry]> {
        if !self.file_locks {
            return Ok(&[]);
        }
        if self.locks.is_none() {
            let l = locks::read(self.dir()?)?;
            self.locks = Some(l);
        }
        Ok(self.locks.as_deref().unwrap_or(&[]))
    }

    fn dir(&self) -> Result<&Path> {
        self.dir.as_deref().ok_or_else(|| Error::Mismatch {
            what: "restoring this file needs the image directory (Opened::new)".into(),
        })
    }

    /// The file of image id `id`, made on first use.
    pub fn get(&mut self, files: &[pb::FileEntry], id: u32) -> Result<&OwnedFd> {
        if !self.files.contains_key(&id) {
            if !self.opening.insert(id) {
                return Err(Error::Mismatch {
                    what: format!("file id {id} needs itself to be made (epoll loop?)"),
                });
            }
            if let Some(fd) = self.inherited_for(files, id) {
                self.opening.remove(&id);
                self.files.insert(id, fd?);
                return self.files.get(&id).ok_or_else(|| Error::Mismatch {
                    what: format!("file id {id} vanished"),
                });
            }
            if let Some(entry) = files
                .iter()
                .find(|e| e.id == id && socket::handles(e.r#type))
            {
                // One socketpair makes two ids: the socket code fills the
                // cache itself.
                let made = socket::open(&mut self.sk, files, entry, &mut self.files);
                self.opening.remove(&id);
                made?;
                self.send_carried(files)?;
                return self.files.get(&id).ok_or_else(|| Error::Mismatch {
                    what: format!("socket id {id} was not made"),
                });
            }
            let made = self.make(files, id);
            self.opening.remove(&id);
            self.files.insert(id, made?);
            self.send_carried(files)?;
        }
        self.files.get(&id).ok_or_else(|| Error::Mismatch {
            what: format!("file id {id} vanished"),
        })
    }

    /// Once no file is half made: the socket queues whose messages carry
    /// fds are filled, making the files they carry first (a socket may
    /// carry itself: it exists by now).
    fn send_carried(&mut self, files: &[pb::FileEntry]) -> Result<()> {
        if self.flushing || !self.opening.is_empty() {
            return Ok(());
        }
        self.flushing = true;
        let r = (|| {
            while !self.sk.deferred.is_empty() {
                let (from, msgs, what) = self.sk.deferred.remove(0);
                for id in msgs.iter().flat_map(|m| &m.rights) {
                    self.get(files, *id)?;
                }
                let made = &self.files;
                sk_queue::requeue_with(
                    from.as_fd(),
                    &msgs,
                    |id| made.get(&id).map(|f| f.as_fd()),
                    &what,
                )?;
            }
            self.sk.apply_deferred_shutdowns()
        })();
        self.flushing = false;
        r
    }

    /// A memfd of inode `inode_id` (from `memfd.img`), made on first use:
    /// the same memfd the fds of that inode reopen, for mappings of it.
    pub fn memfd_fd_for_inode(&mut self, inode_id: u64) -> Result<&OwnedFd> {
        if !self.memfds.contains_key(&inode_id) {
            let dir = self.dir()?.to_path_buf();
            if self.memfd_inodes.is_none() {
                self.memfd_inodes = Some(memfd::read_inodes(&dir)?);
            }
            let e = self
                .memfd_inodes
                .iter()
                .flatten()
                .find(|m| m.inode_id == inode_id)
                .ok_or_else(|| Error::Mismatch {
                    what: format!("memfd.img has no inode {inode_id}"),
                })?;
            let fd = memfd::make_inode(&dir, e)?;
            self.unsealed.push(e.clone());
            self.memfds.insert(inode_id, (fd, true));
        }
        self.memfds
            .get(&inode_id)
            .map(|(fd, _)| fd)
            .ok_or_else(|| Error::Mismatch {
                what: format!("memfd inode {inode_id} vanished"),
            })
    }

    /// Seals every memfd made so far: called once all tasks have mapped
    /// them.
    pub fn seal_memfds(&mut self) -> Result<()> {
        for e in std::mem::take(&mut self.unsealed) {
            if let Some((fd, _)) = self.memfds.get(&e.inode_id) {
                memfd::seal(fd, &e)?;
            }
        }
        Ok(())
    }

    /// For a mapping of file `id` (mm-*.img `shmid`), opened with
    /// `fdflags`: a new open file made in criu when the file is a memfd or
    /// an unlinked (ghost) file, None when the task opens it by path.
    pub fn mapping_fd(
        &mut self,
        files: &[pb::FileEntry],
        id: u32,
        fdflags: u32,
    ) -> Result<Option<OwnedFd>> {
        let entry = files
            .iter()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::Mismatch {
                what: format!("a mapping refers to file id {id}, which files.img lacks"),
            })?;
        let flags = OFlag::from_bits_retain((fdflags & libc::O_ACCMODE as u32) as i32);
        let fd = if let Some(m) = &entry.memfd {
            self.memfd_fd_for_inode(u64::from(m.inode_id))?
        } else if self.remap_of(id)?.is_some_and(|r| {
            let t = r.remap_type.unwrap_or(REMAP_LINKED);
            t == ghost::REMAP_GHOST || t == REMAP_LINKED
        }) {
            self.get(files, id)?
        } else {
            return Ok(None);
        };
        reopen(fd.as_fd(), flags)
            .map(Some)
            .map_err(|errno| Error::Mismatch {
                what: format!("reopening file id {id} for a mapping (flags {fdflags:#o}): {errno}"),
            })
    }

    fn remap_of(&mut self, id: u32) -> Result<Option<pb::RemapFilePathEntry>> {
        if self.remaps.is_none() {
            let dir = self.dir()?;
            let list: Vec<pb::RemapFilePathEntry> = if dir.join("remap-fpath.img").exists() {
                image::read_image(dir, "remap-fpath.img", magic::REMAP_FPATH)?
            } else {
                Vec::new()
            };
            self.remaps = Some(list.into_iter().map(|r| (r.orig_id, r)).collect());
        }
        Ok(self.remaps.as_ref().and_then(|m| m.get(&id)).cloned())
    }

    fn make(&mut self, files: &[pb::FileEntry], id: u32) -> Result<OwnedFd> {
        let entry = files
            .iter()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::Mismatch {
                what: format!("files.img has no file with id {id}"),
            })?;
        let missing = |what: &str| Error::Mismatch {
            what: format!("file id {id} has no {what} entry"),
        };
        let ty = pb::FdTypes::try_from(entry.r#type).map_err(|_| Error::Mismatch {
            what: format!("file id {id} has unknown type {}", entry.r#type),
        })?;
        match ty {
            pb::FdTypes::Reg => {
                let reg = entry.reg.as_ref().ok_or_else(|| missing("reg"))?;
                match self.remap_of(id)? {
                    Some(r) if r.remap_type == Some(ghost::REMAP_GHOST) => {
                        if !self.ghosts.contains_key(&r.remap_id) {
                            let g = ghost::read(self.dir()?, r.remap_id)?;
                            let holder = ghost::make(&reg.name, &g)?;
                            self.ghosts.insert(r.remap_id, holder);
                        }
                        let holder = self.ghosts.get(&r.remap_id).ok_or_else(|| missing("ghost"))?;
                        ghost::open(holder, reg)
                    }
                    Some(r) if r.remap_type.unwrap_or(REMAP_LINKED) == REMAP_LINKED => {
                        let remap = files
                            .iter()
                            .find(|e| e.id == r.remap_id)
                            .and_then(|e| e.reg.as_ref())
                            .ok_or_else(|| Error::Mismatch {
                                what: format!(
                                    "file id {id} ({}) is linked to file {}, which files.img lacks",
                                    reg.name, r.remap_id
                                ),
                            })?;
                        let who = self.holder(id);
                        self.open_linked(reg, remap, who)
                    }
                    Some(r) => Err(Error::Mismatch {
                        what: format!(
                            "file id {id} ({}) is remapped as type {:?}, which criu-rs cannot restore yet",
                            reg.name, r.remap_type
                        ),
                    }),
                    None => reg::open(
                        reg,
                        self.holder(id),
                        self.file_validation != Some(reg::Validation::FileSize),
                    ),
                }
            }
            pb::FdTypes::Pipe => {
                let p = entry.pipe.as_ref().ok_or_else(|| missing("pipe"))?;
                if !self.pipes.contains_key(&p.pipe_id) {
                    if self.pipe_data.is_none() {
                        let d = pipe::read_data(self.dir()?, "pipes-data.img", magic::PIPES_DATA)?;
                        self.pipe_data = Some(d);
                    }
                    let data = self.pipe_data.as_ref().and_then(|d| d.get(&p.pipe_id));
                    let made = pipe::make(p.pipe_id, data)?;
                    self.pipes.insert(p.pipe_id, made);
                }
                let made = self
                    .pipes
                    .get_mut(&p.pipe_id)
                    .ok_or_else(|| missing("pipe"))?;
                made.end_for(p)
            }
            pb::FdTypes::Fifo => {
                let f = entry.fifo.as_ref().ok_or_else(|| missing("fifo"))?;
                let regf = f.regf_id.ok_or_else(|| missing("fifo path"))?;
                let reg = files
                    .iter()
                    .find(|e| e.id == regf)
                    .and_then(|e| e.reg.as_ref())
                    .ok_or_else(|| Error::Mismatch {
                        what: format!("fifo id {id} names file {regf}, which files.img lacks"),
                    })?;
                if !self.fifos.contains_key(&f.pipe_id) {
                    if self.fifo_data.is_none() {
                        let d = pipe::read_data(self.dir()?, "fifo-data.img", magic::FIFO_DATA)?;
                        self.fifo_data = Some(d);
                    }
                    let data = self.fifo_data.as_ref().and_then(|d| d.get(&f.pipe_id));
                    let held = fifo::hold(&reg.name, f.pipe_id, data)?;
                    self.fifos.insert(f.pipe_id, held);
                }
                fifo::open(f, reg)
            }
            pb::FdTypes::Memfd => {
                let m = entry.memfd.as_ref().ok_or_else(|| missing("memfd"))?;
                let inode = u64::from(m.inode_id);
                self.memfd_fd_for_inode(inode)?;
                let (fd, first) = self
                    .memfds
                    .get_mut(&inode)
                    .ok_or_else(|| missing("memfd"))?;
                memfd::open(fd, m, first)
            }
            pb::FdTypes::Eventfd => {
                eventfd::open(entry.efd.as_ref().ok_or_else(|| missing("eventfd"))?)
            }
            pb::FdTypes::Signalfd => {
                signalfd::open(entry.sgfd.as_ref().ok_or_else(|| missing("signalfd"))?)
            }
            pb::FdTypes::Timerfd => {
                timerfd::open(entry.tfd.as_ref().ok_or_else(|| missing("timerfd"))?)
            }
            pb::FdTypes::Inotify => {
                inotify::open(entry.ify.as_ref().ok_or_else(|| missing("inotify"))?)
            }
            pb::FdTypes::Eventpoll => {
                let e = entry.epfd.as_ref().ok_or_else(|| missing("eventpoll"))?;
                let ep = epoll::create(e)?;
                for t in &e.tfd {
                    let tid = *self.task_fds.get(&t.tfd).ok_or_else(|| Error::Mismatch {
                        what: format!(
                            "epoll id {id} watches fd {}, which the task's fd table lacks",
                            t.tfd
                        ),
                    })?;
                    let target = self.get(files, tid)?;
                    epoll::add_target(&ep, e, t, target)?;
                }
                Ok(ep)
            }
            pb::FdTypes::Tty => {
                let t = entry.tty.as_ref().ok_or_else(|| missing("tty"))?;
                let dir = self.dir()?.to_path_buf();
                self.tty.open(&dir, t)
            }
            pb::FdTypes::Fanotify => {
                let e = entry.ffy.as_ref().ok_or_else(|| missing("fanotify"))?;
                let root = match self.root_host {
                    Some(r) => format!("/proc/{r}/root"),
                    None => String::new(),
                };
                fanotify::open(e, &root)
            }
            pb::FdTypes::Pidfd => {
                let p = entry.pidfd.as_ref().ok_or_else(|| missing("pidfd"))?;
                let hosts = &self.host_pids;
                let host_of = |pid: i32| hosts.get(&pid).copied().unwrap_or(pid);
                let ns = self.tree_pidns.as_ref().map(|f| f.as_fd());
                self.pidfds.open(files, p, &host_of, ns)
            }
            other => Err(Error::Mismatch {
                what: format!(
                    "file id {id} is of type {} which criu-rs cannot restore yet",
                    other.as_str_name()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_links() {
        let k = |l: &str, f: u32| classify(l, f, 1, false);
        assert_eq!(k("pipe:[123]", libc::S_IFIFO), Kind::Pipe);
        assert_eq!(k("/tmp/x.fifo", libc::S_IFIFO), Kind::Fifo);
        assert_eq!(k("anon_inode:[eventfd]", 0), Kind::Eventfd);
        assert_eq!(k("anon_inode:[eventpoll]", 0), Kind::Epoll);
        assert_eq!(k("anon_inode:inotify", 0), Kind::Inotify);
        assert_eq!(k("anon_inode:[timerfd]", libc::S_IFREG), Kind::Timerfd);
        assert_eq!(k("anon_inode:[signalfd]", 0), Kind::Signalfd);
        assert_eq!(k("/etc/passwd", libc::S_IFREG), Kind::Path);
        assert_eq!(
            classify("/tmp/a (deleted)", libc::S_IFREG, 0, false),
            Kind::Ghost
        );
        assert_eq!(
            classify("/memfd:x (deleted)", libc::S_IFREG, 0, true),
            Kind::Memfd
        );
        // Not on the memfd device: a deleted file whose name looks alike.
        assert_eq!(
            classify("/memfd:x (deleted)", libc::S_IFREG, 0, false),
            Kind::Ghost
        );
        assert_eq!(
            classify("/tmp/a (deleted)", libc::S_IFREG, 2, false),
            Kind::Linked
        );
        assert_eq!(k("/tmp/lnk", libc::S_IFLNK), Kind::Path);
        assert!(matches!(
            k("/tmp/lnk (deleted)", libc::S_IFLNK),
            Kind::Unsupported(_)
        ));
    }

    #[test]
    fn link_remaps_go_unless_the_dump_succeeded() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            dir.path().join("link_remap.1"),
            dir.path().join("link_remap.2"),
        );
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        drop(LinkRemaps {
            made: vec![a.clone()],
            kept: false,
        });
        assert!(!a.exists(), "a failed dump left its link remap");
        drop(LinkRemaps {
            made: vec![b.clone()],
            kept: true,
        });
        assert!(b.exists(), "a dump that succeeded lost its link remap");
    }

    #[test]
    fn a_live_name_ending_in_deleted_is_no_deleted_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x (deleted)");
        std::fs::write(&p, b"").unwrap();
        let st = nix::sys::stat::stat(&p).unwrap();
        let me = std::process::id() as i32;
        assert!(live_name(me, p.to_str().unwrap(), &st));
        let other = dir.path().join("y");
        std::fs::write(&other, b"").unwrap();
        let st_other = nix::sys::stat::stat(&other).unwrap();
        assert!(!live_name(me, p.to_str().unwrap(), &st_other));
        assert!(!live_name(me, "/nonexistent (deleted)", &st));
    }

    #[test]
    fn unknown_kinds_fail_naming_fd_and_kind() {
        for (link, fmt, words) in [
            ("anon_inode:[io_uring]", 0, "io_uring"),
            ("anon_inode:bpf-map", 0, "BPF map"),
            ("anon_inode:[perf_event]", 0, "perf event"),
            ("anon_inode:[weird]", 0, "[weird]"),
            ("socket:[99]", libc::S_IFSOCK, "socket"),
        ] {
            let Kind::Unsupported(what) = classify(link, fmt, 1, false) else {
                panic!("{link} should be unsupported");
            };
            assert!(what.contains(words), "{what}");
            let msg = unsupported(42, 7, link, &what).to_string();
            assert!(msg.contains("pid 42"), "{msg}");
            assert!(msg.contains("fd 7"), "{msg}");
            assert!(msg.contains(link), "{msg}");
            assert!(msg.contains(words), "{msg}");
            assert!(msg.contains("cannot dump"), "{msg}");
        }
    }
}

#[cfg(test)]
mod inherit_tests {
    use super::*;

    #[test]
    fn keys_are_crius() {
        let pipe = pb::FileEntry {
            r#type: pb::FdTypes::Pipe as i32,
            id: 3,
            pipe: Some(pb::PipeEntry {
                id: 3,
                pipe_id: 81234,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(inherit_key(&pipe).as_deref(), Some("pipe:[81234]"));
        let reg = pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: 4,
            reg: Some(pb::RegFileEntry {
                id: 4,
                name: "/tmp/log".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(inherit_key(&reg).as_deref(), Some("tmp/log"));
        let other = pb::FileEntry {
            r#type: pb::FdTypes::Eventfd as i32,
            id: 5,
            ..Default::default()
        };
        assert_eq!(inherit_key(&other), None);
    }

    /// A file whose key was given is a duplicate of the inherited fd,
    /// never opened from the images (none exist here).
    #[test]
    fn an_inherited_file_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let files = vec![pb::FileEntry {
            r#type: pb::FdTypes::Pipe as i32,
            id: 7,
            pipe: Some(pb::PipeEntry {
                id: 7,
                pipe_id: 99,
                ..Default::default()
            }),
            ..Default::default()
        }];
        let mut o = Opened::new(dir.path());
        o.set_inherited(&[InheritFd {
            key: "pipe:[99]".into(),
            fd: std::sync::Arc::new(w),
        }]);
        let got = o.get(&files, 7).expect("inherited");
        nix::unistd::write(got, b"x").unwrap();
        let mut b = [0u8; 1];
        assert_eq!(nix::unistd::read(&r, &mut b), Ok(1));
        assert_eq!(&b, b"x");
        let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd).map(|s| s.st_ino).unwrap();
        assert_eq!(ino(got), ino(&r));
        // Without the key, a pipe of its own is made.
        let mut o = Opened::new(dir.path());
        let made = o.get(&files, 7).expect("made");
        assert_ne!(ino(made), ino(&r));
    }
}
