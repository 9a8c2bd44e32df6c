use super::packet00::{bind_to, captures, packet_socket, ETH_P_IP};
use crate::prelude::*;
use nix::sys::socket::{recv, MsgFlags};
use std::os::fd::AsRawFd;
use std::time::Duration;

pub const DESC: Desc = Desc {
    name: "sockets/packet_queued",
    family: "sockets",
    description: "frames queued on a packet socket at dump time are dropped as upstream does (the dump goes through, as if they were lost on the wire), and the socket captures again after restore",
    flags: &[Flag::Suid, Flag::Cronly],
    ..Desc::DEFAULT
};

const MARKER: &[u8] = b"zdtm-packet-queued-before-dump";

pub fn run(t: &mut Test) -> Result<()> {
    // SAFETY: a NUL-terminated name.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    ensure!(lo > 0, "lo has no index");
    let p = packet_socket(libc::SOCK_DGRAM, ETH_P_IP)?;
    bind_to(&p, ETH_P_IP, lo)?;
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").context("udp bind")?;
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").context("udp bind")?;
    tx.send_to(MARKER, rx.local_addr().context("addr")?).context("udp send")?;
    std::thread::sleep(Duration::from_millis(50));
    let n = sys::queued(p.as_raw_fd()).context("FIONREAD")?;
    ensure!(n > 0, "no frame queued before the dump (FIONREAD {n})");
    t.daemon()?;
    t.wait_sig();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = recv(p.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
        ensure!(!buf[..n].windows(MARKER.len()).any(|w| w == MARKER), "a frame queued before the dump is still queued");
    }
    captures(&p, b"zdtm-packet-queued-after", "the packet socket after restore")
}
