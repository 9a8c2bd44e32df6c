//! The PAGEMAP_SCAN ioctl of /proc/PID/pagemap (Linux 6.7+): the runs of
//! pages of a range that fall in given categories, in one call, skipping
//! unpopulated page tables instead of reporting every hole page by page.
//!
//! ABI from `linux/fs.h` (`struct pm_scan_arg`, `struct page_region`).

use std::os::fd::AsRawFd;

use super::{check, SysResult};

pub const PAGE_IS_WPALLOWED: u64 = 1 << 0;
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
pub const PAGE_IS_HUGE: u64 = 1 << 6;
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;
/// A page of a MADV_GUARD_INSTALL guard region (Linux 6.15+).
pub const PAGE_IS_GUARD: u64 = 1 << 8;

/// Scan flag: write-protect (again) the pages that match, atomically with
/// reporting them (async userfaultfd write tracking).
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// Scan flag: fail with EPERM on a VMA not set up for async write tracking.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// One run of pages that share the returned categories: `[start, end)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 =
    (3 << 30) | ((std::mem::size_of::<PmScanArg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;

/// Which pages a scan reports. A page matches when, after flipping the
/// `inverted` bits of its categories, it has every bit of `all` and (if
/// `any` is not empty) at least one bit of `any`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query {
    pub inverted: u64,
    pub all: u64,
    pub any: u64,
    /// Categories reported back in [`PageRegion::categories`]; adjacent
    /// pages merge into one region only when these agree.
    pub returned: u64,
}

/// Scans `[start, end)` of the task whose pagemap is `pagemap`, filling
/// `out` with matching regions. Returns how many were filled and where the
/// walk stopped: when that is below `end`, `out` was full; call again from
/// there.
pub fn scan(
    pagemap: &impl AsRawFd,
    start: u64,
    end: u64,
    q: &Query,
    out: &mut [PageRegion],
) -> SysResult<(usize, u64)> {
    scan_flags(pagemap, start, end, q, out, 0)
}

/// [`scan`] with scan `flags` ([`PM_SCAN_WP_MATCHING`],
/// [`PM_SCAN_CHECK_WPASYNC`]).
pub fn scan_flags(
    pagemap: &impl AsRawFd,
    start: u64,
    end: u64,
    q: &Query,
    out: &mut [PageRegion],
    flags: u64,
) -> SysResult<(usize, u64)> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags,
        start,
        end,
        walk_end: 0,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        max_pages: 0,
        category_inverted: q.inverted,
        category_mask: q.all,
        category_anyof_mask: q.any,
        return_mask: q.returned,
    };
    // SAFETY: `arg` is a properly laid out pm_scan_arg that lives across
    // the call; `vec`/`vec_len` describe `out`, writable and exactly
    // `out.len()` page_region structs long; the kernel writes nothing else.
    let n = check(unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            PAGEMAP_SCAN as libc::Ioctl,
            &mut arg as *mut PmScanArg,
        ) as libc::c_long
    })?;
    let n = usize::try_from(n).unwrap_or(0).min(out.len());
    Ok((n, arg.walk_end))
}

/// The page frame number of the shared zero page, as /proc/self/pagemap
/// shows it (needs CAP_SYS_ADMIN: `None` when PFNs read as 0).
pub fn zero_pfn() -> SysResult<Option<u64>> {
    use std::os::unix::fs::FileExt;
    const PFN_MASK: u64 = (1 << 55) - 1;
    const PRESENT: u64 = 1 << 63;
    let len = super::PAGE_SIZE as usize;
    // SAFETY: a fresh private anonymous page, read once and unmapped below;
    // nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(super::Errno::last());
    }
    // SAFETY: `base` is a readable mapping of `len` bytes; a read fault of
    // an untouched private anonymous page maps the zero page.
    let _ = unsafe { (base as *const u8).read_volatile() };
    let mut e = [0u8; 8];
    let r = std::fs::File::open("/proc/self/pagemap")
        .and_then(|f| f.read_exact_at(&mut e, base as u64 / super::PAGE_SIZE * 8));
    // SAFETY: our mapping from above, no references into it remain.
    unsafe { libc::munmap(base, len) };
    r.map_err(|e| super::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let e = u64::from_le_bytes(e);
    Ok((e & PRESENT != 0 && e & PFN_MASK != 0).then_some(e & PFN_MASK))
}

