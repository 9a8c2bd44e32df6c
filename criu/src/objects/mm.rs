//! A task's address space: its mappings (`mm-*.img`), their pages
//! (`pagemap-*.img` + `pages-*.img`) and the mm fields (brk, arg/env
//! ranges, auxv, exe).
//!
//! Dump reads the layout from /proc/PID/smaps, finds the pages that exist
//! with /proc/PID/pagemap and copies them out with `process_vm_readv`.
//! Restore runs in a puppet: criu's own mappings are dropped, the vDSO and
//! vvar pages are moved to where the task had them, every mapping is made
//! again and filled with `process_vm_writev`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::image::pages::{PagesReader, PE_LAZY, PE_PARENT, PE_PRESENT};
use crate::image::{self, magic, pb};
use crate::proc::{self, MapName, VmFlag};
use crate::remote::blob::{Arg, Batch, Call};
use crate::remote::Tracee;
use crate::sys::PAGE_SIZE;

use super::files::{FileTable, Opened};
use super::mm_pages::{Kind as PageKind, PageCopier, PageFinder};
use super::{shmem, Error, IdGen, Result};

// VMA status bits of the image format.
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
pub const VMA_AREA_STACK: u32 = 1 << 1;
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
pub const VMA_AREA_VDSO: u32 = 1 << 3;
pub const VMA_AREA_HEAP: u32 = 1 << 5;
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
pub const VMA_FILE_SHARED: u32 = 1 << 7;
pub const VMA_ANON_SHARED: u32 = 1 << 8;
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;
pub const VMA_AREA_VVAR: u32 = 1 << 12;
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
/// Not a mapping: a run of MADV_GUARD_INSTALL guard pages inside one,
/// listed after every real area (upstream CRIU 4.2 writes it so).
pub const VMA_AREA_GUARD: u32 = 1 << 16;

/// madvise advice that installs guard pages (Linux 6.13).
const MADV_GUARD_INSTALL: u64 = 102;

pub fn mm_file(pid: i32) -> String {
    format!("mm-{pid}.img")
}

/// madvise advice that /proc shows as VmFlags, as bits `1 << MADV_*`.
fn madv_bits(flags: &proc::VmFlags) -> u64 {
    let pairs = [
        (VmFlag::DontDump, libc::MADV_DONTDUMP),
        (VmFlag::DontCopy, libc::MADV_DONTFORK),
        (VmFlag::WipeOnFork, libc::MADV_WIPEONFORK),
        (VmFlag::HugePage, libc::MADV_HUGEPAGE),
        (VmFlag::NoHugePage, libc::MADV_NOHUGEPAGE),
        (VmFlag::Mergeable, libc::MADV_MERGEABLE),
        (VmFlag::SeqRead, libc::MADV_SEQUENTIAL),
        (VmFlag::RandRead, libc::MADV_RANDOM),
    ];
    pairs
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .fold(0, |acc, (_, m)| acc | (1u64 << m))
}

/// `MAP_HUGETLB` and the huge page size (log2 of it, in the bits from
/// `MAP_HUGE_SHIFT`) of a hugetlb area.
fn hugetlb_flags(pid: i32, s: &proc::SmapsEntry) -> Result<u32> {
    let bytes = s.sizes.kernel_page_size_kb * 1024;
    if !bytes.is_power_of_two() || bytes <= PAGE_SIZE {
        return Err(Error::Mismatch {
            what: format!(
                "pid {pid}: hugetlb area {:#x}-{:#x} has a page size of {} kB",
                s.map.start, s.map.end, s.sizes.kernel_page_size_kb
            ),
        });
    }
    Ok(libc::MAP_HUGETLB as u32 | (bytes.trailing_zeros() << libc::MAP_HUGE_SHIFT))
}

/// Whether a VMA's pages are part of the image (and which of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pages {
    /// None (kernel-provided or backed by a shared file).
    Skip,
    /// Every present or swapped page.
    Anon,
    /// Only the pages written since mapping (no longer the file's).
    PrivateFile,
    /// Every page, present or not: the vDSO, whose code upstream's restore
    /// reads from the image to compare it with the running kernel's. Our
    /// own restore moves the kernel's vDSO there and leaves these out.
    Entire,
}

