//! Sockets: what every family shares (the dump state of a whole dump, the
//! restore state, dispatch by family), with one module per family.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::SockType;

use crate::image::pb;
use crate::sys::sock;

use super::super::{Error, Result};
use super::sk_diag::{self, InetDiag, NetlinkDiag, PacketDiag, UnixDiag};
use super::sk_queue::{Queued, Queues};
use super::{inet, netlink, netlock, packet, tcp, unix};

/// Socket state gathered over a whole dump.
#[derive(Debug, Default)]
pub struct SkDump {
    unix_diag: Option<HashMap<u32, UnixDiag>>,
    netlink_diag: Option<HashMap<u32, NetlinkDiag>>,
    packet_diag: Option<HashMap<u32, PacketDiag>>,
    inet_diag: HashMap<(i32, i32), HashMap<u32, InetDiag>>,
    pub(super) queues: Queues,
    /// Unix sockets dumped: (pid, fd, inode, peer inode).
    pub(super) unix_seen: Vec<(i32, i32, u32, u32)>,
    pub(super) tcp: inet::TcpStreams,
    /// Connections put in repair mode by this dump.
    pub(super) tcp_repaired: tcp::Repaired,
    /// `--tcp-established`: dump established TCP connections in repair mode.
    pub tcp_established: bool,
    /// `--tcp-close`: established TCP connections are kept without their
    /// state (neither repaired nor locked); they come back closed.
    pub tcp_close: bool,
    /// `--ext-unix-sk`: unix sockets connected outside the tree are kept.
    pub ext_unix_sk: bool,
    /// `--network-lock`: how TCP connections are kept from the network.
    pub network_lock: netlock::Method,
    /// The dump's run id (the inventory's `dump_criu_run_id`), which names
    /// the lock table.
    pub run_id: String,
    /// The network lock, once a connection is locked.
    pub(super) lock: Option<netlock::Held>,
    /// Fds found in queued messages of the socket just dumped, as (message
    /// index in `queues`, fds): the file table dumps them as files.
    pub(super) carried: Vec<(usize, Vec<OwnedFd>)>,
    /// While fds carried in a queue are dumped (they live in criu): the
    /// task whose network namespace sock_diag looks in.
    pub(super) net_pid: Option<i32>,
}

