//! The page pipeline of [`super::mm`]: which pages of a task go into the
//! image, and copying them out (dump) and back in (restore) with as few
//! syscalls and copies as we can.
//!
//! Finding: one PAGEMAP_SCAN ioctl per VMA (falling back to reading
//! /proc/PID/pagemap entries on kernels without it). Pages that map the
//! shared zero page are left out: they read back as zeros from the fresh
//! anonymous memory restore maps.
//!
//! Copying: runs are gathered, across VMAs, into one bounded buffer and
//! read with a single `process_vm_readv` of up to `IOV_MAX` remote pieces;
//! the buffer then goes to the pages file in one write. Pages that
//! `process_vm_readv` cannot reach (no read permission) come from
//! /proc/PID/mem. Restore does the mirror image with `process_vm_writev`.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

use crate::image::pages::{PagesReader, PagesWriter, PE_PARENT};
use crate::sys::pagemap_scan::{
    self, PageRegion, Query, PAGE_IS_FILE, PAGE_IS_GUARD, PAGE_IS_PFNZERO, PAGE_IS_PRESENT,
    PAGE_IS_SWAPPED,
};
use crate::sys::{Errno, PAGE_SIZE};

use super::{Error, Result};

/// Most remote pieces one `process_vm_readv`/`writev` takes (`IOV_MAX`).
pub const IOV_MAX: usize = 1024;

/// Bytes of pages in one batch (one `process_vm_readv`), on dump and on
/// restore. The pages file is written in pieces of at most
/// [`crate::image::pages::WRITE_CHUNK`] whatever the batch: large writes
/// made ext4 use large page-cache folios, dear to fill on the development
/// VM (docs/performance.md).
pub const BATCH_BYTES: usize = 1 << 20;

// /proc/PID/pagemap entry bits.
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
/// A guard page (MADV_GUARD_INSTALL): shown as swapped, but holds nothing.
const PM_GUARD_REGION: u64 = 1 << 58;
const PM_PFN: u64 = (1 << 55) - 1;

/// Which pages of a VMA belong in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every present or swapped page (private anonymous memory).
    Anon,
    /// Only the anonymous (copied on write) pages of a private file
    /// mapping; the others are the file's.
    PrivateFile,
}

/// Adds `[addr, addr + npages)` to `runs`, merging with the last run.
fn push_run(runs: &mut Vec<(u64, u64)>, addr: u64, npages: u64) {
    match runs.last_mut() {
        Some((s, n)) if *s + *n * PAGE_SIZE == addr => *n += npages,
        _ => runs.push((addr, npages)),
    }
}

/// Whether a /proc/PID/pagemap entry is a page of the image.
pub fn keep_entry(pm: u64, kind: Kind, zero_pfn: Option<u64>) -> bool {
    if pm & (PM_PRESENT | PM_SWAP) == 0 || pm & PM_GUARD_REGION != 0 {
        return false;
    }
    if pm & PM_PRESENT != 0 && pm & PM_SWAP == 0 && zero_pfn == Some(pm & PM_PFN) {
        return false;
    }
    match kind {
        Kind::Anon => true,
        Kind::PrivateFile => pm & PM_FILE == 0,
    }
}

/// Finds the pages of a task that belong in the image.
pub struct PageFinder {
    pid: i32,
    pagemap: File,
    /// False once the kernel said it has no PAGEMAP_SCAN.
    scan: bool,
    zero_pfn: Option<Option<u64>>,
    regions: Vec<PageRegion>,
    /// PAGE_IS_GUARD, or 0 once the kernel refused it (before 6.15).
    guard_cat: u64,
}

