use crate::prelude::*;
use nix::sys::socket::{recv, MsgFlags};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub const DESC: Desc = Desc {
    name: "sockets/packet00",
    family: "sockets",
    description: "AF_PACKET sockets (raw and datagram) bound to lo keep their binding and options, and capture loopback traffic after restore",
    flags: &[Flag::Suid],
    ..Desc::DEFAULT
};

const ETH_P_ALL: u16 = 0x0003;
pub const ETH_P_IP: u16 = 0x0800;

pub fn packet_socket(ty: i32, proto: u16) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, ty | libc::SOCK_CLOEXEC, i32::from(proto.to_be())) };
    ensure!(fd >= 0, "socket(AF_PACKET, {ty}): {}", nix::errno::Errno::last());
    // SAFETY: `fd` was just returned by socket(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn bind_to(fd: &OwnedFd, proto: u16, ifindex: i32) -> Result<()> {
    // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
    };
    ensure!(r == 0, "bind AF_PACKET: {}", nix::errno::Errno::last());
    Ok(())
}

/// The socket's (protocol, ifindex) from getsockname.
fn name(fd: &OwnedFd) -> Result<(u16, i32)> {
    // SAFETY: a zeroed sockaddr_ll is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` and `len` are valid for writes of `len` bytes.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), (&mut sll as *mut libc::sockaddr_ll).cast(), &mut len) };
    ensure!(r == 0, "getsockname: {}", nix::errno::Errno::last());
    Ok((u16::from_be(sll.sll_protocol), sll.sll_ifindex))
}

fn get_int(fd: &OwnedFd, opt: i32) -> Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_PACKET, opt, (&mut v as *mut i32).cast(), &mut len) };
    ensure!(r == 0, "getsockopt SOL_PACKET {opt}: {}", nix::errno::Errno::last());
    Ok(v)
}

fn set_int(fd: &OwnedFd, opt: i32, v: i32) -> Result<()> {
    // SAFETY: `v` lives across the call and its size is passed.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, opt, (&v as *const i32).cast(), 4) };
    ensure!(r == 0, "setsockopt SOL_PACKET {opt}: {}", nix::errno::Errno::last());
    Ok(())
}

/// Sends a UDP datagram with `marker` over loopback and waits for `fd` to
/// capture a frame that holds it.
pub fn captures(fd: &OwnedFd, marker: &[u8], what: &str) -> Result<()> {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").context("udp bind")?;
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").context("udp bind")?;
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        tx.send_to(marker, rx.local_addr().context("addr")?).context("udp send")?;
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            if buf[..n].windows(marker.len()).any(|w| w == marker) {
                return Ok(());
            }
        }
    }
    bail!("{what} captured no frame with the marker")
}

pub fn run(t: &mut Test) -> Result<()> {
    // SAFETY: a NUL-terminated name.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    ensure!(lo > 0, "lo has no index");
    let raw = packet_socket(libc::SOCK_RAW, ETH_P_ALL)?;
    bind_to(&raw, ETH_P_ALL, lo)?;
    set_int(&raw, libc::PACKET_AUXDATA, 1)?;
    let dgram = packet_socket(libc::SOCK_DGRAM, ETH_P_IP)?;
    bind_to(&dgram, ETH_P_IP, lo)?;
    set_int(&dgram, libc::PACKET_VERSION, libc::tpacket_versions::TPACKET_V2 as i32)?;
    let before = (name(&raw)?, name(&dgram)?);

    t.daemon()?;
    t.wait_sig();

    let after = (name(&raw)?, name(&dgram)?);
    ensure!(after == before, "packet sockets were bound to {before:?}, now {after:?}");
    ensure!(get_int(&raw, libc::PACKET_AUXDATA)? == 1, "PACKET_AUXDATA was lost");
    ensure!(get_int(&dgram, libc::PACKET_VERSION)? == libc::tpacket_versions::TPACKET_V2 as i32, "PACKET_VERSION was lost");
    captures(&raw, b"zdtm-packet-raw-marker", "the raw packet socket")?;
    captures(&dgram, b"zdtm-packet-dgram-marker", "the datagram packet socket")?;
    Ok(())
}
