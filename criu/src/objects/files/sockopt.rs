//! Socket options shared by every family (`sk_opts_entry`), and the IP and
//! TCP level ones of inet sockets (`ip_opts_entry`, `tcp_opts_entry`).

use std::os::fd::BorrowedFd;

use crate::image::pb;
use crate::sys::sock;

use super::super::{Error, Result};

/// SO_BUF_LOCK (Linux 5.14+); libc may not name it.
const SO_BUF_LOCK: i32 = 72;

/// Where an option is read or set, for error messages.
pub struct At<'a> {
    pub pid: i32,
    pub what: &'a str,
}

impl At<'_> {
    fn err(&self, op: &str, name: &str, errno: nix::errno::Errno) -> Error {
        Error::Sys {
            pid: self.pid,
            what: format!("{op} {name} of {}", self.what),
            errno,
        }
    }
}

fn get(fd: BorrowedFd<'_>, at: &At<'_>, level: i32, opt: i32, name: &str) -> Result<i32> {
    sock::get_int(fd, level, opt).map_err(|e| at.err("getsockopt", name, e))
}

fn set(fd: BorrowedFd<'_>, at: &At<'_>, level: i32, opt: i32, name: &str, v: i32) -> Result<()> {
    sock::set_int(fd, level, opt, v).map_err(|e| at.err("setsockopt", name, e))
}