impl PageFinder {
    /// Opens /proc/PID/pagemap.
    pub fn open(pid: i32) -> Result<Self> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap")).map_err(|source| Error::Io {
            pid,
            what: format!("opening /proc/{pid}/pagemap"),
            source,
        })?;
        Ok(PageFinder {
            pid,
            pagemap,
            scan: true,
            zero_pfn: None,
            regions: Vec::new(),
            guard_cat: PAGE_IS_GUARD,
        })
    }

    /// Never use PAGEMAP_SCAN (to test the fallback).
    pub fn without_scan(mut self) -> Self {
        self.scan = false;
        self
    }

    /// Whether the last call used PAGEMAP_SCAN.
    pub fn uses_scan(&self) -> bool {
        self.scan
    }

    /// Runs `(address, pages)` of `[start, end)` that belong in the image,
    /// in address order, adjacent runs merged.
    pub fn runs(&mut self, start: u64, end: u64, kind: Kind) -> Result<Vec<(u64, u64)>> {
        if self.scan {
            let mut r = self.scan_runs(start, end, kind);
            if r == Err(Errno::EINVAL) && self.guard_cat != 0 {
                self.guard_cat = 0;
                r = self.scan_runs(start, end, kind);
            }
            match r {
                Ok(r) => return Ok(r),
                Err(Errno::ENOTTY) | Err(Errno::ENOSYS) => self.scan = false,
                Err(errno) => {
                    return Err(Error::Sys {
                        pid: self.pid,
                        what: format!("PAGEMAP_SCAN of {start:#x}-{end:#x}"),
                        errno,
                    })
                }
            }
        }
        self.read_runs(start, end, kind)
    }

    fn scan_runs(
        &mut self,
        start: u64,
        end: u64,
        kind: Kind,
    ) -> std::result::Result<Vec<(u64, u64)>, Errno> {
        let not = self.guard_cat
            | match kind {
                Kind::Anon => PAGE_IS_PFNZERO,
                Kind::PrivateFile => PAGE_IS_PFNZERO | PAGE_IS_FILE,
            };
        let q = Query {
            inverted: not,
            all: not,
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            returned: PAGE_IS_PRESENT,
        };
        if self.regions.is_empty() {
            self.regions = vec![PageRegion::default(); 4096];
        }
        let mut runs = Vec::new();
        let mut at = start;
        while at < end {
            let (n, walk_end) = pagemap_scan::scan(&self.pagemap, at, end, &q, &mut self.regions)?;
            for r in &self.regions[..n] {
                if r.end > r.start {
                    push_run(&mut runs, r.start, (r.end - r.start) / PAGE_SIZE);
                }
            }
            if walk_end <= at {
                break;
            }
            at = walk_end;
        }
        Ok(runs)
    }

    fn read_runs(&mut self, start: u64, end: u64, kind: Kind) -> Result<Vec<(u64, u64)>> {
        let zero_pfn = match self.zero_pfn {
            Some(z) => z,
            None => {
                let z = pagemap_scan::zero_pfn().unwrap_or(None);
                self.zero_pfn = Some(z);
                z
            }
        };
        let pid = self.pid;
        let per_read = 64 * 1024u64; // entries per read
        let mut buf = vec![0u8; (per_read * 8) as usize];
        let mut runs = Vec::new();
        let mut page = start / PAGE_SIZE;
        let last = end / PAGE_SIZE;
        while page < last {
            let n = per_read.min(last - page);
            let bytes = &mut buf[..(n * 8) as usize];
            self.pagemap
                .read_exact_at(bytes, page * 8)
                .map_err(|source| Error::Io {
                    pid,
                    what: format!("reading /proc/{pid}/pagemap at {:#x}", page * PAGE_SIZE),
                    source,
                })?;
            for (i, e) in bytes.chunks_exact(8).enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(e);
                if keep_entry(u64::from_le_bytes(b), kind, zero_pfn) {
                    push_run(&mut runs, (page + i as u64) * PAGE_SIZE, 1);
                }
            }
            page += n;
        }
        Ok(runs)
    }

    /// Guard regions (MADV_GUARD_INSTALL) in `[start, end)` as
    /// `(address, pages)` runs. Kernels without PAGEMAP_SCAN predate them;
    /// those whose scan does not know PAGE_IS_GUARD show them in pagemap.
    pub fn guards(&mut self, start: u64, end: u64) -> Result<Vec<(u64, u64)>> {
        let pid = self.pid;
        let mut runs = Vec::new();
        if !self.scan {
            return Ok(runs);
        }
        if self.guard_cat != 0 {
            let q = Query {
                inverted: 0,
                all: PAGE_IS_GUARD,
                any: 0,
                returned: PAGE_IS_GUARD,
            };
            let mut out = vec![PageRegion::default(); 256];
            let mut at = start;
            while at < end {
                match pagemap_scan::scan(&self.pagemap, at, end, &q, &mut out) {
                    Ok((n, walk_end)) => {
                        for r in out[..n].iter().filter(|r| r.end > r.start) {
                            push_run(&mut runs, r.start, (r.end - r.start) / PAGE_SIZE);
                        }
                        if walk_end <= at {
                            break;
                        }
                        at = walk_end;
                    }
                    Err(Errno::EINVAL) => {
                        self.guard_cat = 0;
                        break;
                    }
                    Err(errno) => {
                        return Err(Error::Sys {
                            pid,
                            what: format!("PAGEMAP_SCAN for guard pages in {start:#x}-{end:#x}"),
                            errno,
                        })
                    }
                }
            }
            if self.guard_cat != 0 {
                return Ok(runs);
            }
            runs.clear();
        }
        let mut buf = vec![0u8; 8 * 4096];
        let mut page = start / PAGE_SIZE;
        let last = end / PAGE_SIZE;
        while page < last {
            let n = (last - page).min(4096);
            let bytes = &mut buf[..(n * 8) as usize];
            self.pagemap
                .read_exact_at(bytes, page * 8)
                .map_err(|source| Error::Io {
                    pid,
                    what: format!("reading /proc/{pid}/pagemap at {:#x}", page * PAGE_SIZE),
                    source,
                })?;
            for (i, e) in bytes.chunks_exact(8).enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(e);
                if u64::from_le_bytes(b) & PM_GUARD_REGION != 0 {
                    push_run(&mut runs, (page + i as u64) * PAGE_SIZE, 1);
                }
            }
            page += n;
        }
        Ok(runs)
    }
}

/// One remote piece of a batch.
#[derive(Debug, Clone, Copy)]
struct Piece {
    addr: u64,
    len: u64,
    flags: u32,
    /// process_vm_readv/writev can reach it (else: /proc/PID/mem).
    direct: bool,
    /// Pages whose data the parent images have: no bytes here (`len` 0),
    /// a `PE_PARENT` entry in its place in the pagemap.
    parent_pages: u64,
}

