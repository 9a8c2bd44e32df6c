//! Dirty-page tracking between a pre-dump and the next (pre-)dump, without
//! soft-dirty bits: asynchronous userfaultfd write-protection.
//!
//! A pre-dump creates, inside the task (remote syscalls), a userfaultfd with
//! `UFFD_FEATURE_WP_ASYNC` (see [`crate::sys::uffd`] on why not
//! `WP_UNPOPULATED`), registers every
//! private writable mapping for write-protect tracking and write-protects
//! it. From then on the kernel clears a page's uffd-wp bit when it is
//! written, without stopping the task. The fd has to stay open in the task
//! (closing it ends the registration), so it is moved to a high number, and
//! `uffd-track-<pid>.img` in the pre-dump images says which number, in which
//! task (pid and start time), over which mappings.
//!
//! The next dump with those images as parent asks PAGEMAP_SCAN for the
//! pages with `PAGE_IS_WRITTEN` (or `PAGE_IS_SWAPPED`: a swapped page or a
//! pte marker cannot be told from a hole for sure, so it is copied) of each
//! mapping still registered: a page the image needs that is present, not
//! written since and that the parent images have is recorded as
//! `PE_PARENT` instead of being copied; everything else is copied. Mappings made or replaced since (not registered, or not within
//! a registered one) are copied whole. A final dump closes the fd in the
//! task; a pre-dump write-protects again and keeps it.
//!
//! When tracking cannot be armed (no userfaultfd here, a seccomp filter, the
//! task's own userfaultfd on a mapping…) the pre-dump still writes its pages
//! and the next dump writes everything: correct, only not incremental.

use std::fs::File;
use std::path::Path;

use tracing::{debug, warn};

use crate::image::pages::PagesReader;
use crate::image::{self, magic, pb};
use crate::proc::{self, MapName, VmFlag};
use crate::remote::Tracee;
use crate::sys::pagemap_scan::{
    self, PageRegion, Query, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_WRITTEN,
};
use crate::sys::{uffd, Errno, PAGE_SIZE};

use super::{Error, Result};

/// Name of the tracking image of the task with image pid `img_pid`.
pub fn track_file(img_pid: i32) -> String {
    format!("uffd-track-{img_pid}.img")
}

/// Highest fd number the tracking fd is put at (below the task's
/// `RLIMIT_NOFILE` when that is lower).
const HIGH_FD: u64 = 1024;

// ---------------------------------------------------------------------------
// Which pages go to the parent: pure logic on sorted run lists.

/// Whether the sorted, disjoint `(addr, pages)` list covers `addr`.
fn covers(list: &[(u64, u64)], addr: u64) -> bool {
    let i = list.partition_point(|&(a, n)| a + n * PAGE_SIZE <= addr);
    list.get(i).is_some_and(|&(a, _)| a <= addr)
}

/// The first start or end of a run of `list` above `addr`, or `limit`.
fn next_edge(list: &[(u64, u64)], addr: u64, limit: u64) -> u64 {
    let i = list.partition_point(|&(a, n)| a + n * PAGE_SIZE <= addr);
    match list.get(i) {
        Some(&(a, _)) if a > addr => a.min(limit),
        Some(&(a, n)) => (a + n * PAGE_SIZE).min(limit),
        None => limit,
    }
}

/// Splits the pages an image needs (`runs`) into pages to copy and pages
/// to leave to the parent: a page goes to the parent when it was not
/// `written` since the parent was made and the parent has it. Every list is
/// `(addr, pages)`, sorted and disjoint; the result is `(addr, pages,
/// in_parent)` in address order, covering exactly `runs`.
pub fn split(
    runs: &[(u64, u64)],
    written: &[(u64, u64)],
    parent: &[(u64, u64)],
) -> Vec<(u64, u64, bool)> {
    let mut out: Vec<(u64, u64, bool)> = Vec::with_capacity(runs.len());
    for &(start, n) in runs {
        let end = start + n * PAGE_SIZE;
        let mut at = start;
        while at < end {
            let stop = next_edge(written, at, end).min(next_edge(parent, at, end));
            let in_parent = !covers(written, at) && covers(parent, at);
            let pages = (stop - at) / PAGE_SIZE;
            match out.last_mut() {
                Some((a, m, p)) if *p == in_parent && *a + *m * PAGE_SIZE == at => *m += pages,
                _ => out.push((at, pages, in_parent)),
            }
            at = stop;
        }
    }
    out
}

