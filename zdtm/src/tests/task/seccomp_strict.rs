use crate::prelude::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use std::os::fd::{AsFd, AsRawFd};

pub const DESC: Desc = Desc {
    name: "task/seccomp_strict",
    family: "task",
    description: "a child in seccomp strict mode keeps echoing over pipes, and is still killed by a forbidden syscall",
    ..Desc::DEFAULT
};

fn ask(to: &std::os::fd::OwnedFd, from: &std::os::fd::OwnedFd, b: u8) -> Result<u8> {
    ensure!(nix::unistd::write(to, &[b]).context("write to child")? == 1, "short write");
    let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
    ensure!(poll(&mut fds, PollTimeout::from(5000u16)).context("poll")? == 1, "child did not answer {b}");
    let mut r = [0u8; 1];
    ensure!(nix::unistd::read(from, &mut r).context("read from child")? == 1, "child closed its pipe");
    Ok(r[0])
}

pub fn run(t: &mut Test) -> Result<()> {
    let (req_r, req_w) = nix::unistd::pipe().context("pipe")?;
    let (ans_r, ans_w) = nix::unistd::pipe().context("pipe")?;
    let (rr, aw) = (req_r.as_raw_fd(), ans_w.as_raw_fd());
    let child = fork_child(move || {
        // SAFETY: prctl with integer arguments; after it only read, write
        // and exit are allowed, so the loop uses raw read/write on a stack
        // buffer and never allocates.
        if unsafe { libc::prctl(libc::PR_SET_SECCOMP, 1, 0, 0, 0) } != 0 {
            bail!("PR_SET_SECCOMP strict: {}", std::io::Error::last_os_error());
        }
        let mut b = [0u8; 1];
        loop {
            // SAFETY: b is a live one-byte buffer.
            if unsafe { libc::read(rr, b.as_mut_ptr().cast(), 1) } != 1 {
                // SAFETY: exit (not exit_group) is allowed in strict mode.
                unsafe { libc::syscall(libc::SYS_exit, 3) };
            }
            if b[0] == b'x' {
                // forbidden: the kernel kills us with SIGKILL
                // SAFETY: getpid takes no arguments.
                unsafe { libc::syscall(libc::SYS_getpid) };
            }
            b[0] = b[0].wrapping_add(1);
            // SAFETY: as above.
            unsafe { libc::write(aw, b.as_ptr().cast(), 1) };
        }
    })?;
    drop(req_r);
    drop(ans_w);
    let w = &req_w;
    let res = (|| {
        ensure!(ask(w, &ans_r, 1)? == 2, "child echo before dump");
        ensure!(proc_status(Some(child.pid), "Seccomp")? == "1", "child not in strict mode");
        t.daemon()?;
        t.wait_sig();
        let m = proc_status(Some(child.pid), "Seccomp")?;
        ensure!(m == "1", "child's seccomp mode after restore: {m}");
        ensure!(ask(w, &ans_r, 41)? == 42, "child echo after restore");
        ensure!(ask(w, &ans_r, 99)? == 100, "second child echo after restore");
        nix::unistd::write(req_w.as_fd(), b"x").context("write x")?;
        let st = child.wait()?;
        ensure!(
            matches!(st, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
            "child survived a forbidden syscall in strict mode: {st:?}"
        );
        Ok(())
    })();
    child.kill();
    res
}
