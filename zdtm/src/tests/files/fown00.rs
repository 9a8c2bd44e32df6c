use crate::prelude::*;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub const DESC: Desc = Desc {
    name: "files/fown00",
    family: "files",
    description: "O_ASYNC files keep their owner (F_SETOWN_EX pid, pgrp, tid) and F_SETSIG signal: writes after restore signal the test",
    ..Desc::DEFAULT
};

// Not in this libc: the kernel's numbers.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;
const F_OWNER_TID: i32 = 0;
const F_OWNER_PID: i32 = 1;
const F_OWNER_PGRP: i32 = 2;

#[repr(C)]
struct FOwnerEx {
    type_: i32,
    pid: i32,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe().context("pipe")
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::empty()).context("socketpair")
}

fn fcntl(fd: &OwnedFd, cmd: i32, arg: libc::c_long) -> Result<i32> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, arg) };
    ensure!(r >= 0, "fcntl({}, {cmd}, {arg}): {}", fd.as_raw_fd(), std::io::Error::last_os_error());
    Ok(r)
}

fn set_owner(fd: &OwnedFd, ty: i32, pid: i32, sig: i32) -> Result<()> {
    let o = FOwnerEx { type_: ty, pid };
    // SAFETY: o is a valid f_owner_ex for the duration of the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &o as *const FOwnerEx) };
    ensure!(r == 0, "F_SETOWN_EX({ty}, {pid}): {}", std::io::Error::last_os_error());
    if sig != 0 {
        fcntl(fd, F_SETSIG, sig as libc::c_long)?;
    }
    let fl = fcntl(fd, libc::F_GETFL, 0)?;
    fcntl(fd, libc::F_SETFL, (fl | libc::O_ASYNC) as libc::c_long)?;
    Ok(())
}

fn owner(fd: &OwnedFd) -> Result<(i32, i32, i32)> {
    let mut o = FOwnerEx { type_: 0, pid: 0 };
    // SAFETY: o is writable for the duration of the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut o as *mut FOwnerEx) };
    ensure!(r == 0, "F_GETOWN_EX: {}", std::io::Error::last_os_error());
    Ok((o.type_, o.pid, fcntl(fd, F_GETSIG, 0)?))
}

fn write_one(fd: &OwnedFd) -> Result<()> {
    nix::unistd::write(fd, b"x").context("write")?;
    Ok(())
}

/// Waits for `sig`; returns the si_fd it carried.
fn take_signal(sig: i32) -> Result<Option<i32>> {
    let ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
    // SAFETY: set and info are zeroed plain C structs, set filled by
    // sigemptyset/sigaddset; all pointers are valid for the calls.
    let (r, info) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        (libc::sigtimedwait(&set, &mut info, &ts), info)
    };
    if r < 0 {
        return Ok(None);
    }
    // si_fd sits after si_band (a long) in the SIGPOLL union member.
    let raw = &info as *const libc::siginfo_t as *const u8;
    // SAFETY: siginfo_t is 128 bytes; offset 16 + 8 + 4 stays inside.
    let fd = unsafe { std::ptr::read_unaligned(raw.add(16 + 8) as *const i32) };
    Ok(Some(fd))
}

pub fn run(t: &mut Test) -> Result<()> {
    let rt = libc::SIGRTMIN() + 2;
    let rt2 = libc::SIGRTMIN() + 4;
    // rt signals are not in nix's Signal: blocked with libc.
    // SAFETY: set is a valid, zeroed sigset_t filled by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [rt, rt2, libc::SIGIO] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let me = std::process::id() as i32;
    let pgrp = nix::unistd::getpgrp().as_raw();
    // SAFETY: no arguments.
    let tid = unsafe { libc::gettid() };
    let (a_r, a_w) = pipe()?;
    set_owner(&a_r, F_OWNER_PID, me, rt)?;
    let (b_r, b_w) = pipe()?;
    set_owner(&b_r, F_OWNER_PGRP, pgrp, 0)?;
    let (c0, c1) = socketpair()?;
    set_owner(&c0, F_OWNER_TID, tid, rt2)?;
    let fds: [RawFd; 3] = [a_r.as_raw_fd(), b_r.as_raw_fd(), c0.as_raw_fd()];
    t.daemon()?;
    t.wait_sig();
    ensure!(owner(&a_r)? == (F_OWNER_PID, me, rt), "pipe a owner {:?}, expected pid {me} signal {rt}", owner(&a_r)?);
    ensure!(owner(&b_r)? == (F_OWNER_PGRP, pgrp, 0), "pipe b owner {:?}, expected pgrp {pgrp}", owner(&b_r)?);
    ensure!(owner(&c0)? == (F_OWNER_TID, tid, rt2), "socket owner {:?}, expected tid {tid} signal {rt2}", owner(&c0)?);
    for f in [&a_r, &b_r, &c0] {
        let fl = fcntl(f, libc::F_GETFL, 0)?;
        ensure!(fl & libc::O_ASYNC != 0, "fd {} lost O_ASYNC (flags {fl:o})", f.as_raw_fd());
    }
    write_one(&a_w)?;
    let got = take_signal(rt)?;
    ensure!(got == Some(fds[0]), "write into pipe a: signal {rt} carried fd {got:?}, expected {}", fds[0]);
    write_one(&b_w)?;
    ensure!(take_signal(libc::SIGIO)?.is_some(), "write into pipe b: no SIGIO");
    write_one(&c1)?;
    let got = take_signal(rt2)?;
    ensure!(got == Some(fds[2]), "write into the socket: signal {rt2} carried fd {got:?}, expected {}", fds[2]);
    Ok(())
}