fn classify(
    pid: i32,
    s: &proc::SmapsEntry,
    files: &mut FileTable,
) -> Result<(pb::VmaEntry, Pages)> {
    let m = &s.map;
    let mut flags = if m.perms.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    } as u32;
    if s.vm_flags.contains(VmFlag::GrowsDown) {
        flags |= libc::MAP_GROWSDOWN as u32;
    }
    if s.vm_flags.contains(VmFlag::Locked) {
        flags |= libc::MAP_LOCKED as u32;
    }
    let mut e = pb::VmaEntry {
        start: m.start,
        end: m.end,
        pgoff: 0,
        shmid: 0,
        prot: m.perms.prot() as u32,
        flags,
        status: VMA_AREA_REGULAR,
        fd: -1,
        madv: None,
        fdflags: None,
        lock_onfault: None,
    };
    if s.vm_flags.contains(VmFlag::Locked) && s.vm_flags.contains(VmFlag::LockOnFault) {
        e.lock_onfault = Some(true);
    }
    let madv = madv_bits(&s.vm_flags);
    if madv != 0 {
        e.madv = Some(madv);
    }
    let unsupported = |what: &str| Error::Unsupported {
        pid,
        what: format!(
            "mapping {:#x}-{:#x} ({:?}) is {what}, which criu-rs cannot dump yet",
            m.start, m.end, m.name
        ),
    };
    let anon = |e: &mut pb::VmaEntry| {
        e.flags |= libc::MAP_ANONYMOUS as u32;
    };
    let pages = match &m.name {
        MapName::Vsyscall => {
            anon(&mut e);
            e.status = VMA_AREA_VSYSCALL | VMA_ANON_PRIVATE;
            Pages::Skip
        }
        MapName::Vdso => {
            anon(&mut e);
            e.status |= VMA_AREA_VDSO | VMA_ANON_PRIVATE;
            Pages::Entire
        }
        MapName::Vvar | MapName::VvarVclock => {
            anon(&mut e);
            e.status |= VMA_AREA_VVAR | VMA_ANON_PRIVATE;
            Pages::Skip
        }
        _ if s.vm_flags.contains(VmFlag::Io) || s.vm_flags.contains(VmFlag::PfnMap) => {
            return Err(unsupported("a device (I/O or PFN) mapping"))
        }
        MapName::File {
            path,
            deleted: true,
        } if s.vm_flags.contains(VmFlag::Hugetlb)
            && path.as_os_str().as_encoded_bytes() == b"/anon_hugepage" =>
        {
            // MAP_HUGETLB anonymous memory, as upstream keeps it: anonymous
            // with MAP_HUGETLB and the page size in the mmap flags.
            anon(&mut e);
            e.flags |= hugetlb_flags(pid, s)?;
            if m.perms.shared {
                e.status |= VMA_ANON_SHARED;
                e.shmid = m.inode;
                e.pgoff = m.offset;
                Pages::Skip
            } else {
                e.status |= VMA_ANON_PRIVATE;
                Pages::Anon
            }
        }
        // A memfd made with MFD_HUGETLB or an unlinked file of a hugetlbfs
        // mount: neither the memfd nor the ghost file code keeps huge
        // pages.
        MapName::File { deleted: true, .. } if s.vm_flags.contains(VmFlag::Hugetlb) => {
            return Err(unsupported("a hugetlb memfd or an unlinked hugetlbfs file"))
        }
        _ if m.is_anon_shmem() => {
            anon(&mut e);
            e.status |= VMA_ANON_SHARED;
            e.shmid = m.inode;
            e.pgoff = m.offset;
            Pages::Skip
        }
        // An attachment of a SysV shared memory segment: the inode is the
        // segment's id; its content lives with the segment (ipc namespace).
        MapName::File {
            path,
            deleted: true,
        } if m.perms.shared && path.as_os_str().as_encoded_bytes().starts_with(b"/SYSV") => {
            e.status |= VMA_AREA_SYSVIPC;
            e.shmid = m.inode;
            e.pgoff = m.offset;
            Pages::Skip
        }
        MapName::File { path, deleted } => {
            let path = path.to_string_lossy();
            if *deleted {
                // A memfd or an unlinked file: its content is saved with
                // the files (memfd inode, ghost file).
                let (id, memfd) = files.for_deleted_mapping(pid, &path, (m.start, m.end))?;
                e.shmid = u64::from(id);
                if memfd {
                    e.status |= VMA_AREA_MEMFD;
                }
            } else {
                e.shmid = u64::from(files.by_path(pid, &path)?);
            }
            e.pgoff = m.offset;
            // A file of a hugetlbfs mount stays a file mapping (its pages
            // are the file's, kept by the mount): the mmap flags say the
            // page size, which mmap of a hugetlbfs file accepts.
            if s.vm_flags.contains(VmFlag::Hugetlb) {
                e.flags |= hugetlb_flags(pid, s)?;
            }
            if m.perms.shared {
                e.status |= VMA_FILE_SHARED;
                e.fdflags = Some(if m.perms.write || s.vm_flags.contains(VmFlag::MayWrite) {
                    libc::O_RDWR as u32
                } else {
                    libc::O_RDONLY as u32
                });
                Pages::Skip
            } else {
                e.status |= VMA_FILE_PRIVATE;
                e.fdflags = Some(libc::O_RDONLY as u32);
                Pages::PrivateFile
            }
        }
        MapName::Heap | MapName::Stack | MapName::Anonymous | MapName::AnonNamed(_) => {
            anon(&mut e);
            if m.perms.shared {
                return Err(unsupported("shared anonymous memory"));
            }
            e.status |= VMA_ANON_PRIVATE;
            if m.name == MapName::Heap {
                e.status |= VMA_AREA_HEAP;
            }
            Pages::Anon
        }
        MapName::AnonShmemNamed(_) | MapName::Special(_) => {
            return Err(unsupported("a special kernel mapping"))
        }
    };
    Ok((e, pages))
}

/// Runs `(address, pages)` of `[start, end)` that belong in the image
/// (see [`super::mm_pages`]: PAGEMAP_SCAN, zero pages left out).
fn page_runs(
    finder: &mut PageFinder,
    s: &proc::SmapsEntry,
    want: Pages,
) -> Result<Vec<(u64, u64)>> {
    let kind = match want {
        Pages::Skip => return Ok(Vec::new()),
        Pages::Entire => {
            let n = (s.map.end - s.map.start) / PAGE_SIZE;
            return Ok(vec![(s.map.start, n)]);
        }
        Pages::Anon => PageKind::Anon,
        Pages::PrivateFile => PageKind::PrivateFile,
    };
    // Nothing resident or swapped (the zero page does not count): no page
    // of it is data, however large it is.
    // Hugetlb pages are not counted in Rss.
    let huge = s.sizes.private_hugetlb_kb + s.sizes.shared_hugetlb_kb;
    if s.sizes.rss_kb == 0 && s.sizes.swap_kb == 0 && huge == 0 {
        return Ok(Vec::new());
    }
    finder.runs(s.map.start, s.map.end, kind)
}

