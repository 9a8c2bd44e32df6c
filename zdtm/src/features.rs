//! Probes for the kernel features the catalogue names in `Desc::feature`.

use crate::sys;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    pub present: bool,
    pub reason: String,
}

fn yes(reason: impl Into<String>) -> Probe {
    Probe {
        present: true,
        reason: reason.into(),
    }
}

fn no(reason: impl Into<String>) -> Probe {
    Probe {
        present: false,
        reason: reason.into(),
    }
}

/// Every feature name a test may declare, in a stable order.
pub const FEATURES: &[&str] = &[
    "userfaultfd",
    "membarrier",
    "pagemap_scan",
    "soft_dirty",
    "clone3_set_tid",
    "pidfd_getfd",
    "rseq",
    "timens",
    "hugetlb",
    "userns",
    "sysvipc",
    "ip_tool",
    "timer_restore_ids",
    "guard_regions",
];

/// Probe one feature; None for a name we do not know.
pub fn probe(name: &str) -> Option<Probe> {
    Some(match name {
        "userfaultfd" => userfaultfd(),
        "membarrier" => membarrier(),
        "pagemap_scan" => pagemap_scan(),
        "soft_dirty" => soft_dirty(),
        "clone3_set_tid" => clone3_set_tid(),
        "pidfd_getfd" => errno_probe(
            "pidfd_getfd",
            libc::SYS_pidfd_getfd,
            [-1, 0, 0, 0],
            libc::EBADF,
        ),
        "rseq" => errno_probe("rseq", libc::SYS_rseq, [0, 0, 0, 0], libc::EINVAL),
        "timens" => path_probe("/proc/self/ns/time"),
        "hugetlb" => hugetlb(),
        "userns" => userns(),
        "sysvipc" => path_probe("/proc/sysvipc/shm"),
        "ip_tool" => ip_tool(),
        "timer_restore_ids" => timer_restore_ids(),
        "guard_regions" => guard_regions(),
        _ => return None,
    })
}

/// All features as (name, probe).
pub fn probe_all() -> Vec<(&'static str, Probe)> {
    FEATURES
        .iter()
        .filter_map(|&n| probe(n).map(|p| (n, p)))
        .collect()
}

/// A syscall given invalid arguments: `expect` errno means the kernel knows it.
fn errno_probe(what: &str, nr: libc::c_long, args: [libc::c_long; 4], expect: i32) -> Probe {
    match sys::probe_syscall(nr, args) {
        Ok(_) => yes(format!("{what}: call accepted")),
        Err(e) if e.raw_os_error() == Some(expect) => {
            yes(format!("{what}: known to the kernel ({e})"))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => no(format!("{what}: ENOSYS")),
        Err(e) => no(format!("{what}: unexpected error {e}")),
    }
}

/// POSIX timers created with chosen ids (PR_TIMER_CREATE_RESTORE_IDS,
/// Linux 6.13): without it a restored timer cannot keep its id.
fn timer_restore_ids() -> Probe {
    const PR_TIMER_CREATE_RESTORE_IDS: libc::c_long = 77;
    const GET: libc::c_long = 2;
    match sys::probe_syscall(libc::SYS_prctl, [PR_TIMER_CREATE_RESTORE_IDS, GET, 0, 0]) {
        Ok(_) => yes("PR_TIMER_CREATE_RESTORE_IDS known"),
        Err(e) => no(format!(
            "PR_TIMER_CREATE_RESTORE_IDS (Linux 6.13+): {e}; restored timers cannot keep their ids"
        )),
    }
}

/// iproute2's `ip`, which tests use to set up network devices (as
/// upstream's zdtm does).
fn ip_tool() -> Probe {
    match std::process::Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => yes(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => no(format!("ip -V: {}", o.status)),
        Err(e) => no(format!("no `ip` command (iproute2): {e}")),
    }
}

fn path_probe(p: &str) -> Probe {
    if std::path::Path::new(p).exists() {
        yes(format!("{p} exists"))
    } else {
        no(format!("{p} missing"))
    }
}

fn userfaultfd() -> Probe {
    const UFFD_USER_MODE_ONLY: libc::c_long = 1;
    let cloexec = libc::O_CLOEXEC as libc::c_long;
    let mut last = String::new();
    for flags in [cloexec | UFFD_USER_MODE_ONLY, cloexec] {
        match sys::probe_syscall(libc::SYS_userfaultfd, [flags, 0, 0, 0]) {
            Ok(fd) => {
                sys::close_raw(fd as i32);
                return yes(format!("userfaultfd({flags:#x}) works"));
            }
            Err(e) => last = format!("userfaultfd({flags:#x}): {e}"),
        }
    }
    no(last)
}

/// membarrier with private expedited commands, and the registrations of
/// a task readable (MEMBARRIER_CMD_GET_REGISTRATIONS, Linux 6.3): criu
/// cannot dump them without.
fn membarrier() -> Probe {
    const QUERY: i32 = 0;
    const PRIVATE_EXPEDITED: i64 = 1 << 3;
    const REGISTER_PRIVATE_EXPEDITED: i64 = 1 << 4;
    const GET_REGISTRATIONS: i64 = 1 << 9;
    match sys::membarrier(QUERY, 0) {
        Ok(m) if m & PRIVATE_EXPEDITED == 0 || m & REGISTER_PRIVATE_EXPEDITED == 0 => no(
            format!("MEMBARRIER_CMD_QUERY mask {m:#x} lacks PRIVATE_EXPEDITED"),
        ),
        Ok(m) if m & GET_REGISTRATIONS == 0 => no(format!(
            "MEMBARRIER_CMD_QUERY mask {m:#x} lacks GET_REGISTRATIONS (Linux 6.3+): a task's registrations cannot be read"
        )),
        Ok(m) => yes(format!("MEMBARRIER_CMD_QUERY mask {m:#x}")),
        Err(e) => no(format!("membarrier: {e}")),
    }
}

fn pagemap_scan() -> Probe {
    // _IOWR('f', 16, struct pm_scan_arg), the struct being 96 bytes.
    const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
    let f = match std::fs::File::open("/proc/self/pagemap") {
        Ok(f) => f,
        Err(e) => return no(format!("open /proc/self/pagemap: {e}")),
    };
    use std::os::fd::AsFd;
    match sys::probe_ioctl(f.as_fd(), PAGEMAP_SCAN, 0) {
        Ok(_) => yes("PAGEMAP_SCAN accepted"),
        Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
            yes("PAGEMAP_SCAN known (EFAULT on a null argument)")
        }
        Err(e) => no(format!("ioctl PAGEMAP_SCAN: {e}")),
    }
}

