//! Processes with a given memory layout, for criu's own tests and benches
//! (not part of criu's job): a forked child that maps and touches memory
//! with raw syscalls, reports where, and waits to be dumped.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{Errno, SysResult, PAGE_SIZE};

/// One mapping the child makes.
#[derive(Debug, Clone)]
pub struct MapSpec {
    /// Bytes to map (private anonymous, MAP_NORESERVE).
    pub len: u64,
    /// Protection of the whole mapping first.
    pub prot: i32,
    /// Pages (indexes) made read-write and written with `index as u8 + 1` (wrapping)
    /// in their first byte.
    pub written: Vec<u64>,
    /// Pages (indexes) only read (which maps the shared zero page).
    pub read: Vec<u64>,
    /// Pages (indexes) made PROT_NONE after all of the above.
    pub hidden: Vec<u64>,
    /// MAP_SHARED instead of MAP_PRIVATE (shared anonymous memory).
    pub shared: bool,
}

/// A forked child holding mappings made from [`MapSpec`]s.
#[derive(Debug)]
pub struct MemChild {
    pub pid: i32,
    /// Start address of each mapping, in spec order.
    pub bases: Vec<u64>,
}

/// What the child runs: raw syscalls only (it is the fork of a possibly
/// multi-threaded process). Returns the failing step's errno.
fn child_body(specs: &[MapSpec], out: i32) -> ! {
    let fail = |step: u64| -> ! {
        let e = Errno::last_raw() as u64;
        let msg = (u64::MAX - step).to_le_bytes();
        // SAFETY: writes 8 bytes from a live stack array; then exits the
        // child without running any of the parent's destructors.
        unsafe {
            libc::write(out, msg.as_ptr().cast(), 8);
            libc::write(out, e.to_le_bytes().as_ptr().cast(), 8);
            libc::_exit(1)
        }
    };
    // SAFETY: prctl and setsid take integers only. A session of its own:
    // the child is dumped as a tree of its own, not as a shell job.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::setsid();
    }
    for (i, s) in specs.iter().enumerate() {
        // SAFETY: a new mapping placed by the kernel; nothing refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                s.len as usize,
                s.prot,
                if s.shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                } | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            fail(i as u64 * 10);
        }
        let base = base as u64;
        let page = |p: u64| (base + p * PAGE_SIZE) as *mut u8;
        for &p in &s.written {
            if p * PAGE_SIZE >= s.len {
                fail(i as u64 * 10 + 1);
            }
            // SAFETY: the page is inside our mapping (checked above) and
            // made read-write first.
            unsafe {
                if libc::mprotect(
                    page(p).cast(),
                    PAGE_SIZE as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                ) != 0
                {
                    fail(i as u64 * 10 + 2);
                }
                page(p).write_volatile((p as u8).wrapping_add(1));
            }
        }
        for &p in &s.read {
            if p * PAGE_SIZE >= s.len || s.prot & libc::PROT_READ == 0 {
                fail(i as u64 * 10 + 3);
            }
            // SAFETY: inside our mapping, which is readable (checked).
            unsafe { page(p).read_volatile() };
        }
        for &p in &s.hidden {
            // SAFETY: changes protection of one page of our own mapping.
            if unsafe { libc::mprotect(page(p).cast(), PAGE_SIZE as usize, libc::PROT_NONE) } != 0 {
                fail(i as u64 * 10 + 4);
            }
        }
        // SAFETY: writes 8 bytes from a live stack array.
        unsafe { libc::write(out, base.to_le_bytes().as_ptr().cast(), 8) };
    }
    // Stdio to /dev/null and no other fds: only what criu can dump.
    // SAFETY: plain fd syscalls on a NUL-terminated literal path.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        loop {
            libc::pause();
        }
    }
}