/// Opens /proc/PID/mem once, on first need.
fn mem_file(slot: &mut Option<File>, pid: i32, write: bool) -> Result<&File> {
    if slot.is_none() {
        let f = OpenOptions::new()
            .read(!write)
            .write(write)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|source| Error::Io {
                pid,
                what: format!("opening /proc/{pid}/mem"),
                source,
            })?;
        *slot = Some(f);
    }
    slot.as_ref().ok_or_else(|| Error::Mismatch {
        what: format!("/proc/{pid}/mem is not open"),
    })
}

/// Batches a [`PageCopier`] keeps in flight at once with its reader
/// thread: one being read, one being written, one queued. Peak memory is
/// `PIPELINE_DEPTH * BATCH_BYTES`.
pub const PIPELINE_DEPTH: usize = 3;

/// One batch: remote pieces and the buffer their bytes are read into.
#[derive(Debug)]
struct Batch {
    pieces: Vec<Piece>,
    buf: Vec<u8>,
    /// Bytes of `buf` the pieces fill.
    used: usize,
    /// process_vm_readv calls made to fill it.
    calls: u64,
}

impl Batch {
    fn new() -> Self {
        Batch {
            pieces: Vec::with_capacity(IOV_MAX),
            buf: Vec::new(),
            used: 0,
            calls: 0,
        }
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.used = 0;
        self.calls = 0;
    }

    /// Reads the bytes of every piece into `buf`: each stretch of directly
    /// readable pieces with one `process_vm_readv`, the rest (and what
    /// that call could not reach) through /proc/PID/mem.
    fn read(&mut self, pid: i32, cap: usize, mem: &mut Option<File>) -> Result<()> {
        if self.buf.len() < self.used {
            self.buf.resize(cap.max(self.used), 0);
        }
        let data = &mut self.buf[..self.used];
        let pieces = &self.pieces;
        let mut i = 0;
        let mut off = 0usize;
        while i < pieces.len() {
            let p = pieces[i];
            if !p.direct {
                let f = mem_file(mem, pid, false)?;
                f.read_exact_at(&mut data[off..off + p.len as usize], p.addr)
                    .map_err(|source| Error::Io {
                        pid,
                        what: format!("reading {} bytes of memory at {:#x}", p.len, p.addr),
                        source,
                    })?;
                off += p.len as usize;
                i += 1;
                continue;
            }
            // The longest stretch of directly readable pieces from i.
            let j = pieces[i..]
                .iter()
                .position(|p| !p.direct)
                .map_or(pieces.len(), |k| i + k);
            let remote: Vec<RemoteIoVec> = pieces[i..j]
                .iter()
                .filter(|p| p.len > 0)
                .map(|p| RemoteIoVec {
                    base: p.addr as usize,
                    len: p.len as usize,
                })
                .collect();
            let want: usize = remote.iter().map(|r| r.len).sum();
            let got = if want == 0 {
                0
            } else {
                self.calls += 1;
                process_vm_readv(
                    Pid::from_raw(pid),
                    &mut [IoSliceMut::new(&mut data[off..off + want])],
                    &remote,
                )
                .unwrap_or(0)
            };
            // Skip what arrived; the piece where it stopped is read through
            // /proc/PID/mem, then carry on after it.
            let mut done = got;
            while i < j && done >= pieces[i].len as usize {
                done -= pieces[i].len as usize;
                off += pieces[i].len as usize;
                i += 1;
            }
            if i < j {
                let p = pieces[i];
                let f = mem_file(mem, pid, false)?;
                let at = off + done;
                f.read_exact_at(&mut data[at..off + p.len as usize], p.addr + done as u64)
                    .map_err(|source| Error::Io {
                        pid,
                        what: format!("reading memory at {:#x}", p.addr + done as u64),
                        source,
                    })?;
                off += p.len as usize;
                i += 1;
            }
        }
        Ok(())
    }

    /// Into the pagemap and pages file in order: runs of copied pieces
    /// with one write each, parent pieces between them.
    fn write(&self, w: &mut PagesWriter) -> Result<()> {
        let data = &self.buf[..self.used];
        let mut off = 0usize;
        for group in self
            .pieces
            .chunk_by(|a, b| (a.parent_pages == 0) == (b.parent_pages == 0))
        {
            if group[0].parent_pages > 0 {
                for p in group {
                    w.add_absent(p.addr, p.parent_pages, PE_PARENT)?;
                }
                continue;
            }
            let runs: Vec<(u64, u64, u32)> =
                group.iter().map(|p| (p.addr, p.len, p.flags)).collect();
            let n: usize = group.iter().map(|p| p.len as usize).sum();
            w.add_many(&runs, &data[off..off + n])?;
            off += n;
        }
        Ok(())
    }
}

/// The thread that reads batches out of the task while the caller's
/// thread writes the previous ones: the two copies of every page (task
/// to criu, criu to the page cache) run on two CPUs at once.
struct Reader {
    /// Batches to read, in order; dropped to stop the thread.
    todo: Option<mpsc::Sender<Batch>>,
    /// Batches read (or the error that stopped them), in the same order.
    done: mpsc::Receiver<(Batch, Result<()>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn spawn(pid: i32, cap: usize) -> std::io::Result<Self> {
        let (todo_tx, todo_rx) = mpsc::channel::<Batch>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("pages-{pid}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut mem = None;
                for mut b in todo_rx {
                    let r = b.read(pid, cap, &mut mem);
                    let failed = r.is_err();
                    if done_tx.send((b, r)).is_err() || failed {
                        break;
                    }
                }
            })?;
        Ok(Reader {
            todo: Some(todo_tx),
            done: done_rx,
            thread: Some(thread),
        })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.todo.take();
        if let Some(t) = self.thread.take() {
            // Its panic (there is no code that panics on data) has nothing
            // more to tell than the missing batch already did.
            let _ = t.join();
        }
    }
}

