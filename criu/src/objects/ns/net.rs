//! Network namespaces: their devices (the loopback and veths, whose peer
//! may be outside: see [`VethOutside`]), addresses and routes. `netns-ID.img` holds the
//! namespace, `netdev-ID.img` its devices, and as in CRIU `ifaddr-ID.img`,
//! `route-ID.img` and `route6-ID.img` hold the addresses and the main
//! table's routes in iproute2's `ip … save` format (a magic number, then
//! the rtnetlink messages of a dump), which criu reads and writes itself
//! over rtnetlink. Other kinds of devices are refused at dump, naming them.
//! Not kept yet: the namespace's sysctls and policy routing rules.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use super::{in_ns, Kind, Result};
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::sys::{netlink, Errno};

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
    /// The RTM_NEWADDR messages of `ifaddr-ID.img` (`ip addr save`'s
    /// format).
    pub addrs: Vec<Vec<u8>>,
    /// The RTM_NEWROUTE messages of the main table, from `route-ID.img`
    /// and `route6-ID.img` (`ip route save`'s format).
    pub routes4: Vec<Vec<u8>>,
    pub routes6: Vec<Vec<u8>>,
    /// The namespace's id in the images (the `peer_nsid` of veths whose
    /// both ends are inside).
    pub id: u32,
    /// Where the outside ends of veths whose peer was in another
    /// namespace go (`--external veth[…]`, `--veth-pair`, RPC `veths`).
    pub veths: Vec<VethOutside>,
}

/// `--external veth[IN]:OUT[@BRIDGE]` (or `--veth-pair IN=OUT[@BRIDGE]`):
/// the veth called IN in the restored namespace gets its peer OUT in
/// criu's network namespace, enslaved to BRIDGE when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethOutside {
    pub inside: String,
    pub outside: String,
    pub bridge: Option<String>,
}

impl VethOutside {
    fn new(inside: &str, out: &str) -> std::result::Result<VethOutside, String> {
        let (outside, bridge) = match out.split_once('@') {
            Some((o, b)) => (o, Some(b.to_string())),
            None => (out, None),
        };
        let ok = |n: &str| !n.is_empty() && n.len() < libc::IFNAMSIZ && !n.contains(['/', ' ']);
        if !ok(inside) || !ok(outside) || bridge.as_deref().is_some_and(|b| !ok(b)) {
            return Err(format!("bad device names in veth pair {inside:?}/{out:?}"));
        }
        Ok(VethOutside {
            inside: inside.to_string(),
            outside: outside.to_string(),
            bridge,
        })
    }

    /// An `--external` value: None when it is not about a veth.
    pub fn from_external(s: &str) -> Option<std::result::Result<VethOutside, String>> {
        let rest = s.strip_prefix("veth[")?;
        Some(match rest.split_once("]:") {
            Some((inside, out)) => VethOutside::new(inside, out),
            None => Err(format!("{s:?}: expected veth[IFNAME]:OUTNAME[@BRIDGE]")),
        })
    }

    /// A `--veth-pair` value, `IN=OUT[@BRIDGE]`.
    pub fn from_pair(s: &str) -> std::result::Result<VethOutside, String> {
        match s.split_once('=') {
            Some((inside, out)) => VethOutside::new(inside, out),
            None => Err(format!("{s:?}: expected IN=OUT[@BRIDGE]")),
        }
    }
}

fn ns_file(id: u32) -> String {
    format!("netns-{id}.img")
}

fn dev_file(id: u32) -> String {
    format!("netdev-{id}.img")
}

fn addr_file(id: u32) -> String {
    format!("ifaddr-{id}.img")
}

fn route_file(id: u32, v6: bool) -> String {
    format!("route{}-{id}.img", if v6 { "6" } else { "" })
}

/// The first four bytes of `ip addr save`'s output (iproute2's format, the
/// one CRIU keeps in ifaddr images).
const ADDR_DUMP_MAGIC: u32 = 0x4736_1222;
/// The same for `ip route save` (route and route6 images).
const ROUTE_DUMP_MAGIC: u32 = 0x4531_1224;

// rtnetlink facts (linux/if_link.h, linux/rtnetlink.h, linux/veth.h)
const IFINFOMSG_LEN: usize = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_NET_NS_FD: u16 = 28;
const ARPHRD_LOOPBACK: u16 = 772;
const RT_TABLE_MAIN: u8 = 254;
const RTA_TABLE: u16 = 15;
const RTM_F_CLONED: u32 = 0x200;
/// The interface flags a link's owner can change (the others are the
/// kernel's: IFF_RUNNING, IFF_LOWER_UP, …).
const IFF_SETTABLE: u32 = (libc::IFF_UP
    | libc::IFF_DEBUG
    | libc::IFF_NOARP
    | libc::IFF_PROMISC
    | libc::IFF_ALLMULTI
    | libc::IFF_MULTICAST
    | libc::IFF_DYNAMIC) as u32;

