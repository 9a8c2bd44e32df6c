use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, InputFlags, LocalFlags};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "tty/pty_canon",
    family: "tty",
    // pty indexes are the machine's: a restore needs its index free
    flags: &[Flag::Excl],
    description: "input queued for a pty slave in canonical mode with echo (whole lines and a partial one) reads back line by line, with no echo of it again",
    ..Desc::DEFAULT
};


fn read_now(f: &mut std::fs::File) -> Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 256];
    match f.read(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e).context("read"),
    }
}

/// Reads and drops `n` bytes of echo from the master.
fn eat_echo(master: &mut std::fs::File, fd: &OwnedFd, n: usize) -> Result<Vec<u8>> {
    ensure!(wait_for(2000, || sys::queued(fd.as_raw_fd()).is_ok_and(|q| q as usize >= n)), "the echo of {n} bytes did not come");
    let mut got = vec![0u8; n];
    master.read_exact(&mut got).context("read echo")?;
    Ok(got)
}

pub fn run(t: &mut Test) -> Result<()> {
    let pty = openpty(None, None).context("openpty")?;
    let tio = tcgetattr(&pty.slave).context("tcgetattr")?;
    ensure!(tio.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO), "openpty gave a pty not in canonical mode with echo");
    let mut master = std::fs::File::from(pty.master.try_clone().context("dup master")?);
    let mut slave = std::fs::File::from(pty.slave.try_clone().context("dup slave")?);
    fcntl(&pty.slave, FcntlArg::F_SETFL(OFlag::O_RDWR | OFlag::O_NONBLOCK)).context("O_NONBLOCK")?;
    // A \r the line discipline turns into \n (ICRNL), two lines, a partial one.
    master.write_all(b"line one\rline two\npartial").context("write master")?;
    let echo = eat_echo(&mut master, &pty.master, b"line one\r\nline two\r\npartial".len())?;
    ensure!(echo == b"line one\r\nline two\r\npartial", "echo {:?}", String::from_utf8_lossy(&echo));
    ensure!(wait_for(2000, || sys::queued(pty.slave.as_raw_fd()).is_ok_and(|n| n == 18)), "slave has {:?} bytes of whole lines", sys::queued(pty.slave.as_raw_fd()));
    t.daemon()?;
    t.wait_sig();
    let tio = tcgetattr(&pty.slave).context("tcgetattr after")?;
    ensure!(tio.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO), "the pty left canonical mode or echo: {:?}", tio.local_flags);
    ensure!(tio.input_flags.contains(InputFlags::ICRNL), "ICRNL is gone: {:?}", tio.input_flags);
    let q = sys::queued(pty.master.as_raw_fd())?;
    ensure!(q == 0, "{q} bytes wait on the master (echoed again?)");
    let q = sys::queued(pty.slave.as_raw_fd())?;
    ensure!(q == 18, "the slave has {q} bytes of whole lines, expected 18");
    for want in [&b"line one\n"[..], b"line two\n"] {
        let got = read_now(&mut slave)?;
        ensure!(got.as_deref() == Some(want), "slave read {:?}, expected {:?}", got.map(|g| String::from_utf8_lossy(&g).into_owned()), String::from_utf8_lossy(want));
    }
    let got = read_now(&mut slave)?;
    ensure!(got.is_none(), "the partial line is readable before its end: {:?}", got.map(|g| String::from_utf8_lossy(&g).into_owned()));
    master.write_all(b" end\n").context("write end")?;
    eat_echo(&mut master, &pty.master, b" end\r\n".len())?;
    ensure!(wait_for(2000, || sys::queued(pty.slave.as_raw_fd()).is_ok_and(|n| n > 0)), "the finished line does not come");
    let got = read_now(&mut slave)?;
    ensure!(got.as_deref() == Some(&b"partial end\n"[..]), "slave read {:?}", got.map(|g| String::from_utf8_lossy(&g).into_owned()));
    Ok(())
}