/// Reads the generic options of a socket of `family`.
pub fn dump(fd: BorrowedFd<'_>, family: i32, at: &At<'_>) -> Result<pb::SkOptsEntry> {
    let s = libc::SOL_SOCKET;
    let g = |opt, name| get(fd, at, s, opt, name);
    let b = |opt, name| g(opt, name).map(|v| v != 0);
    let (snd_sec, snd_usec) = sock::get_timeval(fd, s, libc::SO_SNDTIMEO)
        .map_err(|e| at.err("getsockopt", "SO_SNDTIMEO", e))?;
    let (rcv_sec, rcv_usec) = sock::get_timeval(fd, s, libc::SO_RCVTIMEO)
        .map_err(|e| at.err("getsockopt", "SO_RCVTIMEO", e))?;
    let (lon, linger) = sock::get_linger(fd).map_err(|e| at.err("getsockopt", "SO_LINGER", e))?;
    let mark = g(libc::SO_MARK, "SO_MARK")? as u32;
    let buf_lock = sock::get_int(fd, s, SO_BUF_LOCK).ok().map(|v| v as u32);
    let unixish = family == libc::AF_UNIX || family == libc::AF_NETLINK;
    let bound_dev = sock::get_bytes(fd, s, libc::SO_BINDTODEVICE, libc::IFNAMSIZ)
        .map_err(|e| at.err("getsockopt", "SO_BINDTODEVICE", e))?;
    let bound_dev =
        String::from_utf8_lossy(bound_dev.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
    Ok(pb::SkOptsEntry {
        so_sndbuf: g(libc::SO_SNDBUF, "SO_SNDBUF")? as u32,
        so_rcvbuf: g(libc::SO_RCVBUF, "SO_RCVBUF")? as u32,
        so_snd_tmo_sec: snd_sec as u64,
        so_snd_tmo_usec: snd_usec as u64,
        so_rcv_tmo_sec: rcv_sec as u64,
        so_rcv_tmo_usec: rcv_usec as u64,
        reuseaddr: Some(b(libc::SO_REUSEADDR, "SO_REUSEADDR")?),
        so_priority: Some(g(libc::SO_PRIORITY, "SO_PRIORITY")? as u32),
        so_rcvlowat: Some(g(libc::SO_RCVLOWAT, "SO_RCVLOWAT")? as u32),
        so_mark: (mark != 0).then_some(mark),
        so_passcred: if unixish {
            Some(b(libc::SO_PASSCRED, "SO_PASSCRED")?)
        } else {
            None
        },
        so_passsec: if unixish {
            Some(b(libc::SO_PASSSEC, "SO_PASSSEC")?)
        } else {
            None
        },
        so_dontroute: Some(b(libc::SO_DONTROUTE, "SO_DONTROUTE")?),
        so_no_check: Some(b(libc::SO_NO_CHECK, "SO_NO_CHECK")?),
        so_bound_dev: (!bound_dev.is_empty()).then_some(bound_dev),
        so_filter: sock::get_filter(fd)
            .map_err(|e| at.err("getsockopt", "SO_GET_FILTER", e))?
            .iter()
            .map(encode_filter)
            .collect(),
        so_reuseport: Some(b(libc::SO_REUSEPORT, "SO_REUSEPORT")?),
        so_broadcast: Some(b(libc::SO_BROADCAST, "SO_BROADCAST")?),
        so_keepalive: Some(b(libc::SO_KEEPALIVE, "SO_KEEPALIVE")?),
        tcp_keepcnt: None,
        tcp_keepidle: None,
        tcp_keepintvl: None,
        so_oobinline: Some(g(libc::SO_OOBINLINE, "SO_OOBINLINE")? as u32 & 1),
        so_linger: (lon != 0).then_some(linger as u32),
        so_buf_lock: buf_lock,
        // Kernels before 6.5 do not know the option: nothing to keep.
        so_passpidfd: if family == libc::AF_UNIX {
            sock::get_int(fd, s, sock::SO_PASSPIDFD)
                .ok()
                .filter(|&v| v != 0)
                .map(|_| true)
        } else {
            None
        },
    })
}

/// Sets the generic options of `e` on a fresh socket. Buffer sizes are set
/// as the kernel reported them (it doubles what is asked, so ask half).
pub fn restore(fd: BorrowedFd<'_>, e: &pb::SkOptsEntry, at: &At<'_>) -> Result<()> {
    let s = libc::SOL_SOCKET;
    let st = |opt, name, v: i32| set(fd, at, s, opt, name, v);
    // SO_*BUFFORCE needs CAP_NET_ADMIN; fall back to the plain ones.
    for (force, plain, name, v) in [
        (
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            "SO_SNDBUF",
            e.so_sndbuf,
        ),
        (
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            "SO_RCVBUF",
            e.so_rcvbuf,
        ),
    ] {
        let half = (v / 2) as i32;
        if sock::set_int(fd, s, force, half).is_err() {
            st(plain, name, half)?;
        }
    }
    if let Some(v) = e.so_buf_lock {
        // Unknown to old kernels: only an error when something is locked.
        if let Err(errno) = sock::set_int(fd, s, SO_BUF_LOCK, v as i32) {
            if v != 0 {
                return Err(at.err("setsockopt", "SO_BUF_LOCK", errno));
            }
        }
    }
    sock::set_timeval(
        fd,
        s,
        libc::SO_SNDTIMEO,
        e.so_snd_tmo_sec as i64,
        e.so_snd_tmo_usec as i64,
    )
    .map_err(|err| at.err("setsockopt", "SO_SNDTIMEO", err))?;
    sock::set_timeval(
        fd,
        s,
        libc::SO_RCVTIMEO,
        e.so_rcv_tmo_sec as i64,
        e.so_rcv_tmo_usec as i64,
    )
    .map_err(|err| at.err("setsockopt", "SO_RCVTIMEO", err))?;
    let flags = [
        (e.reuseaddr, libc::SO_REUSEADDR, "SO_REUSEADDR"),
        (e.so_reuseport, libc::SO_REUSEPORT, "SO_REUSEPORT"),
        (e.so_passcred, libc::SO_PASSCRED, "SO_PASSCRED"),
        (e.so_passsec, libc::SO_PASSSEC, "SO_PASSSEC"),
        (e.so_dontroute, libc::SO_DONTROUTE, "SO_DONTROUTE"),
        (e.so_no_check, libc::SO_NO_CHECK, "SO_NO_CHECK"),
        (e.so_broadcast, libc::SO_BROADCAST, "SO_BROADCAST"),
        (e.so_keepalive, libc::SO_KEEPALIVE, "SO_KEEPALIVE"),
    ];
    for (v, opt, name) in flags {
        if let Some(v) = v {
            st(opt, name, i32::from(v))?;
        }
    }
    if let Some(v) = e.so_priority {
        st(libc::SO_PRIORITY, "SO_PRIORITY", v as i32)?;
    }
    if let Some(v) = e.so_rcvlowat {
        st(libc::SO_RCVLOWAT, "SO_RCVLOWAT", v as i32)?;
    }
    if let Some(v) = e.so_mark {
        st(libc::SO_MARK, "SO_MARK", v as i32)?;
    }
    if let Some(v) = e.so_oobinline {
        st(libc::SO_OOBINLINE, "SO_OOBINLINE", v as i32)?;
    }
    if let Some(v) = e.so_linger {
        sock::set_linger(fd, 1, v as i32).map_err(|err| at.err("setsockopt", "SO_LINGER", err))?;
    }
    if let Some(dev) = &e.so_bound_dev {
        sock::set_bytes(fd, s, libc::SO_BINDTODEVICE, dev.as_bytes())
            .map_err(|err| at.err("setsockopt", "SO_BINDTODEVICE", err))?;
    }
    if e.so_passpidfd == Some(true) {
        st(sock::SO_PASSPIDFD, "SO_PASSPIDFD", 1)?;
    }
    if !e.so_filter.is_empty() {
        let prog: Vec<libc::sock_filter> = e.so_filter.iter().map(|&w| decode_filter(w)).collect();
        sock::attach_filter(fd, &prog)
            .map_err(|err| at.err("setsockopt", "SO_ATTACH_FILTER", err))?;
    }
    Ok(())
}

/// One filter instruction as upstream keeps it in `so_filter`: code, jt,
/// jf and k packed into a u64 from the top down (the same on every
/// architecture).
pub fn encode_filter(f: &libc::sock_filter) -> u64 {
    (u64::from(f.code) << 48) | (u64::from(f.jt) << 40) | (u64::from(f.jf) << 32) | u64::from(f.k)
}

pub fn decode_filter(w: u64) -> libc::sock_filter {
    libc::sock_filter {
        code: (w >> 48) as u16,
        jt: (w >> 40) as u8,
        jf: (w >> 32) as u8,
        k: w as u32,
    }
}

/// IP-level options of an inet socket; present only when not zero.
pub fn dump_ip(fd: BorrowedFd<'_>, family: i32, at: &At<'_>) -> Result<pb::IpOptsEntry> {
    let mut e = pb::IpOptsEntry::default();
    let nz = |v: i32| (v != 0).then_some(v as u32);
    if family == libc::AF_INET6 {
        let fb = get(fd, at, libc::SOL_IPV6, libc::IPV6_FREEBIND, "IPV6_FREEBIND").unwrap_or(0);
        e.freebind = (fb != 0).then_some(true);
        let pi = get(
            fd,
            at,
            libc::SOL_IPV6,
            libc::IPV6_RECVPKTINFO,
            "IPV6_RECVPKTINFO",
        )?;
        e.pktinfo = (pi != 0).then_some(true);
    } else {
        let fb = get(fd, at, libc::SOL_IP, libc::IP_FREEBIND, "IP_FREEBIND")?;
        e.freebind = (fb != 0).then_some(true);
        let pi = get(fd, at, libc::SOL_IP, libc::IP_PKTINFO, "IP_PKTINFO")?;
        e.pktinfo = (pi != 0).then_some(true);
        e.tos = nz(get(fd, at, libc::SOL_IP, libc::IP_TOS, "IP_TOS")?);
        e.ttl = nz(get(fd, at, libc::SOL_IP, libc::IP_TTL, "IP_TTL")?);
    }
    Ok(e)
}

pub fn restore_ip(fd: BorrowedFd<'_>, family: i32, e: &pb::IpOptsEntry, at: &At<'_>) -> Result<()> {
    let on = |b: Option<bool>| b.map(i32::from);
    if family == libc::AF_INET6 {
        if let Some(v) = on(e.freebind) {
            set(
                fd,
                at,
                libc::SOL_IPV6,
                libc::IPV6_FREEBIND,
                "IPV6_FREEBIND",
                v,
            )?;
        }
        if let Some(v) = on(e.pktinfo) {
            set(
                fd,
                at,
                libc::SOL_IPV6,
                libc::IPV6_RECVPKTINFO,
                "IPV6_RECVPKTINFO",
                v,
            )?;
        }
    } else {
        if let Some(v) = on(e.freebind) {
            set(fd, at, libc::SOL_IP, libc::IP_FREEBIND, "IP_FREEBIND", v)?;
        }
        if let Some(v) = on(e.pktinfo) {
            set(fd, at, libc::SOL_IP, libc::IP_PKTINFO, "IP_PKTINFO", v)?;
        }
        if let Some(v) = e.tos {
            set(fd, at, libc::SOL_IP, libc::IP_TOS, "IP_TOS", v as i32)?;
        }
        if let Some(v) = e.ttl {
            set(fd, at, libc::SOL_IP, libc::IP_TTL, "IP_TTL", v as i32)?;
        }
    }
    Ok(())
}

const SOL_RAW: i32 = 255;
const SOL_ICMPV6: i32 = 58;
const ICMP_FILTER: i32 = 1;
const ICMPV6_FILTER: i32 = 1;
const IPV6_HDRINCL: i32 = 36;

/// The options of a raw IP socket of protocol `proto`: header included,
/// no defragmentation, the ICMP type filter.
pub fn dump_raw(
    fd: BorrowedFd<'_>,
    family: i32,
    proto: i32,
    at: &At<'_>,
) -> Result<pb::IpOptsRawEntry> {
    let mut e = pb::IpOptsRawEntry::default();
    let yes = |v: i32| (v != 0).then_some(true);
    let words = |b: Vec<u8>| -> Vec<u32> {
        b.chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    if family == libc::AF_INET6 {
        e.hdrincl = yes(get(fd, at, libc::SOL_IPV6, IPV6_HDRINCL, "IPV6_HDRINCL").unwrap_or(0));
        if proto == libc::IPPROTO_ICMPV6 {
            let f = sock::get_bytes(fd, SOL_ICMPV6, ICMPV6_FILTER, 32)
                .map_err(|e| at.err("getsockopt", "ICMPV6_FILTER", e))?;
            e.icmpv_filter = words(f);
        }
    } else {
        e.hdrincl = yes(get(fd, at, libc::SOL_IP, libc::IP_HDRINCL, "IP_HDRINCL")?);
        e.nodefrag = yes(get(fd, at, libc::SOL_IP, libc::IP_NODEFRAG, "IP_NODEFRAG")?);
        if proto == libc::IPPROTO_ICMP {
            let f = sock::get_bytes(fd, SOL_RAW, ICMP_FILTER, 4)
                .map_err(|e| at.err("getsockopt", "ICMP_FILTER", e))?;
            e.icmpv_filter = words(f).into_iter().filter(|&w| w != 0).collect();
        }
    }
    Ok(e)
}

/// Sets the options of `dump_raw` again.
pub fn restore_raw(
    fd: BorrowedFd<'_>,
    family: i32,
    e: &pb::IpOptsRawEntry,
    at: &At<'_>,
) -> Result<()> {
    let bytes = |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|v| v.to_ne_bytes()).collect() };
    if family == libc::AF_INET6 {
        if e.hdrincl == Some(true) {
            set(fd, at, libc::SOL_IPV6, IPV6_HDRINCL, "IPV6_HDRINCL", 1)?;
        }
        if !e.icmpv_filter.is_empty() {
            sock::set_bytes(fd, SOL_ICMPV6, ICMPV6_FILTER, &bytes(&e.icmpv_filter))
                .map_err(|er| at.err("setsockopt", "ICMPV6_FILTER", er))?;
        }
    } else {
        if e.hdrincl == Some(true) {
            set(fd, at, libc::SOL_IP, libc::IP_HDRINCL, "IP_HDRINCL", 1)?;
        }
        if e.nodefrag == Some(true) {
            set(fd, at, libc::SOL_IP, libc::IP_NODEFRAG, "IP_NODEFRAG", 1)?;
        }
        if let Some(&w) = e.icmpv_filter.first() {
            sock::set_bytes(fd, SOL_RAW, ICMP_FILTER, &w.to_ne_bytes())
                .map_err(|er| at.err("setsockopt", "ICMP_FILTER", er))?;
        }
    }
    Ok(())
}