/// The guard regions of the task as areas of their own: one scan per
/// stretch of adjacent mappings (guards live only inside mappings).
fn guard_areas(finder: &mut PageFinder, vmas: &[pb::VmaEntry]) -> Result<Vec<pb::VmaEntry>> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for v in vmas {
        if v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0 {
            continue;
        }
        match spans.last_mut() {
            Some(last) if last.1 == v.start => last.1 = v.end,
            _ => spans.push((v.start, v.end)),
        }
    }
    let mut out = Vec::new();
    for (start, end) in spans {
        for (addr, npages) in finder.guards(start, end)? {
            out.push(pb::VmaEntry {
                start: addr,
                end: addr + npages * PAGE_SIZE,
                pgoff: 0,
                shmid: 0,
                prot: 0,
                flags: 0,
                status: VMA_AREA_GUARD,
                fd: -1,
                madv: None,
                fdflags: None,
                lock_onfault: None,
            });
        }
    }
    Ok(out)
}

/// What the mm dump needs beyond /proc: read remotely before.
pub struct MmExtra {
    pub brk: u64,
    pub dumpable: i32,
    pub thp_disabled: bool,
    /// The PID that names the images (the task's PID in its own pid
    /// namespace).
    pub img_pid: i32,
    /// mlockall flags of the mm's default (see [`dump_mlockall`]).
    pub mlockall: u32,
}

const MCL_FUTURE: u32 = 2;
const MCL_ONFAULT: u32 = 4;
const MLOCK_ONFAULT: u64 = 1;

/// Dump half: whether the task did mlockall(MCL_FUTURE [| MCL_ONFAULT]),
/// as MCL_* bits. The kernel keeps it as the default flags of every new
/// mapping, which /proc shows nowhere but on a new mapping: the scratch
/// area criu mapped inside the task (must be mapped now) has them.
pub fn dump_mlockall(t: &Tracee) -> Result<u32> {
    let pid = t.pid();
    let (addr, _) = t.scratch().ok_or_else(|| Error::Mismatch {
        what: format!("pid {pid}: no scratch area to read the mlockall flags from"),
    })?;
    let smaps = proc::read_smaps(pid)?;
    let s = smaps
        .iter()
        .find(|s| s.map.start <= addr && addr < s.map.end)
        .ok_or_else(|| Error::Mismatch {
            what: format!("pid {pid}: the scratch area at {addr:#x} is not in smaps"),
        })?;
    let mut flags = 0;
    if s.vm_flags.contains(VmFlag::Locked) {
        flags |= MCL_FUTURE;
        if s.vm_flags.contains(VmFlag::LockOnFault) {
            flags |= MCL_ONFAULT;
        }
    }
    Ok(flags)
}

/// Dump half: the mappings and pages of `pid` into `mm-PID.img`,
/// `pagemap-PID.img` and `pages-<pages_id>.img`. With `incr` (a dump with
/// parent images), pages unchanged since the parent are left to it.
pub fn dump(
    pid: i32,
    dir: &Path,
    files: &mut FileTable,
    shared: &mut shmem::Dumped,
    pages_ids: &mut IdGen,
    extra: &MmExtra,
    mut incr: Option<&mut super::mm_track::Incremental>,
) -> Result<pb::MmEntry> {
    let stat = proc::read_stat(pid)?;
    let smaps = proc::read_smaps(pid)?;
    let auxv_raw = std::fs::read(format!("/proc/{pid}/auxv")).map_err(|source| Error::Io {
        pid,
        what: format!("reading /proc/{pid}/auxv"),
        source,
    })?;
    let exe = super::read_proc_link(pid, "exe")?;
    let exe_file_id = files.by_path(pid, &exe)?;

    let mut finder = PageFinder::open(pid)?;
    let mut writer =
        image::pages::PagesWriter::create(dir, extra.img_pid as u32, pages_ids.next_id())?;
    let mut vmas: Vec<pb::VmaEntry> = Vec::with_capacity(smaps.len());
    let mut copier = PageCopier::new(pid);
    for s in &smaps {
        let (e, want) = classify(pid, s, files)?;
        if e.status & VMA_ANON_SHARED != 0 {
            // Its content is written once every mapping of it is known.
            let clean = match incr.as_deref_mut() {
                Some(inc) if super::mm_track::shmem_trackable(s) => inc.shmem_clean(s, e.shmid)?,
                _ => None,
            };
            let parent = incr.as_deref().map(|i| i.parent_dir().to_path_buf());
            shared.add(
                pid,
                e.shmid,
                (e.start, e.end),
                e.pgoff,
                clean,
                parent.as_deref(),
            );
        }
        // [vvar] and [vvar_vclock] are one area in the image, as the kernel
        // maps them side by side.
        if e.status & VMA_AREA_VVAR != 0 {
            if let Some(prev) = vmas.last_mut() {
                if prev.status & VMA_AREA_VVAR != 0 && prev.end == e.start {
                    prev.end = e.end;
                    continue;
                }
            }
        }
        if want != Pages::Skip {
            let flags = if want == Pages::Anon {
                PE_PRESENT | PE_LAZY
            } else {
                PE_PRESENT
            };
            let readable = e.prot & libc::PROT_READ as u32 != 0;
            let runs = page_runs(&mut finder, s, want)?;
            match incr.as_deref_mut() {
                Some(inc) => {
                    for (addr, npages, parent) in inc.split_vma(s, runs)? {
                        if parent {
                            copier.add_parent(&mut writer, addr, npages)?;
                        } else {
                            copier.add(&mut writer, addr, npages, flags, readable)?;
                        }
                    }
                }
                None => {
                    for (addr, npages) in runs {
                        copier.add(&mut writer, addr, npages, flags, readable)?;
                    }
                }
            }
        }
        vmas.push(e);
    }
    copier.finish(&mut writer)?;
    writer.finish()?;
    let guards = guard_areas(&mut finder, &vmas)?;
    vmas.extend(guards);

    let auxv = saved_auxv(&auxv_raw);
    Ok(pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: extra.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id,
        mm_saved_auxv: auxv,
        vmas,
        dumpable: Some(extra.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(extra.thp_disabled),
        mlockall: (extra.mlockall != 0).then_some(extra.mlockall),
    })
}

