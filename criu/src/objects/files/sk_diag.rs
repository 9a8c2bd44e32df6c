//! The kernel's sock_diag netlink interface: what a socket is connected to,
//! its name, queue lengths and shutdown state, for unix and inet sockets of
//! criu's network namespace. One dump per family, indexed by inode.

use std::collections::HashMap;

use nix::errno::Errno;
use nix::sys::socket::SockProtocol;

use crate::sys::netlink::{self, u16_at, u32_at};

const SOCK_DIAG_BY_FAMILY: u16 = 20;

const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

const INET_DIAG_SHUTDOWN: u16 = 8;

/// One unix socket as sock_diag describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub ino: u32,
    pub ty: u8,
    pub state: u8,
    /// `sun_path` bytes; an abstract name starts with a NUL.
    pub name: Option<Vec<u8>>,
    /// (inode, device) of the bound file.
    pub vfs: Option<(u32, u32)>,
    pub peer: Option<u32>,
    /// Inodes of connections waiting in a listener's accept queue.
    pub icons: Vec<u32>,
    /// (receive queue, send queue); for a listener (queued, backlog).
    pub rqlen: Option<(u32, u32)>,
    pub shutdown: u8,
}

/// One TCP or UDP socket as inet_diag describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InetDiag {
    pub family: u8,
    pub state: u8,
    pub sport: u16,
    pub dport: u16,
    /// Addresses in network order (the first 4 bytes for IPv4).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    pub rqueue: u32,
    pub wqueue: u32,
    pub ino: u32,
    pub shutdown: u8,
}

/// Parses the payload of one `unix_diag_msg`.
pub fn parse_unix(p: &[u8]) -> Option<UnixDiag> {
    let mut d = UnixDiag {
        ty: *p.get(1)?,
        state: *p.get(2)?,
        ino: u32_at(p, 4)?,
        ..Default::default()
    };
    for (ty, a) in netlink::attrs(p.get(16..)?) {
        match ty {
            UNIX_DIAG_NAME => d.name = Some(a.to_vec()),
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(a, 0)?, u32_at(a, 4)?)),
            UNIX_DIAG_PEER => d.peer = Some(u32_at(a, 0)?),
            UNIX_DIAG_ICONS => {
                d.icons = a
                    .chunks_exact(4)
                    .filter_map(|c| Some(u32::from_ne_bytes(c.try_into().ok()?)))
                    .collect()
            }
            UNIX_DIAG_RQLEN => d.rqlen = Some((u32_at(a, 0)?, u32_at(a, 4)?)),
            UNIX_DIAG_SHUTDOWN => d.shutdown = *a.first()?,
            _ => {}
        }
    }
    Some(d)
}

/// Parses the payload of one `inet_diag_msg`.
pub fn parse_inet(p: &[u8]) -> Option<InetDiag> {
    let mut d = InetDiag {
        family: *p.first()?,
        state: *p.get(1)?,
        sport: u16::from_be_bytes(p.get(4..6)?.try_into().ok()?),
        dport: u16::from_be_bytes(p.get(6..8)?.try_into().ok()?),
        src: p.get(8..24)?.try_into().ok()?,
        dst: p.get(24..40)?.try_into().ok()?,
        ifindex: u32_at(p, 40)?,
        rqueue: u32_at(p, 56)?,
        wqueue: u32_at(p, 60)?,
        ino: u32_at(p, 68)?,
        shutdown: 0,
    };
    for (ty, a) in netlink::attrs(p.get(72..)?) {
        if ty == INET_DIAG_SHUTDOWN {
            d.shutdown = *a.first()?;
        }
    }
    Some(d)
}

/// Sends one sock_diag dump request and collects the payloads of every
/// answer.
fn dump(body: &[u8]) -> Result<Vec<Vec<u8>>, Errno> {
    let mut nl = netlink::Route::open_protocol(SockProtocol::NetlinkSockDiag)?;
    let answers = nl.dump(SOCK_DIAG_BY_FAMILY, body)?;
    Ok(answers
        .iter()
        .flat_map(|raw| netlink::messages(raw))
        .filter(|m| m.ty == SOCK_DIAG_BY_FAMILY)
        .map(|m| m.payload.to_vec())
        .collect())
}

/// Every unix socket of criu's network namespace, by inode.
pub fn unix_sockets() -> Result<HashMap<u32, UnixDiag>, Errno> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    body.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    body.extend_from_slice(&0u32.to_ne_bytes()); // ino
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    body.extend_from_slice(&show.to_ne_bytes());
    body.extend_from_slice(&u32::MAX.to_ne_bytes());
    body.extend_from_slice(&u32::MAX.to_ne_bytes());
    Ok(dump(&body)?
        .iter()
        .filter_map(|p| parse_unix(p))
        .map(|d| (d.ino, d))
        .collect())
}