/// The per-device ipv4 settings CRIU keeps, in the order of its images
/// (`conf4`, `def_conf4`, `all_conf4` are lists in this order).
pub const DEVCONFS4: &[&str] = &[
    "accept_local",
    "accept_redirects",
    "accept_source_route",
    "arp_accept",
    "arp_announce",
    "arp_filter",
    "arp_ignore",
    "arp_notify",
    "bootp_relay",
    "disable_policy",
    "disable_xfrm",
    "force_igmp_version",
    "forwarding",
    "igmpv2_unsolicited_report_interval",
    "igmpv3_unsolicited_report_interval",
    "log_martians",
    "medium_id",
    "promote_secondaries",
    "proxy_arp",
    "proxy_arp_pvlan",
    "route_localnet",
    "rp_filter",
    "secure_redirects",
    "send_redirects",
    "shared_media",
    "src_valid_mark",
    "tag",
    "ignore_routes_with_linkdown",
    "drop_gratuitous_arp",
    "drop_unicast_in_l2_multicast",
];

/// The same for ipv6 (`conf6`, `def_conf6`, `all_conf6`).
pub const DEVCONFS6: &[&str] = &[
    "accept_dad",
    "accept_ra",
    "accept_ra_defrtr",
    "accept_ra_from_local",
    "accept_ra_min_hop_limit",
    "accept_ra_mtu",
    "accept_ra_pinfo",
    "accept_ra_rt_info_max_plen",
    "accept_ra_rtr_pref",
    "accept_redirects",
    "accept_source_route",
    "autoconf",
    "dad_transmits",
    "disable_ipv6",
    "drop_unicast_in_l2_multicast",
    "drop_unsolicited_na",
    "force_mld_version",
    "force_tllao",
    "forwarding",
    "hop_limit",
    "ignore_routes_with_linkdown",
    "keep_addr_on_down",
    "max_addresses",
    "max_desync_factor",
    "mldv1_unsolicited_report_interval",
    "mldv2_unsolicited_report_interval",
    "mtu",
    "ndisc_notify",
    "optimistic_dad",
    "proxy_ndp",
    "regen_max_retry",
    "router_probe_interval",
    "router_solicitation_delay",
    "router_solicitation_interval",
    "router_solicitations",
    "stable_secret",
    "suppress_frag_ndisc",
    "temp_prefered_lft",
    "temp_valid_lft",
    "use_oif_addrs_only",
    "use_optimistic",
    "use_tempaddr",
];

/// `net.unix.*` (`unix_conf`).
pub const UNIX_CONF: &[&str] = &["max_dgram_qlen"];
/// `net.ipv4.*` outside `conf` (`ipv4_sysctl`).
pub const IPV4_SYSCTLS: &[&str] = &["ping_group_range"];

/// Which sysctls hold text rather than one integer.
fn is_text(name: &str) -> bool {
    matches!(name, "stable_secret" | "ping_group_range")
}

/// A group of sysctls: the directory under /proc/sys/net and the names.
#[derive(Debug, Clone, Copy)]
struct Group<'a> {
    dir: &'a str,
    names: &'a [&'a str],
}

impl Group<'_> {
    fn path(&self, name: &str) -> String {
        format!("/proc/sys/net/{}/{name}", self.dir)
    }
}

fn conf4(target: &str) -> String {
    format!("ipv4/conf/{target}")
}

fn conf6(target: &str) -> String {
    format!("ipv6/conf/{target}")
}

/// The value of a sysctl without its trailing newline; None when it is
/// not there or cannot be read (an unset `stable_secret` reads EIO).
fn read_sysctl(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(s.strip_suffix('\n').unwrap_or(&s).to_string())
}

/// The image entry of a value read as `name` (absent: the entry has its
/// type and no value, as upstream marks a sysctl this kernel lacks).
fn sysctl_entry(name: &str, value: Option<String>) -> pb::SysctlEntry {
    if is_text(name) {
        pb::SysctlEntry {
            r#type: pb::SysctlType::CtlStr as i32,
            iarg: None,
            sarg: value,
        }
    } else {
        pb::SysctlEntry {
            r#type: pb::SysctlType::Ctl32 as i32,
            iarg: value.and_then(|v| v.trim().parse().ok()),
            sarg: None,
        }
    }
}

/// The text to write for an entry; None when the image holds no value.
fn sysctl_value(e: &pb::SysctlEntry) -> Option<String> {
    if e.r#type == pb::SysctlType::CtlStr as i32 {
        e.sarg.clone()
    } else {
        e.iarg.map(|i| i.to_string())
    }
}

