//! Shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`, also what a
//! forked child shares with its parent): one shmem object, identified by
//! its inode (`shmid` of the VMAs), mapped by one or more tasks.
//!
//! Dump: the object's content is saved once, from the first task that maps
//! it, through its /proc/PID/map_files link (so pages no task has touched
//! lately are found too), using SEEK_DATA/SEEK_HOLE to skip what was never
//! written — into `pagemap-shmem-<shmid>.img` + `pages-N.img`, offsets in
//! the object as addresses, as CRIU does.
//! Restore: the first task to map it makes a fresh shared anonymous mapping
//! and fills it; every later one maps the same object, opened through the
//! first task's /proc/PID/map_files link.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::unistd::{lseek, Whence};

use crate::image::pages::{PagesReader, PagesWriter, PE_PRESENT};
use crate::remote::{mem, Tracee};
use crate::sys::PAGE_SIZE;

use super::{Error, IdGen, Result};

pub fn pagemap_name(shmid: u64) -> String {
    format!("pagemap-shmem-{shmid}.img")
}

fn map_files(pid: i32, start: u64, end: u64) -> String {
    format!("/proc/{pid}/map_files/{start:x}-{end:x}")
}

/// The shmem objects of a dump already saved.
#[derive(Debug, Default)]
pub struct Dumped {
    done: HashSet<u64>,
}

impl Dumped {
    /// Saves the content of object `shmid`, seen mapped in `pid` at
    /// `[start, end)`, unless it was saved already.
    pub fn dump(
        &mut self,
        pid: i32,
        shmid: u64,
        (start, end): (u64, u64),
        dir: &Path,
        pages_ids: &mut IdGen,
    ) -> Result<()> {
        if !self.done.insert(shmid) {
            return Ok(());
        }
        let path = map_files(pid, start, end);
        let f = File::open(&path).map_err(|source| Error::Io {
            pid,
            what: format!("opening {path} (shared memory {shmid})"),
            source,
        })?;
        let size = f
            .metadata()
            .map_err(|source| Error::Io {
                pid,
                what: format!("stat of {path}"),
                source,
            })?
            .len();
        let mut w = PagesWriter::create_named(dir, &pagemap_name(shmid), pages_ids.next_id())?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off: i64 = 0;
        while (off as u64) < size {
            // Runs of data; what lies in holes was never written.
            let data = match lseek(&f, off, Whence::SeekData) {
                Ok(d) => d,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(errno) => {
                    return Err(Error::Sys {
                        pid,
                        what: format!("SEEK_DATA in {path}"),
                        errno,
                    })
                }
            };
            let hole = lseek(&f, data, Whence::SeekHole).unwrap_or(size as i64);
            let (from, to) = (
                data as u64 & !(PAGE_SIZE - 1),
                (hole as u64).min(size).div_ceil(PAGE_SIZE) * PAGE_SIZE,
            );
            let mut at = from;
            while at < to {
                let n = (buf.len() as u64).min(to - at) as usize;
                let chunk = &mut buf[..n];
                chunk.fill(0);
                f.read_at(chunk, at).map_err(|source| Error::Io {
                    pid,
                    what: format!("reading {path} at {at:#x}"),
                    source,
                })?;
                w.add(at, PE_PRESENT, chunk)?;
                at += n as u64;
            }
            off = to as i64;
        }
        w.finish()?;
        Ok(())
    }
}

/// The shmem objects made so far in a restore: shmid → where the first
/// task mapped it (pid, start, end).
#[derive(Debug, Default)]
pub struct Made {
    first: HashMap<u64, (i32, u64, u64)>,
    /// Criu's end of the socket files travel to the puppets through, and
    /// the number of the puppets' end.
    chan: Option<(std::os::fd::OwnedFd, i32)>,
}