impl SkDump {
    /// sock_diag's view of unix socket `ino` (asked once per dump; asked
    /// again if a socket is missing).
    pub(super) fn unix(&mut self, pid: i32, fd: i32, ino: u32) -> Result<&UnixDiag> {
        let stale = self
            .unix_diag
            .as_ref()
            .is_none_or(|m| !m.contains_key(&ino));
        if stale {
            // sock_diag shows the sockets of the asker's network namespace.
            let m = crate::objects::ns::net::in_net_of(self.net_pid.unwrap_or(pid), || {
                sk_diag::unix_sockets().map_err(|errno| Error::Sys {
                    pid,
                    what: format!("sock_diag of unix sockets (for fd {fd})"),
                    errno,
                })
            })?;
            self.unix_diag = Some(m);
        }
        self.unix_diag
            .as_ref()
            .and_then(|m| m.get(&ino))
            .ok_or_else(|| Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} is a unix socket (inode {ino}) that sock_diag does not show: is it in another network namespace?"
                ),
            })
    }

    /// netlink_diag's view of netlink socket `ino`.
    pub(super) fn netlink(&mut self, pid: i32, fd: i32, ino: u32) -> Result<&NetlinkDiag> {
        let net = self.net_pid.unwrap_or(pid);
        diag_of(
            &mut self.netlink_diag,
            net,
            pid,
            fd,
            ino,
            "netlink",
            sk_diag::netlink_sockets,
        )
    }

    /// packet_diag's view of packet socket `ino`.
    pub(super) fn packet(&mut self, pid: i32, fd: i32, ino: u32) -> Result<&PacketDiag> {
        let net = self.net_pid.unwrap_or(pid);
        diag_of(
            &mut self.packet_diag,
            net,
            pid,
            fd,
            ino,
            "packet",
            sk_diag::packet_sockets,
        )
    }

    /// The listening socket whose accept queue holds connection `ino`.
    pub(super) fn listener_of(&self, ino: u32) -> Option<&UnixDiag> {
        self.unix_diag
            .as_ref()?
            .values()
            .find(|d| d.icons.contains(&ino))
    }

    pub(super) fn inet(
        &mut self,
        pid: i32,
        fd: i32,
        family: i32,
        proto: i32,
        ino: u32,
    ) -> Result<&InetDiag> {
        let key = (family, proto);
        let stale = self
            .inet_diag
            .get(&key)
            .is_none_or(|m| !m.contains_key(&ino));
        if stale {
            let m = crate::objects::ns::net::in_net_of(self.net_pid.unwrap_or(pid), || {
                sk_diag::inet_sockets(family, proto).map_err(|errno| Error::Sys {
                    pid,
                    what: format!("sock_diag of inet sockets (for fd {fd})"),
                    errno,
                })
            })?;
            self.inet_diag.insert(key, m);
        }
        self.inet_diag
            .get(&key)
            .and_then(|m| m.get(&ino))
            .ok_or_else(|| Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} is an inet socket (inode {ino}) that sock_diag does not show: is it in another network namespace?"
                ),
            })
    }

    /// The dump succeeded and its tree is killed: its TCP connections stay
    /// in repair mode, so that they vanish without a FIN or RST. (Otherwise
    /// they leave repair mode when this state is dropped.)
    pub fn keep_tcp_locked(&mut self) {
        self.tcp_repaired.keep_locked();
        if let Some(l) = &mut self.lock {
            l.keep = true;
        }
    }

    /// With `--network-lock nftables`: the packets of connection `c` (of
    /// socket `ino`, fd `fd` of `pid`) are dropped from now on.
    pub(super) fn lock_connection(&mut self, pid: i32, ino: u32, c: &netlock::Conn) -> Result<()> {
        if self.network_lock != netlock::Method::Nftables {
            return Ok(());
        }
        if self.lock.is_none() {
            let net = self.net_pid.unwrap_or(pid);
            let table = netlock::table_name(&self.run_id);
            tracing::debug!(
                ino,
                table,
                "the first connection locked makes the lock table"
            );
            self.lock = Some(netlock::Held::create(table, net)?);
        }
        match &self.lock {
            Some(l) => l.add(c),
            None => Ok(()),
        }
    }

    /// The sockets outside the tree that dumped unix sockets are connected
    /// to: with `--ext-unix-sk`, one `files.img` entry each (named, with
    /// ids from `next_id` on), for the restore to connect to their names
    /// again; without, the dump fails naming the socket and its peer.
    pub fn externals(&self, mut next_id: u32) -> Result<Vec<pb::FileEntry>> {
        let inos: std::collections::HashSet<u32> =
            self.unix_seen.iter().map(|&(_, _, ino, _)| ino).collect();
        let mut out: Vec<pb::FileEntry> = Vec::new();
        for &(pid, fd, ino, peer) in &self.unix_seen {
            if peer == 0 || inos.contains(&peer) {
                continue;
            }
            let d = self.unix_diag.as_ref().and_then(|m| m.get(&peer));
            let name = d.and_then(|d| d.name.clone()).unwrap_or_default();
            let shown = format!("socket inode {peer} ({})", unix::show_name(&name));
            let refuse = |why: &str| {
                Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} is a unix socket (inode {ino}) connected to {shown}, which is outside the dumped tree{why}"
                ),
            }
            };
            if !self.ext_unix_sk {
                return Err(refuse(
                    "; dump with --ext-unix-sk to connect it to that name again at restore",
                ));
            }
            if d.is_none_or(|d| i32::from(d.ty) != libc::SOCK_DGRAM) {
                return Err(refuse(
                    ", and only datagram sockets can be external (--ext-unix-sk)",
                ));
            }
            if name.is_empty() {
                return Err(refuse(", and has no name to connect to again"));
            }
            if out
                .iter()
                .any(|e| e.usk.as_ref().is_some_and(|u| u.ino == peer))
            {
                continue;
            }
            let id = next_id;
            next_id += 1;
            out.push(pb::FileEntry {
                r#type: pb::FdTypes::Unixsk as i32,
                id,
                usk: Some(pb::UnixSkEntry {
                    id,
                    ino: peer,
                    r#type: libc::SOCK_DGRAM as u32,
                    state: 10, // TCP_LISTEN, as upstream marks external ones
                    flags: 0,
                    uflags: unix::USK_EXTERN,
                    backlog: 0,
                    peer: 0,
                    fown: no_owner(),
                    opts: pb::SkOptsEntry::default(),
                    name,
                    shutdown: None,
                    file_perms: None,
                    name_dir: None,
                    deleted: None,
                    ns_id: None,
                    mnt_id: None,
                }),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Writes `sk-queues.img` and `tcp-stream-*.img`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        if !self.queues.is_empty() {
            self.queues.write(dir)?;
        }
        self.tcp.write(dir)?;
        Ok(())
    }
}