pub fn write(dir: &Path, pid: i32, mm: &pb::MmEntry) -> Result<()> {
    image::write_image(dir, &mm_file(pid), magic::MM, [mm])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Restore

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Attaches SysV segment `v.shmid` at `v.start` inside the puppet.
fn attach_sysv(p: &mut Tracee, pid: i32, v: &pb::VmaEntry) -> Result<()> {
    if v.pgoff != 0 {
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "mapping {:#x}-{:#x} is a partial attachment of SysV segment {} (offset {:#x}); only whole ones are restored yet",
                v.start, v.end, v.shmid, v.pgoff
            ),
        });
    }
    let mut flg = 0u64;
    if v.prot & libc::PROT_WRITE as u32 == 0 {
        flg |= libc::SHM_RDONLY as u64;
    }
    if v.prot & libc::PROT_EXEC as u32 != 0 {
        flg |= libc::SHM_EXEC as u64;
    }
    let got = p.syscall(libc::SYS_shmat, &[v.shmid, v.start, flg])?;
    if got != v.start {
        return Err(Error::Mismatch {
            what: format!(
                "pid {pid}: SysV segment {} attached at {got:#x}, not {:#x}",
                v.shmid, v.start
            ),
        });
    }
    Ok(())
}

/// An address for `len` bytes of scratch that collides neither with the
/// target's mappings nor with what the puppet has mapped now.
pub fn pick_scratch(mm: &pb::MmEntry, puppet: &[proc::MapsEntry], len: u64) -> Option<u64> {
    let taken: Vec<(u64, u64)> = mm
        .vmas
        .iter()
        .map(|v| (v.start, v.end))
        .chain(puppet.iter().map(|m| (m.start, m.end)))
        .collect();
    // Walk down from below the usual mmap base, a gap at a time.
    let mut at: u64 = 0x7e00_0000_0000;
    while at > 0x1_0000_0000 {
        let want = (at, at + len);
        match taken.iter().find(|&&t| overlaps(t, want)) {
            None => return Some(at),
            Some(&(s, _)) => at = (s.min(at) - len) & !(PAGE_SIZE - 1),
        }
    }
    None
}

/// The kernel-provided areas criu moves rather than makes: vDSO and vvar.
/// An address range `[start, end)`.
type Range = (u64, u64);

fn special(maps: &[proc::MapsEntry]) -> (Option<Range>, Vec<Range>) {
    let vdso = maps
        .iter()
        .find(|m| m.name == MapName::Vdso)
        .map(|m| (m.start, m.end));
    let vvar = maps
        .iter()
        .filter(|m| matches!(m.name, MapName::Vvar | MapName::VvarVclock))
        .map(|m| (m.start, m.end))
        .collect();
    (vdso, vvar)
}

/// Moves `from` to `to`. Remote syscalls run from the vDSO: when the move
/// takes the syscall instruction along, follow it.
fn mremap(p: &mut Tracee, from: (u64, u64), to: u64) -> Result<()> {
    let args = mremap_args(from, to);
    let ip = p.syscall_ip();
    if let Some(ip) = ip.filter(|&ip| ip >= from.0 && ip < from.1) {
        p.set_syscall_ip(to + (ip - from.0));
        // The kernel returns from this call to the old address; we are
        // back in control at the syscall-exit stop before that matters.
        let r = p.syscall_at(ip, libc::SYS_mremap, &args);
        return r.map(|_| ()).map_err(Into::into);
    }
    p.syscall(libc::SYS_mremap, &args)?;
    Ok(())
}

/// The arguments of an `mremap` moving the area `from` to `to`.
fn mremap_args(from: (u64, u64), to: u64) -> [u64; 5] {
    let len = from.1 - from.0;
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    [from.0, len, len, flags, to]
}