/// Every socket of `family` (AF_INET/AF_INET6) and `proto` (TCP/UDP) of
/// criu's network namespace, by inode.
pub fn inet_sockets(family: i32, proto: i32) -> Result<HashMap<u32, InetDiag>, Errno> {
    let mut body = vec![0u8; 56];
    body[0] = family as u8;
    body[1] = proto as u8;
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    Ok(dump(&body)?
        .iter()
        .filter_map(|p| parse_inet(p))
        .filter(|d| d.family as i32 == family)
        .map(|d| (d.ino, d))
        .collect())
}

const NDIAG_SHOW_GROUPS: u32 = 0x02;
const NETLINK_DIAG_GROUPS: u16 = 1;
const NDIAG_PROTO_ALL: u8 = 255;

/// One netlink socket as netlink_diag describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetlinkDiag {
    pub protocol: u8,
    /// 0 unconnected, 1 connected.
    pub state: u8,
    pub portid: u32,
    pub dst_portid: u32,
    pub dst_group: u32,
    pub ino: u32,
    /// The multicast groups as a bitmap of 32-bit words (group `n` is bit
    /// `n - 1`).
    pub groups: Vec<u32>,
}

/// Parses the payload of one `netlink_diag_msg`.
pub fn parse_netlink(p: &[u8]) -> Option<NetlinkDiag> {
    let mut d = NetlinkDiag {
        protocol: *p.get(2)?,
        state: *p.get(3)?,
        portid: u32_at(p, 4)?,
        dst_portid: u32_at(p, 8)?,
        dst_group: u32_at(p, 12)?,
        ino: u32_at(p, 16)?,
        groups: Vec::new(),
    };
    for (ty, a) in netlink::attrs(p.get(28..)?) {
        if ty == NETLINK_DIAG_GROUPS {
            // An array of `unsigned long`: on a 64-bit kernel, groups 1-32
            // are the low half of the first word.
            d.groups = a
                .chunks_exact(4)
                .filter_map(|c| Some(u32::from_ne_bytes(c.try_into().ok()?)))
                .collect();
            while d.groups.last() == Some(&0) {
                d.groups.pop();
            }
        }
    }
    Some(d)
}

/// Every netlink socket of criu's network namespace, by inode.
pub fn netlink_sockets() -> Result<HashMap<u32, NetlinkDiag>, Errno> {
    let mut body = Vec::with_capacity(20);
    body.extend_from_slice(&[libc::AF_NETLINK as u8, NDIAG_PROTO_ALL, 0, 0]);
    body.extend_from_slice(&0u32.to_ne_bytes()); // ino
    body.extend_from_slice(&NDIAG_SHOW_GROUPS.to_ne_bytes());
    body.extend_from_slice(&[0u8; 8]); // cookie
    Ok(dump(&body)?
        .iter()
        .filter_map(|p| parse_netlink(p))
        .map(|d| (d.ino, d))
        .collect())
}

const PACKET_SHOW_INFO: u32 = 0x01;
const PACKET_SHOW_MCLIST: u32 = 0x02;
const PACKET_SHOW_RING_CFG: u32 = 0x04;
const PACKET_SHOW_FANOUT: u32 = 0x08;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FANOUT: u16 = 4;

/// `pdi_flags` bits.
pub const PDI_AUXDATA: u32 = 0x02;
pub const PDI_ORIGDEV: u32 = 0x04;
pub const PDI_VNETHDR: u32 = 0x08;
pub const PDI_LOSS: u32 = 0x10;

/// One multicast membership of a packet socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketMc {
    pub index: u32,
    pub ty: u32,
    pub addr: Vec<u8>,
}

/// One packet socket as packet_diag describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketDiag {
    pub ty: u8,
    /// The protocol in host order.
    pub num: u16,
    pub ino: u32,
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    pub mclist: Vec<PacketMc>,
    pub fanout: Option<u32>,
    /// Whether an rx or tx ring is set up.
    pub rings: bool,
}

/// Parses the payload of one `packet_diag_msg`.
pub fn parse_packet(p: &[u8]) -> Option<PacketDiag> {
    let mut d = PacketDiag {
        ty: *p.get(1)?,
        num: u16_at(p, 2)?,
        ino: u32_at(p, 4)?,
        ..Default::default()
    };
    for (ty, a) in netlink::attrs(p.get(16..)?) {
        match ty {
            PACKET_DIAG_INFO => {
                d.ifindex = u32_at(a, 0)?;
                d.version = u32_at(a, 4)?;
                d.reserve = u32_at(a, 8)?;
                d.copy_thresh = u32_at(a, 12)?;
                d.tstamp = u32_at(a, 16)?;
                d.flags = u32_at(a, 20)?;
            }
            PACKET_DIAG_MCLIST => {
                // packet_diag_mclist: index, count, type, alen, addr[32].
                for m in a.chunks_exact(44) {
                    let alen = usize::from(u16_at(m, 10)?).min(32);
                    d.mclist.push(PacketMc {
                        index: u32_at(m, 0)?,
                        ty: u16_at(m, 8)?.into(),
                        addr: m.get(12..12 + alen)?.to_vec(),
                    });
                }
            }
            PACKET_DIAG_RX_RING | PACKET_DIAG_TX_RING => d.rings = true,
            PACKET_DIAG_FANOUT => d.fanout = Some(u32_at(a, 0)?),
            _ => {}
        }
    }
    Some(d)
}