/// Reads every sysctl of `g` (in the calling thread's network namespace).
fn read_group(g: Group<'_>) -> Vec<pb::SysctlEntry> {
    g.names
        .iter()
        .map(|n| sysctl_entry(n, read_sysctl(&g.path(n))))
        .collect()
}

/// Writes the values of `entries` (positional, as `g.names`) that differ
/// from what the namespace has; `accept_redirects` goes last, as it must
/// follow `forwarding`.
fn write_group(pid: i32, g: Group<'_>, entries: &[pb::SysctlEntry]) -> Result<()> {
    if entries.len() > g.names.len() {
        tracing::warn!(
            "net/{}: the image has {} sysctls, {} known; the others are left alone",
            g.dir,
            entries.len(),
            g.names.len()
        );
    }
    let mut order: Vec<usize> = (0..entries.len().min(g.names.len())).collect();
    order.sort_by_key(|&i| g.names[i] == "accept_redirects");
    for i in order {
        let name = g.names[i];
        let Some(want) = sysctl_value(&entries[i]) else {
            continue;
        };
        let path = g.path(name);
        let Some(have) = read_sysctl(&path) else {
            return Err(Error::Unsupported {
                pid,
                what: format!("its network namespace: sysctl {path} is in the images but not here"),
            });
        };
        // Integers compare as numbers (whitespace aside); text as it is,
        // tabs and spaces alike (ping_group_range reads "1\t0").
        let same = if is_text(name) {
            have.split_whitespace().eq(want.split_whitespace())
        } else {
            have.trim().parse::<i64>().ok() == want.trim().parse::<i64>().ok()
        };
        if same {
            continue;
        }
        std::fs::write(&path, &want).map_err(|source| Error::Io {
            pid,
            what: format!("writing {want:?} to {path}"),
            source,
        })?;
    }
    Ok(())
}

/// The namespace-wide sysctls, into `ns`.
fn dump_sysctls(ns: &mut pb::NetnsEntry) {
    ns.all_conf4 = read_group(Group {
        dir: &conf4("all"),
        names: DEVCONFS4,
    });
    ns.def_conf4 = read_group(Group {
        dir: &conf4("default"),
        names: DEVCONFS4,
    });
    ns.all_conf6 = read_group(Group {
        dir: &conf6("all"),
        names: DEVCONFS6,
    });
    ns.def_conf6 = read_group(Group {
        dir: &conf6("default"),
        names: DEVCONFS6,
    });
    ns.unix_conf = read_group(Group {
        dir: "unix",
        names: UNIX_CONF,
    });
    ns.ipv4_sysctl = read_group(Group {
        dir: "ipv4",
        names: IPV4_SYSCTLS,
    });
}

/// A device's conf4/conf6 (ipv6 ones only when the namespace has ipv6).
fn dump_dev_sysctls(d: &mut pb::NetDeviceEntry) {
    d.conf4 = read_group(Group {
        dir: &conf4(&d.name),
        names: DEVCONFS4,
    });
    if Path::new(&format!("/proc/sys/net/{}", conf6(&d.name))).exists() {
        d.conf6 = read_group(Group {
            dir: &conf6(&d.name),
            names: DEVCONFS6,
        });
    }
}

/// `all` before `default` (a write to `all` may change `default` and
/// every device), then each device.
fn restore_conf_sysctls(pid: i32, i: &Images) -> Result<()> {
    let n = &i.ns;
    for (dir, names, entries) in [
        (conf4("all"), DEVCONFS4, &n.all_conf4),
        (conf4("default"), DEVCONFS4, &n.def_conf4),
        (conf6("all"), DEVCONFS6, &n.all_conf6),
        (conf6("default"), DEVCONFS6, &n.def_conf6),
    ] {
        write_group(pid, Group { dir: &dir, names }, entries)?;
    }
    for d in &i.devices {
        write_group(
            pid,
            Group {
                dir: &conf4(&d.name),
                names: DEVCONFS4,
            },
            &d.conf4,
        )?;
        if !d.conf6.is_empty() {
            write_group(
                pid,
                Group {
                    dir: &conf6(&d.name),
                    names: DEVCONFS6,
                },
                &d.conf6,
            )?;
        }
    }
    Ok(())
}

fn restore_other_sysctls(pid: i32, n: &pb::NetnsEntry) -> Result<()> {
    write_group(
        pid,
        Group {
            dir: "unix",
            names: UNIX_CONF,
        },
        &n.unix_conf,
    )?;
    write_group(
        pid,
        Group {
            dir: "ipv4",
            names: IPV4_SYSCTLS,
        },
        &n.ipv4_sysctl,
    )
}

