//! Unix sockets (`unix_sk_entry`): socketpairs, bound (path or abstract
//! name), listening with connections not yet accepted, connected datagram
//! sockets; their queued data goes to `sk-queues.img`.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use nix::sys::socket::{
    bind, connect, listen, socket, socketpair, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};

use crate::image::pb;

use super::super::{Error, Result};
use super::sk_queue;
use super::socket::{
    apply_flags, apply_shutdown, no_owner, shutdown_entry, sock_type, SkDump, SkFd, SkRestore,
};
use super::sockopt::{self, At};

const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;

/// `uflags` of a socket outside the dumped tree (upstream's USK_EXTERN).
pub const USK_EXTERN: u32 = 1;

pub(super) fn show_name(name: &[u8]) -> String {
    match name.first() {
        None => "(unnamed)".into(),
        Some(0) => format!("@{}", String::from_utf8_lossy(&name[1..])),
        Some(_) => path_of(name).display().to_string(),
    }
}

/// Dump half for one unix socket.
pub fn dump(
    st: &mut SkDump,
    sk: SkFd<'_>,
    ty: i32,
    tree: &HashMap<i32, i32>,
) -> Result<pb::FileEntry> {
    let (pid, fd, id, flags, file, ino) = sk.parts();
    let d = st.unix(pid, fd, ino)?.clone();
    let what = format!("unix socket fd {fd} of pid {pid} (inode {ino})");
    let name = d.name.clone().unwrap_or_default();
    if name.first().is_some_and(|&c| c != 0 && c != b'/') {
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "fd {fd} is a unix socket bound to the relative path {}, which criu-rs cannot restore yet",
                show_name(&name)
            ),
        });
    }
    let state = u32::from(d.state);
    let mut peer = d.peer.unwrap_or(0);
    if state == TCP_ESTABLISHED && ty != libc::SOCK_DGRAM {
        if let Some(l) = st.listener_of(ino) {
            // A connection not yet accepted: on restore it connects to the
            // listener again.
            if d.rqlen.is_some_and(|(_, w)| w != 0) {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "fd {fd} is a unix socket whose connection to {} is not yet accepted and has sent data, which cannot be read back",
                        show_name(l.name.as_deref().unwrap_or_default())
                    ),
                });
            }
            peer = l.ino;
        }
    }
    if state == TCP_LISTEN && d.icons.contains(&0) {
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "fd {fd} is a listening unix socket with a closed connection in its accept queue"
            ),
        });
    }
    let backlog = d.rqlen.map_or(0, |(_, w)| w);
    let mut file_perms = None;
    let mut deleted = None;
    if name.first() == Some(&b'/') {
        let path = path_of(&name);
        match std::fs::symlink_metadata(path) {
            Ok(m) if d.vfs.is_some_and(|(vino, _)| u64::from(vino) == m.ino()) => {
                file_perms = Some(pb::FilePermsEntry {
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                })
            }
            _ => deleted = Some(true),
        }
    }
    let opts = sockopt::dump(file, libc::AF_UNIX, &At { pid, what: &what })?;
    if state != TCP_LISTEN {
        let stype = sock_type(ty).unwrap_or(SockType::Stream);
        let mut msgs = peek_with_creds(file, stype, d.shutdown & 1 != 0, pid, &what)?;
        if msgs.iter().any(|m| m.creds.is_some()) {
            // The receiver's user namespace (that of the task whose fd
            // carries this socket, when criu holds it from a queue).
            let userns = crate::objects::ns::user::maps(st.net_pid.unwrap_or(pid))?;
            sk_queue::creds_to_tree(&mut msgs, tree, Some(&userns), pid, &what)?;
        }
        let carried = st.queues.add(id, msgs);
        st.carried.extend(carried);
    }
    st.unix_seen.push((pid, fd, ino, peer));
    Ok(pb::FileEntry {
        r#type: pb::FdTypes::Unixsk as i32,
        id,
        usk: Some(pb::UnixSkEntry {
            id,
            ino,
            r#type: ty as u32,
            state,
            flags,
            uflags: 0,
            backlog,
            peer,
            fown: no_owner(),
            opts,
            name,
            shutdown: shutdown_entry(d.shutdown),
            file_perms,
            name_dir: None,
            deleted,
            ns_id: None,
            mnt_id: None,
        }),
        ..Default::default()
    })
}

