use crate::prelude::*;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "files/lease00",
    family: "files",
    description: "a read lease and a write lease (F_SETLEASE) are still held after restore: a conflicting open is refused and the holder gets SIGIO",
    dump_opts: &["--file-locks"],
    restore_opts: &["--file-locks"],
    ..Desc::DEFAULT
};

fn lease_of(fd: &OwnedFd) -> Result<i32> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) };
    ensure!(r >= 0, "F_GETLEASE: {}", std::io::Error::last_os_error());
    Ok(r)
}

pub fn run(t: &mut Test) -> Result<()> {
    // A lease break signals the holder with SIGIO: take it by sigtimedwait.
    let mut io = nix::sys::signal::SigSet::empty();
    io.add(nix::sys::signal::Signal::SIGIO);
    io.thread_block().context("block SIGIO")?;
    let rd_path = t.dir()?.join("lease_read");
    let wr_path = t.dir()?.join("lease_write");
    std::fs::write(&rd_path, b"r").context("create read-lease file")?;
    std::fs::write(&wr_path, b"w").context("create write-lease file")?;
    let rd = open(&rd_path, OFlag::O_RDONLY, Mode::empty()).context("open read-lease file")?;
    let wr = open(&wr_path, OFlag::O_RDWR, Mode::empty()).context("open write-lease file")?;
    let set = |fd: &OwnedFd, ty: i32| -> Result<()> {
        // SAFETY: integer arguments only.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, ty) };
        ensure!(r == 0, "F_SETLEASE {ty}: {}", std::io::Error::last_os_error());
        Ok(())
    };
    set(&rd, libc::F_RDLCK)?;
    set(&wr, libc::F_WRLCK)?;
    t.daemon()?;
    t.wait_sig();
    ensure!(lease_of(&rd)? == libc::F_RDLCK, "the read lease is gone: F_GETLEASE says {}", lease_of(&rd)?);
    ensure!(lease_of(&wr)? == libc::F_WRLCK, "the write lease is gone: F_GETLEASE says {}", lease_of(&wr)?);
    // A conflicting open starts a break: refused at once with O_NONBLOCK.
    match open(&wr_path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) {
        Err(Errno::EWOULDBLOCK) => {}
        other => bail!("opening the write-leased file for reading: {other:?}, expected EWOULDBLOCK"),
    }
    match open(&rd_path, OFlag::O_WRONLY | OFlag::O_NONBLOCK, Mode::empty()) {
        Err(Errno::EWOULDBLOCK) => {}
        other => bail!("opening the read-leased file for writing: {other:?}, expected EWOULDBLOCK"),
    }
    let ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
    // SAFETY: set is a zeroed sigset_t filled by sigemptyset/sigaddset;
    // the pointers are valid for the call.
    let got = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGIO);
        libc::sigtimedwait(&set, std::ptr::null_mut(), &ts)
    };
    ensure!(got == libc::SIGIO, "no SIGIO for the lease break (got {got})");
    Ok(())
}
