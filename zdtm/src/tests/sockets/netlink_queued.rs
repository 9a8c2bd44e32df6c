use crate::prelude::*;
use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "sockets/netlink_queued",
    family: "sockets",
    description: "a NETLINK_ROUTE socket with an unread answer queued fails the dump (as upstream: queued netlink messages are not dumped), and the tree runs on with the answer still queued",
    flags: &[Flag::Crfail],
    ..Desc::DEFAULT
};

const RTM_GETLINK: u16 = 18;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

pub fn run(t: &mut Test) -> Result<()> {
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::empty(), SockProtocol::NetlinkRoute)
        .context("netlink socket")?;
    let mut m = Vec::new();
    m.extend_from_slice(&32u32.to_ne_bytes());
    m.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&7u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0u8; 16]);
    send(fd.as_raw_fd(), &m, MsgFlags::empty()).context("send RTM_GETLINK")?;
    t.daemon()?;
    t.wait_sig();
    // The answer is still there, whole: read it to its NLMSG_DONE.
    let mut buf = vec![0u8; 65536];
    for _ in 0..1000 {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).context("recv the queued answer")?;
        let mut b = &buf[..n];
        while b.len() >= 16 {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            ensure!(len >= 16 && len <= b.len(), "malformed netlink message of {len} bytes");
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            if seq == 7 && ty == NLMSG_DONE {
                return Ok(());
            }
            b = &b[(len.div_ceil(4) * 4).min(b.len())..];
        }
    }
    bail!("no NLMSG_DONE in the queued answer")
}
