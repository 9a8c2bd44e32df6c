//! Netlink sockets (`netlink_sk_entry`): protocol, port id, multicast
//! groups and the peer a socket is connected to. A socket with messages
//! queued to read is refused, as upstream does (they are answers and
//! notifications of the dumped moment).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{bind, connect, NetlinkAddr};

use crate::image::pb;
use crate::sys::sock;

use super::super::{Error, Result};
use super::socket::{hand_over, new_raw_socket, no_owner, rx_queued, SkDump, SkFd};
use super::sockopt::{self, At};

const NETLINK_CONNECTED: u32 = 1;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;

/// Dump half for one netlink socket.
pub fn dump(st: &mut SkDump, sk: SkFd<'_>) -> Result<pb::FileEntry> {
    let (pid, fd, id, flags, file, ino) = sk.parts();
    let d = st.netlink(pid, fd, ino)?.clone();
    let what = format!(
        "netlink socket fd {fd} of pid {pid} (inode {ino}, protocol {})",
        d.protocol
    );
    let ty = sock::get_int(file, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|errno| Error::Sys {
        pid,
        what: format!("getsockopt SO_TYPE of {what}"),
        errno,
    })?;
    if ty != libc::SOCK_RAW && ty != libc::SOCK_DGRAM {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what} is of socket type {ty}"),
        });
    }
    if !d.groups.is_empty() && d.portid == 0 {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what} is in multicast groups but has no port id"),
        });
    }
    if let Some(bytes) = rx_queued(file, pid, &what)? {
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "{what} has messages queued to read ({bytes} bytes in its receive queue); criu does not dump queued netlink messages"
            ),
        });
    }
    let opts = sockopt::dump(file, libc::AF_NETLINK, &At { pid, what: &what })?;
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Netlinksk as i32,
        id,
        nlsk: Some(pb::NetlinkSkEntry {
            id,
            ino,
            protocol: u32::from(d.protocol),
            state: u32::from(d.state),
            flags,
            portid: d.portid,
            groups: d.groups,
            dst_portid: d.dst_portid,
            dst_group: d.dst_group,
            fown: no_owner(),
            opts,
            ns_id: None,
        }),
        ..Default::default()
    })
}

/// Restore half: a netlink socket of the same protocol, bound to the same
/// port id and groups, connected as it was.
pub fn open(e: &pb::NetlinkSkEntry, opened: &mut HashMap<u32, OwnedFd>) -> Result<()> {
    let what = format!(
        "netlink socket id {} (inode {}, protocol {})",
        e.id, e.ino, e.protocol
    );
    let fd = new_raw_socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW,
        e.protocol as i32,
        &e.opts,
        &what,
        "",
    )?;
    if e.portid != 0 {
        let first = e.groups.first().copied().unwrap_or(0);
        bind(fd.as_raw_fd(), &NetlinkAddr::new(e.portid, first)).map_err(|errno| {
            Error::Mismatch {
                what: format!(
                    "binding {what} to port id {} (groups {first:#x}): {errno}",
                    e.portid
                ),
            }
        })?;
        // Groups past 32 are joined one by one.
        for (w, bits) in e.groups.iter().enumerate().skip(1) {
            for b in 0..32 {
                if bits & (1 << b) != 0 {
                    let group = (w * 32 + b + 1) as i32;
                    sock::set_int(fd.as_fd(), libc::SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
                        .map_err(|errno| Error::Mismatch {
                            what: format!("joining {what} to group {group}: {errno}"),
                        })?;
                }
            }
        }
    }
    if e.state == NETLINK_CONNECTED {
        let group = if e.dst_group == 0 {
            0
        } else {
            1u32 << ((e.dst_group - 1) % 32)
        };
        connect(fd.as_raw_fd(), &NetlinkAddr::new(e.dst_portid, group)).map_err(|errno| {
            Error::Mismatch {
                what: format!("connecting {what} to port id {}: {errno}", e.dst_portid),
            }
        })?;
    }
    hand_over(fd, e.id, e.flags, &what, opened)
}
