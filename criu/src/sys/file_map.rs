//! A read-only view of part of a file through a shared mapping: its
//! bytes come straight from the page cache, without a copy into a buffer.

use std::os::fd::BorrowedFd;

use super::SysResult;

/// `len` bytes of a file from a page-aligned offset, mapped read-only
/// (and populated) until dropped.
#[derive(Debug)]
pub struct FileMap {
    addr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl FileMap {
    /// Maps `len` (> 0) bytes of `fd` from `offset` (a multiple of the
    /// page size).
    pub fn new(fd: BorrowedFd<'_>, offset: u64, len: usize) -> SysResult<FileMap> {
        let size = std::num::NonZeroUsize::new(len).ok_or(nix::errno::Errno::EINVAL)?;
        let off = i64::try_from(offset).map_err(|_| nix::errno::Errno::EINVAL)?;
        // SAFETY: a new shared read-only mapping chosen by the kernel; it
        // aliases nothing of ours, and is unmapped only in drop.
        let addr = unsafe {
            nix::sys::mman::mmap(
                None,
                size,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_SHARED | nix::sys::mman::MapFlags::MAP_POPULATE,
                fd,
                off,
            )?
        };
        Ok(FileMap { addr, len })
    }

    /// The mapped bytes. (A file truncated meanwhile would fault: criu
    /// maps only its own images, which nothing truncates during a restore.)
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference
        // from `bytes` outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.addr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn maps_the_bytes_of_a_file() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let m = FileMap::new(f.as_fd(), 4096, 8192).unwrap();
        assert_eq!(m.bytes(), &data[4096..]);
        assert!(FileMap::new(f.as_fd(), 0, 0).is_err());
    }
}