/// TCP-level options; present only when not zero.
pub fn dump_tcp(fd: BorrowedFd<'_>, at: &At<'_>) -> Result<pb::TcpOptsEntry> {
    let t = libc::SOL_TCP;
    let nz = |v: i32| (v != 0).then_some(v as u32);
    let on = |v: i32| (v != 0).then_some(true);
    Ok(pb::TcpOptsEntry {
        nodelay: on(get(fd, at, t, libc::TCP_NODELAY, "TCP_NODELAY")?),
        cork: on(get(fd, at, t, libc::TCP_CORK, "TCP_CORK")?),
        keepcnt: nz(get(fd, at, t, libc::TCP_KEEPCNT, "TCP_KEEPCNT")?),
        keepidle: nz(get(fd, at, t, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE")?),
        keepintvl: nz(get(fd, at, t, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL")?),
    })
}

pub fn restore_tcp(fd: BorrowedFd<'_>, e: &pb::TcpOptsEntry, at: &At<'_>) -> Result<()> {
    let t = libc::SOL_TCP;
    if let Some(v) = e.nodelay {
        set(fd, at, t, libc::TCP_NODELAY, "TCP_NODELAY", i32::from(v))?;
    }
    if let Some(v) = e.cork {
        set(fd, at, t, libc::TCP_CORK, "TCP_CORK", i32::from(v))?;
    }
    for (v, opt, name) in [
        (e.keepcnt, libc::TCP_KEEPCNT, "TCP_KEEPCNT"),
        (e.keepidle, libc::TCP_KEEPIDLE, "TCP_KEEPIDLE"),
        (e.keepintvl, libc::TCP_KEEPINTVL, "TCP_KEEPINTVL"),
    ] {
        if let Some(v) = v {
            set(fd, at, t, opt, name, v as i32)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn at() -> At<'static> {
        At {
            pid: 0,
            what: "test socket",
        }
    }

    #[test]
    fn a_socket_filter_survives_a_round_trip() {
        // "ld len; jeq #5 ? accept : drop" on a datagram socket.
        let prog = [
            libc::sock_filter {
                code: 0x80,
                jt: 0,
                jf: 0,
                k: 0,
            },
            libc::sock_filter {
                code: 0x15,
                jt: 0,
                jf: 1,
                k: 5,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0xffff,
            },
            libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0,
            },
        ];
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert!(dump(b.as_fd(), libc::AF_UNIX, &at())
            .unwrap()
            .so_filter
            .is_empty());
        sock::attach_filter(b.as_fd(), &prog).unwrap();
        let e = dump(b.as_fd(), libc::AF_UNIX, &at()).unwrap();
        assert_eq!(e.so_filter.len(), 4);
        assert_eq!(e.so_filter[1], 0x0015_0001_0000_0005);
        let (c, d) = std::os::unix::net::UnixDatagram::pair().unwrap();
        restore(d.as_fd(), &e, &at()).unwrap();
        let back = dump(d.as_fd(), libc::AF_UNIX, &at()).unwrap();
        assert_eq!(back.so_filter, e.so_filter);
        // The filter works on the new socket: only 5-byte datagrams pass.
        c.send(b"four").unwrap();
        c.send(b"five!").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(d.recv(&mut buf).unwrap(), 5);
        drop(a);
    }

    #[test]
    fn options_survive_a_round_trip() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = a.as_fd();
        sock::set_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1).unwrap();
        sock::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, 7).unwrap();
        sock::set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 50_000).unwrap();
        sock::set_linger(fd, 1, 3).unwrap();
        sock::set_int(fd, libc::SOL_TCP, libc::TCP_NODELAY, 1).unwrap();
        sock::set_int(fd, libc::SOL_IP, libc::IP_TOS, 0x10).unwrap();
        let e = dump(fd, libc::AF_INET, &at()).unwrap();
        let ip = dump_ip(fd, libc::AF_INET, &at()).unwrap();
        let tcp = dump_tcp(fd, &at()).unwrap();
        assert_eq!(e.so_keepalive, Some(true));
        assert_eq!(e.so_rcvlowat, Some(7));
        assert_eq!(e.so_linger, Some(3));
        assert_eq!(e.so_passcred, None);
        assert_eq!(tcp.nodelay, Some(true));
        assert_eq!(ip.tos, Some(0x10));

        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        restore(b.as_fd(), &e, &at()).unwrap();
        restore_ip(b.as_fd(), libc::AF_INET, &ip, &at()).unwrap();
        restore_tcp(b.as_fd(), &tcp, &at()).unwrap();
        let mut e2 = dump(b.as_fd(), libc::AF_INET, &at()).unwrap();
        assert_eq!(e2.so_sndbuf, e.so_sndbuf);
        e2.so_rcvbuf = e.so_rcvbuf;
        assert_eq!(e2, e);
        assert_eq!(dump_ip(b.as_fd(), libc::AF_INET, &at()).unwrap(), ip);
        assert_eq!(dump_tcp(b.as_fd(), &at()).unwrap(), tcp);
    }
}
