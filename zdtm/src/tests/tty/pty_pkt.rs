use crate::prelude::*;
use nix::pty::openpty;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "tty/pty_pkt",
    family: "tty",
    // pty indexes are the machine's: a restore needs its index free
    flags: &[Flag::Excl],
    description: "a pty master in packet mode with its slave locked keeps both after restore, and packets still carry the data",
    ..Desc::DEFAULT
};

fn get_int(fd: &OwnedFd, req: libc::Ioctl, what: &str) -> Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: the request writes one int into `v`, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    ensure!(r == 0, "{what}: {}", std::io::Error::last_os_error());
    Ok(v)
}

fn set_int(fd: &OwnedFd, req: libc::Ioctl, v: i32, what: &str) -> Result<()> {
    // SAFETY: the request reads one int from `v`, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const libc::c_int) };
    ensure!(r == 0, "{what}: {}", std::io::Error::last_os_error());
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let pty = openpty(None, None).context("openpty")?;
    set_int(&pty.master, libc::TIOCPKT, 1, "TIOCPKT")?;
    set_int(&pty.master, libc::TIOCSPTLCK, 1, "TIOCSPTLCK")?;
    t.daemon()?;
    t.wait_sig();
    ensure!(get_int(&pty.master, libc::TIOCGPKT, "TIOCGPKT")? == 1, "packet mode is off");
    ensure!(get_int(&pty.master, libc::TIOCGPTLCK, "TIOCGPTLCK")? == 1, "the slave is no longer locked");
    let mut slave = std::fs::File::from(pty.slave.try_clone().context("dup slave")?);
    let mut master = std::fs::File::from(pty.master.try_clone().context("dup master")?);
    slave.write_all(b"p").context("write slave")?;
    let mut b = [0u8; 8];
    let n = master.read(&mut b).context("read master")?;
    ensure!(n == 2 && b[0] == 0 && b[1] == b'p', "packet read {:?}, expected [0, 'p']", &b[..n]);
    Ok(())
}
