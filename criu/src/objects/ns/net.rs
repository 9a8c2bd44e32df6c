//! Network namespaces: for now only one with nothing but `lo` (the zdtm
//! namespaces' case). `netns-ID.img` holds the namespace, `netdev-ID.img`
//! its devices; the restore brings `lo` up again as it was. Any other
//! device is refused at dump.

use std::path::Path;

use super::{in_ns, Kind, Result};
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::sys;

/// Runs `f` in the network namespace of `pid`: on a helper thread when it
/// is not criu's, else right here.
pub fn in_net_of<T: Send>(pid: i32, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if super::inode(pid, Kind::Net)? == super::own_inode(Kind::Net)? {
        f()
    } else {
        in_ns(pid, &[Kind::Net], f)
    }
}

/// While it lives, the calling thread is in the network namespace of a
/// task (so that the sockets it makes belong there); dropping it goes back.
pub struct NetGuard {
    home: std::os::fd::OwnedFd,
}

impl NetGuard {
    /// Joins the network namespace of `pid`.
    pub fn enter(pid: i32) -> Result<NetGuard> {
        let home = super::open_ns(std::process::id() as i32, Kind::Net)?;
        let theirs = super::open_ns(pid, Kind::Net)?;
        nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
            Error::Sys {
                pid,
                what: "joining the network namespace".into(),
                errno,
            }
        })?;
        Ok(NetGuard { home })
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::setns(&self.home, nix::sched::CloneFlags::CLONE_NEWNET) {
            tracing::error!("cannot go back to criu's network namespace: {e}");
        }
    }
}

/// What the images say of a network namespace.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub ns: pb::NetnsEntry,
    pub devices: Vec<pb::NetDeviceEntry>,
}

fn ns_file(id: u32) -> String {
    format!("netns-{id}.img")
}

fn dev_file(id: u32) -> String {
    format!("netdev-{id}.img")
}

/// The names of the devices in the network namespace of `pid`, from
/// /proc/PID/net/dev.
fn interfaces(pid: i32) -> Result<Vec<String>> {
    let t = crate::objects::read_proc(pid, "net/dev")?;
    Ok(parse_dev_names(&t))
}

/// Device names of /proc/net/dev (two header lines, then `NAME: counters`).
pub fn parse_dev_names(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .collect()
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let names = interfaces(pid)?;
    let devices = in_ns(pid, &[Kind::Net], || {
        let mut v = Vec::new();
        for name in names {
            if name != "lo" {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "its network namespace has device {name:?}; only a namespace with nothing but lo can be dumped yet"
                    ),
                });
            }
            let flags = sys::netif::get_flags(&name).map_err(|errno| Error::Sys {
                pid,
                what: format!("SIOCGIFFLAGS of {name}"),
                errno,
            })?;
            let mtu = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/mtu"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(65536);
            v.push(pb::NetDeviceEntry {
                r#type: pb::NdType::Loopback as i32,
                // the loopback is always the first device of a namespace
                ifindex: 1,
                mtu,
                flags,
                name,
                ..Default::default()
            });
        }
        Ok(v)
    })?;
    image::write_image(
        dir,
        &ns_file(id),
        magic::NETNS,
        [&pb::NetnsEntry::default()],
    )?;
    image::write_image(dir, &dev_file(id), magic::NETDEV, &devices)?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Images>> {
    if id == 0 || !dir.join(ns_file(id)).exists() {
        return Ok(None);
    }
    let ns = image::read_one(dir, &ns_file(id), magic::NETNS)?;
    let devices: Vec<pb::NetDeviceEntry> = if dir.join(dev_file(id)).exists() {
        image::read_image(dir, &dev_file(id), magic::NETDEV)?
    } else {
        Vec::new()
    };
    for d in &devices {
        if d.r#type != pb::NdType::Loopback as i32 {
            return Err(Error::Unsupported {
                pid: 0,
                what: format!(
                    "{}: device {:?} is not a loopback; only lo is restored yet",
                    dev_file(id),
                    d.name
                ),
            });
        }
    }
    Ok(Some(Images { ns, devices }))
}

/// Brings the loopback of the new namespace of `pid` to its flags.
pub fn restore(pid: i32, i: &Images) -> Result<()> {
    in_ns(pid, &[Kind::Net], || {
        for d in &i.devices {
            let up = libc::IFF_UP as u32;
            let now = sys::netif::get_flags(&d.name).map_err(|errno| Error::Sys {
                pid,
                what: format!("SIOCGIFFLAGS of {}", d.name),
                errno,
            })?;
            if (now ^ d.flags) & up != 0 {
                sys::netif::set_flags(&d.name, (now & !up) | (d.flags & up)).map_err(|errno| {
                    Error::Sys {
                        pid,
                        what: format!("SIOCSIFFLAGS of {}", d.name),
                        errno,
                    }
                })?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_names() {
        let t = "Inter-|   Receive  |  Transmit\n face |bytes    packets\n    lo:       0       0\n  eth0: 1 2\n";
        assert_eq!(
            parse_dev_names(t),
            vec!["lo".to_string(), "eth0".to_string()]
        );
    }
}
