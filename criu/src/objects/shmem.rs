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

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::unistd::{lseek, Whence};
use tracing::debug;

use crate::image::pages::{PagesReader, PagesWriter, PE_PARENT, PE_PRESENT};
use crate::remote::{mem, Tracee};
use crate::sys::PAGE_SIZE;

use super::{Error, IdGen, Result};

pub fn pagemap_name(shmid: u64) -> String {
    format!("pagemap-shmem-{shmid}.img")
}

fn map_files(pid: i32, start: u64, end: u64) -> String {
    format!("/proc/{pid}/map_files/{start:x}-{end:x}")
}

/// One mapping of a shmem object seen by a dump.
#[derive(Debug, Clone)]
struct Seen {
    pid: i32,
    start: u64,
    end: u64,
    pgoff: u64,
    /// Pages of the object (offsets, `(offset, pages)`) not written
    /// through this mapping since the parent images were made; `None`
    /// when that is not known (no parent, not tracked).
    clean: Option<Vec<(u64, u64)>>,
}

/// The shmem objects of a dump: every mapping of each is gathered while
/// the processes are dumped, and the contents written once all are known
/// ([`Dumped::finish`]), since whether a page may be left to the parent
/// images depends on every mapping of it.
#[derive(Debug, Default)]
pub struct Dumped {
    objects: Vec<(u64, Vec<Seen>)>,
    parent: Option<PathBuf>,
    /// Pages left to the parent images, over all objects.
    pub pages_parent: u64,
    /// Pages written, over all objects.
    pub pages_written: u64,
}

/// Sorted, disjoint `(start, end)` byte ranges covering what `ranges`
/// cover.
fn union(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|r| r.0 < r.1);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// `[from, to)` minus the sorted, disjoint `holes`.
fn subtract(from: u64, to: u64, holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = from;
    for &(s, e) in holes {
        if e <= at || s >= to {
            continue;
        }
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < to {
        out.push((at, to));
    }
    out
}

/// One mapping as [`dirty_pages`] sees it: its first and end offset in
/// the object, and its clean pages, `(offset, pages)`.
type MapClean<'a> = (u64, u64, &'a [(u64, u64)]);

