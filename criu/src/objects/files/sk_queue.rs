//! Data queued in a socket's receive queue (`sk-queues.img`): read without
//! consuming it (MSG_PEEK stepped with SO_PEEK_OFF), and sent back into the
//! new socket from its peer on restore.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockType};

use crate::image::{self, magic, pb};
use crate::sys::sock::{self, Ucred};

use super::super::{Error, Result};

/// Most messages criu will peek from one queue (a guard against a queue
/// that grows while it is read).
const MAX_MESSAGES: usize = 1 << 20;

/// `scm_entry.type` of passed fds (the kernel's SCM_RIGHTS).
pub const SCM_RIGHTS: u32 = libc::SCM_RIGHTS as u32;

/// One queued message: its bytes, the fds it carries (SCM_RIGHTS), as
/// criu got them by peeking (new fds of the same open files), and its
/// sender's credentials when the socket shows them (SO_PASSCRED).
#[derive(Debug, Default)]
pub struct Msg {
    pub data: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    pub creds: Option<Ucred>,
}

/// One queued message read back from `sk-queues.img`: its bytes, the file
/// ids (in `files.img`) of the fds it carries and its sender's
/// credentials (as the dumped tree saw them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queued {
    pub data: Vec<u8>,
    pub rights: Vec<u32>,
    pub creds: Option<Ucred>,
}

impl Queued {
    pub fn plain(data: Vec<u8>) -> Self {
        Queued {
            data,
            ..Default::default()
        }
    }
}

/// The id of the parent user namespace that `inner` is inside, by the
/// `map` of the child namespace (None: `inner` is not mapped).
fn to_outer(map: &[pb::UidGidExtent], inner: u32) -> Option<u32> {
    map.iter()
        .find(|e| inner >= e.first && inner - e.first < e.count)
        .map(|e| e.lower_first + (inner - e.first))
}

/// Puts the credentials of peeked messages into the dumped tree's terms:
/// the pid criu saw through `tree` (criu's pid -> the tree's pid), uid
/// and gid through the user namespace maps of the receiver (`userns`;
/// None: criu's own). A sender outside the tree cannot be named on
/// restore, so it is refused.
pub fn creds_to_tree(
    msgs: &mut [Msg],
    tree: &HashMap<i32, i32>,
    userns: Option<&pb::UsernsEntry>,
    pid: i32,
    what: &str,
) -> Result<()> {
    for m in msgs.iter_mut() {
        let Some(c) = m.creds.as_mut() else {
            continue;
        };
        let inner = if tree.is_empty() {
            Some(c.pid)
        } else {
            tree.get(&c.pid).copied()
        };
        let Some(inner) = inner.filter(|&p| p > 0) else {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "{what} has a queued message whose sender credentials (SO_PASSCRED) name pid {}, which is not in the dumped tree (gone or outside): it cannot be restored",
                    c.pid
                ),
            });
        };
        c.pid = inner;
        if let Some(u) = userns {
            c.uid = crate::objects::ns::user::to_inner(&u.uid_map, c.uid);
            c.gid = crate::objects::ns::user::to_inner(&u.gid_map, c.gid);
        }
    }
    Ok(())
}

/// Puts the credentials of messages read from the image into criu's
/// terms, to send them with: the pid through `host_pids` (the tree's pid
/// -> criu's pid; empty: the same), uid and gid through the maps of the
/// restored tree's user namespace (`userns`; None: criu's own).
pub fn creds_to_host(
    msgs: &mut [Queued],
    host_pids: &HashMap<i32, i32>,
    userns: Option<&pb::UsernsEntry>,
    what: &str,
) -> Result<()> {
    for m in msgs.iter_mut() {
        let Some(c) = m.creds.as_mut() else {
            continue;
        };
        let host = if host_pids.is_empty() {
            Some(c.pid)
        } else {
            host_pids.get(&c.pid).copied()
        };
        let host = host.ok_or_else(|| Error::Mismatch {
            what: format!(
                "a message queued for {what} was sent by pid {}, which is not in the restored tree",
                c.pid
            ),
        })?;
        let (uid, gid) = match userns {
            Some(u) => (to_outer(&u.uid_map, c.uid), to_outer(&u.gid_map, c.gid)),
            None => (Some(c.uid), Some(c.gid)),
        };
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(Error::Mismatch {
                what: format!(
                    "a message queued for {what} was sent as uid {} gid {}, which the restored user namespace does not map",
                    c.uid, c.gid
                ),
            });
        };
        *c = Ucred {
            pid: host,
            uid,
            gid,
        };
    }
    Ok(())
}