/// One link of an RTM_GETLINK dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub arphrd: u16,
    pub flags: u32,
    pub name: String,
    pub mtu: u32,
    pub address: Option<Vec<u8>>,
    /// IFLA_INFO_KIND: "veth", "dummy", … (none for the loopback).
    pub kind: Option<String>,
    /// IFLA_LINK: the peer of a veth.
    pub link: Option<u32>,
    /// The peer lives in another network namespace.
    pub link_elsewhere: bool,
    pub master: Option<u32>,
}

/// Parses the payload of an RTM_NEWLINK message.
pub fn parse_link(p: &[u8]) -> Option<Link> {
    let fixed = p.get(..IFINFOMSG_LEN)?;
    let u32_at = |o: usize| Some(u32::from_ne_bytes(fixed.get(o..o + 4)?.try_into().ok()?));
    let a = netlink::attrs(p.get(IFINFOMSG_LEN..)?);
    let info = netlink::attr(&a, IFLA_LINKINFO).map(netlink::attrs);
    Some(Link {
        index: u32_at(4)?,
        arphrd: u16::from_ne_bytes(fixed.get(2..4)?.try_into().ok()?),
        flags: u32_at(8)?,
        name: netlink::attr_str(netlink::attr(&a, IFLA_IFNAME)?),
        mtu: netlink::attr(&a, IFLA_MTU)
            .and_then(netlink::attr_u32)
            .unwrap_or(0),
        address: netlink::attr(&a, IFLA_ADDRESS).map(<[u8]>::to_vec),
        kind: info
            .as_deref()
            .and_then(|i| netlink::attr(i, IFLA_INFO_KIND))
            .map(netlink::attr_str),
        link: netlink::attr(&a, IFLA_LINK).and_then(netlink::attr_u32),
        link_elsewhere: netlink::attr(&a, IFLA_LINK_NETNSID).is_some(),
        master: netlink::attr(&a, IFLA_MASTER).and_then(netlink::attr_u32),
    })
}

/// The image entry of `l`, or why it cannot be dumped.
/// A veth whose peer is in another namespace has no `peer_nsid`, as in
/// upstream's images; one with both ends inside has the namespace's `id`.
fn device_entry(l: &Link, id: u32) -> std::result::Result<pb::NetDeviceEntry, String> {
    if l.master.is_some() {
        return Err(format!(
            "device {:?} is enslaved to another device (bridges and bonds are not supported)",
            l.name
        ));
    }
    let (ty, peer, peer_nsid) = if l.arphrd == ARPHRD_LOOPBACK {
        (pb::NdType::Loopback, None, None)
    } else if l.kind.as_deref() == Some("veth") {
        let nsid = (!l.link_elsewhere).then_some(id);
        (pb::NdType::Veth, l.link, nsid)
    } else {
        return Err(format!(
            "device {:?} is of kind {}; loopback and veth pairs are supported",
            l.name,
            l.kind.as_deref().unwrap_or("(none)")
        ));
    };
    Ok(pb::NetDeviceEntry {
        r#type: ty as i32,
        ifindex: l.index,
        mtu: l.mtu,
        flags: l.flags,
        name: l.name.clone(),
        address: l.address.clone().filter(|_| ty != pb::NdType::Loopback),
        peer_ifindex: peer,
        peer_nsid,
        ..Default::default()
    })
}

/// `magic` then each message, as iproute2's `save` commands write them.
fn ip_save(magic: u32, msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = magic.to_ne_bytes().to_vec();
    for m in msgs {
        out.extend_from_slice(m);
        out.resize(netlink::align4(out.len()), 0);
    }
    out
}

/// The messages of an `ip … save` image, after checking its magic; every
/// byte must belong to a message.
fn ip_saved(file: &Path, magic: u32, data: &[u8]) -> image::Result<Vec<Vec<u8>>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.get(..4) != Some(&magic.to_ne_bytes()[..]) {
        return Err(image::Error::Format {
            file: file.to_path_buf(),
            offset: 0,
            what: format!("not an iproute2 save file (magic {:02x?})", data.get(..4)),
        });
    }
    let msgs = netlink::messages(&data[4..]);
    let used: usize = msgs.iter().map(|m| netlink::align4(m.raw.len())).sum();
    if used < data.len() - 4 {
        return Err(image::Error::Format {
            file: file.to_path_buf(),
            offset: 4 + used as u64,
            what: "a truncated or garbled netlink message".into(),
        });
    }
    Ok(msgs.into_iter().map(|m| m.raw.to_vec()).collect())
}

/// Is this RTM_NEWROUTE message a route of the main table that its owner
/// made (not a cached clone)? Those are what `ip route save` keeps.
fn main_table_route(raw: &[u8]) -> bool {
    let Some(m) = netlink::messages(raw).into_iter().next() else {
        return false;
    };
    let Some(fixed) = m.payload.get(..12) else {
        return false;
    };
    let flags = u32::from_ne_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let a = netlink::attrs(&m.payload[12..]);
    let table = netlink::attr(&a, RTA_TABLE)
        .and_then(netlink::attr_u32)
        .unwrap_or(u32::from(fixed[4]));
    m.ty == libc::RTM_NEWROUTE && table == u32::from(RT_TABLE_MAIN) && flags & RTM_F_CLONED == 0
}

