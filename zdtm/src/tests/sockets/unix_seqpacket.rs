use crate::prelude::*;
use nix::sys::socket::{recv, send, shutdown, socketpair, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType};
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "sockets/unix_seqpacket",
    family: "sockets",
    description: "seqpacket unix socketpairs keep queued records both ways, and a half-closed pair stays half-closed",
    ..Desc::DEFAULT
};

fn pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).context("socketpair")
}

fn recv_one(fd: &OwnedFd) -> Result<Vec<u8>> {
    let mut b = [0u8; 256];
    let n = recv(fd.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT).context("recv")?;
    Ok(b[..n].to_vec())
}

pub fn run(t: &mut Test) -> Result<()> {
    let (a, b) = pair()?;
    let ab: [&[u8]; 3] = [b"r1", b"record two", b"3"];
    let ba: [&[u8]; 2] = [b"back one", b"back two!"];
    for m in ab {
        send(a.as_raw_fd(), m, MsgFlags::empty()).context("send a->b")?;
    }
    for m in ba {
        send(b.as_raw_fd(), m, MsgFlags::empty()).context("send b->a")?;
    }
    let (c, d) = pair()?;
    send(c.as_raw_fd(), b"last words", MsgFlags::empty()).context("send c->d")?;
    shutdown(c.as_raw_fd(), Shutdown::Write).context("shutdown")?;
    t.daemon()?;
    t.wait_sig();
    for want in ab {
        let got = recv_one(&b)?;
        ensure!(got == want, "b got {got:?}, expected {want:?}");
    }
    for want in ba {
        let got = recv_one(&a)?;
        ensure!(got == want, "a got {got:?}, expected {want:?}");
    }
    ensure!(recv_one(&b).is_err(), "b has more records than sent");
    let got = recv_one(&d)?;
    ensure!(got == b"last words", "d got {got:?}");
    let eof = recv_one(&d)?;
    ensure!(eof.is_empty(), "d should see end of file after the shutdown, got {eof:?}");
    ensure!(send(c.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL).is_err(), "c can write after shutdown");
    send(d.as_raw_fd(), b"reply", MsgFlags::empty()).context("d can still write")?;
    let got = recv_one(&c)?;
    ensure!(got == b"reply", "c got {got:?}");
    send(a.as_raw_fd(), b"new", MsgFlags::empty()).context("send after restore")?;
    ensure!(recv_one(&b)? == b"new", "record after restore lost");
    Ok(())
}
