use crate::prelude::*;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "tty/pty00",
    family: "tty",
    // pty indexes are the machine's: a restore needs its index free
    flags: &[Flag::Excl],
    description: "a pty pair keeps its index, termios and window size, and bytes still flow both ways",
    ..Desc::DEFAULT
};

fn winsize(fd: &OwnedFd) -> Result<Winsize> {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one struct winsize into `ws`, which lives
    // for the whole call; nix has no safe wrapper for it.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws as *mut Winsize) };
    ensure!(r == 0, "TIOCGWINSZ: {}", std::io::Error::last_os_error());
    Ok(ws)
}

pub fn run(t: &mut Test) -> Result<()> {
    let want_ws = Winsize { ws_row: 33, ws_col: 111, ws_xpixel: 7, ws_ypixel: 9 };
    let pty = openpty(Some(&want_ws), None).context("openpty")?;
    let mut tio = tcgetattr(&pty.slave).context("tcgetattr")?;
    tio.local_flags.remove(LocalFlags::ECHO | LocalFlags::ICANON);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &tio).context("tcsetattr")?;
    let link = fd_link(pty.slave.as_raw_fd())?;
    t.daemon()?;
    t.wait_sig();
    ensure!(fd_link(pty.slave.as_raw_fd())? == link, "the slave is {}, expected {link}", fd_link(pty.slave.as_raw_fd())?);
    let ws = winsize(&pty.master)?;
    ensure!(
        (ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel) == (33, 111, 7, 9),
        "window size is {}x{} ({}x{} px), expected 33x111 (7x9 px)",
        ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel
    );
    let now = tcgetattr(&pty.slave).context("tcgetattr after")?;
    ensure!(now.local_flags == tio.local_flags, "local flags are {:?}, expected {:?}", now.local_flags, tio.local_flags);
    let mut master = std::fs::File::from(pty.master);
    let mut slave = std::fs::File::from(pty.slave);
    master.write_all(b"ping").context("write master")?;
    let mut b = [0u8; 4];
    slave.read_exact(&mut b).context("read slave")?;
    ensure!(&b == b"ping", "slave read {b:?}");
    slave.write_all(b"pong").context("write slave")?;
    master.read_exact(&mut b).context("read master")?;
    ensure!(&b == b"pong", "master read {b:?}");
    Ok(())
}
