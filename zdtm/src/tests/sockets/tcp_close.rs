use super::tcp_established::{connected, expect};
use crate::prelude::*;
use nix::sys::socket::{send, MsgFlags};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "sockets/tcp_close",
    family: "sockets",
    description: "with --tcp-close (dump and restore), an established loopback TCP connection with data queued comes back closed (reads end, writes fail) while its listener still listens",
    flags: &[Flag::Cronly],
    dump_opts: &["--tcp-close"],
    restore_opts: &["--tcp-close"],
    ..Desc::DEFAULT
};

/// The end reads as closed and cannot be written.
fn closed(s: &mut TcpStream, what: &str) -> Result<()> {
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).context("SO_RCVTIMEO")?;
    let mut b = [0u8; 16];
    let n = s.read(&mut b).with_context(|| format!("{what}: read"))?;
    ensure!(n == 0, "{what}: read {n} bytes from a closed connection");
    let w = send(s.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL);
    ensure!(w.is_err(), "{what}: a write to a closed connection went through");
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let (mut c, mut s, l) = connected("127.0.0.1:0")?;
    c.write_all(b"never read").context("client write")?;
    s.write_all(b"nor this").context("server write")?;
    let at = l.local_addr().context("listener addr")?;
    t.daemon()?;
    t.wait_sig();
    closed(&mut c, "client")?;
    closed(&mut s, "server")?;
    let mut c2 = TcpStream::connect(at).with_context(|| format!("connect {at} after restore"))?;
    let (mut s2, _) = l.accept().context("accept after restore")?;
    c2.write_all(b"fresh").context("write on a new connection")?;
    expect(&mut s2, b"fresh", "new connection")
}