/// Whether write tracking is armed on a mapping: private, one that may be
/// made writable (a read-only one may be written after an mprotect), and
/// an ordinary mapping of memory or of a file.
pub fn trackable(s: &proc::SmapsEntry) -> bool {
    let m = &s.map;
    let special = matches!(
        m.name,
        MapName::Vdso
            | MapName::Vvar
            | MapName::VvarVclock
            | MapName::Vsyscall
            | MapName::Special(_)
            | MapName::AnonShmemNamed(_)
    );
    let odd = [
        VmFlag::Io,
        VmFlag::PfnMap,
        VmFlag::Hugetlb,
        VmFlag::UffdMissing,
    ]
    .iter()
    .any(|&f| s.vm_flags.contains(f));
    !m.perms.shared
        && s.vm_flags.contains(VmFlag::MayWrite)
        && !special
        && !odd
        && !m.is_anon_shmem()
}

/// Whether write tracking is armed on a mapping of shared anonymous memory
/// (see [`super::shmem`]): every such mapping but hugetlb ones.
pub fn shmem_trackable(s: &proc::SmapsEntry) -> bool {
    let odd = [
        VmFlag::Io,
        VmFlag::PfnMap,
        VmFlag::Hugetlb,
        VmFlag::UffdMissing,
    ]
    .iter()
    .any(|&f| s.vm_flags.contains(f));
    s.map.perms.shared && s.map.is_anon_shmem() && !odd
}

// ---------------------------------------------------------------------------
// Reading back what the pre-dump left.

fn read_entry(dir: &Path, img_pid: i32) -> Result<Option<pb::MmTrackEntry>> {
    if !dir.join(track_file(img_pid)).exists() {
        return Ok(None);
    }
    let v: Vec<pb::MmTrackEntry> = image::read_image(dir, &track_file(img_pid), magic::MM_TRACK)?;
    Ok(v.into_iter().next())
}

/// Whether fd `fd` of `pid` is a userfaultfd.
fn is_uffd(pid: i32, fd: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|l| l.as_os_str() == "anon_inode:[userfaultfd]")
}

/// The tracking a parent pre-dump left in a task, checked against the
/// task as it is now.
#[derive(Debug, Clone, Default)]
pub struct Armed {
    /// The tracking fd in the task, when it is still there.
    pub uffd: Option<i32>,
    /// Mappings registered for tracking then, `(start, end)`.
    pub vmas: Vec<(u64, u64)>,
    /// Of those, the mappings of shared anonymous memory, `(start, end,
    /// shmid)`.
    pub shmem: Vec<(u64, u64, u64)>,
}

impl Armed {
    /// What the parent images in `parent_dir` say about task `pid`
    /// (image pid `img_pid`): nothing when they say nothing or the task is
    /// another one (a reused pid), or its fd is gone.
    pub fn find(pid: i32, img_pid: i32, parent_dir: &Path) -> Result<Self> {
        let Some(e) = read_entry(parent_dir, img_pid)? else {
            warn!(
                pid,
                "no write tracking in the parent images ({}): every page is dumped",
                track_file(img_pid)
            );
            return Ok(Self::default());
        };
        let start_time = proc::read_stat(pid)?.starttime;
        if e.pid != pid as u32 || e.start_time != start_time {
            warn!(
                pid,
                "the parent images were made of another task (pid {}, start {}): every page is dumped",
                e.pid,
                e.start_time
            );
            return Ok(Self::default());
        }
        if e.uffd < 0 || !is_uffd(pid, e.uffd) {
            warn!(
                pid,
                fd = e.uffd,
                "write tracking was not armed or is gone: every page is dumped"
            );
            return Ok(Self::default());
        }
        Ok(Armed {
            uffd: Some(e.uffd),
            vmas: e.vmas.iter().map(|v| (v.start, v.end)).collect(),
            shmem: e
                .vmas
                .iter()
                .filter_map(|v| Some((v.start, v.end, v.shmid?)))
                .collect(),
        })
    }