/// Moves the puppet's vDSO and vvar pages (found as `vdso`, `vvar`) to the
/// image's addresses; returns the vDSO's new start.
fn move_vdso(
    p: &mut Tracee,
    mm: &pb::MmEntry,
    vdso: (u64, u64),
    vvar: &[(u64, u64)],
    parking: u64,
) -> Result<Option<u64>> {
    let img_vdso = mm.vmas.iter().find(|v| v.status & VMA_AREA_VDSO != 0);
    let img_vvar = mm.vmas.iter().find(|v| v.status & VMA_AREA_VVAR != 0);
    let Some(img_vdso) = img_vdso else {
        // The task had no vDSO: drop ours.
        for &r in vvar.iter().chain(std::iter::once(&vdso)) {
            p.syscall(libc::SYS_munmap, &[r.0, r.1 - r.0])?;
        }
        return Ok(None);
    };
    if img_vdso.end - img_vdso.start != vdso.1 - vdso.0 {
        return Err(Error::Mismatch {
            what: format!(
                "the vDSO of the image is {} bytes, this kernel's is {}: restoring on another kernel is not supported yet",
                img_vdso.end - img_vdso.start,
                vdso.1 - vdso.0
            ),
        });
    }
    // Pieces to move: (current range, destination).
    let mut moves = vec![(vdso, img_vdso.start)];
    if let (Some(iv), Some(&first)) = (img_vvar, vvar.first()) {
        let ours = vvar.last().map_or(0, |l| l.1) - first.0;
        if ours != iv.end - iv.start {
            return Err(Error::Mismatch {
                what: format!(
                    "the vvar area of the image is {} bytes, this kernel's is {ours}",
                    iv.end - iv.start
                ),
            });
        }
        for &r in vvar {
            moves.push((r, iv.start + (r.0 - first.0)));
        }
    }
    // Two hops when a destination overlaps where a piece is now: park them
    // all first.
    let clash = moves.iter().any(|&(_, to)| {
        moves
            .iter()
            .any(|&(from, _)| overlaps(from, (to, to + (from.1 - from.0))))
    });
    // The hops, in order.
    let mut hops: Vec<((u64, u64), u64)> = Vec::new();
    if clash {
        let mut at = parking;
        for (from, _) in moves.iter_mut() {
            let len = from.1 - from.0;
            hops.push((*from, at));
            *from = (at, at + len);
            at += len;
        }
    }
    hops.extend(moves.iter().filter(|(from, to)| from.0 != *to));
    if p.blobs_usable()? {
        // From code in the scratch area, which stays where it is: one
        // stop for all moves; then remote syscalls follow the vDSO.
        let mut b = Batch::new();
        let mut ip = p.syscall_ip();
        for &(from, to) in &hops {
            b.push(libc::SYS_mremap, &mremap_args(from, to));
            ip = ip.map(|ip| {
                if ip >= from.0 && ip < from.1 {
                    to + (ip - from.0)
                } else {
                    ip
                }
            });
        }
        p.run_batch(&b)?;
        if let Some(ip) = ip {
            p.set_syscall_ip(ip);
        }
    } else {
        for &(from, to) in &hops {
            mremap(p, from, to)?;
        }
    }
    Ok(Some(img_vdso.start))
}

/// The ranges to munmap so that only the mappings `keep` says are left of
/// `maps` (sorted): each stretch from the first dropped mapping after a
/// kept one (or the start) to the end of the last one before the next kept
/// one. The gaps inside a stretch are unmapped already.
fn unmap_stretches(
    maps: &[proc::MapsEntry],
    keep: impl Fn(&proc::MapsEntry) -> bool,
) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut open = false;
    for m in maps {
        if keep(m) {
            open = false;
            continue;
        }
        match out.last_mut() {
            Some(last) if open => last.1 = m.end,
            _ => out.push((m.start, m.end)),
        }
        open = true;
    }
    out
}

/// Opens (in the puppet) the file of image id `id` with `flags`; returns the
/// puppet's fd. `scratch_off` is where the path may be written.
fn remote_open(
    p: &mut Tracee,
    files: &[pb::FileEntry],
    id: u32,
    flags: u32,
    scratch_off: u64,
) -> Result<u64> {
    let path = open_path(files, id)?;
    let addr = p.scratch_put(scratch_off, &path)?;
    Ok(p.syscall(
        libc::SYS_openat,
        &[
            libc::AT_FDCWD as u64,
            addr,
            u64::from(flags | libc::O_CLOEXEC as u32),
            0,
        ],
    )?)
}

/// The NUL-terminated path of file id `id`, checked unchanged since the
/// dump.
fn open_path(files: &[pb::FileEntry], id: u32) -> Result<Vec<u8>> {
    let reg = files
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| f.reg.as_ref())
        .ok_or_else(|| Error::Mismatch {
            what: format!("a mapping refers to file id {id}, which files.img does not have"),
        })?;
    super::files::reg::check_unchanged(reg)?;
    let mut path = reg.name.as_bytes().to_vec();
    path.push(0);
    Ok(path)
}

/// The files mappings are made of: the images' file entries, the files
/// criu makes itself (memfds, ghosts), and the channel those travel into
/// the puppet by (criu's end, the puppet's fd number).
pub struct MapFiles<'a> {
    pub files: &'a [pb::FileEntry],
    pub opened: &'a mut Opened,
    pub chan: BorrowedFd<'a>,
    pub remote: i32,
}

