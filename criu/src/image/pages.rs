//! Memory pages: `pagemap-<id>.img` (a `pagemap_head` naming the pages file,
//! then one `pagemap_entry` per run of pages) and `pages-<pages_id>.img`, the
//! raw contents of the runs that have [`PE_PRESENT`], back to back.
//!
//! Runs with [`PE_PARENT`] have their data in the parent images: the
//! directory the `parent` symlink of the images directory points to (a
//! pre-dump), under the same pagemap name, possibly again in its parent.
//! [`PagesReader`] follows that chain and [`PagesReader::pieces`] says
//! where each piece of data really is.

use super::{magic, pb, Error, ImageReader, ImageWriter, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The run's pages are in the parent (pre-dump) image.
pub const PE_PARENT: u32 = 1 << 0;
/// The run's pages are restored lazily (on fault).
pub const PE_LAZY: u32 = 1 << 1;
/// The run's pages are in this image's pages file.
pub const PE_PRESENT: u32 = 1 << 2;

/// The symlink in an images directory that names its parent images.
pub const PARENT_LINK: &str = "parent";

/// Most parents a chain may have (a symlink loop ends here).
const MAX_CHAIN: usize = 64;

/// Size of a page in images.
pub const PAGE_SIZE: u64 = 4096;

/// Largest single write to a pages file. ext4 (and other file systems with
/// large folios) sizes its page-cache folios by the write: 1 MiB writes
/// got 1 MiB folios, whose first filling took 8-10 times the CPU of 256
/// KiB ones on the development VM (docs/performance.md); tmpfs does not
/// care.
pub const WRITE_CHUNK: usize = 256 << 10;

/// Name of the pagemap image of `id` (a pid, or a shmem id).
pub fn pagemap_file(id: u32) -> String {
    format!("pagemap-{id}.img")
}

/// Name of the pages file `pages_id`.
pub fn pages_file(pages_id: u32) -> String {
    format!("pages-{pages_id}.img")
}

/// One run of pages of a pagemap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
    /// Where the run's data starts in the pages file (only meaningful with
    /// [`PE_PRESENT`]).
    pub offset: u64,
}

impl PageRun {
    /// Bytes the run covers.
    pub fn len(&self) -> u64 {
        self.nr_pages.saturating_mul(PAGE_SIZE)
    }

    /// Whether the run has no pages.
    pub fn is_empty(&self) -> bool {
        self.nr_pages == 0
    }

    /// Whether the run's data is in this pages file.
    pub fn is_present(&self) -> bool {
        self.flags & PE_PRESENT != 0
    }
}

/// Writes a pagemap and its pages file.
#[derive(Debug)]
pub struct PagesWriter {
    map: ImageWriter,
    pages_path: PathBuf,
    pages: BufWriter<File>,
    pending: Option<PageRun>,
    offset: u64,
}

impl PagesWriter {
    /// Creates `pagemap-<id>.img` and `pages-<pages_id>.img` in `dir`.
    pub fn create(dir: &Path, id: u32, pages_id: u32) -> Result<Self> {
        Self::create_named(dir, &pagemap_file(id), pages_id)
    }

    /// Creates the pagemap `name` (e.g. `pagemap-shmem-<shmid>.img`) and
    /// `pages-<pages_id>.img` in `dir`.
    pub fn create_named(dir: &Path, name: &str, pages_id: u32) -> Result<Self> {
        let mut map = ImageWriter::create(dir, name, magic::PAGEMAP)?;
        map.write(&pb::PagemapHead { pages_id })?;
        let pages_path = dir.join(pages_file(pages_id));
        let f = File::create(&pages_path).map_err(|source| Error::Io {
            file: pages_path.clone(),
            op: "create",
            source,
        })?;
        Ok(PagesWriter {
            map,
            pages_path,
            // Writes of WRITE_CHUNK or more bypass the buffer.
            pages: BufWriter::with_capacity(WRITE_CHUNK, f),
            pending: None,
            offset: 0,
        })
    }