/// Peeks the queue of `file`. A receiver that takes a pidfd of each
/// sender (SO_PASSPIDFD) but not its credentials is peeked with
/// SO_PASSCRED on for the while: the sender's pid is what restores the
/// pidfd.
fn peek_with_creds(
    file: BorrowedFd<'_>,
    stype: SockType,
    rcv_shutdown: bool,
    pid: i32,
    what: &str,
) -> Result<Vec<sk_queue::Msg>> {
    let get = |opt| crate::sys::sock::get_int(file, libc::SOL_SOCKET, opt).unwrap_or(0) != 0;
    let lend = get(crate::sys::sock::SO_PASSPIDFD) && !get(libc::SO_PASSCRED);
    let set = |v: i32| {
        crate::sys::sock::set_int(file, libc::SOL_SOCKET, libc::SO_PASSCRED, v).map_err(|errno| {
            Error::Sys {
                pid,
                what: format!("setting SO_PASSCRED = {v} on {what} (it has SO_PASSPIDFD)"),
                errno,
            }
        })
    };
    if lend {
        set(1)?;
    }
    let got = sk_queue::peek(file, stype, rcv_shutdown, pid, what);
    if lend {
        set(0)?;
    }
    got
}

/// The path of a unix socket name (raw bytes as the kernel gave them,
/// which may end with the NUL the binder passed).
fn path_of(b: &[u8]) -> &std::path::Path {
    use std::os::unix::ffi::OsStrExt;
    let b = b.split(|&c| c == 0).next().unwrap_or(b);
    std::path::Path::new(std::ffi::OsStr::from_bytes(b))
}

fn addr_of(name: &[u8], what: &str) -> Result<UnixAddr> {
    let r = match name.first() {
        Some(0) => UnixAddr::new_abstract(&name[1..]),
        _ => UnixAddr::new(path_of(name)),
    };
    r.map_err(|errno| Error::Mismatch {
        what: format!("the name {} of {what}: {errno}", show_name(name)),
    })
}

fn usk_by_ino(files: &[pb::FileEntry], ino: u32) -> Option<(u32, &pb::UnixSkEntry)> {
    files
        .iter()
        .find_map(|f| f.usk.as_ref().filter(|u| u.ino == ino).map(|u| (f.id, u)))
}

fn usk_by_id(files: &[pb::FileEntry], id: u32) -> Option<&pb::UnixSkEntry> {
    files
        .iter()
        .find(|f| f.id == id)
        .and_then(|f| f.usk.as_ref())
}

fn new_socket(ty: SockType, what: &str) -> Result<OwnedFd> {
    socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|errno| Error::Mismatch {
        what: format!("making {what}: {errno}"),
    })
}

/// Binds `fd` to the name of `e`, removing a stale socket file left at the
/// path by the dumped task, then sets the file's owner and mode.
fn bind_name(fd: BorrowedFd<'_>, e: &pb::UnixSkEntry, what: &str) -> Result<()> {
    if e.name.is_empty() {
        return Ok(());
    }
    let addr = addr_of(&e.name, what)?;
    let is_path = e.name.first() != Some(&0);
    let path = path_of(&e.name);
    if is_path {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.file_type().is_socket() {
                std::fs::remove_file(path).map_err(|source| Error::File {
                    path: path.to_path_buf(),
                    what: "removing the stale socket file",
                    source,
                })?;
            }
        }
    }
    bind(fd.as_raw_fd(), &addr).map_err(|errno| Error::Mismatch {
        what: format!("binding {what} to {}: {errno}", show_name(&e.name)),
    })?;
    if is_path {
        if e.deleted == Some(true) {
            std::fs::remove_file(path).map_err(|source| Error::File {
                path: path.to_path_buf(),
                what: "unlinking the socket file (it was deleted at dump)",
                source,
            })?;
        } else if let Some(p) = &e.file_perms {
            std::os::unix::fs::lchown(path, Some(p.uid), Some(p.gid)).map_err(|source| {
                Error::File {
                    path: path.to_path_buf(),
                    what: "setting the owner of the socket file",
                    source,
                }
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(p.mode & 0o7777))
                .map_err(|source| Error::File {
                    path: path.to_path_buf(),
                    what: "setting the mode of the socket file",
                    source,
                })?;
        }
    }
    Ok(())
}

