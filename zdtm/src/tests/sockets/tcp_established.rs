use crate::prelude::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_established",
    family: "sockets",
    description: "an established loopback TCP connection (both ends in the test) keeps its addresses and the data queued both ways",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    ..Desc::DEFAULT
};

/// A connected pair over `addr` (127.0.0.1:0 or [::1]:0): (client, server).
pub fn connected(addr: &str) -> Result<(TcpStream, TcpStream, TcpListener)> {
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    let at = l.local_addr().context("local_addr")?;
    let c = TcpStream::connect(at).with_context(|| format!("connect {at}"))?;
    let (s, _) = l.accept().context("accept")?;
    Ok((c, s, l))
}

fn ends(s: &TcpStream) -> Result<(SocketAddr, SocketAddr)> {
    Ok((s.local_addr().context("local_addr")?, s.peer_addr().context("peer_addr")?))
}

/// Reads exactly `want.len()` bytes (with a timeout) and compares them.
pub fn expect(s: &mut TcpStream, want: &[u8], what: &str) -> Result<()> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).context("SO_RCVTIMEO")?;
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).with_context(|| format!("{what}: read"))?;
    ensure!(got == want, "{what}: got {:?}, expected {:?}", String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    Ok(())
}

/// The check both ends run after restore: queued data first, then a fresh
/// exchange each way.
pub fn check_pair(c: &mut TcpStream, s: &mut TcpStream, to_s: &[u8], to_c: &[u8]) -> Result<()> {
    expect(s, to_s, "server, data queued before the dump")?;
    expect(c, to_c, "client, data queued before the dump")?;
    c.write_all(b"after-c").context("client write after restore")?;
    s.write_all(b"after-s").context("server write after restore")?;
    expect(s, b"after-c", "server, data sent after restore")?;
    expect(c, b"after-s", "client, data sent after restore")
}

pub fn run_on(t: &mut Test, addr: &str) -> Result<()> {
    let (mut c, mut s, _l) = connected(addr)?;
    // A small receive buffer on the client: part of what the server writes
    // stays in the server's send queue (sent but not acked, or not sent).
    nix::sys::socket::setsockopt(&c, nix::sys::socket::sockopt::RcvBuf, &4096).context("SO_RCVBUF")?;
    let mut to_s = vec![0u8; 3000];
    pattern::fill(5, &mut to_s);
    let mut to_c = vec![0u8; 70000];
    pattern::fill(6, &mut to_c);
    c.write_all(&to_s).context("client write")?;
    s.write_all(&to_c).context("server write")?;
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = (ends(&c)?, ends(&s)?);
    t.daemon()?;
    t.wait_sig();
    let after = (ends(&c)?, ends(&s)?);
    ensure!(after == before, "the connection's ends were {before:?}, now {after:?}");
    check_pair(&mut c, &mut s, &to_s, &to_c)
}

pub fn run(t: &mut Test) -> Result<()> {
    run_on(t, "127.0.0.1:0")
}
