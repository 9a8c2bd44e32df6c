use crate::prelude::*;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt::Ipv6V6Only, AddressFamily, Backlog, SockFlag, SockProtocol,
    SockType, SockaddrIn6,
};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;

use super::tcp_established::{check_pair, expect};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_dualstack",
    family: "sockets",
    description: "dual-stack IPv6 sockets (IPV6_V6ONLY=0): an IPv4 client's established connection to an AF_INET6 listener with data queued both ways, an IPV6_V6ONLY=1 listener beside an IPv4 one on the same port, a v6 UDP socket talking to a v4 one",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    ..Desc::DEFAULT
};

/// An AF_INET6 socket with IPV6_V6ONLY set to `v6only`, bound to `at`.
fn v6_socket(ty: SockType, v6only: bool, at: SocketAddrV6) -> Result<OwnedFd> {
    let proto = if ty == SockType::Stream { SockProtocol::Tcp } else { SockProtocol::Udp };
    let fd = socket(AddressFamily::Inet6, ty, SockFlag::SOCK_CLOEXEC, proto).context("socket AF_INET6")?;
    setsockopt(&fd, Ipv6V6Only, &v6only).context("IPV6_V6ONLY")?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(at)).with_context(|| format!("bind {at}"))?;
    Ok(fd)
}

fn v6only_of(fd: &impl std::os::fd::AsFd) -> Result<bool> {
    nix::sys::socket::getsockopt(fd, Ipv6V6Only).context("getsockopt IPV6_V6ONLY")
}

fn mapped(a: Ipv4Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(a.to_ipv6_mapped(), port, 0, 0)
}

/// Whether the network namespace has no device but lo: only then may the
/// test bind wildcard addresses.
fn only_loopback() -> bool {
    std::fs::read_to_string("/proc/net/dev")
        .map(|t| t.lines().skip(2).all(|l| l.trim_start().starts_with("lo:")))
        .unwrap_or(false)
}

pub fn run(t: &mut Test) -> Result<()> {
    let lo4 = Ipv4Addr::LOCALHOST;
    // 1. A dual-stack listener (on a v4-mapped address) and an IPv4 client.
    let lfd = v6_socket(SockType::Stream, false, mapped(lo4, 0))?;
    listen(&lfd, Backlog::new(8).context("backlog")?).context("listen")?;
    let l = TcpListener::from(lfd);
    let port = l.local_addr().context("listener addr")?.port();
    let mut c = TcpStream::connect((lo4, port)).context("v4 connect to the v6 listener")?;
    let (mut s, from) = l.accept().context("accept")?;
    ensure!(matches!(from, SocketAddr::V6(a) if a.ip().to_ipv4_mapped() == Some(lo4)), "accepted from {from}");
    let mut to_s = vec![0u8; 3000];
    pattern::fill(21, &mut to_s);
    let mut to_c = vec![0u8; 5000];
    pattern::fill(22, &mut to_c);
    c.write_all(&to_s).context("client write")?;
    s.write_all(&to_c).context("server write")?;
    let ends = |x: &TcpStream| -> Result<(SocketAddr, SocketAddr)> {
        Ok((x.local_addr().context("local")?, x.peer_addr().context("peer")?))
    };
    let before = (ends(&c)?, ends(&s)?);

    // 2. A v6-only listener and an IPv4 listener on one port: on the
    // wildcards when the namespace has only lo, else on the loopbacks.
    let wild = only_loopback();
    let (a6, a4) = if wild { (Ipv6Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED) } else { (Ipv6Addr::LOCALHOST, lo4) };
    let only6 = v6_socket(SockType::Stream, true, SocketAddrV6::new(a6, 0, 0, 0))?;
    listen(&only6, Backlog::new(4).context("backlog")?).context("listen v6only")?;
    let only6 = TcpListener::from(only6);
    let p2 = only6.local_addr().context("v6only addr")?.port();
    let v4l = TcpListener::bind((a4, p2)).with_context(|| format!("bind {a4}:{p2} beside the v6-only listener"))?;

    // 3. A dual-stack UDP socket and an IPv4 one, and a v6 UDP socket
    // connected to the IPv4 one's v4-mapped address.
    let u6 = UdpSocket::from(v6_socket(SockType::Datagram, false, mapped(lo4, 0))?);
    let u4 = UdpSocket::bind((lo4, 0)).context("bind udp4")?;
    let u6c = UdpSocket::from(v6_socket(SockType::Datagram, false, mapped(lo4, 0))?);
    let u4a = u4.local_addr().context("udp4 addr")?;
    u6c.connect(SocketAddr::V6(mapped(lo4, u4a.port()))).context("connect udp6 to a mapped address")?;
    let (u6a, u6ca) = (u6.local_addr().context("udp6 addr")?, u6c.local_addr().context("udp6c addr")?);

    std::thread::sleep(std::time::Duration::from_millis(50));
    t.daemon()?;
    t.wait_sig();

    let after = (ends(&c)?, ends(&s)?);
    ensure!(after == before, "the connection's ends were {before:?}, now {after:?}");
    check_pair(&mut c, &mut s, &to_s, &to_c)?;
    ensure!(!v6only_of(&l)?, "the dual-stack listener became v6-only");
    let mut c2 = TcpStream::connect((lo4, port)).context("new v4 connection to the dual-stack listener")?;
    let (mut s2, _) = l.accept().context("accept after restore")?;
    c2.write_all(b"v4 again").context("write")?;
    expect(&mut s2, b"v4 again", "dual-stack listener after restore")?;

    ensure!(v6only_of(&only6)?, "the v6-only listener lost IPV6_V6ONLY");
    ensure!(only6.local_addr().context("addr")?.port() == p2, "v6-only listener moved");
    ensure!(v4l.local_addr().context("addr")?.port() == p2, "v4 listener moved");
    let _c6 = TcpStream::connect((Ipv6Addr::LOCALHOST, p2)).context("connect ::1 to the v6-only listener")?;
    only6.accept().context("accept on the v6-only listener")?;
    let _c4 = TcpStream::connect((lo4, p2)).context("connect 127.0.0.1 to the v4 listener")?;
    v4l.accept().context("accept on the v4 listener")?;

    ensure!(u6.local_addr().context("addr")? == u6a && u6c.local_addr().context("addr")? == u6ca, "udp6 addresses changed");
    ensure!(!v6only_of(&u6)?, "udp6 became v6-only");
    for u in [&u6, &u4, &u6c] {
        u.set_read_timeout(Some(std::time::Duration::from_secs(5))).context("timeout")?;
    }
    u4.send_to(b"from v4", (lo4, u6a.port())).context("send v4 -> v6")?;
    let mut b = [0u8; 32];
    let (n, src) = u6.recv_from(&mut b).context("recv at udp6")?;
    ensure!(&b[..n] == b"from v4", "udp6 got {:?}", &b[..n]);
    ensure!(src == SocketAddr::V6(mapped(lo4, u4a.port())), "udp6 got it from {src}, not {u4a} mapped");
    u6c.send(b"v6 to v4").context("send from the connected udp6")?;
    let (n, src) = u4.recv_from(&mut b).context("recv at udp4")?;
    ensure!(&b[..n] == b"v6 to v4", "udp4 got {:?}", &b[..n]);
    ensure!(src == SocketAddr::V4(std::net::SocketAddrV4::new(lo4, u6ca.port())), "udp4 got it from {src}");
    Ok(())
}
