//! The network lock of `--network-lock nftables`: while a tree is dumped
//! and until it is restored, the packets of its TCP connections are
//! dropped, so that their peers neither get an RST from a kernel that no
//! longer knows the connection nor lose data the dump already read.
//!
//! It is an nftables table (`inet criu-rs-<run id>`, named after the
//! dump's `dump_criu_run_id`, which the inventory keeps) with an input and
//! an output chain, one drop rule per connection and direction, made
//! through NFNETLINK batches (no external command). Restore deletes it
//! before the connections leave repair mode; `criu network-unlock -D DIR`
//! deletes it for a dump that will never be restored.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recv, sendto, MsgFlags, NetlinkAddr};

use crate::sys::netlink::messages;
use crate::sys::sock;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_DROP: u32 = 0;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;

/// How the connections of a dumped tree are kept from the network
/// (`--network-lock`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    /// No lock: the connections stay in repair mode, but packets their
    /// peers send meanwhile are answered with a reset.
    #[default]
    Skip,
    /// An nftables table that drops their packets.
    Nftables,
}

/// The lock of one dump: its table, in the network namespace of `net_pid`.
/// Dropped without `keep`, it deletes the table (a failed dump, or
/// `--leave-running`).
#[derive(Debug)]
pub struct Held {
    pub table: String,
    pub net_pid: i32,
    pub keep: bool,
}

impl Held {
    /// Makes the table in the network namespace of `net_pid`.
    pub fn create(table: String, net_pid: i32) -> crate::objects::Result<Held> {
        crate::objects::ns::net::in_net_of(net_pid, || {
            create(&table).map_err(|errno| crate::objects::Error::Sys {
                pid: net_pid,
                what: format!("making the nftables table {table} of the network lock (needs nf_tables and CAP_NET_ADMIN)"),
                errno,
            })
        })?;
        Ok(Held {
            table,
            net_pid,
            keep: false,
        })
    }