fn soft_dirty() -> Probe {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "4") {
        return no(format!("write 4 to /proc/self/clear_refs: {e}"));
    }
    let mut buf = vec![0u8; 3 * 4096];
    let start = buf.as_ptr() as usize;
    let page = (start + 4095) & !4095;
    let idx = page - start;
    buf[idx] = 1;
    std::hint::black_box(&mut buf);
    let mut f = match std::fs::File::open("/proc/self/pagemap") {
        Ok(f) => f,
        Err(e) => return no(format!("open /proc/self/pagemap: {e}")),
    };
    let mut ent = [0u8; 8];
    let r = f
        .seek(SeekFrom::Start((page / 4096 * 8) as u64))
        .and_then(|_| f.read_exact(&mut ent));
    if let Err(e) = r {
        return no(format!("read /proc/self/pagemap: {e}"));
    }
    let v = u64::from_le_bytes(ent);
    if v & (1 << 55) != 0 {
        yes("a written page shows the soft-dirty bit")
    } else {
        no("a page written after clear_refs=4 has no soft-dirty bit (CONFIG_MEM_SOFT_DIRTY off?)")
    }
}

fn clone3_set_tid() -> Probe {
    let p = errno_probe("clone3", libc::SYS_clone3, [0, 0, 0, 0], libc::EINVAL);
    if !p.present {
        return p;
    }
    if !std::path::Path::new("/proc/sys/kernel/ns_last_pid").exists() {
        return no("/proc/sys/kernel/ns_last_pid missing");
    }
    p
}

fn hugetlb() -> Probe {
    let s = match std::fs::read_to_string("/proc/meminfo") {
        Ok(s) => s,
        Err(e) => return no(format!("read /proc/meminfo: {e}")),
    };
    let free = s
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Root may reserve them for a test (tests flagged suid do).
    let nr = "/proc/sys/vm/nr_hugepages";
    let can_reserve = nix::unistd::geteuid().is_root()
        && nix::unistd::access(nr, nix::unistd::AccessFlags::W_OK).is_ok();
    match free {
        Some(n) if n > 0 => yes(format!("{n} free huge pages")),
        Some(_) if can_reserve => yes(format!("no free huge pages, but root may raise {nr}")),
        Some(_) => no(format!(
            "no free huge pages (HugePages_Free: 0) and {nr} is not writable"
        )),
        None => no("/proc/meminfo has no HugePages_Free"),
    }
}

/// MADV_GUARD_INSTALL (6.13) and the pagemap bit that shows it (6.14).
fn guard_regions() -> Probe {
    const MADV_GUARD_INSTALL: i32 = 102;
    const PM_GUARD_REGION: u64 = 1 << 58;
    let m = match sys::Mapping::anon(4096, libc::PROT_READ, libc::MAP_PRIVATE) {
        Ok(m) => m,
        Err(e) => return no(format!("mmap: {e}")),
    };
    if let Err(e) = m.madvise(0, 4096, MADV_GUARD_INSTALL) {
        return no(format!("madvise(MADV_GUARD_INSTALL): {e}"));
    }
    let mut ent = [0u8; 8];
    let r = std::fs::File::open("/proc/self/pagemap").and_then(|mut f| {
        f.seek(SeekFrom::Start((m.addr() / 4096 * 8) as u64))?;
        f.read_exact(&mut ent)
    });
    match r {
        Err(e) => no(format!("read /proc/self/pagemap: {e}")),
        Ok(()) if u64::from_le_bytes(ent) & PM_GUARD_REGION != 0 => {
            yes("MADV_GUARD_INSTALL works and pagemap shows it")
        }
        Ok(()) => no("pagemap does not show guard regions (bit 58)"),
    }
}

fn userns() -> Probe {
    let p = path_probe("/proc/self/ns/user");
    if !p.present {
        return p;
    }
    match std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(s) if s.trim() == "0" => no("max_user_namespaces is 0"),
        _ => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_has_a_probe_and_unknown_has_none() {
        for f in FEATURES {
            let p = probe(f).unwrap();
            assert!(!p.reason.is_empty(), "{f}");
        }
        assert!(probe("no_such_feature").is_none());
    }
}