/// Forks a child that makes the mappings of `specs` and then waits for
/// signals forever. The caller kills and reaps it (see
/// [`super::rusage::wait4`]).
pub fn spawn_mem_child(specs: &[MapSpec]) -> SysResult<MemChild> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is valid for two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: pipe2 returned two fresh fds that we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only makes raw syscalls (child_body) and never
    // returns; `specs` is read-only memory copied into it by fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Errno::last());
    }
    if pid == 0 {
        child_body(specs, w.as_raw_fd());
    }
    drop(w);
    let mut f = std::fs::File::from(r);
    let mut bases = Vec::with_capacity(specs.len());
    for _ in specs {
        let mut b = [0u8; 8];
        if f.read_exact(&mut b).is_err() {
            // SAFETY: integer arguments; `pid` is our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = super::rusage::wait4(pid);
            return Err(Errno::EPIPE);
        }
        let v = u64::from_le_bytes(b);
        if v > u64::MAX - 1000 {
            let mut e = [0u8; 8];
            let _ = f.read_exact(&mut e);
            let _ = super::rusage::wait4(pid);
            return Err(Errno::from_raw(u64::from_le_bytes(e) as i32));
        }
        bases.push(v);
    }
    Ok(MemChild { pid, bases })
}

/// Makes the program `cmd` starts see exactly the fd table `fds` describes:
/// each `(fd, number)` pair is duplicated to `number` (without
/// close-on-exec), and every other fd from 3 up is closed at exec, whatever
/// the caller itself inherited.
/// Stdio (0–2) stays as `cmd` sets it. Used where a test compares fd numbers
/// with a recorded run.
pub fn exact_fds(cmd: &mut std::process::Command, fds: Vec<(OwnedFd, i32)>) {
    use std::os::unix::process::CommandExt;
    let mut wanted: Vec<i32> = fds.iter().map(|&(_, n)| n).filter(|&n| n >= 3).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let closure = move || {
        // Sources first to numbers above every target and every source, so
        // that no dup2 overwrites a source still needed.
        let top = fds
            .iter()
            .map(|(f, n)| f.as_raw_fd().max(*n))
            .max()
            .unwrap_or(2)
            + 1;
        for (i, (f, _)) in fds.iter().enumerate() {
            // SAFETY: dup2 of fds this closure owns; async-signal-safe.
            if unsafe { libc::dup2(f.as_raw_fd(), top + i as i32) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for (i, (_, n)) in fds.iter().enumerate() {
            // SAFETY: as above.
            if unsafe { libc::dup2(top + i as i32, *n) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // Close-on-exec rather than close: std's own exec-error pipe must
        // live until the exec.
        const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
        let mut from = 3u32;
        for &n in &wanted {
            if (n as u32) > from {
                // SAFETY: flags a range of fds of the child about to exec.
                unsafe {
                    libc::syscall(
                        libc::SYS_close_range,
                        from,
                        n as u32 - 1,
                        CLOSE_RANGE_CLOEXEC,
                    )
                };
            }
            from = n as u32 + 1;
        }
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, CLOSE_RANGE_CLOEXEC) };
        Ok(())
    };
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe syscalls (dup2, close_range); it allocates nothing
    // (the fd list was built before).
    unsafe { cmd.pre_exec(closure) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_maps_and_reports_then_dies_on_kill() {
        let c = spawn_mem_child(&[MapSpec {
            len: 16 * PAGE_SIZE,
            prot: libc::PROT_NONE,
            written: vec![1, 3],
            read: vec![],
            hidden: vec![3],
            shared: false,
        }])
        .unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", c.pid)).unwrap();
        let line = format!(
            "{:x}-{:x} rw-p",
            c.bases[0] + PAGE_SIZE,
            c.bases[0] + 2 * PAGE_SIZE
        );
        assert!(maps.contains(&line), "{line} not in\n{maps}");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.pid), nix::sys::signal::SIGKILL)
            .unwrap();
        let r = super::super::rusage::wait4(c.pid).unwrap();
        assert_eq!(r.exit_code(), None);
    }

    #[test]
    fn exact_fds_leaves_only_the_given_table() {
        // An fd of ours without close-on-exec, which the child must not see.
        let stray = nix::unistd::dup(std::io::stdin()).unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "ls /proc/$$/fd"]);
        let a = std::fs::File::open("/dev/null").unwrap();
        let b = std::fs::File::open("/").unwrap();
        exact_fds(&mut cmd, vec![(a.into(), 7), (b.into(), 4)]);
        let out = cmd.output().unwrap();
        let mut fds: Vec<i32> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 1, 2, 4, 7]);
        drop(stray);
    }
}
