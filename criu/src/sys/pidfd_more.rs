//! pidfds with flags, and a short-lived helper process whose pidfds outlive
//! it (how a pidfd of a task that is gone is made again).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{check, Errno, SysResult};

/// `PIDFD_THREAD`: the pidfd refers to one thread (its value is `O_EXCL`).
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// `pidfd_open(pid, flags)`; `flags` is a mix of `PIDFD_NONBLOCK`
/// (`O_NONBLOCK`) and [`PIDFD_THREAD`].
pub fn pidfd_open_flags(pid: i32, flags: u32) -> SysResult<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })?;
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn fork_paused() -> SysResult<i32> {
    // SAFETY: the child runs nothing but pause(); it never returns into
    // Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Errno::last());
    }
    if pid == 0 {
        loop {
            // SAFETY: pause has no arguments; the loop ends with SIGKILL.
            unsafe { libc::pause() };
        }
    }
    Ok(pid)
}

/// A child of criu that only waits to be killed.
#[derive(Debug)]
pub struct Parked {
    pid: i32,
    pidfd: Option<OwnedFd>,
}

impl Parked {
    /// Forks the helper, in pid namespace `pidns` when given (from a
    /// short-lived thread that enters it, so criu itself stays where it
    /// is). The child only calls `pause` (async-signal-safe), so forking a
    /// threaded criu is fine.
    pub fn spawn(pidns: Option<BorrowedFd<'_>>) -> SysResult<Parked> {
        let pid = match pidns {
            None => fork_paused()?,
            Some(ns) => {
                let ns = ns.try_clone_to_owned().map_err(|_| Errno::EMFILE)?;
                std::thread::spawn(move || {
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWPID)?;
                    fork_paused()
                })
                .join()
                .map_err(|_| Errno::ECHILD)??
            }
        };
        let pidfd = match pidfd_open_flags(pid, 0) {
            Ok(fd) => fd,
            Err(e) => {
                // SAFETY: integers only: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return Err(e);
            }
        };
        Ok(Parked {
            pid,
            pidfd: Some(pidfd),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Kills and reaps the helper: every pidfd of it is dead afterwards.
    pub fn finish(mut self) -> SysResult<()> {
        self.end()
    }

    fn end(&mut self) -> SysResult<()> {
        let Some(pidfd) = self.pidfd.take() else {
            return Ok(());
        };
        send_signal(pidfd.as_fd(), libc::SIGKILL)?;
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        loop {
            // SAFETY: info is a writable siginfo_t; P_PIDFD names our child
            // by its pidfd, which stays open across the call.
            let r = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    pidfd.as_raw_fd() as libc::id_t,
                    info.as_mut_ptr(),
                    libc::WEXITED,
                )
            };
            if r == 0 {
                return Ok(());
            }
            let e = Errno::last();
            if e != Errno::EINTR {
                return Err(e);
            }
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> SysResult<()> {
    // SAFETY: integers and a null siginfo pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfds_of_a_parked_helper_go_dead() {
        let p = Parked::spawn(None).expect("spawn");
        let fd = pidfd_open_flags(p.pid(), libc::O_NONBLOCK as u32).expect("pidfd_open");
        send_signal(fd.as_fd(), 0).expect("alive");
        p.finish().expect("finish");
        assert_eq!(send_signal(fd.as_fd(), 0), Err(Errno::ESRCH));
    }
}
