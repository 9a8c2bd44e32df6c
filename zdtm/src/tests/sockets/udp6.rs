use crate::prelude::*;
use std::net::UdpSocket;

pub const DESC: Desc = Desc {
    name: "sockets/udp6",
    family: "sockets",
    description: "bound and connected UDP sockets on ::1 keep their addresses and still exchange datagrams",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let srv = UdpSocket::bind("[::1]:0").context("bind server")?;
    let cli = UdpSocket::bind("[::1]:0").context("bind client")?;
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
    cli.send(b"ping6").context("send")?;
    let mut b = [0u8; 16];
    let (n, from) = srv.recv_from(&mut b).context("recv at server")?;
    ensure!(&b[..n] == b"ping6" && from == ca, "server got {:?} from {from}", &b[..n]);
    srv.send_to(b"pong6", ca).context("reply")?;
    let n = cli.recv(&mut b).context("recv at client")?;
    ensure!(&b[..n] == b"pong6", "client got {:?}", &b[..n]);
    Ok(())
}
