//! Packet sockets (`packet_sock_entry`): type, protocol, the interface they
//! are bound to, their options and multicast memberships. Frames queued at
//! dump time are not kept (as lost on the wire); mmap'ed rings are refused.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use crate::image::pb;
use crate::sys::sock;

use super::super::{Error, Result};
use super::sk_diag::{PDI_AUXDATA, PDI_LOSS, PDI_ORIGDEV, PDI_VNETHDR};
use super::socket::{hand_over, new_raw_socket, no_owner, rx_queued, SkDump, SkFd};
use super::sockopt::{self, At};

/// Dump half for one packet socket.
pub fn dump(st: &mut SkDump, sk: SkFd<'_>) -> Result<pb::FileEntry> {
    let (pid, fd, id, flags, file, ino) = sk.parts();
    let d = st.packet(pid, fd, ino)?.clone();
    let what = format!(
        "packet socket fd {fd} of pid {pid} (inode {ino}, protocol {:#06x}, interface {})",
        d.num, d.ifindex
    );
    if d.rings {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what} has an mmap'ed ring, which criu-rs cannot dump yet"),
        });
    }
    if let Some(bytes) = rx_queued(file, pid, &what)? {
        // As upstream: frames waiting to be read are dropped, as if lost
        // on the wire.
        tracing::warn!("{what}: {bytes} bytes of queued frames are not dumped");
    }
    let opts = sockopt::dump(file, libc::AF_PACKET, &At { pid, what: &what })?;
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Packetsk as i32,
        id,
        psk: Some(pb::PacketSockEntry {
            id,
            r#type: u32::from(d.ty),
            protocol: u32::from(d.num),
            flags,
            ifindex: d.ifindex,
            fown: no_owner(),
            opts,
            version: d.version,
            reserve: d.reserve,
            aux_data: d.flags & PDI_AUXDATA != 0,
            orig_dev: d.flags & PDI_ORIGDEV != 0,
            vnet_hdr: d.flags & PDI_VNETHDR != 0,
            loss: d.flags & PDI_LOSS != 0,
            timestamp: d.tstamp,
            copy_thresh: d.copy_thresh,
            mclist: d
                .mclist
                .iter()
                .map(|m| pb::PacketMclist {
                    index: m.index,
                    r#type: m.ty,
                    addr: m.addr.clone(),
                })
                .collect(),
            fanout: d.fanout,
            rx_ring: None,
            tx_ring: None,
            ns_id: None,
        }),
        ..Default::default()
    })
}

/// Restore half: a packet socket of the same type and protocol, with its
/// options, bound to the same interface.
pub fn open(e: &pb::PacketSockEntry, opened: &mut HashMap<u32, OwnedFd>) -> Result<()> {
    let what = format!(
        "packet socket id {} (protocol {:#06x}, interface {})",
        e.id, e.protocol, e.ifindex
    );
    if e.rx_ring.is_some() || e.tx_ring.is_some() {
        return Err(Error::Mismatch {
            what: format!("{what} has an mmap'ed ring, which criu-rs cannot restore yet"),
        });
    }
    let proto = e.protocol as u16;
    let fd = new_raw_socket(
        libc::AF_PACKET,
        e.r#type as i32,
        i32::from(proto.to_be()),
        &e.opts,
        &what,
        " (needs CAP_NET_RAW)",
    )?;
    let set = |opt: i32, name: &str, v: u32| {
        sock::set_int(fd.as_fd(), libc::SOL_PACKET, opt, v as i32).map_err(|errno| {
            Error::Mismatch {
                what: format!("setsockopt {name} = {v} on {what}: {errno}"),
            }
        })
    };
    // The version and reserve can only be set before a ring exists; the
    // defaults are left alone.
    if e.version != 0 {
        set(libc::PACKET_VERSION, "PACKET_VERSION", e.version)?;
    }
    if e.reserve != 0 {
        set(libc::PACKET_RESERVE, "PACKET_RESERVE", e.reserve)?;
    }
    for (on, opt, name) in [
        (e.aux_data, libc::PACKET_AUXDATA, "PACKET_AUXDATA"),
        (e.orig_dev, libc::PACKET_ORIGDEV, "PACKET_ORIGDEV"),
        (e.vnet_hdr, libc::PACKET_VNET_HDR, "PACKET_VNET_HDR"),
        (e.loss, libc::PACKET_LOSS, "PACKET_LOSS"),
    ] {
        if on {
            set(opt, name, 1)?;
        }
    }
    if e.timestamp != 0 {
        set(libc::PACKET_TIMESTAMP, "PACKET_TIMESTAMP", e.timestamp)?;
    }
    if e.copy_thresh != 0 {
        set(
            libc::PACKET_COPY_THRESH,
            "PACKET_COPY_THRESH",
            e.copy_thresh,
        )?;
    }
    if e.ifindex != 0 {
        sock::bind_packet(fd.as_fd(), proto, e.ifindex as i32).map_err(|errno| {
            Error::Mismatch {
                what: format!("binding {what}: {errno}"),
            }
        })?;
    }
    for m in &e.mclist {
        sock::packet_add_membership(fd.as_fd(), m.index as i32, m.r#type as u16, &m.addr).map_err(
            |errno| Error::Mismatch {
                what: format!(
                    "PACKET_ADD_MEMBERSHIP on {what} (interface {}): {errno}",
                    m.index
                ),
            },
        )?;
    }
    if let Some(f) = e.fanout.filter(|&f| f != u32::MAX) {
        set(libc::PACKET_FANOUT, "PACKET_FANOUT", f)?;
    }
    hand_over(fd, e.id, e.flags, &what, opened)
}