/// Memory of our own to test the page pipeline on.
#[cfg(test)]
pub mod tests_support {
    /// A fresh private anonymous read-write mapping of `len` bytes.
    pub fn map_anon(len: usize) -> u64 {
        // SAFETY: a new mapping the kernel places; nothing aliases it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as u64
    }

    pub fn unmap(addr: u64, len: usize) {
        // SAFETY: only called on mappings from `map_anon`, once.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }

    pub fn poke(addr: u64, v: u8) {
        // SAFETY: callers pass addresses inside a `map_anon` mapping.
        unsafe { (addr as *mut u8).write_volatile(v) }
    }

    /// madvise on a `map_anon` range; false when the kernel refuses.
    pub fn madvise(addr: u64, len: u64, advice: i32) -> bool {
        // SAFETY: callers pass a range inside a `map_anon` mapping of
        // theirs; the advice only changes that range.
        unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, advice) == 0 }
    }

    pub fn peek(addr: u64) -> u8 {
        // SAFETY: callers pass addresses inside a `map_anon` mapping.
        unsafe { (addr as *const u8).read_volatile() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn zero_pfn_is_found_as_root() {
        let z = zero_pfn().unwrap();
        if nix::unistd::geteuid().is_root() {
            assert!(z.is_some_and(|p| p > 0));
        }
    }

    #[test]
    fn ioctl_number_matches_the_kernel_header() {
        assert_eq!(std::mem::size_of::<PmScanArg>(), 96);
        assert_eq!(std::mem::size_of::<PageRegion>(), 24);
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
    }

    /// Our own memory: a few written pages in a sparse mapping come back as
    /// the only present runs; read-only touched pages are the zero page.
    #[test]
    fn finds_written_and_zero_pages_of_our_own_memory() {
        let pm = File::open("/proc/self/pagemap").unwrap();
        let len = 64 * 4096usize;
        // A private anonymous mapping from the allocator is not guaranteed
        // fresh: map one ourselves.
        // SAFETY: a fresh anonymous mapping, unmapped at the end of the
        // test; only accessed inside its bounds.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let p = base as *mut u8;
        for i in [3usize, 4, 10] {
            // SAFETY: inside the mapping.
            unsafe { p.add(i * 4096).write_volatile(1) };
        }
        for i in [20usize, 21] {
            // SAFETY: inside the mapping.
            let _ = unsafe { p.add(i * 4096).read_volatile() };
        }
        let start = base as u64;
        let q = Query {
            inverted: PAGE_IS_PFNZERO,
            all: PAGE_IS_PFNZERO,
            any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            returned: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
        };
        let mut out = [PageRegion::default(); 8];
        let r = scan(&pm, start, start + len as u64, &q, &mut out);
        let zq = Query {
            inverted: 0,
            all: PAGE_IS_PFNZERO,
            any: 0,
            returned: PAGE_IS_PFNZERO,
        };
        let mut zout = [PageRegion::default(); 8];
        let zr = scan(&pm, start, start + len as u64, &zq, &mut zout);
        // SAFETY: our mapping, no references into it remain.
        unsafe { libc::munmap(base, len) };
        let (n, end) = match r {
            Err(nix::errno::Errno::ENOTTY) => return, // kernel without it
            r => r.unwrap(),
        };
        assert_eq!(end, start + len as u64);
        let got: Vec<_> = out[..n]
            .iter()
            .map(|r| ((r.start - start) / 4096, (r.end - start) / 4096))
            .collect();
        assert_eq!(got, [(3, 5), (10, 11)]);
        let (zn, _) = zr.unwrap();
        let zgot: Vec<_> = zout[..zn]
            .iter()
            .map(|r| ((r.start - start) / 4096, (r.end - start) / 4096))
            .collect();
        assert_eq!(zgot, [(20, 22)]);
    }
}
