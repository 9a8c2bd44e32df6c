//! TCP and UDP sockets over IPv4 and IPv6 (`inet_sk_entry`); established
//! TCP connections with `--tcp-established` (`tcp-stream-*.img`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{listen, socket, AddressFamily, Backlog, SockFlag, SockProtocol};

use crate::image::pb;
use crate::sys::sock;

use super::super::{Error, Result};
use super::socket::{
    apply_flags, apply_shutdown, no_owner, shutdown_entry, sock_type, SkDump, SkFd, SkRestore,
};
use super::sockopt::{self, At};

const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// The TCP connections of a dump that go to `tcp-stream-*.img`.
#[derive(Debug, Default)]
pub struct TcpStreams {
    streams: Vec<(u32, pb::TcpStreamEntry, Vec<u8>, Vec<u8>)>,
}

impl TcpStreams {
    pub fn write(&self, dir: &Path) -> Result<()> {
        for (ino, e, inq, outq) in &self.streams {
            let mut w = crate::image::ImageWriter::create(
                dir,
                &format!("tcp-stream-{ino:x}.img"),
                crate::image::magic::TCP_STREAM,
            )?;
            w.write(e)?;
            w.write_raw(inq)?;
            w.write_raw(outq)?;
            w.finish()?;
        }
        Ok(())
    }
}

/// An address of sock_diag (network order bytes) as image words.
fn addr_words(family: i32, a: &[u8; 16]) -> Vec<u32> {
    let n = if family == libc::AF_INET6 { 4 } else { 1 };
    a.chunks_exact(4)
        .take(n)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Image words back to an address.
fn ip_of(family: u32, words: &[u32]) -> Option<IpAddr> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if family == libc::AF_INET6 as u32 {
        let b: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        let b: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    }
}

fn proto_name(p: i32) -> &'static str {
    match p {
        libc::IPPROTO_TCP => "TCP",
        libc::IPPROTO_UDP => "UDP",
        _ => "IP",
    }
}

/// Dump half for one TCP or UDP socket.
pub fn dump(
    st: &mut SkDump,
    sk: SkFd<'_>,
    family: i32,
    ty: i32,
    proto: i32,
) -> Result<pb::FileEntry> {
    let (pid, fd, id, flags, file, ino) = sk.parts();
    let unsupported = |what: String| Error::Unsupported { pid, what };
    if ty == libc::SOCK_RAW {
        return dump_raw(st.net_pid, pid, fd, id, flags, file, ino, family, proto);
    }
    if proto != libc::IPPROTO_TCP && proto != libc::IPPROTO_UDP {
        return Err(unsupported(format!(
            "fd {fd} is an inet socket of protocol {proto}, which criu-rs cannot dump yet"
        )));
    }
    let d = st.inet(pid, fd, family, proto, ino)?.clone();
    let src = ip_of(family as u32, &addr_words(family, &d.src));
    let dst = ip_of(family as u32, &addr_words(family, &d.dst));
    let show = format!(
        "{} {}:{} -> {}:{}",
        proto_name(proto),
        src.map_or("?".into(), |a| a.to_string()),
        d.sport,
        dst.map_or("?".into(), |a| a.to_string()),
        d.dport
    );
    let what = format!("socket fd {fd} of pid {pid} ({show})");
    let state = u32::from(d.state);
    if proto == libc::IPPROTO_TCP {
        match state {
            TCP_LISTEN | TCP_CLOSE => {}
            s if super::tcp::connected(s as u8) && (st.tcp_established || st.tcp_close) => {}
            s if super::tcp::connected(s as u8) => {
                return Err(unsupported(format!(
                "fd {fd} is an established TCP connection ({show}, state {s}); dump it with --tcp-established"
            )))
            }
            s => {
                return Err(unsupported(format!(
                    "fd {fd} is a TCP socket in state {s} ({show}), which criu-rs cannot dump"
                )))
            }
        }
    }
    let at = At { pid, what: &what };
    let mut opts = sockopt::dump(file, family, &at)?;
    let ip_opts = sockopt::dump_ip(file, family, &at)?;
    let tcp_opts = if proto == libc::IPPROTO_TCP {
        let t = sockopt::dump_tcp(file, &at)?;
        // CRIU keeps TCP keepalive timings in both places.
        if opts.so_keepalive == Some(true) {
            opts.tcp_keepcnt = t.keepcnt;
            opts.tcp_keepidle = t.keepidle;
            opts.tcp_keepintvl = t.keepintvl;
        }
        Some(t)
    } else {
        None
    };
    let v6only = if family == libc::AF_INET6 {
        let v =
            sock::get_int(file, libc::SOL_IPV6, libc::IPV6_V6ONLY).map_err(|errno| Error::Sys {
                pid,
                what: format!("getsockopt IPV6_V6ONLY of {what}"),
                errno,
            })?;
        Some(v != 0)
    } else {
        None
    };
    if proto == libc::IPPROTO_TCP && super::tcp::connected(state as u8) && !st.tcp_close {
        if let (Some(s), Some(t)) = (src, dst) {
            let c = super::netlock::Conn {
                src: s,
                sport: d.sport,
                dst: t,
                dport: d.dport,
            };
            st.lock_connection(pid, ino, &c)?;
        }
        let (e, inq, outq) = super::tcp::dump(file, pid, &what, &mut st.tcp_repaired)?;
        st.tcp.streams.push((ino, e, inq, outq));
    }
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Inetsk as i32,
        id,
        isk: Some(pb::InetSkEntry {
            id,
            ino,
            family: family as u32,
            r#type: ty as u32,
            proto: proto as u32,
            state,
            src_port: u32::from(d.sport),
            dst_port: u32::from(d.dport),
            flags,
            backlog: if state == TCP_LISTEN { d.wqueue } else { 0 },
            src_addr: addr_words(family, &d.src),
            dst_addr: addr_words(family, &d.dst),
            fown: no_owner(),
            opts,
            v6only,
            ip_opts: Some(ip_opts),
            ifname: None,
            ns_id: None,
            shutdown: shutdown_entry(d.shutdown),
            tcp_opts,
        }),
        ..Default::default()
    })
}