/// Copies pages out of a task into a [`PagesWriter`], in batches of at most
/// [`BATCH_BYTES`] and [`IOV_MAX`] pieces. Batches are read by a thread of
/// its own while the caller writes the ones before, up to
/// [`PIPELINE_DEPTH`] at once; without that thread (it could not be
/// started, or [`Self::sequential`]) each batch is read then written.
pub struct PageCopier {
    pid: i32,
    cap: usize,
    /// The batch being gathered.
    cur: Batch,
    /// Read batches ready for reuse.
    spare: Vec<Batch>,
    /// Batches sent to the reader and not back yet.
    in_flight: usize,
    reader: Option<Reader>,
    /// Whether to start the reader on the first full batch.
    threaded: bool,
    mem: Option<File>,
    /// Bytes copied so far.
    pub copied: u64,
    /// process_vm_readv calls made so far.
    pub calls: u64,
}

impl PageCopier {
    pub fn new(pid: i32) -> Self {
        Self::with_capacity(pid, BATCH_BYTES)
    }

    /// A copier holding at most `cap` bytes per batch (rounded up to a
    /// page).
    pub fn with_capacity(pid: i32, cap: usize) -> Self {
        let cap = cap
            .max(PAGE_SIZE as usize)
            .next_multiple_of(PAGE_SIZE as usize);
        PageCopier {
            pid,
            cap,
            cur: Batch::new(),
            spare: Vec::new(),
            in_flight: 0,
            reader: None,
            threaded: true,
            mem: None,
            copied: 0,
            calls: 0,
        }
    }

    /// Reads and writes every batch on the caller's thread, one after the
    /// other.
    pub fn sequential(mut self) -> Self {
        self.threaded = false;
        self
    }

    /// Queues `npages` pages at `addr` with pagemap `flags`; `readable`
    /// says whether the mapping has PROT_READ. Copies (and writes) a batch
    /// whenever one is full.
    pub fn add(
        &mut self,
        w: &mut PagesWriter,
        addr: u64,
        npages: u64,
        flags: u32,
        readable: bool,
    ) -> Result<()> {
        let mut addr = addr;
        let mut left = npages * PAGE_SIZE;
        while left > 0 {
            if self.cur.used == self.cap || self.cur.pieces.len() == IOV_MAX {
                self.flush(w)?;
            }
            let n = left.min((self.cap - self.cur.used) as u64);
            self.cur.pieces.push(Piece {
                addr,
                len: n,
                flags,
                direct: readable,
                parent_pages: 0,
            });
            self.cur.used += n as usize;
            addr += n;
            left -= n;
        }
        Ok(())
    }

    /// Records `npages` pages at `addr` whose data the parent images have
    /// (`PE_PARENT`), after what is queued, so the pagemap stays in address
    /// order.
    pub fn add_parent(&mut self, w: &mut PagesWriter, addr: u64, npages: u64) -> Result<()> {
        if self.cur.pieces.len() == IOV_MAX {
            self.flush(w)?;
        }
        self.cur.pieces.push(Piece {
            addr,
            len: 0,
            flags: PE_PARENT,
            direct: true,
            parent_pages: npages,
        });
        Ok(())
    }

    /// Writes one batch the reader has finished, waiting for it.
    fn write_next_done(&mut self, w: &mut PagesWriter) -> Result<()> {
        let pid = self.pid;
        let (b, r) = match &self.reader {
            Some(rd) => rd.done.recv().map_err(|_| Error::Mismatch {
                what: format!("pid {pid}: the page reader thread stopped"),
            })?,
            None => {
                return Err(Error::Mismatch {
                    what: format!("pid {pid}: no page reader thread"),
                })
            }
        };
        self.in_flight -= 1;
        r?;
        self.account_and_write(w, b)
    }

    fn account_and_write(&mut self, w: &mut PagesWriter, mut b: Batch) -> Result<()> {
        b.write(w)?;
        self.copied += b.used as u64;
        self.calls += b.calls;
        b.clear();
        self.spare.push(b);
        Ok(())
    }