fn nl_err(pid: i32, what: String) -> impl FnOnce(Errno) -> Error {
    move |errno| Error::Sys { pid, what, errno }
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let (ns, devices, addrs, routes4, routes6) = in_ns(pid, &[Kind::Net], || {
        let mut rt = netlink::Route::open().map_err(nl_err(pid, "opening rtnetlink".into()))?;
        let links = rt
            .dump(libc::RTM_GETLINK, &[0u8; IFINFOMSG_LEN])
            .map_err(nl_err(
                pid,
                "listing the links of its network namespace".into(),
            ))?;
        let mut devices = Vec::new();
        for raw in &links {
            for m in netlink::messages(raw) {
                let Some(l) = parse_link(m.payload) else {
                    continue;
                };
                devices.push(device_entry(&l, id).map_err(|what| Error::Unsupported {
                    pid,
                    what: format!("its network namespace: {what}"),
                })?);
            }
        }
        // struct ifaddrmsg / rtmsg with only the family set
        let addrs = rt
            .dump(
                libc::RTM_GETADDR,
                &[libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0],
            )
            .map_err(nl_err(
                pid,
                "listing the addresses of its network namespace".into(),
            ))?;
        let mut routes = |family: i32| -> Result<Vec<Vec<u8>>> {
            let mut req = [0u8; 12];
            req[0] = family as u8;
            Ok(rt
                .dump(libc::RTM_GETROUTE, &req)
                .map_err(nl_err(
                    pid,
                    "listing the routes of its network namespace".into(),
                ))?
                .into_iter()
                .filter(|r| main_table_route(r))
                .collect())
        };
        let r4 = routes(libc::AF_INET)?;
        let r6 = routes(libc::AF_INET6)?;
        for d in &mut devices {
            dump_dev_sysctls(d);
        }
        let mut ns = pb::NetnsEntry::default();
        dump_sysctls(&mut ns);
        Ok((ns, devices, addrs, r4, r6))
    })?;
    image::write_image(dir, &ns_file(id), magic::NETNS, [&ns])?;
    image::write_image(dir, &dev_file(id), magic::NETDEV, &devices)?;
    let raw = |name: String, data: Vec<u8>| {
        let file = dir.join(name);
        std::fs::write(&file, data).map_err(|source| image::Error::Io {
            file,
            op: "write",
            source,
        })
    };
    raw(addr_file(id), ip_save(ADDR_DUMP_MAGIC, &addrs))?;
    raw(route_file(id, false), ip_save(ROUTE_DUMP_MAGIC, &routes4))?;
    raw(route_file(id, true), ip_save(ROUTE_DUMP_MAGIC, &routes6))?;
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
        let ty = d.r#type;
        if ty != pb::NdType::Loopback as i32 && ty != pb::NdType::Veth as i32 {
            return Err(Error::Unsupported {
                pid: 0,
                what: format!(
                    "{}: device {:?} is of type {ty}; loopback and veth pairs are restored",
                    dev_file(id),
                    d.name
                ),
            });
        }
    }
    // Upstream writes these with iproute2; a missing one means nothing.
    let raw = |name: String, magic: u32| -> Result<Vec<Vec<u8>>> {
        let file = dir.join(name);
        match std::fs::read(&file) {
            Ok(d) => Ok(ip_saved(&file, magic, &d)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(image::Error::Io {
                file,
                op: "read",
                source,
            }
            .into()),
        }
    };
    Ok(Some(Images {
        ns,
        devices,
        addrs: raw(addr_file(id), ADDR_DUMP_MAGIC)?,
        routes4: raw(route_file(id, false), ROUTE_DUMP_MAGIC)?,
        routes6: raw(route_file(id, true), ROUTE_DUMP_MAGIC)?,
        id,
        veths: Vec::new(),
    }))
}