/// Restore half, step one: replaces the puppet's address space (a copy of
/// criu's) by the image's. The scratch area must be mapped already (see
/// [`pick_scratch`]); `scratch_off` is free scratch space for paths.
pub fn restore(
    p: &mut Tracee,
    dir: &Path,
    pid: i32,
    mm: &pb::MmEntry,
    mf: MapFiles<'_>,
    shared: &mut shmem::Made,
    scratch_off: u64,
) -> Result<()> {
    let files = mf.files;
    let puppet = proc::read_maps(p.pid())?;
    let (scratch, scratch_len) = p.scratch().ok_or_else(|| Error::Mismatch {
        what: "no scratch area in the puppet".into(),
    })?;
    let (vdso, vvar) = special(&puppet);
    let vdso = vdso.ok_or_else(|| Error::Unsupported {
        pid,
        what: "criu itself has no vDSO to give the restored task".into(),
    })?;

    // 1. Drop criu's mappings, keeping the scratch area, vDSO and vvar:
    // one munmap per stretch between kept areas (gaps included), not one
    // per mapping.
    let keep = |m: &proc::MapsEntry| {
        overlaps((m.start, m.end), (scratch, scratch + scratch_len))
            || matches!(
                m.name,
                MapName::Vdso | MapName::Vvar | MapName::VvarVclock | MapName::Vsyscall
            )
    };
    let mut unmaps = Batch::new();
    for (start, end) in unmap_stretches(&puppet, keep) {
        unmaps.push(libc::SYS_munmap, &[start, end - start]);
    }
    p.run_batch(&unmaps)?;
    // 2. vDSO and vvar where the task had them; remote syscalls follow.
    let parking = pick_scratch(
        mm,
        &[],
        (vdso.1 - vdso.0) + vvar.iter().map(|r| r.1 - r.0).sum::<u64>(),
    )
    .filter(|&a| !overlaps((a, a + 1), (scratch, scratch + scratch_len)))
    .unwrap_or(scratch + scratch_len + (1 << 30));
    move_vdso(p, mm, vdso, &vvar, parking)?;

    // 3. Every other mapping, writable while its pages are filled: one
    // batch of openat/mmap/madvise/close (the mmaps take the fds the
    // openats of the same batch return); shared memory, SysV attachments
    // and files made in criu are done on the way, one call at a time.
    let mut opened: Vec<(u64, u32, Arg)> = Vec::new(); // (file id, flags, remote fd)
    let mut batch = Batch::new();
    // Paths the batch opens, written at `scratch_off` just before it runs
    // (the calls made on the way use that space too).
    let mut paths: Vec<u8> = Vec::new();
    let room = p
        .blob_off()
        .unwrap_or(scratch_len)
        .saturating_sub(scratch_off) as usize;
    // (index of the mmap in the batch, where it must land)
    let mut landings: Vec<(usize, u64)> = Vec::new();
    // Mappings made with their final protection already (no mprotect in
    // step 5), by start address.
    let mut prot_done: Vec<u64> = Vec::new();
    let pages = PagesReader::open(dir, pid as u32)?;
    for v in &mm.vmas {
        if v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL | VMA_AREA_GUARD) != 0 {
            continue;
        }
        if v.status & VMA_ANON_SHARED != 0 {
            let hugetlb = libc::MAP_HUGETLB as u32 | (0x3f << libc::MAP_HUGE_SHIFT);
            let extra = u64::from(v.flags & (libc::MAP_GROWSDOWN as u32 | hugetlb));
            shared.map(
                p,
                dir,
                v.shmid,
                (v.start, v.end),
                v.pgoff,
                extra,
                scratch_off,
            )?;
            continue;
        }
        if v.status & VMA_AREA_SYSVIPC != 0 {
            attach_sysv(p, pid, v)?;
            continue;
        }
        let has_pages = pages.runs().iter().any(|r| {
            r.flags & (PE_PRESENT | PE_PARENT) != 0
                && overlaps((r.vaddr, r.vaddr + r.len()), (v.start, v.end))
        });
        let mut prot = v.prot;
        if has_pages {
            prot |= (libc::PROT_READ | libc::PROT_WRITE) as u32;
        }
        // Locked last, once filled.
        let mut flags = u64::from(v.flags & !(libc::MAP_LOCKED as u32)) | libc::MAP_FIXED as u64;
        let fd = if v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
            let id = u32::try_from(v.shmid).unwrap_or(u32::MAX);
            let oflags = v.fdflags.unwrap_or(libc::O_RDONLY as u32);
            match opened
                .iter()
                .find(|o| o.0 == u64::from(id) && o.1 == oflags)
            {
                Some(o) => o.2,
                None => {
                    let fd = match mf.opened.mapping_fd(files, id, oflags)? {
                        // Made in criu (memfd, ghost): passed in.
                        Some(f) => Arg::Imm(crate::remote::fdpass::pass_fd(
                            p,
                            mf.chan,
                            mf.remote,
                            f.as_fd(),
                            scratch_off,
                        )? as u64),
                        None => {
                            let path = open_path(files, id)?;
                            if paths.len() + path.len() <= room {
                                let addr = scratch + scratch_off + paths.len() as u64;
                                paths.extend_from_slice(&path);
                                Arg::Ret(batch.push(
                                    libc::SYS_openat,
                                    &[
                                        libc::AT_FDCWD as u64,
                                        addr,
                                        u64::from(oflags | libc::O_CLOEXEC as u32),
                                        0,
                                    ],
                                ))
                            } else {
                                Arg::Imm(remote_open(p, files, id, oflags, scratch_off)?)
                            }
                        }
                    };
                    opened.push((u64::from(id), oflags, fd));
                    fd
                }
            }
        } else {
            flags |= libc::MAP_ANONYMOUS as u64;
            Arg::Imm(u64::MAX)
        };
        let at = batch.push_call(Call::with_args(
            libc::SYS_mmap,
            &[
                Arg::Imm(v.start),
                Arg::Imm(v.end - v.start),
                Arg::Imm(u64::from(prot)),
                Arg::Imm(flags),
                fd,
                Arg::Imm(v.pgoff),
            ],
        ));
        landings.push((at, v.start));
        if prot == v.prot {
            prot_done.push(v.start);
        }
        // Huge page advice before the pages are written, so that they
        // fault in as the task had them (huge where it asked for it).
        let thp = v.madv.unwrap_or(0) & (1 << libc::MADV_HUGEPAGE | 1 << libc::MADV_NOHUGEPAGE);
        for bit in (0..64u64).filter(|b| thp & (1 << b) != 0) {
            batch.push(libc::SYS_madvise, &[v.start, v.end - v.start, bit]);
        }
    }
    for (_, _, fd) in opened {
        batch.push_call(Call::with_args(libc::SYS_close, &[fd]));
    }
    if !paths.is_empty() {
        p.scratch_put(scratch_off, &paths)?;
    }
    let made = p.run_batch(&batch)?;
    for (i, start) in landings {
        let got = made.get(i).copied().unwrap_or_default() as u64;
        if got != start {
            return Err(Error::Mismatch {
                what: format!("pid {pid}: mapping {start:#x} landed at {got:#x}"),
            });
        }
    }
    prot_done.sort_unstable();

    // 4. The pages, but the vDSO's: the kernel's own is there now.
    let vdso_at: Vec<(u64, u64)> = mm
        .vmas
        .iter()
        .filter(|v| v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0)
        .map(|v| (v.start, v.end))
        .collect();
    super::mm_pages::fill_except(p.pid(), &pages, &vdso_at)?;

    // 5.-7. One batch: final protections and advice; guard pages, now that
    // the pages around them are written (a guard throws away what is under
    // it), before mlock, which they refuse; locks last, once everything is
    // in place.
    let mut last = Batch::new();
    let real = || {
        mm.vmas.iter().filter(|v| {
            v.status & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL | VMA_AREA_GUARD) == 0
        })
    };
    for v in real() {
        if prot_done.binary_search(&v.start).is_err() {
            last.push(
                libc::SYS_mprotect,
                &[v.start, v.end - v.start, u64::from(v.prot)],
            );
        }
        let madv = v.madv.unwrap_or(0);
        for bit in 0..64u64 {
            if madv & (1 << bit) != 0 {
                last.push(libc::SYS_madvise, &[v.start, v.end - v.start, bit]);
            }
        }
    }
    for v in mm.vmas.iter().filter(|v| v.status & VMA_AREA_GUARD != 0) {
        last.push(
            libc::SYS_madvise,
            &[v.start, v.end - v.start, MADV_GUARD_INSTALL],
        );
    }
    let mut locks: Vec<(usize, &pb::VmaEntry)> = Vec::new();
    for v in real().filter(|v| v.flags & libc::MAP_LOCKED as u32 != 0) {
        let how = if v.lock_onfault == Some(true) {
            MLOCK_ONFAULT
        } else {
            0
        };
        locks.push((
            last.push_may_fail(libc::SYS_mlock2, &[v.start, v.end - v.start, how]),
            v,
        ));
    }
    let done = p.run_batch(&last)?;
    for (i, v) in locks {
        let r = done.get(i).copied().unwrap_or_default();
        // Locking populates; an inaccessible area, or one with guard
        // pages, cannot be wholly, so mlock says ENOMEM after it has
        // locked it all the same.
        let guarded = mm.vmas.iter().any(|g| {
            g.status & VMA_AREA_GUARD != 0 && overlaps((g.start, g.end), (v.start, v.end))
        });
        let partial = v.prot == 0 || guarded;
        if r < 0 && !(r == -i64::from(libc::ENOMEM) && partial) {
            return Err(Error::Mismatch {
                what: format!(
                    "pid {pid}: mlock2 of {:#x}-{:#x}: {}",
                    v.start,
                    v.end,
                    crate::sys::Errno::from_raw(-r as i32)
                ),
            });
        }
    }
    Ok(())
}

