use crate::prelude::*;
use std::net::UdpSocket;

pub const DESC: Desc = Desc {
    name: "sockets/udp00",
    family: "sockets",
    description: "bound and connected UDP sockets keep their addresses and still exchange datagrams",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    bound_and_connected(t, "127.0.0.1:0")
}

/// The test on the loopback address `any_port` (with port 0); udp6 runs it
/// on ::1.
pub fn bound_and_connected(t: &mut Test, any_port: &str) -> Result<()> {
    let srv = UdpSocket::bind(any_port).context("bind server")?;
    let cli = UdpSocket::bind(any_port).context("bind client")?;
    let sa = srv.local_addr().context("server addr")?;
    cli.connect(sa).context("connect")?;
    let ca = cli.local_addr().context("client addr")?;
    t.daemon()?;
    t.wait_sig();
    ensure!(srv.local_addr().context("server addr")? == sa, "server address changed");
    ensure!(cli.local_addr().context("client addr")? == ca, "client address changed");
    ensure!(cli.peer_addr().context("peer")? == sa, "client no longer connected to {sa}");
    srv.set_read_timeout(Some(std::time::Duration::from_secs(5))).context("timeout")?;
    cli.set_read_timeout(Some(std::time::Duration::from_secs(5))).context("timeout")?;
    cli.send(b"ping").context("send")?;
    let mut b = [0u8; 16];
    let (n, from) = srv.recv_from(&mut b).context("recv at server")?;
    ensure!(&b[..n] == b"ping" && from == ca, "server got {:?} from {from}", &b[..n]);
    srv.send_to(b"pong", ca).context("reply")?;
    let n = cli.recv(&mut b).context("recv at client")?;
    ensure!(&b[..n] == b"pong", "client got {:?}", &b[..n]);
    Ok(())
}