/// The sock_diag entry of socket `ino` (fd `fd` of `pid`) in `cache`,
/// fetched with `fetch` in the network namespace of `net` (again if the
/// socket is missing).
fn diag_of<'a, T>(
    cache: &'a mut Option<HashMap<u32, T>>,
    net: i32,
    pid: i32,
    fd: i32,
    ino: u32,
    kind: &str,
    fetch: fn() -> std::result::Result<HashMap<u32, T>, nix::errno::Errno>,
) -> Result<&'a T>
where
    T: Send,
{
    if cache.as_ref().is_none_or(|m| !m.contains_key(&ino)) {
        let m = crate::objects::ns::net::in_net_of(net, || {
            fetch().map_err(|errno| Error::Sys {
                pid,
                what: format!(
                    "sock_diag of {kind} sockets (for fd {fd}; is the {kind}_diag module loaded?)"
                ),
                errno,
            })
        })?;
        *cache = Some(m);
    }
    cache
        .as_ref()
        .and_then(|m| m.get(&ino))
        .ok_or_else(|| Error::Unsupported {
            pid,
            what: format!(
                "fd {fd} is a {kind} socket (inode {ino}) that sock_diag does not show: is it in another network namespace?"
            ),
        })
}

/// Restore state: the image directory and the queued data, read once.
#[derive(Debug, Default)]
pub struct SkRestore {
    pub dir: Option<PathBuf>,
    queues: Option<HashMap<u32, Vec<Queued>>>,
    /// Queues whose messages carry fds, sent once those files are made:
    /// (the socket that sends them, the messages, what they are for).
    pub deferred: Vec<(OwnedFd, Vec<Queued>, String)>,
    /// Shutdowns that wait for `deferred` to be sent.
    pub deferred_shutdowns: Vec<(OwnedFd, Option<i32>, String)>,
    /// Connections restored in repair mode, until every socket exists.
    pub(super) tcp_repaired: tcp::Repaired,
    /// `--tcp-established`: established TCP connections may be restored.
    pub tcp_established: bool,
    /// `--tcp-close`: established connections come back closed.
    pub tcp_close: bool,
    /// `--ext-unix-sk`: unix sockets connected outside the tree connect to
    /// their peer's name again.
    pub ext_unix_sk: bool,
    /// `--network-lock`: a failure to remove the lock fails the restore.
    pub network_lock: netlock::Method,
    /// The dump's run id (inventory), whose lock table goes before the
    /// restored connections leave repair mode.
    pub run_id: Option<String>,
    /// Inodes of the TCP connections restored.
    pub(super) tcp_inos: Vec<u32>,
    /// The restored tree: its pids -> criu's, and its root as criu sees
    /// it (credentials of queued messages are sent in criu's terms).
    host_pids: HashMap<i32, i32>,
    root_host: Option<i32>,
}

