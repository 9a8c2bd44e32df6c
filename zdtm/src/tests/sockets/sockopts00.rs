use crate::prelude::*;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub const DESC: Desc = Desc {
    name: "sockets/sockopts00",
    family: "sockets",
    description: "socket options (reuse, keepalive and TCP keepalive timings, nodelay, buffers, rcvlowat, linger, timeouts, passcred, TOS/TTL, v6only) survive",
    ..Desc::DEFAULT
};

fn get(fd: RawFd, level: i32, opt: i32) -> Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of an int.
    let r = unsafe { libc::getsockopt(fd, level, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    ensure!(r == 0, "getsockopt({level}, {opt}): {}", std::io::Error::last_os_error());
    Ok(v)
}

fn set(fd: RawFd, level: i32, opt: i32, v: i32) -> Result<()> {
    // SAFETY: `v` is a live int whose size is passed.
    let r = unsafe {
        libc::setsockopt(fd, level, opt, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    ensure!(r == 0, "setsockopt({level}, {opt}, {v}): {}", std::io::Error::last_os_error());
    Ok(())
}

fn linger(fd: RawFd) -> Result<(i32, i32)> {
    let mut l = libc::linger { l_onoff: 0, l_linger: 0 };
    let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `l` and `len` are valid for writes of a struct linger.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, (&mut l as *mut libc::linger).cast(), &mut len) };
    ensure!(r == 0, "getsockopt(SO_LINGER): {}", std::io::Error::last_os_error());
    Ok((l.l_onoff, l.l_linger))
}

const INT_OPTS: &[(i32, i32, &str)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT"),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE, "SO_KEEPALIVE"),
    (libc::SOL_SOCKET, libc::SO_RCVBUF, "SO_RCVBUF"),
    (libc::SOL_SOCKET, libc::SO_SNDBUF, "SO_SNDBUF"),
    (libc::SOL_SOCKET, libc::SO_RCVLOWAT, "SO_RCVLOWAT"),
    (libc::SOL_SOCKET, libc::SO_PRIORITY, "SO_PRIORITY"),
    (libc::SOL_TCP, libc::TCP_NODELAY, "TCP_NODELAY"),
    (libc::SOL_TCP, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
    (libc::SOL_TCP, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
    (libc::SOL_TCP, libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
    (libc::SOL_IP, libc::IP_TOS, "IP_TOS"),
    (libc::SOL_IP, libc::IP_TTL, "IP_TTL"),
];

fn snapshot(fd: RawFd, opts: &[(i32, i32, &str)]) -> Result<Vec<i32>> {
    opts.iter().map(|&(l, o, _)| get(fd, l, o)).collect()
}

pub fn run(t: &mut Test) -> Result<()> {
    let tcp = TcpListener::bind("127.0.0.1:0").context("bind tcp")?;
    let fd = tcp.as_raw_fd();
    for (l, o, v) in [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR, 1),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::SOL_SOCKET, libc::SO_RCVBUF, 65536),
        (libc::SOL_SOCKET, libc::SO_SNDBUF, 40000),
        (libc::SOL_SOCKET, libc::SO_RCVLOWAT, 17),
        (libc::SOL_SOCKET, libc::SO_PRIORITY, 3),
        (libc::SOL_TCP, libc::TCP_NODELAY, 1),
        (libc::SOL_TCP, libc::TCP_KEEPIDLE, 123),
        (libc::SOL_TCP, libc::TCP_KEEPINTVL, 45),
        (libc::SOL_TCP, libc::TCP_KEEPCNT, 6),
        (libc::SOL_IP, libc::IP_TOS, 0x10),
        (libc::SOL_IP, libc::IP_TTL, 33),
    ] {
        set(fd, l, o, v)?;
    }
    nix::sys::socket::setsockopt(&tcp, nix::sys::socket::sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 7 })
        .context("SO_LINGER")?;
    let before = snapshot(fd, INT_OPTS)?;

    let udp = UdpSocket::bind("127.0.0.1:0").context("bind udp")?;
    udp.set_read_timeout(Some(Duration::from_millis(2500))).context("rcvtimeo")?;
    udp.set_write_timeout(Some(Duration::from_secs(1))).context("sndtimeo")?;
    udp.set_broadcast(true).context("broadcast")?;
    set(udp.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;

    let v6 = UdpSocket::bind("[::1]:0").context("bind udp6")?;
    let v6only = get(v6.as_raw_fd(), libc::SOL_IPV6, libc::IPV6_V6ONLY)?;

    let (ua, _ub) = UnixDatagram::pair().context("unix pair")?;
    set(ua.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1)?;

    t.daemon()?;
    t.wait_sig();

    let after = snapshot(fd, INT_OPTS)?;
    for (i, &(_, _, name)) in INT_OPTS.iter().enumerate() {
        ensure!(before[i] == after[i], "{name} was {} and is {}", before[i], after[i]);
    }
    ensure!(linger(fd)? == (1, 7), "SO_LINGER is {:?}", linger(fd)?);
    ensure!(udp.read_timeout().context("rcvtimeo")? == Some(Duration::from_millis(2500)), "SO_RCVTIMEO changed");
    ensure!(udp.write_timeout().context("sndtimeo")? == Some(Duration::from_secs(1)), "SO_SNDTIMEO changed");
    ensure!(udp.broadcast().context("broadcast")?, "SO_BROADCAST lost");
    ensure!(get(udp.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT)? == 1, "SO_REUSEPORT lost on udp");
    ensure!(get(v6.as_raw_fd(), libc::SOL_IPV6, libc::IPV6_V6ONLY)? == v6only, "IPV6_V6ONLY changed");
    ensure!(get(ua.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED)? == 1, "SO_PASSCRED lost");
    Ok(())
}