/// Reads the receive queue of `fd` without consuming it: one chunk per
/// message for datagram and seqpacket sockets, chunks of the stream
/// otherwise (a chunk ends where a message carrying fds ends). The socket's SO_PEEK_OFF is put back as it
/// was.
///
/// A read of 0 bytes is the end of a stream; for message sockets it is an
/// empty message, unless `rcv_shutdown` (then it is the end of the queue,
/// and a trailing empty message cannot be told from it).
pub fn peek(
    fd: BorrowedFd<'_>,
    ty: SockType,
    rcv_shutdown: bool,
    pid: i32,
    what: &str,
) -> Result<Vec<Msg>> {
    let err = |op: &str, errno| Error::Sys {
        pid,
        what: format!("{op} of {what}"),
        errno,
    };
    let old = sock::get_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .map_err(|e| err("reading SO_PEEK_OFF", e))?;
    sock::set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .map_err(|e| err("setting SO_PEEK_OFF", e))?;
    let stream = ty == SockType::Stream;
    let got = peek_all(fd, stream, stream || rcv_shutdown, what, pid);
    let back = sock::set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)
        .map_err(|e| err("putting SO_PEEK_OFF back", e));
    let got = got?;
    back?;
    Ok(got)
}

fn peek_once(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    what: &str,
    pid: i32,
) -> Result<Option<sock::Received>> {
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    match sock::recv_with_fds(fd, buf, flags) {
        Ok(r) if r.ctrunc => Err(Error::Unsupported {
            pid,
            what: format!(
                "{what} has a queued message whose control data criu could not take whole"
            ),
        }),
        Ok(r) => Ok(Some(r)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(errno) => Err(Error::Sys {
            pid,
            what: format!("peeking the queue of {what}"),
            errno,
        }),
    }
}

fn peek_all(
    fd: BorrowedFd<'_>,
    stream: bool,
    eof_on_zero: bool,
    what: &str,
    pid: i32,
) -> Result<Vec<Msg>> {
    let rcvbuf = sock::get_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0);
    let size = (rcvbuf.max(0) as usize * 2).max(256 * 1024);
    let mut buf = vec![0u8; size];
    let mut out = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let Some(r) = peek_once(fd, &mut buf, what, pid)? else {
            return Ok(out);
        };
        let n = r.bytes;
        if r.truncated {
            return Err(Error::Unsupported {
                pid,
                what: format!("{what} has a queued message larger than {size} bytes"),
            });
        }
        if n == 0 && eof_on_zero && r.fds.is_empty() {
            return Ok(out);
        }
        if stream && !r.fds.is_empty() && n > 1 {
            // A stream peek that meets a message carrying fds ends with
            // that message, but may hold plain data sent before it, and no
            // peek tells where the message starts (the kernel hands out the
            // fds to any peek that gets near it). The fds go back with the
            // last byte: a reader gets them no earlier than it did, and no
            // later than the end of their message.
            out.push(Msg {
                data: buf[..n - 1].to_vec(),
                fds: Vec::new(),
                creds: r.creds,
            });
            out.push(Msg {
                data: buf[n - 1..n].to_vec(),
                fds: r.fds,
                creds: r.creds,
            });
        } else {
            out.push(Msg {
                data: buf[..n].to_vec(),
                fds: r.fds,
                creds: r.creds,
            });
        }
    }
    Err(Error::Unsupported {
        pid,
        what: format!("{what} has more than {MAX_MESSAGES} queued messages"),
    })
}

