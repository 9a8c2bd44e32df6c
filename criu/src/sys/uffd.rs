//! userfaultfd for write tracking (Linux 6.7+): the ABI of
//! `linux/userfaultfd.h` that criu needs to run inside a task with remote
//! syscalls (numbers, flags and the byte layout of the ioctl arguments),
//! and a local [`Uffd`] on criu's own memory for tests and probes.
//!
//! With `UFFD_FEATURE_WP_ASYNC` the kernel resolves write-protect faults
//! itself (it just clears the page's uffd-wp bit), so the task never blocks
//! and nobody reads the fd; PAGEMAP_SCAN then reports the pages written
//! since they were protected (`PAGE_IS_WRITTEN`). `UFFD_FEATURE_WP_UNPOPULATED`
//! makes PAGEMAP_SCAN call an anonymous mapping "wp-allowed", so that the
//! scan itself can protect pages (`PM_SCAN_WP_MATCHING`).
//!
//! Protecting a hole (UFFDIO_WRITEPROTECT over a range with holes) leaves a
//! pte marker there, which pagemap reports as a swapped page: criu protects
//! only the pages that exist, with the scan, and never the holes. A page
//! made in a hole later by a write has no uffd-wp bit: it shows as written.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{check, Errno, SysResult};

/// The API version of the handshake.
pub const UFFD_API: u64 = 0xAA;

/// `userfaultfd(2)` flag: handle faults of user mode only (what an
/// unprivileged caller may ask when `vm.unprivileged_userfaultfd` is 0).
pub const UFFD_USER_MODE_ONLY: u64 = 1;

pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

/// The features write tracking asks for.
pub const TRACK_FEATURES: u64 = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;

pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

const fn iowr(nr: u64, size: u64) -> u64 {
    (3 << 30) | (size << 16) | (0xAA << 8) | nr
}

/// `_IOWR(UFFDIO, 0x3F, struct uffdio_api)`.
pub const UFFDIO_API: u64 = iowr(0x3F, 24);
/// `_IOWR(UFFDIO, 0x00, struct uffdio_register)`.
pub const UFFDIO_REGISTER: u64 = iowr(0x00, 32);
/// `_IOWR(UFFDIO, 0x06, struct uffdio_writeprotect)`.
pub const UFFDIO_WRITEPROTECT: u64 = iowr(0x06, 24);

fn words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `struct uffdio_api` asking for `features`.
pub fn api_arg(features: u64) -> Vec<u8> {
    words(&[UFFD_API, features, 0])
}

/// The features the kernel granted, from a `struct uffdio_api` it filled.
pub fn api_features(arg: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(arg.get(8..16)?.try_into().ok()?))
}

/// `struct uffdio_register` of `[start, start + len)` for write-protect.
pub fn register_arg(start: u64, len: u64) -> Vec<u8> {
    words(&[start, len, UFFDIO_REGISTER_MODE_WP, 0])
}

/// `struct uffdio_writeprotect` protecting `[start, start + len)`.
pub fn writeprotect_arg(start: u64, len: u64) -> Vec<u8> {
    words(&[start, len, UFFDIO_WRITEPROTECT_MODE_WP])
}

/// A userfaultfd of criu's own address space, set up for asynchronous
/// write-protect tracking.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
    pub features: u64,
}

impl Uffd {
    /// Creates one (close-on-exec, non-blocking, user faults only) and
    /// does the API handshake asking for [`TRACK_FEATURES`].
    pub fn for_tracking() -> SysResult<Self> {
        let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as libc::c_long;
        // SAFETY: userfaultfd takes only flags and returns a new fd or -1.
        let fd = check(unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                flags | UFFD_USER_MODE_ONLY as libc::c_long,
            )
        })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by no one.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut arg = api_arg(TRACK_FEATURES);
        ioctl(&fd, UFFDIO_API, &mut arg)?;
        let features = api_features(&arg).ok_or(Errno::EINVAL)?;
        Ok(Uffd { fd, features })
    }

    /// Registers `[start, start + len)` for write-protect tracking.
    pub fn register_wp(&self, start: u64, len: u64) -> SysResult<()> {
        ioctl(&self.fd, UFFDIO_REGISTER, &mut register_arg(start, len))
    }

    /// Write-protects `[start, start + len)`.
    pub fn protect(&self, start: u64, len: u64) -> SysResult<()> {
        ioctl(
            &self.fd,
            UFFDIO_WRITEPROTECT,
            &mut writeprotect_arg(start, len),
        )
    }
}

