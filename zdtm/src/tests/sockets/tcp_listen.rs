use crate::prelude::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_listen",
    family: "sockets",
    description: "a TCP listening socket on 127.0.0.1 keeps its address and accepts connections",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let addr = l.local_addr().context("local_addr")?;
    t.daemon()?;
    t.wait_sig();
    let now = l.local_addr().context("local_addr after restore")?;
    ensure!(now == addr, "listening on {now}, was {addr}");
    let mut c = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    let (mut s, peer) = l.accept().context("accept")?;
    ensure!(peer == c.local_addr().context("client addr")?, "accepted {peer}");
    c.write_all(b"hello").context("client write")?;
    let mut b = [0u8; 5];
    s.read_exact(&mut b).context("server read")?;
    ensure!(&b == b"hello", "server got {b:?}");
    Ok(())
}