/// Sends `msgs` from `from`, each as one send (one datagram each for
/// message-oriented sockets), with the fds `rights` gives for the file ids
/// of each. Never blocks: a full queue is an error.
pub fn requeue_with<'a>(
    from: BorrowedFd<'_>,
    msgs: &[Queued],
    rights: impl Fn(u32) -> Option<BorrowedFd<'a>>,
    what: &str,
) -> Result<()> {
    for m in msgs {
        let mut fds = Vec::with_capacity(m.rights.len());
        for &id in &m.rights {
            fds.push(rights(id).ok_or_else(|| Error::Mismatch {
                what: format!(
                    "a message queued for {what} carries file id {id}, which was not made"
                ),
            })?);
        }
        let mut off = 0;
        // A stream send may go in parts; bound the loop by the length. The
        // fds go with the first part.
        for _ in 0..=m.data.len() {
            let passing: &[BorrowedFd<'_>] = if off == 0 { &fds } else { &[] };
            let n = sock::send_msg(
                from,
                &m.data[off..],
                passing,
                m.creds,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            )
            .map_err(|errno| Error::Mismatch {
                what: format!(
                    "putting {} queued bytes ({} fds) back into {what}: {errno}",
                    m.data.len(),
                    m.rights.len()
                ),
            })?;
            off += n;
            if off >= m.data.len() {
                break;
            }
        }
        if off < m.data.len() {
            return Err(Error::Mismatch {
                what: format!("putting queued data back into {what}: short send"),
            });
        }
    }
    Ok(())
}

/// Sends `msgs`, which carry no fds, from `from` (see `requeue_with`).
pub fn requeue(from: BorrowedFd<'_>, msgs: &[Queued], what: &str) -> Result<()> {
    requeue_with(from, msgs, |_| None, what)
}

/// The queued data of a dump, written to `sk-queues.img` at the end.
#[derive(Debug, Default)]
pub struct Queues {
    entries: Vec<(pb::SkPacketEntry, Vec<u8>)>,
}

impl Queues {
    /// Adds the messages queued for socket `id_for`; hands back those
    /// carrying fds, as (message index, fds), for the caller to dump the
    /// fds and name them with `set_rights`.
    pub fn add(&mut self, id_for: u32, msgs: Vec<Msg>) -> Vec<(usize, Vec<OwnedFd>)> {
        let mut carrying = Vec::new();
        for m in msgs {
            if !m.fds.is_empty() {
                carrying.push((self.entries.len(), m.fds));
            }
            self.entries.push((
                pb::SkPacketEntry {
                    id_for,
                    length: m.data.len() as u32,
                    scm: Vec::new(),
                    ucred: m.creds.map(|c| pb::SkUcredEntry {
                        uid: c.uid,
                        gid: c.gid,
                        pid: c.pid as u32,
                    }),
                },
                m.data,
            ));
        }
        carrying
    }

    /// Names the fds of message `index` by their file ids.
    pub fn set_rights(&mut self, index: usize, ids: Vec<u32>) {
        if let Some((e, _)) = self.entries.get_mut(index) {
            e.scm = vec![pb::ScmEntry {
                r#type: SCM_RIGHTS,
                rights: ids,
            }];
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut w = image::ImageWriter::create(dir, "sk-queues.img", magic::SK_QUEUES)?;
        for (e, data) in &self.entries {
            w.write(e)?;
            w.write_raw(data)?;
        }
        w.finish()?;
        Ok(())
    }

    /// Reads `sk-queues.img` (absent: no queued data) into messages by
    /// the id of the socket they are queued for.
    pub fn load(dir: &Path) -> Result<HashMap<u32, Vec<Queued>>> {
        let mut out: HashMap<u32, Vec<Queued>> = HashMap::new();
        if !dir.join("sk-queues.img").exists() {
            return Ok(out);
        }
        let mut r = image::ImageReader::open(dir, "sk-queues.img", magic::SK_QUEUES)?;
        while let Some(e) = r.next::<pb::SkPacketEntry>()? {
            let mut rights = Vec::new();
            for s in &e.scm {
                if s.r#type != SCM_RIGHTS {
                    return Err(Error::Mismatch {
                        what: format!(
                            "sk-queues.img: a message for socket id {} carries control messages of type {}, which criu-rs cannot restore",
                            e.id_for, s.r#type
                        ),
                    });
                }
                rights.extend_from_slice(&s.rights);
            }
            let data = r.read_raw(u64::from(e.length))?;
            let creds = e.ucred.map(|c| Ucred {
                pid: c.pid as i32,
                uid: c.uid,
                gid: c.gid,
            });
            out.entry(e.id_for).or_default().push(Queued {
                data,
                rights,
                creds,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::send;
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::net::{UnixDatagram, UnixStream};

    fn datas(v: Vec<Msg>) -> Vec<Vec<u8>> {
        v.into_iter().map(|m| m.data).collect()
    }

    fn plain(v: &[Vec<u8>]) -> Vec<Queued> {
        v.iter().cloned().map(Queued::plain).collect()
    }

    fn msgs(v: &[&[u8]]) -> Vec<Msg> {
        v.iter()
            .map(|d| Msg {
                data: d.to_vec(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn peek_leaves_the_stream_queue_alone() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"hello ").unwrap();
        a.write_all(b"world").unwrap();
        let got = datas(peek(b.as_fd(), SockType::Stream, false, 0, "test").unwrap());
        assert_eq!(got.concat(), b"hello world");
        assert_eq!(
            sock::get_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF).unwrap(),
            -1
        );
        let mut s = [0u8; 11];
        b.read_exact(&mut s).unwrap();
        assert_eq!(&s, b"hello world");
    }

    #[test]
    fn peek_keeps_datagram_boundaries_and_requeue_restores_them() {
        let (a, b) = UnixDatagram::pair().unwrap();
        for m in [&b"x"[..], b"", b"yyy"] {
            a.send(m).unwrap();
        }
        let got = datas(peek(b.as_fd(), SockType::Datagram, false, 0, "test").unwrap());
        assert_eq!(got, vec![b"x".to_vec(), vec![], b"yyy".to_vec()]);
        let (c, d) = UnixDatagram::pair().unwrap();
        requeue(c.as_fd(), &plain(&got), "test").unwrap();
        let mut buf = [0u8; 8];
        for want in [&b"x"[..], b"", b"yyy"] {
            let n = d.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn peek_stops_at_the_end_of_a_shut_down_seqpacket_queue() {
        use nix::sys::socket::{shutdown, socketpair, AddressFamily, Shutdown, SockFlag};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )
        .unwrap();
        send(a.as_raw_fd(), b"rec", MsgFlags::empty()).unwrap();
        send(a.as_raw_fd(), b"", MsgFlags::empty()).unwrap();
        send(a.as_raw_fd(), b"end", MsgFlags::empty()).unwrap();
        let open = datas(peek(b.as_fd(), SockType::SeqPacket, false, 0, "test").unwrap());
        assert_eq!(open, vec![b"rec".to_vec(), vec![], b"end".to_vec()]);
        let (c, d) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )
        .unwrap();
        send(c.as_raw_fd(), b"last", MsgFlags::empty()).unwrap();
        shutdown(c.as_raw_fd(), Shutdown::Write).unwrap();
        // Without the shutdown hint this would read end-of-file records
        // until the guard trips.
        let shut = datas(peek(d.as_fd(), SockType::SeqPacket, true, 0, "test").unwrap());
        assert_eq!(shut, vec![b"last".to_vec()]);
    }

    #[test]
    fn queues_image_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queues::default();
        assert!(q.add(8, msgs(&[b"b->a"])).is_empty());
        assert!(q.add(9, msgs(&[b"a->b", b"more"])).is_empty());
        q.add(9, msgs(&[b"fds"]));
        q.set_rights(3, vec![4, 5]);
        q.write(dir.path()).unwrap();
        let back = Queues::load(dir.path()).unwrap();
        assert_eq!(back[&8], plain(&[b"b->a".to_vec()]));
        let mut nine = plain(&[b"a->b".to_vec(), b"more".to_vec()]);
        nine.push(Queued {
            data: b"fds".to_vec(),
            rights: vec![4, 5],
            creds: None,
        });
        assert_eq!(back[&9], nine);
    }

    #[test]
    fn creds_are_peeked_kept_in_the_image_and_sent_again() {
        let (a, b) = UnixDatagram::pair().unwrap();
        sock::set_int(b.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).unwrap();
        a.send(b"who").unwrap();
        let mut got = peek(b.as_fd(), SockType::Datagram, false, 0, "test").unwrap();
        let me = Ucred {
            pid: std::process::id() as i32,
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        assert_eq!(got[0].creds, Some(me));
        // In the tree, criu's pid is 7; the user namespace maps 1000 up.
        let tree = HashMap::from([(me.pid, 7)]);
        let userns = pb::UsernsEntry {
            uid_map: vec![pb::UidGidExtent {
                first: 0,
                lower_first: me.uid.saturating_sub(1000),
                count: 4000,
            }],
            gid_map: vec![pb::UidGidExtent {
                first: 0,
                lower_first: me.gid.saturating_sub(1000),
                count: 4000,
            }],
        };
        creds_to_tree(&mut got, &tree, Some(&userns), 0, "test").unwrap();
        let inner = got[0].creds.unwrap();
        assert_eq!(inner.pid, 7);
        assert_eq!(inner.uid, me.uid - me.uid.saturating_sub(1000));
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queues::default();
        q.add(3, got);
        q.write(dir.path()).unwrap();
        let mut back = Queues::load(dir.path()).unwrap().remove(&3).unwrap();
        assert_eq!(back[0].creds, Some(inner));
        let hosts = HashMap::from([(7, me.pid)]);
        creds_to_host(&mut back, &hosts, Some(&userns), "test").unwrap();
        assert_eq!(back[0].creds, Some(me));
        let (c, d) = UnixDatagram::pair().unwrap();
        sock::set_int(d.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).unwrap();
        requeue(c.as_fd(), &back, "test").unwrap();
        let mut buf = [0u8; 8];
        let r = sock::recv_with_fds(d.as_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert_eq!((&buf[..r.bytes], r.creds), (&b"who"[..], Some(me)));
    }

    #[test]
    fn a_sender_outside_the_tree_is_refused() {
        let mut m = vec![Msg {
            data: b"x".to_vec(),
            creds: Some(Ucred {
                pid: 12345,
                uid: 0,
                gid: 0,
            }),
            ..Default::default()
        }];
        let tree = HashMap::from([(1, 1)]);
        let e = creds_to_tree(&mut m, &tree, None, 5, "fd 3").unwrap_err();
        assert!(e.to_string().contains("pid 12345"), "{e}");
        let mut q = vec![Queued {
            creds: Some(Ucred {
                pid: 2,
                uid: 5000,
                gid: 0,
            }),
            ..Default::default()
        }];
        let ident = pb::UsernsEntry {
            uid_map: vec![pb::UidGidExtent {
                first: 0,
                lower_first: 100_000,
                count: 100,
            }],
            gid_map: vec![pb::UidGidExtent {
                first: 0,
                lower_first: 100_000,
                count: 100,
            }],
        };
        assert!(creds_to_host(&mut q, &HashMap::new(), Some(&ident), "t").is_err());
        q[0].creds = Some(Ucred {
            pid: 2,
            uid: 5,
            gid: 6,
        });
        creds_to_host(&mut q, &HashMap::new(), Some(&ident), "t").unwrap();
        assert_eq!(
            q[0].creds,
            Some(Ucred {
                pid: 2,
                uid: 100_005,
                gid: 100_006
            })
        );
    }

    #[test]
    fn golden_queue_is_read() {
        // sk-queues.img of upstream CRIU 4.2 (golden case "fds").
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sk-queues.img"),
            include_bytes!("fixtures/golden-sk-queues.img"),
        )
        .unwrap();
        let q = Queues::load(dir.path()).unwrap();
        assert_eq!(q[&8], plain(&[b"b->a".to_vec()]));
        assert_eq!(q[&9], plain(&[b"a->b".to_vec()]));
    }

    #[test]
    fn stream_fds_stay_with_the_end_of_their_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut aw = &a;
        aw.write_all(b"plain").unwrap();
        sock::send_with_fds(a.as_fd(), b"with-fd", &[r.as_fd()], MsgFlags::empty()).unwrap();
        aw.write_all(b"tail").unwrap();
        let got = peek(b.as_fd(), SockType::Stream, false, 0, "test").unwrap();
        let shape: Vec<(Vec<u8>, usize)> =
            got.iter().map(|m| (m.data.clone(), m.fds.len())).collect();
        assert_eq!(
            shape,
            vec![
                (b"plainwith-f".to_vec(), 0),
                (b"d".to_vec(), 1),
                (b"tail".to_vec(), 0)
            ]
        );
        // The fd criu got is the pipe's read end.
        assert!(crate::sys::kcmp::same_file(
            std::process::id() as i32,
            std::os::fd::AsRawFd::as_raw_fd(&got[1].fds[0]),
            std::process::id() as i32,
            std::os::fd::AsRawFd::as_raw_fd(&r)
        )
        .unwrap());
        // Nothing was consumed.
        let mut all = [0u8; 16];
        let mut br = &b;
        br.read_exact(&mut all).unwrap();
        assert_eq!(&all, b"plainwith-fdtail");
    }
}