/// Shutdown state and file flags. While queues carrying fds wait to be
/// sent (they may be sent from this socket), the shutdown waits with them.
fn finish(rs: &mut SkRestore, fd: BorrowedFd<'_>, e: &pb::UnixSkEntry, what: &str) -> Result<()> {
    if rs.deferred.is_empty() || e.shutdown.unwrap_or(0) & 3 == 0 {
        apply_shutdown(fd, e.shutdown, what)?;
    } else {
        rs.defer_shutdown(fd, e.shutdown, what)?;
    }
    apply_flags(fd, e.flags, what)
}

fn connect_to(fd: BorrowedFd<'_>, peer: &pb::UnixSkEntry, what: &str) -> Result<()> {
    if peer.name.is_empty() {
        return Err(Error::Mismatch {
            what: format!(
                "{what} is connected to unnamed socket inode {}, which cannot be reached again",
                peer.ino
            ),
        });
    }
    let addr = addr_of(&peer.name, what)?;
    connect(fd.as_raw_fd(), &addr).map_err(|errno| Error::Mismatch {
        what: format!("connecting {what} to {}: {errno}", show_name(&peer.name)),
    })
}

/// Refills the queue of `e`, bound already, from a temporary socket that
/// sends to its name (before it connects, which would refuse them).
fn refill(rs: &mut SkRestore, e: &pb::UnixSkEntry, ty: SockType, what: &str) -> Result<()> {
    let q = rs.queue(e.id)?;
    if q.is_empty() {
        return Ok(());
    }
    if e.name.is_empty() || ty == SockType::Stream {
        return Err(Error::Mismatch {
            what: format!("{what} has queued data but no peer to send it from"),
        });
    }
    let tmp = new_socket(ty, "a temporary sender")?;
    connect_to(tmp.as_fd(), e, &format!("a temporary sender to {what}"))?;
    rs.requeue(tmp.as_fd(), q, what)
}

