//! Data queued in a socket's receive queue (`sk-queues.img`): read without
//! consuming it (MSG_PEEK stepped with SO_PEEK_OFF), and sent back into the
//! new socket from its peer on restore.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockType};

use crate::image::{self, magic, pb};
use crate::sys::sock;

use super::super::{Error, Result};

/// Most messages criu will peek from one queue (a guard against a queue
/// that grows while it is read).
const MAX_MESSAGES: usize = 1 << 20;

/// `scm_entry.type` of passed fds (the kernel's SCM_RIGHTS).
pub const SCM_RIGHTS: u32 = libc::SCM_RIGHTS as u32;

/// One queued message: its bytes and the fds it carries (SCM_RIGHTS), as
/// criu got them by peeking (new fds of the same open files).
#[derive(Debug, Default)]
pub struct Msg {
    pub data: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// One queued message read back from `sk-queues.img`: its bytes and the
/// file ids (in `files.img`) of the fds it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queued {
    pub data: Vec<u8>,
    pub rights: Vec<u32>,
}

impl Queued {
    pub fn plain(data: Vec<u8>) -> Self {
        Queued {
            data,
            rights: Vec::new(),
        }
    }
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
            });
            out.push(Msg {
                data: buf[n - 1..n].to_vec(),
                fds: r.fds,
            });
        } else {
            out.push(Msg {
                data: buf[..n].to_vec(),
                fds: r.fds,
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
            let n = sock::send_with_fds(
                from,
                &m.data[off..],
                passing,
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
            out.entry(e.id_for)
                .or_default()
                .push(Queued { data, rights });
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
                fds: Vec::new(),
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
        });
        assert_eq!(back[&9], nine);
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