/// Dump half for a raw IP socket: its addresses come from the socket
/// itself (no sock_diag module needed), its state is whether it is
/// connected.
#[allow(clippy::too_many_arguments)]
fn dump_raw(
    net_pid: Option<i32>,
    pid: i32,
    fd: i32,
    id: u32,
    flags: u32,
    file: BorrowedFd<'_>,
    ino: u32,
    family: i32,
    proto: i32,
) -> Result<pb::FileEntry> {
    let (local, _) = sock::inet_names(file).map_err(|errno| Error::Sys {
        pid,
        what: format!("the addresses of raw socket fd {fd}"),
        errno,
    })?;
    // A raw socket's peer is not told by getpeername: the kernel's table
    // of raw sockets (of the task's network namespace) has it.
    let table = format!(
        "/proc/{}/net/{}",
        net_pid.unwrap_or(pid),
        if family == libc::AF_INET6 {
            "raw6"
        } else {
            "raw"
        }
    );
    let text = std::fs::read_to_string(&table).map_err(|source| Error::Io {
        pid,
        what: format!("reading {table} (for raw socket fd {fd})"),
        source,
    })?;
    let peer = raw_peer(&text, ino).map(|ip| SocketAddr::new(ip, 0));
    let what = format!(
        "raw socket fd {fd} of pid {pid} (protocol {proto}, {} -> {})",
        local.ip(),
        peer.map_or("-".into(), |p| p.ip().to_string())
    );
    let at = At { pid, what: &what };
    let opts = sockopt::dump(file, family, &at)?;
    let mut ip_opts = sockopt::dump_ip(file, family, &at)?;
    ip_opts.raw = Some(sockopt::dump_raw(file, family, proto, &at)?);
    let words = |ip: IpAddr| -> Vec<u32> {
        let b: Vec<u8> = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        b.chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let unspecified = if family == libc::AF_INET6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let v6only = if family == libc::AF_INET6 {
        Some(
            sock::get_int(file, libc::SOL_IPV6, libc::IPV6_V6ONLY).map_err(|errno| Error::Sys {
                pid,
                what: format!("getsockopt IPV6_V6ONLY of {what}"),
                errno,
            })? != 0,
        )
    } else {
        None
    };
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Inetsk as i32,
        id,
        isk: Some(pb::InetSkEntry {
            id,
            ino,
            family: family as u32,
            r#type: libc::SOCK_RAW as u32,
            proto: proto as u32,
            state: if peer.is_some() {
                TCP_ESTABLISHED
            } else {
                TCP_CLOSE
            },
            src_port: u32::from(local.port()),
            dst_port: 0,
            flags,
            backlog: 0,
            src_addr: words(local.ip()),
            dst_addr: words(peer.map_or(unspecified, |p| p.ip())),
            fown: no_owner(),
            opts,
            v6only,
            ip_opts: Some(ip_opts),
            ifname: None,
            ns_id: None,
            shutdown: None,
            tcp_opts: None,
        }),
        ..Default::default()
    })
}

