use crate::prelude::*;
use nix::sys::socket::{recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub const DESC: Desc = Desc {
    name: "sockets/raw_icmp",
    family: "sockets",
    description: "a raw IPv4 ICMP socket connected to 127.0.0.1 keeps working after restore: it pings and sees the echo reply",
    flags: &[Flag::Suid],
    ..Desc::DEFAULT
};

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ping(fd: &OwnedFd, id: u16, seq: u16) -> Result<()> {
    let mut m = vec![8u8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"zdtm-raw-icmp");
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    send(fd.as_raw_fd(), &m, MsgFlags::empty()).context("send echo request")?;
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => bail!("recv: {e}"),
        };
        // An IPv4 header, then ICMP: an echo reply (type 0) with our id/seq.
        let ihl = usize::from(buf[0] & 0xf) * 4;
        let icmp = &buf[ihl.min(n)..n];
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
    bail!("no echo reply for id {id} seq {seq}")
}

pub fn run(t: &mut Test) -> Result<()> {
    let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Icmp).context("raw ICMP socket")?;
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([127, 0, 0, 1]) },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in of the size passed.
    let r = unsafe { libc::connect(fd.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32) };
    ensure!(r == 0, "connect 127.0.0.1: {}", nix::errno::Errno::last());
    let id = (std::process::id() & 0xffff) as u16;
    ping(&fd, id, 1)?;

    t.daemon()?;
    t.wait_sig();

    let ty = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType).context("SO_TYPE")?;
    ensure!(ty == SockType::Raw, "the socket is now of type {ty:?}");
    ping(&fd, id, 2)
}