impl SkRestore {
    pub fn new(dir: &Path) -> Self {
        SkRestore {
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    /// Puts `msgs` (queued for `what`) back by sending them from `from`:
    /// now when they carry no fds, or once the files they carry are made
    /// (`deferred`).
    /// Where the restored tree is: `root` and its pids (the tree's ->
    /// criu's).
    pub fn set_tree(&mut self, root: i32, host_pids: HashMap<i32, i32>) {
        self.root_host = Some(root);
        self.host_pids = host_pids;
    }

    pub(super) fn requeue(
        &mut self,
        from: BorrowedFd<'_>,
        mut msgs: Vec<Queued>,
        what: &str,
    ) -> Result<()> {
        if msgs.iter().any(|m| m.creds.is_some()) {
            let userns = match self.root_host {
                Some(root) => Some(crate::objects::ns::user::maps(root)?),
                None => None,
            };
            super::sk_queue::creds_to_host(&mut msgs, &self.host_pids, userns.as_ref(), what)?;
        }
        if msgs.iter().all(|m| m.rights.is_empty()) {
            return super::sk_queue::requeue(from, &msgs, what);
        }
        let dup = from
            .try_clone_to_owned()
            .map_err(|source| Error::Mismatch {
                what: format!("dup of the socket that refills {what}: {source}"),
            })?;
        self.deferred.push((dup, msgs, what.to_string()));
        Ok(())
    }

    pub(super) fn defer_shutdown(
        &mut self,
        fd: BorrowedFd<'_>,
        sh: Option<i32>,
        what: &str,
    ) -> Result<()> {
        let dup = fd.try_clone_to_owned().map_err(|source| Error::Mismatch {
            what: format!("dup of {what}: {source}"),
        })?;
        self.deferred_shutdowns.push((dup, sh, what.to_string()));
        Ok(())
    }

    /// The shutdowns that waited for queues carrying fds, once those are
    /// sent.
    pub fn apply_deferred_shutdowns(&mut self) -> Result<()> {
        for (fd, sh, what) in std::mem::take(&mut self.deferred_shutdowns) {
            apply_shutdown(fd.as_fd(), sh, &what)?;
        }
        Ok(())
    }

    /// Every socket of the restore exists: the TCP connections leave
    /// repair mode (and send what was never sent).
    pub fn release_tcp(&mut self) -> Result<()> {
        let restored = !std::mem::take(&mut self.tcp_inos).is_empty();
        if let (true, Some(run_id)) = (restored, &self.run_id) {
            let table = netlock::table_name(run_id);
            match netlock::delete(&table) {
                Ok(_) => {}
                Err(errno) if self.network_lock == netlock::Method::Nftables => {
                    return Err(Error::Mismatch {
                        what: format!("unlocking the network (nftables table {table}): {errno}"),
                    })
                }
                Err(errno) => {
                    tracing::debug!("no network lock {table} removed: {errno}");
                }
            }
        }
        self.tcp_repaired.release()
    }

    /// The messages queued for socket `id`.
    pub(super) fn queue(&mut self, id: u32) -> Result<Vec<Queued>> {
        if self.queues.is_none() {
            let q = match &self.dir {
                Some(d) => Queues::load(d)?,
                None => HashMap::new(),
            };
            self.queues = Some(q);
        }
        Ok(self
            .queues
            .as_mut()
            .and_then(|q| q.remove(&id))
            .unwrap_or_default())
    }
}

pub(super) fn no_owner() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

pub(super) fn sock_type(raw: i32) -> Option<SockType> {
    match raw {
        libc::SOCK_STREAM => Some(SockType::Stream),
        libc::SOCK_DGRAM => Some(SockType::Datagram),
        libc::SOCK_SEQPACKET => Some(SockType::SeqPacket),
        libc::SOCK_RAW => Some(SockType::Raw),
        _ => None,
    }
}

/// `sk_shutdown` of the kernel's shutdown bits (1 read, 2 write).
pub(super) fn shutdown_entry(bits: u8) -> Option<i32> {
    (bits & 3 != 0).then_some(i32::from(bits & 3))
}

/// Applies a dumped `sk_shutdown` to a restored socket.
pub(super) fn apply_shutdown(fd: BorrowedFd<'_>, sh: Option<i32>, what: &str) -> Result<()> {
    use nix::sys::socket::{shutdown, Shutdown};
    use std::os::fd::AsRawFd;
    let how = match sh.unwrap_or(0) & 3 {
        1 => Shutdown::Read,
        2 => Shutdown::Write,
        3 => Shutdown::Both,
        _ => return Ok(()),
    };
    shutdown(fd.as_raw_fd(), how).map_err(|errno| Error::Mismatch {
        what: format!("shutdown of {what}: {errno}"),
    })
}

/// Restore preamble of the sockets made with `socket_raw` (netlink,
/// packet, raw IP): the new socket, with the generic options of `opts`.
/// `need` says what the kernel may ask for (a capability) in the error.
pub(super) fn new_raw_socket(
    domain: i32,
    ty: i32,
    proto: i32,
    opts: &pb::SkOptsEntry,
    what: &str,
    need: &str,
) -> Result<OwnedFd> {
    let fd = sock::socket_raw(domain, ty, proto).map_err(|errno| Error::Mismatch {
        what: format!("making {what}{need}: {errno}"),
    })?;
    super::sockopt::restore(fd.as_fd(), opts, &super::sockopt::At { pid: 0, what })?;
    Ok(fd)
}

/// Restore epilogue: the file flags, then the socket is handed over as
/// file `id`.
pub(super) fn hand_over(
    fd: OwnedFd,
    id: u32,
    flags: u32,
    what: &str,
    opened: &mut HashMap<u32, OwnedFd>,
) -> Result<()> {
    apply_flags(fd.as_fd(), flags, what)?;
    opened.insert(id, fd);
    Ok(())
}

/// Sets the O_NONBLOCK (and O_ASYNC-free) file status flags of `flags`.
pub(super) fn apply_flags(fd: BorrowedFd<'_>, flags: u32, what: &str) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if flags & libc::O_NONBLOCK as u32 != 0 {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|errno| Error::Mismatch {
            what: format!("setting O_NONBLOCK on {what}: {errno}"),
        })?;
    }
    Ok(())
}