/// An `ifinfomsg` for link `index` setting `flags`.
fn ifinfo(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut m = [0u8; IFINFOMSG_LEN];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// Remakes the devices, addresses and routes of the new network namespace
/// of `pid`: veth pairs with their names and indexes, then each device's
/// MTU, hardware address and flags, then addresses, then routes (which need
/// the devices up and the addresses there).
pub fn restore(pid: i32, i: &Images) -> Result<()> {
    // criu's own namespace, where the outside ends of veths go
    let outer = super::open_ns(std::process::id() as i32, Kind::Net)?;
    in_ns(pid, &[Kind::Net], || {
        let mut rt = netlink::Route::open().map_err(nl_err(pid, "opening rtnetlink".into()))?;
        let by_index: std::collections::HashMap<u32, &pb::NetDeviceEntry> =
            i.devices.iter().map(|d| (d.ifindex, d)).collect();
        let mut made = std::collections::HashSet::new();
        for d in &i.devices {
            if d.r#type != pb::NdType::Veth as i32 || made.contains(&d.ifindex) {
                continue;
            }
            if let Some(out) = i.veths.iter().find(|v| v.inside == d.name) {
                make_veth_outside(&mut rt, d, out, outer.as_fd()).map_err(nl_err(
                    pid,
                    format!(
                        "making veth {:?} with its peer {:?} in criu's network namespace",
                        d.name, out.outside
                    ),
                ))?;
                made.insert(d.ifindex);
                continue;
            }
            let peer = inside_peer(d, &by_index, i.id).ok_or_else(|| Error::Unsupported {
                pid,
                what: format!(
                    "veth {name:?} had its peer in another network namespace: say where it goes \
                     with --external veth[{name}]:OUTNAME[@BRIDGE] (or --veth-pair {name}=OUTNAME)",
                    name = d.name
                ),
            })?;
            let mut b = netlink::Builder::new(&ifinfo(d.ifindex, 0, 0));
            b.attr_str(IFLA_IFNAME, &d.name)
                .nest(IFLA_LINKINFO, &[], |li| {
                    li.attr_str(IFLA_INFO_KIND, "veth")
                        .nest(IFLA_INFO_DATA, &[], |data| {
                            data.nest(VETH_INFO_PEER, &ifinfo(peer.ifindex, 0, 0), |p| {
                                p.attr_str(IFLA_IFNAME, &peer.name);
                            });
                        });
                });
            rt.request(
                libc::RTM_NEWLINK,
                netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
                b.bytes(),
            )
            .map_err(nl_err(
                pid,
                format!("making veth pair {:?}/{:?}", d.name, peer.name),
            ))?;
            made.insert(d.ifindex);
            made.insert(peer.ifindex);
        }
        for d in &i.devices {
            let mut b =
                netlink::Builder::new(&ifinfo(d.ifindex, d.flags & IFF_SETTABLE, IFF_SETTABLE));
            if d.mtu != 0 {
                b.attr(IFLA_MTU, &d.mtu.to_ne_bytes());
            }
            if let Some(a) = &d.address {
                b.attr(IFLA_ADDRESS, a);
            }
            rt.request(libc::RTM_NEWLINK, 0, b.bytes())
                .map_err(nl_err(pid, format!("setting up device {:?}", d.name)))?;
        }
        restore_conf_sysctls(pid, i)?;
        // Addresses and routes the kernel made by itself meanwhile (the
        // loopback's, link-local ones, the prefix routes of addresses) are
        // there already.
        let create = netlink::NLM_F_CREATE | netlink::NLM_F_EXCL;
        for a in &i.addrs {
            match rt.replay(a, create) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(nl_err(pid, "adding an address".into())(e)),
            }
        }
        for r in i.routes4.iter().chain(&i.routes6) {
            match rt.replay(r, create) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(nl_err(pid, "adding a route".into())(e)),
            }
        }
        restore_other_sysctls(pid, &i.ns)
    })?;
    let wanted: Vec<&VethOutside> = i.veths.iter().filter(|v| v.bridge.is_some()).collect();
    if !wanted.is_empty() {
        let mut rt = netlink::Route::open().map_err(nl_err(pid, "opening rtnetlink".into()))?;
        for v in wanted {
            enslave_outside(&mut rt, v).map_err(nl_err(
                pid,
                format!(
                    "putting {:?} into bridge {:?}",
                    v.outside,
                    v.bridge.as_deref().unwrap_or_default()
                ),
            ))?;
        }
    }
    Ok(())
}

/// The other end of veth `d` when it is among the dumped devices: its
/// `peer_nsid` is this namespace's (images of criu-rs before it wrote
/// `peer_nsid`: both ends point at each other).
fn inside_peer<'a>(
    d: &pb::NetDeviceEntry,
    by_index: &std::collections::HashMap<u32, &'a pb::NetDeviceEntry>,
    id: u32,
) -> Option<&'a pb::NetDeviceEntry> {
    let p = *by_index.get(&d.peer_ifindex?)?;
    let inside = match d.peer_nsid {
        Some(n) => n == id,
        None => p.peer_nsid.is_none() && p.peer_ifindex == Some(d.ifindex),
    };
    (inside && p.r#type == pb::NdType::Veth as i32).then_some(p)
}

