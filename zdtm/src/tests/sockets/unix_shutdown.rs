use crate::prelude::*;
use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

pub const DESC: Desc = Desc {
    name: "sockets/unix_shutdown",
    family: "sockets",
    description: "unix sockets shut down for writing, for reading and both keep those states (and the data queued before) after restore",
    ..Desc::DEFAULT
};

/// A send that must fail with EPIPE.
fn send_fails(fd: &impl AsRawFd, what: &str) -> Result<()> {
    match send(fd.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT) {
        Err(Errno::EPIPE) => Ok(()),
        r => bail!("{what}: send gave {r:?}, expected EPIPE"),
    }
}

pub fn run(t: &mut Test) -> Result<()> {
    // a shut for writing after its last words: b reads them, then the end.
    let (mut a, mut b) = UnixStream::pair().context("pair a,b")?;
    a.write_all(b"last").context("write a")?;
    a.shutdown(Shutdown::Write).context("shutdown a write")?;
    // c shut for reading.
    let (c, mut d) = UnixStream::pair().context("pair c,d")?;
    d.write_all(b"before").context("write d")?;
    c.shutdown(Shutdown::Read).context("shutdown c read")?;
    // e (datagram) shut both ways.
    let (e, f) = UnixDatagram::pair().context("dgram pair")?;
    e.shutdown(Shutdown::Both).context("shutdown e both")?;

    t.daemon()?;
    t.wait_sig();

    let mut got = Vec::new();
    b.set_read_timeout(Some(std::time::Duration::from_secs(2))).context("timeout")?;
    b.read_to_end(&mut got).context("b reads to the end")?;
    ensure!(got == b"last", "b read {got:?}, expected the last words then the end");
    send_fails(&a, "a (shut for writing)")?;
    b.write_all(b"still").context("b writes back")?;
    let mut s = [0u8; 5];
    a.read_exact(&mut s).context("a reads")?;
    ensure!(&s == b"still", "a read {s:?}");

    let mut c = c;
    let mut q = Vec::new();
    c.set_read_timeout(Some(std::time::Duration::from_secs(2))).context("timeout")?;
    c.read_to_end(&mut q).context("c reads")?;
    ensure!(q == b"before", "c (shut for reading) read {q:?}");
    send_fails(&d, "d (its peer is shut for reading)")?;

    send_fails(&e, "e (shut both ways)")?;
    send_fails(&f, "f (its peer is shut both ways)")?;
    Ok(())
}