/// The remote address of the raw socket `ino` in `/proc/net/raw{,6}`
/// text, when it is connected (state TCP_ESTABLISHED).
fn raw_peer(text: &str, ino: u32) -> Option<IpAddr> {
    let ino = ino.to_string();
    let line = text
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(9) == Some(ino.as_str()))?;
    let mut f = line.split_whitespace();
    let rem = f.nth(2)?;
    let st = f.next()?;
    if u8::from_str_radix(st, 16).ok()? != TCP_ESTABLISHED as u8 {
        return None;
    }
    let hex = rem.split(':').next()?;
    // Each 32-bit word of the address as the kernel holds it, printed %08X.
    let bytes: Vec<u8> = (0..hex.len() / 8)
        .filter_map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(&bytes[..]).ok()?,
        ))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&bytes[..]).ok()?,
        ))),
        _ => None,
    }
}

/// The inet options of `e` on its new socket, before it is bound: IP (and
/// raw) and TCP options, and IPV6_V6ONLY.
fn restore_inet_opts(fd: BorrowedFd<'_>, e: &pb::InetSkEntry, what: &str) -> Result<()> {
    let at = At { pid: 0, what };
    if let Some(ip) = &e.ip_opts {
        sockopt::restore_ip(fd, e.family as i32, ip, &at)?;
        if let Some(raw) = &ip.raw {
            sockopt::restore_raw(fd, e.family as i32, raw, &at)?;
        }
    }
    if let Some(t) = &e.tcp_opts {
        sockopt::restore_tcp(fd, t, &at)?;
    }
    if let Some(v) = e.v6only {
        sock::set_int(fd, libc::SOL_IPV6, libc::IPV6_V6ONLY, i32::from(v)).map_err(|errno| {
            Error::Mismatch {
                what: format!("setting IPV6_V6ONLY on {what}: {errno}"),
            }
        })?;
    }
    Ok(())
}

/// Restore half for a raw IP socket: bound to its address (if any) and
/// connected to its peer (if any).
fn open_raw(e: &pb::InetSkEntry, opened: &mut HashMap<u32, OwnedFd>) -> Result<()> {
    let what = format!("raw socket id {} (protocol {})", e.id, e.proto);
    let fd = super::socket::new_raw_socket(
        e.family as i32,
        libc::SOCK_RAW,
        e.proto as i32,
        &e.opts,
        &what,
        " (needs CAP_NET_RAW)",
    )?;
    restore_inet_opts(fd.as_fd(), e, &what)?;
    let src = sockaddr(e.family, &e.src_addr, 0, &what)?;
    if !src.ip().is_unspecified() {
        sock::bind_inet(fd.as_fd(), &src).map_err(|errno| Error::Mismatch {
            what: format!("binding {what} to {}: {errno}", src.ip()),
        })?;
    }
    if e.state == TCP_ESTABLISHED {
        let dst = sockaddr(e.family, &e.dst_addr, 0, &what)?;
        sock::connect_inet(fd.as_fd(), &dst).map_err(|errno| Error::Mismatch {
            what: format!("connecting {what} to {}: {errno}", dst.ip()),
        })?;
    }
    super::socket::hand_over(fd, e.id, e.flags, &what, opened)
}