/// Makes veth `d` in the calling thread's namespace with its peer called
/// `out.outside` in the namespace `outer` (its index is the kernel's).
fn make_veth_outside(
    rt: &mut netlink::Route,
    d: &pb::NetDeviceEntry,
    out: &VethOutside,
    outer: std::os::fd::BorrowedFd<'_>,
) -> crate::sys::SysResult<()> {
    let fd = outer.as_raw_fd() as u32;
    let mut b = netlink::Builder::new(&ifinfo(d.ifindex, 0, 0));
    b.attr_str(IFLA_IFNAME, &d.name)
        .nest(IFLA_LINKINFO, &[], |li| {
            li.attr_str(IFLA_INFO_KIND, "veth")
                .nest(IFLA_INFO_DATA, &[], |data| {
                    data.nest(VETH_INFO_PEER, &ifinfo(0, 0, 0), |p| {
                        p.attr_str(IFLA_IFNAME, &out.outside)
                            .attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
                    });
                });
        });
    rt.request(
        libc::RTM_NEWLINK,
        netlink::NLM_F_CREATE | netlink::NLM_F_EXCL,
        b.bytes(),
    )
}

/// The index of link `name` in the calling thread's namespace.
fn link_index(rt: &mut netlink::Route, name: &str) -> crate::sys::SysResult<u32> {
    let links = rt.dump(libc::RTM_GETLINK, &[0u8; IFINFOMSG_LEN])?;
    links
        .iter()
        .flat_map(|raw| netlink::messages(raw))
        .filter_map(|m| parse_link(m.payload))
        .find(|l| l.name == name)
        .map(|l| l.index)
        .ok_or(Errno::ENODEV)
}