    /// Hands the gathered batch on: to the reader thread (writing what it
    /// has finished meanwhile), or reads and writes it here.
    pub fn flush(&mut self, w: &mut PagesWriter) -> Result<()> {
        if self.cur.pieces.is_empty() {
            return Ok(());
        }
        if self.reader.is_none() && self.threaded {
            // Without a thread (none left to the process?) the copy is
            // done here: slower, no less correct.
            self.reader = Reader::spawn(self.pid, self.cap).ok();
            self.threaded = self.reader.is_some();
        }
        let next = self.spare.pop().unwrap_or_else(Batch::new);
        let b = std::mem::replace(&mut self.cur, next);
        let Some(rd) = &self.reader else {
            let mut b = b;
            b.read(self.pid, self.cap, &mut self.mem)?;
            return self.account_and_write(w, b);
        };
        let todo = rd.todo.as_ref().ok_or_else(|| Error::Mismatch {
            what: format!("pid {}: the page reader thread is stopped", self.pid),
        })?;
        todo.send(b).map_err(|_| Error::Mismatch {
            what: format!("pid {}: the page reader thread stopped", self.pid),
        })?;
        self.in_flight += 1;
        // Keep the reader busy: write what it has finished, and wait only
        // when every buffer is taken.
        loop {
            let ready = match &self.reader {
                Some(rd) => rd.done.try_recv().ok(),
                None => None,
            };
            match ready {
                Some((b, r)) => {
                    self.in_flight -= 1;
                    r?;
                    self.account_and_write(w, b)?;
                }
                None if self.in_flight >= PIPELINE_DEPTH - 1 => self.write_next_done(w)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Copies what is left; the writer is the caller's to finish.
    pub fn finish(mut self, w: &mut PagesWriter) -> Result<(u64, u64)> {
        // Less than one batch in all: not worth a thread.
        self.threaded &= self.reader.is_some();
        self.flush(w)?;
        while self.in_flight > 0 {
            self.write_next_done(w)?;
        }
        Ok((self.copied, self.calls))
    }
}

/// Restore: copies every page of `pages` into task `pid` (runs in the
/// parent images included, read from there), in batches of at most
/// [`BATCH_BYTES`] (one mapping of a pages file each: the data go from the
/// page cache to the task in one copy) and [`IOV_MAX`] remote pieces (one
/// `process_vm_writev` each); from [`FILL_THREADS_FROM`] bytes on, two
/// threads take every other batch.
pub fn fill(pid: i32, pages: &PagesReader) -> Result<()> {
    fill_with(pid, pages, BATCH_BYTES)
}

/// [`fill`] but for the pages inside the `skip` ranges (areas restore
/// does not make itself, such as the vDSO).
pub fn fill_except(pid: i32, pages: &PagesReader, skip: &[(u64, u64)]) -> Result<()> {
    fill_with_skip(pid, pages, BATCH_BYTES, skip)
}

/// The present data of `pages` outside the `skip` ranges, as
/// `(address, offset in the pages file, bytes)`.
fn present_parts<'a>(
    pages: &'a PagesReader,
    skip: &[(u64, u64)],
) -> Result<Vec<crate::image::pages::Piece<'a>>> {
    let mut out = Vec::new();
    for piece in pages.pieces()? {
        let mut parts = vec![(piece.vaddr, piece.vaddr + piece.len)];
        for &(s, e) in skip {
            parts = parts
                .into_iter()
                .flat_map(|(a, b)| [(a, b.min(s)), (a.max(e), b)])
                .filter(|(a, b)| a < b)
                .collect();
        }
        out.extend(parts.into_iter().map(|(a, b)| crate::image::pages::Piece {
            vaddr: a,
            len: b - a,
            src: piece.src,
            offset: piece.offset + (a - piece.vaddr),
        }));
    }
    Ok(out)
}

/// [`fill`] with a batch of `cap` bytes.
pub fn fill_with(pid: i32, pages: &PagesReader, cap: usize) -> Result<()> {
    fill_with_skip(pid, pages, cap, &[])
}

/// One `process_vm_writev` of a restore: the pieces `(vaddr, len)` whose
/// data sit back to back in the pages file of `src` from `file_off`.
struct FillBatch<'a> {
    src: &'a PagesReader,
    file_off: u64,
    bytes: u64,
    pieces: Vec<(u64, u64)>,
}

/// Below this many bytes of pages a restore fills them on one thread.
const FILL_THREADS_FROM: u64 = 8 << 20;

fn fill_with_skip(pid: i32, pages: &PagesReader, cap: usize, skip: &[(u64, u64)]) -> Result<()> {
    let cap = cap
        .max(PAGE_SIZE as usize)
        .next_multiple_of(PAGE_SIZE as usize) as u64;
    let mut batches: Vec<FillBatch<'_>> = Vec::new();
    for piece in present_parts(pages, skip)? {
        let (mut addr, mut at, mut left) = (piece.vaddr, piece.offset, piece.len);
        while left > 0 {
            let joins = batches.last().is_some_and(|b| {
                b.bytes < cap
                    && b.pieces.len() < IOV_MAX
                    && b.file_off + b.bytes == at
                    && std::ptr::eq(b.src, piece.src)
            });
            if !joins {
                batches.push(FillBatch {
                    src: piece.src,
                    file_off: at,
                    bytes: 0,
                    pieces: Vec::new(),
                });
            }
            let Some(b) = batches.last_mut() else { break };
            let n = left.min(cap - b.bytes);
            b.pieces.push((addr, n));
            b.bytes += n;
            (addr, at, left) = (addr + n, at + n, left - n);
        }
    }
    let total: u64 = batches.iter().map(|b| b.bytes).sum();
    if total < FILL_THREADS_FROM {
        let mut mem = None;
        return batches
            .iter()
            .try_for_each(|b| fill_batch(pid, b, &mut mem));
    }
    // Two threads, every other batch each: the copies (and the task's page
    // faults) run on two CPUs.
    std::thread::scope(|s| {
        let half = |k: usize| {
            let batches = &batches;
            move || -> Result<()> {
                let mut mem = None;
                batches
                    .iter()
                    .skip(k)
                    .step_by(2)
                    .try_for_each(|b| fill_batch(pid, b, &mut mem))
            }
        };
        let other = s.spawn(half(1));
        let mine = half(0)();
        let theirs = other.join().unwrap_or_else(|_| {
            Err(Error::Mismatch {
                what: format!("pid {pid}: a page-filling thread panicked"),
            })
        });
        mine.and(theirs)
    })
}