fn ioctl(fd: &impl AsRawFd, req: u64, arg: &mut [u8]) -> SysResult<()> {
    // SAFETY: `arg` is the byte image of the struct `req` takes (its size
    // is encoded in `req` and the builders above make exactly that many
    // bytes), writable and alive across the call.
    check(unsafe {
        libc::ioctl(fd.as_raw_fd(), req as libc::Ioctl, arg.as_mut_ptr()) as libc::c_long
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::pagemap_scan::{self, tests_support as mem, PageRegion, Query};
    use crate::sys::PAGE_SIZE;

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(UFFDIO_API, 0xc018_aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020_aa00);
        assert_eq!(UFFDIO_WRITEPROTECT, 0xc018_aa06);
        assert_eq!(register_arg(1, 2).len(), 32);
        assert_eq!(writeprotect_arg(1, 2).len(), 24);
        assert_eq!(api_features(&api_arg(7)), Some(7));
    }

    fn scan(pm: &std::fs::File, base: u64, len: u64, q: &Query, flags: u64) -> Vec<(u64, u64)> {
        let mut out = [PageRegion::default(); 16];
        let (n, _) = pagemap_scan::scan_flags(pm, base, base + len, q, &mut out, flags).unwrap();
        out[..n]
            .iter()
            .filter(|r| r.categories != 0)
            .map(|r| ((r.start - base) / PAGE_SIZE, (r.end - base) / PAGE_SIZE))
            .collect()
    }

    /// Our own memory: the scan protects the pages that exist (and leaves
    /// the holes alone); then exactly the pages written since show as
    /// written, holes written to included; a matching scan re-arms them.
    #[test]
    fn written_pages_are_found_and_rearmed() {
        let u = match Uffd::for_tracking() {
            Ok(u) if u.features & TRACK_FEATURES == TRACK_FEATURES => u,
            other => {
                eprintln!("no async write tracking here: {other:?}");
                return;
            }
        };
        let len = 32 * PAGE_SIZE;
        let base = mem::map_anon(len as usize);
        for p in [0u64, 1, 5, 20] {
            mem::poke(base + p * PAGE_SIZE, 9);
        }
        u.register_wp(base, len).unwrap();
        let pm = std::fs::File::open("/proc/self/pagemap").unwrap();
        let populated = Query {
            any: pagemap_scan::PAGE_IS_PRESENT | pagemap_scan::PAGE_IS_SWAPPED,
            returned: pagemap_scan::PAGE_IS_PRESENT | pagemap_scan::PAGE_IS_SWAPPED,
            ..Query::default()
        };
        let wp = pagemap_scan::PM_SCAN_WP_MATCHING | pagemap_scan::PM_SCAN_CHECK_WPASYNC;
        assert_eq!(
            scan(&pm, base, len, &populated, wp),
            [(0, 2), (5, 6), (20, 21)]
        );
        // (a page read in a hole maps the zero page: no data, left out)
        let written = Query {
            all: pagemap_scan::PAGE_IS_WRITTEN
                | pagemap_scan::PAGE_IS_PRESENT
                | pagemap_scan::PAGE_IS_PFNZERO,
            inverted: pagemap_scan::PAGE_IS_PFNZERO,
            returned: pagemap_scan::PAGE_IS_WRITTEN,
            ..Query::default()
        };
        assert_eq!(scan(&pm, base, len, &written, 0), []);
        for p in [1u64, 2, 3, 30] {
            mem::poke(base + p * PAGE_SIZE, 7);
        }
        mem::peek(base + 10 * PAGE_SIZE);
        // No markers in the holes: still only what exists.
        assert_eq!(
            scan(&pm, base, len, &populated, 0),
            [(0, 4), (5, 6), (10, 11), (20, 21), (30, 31)]
        );
        assert_eq!(scan(&pm, base, len, &written, wp), [(1, 4), (30, 31)]);
        // Re-armed: nothing written since.
        assert_eq!(scan(&pm, base, len, &written, 0), []);
        mem::poke(base + 5 * PAGE_SIZE, 1);
        assert_eq!(scan(&pm, base, len, &written, 0), [(5, 6)]);
        drop(u);
        mem::unmap(base, len as usize);
    }
}