/// Puts the outside end `out.outside` into its bridge and brings it up
/// (in the calling thread's namespace).
fn enslave_outside(rt: &mut netlink::Route, out: &VethOutside) -> crate::sys::SysResult<()> {
    let Some(bridge) = &out.bridge else {
        return Ok(());
    };
    let br = link_index(rt, bridge)?;
    let dev = link_index(rt, &out.outside)?;
    let up = libc::IFF_UP as u32;
    let mut b = netlink::Builder::new(&ifinfo(dev, up, up));
    b.attr(IFLA_MASTER, &br.to_ne_bytes());
    rt.request(libc::RTM_NEWLINK, 0, b.bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_msg(index: u32, name: &str, kind: Option<&str>, peer: Option<u32>) -> Vec<u8> {
        let mut b = netlink::Builder::new(&ifinfo(index, libc::IFF_UP as u32, 0));
        b.attr_str(IFLA_IFNAME, name)
            .attr(IFLA_MTU, &1500u32.to_ne_bytes());
        if let Some(k) = kind {
            b.nest(IFLA_LINKINFO, &[], |li| {
                li.attr_str(IFLA_INFO_KIND, k);
            });
        }
        if let Some(p) = peer {
            b.attr(IFLA_LINK, &p.to_ne_bytes());
        }
        b.bytes().to_vec()
    }

    #[test]
    fn veth_with_its_peer_inside_is_dumped() {
        let l = parse_link(&link_msg(5, "v0", Some("veth"), Some(6))).unwrap();
        assert_eq!(l.name, "v0");
        assert_eq!(l.mtu, 1500);
        let e = device_entry(&l, 4).unwrap();
        assert_eq!(e.r#type, pb::NdType::Veth as i32);
        assert_eq!(e.peer_ifindex, Some(6));
        assert_eq!(e.peer_nsid, Some(4));
        assert_eq!(e.ifindex, 5);
    }

    #[test]
    fn other_kinds_are_refused_by_name() {
        let l = parse_link(&link_msg(3, "dummy0", Some("dummy"), None)).unwrap();
        let why = device_entry(&l, 4).unwrap_err();
        assert!(why.contains("dummy0") && why.contains("dummy"), "{why}");
    }

    #[test]
    fn veth_with_its_peer_outside_has_no_peer_nsid() {
        let mut l = parse_link(&link_msg(3, "eth0", Some("veth"), Some(9))).unwrap();
        l.link_elsewhere = true;
        let e = device_entry(&l, 4).unwrap();
        assert_eq!(e.r#type, pb::NdType::Veth as i32);
        assert_eq!((e.peer_ifindex, e.peer_nsid), (Some(9), None));
    }

    #[test]
    fn ip_save_round_trip_and_garbage() {
        let msgs = vec![vec![
            20u8, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9,
        ]];
        let f = Path::new("ifaddr-1.img");
        let data = ip_save(ADDR_DUMP_MAGIC, &msgs);
        assert_eq!(ip_saved(f, ADDR_DUMP_MAGIC, &data).unwrap(), msgs);
        assert!(ip_saved(f, ROUTE_DUMP_MAGIC, &data).is_err());
        let mut cut = data.clone();
        cut.truncate(data.len() - 3);
        let e = ip_saved(f, ADDR_DUMP_MAGIC, &cut).unwrap_err().to_string();
        assert!(e.contains("offset 4"), "{e}");
        assert!(ip_saved(f, ADDR_DUMP_MAGIC, &[]).unwrap().is_empty());
    }

    #[test]
    fn veth_outside_options() {
        let v = VethOutside::from_external("veth[eth0]:vh0@br0")
            .unwrap()
            .unwrap();
        assert_eq!(
            v,
            VethOutside {
                inside: "eth0".into(),
                outside: "vh0".into(),
                bridge: Some("br0".into())
            }
        );
        assert_eq!(VethOutside::from_pair("eth0=vh0").unwrap().bridge, None);
        assert!(VethOutside::from_external("unix[1]").is_none());
        assert!(VethOutside::from_external("veth[eth0]").unwrap().is_err());
        assert!(VethOutside::from_pair("eth0").is_err());
        assert!(VethOutside::from_pair("eth0=").is_err());
        assert!(VethOutside::from_pair("eth0=a-name-far-too-long").is_err());
    }

    fn veth(index: u32, peer: u32, nsid: Option<u32>) -> pb::NetDeviceEntry {
        pb::NetDeviceEntry {
            r#type: pb::NdType::Veth as i32,
            ifindex: index,
            name: format!("v{index}"),
            peer_ifindex: Some(peer),
            peer_nsid: nsid,
            ..Default::default()
        }
    }

    #[test]
    fn peers_inside_and_outside() {
        let (a, b, ext, old_a, old_b) = (
            veth(5, 6, Some(4)),
            veth(6, 5, Some(4)),
            // its peer outside had index 5 there: not the inside v5
            veth(2, 5, None),
            veth(7, 8, None),
            veth(8, 7, None),
        );
        let all = [&a, &b, &ext, &old_a, &old_b];
        let by: std::collections::HashMap<u32, &pb::NetDeviceEntry> =
            all.iter().map(|d| (d.ifindex, *d)).collect();
        assert_eq!(inside_peer(&a, &by, 4).map(|p| p.ifindex), Some(6));
        assert!(inside_peer(&ext, &by, 4).is_none());
        assert_eq!(inside_peer(&old_a, &by, 4).map(|p| p.ifindex), Some(8));
        assert!(inside_peer(&a, &by, 9).is_none());
    }

    /// Makes a veth with its peer in another namespace and puts that end
    /// into a bridge, in two namespaces of a thread of its own (never the
    /// host's); skipped without CAP_SYS_ADMIN.
    #[test]
    fn veth_outside_is_made_and_enslaved() {
        use nix::sched::{setns, unshare, CloneFlags};
        std::thread::spawn(|| {
            if unshare(CloneFlags::CLONE_NEWNET).is_err() {
                eprintln!("skipped: cannot make a network namespace");
                return;
            }
            let outer = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            let mut rt = netlink::Route::open().unwrap();
            let mut b = netlink::Builder::new(&ifinfo(0, 0, 0));
            b.attr_str(IFLA_IFNAME, "zbr0")
                .nest(IFLA_LINKINFO, &[], |li| {
                    li.attr_str(IFLA_INFO_KIND, "bridge");
                });
            rt.request(libc::RTM_NEWLINK, netlink::NLM_F_CREATE, b.bytes())
                .unwrap();
            unshare(CloneFlags::CLONE_NEWNET).unwrap();
            let mut inner = netlink::Route::open().unwrap();
            let d = pb::NetDeviceEntry {
                r#type: pb::NdType::Veth as i32,
                ifindex: 17,
                name: "eth0".into(),
                peer_ifindex: Some(3),
                ..Default::default()
            };
            let out = VethOutside::from_external("veth[eth0]:zout0@zbr0")
                .unwrap()
                .unwrap();
            make_veth_outside(&mut inner, &d, &out, outer.as_fd()).unwrap();
            let inside = link_index(&mut inner, "eth0").unwrap();
            assert_eq!(inside, 17);
            setns(&outer, CloneFlags::CLONE_NEWNET).unwrap();
            enslave_outside(&mut rt, &out).unwrap();
            let links = rt.dump(libc::RTM_GETLINK, &[0u8; IFINFOMSG_LEN]).unwrap();
            let got: Vec<Link> = links
                .iter()
                .flat_map(|raw| netlink::messages(raw))
                .filter_map(|m| parse_link(m.payload))
                .collect();
            let br = got.iter().find(|l| l.name == "zbr0").unwrap();
            let o = got.iter().find(|l| l.name == "zout0").unwrap();
            assert_eq!(o.kind.as_deref(), Some("veth"));
            assert!(o.link_elsewhere && o.link == Some(17), "{o:?}");
            assert_eq!(o.master, Some(br.index));
            assert!(o.flags & libc::IFF_UP as u32 != 0);
        })
        .join()
        .unwrap();
    }
}