    fn check(&self, vaddr: u64, len: u64) -> Result<()> {
        if vaddr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return Err(Error::Format {
                file: self.map.path().to_owned(),
                offset: self.offset,
                what: format!("run at {vaddr:#x} of {len} bytes is not whole pages"),
            });
        }
        Ok(())
    }

    fn push(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> Result<()> {
        if let Some(p) = &mut self.pending {
            if p.flags == flags && p.vaddr.checked_add(p.len()) == Some(vaddr) {
                p.nr_pages += nr_pages;
                return Ok(());
            }
        }
        self.flush_entry()?;
        self.pending = Some(PageRun {
            vaddr,
            nr_pages,
            flags,
            offset: self.offset,
        });
        Ok(())
    }

    fn flush_entry(&mut self) -> Result<()> {
        if let Some(p) = self.pending.take() {
            self.map.write(&pb::PagemapEntry {
                vaddr: p.vaddr,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(p.flags),
                nr_pages: Some(p.nr_pages),
            })?;
        }
        Ok(())
    }

    /// Adds whole pages at `vaddr` whose contents are `data`. With
    /// [`PE_PRESENT`] in `flags` the data goes to the pages file; without it
    /// (e.g. [`PE_PARENT`]) only the extent is recorded. A run adjacent to
    /// the previous one with the same flags extends it.
    pub fn add(&mut self, vaddr: u64, flags: u32, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        self.check(vaddr, len)?;
        self.push(vaddr, len / PAGE_SIZE, flags)?;
        if flags & PE_PRESENT != 0 {
            self.write_data(data)?;
            self.offset += len;
        }
        Ok(())
    }

    /// Appends `data` to the pages file in writes of at most
    /// [`WRITE_CHUNK`].
    fn write_data(&mut self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(WRITE_CHUNK) {
            self.pages.write_all(chunk).map_err(|source| Error::Io {
                file: self.pages_path.clone(),
                op: "write",
                source,
            })?;
        }
        Ok(())
    }

    /// Adds several runs, `(vaddr, len, flags)`, whose data are `data`
    /// back to back, with one write. Every run must be [`PE_PRESENT`] and
    /// their lengths must add up to `data.len()`.
    pub fn add_many(&mut self, runs: &[(u64, u64, u32)], data: &[u8]) -> Result<()> {
        let mut total = 0u64;
        for &(vaddr, len, flags) in runs {
            self.check(vaddr, len)?;
            if flags & PE_PRESENT == 0 {
                return Err(Error::Format {
                    file: self.map.path().to_owned(),
                    offset: self.offset,
                    what: format!("run at {vaddr:#x} has data but is not PE_PRESENT"),
                });
            }
            total = total.saturating_add(len);
        }
        if total != data.len() as u64 {
            return Err(Error::Format {
                file: self.map.path().to_owned(),
                offset: self.offset,
                what: format!("runs of {total} bytes given {} bytes of data", data.len()),
            });
        }
        for &(vaddr, len, flags) in runs {
            self.push(vaddr, len / PAGE_SIZE, flags)?;
            self.offset += len;
        }
        self.write_data(data)
    }

    /// Records `nr_pages` pages at `vaddr` that have no data here (flags
    /// without [`PE_PRESENT`], e.g. [`PE_PARENT`]).
    pub fn add_absent(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> Result<()> {
        self.check(vaddr, nr_pages.saturating_mul(PAGE_SIZE))?;
        if flags & PE_PRESENT != 0 {
            return Err(Error::Format {
                file: self.map.path().to_owned(),
                offset: self.offset,
                what: format!("run at {vaddr:#x} is PE_PRESENT but has no data"),
            });
        }
        self.push(vaddr, nr_pages, flags)
    }

    /// Bytes written to the pages file so far.
    pub fn pages_written(&self) -> u64 {
        self.offset
    }

    /// Writes the last entry and flushes both files to the kernel. No
    /// fsync, as CRIU does none: making the images durable is the caller's
    /// choice (sync, or a file system that does it).
    pub fn finish(mut self) -> Result<()> {
        self.flush_entry()?;
        let path = self.pages_path;
        self.pages.into_inner().map_err(|e| Error::Io {
            file: path,
            op: "flush",
            source: e.into_error(),
        })?;
        self.map.finish()
    }
}

/// Reads a pagemap and the data of its runs.
#[derive(Debug)]
pub struct PagesReader {
    pages_id: u32,
    runs: Vec<PageRun>,
    pages_path: PathBuf,
    pages: File,
    pages_size: u64,
    /// The same pagemap in the parent images, when a run is there.
    parent: Option<Box<PagesReader>>,
}

/// A piece of page data: `len` bytes for `vaddr`, at `offset` of the
/// pages file of `src` (this image or one of its parents).
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub vaddr: u64,
    pub len: u64,
    pub src: &'a PagesReader,
    pub offset: u64,
}