    /// Adds the drop rules of `c`.
    pub fn add(&self, c: &Conn) -> crate::objects::Result<()> {
        let table = &self.table;
        crate::objects::ns::net::in_net_of(self.net_pid, || {
            add(table, c).map_err(|errno| crate::objects::Error::Sys {
                pid: self.net_pid,
                what: format!("locking the connection {c:?} in nftables table {table}"),
                errno,
            })
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let table = self.table.clone();
        let r = crate::objects::ns::net::in_net_of(self.net_pid, || {
            delete(&table).map_err(|errno| crate::objects::Error::Sys {
                pid: self.net_pid,
                what: format!("deleting nftables table {table}"),
                errno,
            })
        });
        if let Err(e) = r {
            tracing::warn!("could not unlock the network: {e}");
        }
    }
}

/// One TCP connection as seen from one end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

/// The name of the lock table of the dump whose run id (the inventory's
/// `dump_criu_run_id`, as upstream names its table after it) is `run_id`.
pub fn table_name(run_id: &str) -> String {
    format!("criu-rs-{run_id}")
}

/// A netlink message builder: attributes appended, nests closed by offset.
#[derive(Default)]
struct Msg {
    b: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&[family, 0]);
        b.extend_from_slice(&res_id.to_be_bytes());
        Msg { b }
    }
    fn pad(&mut self) {
        while self.b.len() % 4 != 0 {
            self.b.push(0);
        }
    }
    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        self.b
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(data);
        self.pad();
        self
    }
    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }
    fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    fn begin(&mut self, ty: u16) -> usize {
        let at = self.b.len();
        self.b.extend_from_slice(&[0, 0]);
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }
    fn end(&mut self, at: usize) {
        let len = (self.b.len() - at) as u16;
        self.b[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
    fn done(mut self) -> Vec<u8> {
        let len = self.b.len() as u32;
        self.b[..4].copy_from_slice(&len.to_ne_bytes());
        self.b
    }
}

fn nft(ty: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | ty
}

/// One expression of a rule: its name and its data attributes.
fn expr(m: &mut Msg, name: &str, data: impl FnOnce(&mut Msg)) {
    let el = m.begin(1); // NFTA_LIST_ELEM
    m.str(1, name); // NFTA_EXPR_NAME
    let d = m.begin(2); // NFTA_EXPR_DATA
    data(m);
    m.end(d);
    m.end(el);
}

fn load_meta(m: &mut Msg, key: u32) {
    expr(m, "meta", |m| {
        m.be32(1, NFT_REG_1).be32(2, key);
    });
}

fn load_payload(m: &mut Msg, base: u32, offset: u32, len: u32) {
    expr(m, "payload", |m| {
        m.be32(1, NFT_REG_1)
            .be32(2, base)
            .be32(3, offset)
            .be32(4, len);
    });
}

fn cmp_eq(m: &mut Msg, value: &[u8]) {
    expr(m, "cmp", |m| {
        m.be32(1, NFT_REG_1).be32(2, NFT_CMP_EQ);
        let d = m.begin(3); // NFTA_CMP_DATA
        m.attr(1, value); // NFTA_DATA_VALUE
        m.end(d);
    });
}

fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// A rule of `chain` that drops the packets from `src:sport` to `dst:dport`.
fn drop_rule(table: &str, chain: &str, seq: u32, c: &Conn) -> Vec<u8> {
    let mut m = Msg::new(
        nft(NFT_MSG_NEWRULE),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
        seq,
        NFPROTO_INET,
        0,
    );
    m.str(1, table).str(2, chain);
    let list = m.begin(4); // NFTA_RULE_EXPRESSIONS
    let (proto, saddr, daddr, alen) = match c.src {
        IpAddr::V4(_) => (NFPROTO_IPV4, 12, 16, 4),
        IpAddr::V6(_) => (NFPROTO_IPV6, 8, 24, 16),
    };
    load_meta(&mut m, NFT_META_NFPROTO);
    cmp_eq(&mut m, &[proto]);
    load_meta(&mut m, NFT_META_L4PROTO);
    cmp_eq(&mut m, &[libc::IPPROTO_TCP as u8]);
    load_payload(&mut m, NFT_PAYLOAD_NETWORK_HEADER, saddr, alen);
    cmp_eq(&mut m, &ip_bytes(&c.src));
    load_payload(&mut m, NFT_PAYLOAD_NETWORK_HEADER, daddr, alen);
    cmp_eq(&mut m, &ip_bytes(&c.dst));
    load_payload(&mut m, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2);
    cmp_eq(&mut m, &c.sport.to_be_bytes());
    load_payload(&mut m, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    cmp_eq(&mut m, &c.dport.to_be_bytes());
    expr(&mut m, "immediate", |m| {
        m.be32(1, NFT_REG_VERDICT);
        let d = m.begin(2); // NFTA_IMMEDIATE_DATA
        let v = m.begin(2); // NFTA_DATA_VERDICT
        m.be32(1, NF_DROP); // NFTA_VERDICT_CODE
        m.end(v);
        m.end(d);
    });
    m.end(list);
    m.done()
}

fn table_msg(ty: u16, flags: u16, seq: u32, table: &str) -> Vec<u8> {
    let mut m = Msg::new(nft(ty), flags, seq, NFPROTO_INET, 0);
    m.str(1, table); // NFTA_TABLE_NAME
    m.done()
}

fn chain_msg(seq: u32, table: &str, chain: &str, hook: u32) -> Vec<u8> {
    let mut m = Msg::new(
        nft(NFT_MSG_NEWCHAIN),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
        seq,
        NFPROTO_INET,
        0,
    );
    m.str(1, table).str(3, chain);
    let h = m.begin(4); // NFTA_CHAIN_HOOK
    m.be32(1, hook).be32(2, 0); // hook number, priority
    m.end(h);
    m.str(7, "filter"); // NFTA_CHAIN_TYPE
    m.done()
}

/// Sends `msgs` as one nftables batch and waits for each to be acked.
fn batch(msgs: Vec<Vec<u8>>) -> Result<(), Errno> {
    let sk: OwnedFd = sock::socket_raw(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_NETFILTER)?;
    sock::set_timeval(sk.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, 5, 0)?;
    let n = msgs.len();
    let mut all = Msg::new(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        0,
        0,
        NFNL_SUBSYS_NFTABLES,
    )
    .done();
    for m in msgs {
        all.extend_from_slice(&m);
    }
    all.extend_from_slice(
        &Msg::new(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            u32::MAX,
            0,
            NFNL_SUBSYS_NFTABLES,
        )
        .done(),
    );
    sendto(
        sk.as_raw_fd(),
        &all,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut acked = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while acked < n {
        let got = recv(sk.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        for m in messages(&buf[..got]) {
            let p = m.payload;
            if m.ty == NLMSG_ERROR {
                let code = p
                    .get(0..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                if code != 0 {
                    return Err(Errno::from_raw(-code));
                }
                acked += 1;
            }
        }
    }
    Ok(())
}

/// Makes the lock table with its input and output chains.
pub fn create(table: &str) -> Result<(), Errno> {
    batch(vec![
        table_msg(
            NFT_MSG_NEWTABLE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            1,
            table,
        ),
        chain_msg(2, table, "input", NF_INET_LOCAL_IN),
        chain_msg(3, table, "output", NF_INET_LOCAL_OUT),
    ])
}

/// Drops the packets of connection `c` both ways.
pub fn add(table: &str, c: &Conn) -> Result<(), Errno> {
    let back = Conn {
        src: c.dst,
        sport: c.dport,
        dst: c.src,
        dport: c.sport,
    };
    batch(vec![
        drop_rule(table, "output", 1, c),
        drop_rule(table, "input", 2, &back),
    ])
}

/// upstream's NETWORK_LOCK_NFTABLES, in the inventory's
/// `network_lock_method`.
pub const INVENTORY_NFTABLES: u32 = 1;

/// `criu network-unlock -D DIR`: deletes, from criu's network namespace,
/// the lock table of the dump in `dir` (for a dump that will not be
/// restored). True if the table was there, false if it was gone already.
pub fn unlock_dump(dir: &std::path::Path) -> crate::objects::Result<bool> {
    use crate::image::{self, magic, pb};
    let inv: pb::InventoryEntry = image::read_one(dir, "inventory.img", magic::INVENTORY)?;
    if inv.network_lock_method != Some(INVENTORY_NFTABLES) {
        return Err(crate::objects::Error::Mismatch {
            what: format!(
                "the dump in {} did not lock the network with nftables (its inventory's network_lock_method is {:?}): there is no lock to release",
                dir.display(),
                inv.network_lock_method
            ),
        });
    }
    let run_id = inv
        .dump_criu_run_id
        .ok_or_else(|| crate::objects::Error::Mismatch {
            what: format!(
                "{}/inventory.img has no dump_criu_run_id, which names the lock table",
                dir.display()
            ),
        })?;
    let table = table_name(&run_id);
    delete(&table).map_err(|errno| crate::objects::Error::Sys {
        pid: 0,
        what: format!("deleting the nftables table {table} of the network lock"),
        errno,
    })
}

/// Deletes the lock table; true if it existed.
pub fn delete(table: &str) -> Result<bool, Errno> {
    match batch(vec![table_msg(
        NFT_MSG_DELTABLE,
        NLM_F_REQUEST | NLM_F_ACK,
        1,
        table,
    )]) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_rule_is_well_formed_netlink() {
        let c = Conn {
            src: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: 1000,
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dport: 80,
        };
        let r = drop_rule("t", "output", 7, &c);
        let m = messages(&r);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].ty, nft(NFT_MSG_NEWRULE));
        // Past the nfgenmsg: table, chain, expressions.
        let a = crate::sys::netlink::attrs(&m[0].payload[4..]);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0], (1, &b"t\0"[..]));
        assert_eq!(a[1], (2, &b"output\0"[..]));
        let exprs = crate::sys::netlink::attrs(a[2].1);
        // 2 meta + 4 payload loads, 6 compares, 1 verdict.
        assert_eq!(exprs.len(), 13);
    }

    /// Locks a loopback connection for real (needs CAP_NET_ADMIN; skipped
    /// without): data sent while locked arrives only once unlocked.
    #[test]
    fn a_locked_connection_gets_nothing_until_unlocked() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let table = table_name(&format!("test-{}", std::process::id()));
        match create(&table) {
            Err(Errno::EPERM) => {
                eprintln!("no CAP_NET_ADMIN: the network lock cannot be tried here");
                return;
            }
            r => r.unwrap(),
        }
        let conn = Conn {
            src: c.local_addr().unwrap().ip(),
            sport: c.local_addr().unwrap().port(),
            dst: c.peer_addr().unwrap().ip(),
            dport: c.peer_addr().unwrap().port(),
        };
        add(&table, &conn).unwrap();
        c.write_all(b"held").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 4];
        assert!(s.read_exact(&mut b).is_err(), "data passed the lock");
        assert!(delete(&table).unwrap());
        assert!(!delete(&table).unwrap());
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"held");
    }
}
