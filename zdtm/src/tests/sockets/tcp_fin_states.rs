use super::tcp_established::{connected, expect};
use super::tcp_syn_sent::{detach, drop_all, state};
use crate::prelude::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

pub const DESC: Desc = Desc {
    name: "sockets/tcp_fin_states",
    family: "sockets",
    description: "loopback TCP connections caught in FIN_WAIT1, LAST_ACK and CLOSING (their peers' segments dropped by socket filters) are restored with --tcp-established and finish closing once the filters are lifted",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    // SO_ATTACH_FILTER is refused to the unprivileged test user here.
    flags: &[Flag::Suid],
    ..Desc::DEFAULT
};

const FIN_WAIT1: u8 = 4;
const FIN_WAIT2: u8 = 5;
const LAST_ACK: u8 = 9;
const CLOSING: u8 = 11;

fn wait_state(s: &TcpStream, want: u8, what: &str) -> Result<()> {
    let ok = wait_for(5000, || state(s.as_fd()).map(|v| v == want).unwrap_or(false));
    ensure!(ok, "{what} is in TCP state {}, not {want}", state(s.as_fd())?);
    Ok(())
}

/// Reads to the end (with a timeout) and compares.
fn to_end(s: &mut TcpStream, want: &[u8], what: &str) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10))).context("SO_RCVTIMEO")?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).with_context(|| format!("{what}: read to the end"))?;
    ensure!(got == want, "{what}: got {:?}, expected {:?}", String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    // FIN_WAIT1: a's FIN never reaches b.
    let (mut a, mut b, _l1) = connected("127.0.0.1:0")?;
    a.write_all(b"a-data").context("a write")?;
    expect(&mut b, b"a-data", "b before the dump")?;
    drop_all(b.as_fd())?;
    a.shutdown(Shutdown::Write).context("a shutdown")?;
    wait_state(&a, FIN_WAIT1, "a")?;

    // LAST_ACK: d got c's FIN, and c never gets d's data and FIN.
    let (mut c, mut d, _l2) = connected("127.0.0.1:0")?;
    c.shutdown(Shutdown::Write).context("c shutdown")?;
    wait_state(&c, FIN_WAIT2, "c")?;
    drop_all(c.as_fd())?;
    d.write_all(b"d-late").context("d write")?;
    d.shutdown(Shutdown::Write).context("d shutdown")?;
    wait_state(&d, LAST_ACK, "d")?;

    // CLOSING: e and f shut at once, both FINs dropped; then e lets f's
    // retransmitted FIN in, which does not ack e's own.
    let (mut e, mut f, _l3) = connected("127.0.0.1:0")?;
    drop_all(e.as_fd())?;
    drop_all(f.as_fd())?;
    e.write_all(b"e-data").context("e write")?;
    e.shutdown(Shutdown::Write).context("e shutdown")?;
    f.shutdown(Shutdown::Write).context("f shutdown")?;
    wait_state(&e, FIN_WAIT1, "e")?;
    detach(e.as_fd())?;
    wait_state(&e, CLOSING, "e")?;
    wait_state(&f, FIN_WAIT1, "f")?;

    t.daemon()?;
    t.wait_sig();

    ensure!(state(a.as_fd())? == FIN_WAIT1, "a is in state {} after restore", state(a.as_fd())?);
    ensure!(state(d.as_fd())? == LAST_ACK, "d is in state {} after restore", state(d.as_fd())?);
    ensure!(state(e.as_fd())? == CLOSING, "e is in state {} after restore", state(e.as_fd())?);
    detach(b.as_fd())?;
    detach(c.as_fd())?;
    detach(f.as_fd())?;
    to_end(&mut b, b"", "b (a's FIN)")?;
    b.write_all(b"b-reply").context("b write")?;
    b.shutdown(Shutdown::Write).context("b shutdown")?;
    to_end(&mut a, b"b-reply", "a")?;
    to_end(&mut c, b"d-late", "c (d's data and FIN)")?;
    to_end(&mut d, b"", "d")?;
    to_end(&mut f, b"e-data", "f (e's data and FIN)")?;
    to_end(&mut e, b"", "e")?;
    Ok(())
}
