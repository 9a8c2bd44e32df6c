//! wait4(2): reap a child and get its resource usage (peak RSS), which
//! nix does not offer.

use super::{check, SysResult};

/// How a reaped child ended and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// The raw wait status (see `libc::WIFEXITED` & co).
    pub status: i32,
    /// Peak resident set size, in KiB (`ru_maxrss`).
    pub maxrss_kb: i64,
    /// User and system CPU time, in microseconds.
    pub utime_us: i64,
    pub stime_us: i64,
}

impl Reaped {
    /// The exit code, when the child exited (rather than being killed).
    pub fn exit_code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }
}

/// Waits for child `pid` to end and reaps it.
pub fn wait4(pid: i32) -> SysResult<Reaped> {
    let mut status: libc::c_int = 0;
    // SAFETY: all-zero is a valid `struct rusage` (integers only).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid for writes for the call.
        let r = check(unsafe { libc::wait4(pid, &mut status, 0, &mut ru) as libc::c_long });
        match r {
            Err(super::Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    Ok(Reaped {
        status,
        maxrss_kb: ru.ru_maxrss,
        utime_us: us(ru.ru_utime),
        stime_us: us(ru.ru_stime),
    })
}

/// Peak resident set size of this process so far, in KiB.
pub fn self_maxrss_kb() -> SysResult<i64> {
    // SAFETY: all-zero is a valid `struct rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is valid for writes for the call.
    check(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) as libc::c_long })?;
    Ok(ru.ru_maxrss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    fn reaps_a_child_with_its_status() {
        let c = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let r = wait4(c.id() as i32).unwrap();
        assert_eq!(r.exit_code(), Some(7));
        assert!(r.maxrss_kb > 0);
        assert!(self_maxrss_kb().unwrap() > 0);
    }
}