/// Restore half: makes unix socket `e` (image id `e.id`) in criu, and with
/// it the other end of a socketpair, or the socket it connects to.
pub fn open(
    rs: &mut SkRestore,
    files: &[pb::FileEntry],
    e: &pb::UnixSkEntry,
    opened: &mut HashMap<u32, OwnedFd>,
) -> Result<()> {
    if opened.contains_key(&e.id) {
        return Ok(());
    }
    let what = format!("unix socket id {} (inode {})", e.id, e.ino);
    let ty = sock_type(e.r#type as i32)
        .filter(|t| *t != SockType::Raw)
        .ok_or_else(|| Error::Mismatch {
            what: format!("{what} has socket type {}", e.r#type),
        })?;
    let at = At {
        pid: 0,
        what: &what,
    };
    let peer = match e.peer {
        0 => None,
        p => Some(usk_by_ino(files, p).ok_or_else(|| Error::Mismatch {
            what: format!("{what} is connected to inode {p}, which files.img does not have"),
        })?),
    };

    // Connected to a socket outside the tree (--ext-unix-sk): connected
    // to its name again.
    if let Some((_, p)) = peer.filter(|(_, p)| p.uflags & USK_EXTERN != 0) {
        if !rs.ext_unix_sk {
            return Err(Error::Mismatch {
                what: format!(
                    "{what} is connected to {}, a socket outside the dumped tree: restore with --ext-unix-sk",
                    show_name(&p.name)
                ),
            });
        }
        let fd = new_socket(ty, &what)?;
        sockopt::restore(fd.as_fd(), &e.opts, &at)?;
        bind_name(fd.as_fd(), e, &what)?;
        refill(rs, e, ty, &what)?;
        connect_to(fd.as_fd(), p, &what)?;
        finish(rs, fd.as_fd(), e, &what)?;
        opened.insert(e.id, fd);
        return Ok(());
    }

    // Both ends of a pair, made together.
    if let Some((pid_, p)) = peer {
        let mutual = p.peer == e.ino && e.state == TCP_ESTABLISHED && p.state == TCP_ESTABLISHED;
        let unnamed_dgram = ty != SockType::Datagram || (e.name.is_empty() && p.name.is_empty());
        if mutual && unnamed_dgram {
            let pwhat = format!("unix socket id {pid_} (inode {})", p.ino);
            let (a, b) = socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|errno| Error::Mismatch {
                    what: format!("socketpair for {what}: {errno}"),
                })?;
            sockopt::restore(a.as_fd(), &e.opts, &at)?;
            sockopt::restore(
                b.as_fd(),
                &p.opts,
                &At {
                    pid: 0,
                    what: &pwhat,
                },
            )?;
            let (qa, qb) = (rs.queue(e.id)?, rs.queue(pid_)?);
            rs.requeue(b.as_fd(), qa, &what)?;
            rs.requeue(a.as_fd(), qb, &pwhat)?;
            finish(rs, a.as_fd(), e, &what)?;
            finish(rs, b.as_fd(), p, &pwhat)?;
            opened.insert(e.id, a);
            opened.insert(pid_, b);
            return Ok(());
        }
    }

    let fd = new_socket(ty, &what)?;
    sockopt::restore(fd.as_fd(), &e.opts, &at)?;
    if e.state == TCP_LISTEN {
        bind_name(fd.as_fd(), e, &what)?;
        let backlog =
            Backlog::new(e.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN);
        listen(&fd, backlog).map_err(|errno| Error::Mismatch {
            what: format!("listen on {what}: {errno}"),
        })?;
        finish(rs, fd.as_fd(), e, &what)?;
        opened.insert(e.id, fd);
        return Ok(());
    }
    if let Some((_, p)) = peer.filter(|(_, p)| p.state == TCP_LISTEN) {
        // A connection that was waiting in the listener's accept queue.
        let (lid, _) = usk_by_ino(files, p.ino).unwrap_or((0, p));
        if let Some(l) = usk_by_id(files, lid) {
            open(rs, files, l, opened)?;
        }
        connect_to(fd.as_fd(), p, &what)?;
        if !rs.queue(e.id)?.is_empty() {
            return Err(Error::Mismatch {
                what: format!("{what} has queued data but its connection was not yet accepted"),
            });
        }
        finish(rs, fd.as_fd(), e, &what)?;
        opened.insert(e.id, fd);
        return Ok(());
    }

    // Bound and/or connected to a named socket: bind, refill the queue from
    // a temporary sender (before connecting, which would refuse it), then
    // connect once the peer exists.
    bind_name(fd.as_fd(), e, &what)?;
    refill(rs, e, ty, &what)?;
    opened.insert(e.id, fd);
    if let Some((pid_, p)) = peer {
        if !opened.contains_key(&pid_) {
            open(rs, files, p, opened)?;
        }
        let fd = opened.get(&e.id).ok_or_else(|| Error::Mismatch {
            what: format!("{what} vanished"),
        })?;
        connect_to(fd.as_fd(), p, &what)?;
    }
    let fd = opened.get(&e.id).ok_or_else(|| Error::Mismatch {
        what: format!("{what} vanished"),
    })?;
    finish(rs, fd.as_fd(), e, &what)
}