/// Restore half, last step (after creds, which reset it): dumpable.
/// And mlockall(MCL_FUTURE): every mapping exists by now, so only the
/// task's own later ones get locked.
pub fn restore_dumpable(p: &mut Tracee, mm: &pb::MmEntry) -> Result<()> {
    if let Some(d) = mm.dumpable {
        p.syscall(libc::SYS_prctl, &[libc::PR_SET_DUMPABLE as u64, d as u64])?;
    }
    if let Some(fl) = mm.mlockall.filter(|&f| f & MCL_FUTURE != 0) {
        p.syscall(
            libc::SYS_mlockall,
            &[u64::from(fl & (MCL_FUTURE | MCL_ONFAULT))],
        )?;
    }
    Ok(())
}

/// `struct prctl_mm_map` of PR_SET_MM_MAP.
pub fn mm_map_bytes(mm: &pb::MmEntry, auxv_addr: u64, exe_fd: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(104);
    for v in [
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv_addr,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&((mm.mm_saved_auxv.len() * 8) as u32).to_le_bytes());
    b.extend_from_slice(&exe_fd.to_le_bytes());
    b
}

/// Upstream CRIU's x86 `AT_VECTOR_SIZE`: it always writes this many auxv
/// words and refuses to restore more.
const UPSTREAM_AUXV_WORDS: usize = 44;