impl Made {
    /// Later mappings of an object are opened by criu (a puppet in a user
    /// namespace may not open /proc/PID/map_files) and passed over this
    /// channel.
    pub fn set_channel(&mut self, ours: std::os::fd::OwnedFd, remote: i32) {
        self.chan = Some((ours, remote));
    }

    /// Maps object `shmid` at `[start, end)` (at `pgoff` in the object) in
    /// puppet `p`, read-write for now; the first mapping of an object is
    /// filled from the images. `path_off` is free scratch for a path.
    #[allow(clippy::too_many_arguments)]
    pub fn map(
        &mut self,
        p: &mut Tracee,
        dir: &Path,
        shmid: u64,
        (start, end): (u64, u64),
        pgoff: u64,
        flags: u64,
        path_off: u64,
    ) -> Result<()> {
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let fixed = flags | libc::MAP_FIXED as u64 | libc::MAP_SHARED as u64;
        match self.first.get(&shmid).copied() {
            None => {
                let got = p.syscall(
                    libc::SYS_mmap,
                    &[
                        start,
                        end - start,
                        rw,
                        fixed | libc::MAP_ANONYMOUS as u64,
                        u64::MAX,
                        0,
                    ],
                )?;
                if got != start {
                    return Err(Error::Mismatch {
                        what: format!("shared memory {shmid} landed at {got:#x}, not {start:#x}"),
                    });
                }
                self.first.insert(shmid, (p.pid(), start, end));
                let pages = PagesReader::open_named(dir, &pagemap_name(shmid))?;
                let mut buf = vec![0u8; 1 << 20];
                for run in pages.runs().iter().filter(|r| r.is_present()) {
                    let mut off = 0;
                    while off < run.len() {
                        let n = (buf.len() as u64).min(run.len() - off);
                        let obj = run.vaddr + off;
                        // Only what falls inside this mapping of the object.
                        let lo = obj.max(pgoff);
                        let hi = (obj + n).min(pgoff + (end - start));
                        if lo < hi {
                            let chunk = &mut buf[..(hi - lo) as usize];
                            pages.read_at(run.offset + off + (lo - obj), chunk)?;
                            mem::write(p.pid(), start + (lo - pgoff), chunk).map_err(|source| {
                                Error::Io {
                                    pid: p.pid(),
                                    what: format!("filling shared memory {shmid}"),
                                    source,
                                }
                            })?;
                        }
                        off += n;
                    }
                }
            }
            Some((pid, s, e)) => {
                let fd = match &self.chan {
                    Some((ours, remote)) => {
                        use std::os::fd::AsFd;
                        let path = map_files(pid, s, e);
                        let f = std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(&path)
                            .map_err(|source| Error::Io {
                                pid: p.pid(),
                                what: format!("opening {path} for shared memory {shmid}"),
                                source,
                            })?;
                        crate::remote::fdpass::pass_fd(
                            p,
                            ours.as_fd(),
                            *remote,
                            f.as_fd(),
                            path_off,
                        )? as u64
                    }
                    None => {
                        // The puppet sees the first mapper by its PID in
                        // the tree's pid namespace.
                        let pid = super::ns::pid::inner(pid)?.pid;
                        let mut path = map_files(pid, s, e).into_bytes();
                        path.push(0);
                        let addr = p.scratch_put(path_off, &path)?;
                        p.syscall(
                            libc::SYS_openat,
                            &[
                                libc::AT_FDCWD as u64,
                                addr,
                                (libc::O_RDWR | libc::O_CLOEXEC) as u64,
                                0,
                            ],
                        )?
                    }
                };
                let got = p.syscall(libc::SYS_mmap, &[start, end - start, rw, fixed, fd, pgoff]);
                p.syscall(libc::SYS_close, &[fd])?;
                let got = got?;
                if got != start {
                    return Err(Error::Mismatch {
                        what: format!("shared memory {shmid} landed at {got:#x}, not {start:#x}"),
                    });
                }
            }
        }
        Ok(())
    }
}