/// Bytes waiting in the receive queue of `file` (None: nothing to read),
/// as the memory the queue holds (SO_MEMINFO; else the size of the next
/// message, FIONREAD), for sockets whose queue
/// criu cannot read without taking it (netlink, packet).
pub(super) fn rx_queued(file: BorrowedFd<'_>, pid: i32, what: &str) -> Result<Option<u32>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(file, PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::ZERO).map_err(|errno| Error::Sys {
        pid,
        what: format!("poll of {what}"),
        errno,
    })?;
    if n == 0 {
        return Ok(None);
    }
    // SO_MEMINFO's first word: the memory the receive queue holds.
    let mem = sock::get_bytes(file, libc::SOL_SOCKET, libc::SO_MEMINFO, 36).unwrap_or_default();
    let rmem = mem
        .get(0..4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    // Where the queue is charged to the sender (unix), the size of the
    // next message instead.
    let n = if rmem == 0 {
        sock::ioctl_int(file, libc::FIONREAD as libc::c_ulong).map_or(0, |v| v.max(0) as u32)
    } else {
        rmem
    };
    Ok(Some(n))
}

/// A socket being dumped: fd `fd` of `pid` (file id `id`, open flags
/// `flags`), criu's copy of it `file`, and its inode `ino`.
#[derive(Debug, Clone, Copy)]
pub struct SkFd<'a> {
    pub pid: i32,
    pub fd: i32,
    pub id: u32,
    pub flags: u32,
    pub file: BorrowedFd<'a>,
    pub ino: u32,
}

