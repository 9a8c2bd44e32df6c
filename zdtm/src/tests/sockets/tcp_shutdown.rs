use super::tcp_established::{connected, expect};
use crate::prelude::*;
use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_shutdown",
    family: "sockets",
    description: "half-closed loopback TCP connections (FIN_WAIT2 / CLOSE_WAIT, and one shut for reading) keep their states and data with --tcp-established",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    ..Desc::DEFAULT
};

const FIN_WAIT2: u8 = 5;
const CLOSE_WAIT: u8 = 8;
const ESTABLISHED: u8 = 1;

fn state(s: &TcpStream) -> Result<u8> {
    let mut info = [0u8; 104];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of `len` bytes.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len) };
    ensure!(r == 0, "TCP_INFO: {}", Errno::last());
    Ok(info[0])
}

/// Waits (a little) for `s` to reach TCP state `want`.
fn reaches(s: &TcpStream, want: u8, what: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let st = state(s)?;
        if st == want {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("{what} is in TCP state {st}, expected {want}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(t: &mut Test) -> Result<()> {
    // c1 said its last words and shut for writing: c1 FIN_WAIT2, s1
    // CLOSE_WAIT with the words queued; s1 has sent data c1 did not read.
    let (mut c1, mut s1, _l1) = connected("127.0.0.1:0")?;
    c1.write_all(b"request").context("c1 write")?;
    s1.write_all(b"partial").context("s1 write")?;
    c1.shutdown(Shutdown::Write).context("c1 shutdown write")?;
    reaches(&c1, FIN_WAIT2, "c1 before the dump")?;
    reaches(&s1, CLOSE_WAIT, "s1 before the dump")?;
    // c2 shut for reading only: still established.
    let (mut c2, mut s2, _l2) = connected("127.0.0.1:0")?;
    c2.shutdown(Shutdown::Read).context("c2 shutdown read")?;

    t.daemon()?;
    t.wait_sig();

    reaches(&c1, FIN_WAIT2, "c1 after restore")?;
    reaches(&s1, CLOSE_WAIT, "s1 after restore")?;
    expect(&mut s1, b"request", "s1, data queued before the dump")?;
    let mut rest = Vec::new();
    s1.read_to_end(&mut rest).context("s1 reads to the end")?;
    ensure!(rest.is_empty(), "s1 read {rest:?} after the request, expected the end");
    match send(c1.as_raw_fd(), b"x", MsgFlags::MSG_NOSIGNAL) {
        Err(Errno::EPIPE) => {}
        r => bail!("c1 (shut for writing) could send: {r:?}"),
    }
    s1.write_all(b" response").context("s1 writes after restore")?;
    s1.shutdown(Shutdown::Write).context("s1 shutdown write")?;
    let mut all = Vec::new();
    c1.set_read_timeout(Some(Duration::from_secs(5))).context("timeout")?;
    c1.read_to_end(&mut all).context("c1 reads to the end")?;
    ensure!(all == b"partial response", "c1 read {:?}", String::from_utf8_lossy(&all));

    reaches(&c2, ESTABLISHED, "c2 after restore")?;
    let mut none = Vec::new();
    c2.set_read_timeout(Some(Duration::from_secs(2))).context("timeout")?;
    c2.read_to_end(&mut none).context("c2 (shut for reading) reads")?;
    ensure!(none.is_empty(), "c2 read {none:?}");
    c2.write_all(b"up").context("c2 writes")?;
    expect(&mut s2, b"up", "s2")?;
    Ok(())
}