/// `/proc/PID/auxv` as the image keeps it. Newer kernels list more pairs
/// than upstream's 44 words hold, counting the closing `AT_NULL` pair: that
/// pair is dropped (PR_SET_MM_MAP zero-fills after the vector, which ends
/// it again) and the rest padded with zeros to 44 words, as upstream
/// writes it, so that upstream can restore our images. A vector that does
/// not fit even so is kept whole (upstream would cut it).
fn saved_auxv(raw: &[u8]) -> Vec<u64> {
    let mut v: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    while v.len() >= 2 && v[v.len() - 2..] == [0, 0] {
        v.truncate(v.len() - 2);
    }
    if v.len() <= UPSTREAM_AUXV_WORDS {
        v.resize(UPSTREAM_AUXV_WORDS, 0);
    }
    v
}

/// Restore half, step two (after files): the mm fields — code/data/brk/
/// stack/arg/env ranges, auxv and the exe link — in one PR_SET_MM_MAP.
/// The calls (open the exe, whose fd lands in the prctl's struct,
/// PR_SET_MM_MAP, close, THP) go into `batch`, which the caller runs
/// before it uses the scratch area at `scratch_off` again.
pub fn restore_fields(
    p: &mut Tracee,
    mm: &pb::MmEntry,
    files: &[pb::FileEntry],
    scratch_off: u64,
    batch: &mut Batch,
) -> Result<()> {
    let path = open_path(files, mm.exe_file_id)?;
    let auxv: Vec<u8> = mm
        .mm_saved_auxv
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    // In the scratch area: the path, the auxv, the struct prctl_mm_map.
    let (base, _) = p.scratch().unwrap_or((0, 0));
    let path_addr = base + scratch_off;
    let auxv_off = (path.len() as u64 + 7) & !7;
    let map_off = auxv_off + auxv.len() as u64;
    let map = mm_map_bytes(mm, path_addr + auxv_off, u32::MAX);
    let mut data = path;
    data.resize(auxv_off as usize, 0);
    data.extend_from_slice(&auxv);
    data.extend_from_slice(&map);
    p.scratch_put(scratch_off, &data)?;
    // exe_fd is the struct's last field.
    let mut open = Call::new(
        libc::SYS_openat,
        &[
            libc::AT_FDCWD as u64,
            path_addr,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            0,
        ],
    );
    open.store32 = Some(path_addr + map_off + map.len() as u64 - 4);
    let exe_fd = batch.push_call(open);
    const PR_SET_MM: u64 = 35;
    const PR_SET_MM_MAP: u64 = 14;
    batch.push(
        libc::SYS_prctl,
        &[
            PR_SET_MM,
            PR_SET_MM_MAP,
            path_addr + map_off,
            map.len() as u64,
            0,
        ],
    );
    batch.push_call(Call::with_args(libc::SYS_close, &[Arg::Ret(exe_fd)]));
    if let Some(thp) = mm.thp_disabled {
        batch.push(
            libc::SYS_prctl,
            &[libc::PR_SET_THP_DISABLE as u64, u64::from(thp), 0, 0, 0],
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[u64]) -> Vec<u8> {
        v.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn criu_mappings_go_in_one_munmap_per_stretch_between_kept_ones() {
        let text = [
            "00400000-00401000 r--p 00000000 00:00 0 ",
            "00401000-00402000 r-xp 00000000 00:00 0 ",
            "00500000-00501000 rw-p 00000000 00:00 0 ",
            "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
            "7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]",
            "7ffd00002000-7ffd00003000 rw-p 00000000 00:00 0 ",
            "7ffe00000000-7ffe00021000 rw-p 00000000 00:00 0                          [stack]",
            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
        ]
        .join("\n");
        let maps = proc::parse_maps(&text).expect("maps");
        let keep = |m: &proc::MapsEntry| matches!(m.name, MapName::Vdso | MapName::Vsyscall);
        assert_eq!(
            unmap_stretches(&maps, keep),
            [(0x400000, 0x7f0000001000), (0x7ffd00002000, 0x7ffe00021000)]
        );
        // Nothing kept: one stretch; everything kept: none.
        assert_eq!(
            unmap_stretches(&maps, |_| false),
            [(0x400000, 0xffffffffff601000)]
        );
        assert!(unmap_stretches(&maps, |_| true).is_empty());
    }

    #[test]
    fn saved_auxv_is_upstream_sized() {
        // 22 pairs and AT_NULL (a 6.x kernel): the AT_NULL pair goes.
        let mut raw: Vec<u64> = (1..=44).collect();
        raw.extend([0, 0]);
        assert_eq!(saved_auxv(&words(&raw)), (1..=44).collect::<Vec<u64>>());
        // a short vector is padded with zeros
        let got = saved_auxv(&words(&[6, 4096, 0, 0]));
        assert_eq!(got.len(), UPSTREAM_AUXV_WORDS);
        assert_eq!(&got[..2], &[6, 4096]);
        assert!(got[2..].iter().all(|&w| w == 0));
        // one that does not fit is kept whole
        let raw: Vec<u64> = (1..=48).collect();
        assert_eq!(saved_auxv(&words(&raw)), raw);
    }
}
