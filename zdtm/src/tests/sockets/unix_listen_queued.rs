use crate::prelude::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

pub const DESC: Desc = Desc {
    name: "sockets/unix_listen_queued",
    family: "sockets",
    description: "a listening unix socket keeps connections not yet accepted; they still work once accepted",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("listen.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).context("bind")?;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(UnixStream::connect(&path).context("connect")?);
    }
    t.daemon()?;
    t.wait_sig();
    l.set_nonblocking(true).context("nonblocking")?;
    for (i, c) in clients.iter_mut().enumerate() {
        let p = c.peer_addr().context("peer")?;
        ensure!(p.as_pathname() == Some(path.as_path()), "client {i} connected to {p:?}");
        let (mut s, _) = l.accept().with_context(|| format!("accept connection {i}"))?;
        c.write_all(&[i as u8; 3]).context("client write")?;
        let mut b = [0u8; 3];
        s.read_exact(&mut b).context("server read")?;
        ensure!(b == [i as u8; 3], "connection {i}: got {b:?}");
        s.write_all(b"ok").context("server write")?;
        let mut r = [0u8; 2];
        c.read_exact(&mut r).context("client read")?;
        ensure!(&r == b"ok", "connection {i}: client got {r:?}");
    }
    ensure!(l.accept().is_err(), "a connection appeared from nowhere");
    Ok(())
}