impl PagesReader {
    /// Opens `pagemap-<id>.img` in `dir` and the pages file it names.
    pub fn open(dir: &Path, id: u32) -> Result<Self> {
        Self::open_named(dir, &pagemap_file(id))
    }

    /// Opens the pagemap `name` (e.g. `pagemap-shmem-<shmid>.img`) and its
    /// pages file, and the parents' when runs are in the parent.
    pub fn open_named(dir: &Path, name: &str) -> Result<Self> {
        Self::open_depth(dir, name, 0)
    }

    fn open_depth(dir: &Path, name: &str, depth: usize) -> Result<Self> {
        let mut r = ImageReader::open(dir, name, magic::PAGEMAP)?;
        let at = r.offset();
        let head: pb::PagemapHead = r.next()?.ok_or_else(|| Error::Format {
            file: r.path().to_owned(),
            offset: at,
            what: "no pagemap_head".into(),
        })?;
        let mut runs = Vec::new();
        let mut offset = 0u64;
        loop {
            let at = r.offset();
            let Some(e) = r.next::<pb::PagemapEntry>()? else {
                break;
            };
            let nr_pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
            let flags = match (e.flags, e.in_parent) {
                (Some(f), _) => f,
                (None, Some(true)) => PE_PARENT,
                (None, _) => PE_PRESENT,
            };
            let run = PageRun {
                vaddr: e.vaddr,
                nr_pages,
                flags,
                offset,
            };
            let bad = |what: &str| Error::Format {
                file: r.path().to_owned(),
                offset: at,
                what: format!("pagemap entry at {:#x}: {what}", e.vaddr),
            };
            if e.vaddr % PAGE_SIZE != 0 {
                return Err(bad("address is not page aligned"));
            }
            if nr_pages
                .checked_mul(PAGE_SIZE)
                .and_then(|l| l.checked_add(e.vaddr))
                .is_none()
            {
                return Err(bad("run overflows the address space"));
            }
            if run.is_present() {
                offset = offset
                    .checked_add(run.len())
                    .ok_or_else(|| bad("pages file offset overflows"))?;
            }
            runs.push(run);
        }
        let pages_path = dir.join(pages_file(head.pages_id));
        let pages = File::open(&pages_path).map_err(|source| Error::Io {
            file: pages_path.clone(),
            op: "open",
            source,
        })?;
        let pages_size = pages
            .metadata()
            .map_err(|source| Error::Io {
                file: pages_path.clone(),
                op: "stat",
                source,
            })?
            .len();
        if offset > pages_size {
            return Err(Error::Format {
                file: pages_path,
                offset: pages_size,
                what: format!("pagemap needs {offset} bytes of pages, file has {pages_size}"),
            });
        }
        let parent = if runs.iter().any(|r| r.flags & PE_PARENT != 0) {
            let pdir = dir.join(PARENT_LINK);
            if depth >= MAX_CHAIN {
                return Err(Error::Format {
                    file: pdir,
                    offset: 0,
                    what: format!("more than {MAX_CHAIN} parent images (a symlink loop?)"),
                });
            }
            // Without parent images the runs there cannot be read:
            // [`Self::pieces`] says so.
            if pdir.is_dir() {
                Some(Box::new(Self::open_depth(&pdir, name, depth + 1)?))
            } else {
                None
            }
        } else {
            None
        };
        Ok(PagesReader {
            pages_id: head.pages_id,
            runs,
            pages_path,
            pages,
            pages_size,
            parent,
        })
    }

    /// The same pagemap in the parent images, if this one has runs there.
    pub fn parent(&self) -> Option<&PagesReader> {
        self.parent.as_deref()
    }

