use crate::prelude::*;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};

pub const DESC: Desc = Desc {
    name: "sockets/unix_scm_rights",
    family: "sockets",
    description: "messages queued in unix sockets carry fds (SCM_RIGHTS): a pipe end, a regular file, a unix socket; the receiver gets working files after restore",
    ..Desc::DEFAULT
};

fn send_fds(s: RawFd, data: &[u8], fds: &[RawFd]) -> Result<()> {
    let iov = [IoSlice::new(data)];
    let cm = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(s, &iov, &cm, MsgFlags::empty(), None).context("sendmsg SCM_RIGHTS")?;
    Ok(())
}

/// Receives one message: its bytes and the fds it carried.
fn recv_fds(s: RawFd) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let m = recvmsg::<()>(s, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).context("recvmsg")?;
    let n = m.bytes;
    let mut fds = Vec::new();
    for c in m.cmsgs().context("cmsgs")? {
        if let ControlMessageOwned::ScmRights(v) = c {
            // SAFETY: the kernel just installed these fds for us.
            fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    Ok((buf[..n].to_vec(), fds))
}

pub fn run(t: &mut Test) -> Result<()> {
    // A datagram pair and a stream pair to carry the fds.
    let (da, db) = UnixDatagram::pair().context("dgram pair")?;
    let (sa, sb) = UnixStream::pair().context("stream pair")?;

    // 1. a pipe's read end, with data in the pipe; only the write end stays.
    let (r, w) = nix::unistd::pipe().context("pipe")?;
    let mut w = std::fs::File::from(w);
    w.write_all(b"in the pipe").context("pipe write")?;
    send_fds(da.as_raw_fd(), b"pipe", &[r.as_raw_fd()])?;
    drop(r);

    // 2. a regular file at offset 3, then closed by the test.
    let path = t.file();
    let mut f = std::fs::File::options().create(true).truncate(true).read(true).write(true).open(&path).context("open file")?;
    f.write_all(b"0123456789").context("file write")?;
    f.seek(SeekFrom::Start(3)).context("seek")?;
    send_fds(da.as_raw_fd(), b"file", &[f.as_raw_fd()])?;
    drop(f);

    // 3. one end of another socketpair with data queued in it, and a plain
    // message without fds between; carried over the stream pair.
    let (c, mut d) = UnixStream::pair().context("inner pair")?;
    d.write_all(b"for c").context("inner write")?;
    (&sa).write_all(b"plain").context("plain write")?;
    send_fds(sa.as_raw_fd(), b"sock", &[c.as_raw_fd()])?;
    drop(c);
    // 4. two fds in one message: the pipe's write end twice.
    send_fds(da.as_raw_fd(), b"two", &[w.as_raw_fd(), w.as_raw_fd()])?;

    // 5. a socket carried in its own queue, and a sender shut for writing
    // after sending an fd.
    let (i, j) = UnixDatagram::pair().context("self pair")?;
    send_fds(i.as_raw_fd(), b"self", &[j.as_raw_fd()])?;
    let (g, h) = UnixStream::pair().context("shut pair")?;
    send_fds(g.as_raw_fd(), b"shut", &[g.as_raw_fd()])?;
    g.shutdown(std::net::Shutdown::Write).context("shutdown g")?;

    t.daemon()?;
    t.wait_sig();

    let (m, fds) = recv_fds(db.as_raw_fd())?;
    ensure!(m == b"pipe" && fds.len() == 1, "first message {m:?} with {} fds", fds.len());
    let mut r = std::fs::File::from(fds.into_iter().next().unwrap_or_else(|| unreachable!()));
    w.write_all(b" and after").context("pipe write after restore")?;
    drop(w);
    let (m, fds) = recv_fds(db.as_raw_fd())?;
    ensure!(m == b"file" && fds.len() == 1, "second message {m:?} with {} fds", fds.len());
    let mut f = std::fs::File::from(fds.into_iter().next().unwrap_or_else(|| unreachable!()));
    let (m, fds) = recv_fds(db.as_raw_fd())?;
    ensure!(m == b"two" && fds.len() == 2, "fourth message {m:?} with {} fds", fds.len());
    drop(fds);
    let mut got = String::new();
    r.read_to_string(&mut got).context("pipe read")?;
    ensure!(got == "in the pipe and after", "the pipe gave {got:?}");
    let mut rest = String::new();
    f.read_to_string(&mut rest).context("file read")?;
    ensure!(rest == "3456789", "the file read from its offset gave {rest:?}");

    let mut sb = sb;
    let mut plain = [0u8; 5];
    sb.read_exact(&mut plain).context("plain read")?;
    ensure!(&plain == b"plain", "stream gave {plain:?}");
    let (m, fds) = recv_fds(sb.as_raw_fd())?;
    ensure!(m == b"sock" && fds.len() == 1, "socket message {m:?} with {} fds", fds.len());
    let mut c = UnixStream::from(fds.into_iter().next().unwrap_or_else(|| unreachable!()));
    let mut q = [0u8; 5];
    c.read_exact(&mut q).context("read queued in the passed socket")?;
    ensure!(&q == b"for c", "passed socket gave {q:?}");
    c.write_all(b"back").context("write through the passed socket")?;
    let mut b4 = [0u8; 4];
    d.read_exact(&mut b4).context("read at the kept end")?;
    ensure!(&b4 == b"back", "kept end gave {b4:?}");

    let (m, fds) = recv_fds(j.as_raw_fd())?;
    ensure!(m == b"self" && fds.len() == 1, "self message {m:?} with {} fds", fds.len());
    let ino = |f: &dyn AsFd| nix::sys::stat::fstat(f.as_fd()).map(|s| s.st_ino);
    ensure!(ino(&fds[0])? == ino(&j)?, "the socket carried in its own queue is another socket");
    let (m, fds) = recv_fds(h.as_raw_fd())?;
    ensure!(m == b"shut" && fds.len() == 1, "shut message {m:?} with {} fds", fds.len());
    ensure!(ino(&fds[0])? == ino(&g)?, "the shut sender's fd is another socket");
    let mut h = h;
    let mut end = Vec::new();
    h.read_to_end(&mut end).context("h reads to the end")?;
    ensure!(end.is_empty(), "h read {end:?} after the message");
    Ok(())
}