    /// Whether `[start, end)` lies within what was registered (mappings
    /// merge and split since: the union of them counts).
    fn registered(&self, start: u64, end: u64) -> bool {
        if self.uffd.is_none() {
            return false;
        }
        let mut at = start;
        for &(s, e) in &self.vmas {
            if s <= at && at < e {
                at = e;
            }
            if at >= end {
                return true;
            }
        }
        false
    }
}

/// What the parent images recorded of the threads of task `pid` (image pid
/// `img_pid`) left resuming an interrupted syscall through
/// `restart_syscall` (see [`crate::objects::thread::syscall_of`]): nothing
/// when they say nothing of it or were made of another task.
pub fn restarts(pid: i32, img_pid: i32, parent_dir: &Path) -> Result<Vec<pb::MmTrackRestart>> {
    let Some(e) = read_entry(parent_dir, img_pid)? else {
        return Ok(Vec::new());
    };
    if e.pid != pid as u32 || e.start_time != proc::read_stat(pid)?.starttime {
        return Ok(Vec::new());
    }
    Ok(e.restarts)
}

/// The bit the kernel adds to the features of a userfaultfd once its API
/// handshake is done (shown in fdinfo).
const UFFD_FEATURE_INITIALIZED: u64 = 1 << 31;

/// Whether the fdinfo of a userfaultfd (`API:\taa:FEATURES:IOCTLS`) shows
/// criu's write tracking: exactly the features a pre-dump asks for.
pub fn is_tracking_fdinfo(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("API:"))
        .and_then(|v| {
            let mut it = v.trim().split(':');
            let api = u64::from_str_radix(it.next()?, 16).ok()?;
            let features = u64::from_str_radix(it.next()?, 16).ok()?;
            Some(
                api == uffd::UFFD_API
                    && features & !UFFD_FEATURE_INITIALIZED == uffd::TRACK_FEATURES,
            )
        })
        .unwrap_or(false)
}

/// The userfaultfds of `pid` that are criu's write tracking by what they
/// are, when no image says so (a plain dump after a pre-dump, a child
/// forked since): a userfaultfd with exactly the tracking features. Closing
/// one ends only the tracking; a task's own userfaultfd, which criu cannot
/// dump anyway, is never one of them unless it asks for just these
/// features.
pub fn leftover(pid: i32) -> Result<Vec<i32>> {
    let dir = format!("/proc/{pid}/fd");
    let rd = std::fs::read_dir(&dir).map_err(|source| Error::Io {
        pid,
        what: format!("listing {dir}"),
        source,
    })?;
    let mut out: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| is_uffd(pid, fd))
        .filter(|fd| {
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .is_ok_and(|s| is_tracking_fdinfo(&s))
        })
        .collect();
    out.sort_unstable();
    if !out.is_empty() {
        debug!(pid, fds = ?out, "write-tracking userfaultfds of a pre-dump found");
    }
    Ok(out)
}

/// Tracking fds that `pid` holds but did not arm: inherited by a fork
/// from a process the parent images tracked (the same open userfaultfd,
/// by kcmp). They are criu's, to be closed like the process's own.
pub fn inherited(pid: i32, parent_dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for t in recorded(parent_dir)? {
        let (owner, fd) = (t.pid as i32, t.uffd);
        if owner == pid || fd < 0 || out.contains(&fd) || !is_uffd(pid, fd) || !is_uffd(owner, fd) {
            continue;
        }
        if crate::sys::kcmp::same_file(pid, fd, owner, fd).unwrap_or(false) {
            out.push(fd);
        }
    }
    Ok(out)
}

/// Every tracking record (`uffd-track-PID.img`) of the pre-dump in
/// `parent_dir` (none when it cannot be listed).
fn recorded(parent_dir: &Path) -> Result<Vec<pb::MmTrackEntry>> {
    let Ok(rd) = std::fs::read_dir(parent_dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(img_pid) = name.to_str().and_then(|n| {
            n.strip_prefix("uffd-track-")?
                .strip_suffix(".img")?
                .parse()
                .ok()
        }) else {
            continue;
        };
        out.extend(read_entry(parent_dir, img_pid)?);
    }
    Ok(out)
}

