//! Probes of kernel features, for `criu check`.

use std::os::fd::AsRawFd;

use super::{Errno, SysResult};

/// A raw syscall with three arguments, to see whether it exists.
pub fn syscall3(nr: libc::c_long, a: [libc::c_long; 3]) -> SysResult<libc::c_long> {
    // SAFETY: the probes pass invalid fds or null pointers, which the kernel
    // rejects without touching memory.
    super::check(unsafe { libc::syscall(nr, a[0], a[1], a[2]) })
}

/// Soft-dirty bits: writing "4" to clear_refs is accepted.
pub fn soft_dirty() -> Result<(), String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| e.to_string())?;
    if smaps
        .lines()
        .any(|l| l.starts_with("VmFlags:") && l.contains(" sd"))
    {
        Ok(())
    } else {
        Err("no VMA is soft-dirty tracked (CONFIG_MEM_SOFT_DIRTY is off)".into())
    }
}

const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;

/// The PAGEMAP_SCAN ioctl: an empty scan is accepted.
pub fn pagemap_scan() -> Result<(), String> {
    let f = std::fs::File::open("/proc/self/pagemap").map_err(|e| e.to_string())?;
    // struct pm_scan_arg, all zero but its size: scans nothing.
    let mut arg = [0u64; 12];
    arg[0] = std::mem::size_of_val(&arg) as u64;
    // SAFETY: `arg` is a valid pm_scan_arg for the whole call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), PAGEMAP_SCAN, arg.as_mut_ptr()) };
    match (r, Errno::last()) {
        (r, Errno::ENOTTY) if r < 0 => Err("ioctl PAGEMAP_SCAN: not supported (ENOTTY)".into()),
        _ => Ok(()),
    }
}