fn sockaddr(family: u32, words: &[u32], port: u32, what: &str) -> Result<SocketAddr> {
    let ip = ip_of(family, words).ok_or_else(|| Error::Mismatch {
        what: format!(
            "{what}: an address of {} words for family {family}",
            words.len()
        ),
    })?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// Restore half: a new socket with the options, address and state of `e`.
pub fn open(
    rs: &mut SkRestore,
    e: &pb::InetSkEntry,
    opened: &mut HashMap<u32, OwnedFd>,
) -> Result<()> {
    if e.r#type == libc::SOCK_RAW as u32 {
        return open_raw(e, opened);
    }
    let what = format!("inet socket id {} (inode {})", e.id, e.ino);
    let fam = match e.family as i32 {
        libc::AF_INET => AddressFamily::Inet,
        libc::AF_INET6 => AddressFamily::Inet6,
        f => {
            return Err(Error::Mismatch {
                what: format!("{what} has family {f}"),
            })
        }
    };
    let ty = sock_type(e.r#type as i32).ok_or_else(|| Error::Mismatch {
        what: format!("{what} has socket type {}", e.r#type),
    })?;
    let proto = match e.proto as i32 {
        libc::IPPROTO_TCP => SockProtocol::Tcp,
        libc::IPPROTO_UDP => SockProtocol::Udp,
        p => {
            return Err(Error::Mismatch {
                what: format!("{what} has protocol {p}"),
            })
        }
    };
    let fd = socket(fam, ty, SockFlag::SOCK_CLOEXEC, proto).map_err(|errno| Error::Mismatch {
        what: format!("making {what}: {errno}"),
    })?;
    sockopt::restore(
        fd.as_fd(),
        &e.opts,
        &At {
            pid: 0,
            what: &what,
        },
    )?;
    restore_inet_opts(fd.as_fd(), e, &what)?;
    let src = sockaddr(e.family, &e.src_addr, e.src_port, &what)?;
    let bound = e.src_port != 0;
    let established =
        e.proto as i32 == libc::IPPROTO_TCP && super::tcp::connected(e.state.min(255) as u8);
    if established && !rs.tcp_close && !rs.tcp_established {
        return Err(Error::Mismatch {
            what: format!(
                "{what} is an established TCP connection: restore it with --tcp-established (or --tcp-close)"
            ),
        });
    }
    if established && !rs.tcp_close {
        let dst = sockaddr(e.family, &e.dst_addr, e.dst_port, &what)?;
        super::tcp::restore(rs, fd.as_fd(), e, &src, &dst, &what)?;
    } else if established {
        // --tcp-close: the connection comes back closed: a fresh socket
        // shut both ways, so reads end and writes fail (the kernel says
        // ENOTCONN for an unconnected socket but keeps the shutdown). A
        // network lock the dump left for the connection goes with the
        // others (none is no error).
        rs.tcp_inos.push(e.ino);
        match nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both) {
            Ok(()) | Err(nix::errno::Errno::ENOTCONN) => {}
            Err(errno) => {
                return Err(Error::Mismatch {
                    what: format!("shutting {what} (restored closed, --tcp-close): {errno}"),
                })
            }
        }
    } else if bound {
        // The dumped socket (or its connections in TIME_WAIT) may still hold
        // the port for a moment: bind with SO_REUSEADDR, then put it back.
        let reuse = e.opts.reuseaddr.unwrap_or(false);
        let set_reuse = |v: bool| {
            sock::set_int(
                fd.as_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                i32::from(v),
            )
            .map_err(|errno| Error::Mismatch {
                what: format!("setting SO_REUSEADDR on {what}: {errno}"),
            })
        };
        set_reuse(true)?;
        sock::bind_inet(fd.as_fd(), &src).map_err(|errno| Error::Mismatch {
            what: format!("binding {what} to {src}: {errno}"),
        })?;
        if e.state == TCP_LISTEN {
            let backlog =
                Backlog::new(e.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
            listen(&fd, backlog).map_err(|errno| Error::Mismatch {
                what: format!("listen on {what}: {errno}"),
            })?;
        }
        if !reuse {
            set_reuse(false)?;
        }
    }
    if e.proto as i32 == libc::IPPROTO_UDP && e.state == TCP_ESTABLISHED {
        let dst = sockaddr(e.family, &e.dst_addr, e.dst_port, &what)?;
        sock::connect_inet(fd.as_fd(), &dst).map_err(|errno| Error::Mismatch {
            what: format!("connecting {what} to {dst}: {errno}"),
        })?;
    }
    if !established {
        apply_shutdown(fd.as_fd(), e.shutdown, &what)?;
    }
    apply_flags(fd.as_fd(), e.flags, &what)?;
    opened.insert(e.id, fd);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_peers_come_from_the_raw_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                 1: 0100007F:0001 0100007F:0000 01 00000000:00000000 00:00000000 00000000     0        0 1744941 2 0000000000000000 0\n\
                 1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 55 2 0000000000000000 0\n";
        assert_eq!(raw_peer(t, 1744941), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(raw_peer(t, 55), None);
        assert_eq!(raw_peer(t, 56), None);
    }

    #[test]
    fn addresses_are_kept_in_network_order() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[127, 0, 0, 1]);
        let w = addr_words(libc::AF_INET, &a);
        // What upstream writes for 127.0.0.1 (golden case "tcp").
        assert_eq!(w, vec![0x0100_007f]);
        assert_eq!(
            ip_of(libc::AF_INET as u32, &w),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        let v6 = Ipv6Addr::LOCALHOST.octets();
        let w6 = addr_words(libc::AF_INET6, &v6);
        assert_eq!(w6.len(), 4);
        assert_eq!(
            ip_of(libc::AF_INET6 as u32, &w6),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(ip_of(libc::AF_INET6 as u32, &w), None);
    }
}
