use crate::prelude::*;
use nix::sys::socket::{
    bind, getsockname, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "sockets/netlink00",
    family: "sockets",
    description: "NETLINK_ROUTE sockets bound to multicast groups (and one only auto-bound) keep their port ids and groups, and still answer requests",
    ..Desc::DEFAULT
};

// Groups that stay quiet on a busy host: a notification queued at dump
// time fails the dump (as upstream), and link or address changes made by
// other tests on the host would.
const RTMGRP_DECNET_IFADDR: u32 = 0x1000;
const RTMGRP_IPV6_PREFIX: u32 = 0x20000;
const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

fn route_socket() -> Result<OwnedFd> {
    socket(AddressFamily::Netlink, SockType::Raw, SockFlag::empty(), SockProtocol::NetlinkRoute).context("netlink socket")
}

fn name(fd: &OwnedFd) -> Result<(u32, u32)> {
    let a: NetlinkAddr = getsockname(fd.as_raw_fd()).context("getsockname")?;
    Ok((a.pid(), a.groups()))
}

/// Asks for the links and checks an RTM_NEWLINK comes back.
fn ask_links(fd: &OwnedFd, seq: u32) -> Result<()> {
    let mut m = Vec::new();
    m.extend_from_slice(&32u32.to_ne_bytes());
    m.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0u8; 16]); // ifinfomsg
    send(fd.as_raw_fd(), &m, MsgFlags::empty()).context("send RTM_GETLINK")?;
    let mut buf = vec![0u8; 65536];
    // Read the whole dump, up to its NLMSG_DONE (a socket may run one dump
    // at a time). A socket in multicast groups also gets the notifications
    // of whatever changes links meanwhile (their seq is another's): skip
    // those.
    let mut links = 0;
    for _ in 0..1000 {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).context("recv links")?;
        let mut b = &buf[..n];
        while b.len() >= 16 {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            ensure!(len >= 16 && len <= b.len(), "malformed netlink message of {len} bytes");
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            let got_seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            if got_seq == seq {
                match ty {
                    RTM_NEWLINK => links += 1,
                    NLMSG_DONE => {
                        ensure!(links > 0, "the dump of seq {seq} had no RTM_NEWLINK");
                        return Ok(());
                    }
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
                        bail!("the dump of seq {seq} failed: {}", std::io::Error::from_raw_os_error(-code));
                    }
                    _ => bail!("answer of type {ty} to seq {seq}"),
                }
            }
            b = &b[((len + 3) & !3).min(b.len())..];
        }
    }
    bail!("no end of the dump of seq {seq} among 1000 netlink datagrams")
}

fn set_timeout(fd: &OwnedFd) -> Result<()> {
    let tv = nix::sys::time::TimeVal::new(5, 0);
    nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv).context("SO_RCVTIMEO")
}

pub fn run(t: &mut Test) -> Result<()> {
    // Bound by the kernel's choice of port id, with two groups.
    let a = route_socket()?;
    bind(a.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_DECNET_IFADDR | RTMGRP_IPV6_PREFIX)).context("bind a")?;
    // Bound to a port id of its own choosing, no groups.
    let b = route_socket()?;
    let want_b = 0x7fff_0000 | (std::process::id() & 0xffff);
    bind(b.as_raw_fd(), &NetlinkAddr::new(want_b, 0)).context("bind b")?;
    // Never bound: it binds itself on its first send.
    let c = route_socket()?;
    set_timeout(&c)?;
    ask_links(&c, 1)?;
    let before = (name(&a)?, name(&b)?, name(&c)?);
    ensure!(before.1 .0 == want_b, "b is bound to port {}", before.1 .0);

    t.daemon()?;
    t.wait_sig();

    let after = (name(&a)?, name(&b)?, name(&c)?);
    ensure!(after == before, "netlink names were {before:?}, now {after:?}");
    ensure!(after.0 .1 == RTMGRP_DECNET_IFADDR | RTMGRP_IPV6_PREFIX, "a is in groups {:#x}", after.0 .1);
    for (s, seq) in [(&a, 7u32), (&b, 8), (&c, 9)] {
        set_timeout(s)?;
        ask_links(s, seq)?;
    }
    Ok(())
}