/// Every mapping of shared anonymous memory a pre-dump in `parent_dir`
/// armed tracking on, in any task: `(host pid, start, end, shmid)`.
pub fn recorded_shmem(parent_dir: &Path) -> Result<Vec<(i32, u64, u64, u64)>> {
    let mut out = Vec::new();
    for t in recorded(parent_dir)? {
        if t.uffd < 0 {
            continue;
        }
        for v in &t.vmas {
            if let Some(shmid) = v.shmid {
                out.push((t.pid as i32, v.start, v.end, shmid));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Decides, for one process dumped with parent images, which pages are
/// left to the parent.
#[derive(Debug)]
pub struct Incremental {
    pid: i32,
    pagemap: File,
    armed: Armed,
    /// `(addr, pages)` the parent images have, sorted.
    parent: Vec<(u64, u64)>,
    regions: Vec<PageRegion>,
    /// The parent images.
    parent_dir: std::path::PathBuf,
    /// Pages left to the parent so far.
    pub pages_parent: u64,
    /// Pages of tracked mappings found written (or not present) so far.
    pub pages_written: u64,
}

impl Incremental {
    /// For task `pid` (image pid `img_pid`), parent images in `parent_dir`
    /// and the tracking they armed.
    pub fn open(pid: i32, img_pid: i32, parent_dir: &Path, armed: Armed) -> Result<Self> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap")).map_err(|source| Error::Io {
            pid,
            what: format!("opening /proc/{pid}/pagemap"),
            source,
        })?;
        let parent = if armed.uffd.is_some() {
            match PagesReader::open(parent_dir, img_pid as u32) {
                Ok(r) => r.extents(),
                Err(e) => {
                    warn!(
                        pid,
                        "the parent images have no pages of it ({e}): every page is dumped"
                    );
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        Ok(Incremental {
            pid,
            pagemap,
            armed,
            parent,
            regions: Vec::new(),
            parent_dir: parent_dir.to_path_buf(),
            pages_parent: 0,
            pages_written: 0,
        })
    }

    /// The tracking fd in the task.
    pub fn uffd(&self) -> Option<i32> {
        self.armed.uffd
    }

    /// The pages of `[start, end)` that must be copied: written since they
    /// were write-protected, or not present (swapped, or a marker); `None`
    /// when the mapping is not (or no longer) tracked.
    fn must_copy(&mut self, start: u64, end: u64) -> Result<Option<Vec<(u64, u64)>>> {
        let q = Query {
            any: PAGE_IS_WRITTEN | PAGE_IS_SWAPPED,
            returned: PAGE_IS_WRITTEN | PAGE_IS_SWAPPED,
            ..Query::default()
        };
        self.scan_runs(start, end, &q, || {
            format!("PAGEMAP_SCAN for written pages of {start:#x}-{end:#x}")
        })
    }

    /// The pages of `[start, end)` matching `q`, as runs `(addr, pages)`;
    /// `None` when the kernel cannot answer for the range (not tracked
    /// with write-protection: the caller then copies it whole). `what`
    /// names the scan in errors.
    fn scan_runs(
        &mut self,
        start: u64,
        end: u64,
        q: &Query,
        what: impl Fn() -> String,
    ) -> Result<Option<Vec<(u64, u64)>>> {
        if self.regions.is_empty() {
            self.regions = vec![PageRegion::default(); 1024];
        }
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut at = start;
        while at < end {
            let r = pagemap_scan::scan_flags(
                &self.pagemap,
                at,
                end,
                q,
                &mut self.regions,
                pagemap_scan::PM_SCAN_CHECK_WPASYNC,
            );
            let (n, walk_end) = match r {
                Ok(x) => x,
                Err(errno @ (Errno::EPERM | Errno::ENOTTY | Errno::EINVAL)) => {
                    debug!(pid = self.pid, "{}: {errno}: taken as untracked", what());
                    return Ok(None);
                }
                Err(errno) => {
                    return Err(Error::Sys {
                        pid: self.pid,
                        what: what(),
                        errno,
                    })
                }
            };
            for r in &self.regions[..n] {
                if r.end <= r.start {
                    continue;
                }
                let pages = (r.end - r.start) / PAGE_SIZE;
                match out.last_mut() {
                    Some((a, m)) if *a + *m * PAGE_SIZE == r.start => *m += pages,
                    _ => out.push((r.start, pages)),
                }
            }
            if walk_end <= at {
                break;
            }
            at = walk_end;
        }
        Ok(Some(out))
    }

    /// The parent images this process is dumped against.
    pub fn parent_dir(&self) -> &Path {
        &self.parent_dir
    }

    /// For a mapping `s` of shared anonymous memory `shmid`: the pages
    /// (`(addr, pages)`) not written through it since the parent was made,
    /// or `None` when it is not tracked (made or replaced since, or the
    /// tracking is gone). Clean means write-protected still: present with
    /// the uffd-wp bit, or a uffd-wp marker. A page not mapped here (a
    /// hole) is never clean: a written page that was unmapped since, by
    /// reclaim or MADV_DONTNEED, leaves a hole too.
    pub fn shmem_clean(
        &mut self,
        s: &proc::SmapsEntry,
        shmid: u64,
    ) -> Result<Option<Vec<(u64, u64)>>> {
        let (start, end) = (s.map.start, s.map.end);
        let recorded = self.armed.uffd.is_some()
            && self
                .armed
                .shmem
                .iter()
                .any(|&(a, b, id)| a == start && b == end && id == shmid);
        if !recorded || !s.vm_flags.contains(VmFlag::UffdWp) {
            debug!(
                pid = self.pid,
                "shared memory {shmid} at {start:#x}-{end:#x} is mapped anew since the parent"
            );
            return Ok(None);
        }
        let q = Query {
            inverted: PAGE_IS_WRITTEN,
            all: PAGE_IS_WRITTEN,
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            returned: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        };
        self.scan_runs(start, end, &q, || {
            format!("PAGEMAP_SCAN for clean pages of shared memory {shmid} at {start:#x}-{end:#x}")
        })
    }

    /// Splits the pages of mapping `s` the image needs (`runs`) into pages
    /// to copy and pages left to the parent (see [`split`]).
    pub fn split_vma(
        &mut self,
        s: &proc::SmapsEntry,
        runs: Vec<(u64, u64)>,
    ) -> Result<Vec<(u64, u64, bool)>> {
        let (start, end) = (s.map.start, s.map.end);
        let all = |runs: Vec<(u64, u64)>| runs.into_iter().map(|(a, n)| (a, n, false)).collect();
        if runs.is_empty() || self.parent.is_empty() {
            return Ok(all(runs));
        }
        if !s.vm_flags.contains(VmFlag::UffdWp) || !self.armed.registered(start, end) {
            debug!(
                pid = self.pid,
                "mapping {start:#x}-{end:#x} is new or changed since the parent: dumped whole"
            );
            return Ok(all(runs));
        }
        let Some(written) = self.must_copy(start, end)? else {
            debug!(
                pid = self.pid,
                "mapping {start:#x}-{end:#x} is not tracked: dumped whole"
            );
            return Ok(all(runs));
        };
        let out = split(&runs, &written, &self.parent);
        self.pages_written += out.iter().filter(|r| !r.2).map(|r| r.1).sum::<u64>();
        self.pages_parent += out.iter().filter(|r| r.2).map(|r| r.1).sum::<u64>();
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Arming, inside the task.

/// The highest fd number below `limit` that `pid` does not use.
fn free_high_fd(pid: i32, limit: u64) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let used: Vec<u64> = std::fs::read_dir(&dir)
        .map_err(|source| Error::Io {
            pid,
            what: format!("listing {dir}"),
            source,
        })?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    (3..limit)
        .rev()
        .find(|n| !used.contains(n))
        .ok_or_else(|| Error::Unsupported {
            pid,
            what: format!("no free fd below {limit} for the write-tracking userfaultfd"),
        })
}

/// Creates the tracking userfaultfd in the task, at a high fd number.
/// `None` (and a warning) when the kernel or the task's limits refuse.
fn create(t: &mut Tracee, pid: i32, scratch_off: u64) -> Result<Option<(i32, u64)>> {
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let mut fd = t.syscall_raw(libc::SYS_userfaultfd, &[flags | uffd::UFFD_USER_MODE_ONLY])?;
    if fd == -(libc::EINVAL as i64) {
        // A kernel before user-mode-only userfaultfds.
        fd = t.syscall_raw(libc::SYS_userfaultfd, &[flags])?;
    }
    if fd < 0 {
        warn!(
            pid,
            "cannot create a userfaultfd in the task ({}): memory is not tracked, the next dump writes every page",
            Errno::from_raw(-fd as i32)
        );
        return Ok(None);
    }
    let fd = fd as u64;
    let addr = t.scratch_put(scratch_off, &uffd::api_arg(uffd::TRACK_FEATURES))?;
    let r = t.syscall_raw(libc::SYS_ioctl, &[fd, uffd::UFFDIO_API, addr])?;
    let mut back = [0u8; 24];
    t.scratch_get(scratch_off, &mut back)?;
    let features = uffd::api_features(&back).unwrap_or(0);
    if r < 0 || features & uffd::TRACK_FEATURES != uffd::TRACK_FEATURES {
        t.syscall(libc::SYS_close, &[fd])?;
        warn!(
            pid,
            "this kernel has no asynchronous userfaultfd write-protection (UFFDIO_API: {}, features {features:#x}): memory is not tracked, the next dump writes every page",
            if r < 0 { Errno::from_raw(-r as i32).to_string() } else { "ok".into() }
        );
        return Ok(None);
    }
    let nofile = proc::read_limits(pid)?
        .get(proc::limits::Resource::Nofile)
        .soft;
    let target = free_high_fd(pid, nofile.min(HIGH_FD))?;
    if target != fd {
        t.syscall(libc::SYS_dup3, &[fd, target, libc::O_CLOEXEC as u64])?;
        t.syscall(libc::SYS_close, &[fd])?;
    }
    Ok(Some((target as i32, features)))
}

/// Arms (or re-arms) write tracking in the stopped task `pid`: the
/// userfaultfd `prev` left, else a new one; every trackable mapping of
/// `smaps` registered (remotely) and its pages write-protected (from criu). `t` is the task's leader with a
/// scratch area (`scratch_off` free in it; the scratch mapping itself is
/// left alone). Returns the entry for `uffd-track-<pid>.img`; its `uffd` is
/// -1 when tracking could not be armed.
pub fn arm(
    t: &mut Tracee,
    pid: i32,
    smaps: &[proc::SmapsEntry],
    prev: &Armed,
    scratch_off: u64,
) -> Result<pb::MmTrackEntry> {
    let start_time = proc::read_stat(pid)?.starttime;
    let mut entry = pb::MmTrackEntry {
        pid: pid as u32,
        start_time,
        uffd: -1,
        features: None,
        vmas: Vec::new(),
        restarts: Vec::new(),
    };
    let (fd, features) = match prev.uffd {
        Some(fd) => (fd, None),
        None => match create(t, pid, scratch_off)? {
            Some((fd, f)) => (fd, Some(f)),
            None => return Ok(entry),
        },
    };
    entry.uffd = fd;
    entry.features = features;
    match register_all(t, pid, smaps, prev, fd as u64, scratch_off, &mut entry) {
        Ok(()) => Ok(entry),
        Err(e) => {
            // Leave nothing of ours in the task: without its image no dump
            // would know the fd.
            let _ = t.syscall(libc::SYS_close, &[fd as u64]);
            Err(e)
        }
    }
}

/// Registers the trackable mappings of `smaps` with the task's fd `fd` and
/// write-protects their pages, into `entry.vmas`.
fn register_all(
    t: &mut Tracee,
    pid: i32,
    smaps: &[proc::SmapsEntry],
    prev: &Armed,
    fd: u64,
    scratch_off: u64,
    entry: &mut pb::MmTrackEntry,
) -> Result<()> {
    let scratch = t.scratch().unwrap_or((0, 0));
    let mut skipped = 0usize;
    for s in smaps.iter().filter(|s| trackable(s) || shmem_trackable(s)) {
        let (start, end) = (s.map.start, s.map.end);
        let shmid = shmem_trackable(s).then_some(s.map.inode);
        if start < scratch.0 + scratch.1 && scratch.0 < end {
            continue;
        }
        let len = end - start;
        if !s.vm_flags.contains(VmFlag::UffdWp) {
            let addr = t.scratch_put(scratch_off, &uffd::register_arg(start, len))?;
            let r = t.syscall_raw(libc::SYS_ioctl, &[fd, uffd::UFFDIO_REGISTER, addr])?;
            if r < 0 {
                debug!(
                    pid,
                    "mapping {start:#x}-{end:#x} cannot be tracked (UFFDIO_REGISTER: {})",
                    Errno::from_raw(-r as i32)
                );
                skipped += 1;
                continue;
            }
        } else if !prev.registered(start, end) {
            // Registered with a userfaultfd of the task's own.
            skipped += 1;
            continue;
        }
        entry.vmas.push(pb::MmTrackVma { start, end, shmid });
    }
    protect(pid, &mut entry.vmas, &mut skipped)?;
    if skipped > 0 {
        warn!(
            pid,
            skipped, "mappings cannot be tracked: the next dump writes them whole"
        );
    }
    debug!(pid, fd, mappings = entry.vmas.len(), "write tracking armed");
    Ok(())
}

/// Write-protects the pages that exist (present or swapped) in the
/// registered mappings `vmas`, from criu: PAGEMAP_SCAN with
/// `PM_SCAN_WP_MATCHING`. Holes are left alone. A mapping the kernel will
/// not protect is dropped from `vmas` (and counted in `skipped`).
fn protect(pid: i32, vmas: &mut Vec<pb::MmTrackVma>, skipped: &mut usize) -> Result<()> {
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).map_err(|source| Error::Io {
        pid,
        what: format!("opening /proc/{pid}/pagemap"),
        source,
    })?;
    let q = Query {
        any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        returned: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        ..Query::default()
    };
    // Shared memory: every page, holes included (the kernel leaves a
    // uffd-wp marker there), so that a hole later means "unmapped since".
    let q_shmem = Query {
        returned: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        ..Query::default()
    };
    let flags = pagemap_scan::PM_SCAN_WP_MATCHING | pagemap_scan::PM_SCAN_CHECK_WPASYNC;
    let mut regions = vec![PageRegion::default(); 1024];
    let mut keep = Vec::with_capacity(vmas.len());
    'vma: for v in vmas.drain(..) {
        let mut at = v.start;
        let q = if v.shmid.is_some() { &q_shmem } else { &q };
        while at < v.end {
            match pagemap_scan::scan_flags(&pagemap, at, v.end, q, &mut regions, flags) {
                Ok((_, walk_end)) if walk_end > at => at = walk_end,
                Ok(_) => break,
                Err(errno @ (Errno::EPERM | Errno::EINVAL | Errno::ENOTTY)) => {
                    debug!(
                        pid,
                        "mapping {:#x}-{:#x} cannot be write-protected ({errno})", v.start, v.end
                    );
                    *skipped += 1;
                    continue 'vma;
                }
                Err(errno) => {
                    return Err(Error::Sys {
                        pid,
                        what: format!(
                            "write-protecting {:#x}-{:#x} with PAGEMAP_SCAN",
                            v.start, v.end
                        ),
                        errno,
                    })
                }
            }
        }
        keep.push(v);
    }
    *vmas = keep;
    Ok(())
}

/// Writes `uffd-track-<img_pid>.img`.
pub fn write(dir: &Path, img_pid: i32, entry: &pb::MmTrackEntry) -> Result<()> {
    image::write_image(dir, &track_file(img_pid), magic::MM_TRACK, [entry])?;
    Ok(())
}

/// Closes the tracking fd in the task (a final dump: it must not be dumped
/// as a file, and the task need not be tracked any more).
pub fn disarm(t: &mut Tracee, fd: i32) -> Result<()> {
    t.syscall(libc::SYS_close, &[fd as u64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: u64 = PAGE_SIZE;

    fn pages(list: &[(u64, u64)]) -> Vec<(u64, u64)> {
        list.iter().map(|&(a, n)| (a * P, n)).collect()
    }

    #[test]
    fn tracking_userfaultfd_is_known_by_its_features() {
        let info = |api: &str| {
            format!("pos:\t0\nflags:\t02004000\nmnt_id:\t17\nino:\t3045097\npending:\t0\ntotal:\t0\nAPI:\t{api}\n")
        };
        // What this kernel shows for the pre-dump's fd.
        assert!(is_tracking_fdinfo(&info("aa:8000a000:80000000000001ff")));
        assert!(is_tracking_fdinfo(&info("aa:a000:1ff")));
        // A task's own: other features, or missing-page handling only.
        assert!(!is_tracking_fdinfo(&info("aa:8000e000:80000000000001ff")));
        assert!(!is_tracking_fdinfo(&info("aa:80000000:1ff")));
        assert!(!is_tracking_fdinfo(&info("ab:8000a000:1ff")));
        assert!(!is_tracking_fdinfo("pos:\t0\nflags:\t02\n"));
        assert!(!is_tracking_fdinfo(&info("aa:zz:1ff")));
    }

    #[test]
    fn registered_ranges_may_span_merged_mappings() {
        let a = Armed {
            uffd: Some(1000),
            vmas: vec![(0x1000, 0x3000), (0x3000, 0x5000), (0x8000, 0x9000)],
            shmem: Vec::new(),
        };
        assert!(a.registered(0x1000, 0x5000));
        assert!(a.registered(0x2000, 0x4000));
        assert!(a.registered(0x8000, 0x9000));
        assert!(!a.registered(0x4000, 0x6000));
        assert!(!a.registered(0x7000, 0x9000));
        let gone = Armed {
            uffd: None,
            ..a.clone()
        };
        assert!(!gone.registered(0x1000, 0x2000));
    }

    #[test]
    fn unwritten_pages_the_parent_has_go_to_it() {
        // Needed: pages 0-9 and 20-21. Written: 2-3 and 21. Parent: 0-5, 8-30.
        let got = split(
            &pages(&[(0, 10), (20, 2)]),
            &pages(&[(2, 2), (21, 1)]),
            &pages(&[(0, 6), (8, 23)]),
        );
        let got: Vec<_> = got.into_iter().map(|(a, n, p)| (a / P, n, p)).collect();
        assert_eq!(
            got,
            [
                (0, 2, true),
                (2, 2, false),
                (4, 2, true),
                (6, 2, false), // not in the parent: a page new since
                (8, 2, true),
                (20, 1, true),
                (21, 1, false),
            ]
        );
    }

    #[test]
    fn nothing_goes_to_an_empty_parent_and_gone_pages_stay_out() {
        let runs = pages(&[(4, 3)]);
        assert_eq!(split(&runs, &[], &[]), [(4 * P, 3, false)]);
        // The parent had 0-9; pages 0-3 and 7-9 are gone now (holes).
        assert_eq!(split(&runs, &[], &pages(&[(0, 10)])), [(4 * P, 3, true)]);
        assert_eq!(split(&[], &pages(&[(0, 1)]), &pages(&[(0, 1)])), []);
    }

    /// Page-by-page model: the same answer, whatever the lists.
    fn model(runs: &[(u64, u64)], w: &[(u64, u64)], p: &[(u64, u64)]) -> Vec<(u64, bool)> {
        let has = |l: &[(u64, u64)], x: u64| l.iter().any(|&(a, n)| a <= x && x < a + n * P);
        runs.iter()
            .flat_map(|&(a, n)| (0..n).map(move |i| a + i * P))
            .map(|x| (x, !has(w, x) && has(p, x)))
            .collect()
    }

    fn list() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..4, 1u64..5), 0..8).prop_map(|v| {
            let mut at = 0;
            v.into_iter()
                .map(|(gap, n)| {
                    let a = (at + gap) * P;
                    at += gap + n + 1;
                    (a, n)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn split_is_the_page_by_page_answer(runs in list(), w in list(), p in list()) {
            let got: Vec<(u64, bool)> = split(&runs, &w, &p)
                .into_iter()
                .flat_map(|(a, n, f)| (0..n).map(move |i| (a + i * P, f)))
                .collect();
            prop_assert_eq!(got, model(&runs, &w, &p));
        }
    }
}