/// The pages of an object of `size` bytes that may have changed since the
/// parent images, as sorted `(offset, pages)`: a page is unchanged only
/// when some mapping covers it and every mapping that covers it says it is
/// clean. `maps` are `(offset, end offset, clean (offset, pages))`.
fn dirty_pages(size: u64, maps: &[MapClean<'_>]) -> Vec<(u64, u64)> {
    let size = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let mut dirty: Vec<(u64, u64)> = Vec::new();
    for &(from, to, clean) in maps {
        let clean: Vec<(u64, u64)> = clean.iter().map(|&(o, n)| (o, o + n * PAGE_SIZE)).collect();
        dirty.extend(subtract(from.min(size), to.min(size), &union(clean)));
    }
    let covered = union(maps.iter().map(|&(f, t, _)| (f, t)).collect());
    dirty.extend(subtract(0, size, &covered));
    union(dirty)
        .into_iter()
        .map(|(s, e)| (s, (e - s) / PAGE_SIZE))
        .collect()
}

impl Dumped {
    /// Records a mapping of object `shmid` in `pid` at `[start, end)`, at
    /// `pgoff` in the object. `clean` (addresses, `(addr, pages)`) is what
    /// the dirty tracking says was not written through it since the parent
    /// images `parent` were made.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        pid: i32,
        shmid: u64,
        (start, end): (u64, u64),
        pgoff: u64,
        clean: Option<Vec<(u64, u64)>>,
        parent: Option<&Path>,
    ) {
        if self.parent.is_none() {
            self.parent = parent.map(Path::to_path_buf);
        }
        let clean = clean.map(|c| {
            c.into_iter()
                .filter(|&(a, _)| a >= start)
                .map(|(a, n)| (a - start + pgoff, n))
                .collect()
        });
        let seen = Seen {
            pid,
            start,
            end,
            pgoff,
            clean,
        };
        match self.objects.iter_mut().find(|(id, _)| *id == shmid) {
            Some((_, v)) => v.push(seen),
            None => self.objects.push((shmid, vec![seen])),
        }
    }

    /// Writes the content of every object recorded.
    pub fn finish(&mut self, dir: &Path, pages_ids: &mut IdGen) -> Result<()> {
        let recorded = match &self.parent {
            Some(p) => super::mm_track::recorded_shmem(p)?,
            None => Vec::new(),
        };
        for (shmid, seen) in std::mem::take(&mut self.objects) {
            self.write_one(shmid, &seen, &recorded, dir, pages_ids)?;
        }
        Ok(())
    }

    /// The `(offset, pages)` the parent images have of object `shmid`, when
    /// what changed since is known: every mapping of it is tracked, and
    /// every mapping tracked then is still there.
    fn parent_extents(
        &self,
        shmid: u64,
        seen: &[Seen],
        recorded: &[(i32, u64, u64, u64)],
    ) -> Vec<(u64, u64)> {
        let Some(parent) = &self.parent else {
            return Vec::new();
        };
        if seen.iter().any(|m| m.clean.is_none()) {
            debug!(
                shmid,
                "shared memory mapped anew or untracked: dumped whole"
            );
            return Vec::new();
        }
        let gone = recorded.iter().filter(|r| r.3 == shmid).any(|r| {
            !seen
                .iter()
                .any(|m| (m.pid, m.start, m.end) == (r.0, r.1, r.2))
        });
        if gone {
            debug!(
                shmid,
                "a mapping of shared memory is gone since the parent: dumped whole"
            );
            return Vec::new();
        }
        match PagesReader::open_named(parent, &pagemap_name(shmid)) {
            Ok(r) => r.extents(),
            Err(e) => {
                debug!(
                    shmid,
                    "no pages of shared memory in the parent ({e}): dumped whole"
                );
                Vec::new()
            }
        }
    }

    fn write_one(
        &mut self,
        shmid: u64,
        seen: &[Seen],
        recorded: &[(i32, u64, u64, u64)],
        dir: &Path,
        pages_ids: &mut IdGen,
    ) -> Result<()> {
        let Some(first) = seen.first() else {
            return Ok(());
        };
        let pid = first.pid;
        let path = map_files(pid, first.start, first.end);
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
        // Runs of data; what lies in holes was never written.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut off: i64 = 0;
        while (off as u64) < size {
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
            if to > from {
                runs.push((from, (to - from) / PAGE_SIZE));
            }
            off = to.max(from + PAGE_SIZE) as i64;
        }
        let parent = self.parent_extents(shmid, seen, recorded);
        let split = if parent.is_empty() {
            runs.iter().map(|&(a, n)| (a, n, false)).collect()
        } else {
            let maps: Vec<MapClean<'_>> = seen
                .iter()
                .map(|m| {
                    (
                        m.pgoff,
                        m.pgoff + (m.end - m.start),
                        m.clean.as_deref().unwrap_or(&[]),
                    )
                })
                .collect();
            let dirty = dirty_pages(size, &maps);
            super::mm_track::split(&runs, &dirty, &parent)
        };
        let mut w = PagesWriter::create_named(dir, &pagemap_name(shmid), pages_ids.next_id())?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut written, mut in_parent_pages) = (0u64, 0u64);
        for (from, n, in_parent) in split {
            if in_parent {
                w.add_absent(from, n, PE_PARENT)?;
                in_parent_pages += n;
                continue;
            }
            written += n;
            let to = from + n * PAGE_SIZE;
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
        }
        w.finish()?;
        self.pages_written += written;
        self.pages_parent += in_parent_pages;
        debug!(
            shmid,
            written,
            parent = in_parent_pages,
            "shared memory dumped"
        );
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
                // Runs here and in the parent images, followed.
                for run in pages.pieces()? {
                    let mut off = 0;
                    while off < run.len {
                        let n = (buf.len() as u64).min(run.len - off);
                        let obj = run.vaddr + off;
                        // Only what falls inside this mapping of the object.
                        let lo = obj.max(pgoff);
                        let hi = (obj + n).min(pgoff + (end - start));
                        if lo < hi {
                            let chunk = &mut buf[..(hi - lo) as usize];
                            run.src.read_at(run.offset + off + (lo - obj), chunk)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: u64 = PAGE_SIZE;

    fn pages(v: &[(u64, u64)]) -> Vec<(u64, u64)> {
        v.iter().map(|&(a, n)| (a * P, n)).collect()
    }

    #[test]
    fn a_page_is_clean_only_where_every_mapping_says_so() {
        // Object of 10 pages. Mapping A covers 0-5, clean 0-3; mapping B
        // covers 2-7, clean 2 and 5-6. Pages 8-9 are mapped by nobody.
        let a = pages(&[(0, 4)]);
        let b = pages(&[(2, 1), (5, 2)]);
        let got = dirty_pages(10 * P, &[(0, 6 * P, &a), (2 * P, 8 * P, &b)]);
        // clean: 0, 1 (A only), 2 (both). Dirty: 3 (B), 4 (A), 5 (A), 6? A
        // does not cover 6, B says clean: clean. 7 (B), 8, 9 (nobody).
        assert_eq!(got, pages(&[(3, 3), (7, 3)]));
    }

    #[test]
    fn an_object_nobody_maps_is_all_dirty() {
        assert_eq!(dirty_pages(3 * P, &[]), pages(&[(0, 3)]));
        assert_eq!(dirty_pages(0, &[]), []);
    }

    type Owned = (u64, u64, Vec<(u64, u64)>);

    fn model(size: u64, maps: &[Owned]) -> Vec<u64> {
        let has = |l: &[(u64, u64)], x: u64| l.iter().any(|&(a, n)| a <= x && x < a + n * P);
        (0..size / P)
            .map(|i| i * P)
            .filter(|&x| {
                let cover: Vec<_> = maps.iter().filter(|m| m.0 <= x && x < m.1).collect();
                cover.is_empty() || cover.iter().any(|m| !has(&m.2, x))
            })
            .collect()
    }

    fn mapping() -> impl Strategy<Value = Owned> {
        (
            0u64..12,
            1u64..8,
            prop::collection::vec((0u64..20, 1u64..4), 0..4),
        )
            .prop_map(|(from, len, clean)| {
                let clean = clean
                    .into_iter()
                    .map(|(a, n)| (a * P, n))
                    .collect::<Vec<_>>();
                (from * P, (from + len) * P, clean)
            })
    }

    proptest! {
        #[test]
        fn dirty_pages_is_the_page_by_page_answer(
            size in 0u64..20,
            maps in prop::collection::vec(mapping(), 0..4),
        ) {
            let refs: Vec<MapClean<'_>> =
                maps.iter().map(|m| (m.0, m.1, m.2.as_slice())).collect();
            let got: Vec<u64> = dirty_pages(size * P, &refs)
                .into_iter()
                .flat_map(|(a, n)| (0..n).map(move |i| a + i * P))
                .collect();
            prop_assert_eq!(got, model(size * P, &maps));
        }
    }
}