impl<'a> SkFd<'a> {
    /// (pid, fd, id, flags, file, ino).
    pub fn parts(self) -> (i32, i32, u32, u32, BorrowedFd<'a>, u32) {
        (self.pid, self.fd, self.id, self.flags, self.file, self.ino)
    }
}

/// Dump half: `file` is fd `fd` of `pid`, a socket with inode `ino`;
/// `tree` maps criu's pids to the dumped tree's (credentials of queued
/// messages name their sender by it).
pub fn dump(st: &mut SkDump, sk: SkFd<'_>, tree: &HashMap<i32, i32>) -> Result<pb::FileEntry> {
    let SkFd { pid, fd, file, .. } = sk;
    let opt = |o, name: &str| {
        sock::get_int(file, libc::SOL_SOCKET, o).map_err(|errno| Error::Sys {
            pid,
            what: format!("getsockopt {name} of socket fd {fd}"),
            errno,
        })
    };
    let domain = opt(libc::SO_DOMAIN, "SO_DOMAIN")?;
    let ty = opt(libc::SO_TYPE, "SO_TYPE")?;
    let proto = opt(libc::SO_PROTOCOL, "SO_PROTOCOL")?;
    let sk = SkFd {
        flags: sk.flags & !(libc::O_CLOEXEC as u32),
        ..sk
    };
    match domain {
        libc::AF_UNIX => unix::dump(st, sk, ty, tree),
        libc::AF_INET | libc::AF_INET6 => inet::dump(st, sk, domain, ty, proto),
        libc::AF_NETLINK => netlink::dump(st, sk),
        libc::AF_PACKET => packet::dump(st, sk),
        _ => Err(Error::Unsupported {
            pid,
            what: format!("fd {fd} is a socket of family {domain}, which criu-rs cannot dump yet"),
        }),
    }
}

/// Whether files.img type `t` is a socket this module restores.
pub fn handles(t: i32) -> bool {
    [
        pb::FdTypes::Unixsk,
        pb::FdTypes::Inetsk,
        pb::FdTypes::Netlinksk,
        pb::FdTypes::Packetsk,
    ]
    .iter()
    .any(|&k| k as i32 == t)
}

/// Restore half: makes the socket of `entry` (and the peers that must be
/// made with it) in criu, into `opened` by image id.
pub fn open(
    rs: &mut SkRestore,
    files: &[pb::FileEntry],
    entry: &pb::FileEntry,
    opened: &mut HashMap<u32, OwnedFd>,
) -> Result<()> {
    if let Some(u) = &entry.usk {
        return unix::open(rs, files, u, opened);
    }
    if let Some(i) = &entry.isk {
        return inet::open(rs, i, opened);
    }
    if let Some(n) = &entry.nlsk {
        return netlink::open(n, opened);
    }
    if let Some(p) = &entry.psk {
        return packet::open(p, opened);
    }
    Err(Error::Mismatch {
        what: format!("file id {} is a socket without its entry", entry.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn rx_queued_sees_waiting_data_without_taking_it() {
        let (a, b) = UnixDatagram::pair().unwrap();
        assert_eq!(rx_queued(b.as_fd(), 0, "test").unwrap(), None);
        a.send(b"waiting").unwrap();
        let n = rx_queued(b.as_fd(), 0, "test").unwrap();
        assert!(n.is_some_and(|n| n >= 7), "{n:?}");
        let mut buf = [0u8; 16];
        assert_eq!(b.recv(&mut buf).unwrap(), 7);
        assert_eq!(rx_queued(b.as_fd(), 0, "test").unwrap(), None);
    }
}