/// Every packet socket of criu's network namespace, by inode.
pub fn packet_sockets() -> Result<HashMap<u32, PacketDiag>, Errno> {
    let mut body = Vec::with_capacity(20);
    body.extend_from_slice(&[libc::AF_PACKET as u8, 0, 0, 0]);
    body.extend_from_slice(&0u32.to_ne_bytes()); // ino
    let show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT;
    body.extend_from_slice(&show.to_ne_bytes());
    body.extend_from_slice(&[0u8; 8]); // cookie
    Ok(dump(&body)?
        .iter()
        .filter_map(|p| parse_packet(p))
        .map(|d| (d.ino, d))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn ino_of(fd: &impl std::os::fd::AsRawFd) -> u32 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino() as u32
    }

    #[test]
    fn socketpair_peers_and_queue() {
        use std::io::Write;
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"12345").unwrap();
        let all = unix_sockets().unwrap();
        let (ia, ib) = (ino_of(&a), ino_of(&b));
        let da = &all[&ia];
        let db = &all[&ib];
        assert_eq!(da.peer, Some(ib));
        assert_eq!(db.peer, Some(ia));
        assert_eq!(db.rqlen.unwrap().0, 5);
        assert_eq!(da.ty, libc::SOCK_STREAM as u8);
        assert_eq!(da.name, None);
    }

    #[test]
    fn listener_name_and_pending_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let l = UnixListener::bind(&path).unwrap();
        let c = UnixStream::connect(&path).unwrap();
        let all = unix_sockets().unwrap();
        let d = &all[&ino_of(&l)];
        assert_eq!(d.state, 10); // TCP_LISTEN
                                 // The name as bound, with the NUL the binder passed.
        let mut want = path.as_os_str().as_encoded_bytes().to_vec();
        want.push(0);
        assert_eq!(d.name.as_deref(), Some(&want[..]));
        // The accept queue names the connecting socket.
        assert_eq!(d.icons, vec![ino_of(&c)]);
        assert!(d.vfs.is_some());
    }

    #[test]
    fn tcp_listener_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let all = inet_sockets(libc::AF_INET, libc::IPPROTO_TCP).unwrap();
        let d = &all[&ino_of(&l)];
        assert_eq!(d.sport, port);
        assert_eq!(&d.src[..4], &[127, 0, 0, 1]);
        assert_eq!(d.state, 10);
    }

    #[test]
    fn netlink_socket_port_and_groups() {
        use nix::sys::socket::{bind, NetlinkAddr};
        let sk = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .unwrap();
        bind(sk.as_raw_fd(), &NetlinkAddr::new(0, 0x11)).unwrap();
        let all = netlink_sockets().unwrap();
        let d = &all[&ino_of(&sk)];
        assert_eq!(d.protocol, 0); // NETLINK_ROUTE
        assert_ne!(d.portid, 0);
        assert_eq!(d.groups, vec![0x11]);
    }

    #[test]
    fn packet_msg_is_parsed() {
        let mut p = vec![libc::AF_PACKET as u8, 3];
        p.extend_from_slice(&0x0800u16.to_ne_bytes());
        p.extend_from_slice(&77u32.to_ne_bytes());
        p.extend_from_slice(&[0; 8]);
        // PACKET_DIAG_INFO: ifindex 1, version 1, reserve 4, thresh 0,
        // tstamp 0, flags AUXDATA.
        p.extend_from_slice(&28u16.to_ne_bytes());
        p.extend_from_slice(&PACKET_DIAG_INFO.to_ne_bytes());
        for v in [1u32, 1, 4, 0, 0, PDI_AUXDATA] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        let d = parse_packet(&p).unwrap();
        assert_eq!((d.ty, d.num, d.ino, d.ifindex), (3, 0x0800, 77, 1));
        assert_eq!((d.version, d.reserve, d.flags), (1, 4, PDI_AUXDATA));
        assert!(!d.rings);
    }

    #[test]
    fn truncated_messages_are_ignored() {
        assert!(parse_unix(&[1, 2]).is_none());
        assert!(parse_inet(&[0; 40]).is_none());
        assert!(netlink::messages(&[0xff; 15]).is_empty());
        assert!(netlink::attrs(&[200, 0, 1, 0, 9]).is_empty());
    }
}