    /// `(vaddr, pages)` of every run whose data this image set has, here
    /// or in a parent: what a later dump may leave to it.
    pub fn extents(&self) -> Vec<(u64, u64)> {
        self.runs
            .iter()
            .filter(|r| r.flags & (PE_PRESENT | PE_PARENT) != 0)
            .map(|r| (r.vaddr, r.nr_pages))
            .collect()
    }

    /// Where the data of every run is, parents followed, in pagemap order.
    pub fn pieces(&self) -> Result<Vec<Piece<'_>>> {
        let mut out = Vec::with_capacity(self.runs.len());
        for r in &self.runs {
            if r.is_present() {
                out.push(Piece {
                    vaddr: r.vaddr,
                    len: r.len(),
                    src: self,
                    offset: r.offset,
                });
            } else if r.flags & PE_PARENT != 0 {
                self.in_parent(r.vaddr, r.vaddr + r.len(), &mut out)?;
            }
        }
        Ok(out)
    }

    /// Pieces of `[start, end)` from the parent chain.
    fn in_parent<'a>(&'a self, start: u64, end: u64, out: &mut Vec<Piece<'a>>) -> Result<()> {
        let missing = |at: u64| Error::Format {
            file: self.pages_path.clone(),
            offset: 0,
            what: format!(
                "page {at:#x} is in the parent images ({PARENT_LINK} link), which do not have it"
            ),
        };
        let p = self.parent.as_deref().ok_or_else(|| missing(start))?;
        // First run of the parent that ends after `start`.
        let mut i = p.runs.partition_point(|r| r.vaddr + r.len() <= start);
        let mut at = start;
        while at < end {
            let r = p.runs.get(i).ok_or_else(|| missing(at))?;
            if r.vaddr > at {
                return Err(missing(at));
            }
            let stop = end.min(r.vaddr + r.len());
            if r.is_present() {
                out.push(Piece {
                    vaddr: at,
                    len: stop - at,
                    src: p,
                    offset: r.offset + (at - r.vaddr),
                });
            } else if r.flags & PE_PARENT != 0 {
                p.in_parent(at, stop, out)?;
            } else {
                return Err(missing(at));
            }
            at = stop;
            i += 1;
        }
        Ok(())
    }

    /// The pages file's id (from the pagemap head).
    pub fn pages_id(&self) -> u32 {
        self.pages_id
    }

    /// The runs, in pagemap order.
    pub fn runs(&self) -> &[PageRun] {
        &self.runs
    }

    /// Reads `buf.len()` bytes of the pages file at `offset`.
    /// `len` bytes of the pages file from `offset` (a multiple of the page
    /// size), mapped rather than read: straight from the page cache.
    pub fn map_at(&self, offset: u64, len: usize) -> Result<crate::sys::file_map::FileMap> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > self.pages_size) || offset % PAGE_SIZE != 0 {
            return Err(Error::Format {
                file: self.pages_path.clone(),
                offset,
                what: format!(
                    "a map of {len} bytes is past the end ({}) or unaligned",
                    self.pages_size
                ),
            });
        }
        crate::sys::file_map::FileMap::new(std::os::fd::AsFd::as_fd(&self.pages), offset, len)
            .map_err(|e| Error::Io {
                file: self.pages_path.clone(),
                op: "mmap",
                source: std::io::Error::from(e),
            })
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.pages_size) {
            return Err(Error::Format {
                file: self.pages_path.clone(),
                offset,
                what: format!(
                    "read of {} bytes is past the end ({})",
                    buf.len(),
                    self.pages_size
                ),
            });
        }
        self.pages
            .read_exact_at(buf, offset)
            .map_err(|source| Error::Io {
                file: self.pages_path.clone(),
                op: "read",
                source,
            })
    }

    /// Reads the data of a present run into `buf`, which must be exactly
    /// [`PageRun::len`] bytes.
    pub fn read_run(&self, run: &PageRun, buf: &mut [u8]) -> Result<()> {
        if !run.is_present() || buf.len() as u64 != run.len() {
            return Err(Error::Format {
                file: self.pages_path.clone(),
                offset: run.offset,
                what: format!(
                    "run at {:#x} (flags {:#x}, {} bytes) cannot fill {} bytes",
                    run.vaddr,
                    run.flags,
                    run.len(),
                    buf.len()
                ),
            });
        }
        self.read_at(run.offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(b: u8, n: usize) -> Vec<u8> {
        vec![b; n * PAGE_SIZE as usize]
    }

    #[test]
    fn writes_merges_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 42, 7).unwrap();
        w.add(0x10000, PE_PRESENT, &page(1, 2)).unwrap();
        w.add(0x12000, PE_PRESENT, &page(2, 1)).unwrap(); // merges
        w.add(0x13000, PE_PRESENT | PE_LAZY, &page(3, 1)).unwrap(); // other flags
        w.add_absent(0x20000, 3, PE_PARENT).unwrap();
        w.add(0x30000, PE_PRESENT, &page(4, 1)).unwrap();
        assert!(w.add(0x30001, PE_PRESENT, &page(4, 1)).is_err());
        w.finish().unwrap();

        let r = PagesReader::open(dir.path(), 42).unwrap();
        assert_eq!(r.pages_id(), 7);
        let runs = r.runs().to_vec();
        let want = [
            (0x10000, 3, PE_PRESENT, 0),
            (0x13000, 1, PE_PRESENT | PE_LAZY, 0x3000),
            (0x20000, 3, PE_PARENT, 0x4000),
            (0x30000, 1, PE_PRESENT, 0x4000),
        ];
        let got: Vec<_> = runs
            .iter()
            .map(|r| (r.vaddr, r.nr_pages, r.flags, r.offset))
            .collect();
        assert_eq!(got, want);
        let mut buf = vec![0; 3 * PAGE_SIZE as usize];
        r.read_run(&runs[0], &mut buf).unwrap();
        assert_eq!(&buf[..2 * PAGE_SIZE as usize], &page(1, 2)[..]);
        assert!(buf[2 * PAGE_SIZE as usize..].iter().all(|&b| b == 2));
        let mut one = vec![0; PAGE_SIZE as usize];
        r.read_run(&runs[3], &mut one).unwrap();
        assert!(one.iter().all(|&b| b == 4));
        assert!(r.read_run(&runs[2], &mut one).is_err());
    }

    #[test]
    fn add_many_is_add_run_by_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 5, 5).unwrap();
        let mut data = page(1, 2);
        data.extend(page(2, 1));
        data.extend(page(3, 1));
        let runs = [
            (0x10000, 0x2000, PE_PRESENT),
            (0x12000, 0x1000, PE_PRESENT), // merges
            (0x40000, 0x1000, PE_PRESENT),
        ];
        assert!(w.add_many(&runs, &data[4096..]).is_err());
        w.add_many(&runs, &data).unwrap();
        w.add(0x41000, PE_PRESENT, &page(4, 1)).unwrap(); // merges too
        w.finish().unwrap();
        let r = PagesReader::open(dir.path(), 5).unwrap();
        let got: Vec<_> = r
            .runs()
            .iter()
            .map(|r| (r.vaddr, r.nr_pages, r.offset))
            .collect();
        assert_eq!(got, [(0x10000, 3, 0), (0x40000, 2, 0x3000)]);
        let mut buf = vec![0; 0x2000];
        r.read_run(&r.runs()[1], &mut buf).unwrap();
        assert!(buf[..4096].iter().all(|&b| b == 3));
        assert!(buf[4096..].iter().all(|&b| b == 4));
    }

    /// pre-dump 1 -> pre-dump 2 -> dump: pieces come from where the data
    /// last was written.
    #[test]
    fn parent_runs_resolve_through_the_chain() {
        let root = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = root.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (d1, d2, d3) = (d("1"), d("2"), d("3"));
        std::os::unix::fs::symlink("../1", d2.join(PARENT_LINK)).unwrap();
        std::os::unix::fs::symlink("../2", d3.join(PARENT_LINK)).unwrap();
        // 1: pages 0..8 = 1
        let mut w = PagesWriter::create(&d1, 9, 1).unwrap();
        w.add(0x10000, PE_PRESENT, &page(1, 8)).unwrap();
        w.finish().unwrap();
        // 2: pages 2..4 rewritten = 2, the rest in the parent
        let mut w = PagesWriter::create(&d2, 9, 2).unwrap();
        w.add_absent(0x10000, 2, PE_PARENT).unwrap();
        w.add(0x12000, PE_PRESENT, &page(2, 2)).unwrap();
        w.add_absent(0x14000, 4, PE_PARENT).unwrap();
        w.finish().unwrap();
        // 3: page 5 rewritten = 3, page 7 gone, the rest in the parent
        let mut w = PagesWriter::create(&d3, 9, 3).unwrap();
        w.add_absent(0x10000, 5, PE_PARENT).unwrap();
        w.add(0x15000, PE_PRESENT, &page(3, 1)).unwrap();
        w.add_absent(0x16000, 1, PE_PARENT).unwrap();
        w.finish().unwrap();

        let r = PagesReader::open(&d3, 9).unwrap();
        assert_eq!(r.extents(), [(0x10000, 5), (0x15000, 1), (0x16000, 1)]);
        let pieces = r.pieces().unwrap();
        let mut got = Vec::new();
        for p in &pieces {
            let mut b = vec![0u8; p.len as usize];
            p.src.read_at(p.offset, &mut b).unwrap();
            for (i, pg) in b.chunks(PAGE_SIZE as usize).enumerate() {
                assert!(pg.iter().all(|&x| x == pg[0]));
                got.push(((p.vaddr - 0x10000) / PAGE_SIZE + i as u64, pg[0]));
            }
        }
        assert_eq!(
            got,
            [(0, 1), (1, 1), (2, 2), (3, 2), (4, 1), (5, 3), (6, 1)]
        );
    }

    #[test]
    fn parent_runs_without_parent_data_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let (d1, d2) = (root.path().join("1"), root.path().join("2"));
        std::fs::create_dir(&d1).unwrap();
        std::fs::create_dir(&d2).unwrap();
        let mut w = PagesWriter::create(&d2, 4, 2).unwrap();
        w.add_absent(0x10000, 2, PE_PARENT).unwrap();
        w.finish().unwrap();
        // No parent link at all.
        let e = PagesReader::open(&d2, 4).unwrap().pieces().unwrap_err();
        assert!(e.to_string().contains("parent"), "{e}");
        // A parent that lacks the second page.
        std::os::unix::fs::symlink("../1", d2.join(PARENT_LINK)).unwrap();
        let mut w = PagesWriter::create(&d1, 4, 1).unwrap();
        w.add(0x10000, PE_PRESENT, &page(1, 1)).unwrap();
        w.finish().unwrap();
        let r = PagesReader::open(&d2, 4).unwrap();
        let e = r.pieces().unwrap_err();
        assert!(e.to_string().contains("0x11000"), "{e}");
        // A loop of parents ends.
        std::fs::remove_file(d2.join(PARENT_LINK)).unwrap();
        std::os::unix::fs::symlink(".", d2.join(PARENT_LINK)).unwrap();
        // (the kernel stops following the links first: ELOOP)
        let r = PagesReader::open(&d2, 4);
        assert!(r.is_err() || r.unwrap().pieces().is_err());
    }

    #[test]
    fn short_pages_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PagesWriter::create(dir.path(), 1, 1).unwrap();
        w.add(0x1000, PE_PRESENT, &page(9, 2)).unwrap();
        w.finish().unwrap();
        let p = dir.path().join(pages_file(1));
        std::fs::write(&p, page(9, 1)).unwrap();
        let e = PagesReader::open(dir.path(), 1).unwrap_err();
        assert!(e.to_string().contains("pages-1.img"), "{e}");
    }

    #[test]
    fn golden_pagemap_offsets_cover_the_pages_file() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden-images/basic/img");
        let dir = if dir.is_dir() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden-images/basic/img")
        };
        let r = PagesReader::open(&dir, 20157).unwrap();
        let present: u64 = r
            .runs()
            .iter()
            .filter(|r| r.is_present())
            .map(|r| r.len())
            .sum();
        let size = std::fs::metadata(dir.join(pages_file(r.pages_id())))
            .unwrap()
            .len();
        assert_eq!(present, size);
        let last = r.runs().iter().rfind(|r| r.is_present()).unwrap();
        let mut buf = vec![0; last.len() as usize];
        r.read_run(last, &mut buf).unwrap();
    }
}