/// Writes one batch into task `pid` from a mapping of its pages file;
/// what `process_vm_writev` cannot write goes through /proc/PID/mem
/// (`mem`, opened on first use).
fn fill_batch(pid: i32, b: &FillBatch<'_>, mem: &mut Option<File>) -> Result<()> {
    let map = b.src.map_at(b.file_off, b.bytes as usize)?;
    let data = map.bytes();
    let remote: Vec<RemoteIoVec> = b
        .pieces
        .iter()
        .map(|&(a, l)| RemoteIoVec {
            base: a as usize,
            len: l as usize,
        })
        .collect();
    let got = process_vm_writev(Pid::from_raw(pid), &[IoSlice::new(data)], &remote).unwrap_or(0);
    let mut off = 0usize;
    let mut skip = got;
    for &(a, l) in &b.pieces {
        let l = l as usize;
        if skip >= l {
            skip -= l;
        } else {
            let f = mem_file(mem, pid, true)?;
            f.write_all_at(&data[off + skip..off + l], a + skip as u64)
                .map_err(|source| Error::Io {
                    pid,
                    what: format!(
                        "writing {} bytes of pages at {:#x}",
                        l - skip,
                        a + skip as u64
                    ),
                    source,
                })?;
            skip = 0;
        }
        off += l;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::pages::{PE_LAZY, PE_PRESENT};

    #[test]
    fn pagemap_entries_kept() {
        let z = Some(0x1234);
        assert!(!keep_entry(0, Kind::Anon, z));
        assert!(keep_entry(PM_PRESENT | 0x99, Kind::Anon, z));
        assert!(!keep_entry(PM_PRESENT | 0x1234, Kind::Anon, z), "zero page");
        assert!(keep_entry(PM_PRESENT | 0x1234, Kind::Anon, None));
        assert!(
            keep_entry(PM_SWAP | 0x1234, Kind::Anon, z),
            "swap offset, not a pfn"
        );
        assert!(!keep_entry(PM_PRESENT | PM_FILE | 7, Kind::PrivateFile, z));
        assert!(keep_entry(PM_PRESENT | PM_FILE | 7, Kind::Anon, z));
        assert!(keep_entry(PM_PRESENT | 7, Kind::PrivateFile, z));
        assert!(
            !keep_entry(PM_SWAP | PM_GUARD_REGION, Kind::Anon, z),
            "guard page"
        );
    }

    /// A mapping of our own with written, zero-page and untouched pages.
    struct Own {
        base: u64,
        len: u64,
    }

    fn own(pages: u64, written: &[u64], read: &[u64]) -> Own {
        let len = pages * PAGE_SIZE;
        let base = crate::sys::pagemap_scan::tests_support::map_anon(len as usize);
        for &p in written {
            crate::sys::pagemap_scan::tests_support::poke(
                base + p * PAGE_SIZE,
                (p % 250) as u8 + 1,
            );
        }
        for &p in read {
            crate::sys::pagemap_scan::tests_support::peek(base + p * PAGE_SIZE);
        }
        Own { base, len }
    }

    impl Drop for Own {
        fn drop(&mut self) {
            crate::sys::pagemap_scan::tests_support::unmap(self.base, self.len as usize);
        }
    }

    #[test]
    fn scan_and_fallback_agree_and_skip_zero_pages() {
        let m = own(300, &[0, 1, 2, 7, 150, 151, 299], &[3, 4, 100, 200]);
        let me = std::process::id() as i32;
        let rel = |runs: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            runs.into_iter()
                .map(|(a, n)| ((a - m.base) / PAGE_SIZE, n))
                .collect()
        };
        let want = vec![(0, 3), (7, 1), (150, 2), (299, 1)];
        let mut f = PageFinder::open(me).unwrap();
        assert_eq!(
            rel(f.runs(m.base, m.base + m.len, Kind::Anon).unwrap()),
            want
        );
        let mut f = PageFinder::open(me).unwrap().without_scan();
        let got = rel(f.runs(m.base, m.base + m.len, Kind::Anon).unwrap());
        if nix::unistd::geteuid().is_root() {
            assert_eq!(got, want);
        } else {
            // Without PFNs the zero page cannot be told apart.
            assert!(got.len() >= want.len());
        }
    }

    /// Parent runs between copied ones keep their place in the pagemap,
    /// and the copied ones still go in one batch.
    #[test]
    fn parent_runs_interleave_in_address_order() {
        let m = own(16, &(0..16).collect::<Vec<_>>(), &[]);
        let me = std::process::id() as i32;
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 3, 3).unwrap();
        let mut c = PageCopier::new(me);
        c.add_parent(&mut w, m.base, 2).unwrap();
        c.add(&mut w, m.base + 2 * PAGE_SIZE, 1, PE_PRESENT, true)
            .unwrap();
        c.add_parent(&mut w, m.base + 3 * PAGE_SIZE, 1).unwrap();
        c.add_parent(&mut w, m.base + 4 * PAGE_SIZE, 1).unwrap();
        c.add(&mut w, m.base + 5 * PAGE_SIZE, 2, PE_PRESENT, true)
            .unwrap();
        c.add(&mut w, m.base + 9 * PAGE_SIZE, 1, PE_PRESENT, false)
            .unwrap();
        let (copied, calls) = c.finish(&mut w).unwrap();
        w.finish().unwrap();
        assert_eq!(copied, 4 * PAGE_SIZE);
        assert_eq!(calls, 1);
        let r = PagesReader::open(dir.path(), 3).unwrap();
        let runs: Vec<_> = r
            .runs()
            .iter()
            .map(|x| ((x.vaddr - m.base) / PAGE_SIZE, x.nr_pages, x.flags))
            .collect();
        assert_eq!(
            runs,
            [
                (0, 2, PE_PARENT),
                (2, 1, PE_PRESENT),
                (3, 2, PE_PARENT),
                (5, 2, PE_PRESENT),
                (9, 1, PE_PRESENT)
            ]
        );
        let mut b = vec![0u8; 4 * PAGE_SIZE as usize];
        r.read_at(0, &mut b).unwrap();
        let firsts: Vec<u8> = b.chunks(PAGE_SIZE as usize).map(|p| p[0]).collect();
        assert_eq!(firsts, [3, 6, 7, 10]);
    }

    #[test]
    fn guard_pages_are_found_and_never_copied() {
        let m = own(8, &[0, 1, 2, 3, 4, 5, 6, 7], &[]);
        use crate::sys::pagemap_scan::tests_support::madvise;
        const MADV_GUARD_INSTALL: i32 = 102;
        if !madvise(m.base + 2 * PAGE_SIZE, PAGE_SIZE, MADV_GUARD_INSTALL)
            || !madvise(m.base + 5 * PAGE_SIZE, PAGE_SIZE, MADV_GUARD_INSTALL)
        {
            return; // a kernel without guard regions
        }
        let me = std::process::id() as i32;
        let rel = |runs: Vec<(u64, u64)>| -> Vec<(u64, u64)> {
            runs.into_iter()
                .map(|(a, n)| ((a - m.base) / PAGE_SIZE, n))
                .collect()
        };
        let mut f = PageFinder::open(me).unwrap();
        let end = m.base + m.len;
        assert_eq!(rel(f.guards(m.base, end).unwrap()), [(2, 1), (5, 1)]);
        assert_eq!(
            rel(f.runs(m.base, end, Kind::Anon).unwrap()),
            [(0, 2), (3, 2), (6, 2)]
        );
        let mut f = PageFinder::open(me).unwrap().without_scan();
        assert_eq!(
            rel(f.runs(m.base, end, Kind::Anon).unwrap()),
            [(0, 2), (3, 2), (6, 2)]
        );
    }

    /// The same pieces through the reader thread (many small batches) and
    /// on one thread give the same pagemap and pages file, byte for byte.
    #[test]
    fn threaded_copy_writes_what_the_sequential_one_does() {
        let m = own(256, &(0..256).collect::<Vec<_>>(), &[]);
        let me = std::process::id() as i32;
        let pg = PAGE_SIZE;
        let feed = |c: &mut PageCopier, w: &mut PagesWriter| {
            for k in 0..40u64 {
                let at = m.base + k * 6 * pg;
                match k % 4 {
                    0 => c.add_parent(w, at, 2).unwrap(),
                    1 => c.add(w, at, 3, PE_PRESENT, false).unwrap(),
                    _ => c.add(w, at, 5, PE_PRESENT | PE_LAZY, true).unwrap(),
                }
            }
        };
        let mut out = Vec::new();
        let mut stats = Vec::new();
        for threaded in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = PagesWriter::create(dir.path(), 8, 8).unwrap();
            let c = PageCopier::with_capacity(me, 4 * pg as usize);
            let mut c = if threaded { c } else { c.sequential() };
            feed(&mut c, &mut w);
            assert_eq!(c.reader.is_some(), threaded);
            stats.push(c.finish(&mut w).unwrap());
            w.finish().unwrap();
            let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
            out.push((read("pagemap-8.img"), read("pages-8.img")));
        }
        assert_eq!(stats[0], stats[1]);
        assert_eq!(stats[0].0, (10 * 3 + 20 * 5) * pg);
        assert_eq!(out[0].0, out[1].0, "pagemap differs");
        assert_eq!(out[0].1, out[1].1, "pages differ");
        // Page 6 (k = 1, its first page) was written with 7.
        assert_eq!(out[0].1[0], 7);
    }

    /// A batch the reader thread cannot read fails the copy (no hang, no
    /// partial success).
    #[test]
    fn reader_thread_error_reaches_the_caller() {
        let m = own(16, &(0..16).collect::<Vec<_>>(), &[]);
        // Below vm.mmap_min_addr: never mapped.
        let gone = 2 * PAGE_SIZE;
        let me = std::process::id() as i32;
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 9, 9).unwrap();
        let mut c = PageCopier::with_capacity(me, 2 * PAGE_SIZE as usize);
        let mut r = c.add(&mut w, m.base, 4, PE_PRESENT, true);
        for _ in 0..4 {
            if r.is_err() {
                break;
            }
            r = c.add(&mut w, gone, 4, PE_PRESENT, true);
        }
        let r = r.and_then(|_| c.finish(&mut w).map(|_| ()));
        let e = r.expect_err("reading unmapped memory succeeded");
        assert!(e.to_string().contains(&format!("{gone:#x}")), "{e}");
    }

    #[test]
    fn present_parts_leave_out_skipped_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 3, 3).unwrap();
        let page = vec![7u8; PAGE_SIZE as usize];
        for p in 0..6u64 {
            w.add(0x10000 + p * PAGE_SIZE, PE_PRESENT, &page).unwrap();
        }
        w.add(0x40000, PE_PRESENT, &page).unwrap();
        w.finish().unwrap();
        let r = PagesReader::open(dir.path(), 3).unwrap();
        let pg = PAGE_SIZE;
        // One run of 6 pages cut in the middle, one run dropped whole.
        let got: Vec<_> = present_parts(&r, &[(0x12000, 0x14000), (0x40000, 0x41000)])
            .unwrap()
            .iter()
            .map(|p| (p.vaddr, p.offset, p.len))
            .collect();
        assert_eq!(got, [(0x10000, 0, 2 * pg), (0x14000, 4 * pg, 2 * pg)]);
        assert_eq!(present_parts(&r, &[]).unwrap().len(), 2);
    }

    #[test]
    fn copier_batches_and_round_trips() {
        let m = own(64, &(0..64).collect::<Vec<_>>(), &[]);
        let me = std::process::id() as i32;
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 1, 1).unwrap();
        // 3 pages of capacity: batches split runs and join them again.
        let mut c = PageCopier::with_capacity(me, 3 * PAGE_SIZE as usize);
        c.add(&mut w, m.base, 5, PE_PRESENT, true).unwrap();
        c.add(&mut w, m.base + 10 * PAGE_SIZE, 2, PE_PRESENT, false)
            .unwrap();
        c.add(&mut w, m.base + 20 * PAGE_SIZE, 1, PE_PRESENT, true)
            .unwrap();
        let (copied, calls) = c.finish(&mut w).unwrap();
        w.finish().unwrap();
        assert_eq!(copied, 8 * PAGE_SIZE);
        assert!(calls >= 2);
        let r = PagesReader::open(dir.path(), 1).unwrap();
        let runs: Vec<_> = r
            .runs()
            .iter()
            .map(|x| ((x.vaddr - m.base) / PAGE_SIZE, x.nr_pages))
            .collect();
        assert_eq!(runs, [(0, 5), (10, 2), (20, 1)]);
        let mut all = vec![0u8; 8 * PAGE_SIZE as usize];
        r.read_at(0, &mut all).unwrap();
        let firsts: Vec<u8> = all.chunks(PAGE_SIZE as usize).map(|p| p[0]).collect();
        assert_eq!(firsts, [1, 2, 3, 4, 5, 11, 12, 21]);

        // Restore into another mapping of ours at the same offsets.
        let dst = own(64, &[], &[]);
        let shifted = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(shifted.path(), 2, 2).unwrap();
        for run in r.runs() {
            let mut b = vec![0u8; run.len() as usize];
            r.read_run(run, &mut b).unwrap();
            w.add(run.vaddr - m.base + dst.base, PE_PRESENT, &b)
                .unwrap();
        }
        w.finish().unwrap();
        let r2 = PagesReader::open(shifted.path(), 2).unwrap();
        fill_with(me, &r2, 2 * PAGE_SIZE as usize).unwrap();
        let mut got = Vec::new();
        for p in [0u64, 4, 10, 11, 20, 21] {
            got.push(crate::sys::pagemap_scan::tests_support::peek(
                dst.base + p * PAGE_SIZE,
            ));
        }
        assert_eq!(got, [1, 5, 11, 12, 21, 0]);
    }
    #[test]
    fn a_large_fill_runs_on_two_threads_and_writes_every_page() {
        // More than FILL_THREADS_FROM, in runs with holes between them.
        let pages = (FILL_THREADS_FROM / PAGE_SIZE) * 2;
        let dst = own(pages, &[], &[]);
        let me = std::process::id() as i32;
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 3, 3).unwrap();
        let mut want = Vec::new();
        for run in (0..pages).step_by(7) {
            let n = 5.min(pages - run);
            let data: Vec<u8> = (0..n * PAGE_SIZE)
                .map(|b| ((run + b / PAGE_SIZE) % 253) as u8 + 1)
                .collect();
            w.add(dst.base + run * PAGE_SIZE, PE_PRESENT, &data)
                .unwrap();
            want.extend((run..run + n).map(|p| (p, (p % 253) as u8 + 1)));
        }
        w.finish().unwrap();
        let r = PagesReader::open(dir.path(), 3).unwrap();
        fill(me, &r).unwrap();
        for (p, v) in want {
            let got = crate::sys::pagemap_scan::tests_support::peek(dst.base + p * PAGE_SIZE);
            assert_eq!(got, v, "page {p}");
        }
        // a page between runs is left alone
        assert_eq!(
            crate::sys::pagemap_scan::tests_support::peek(dst.base + 6 * PAGE_SIZE),
            0
        );
    }
}
