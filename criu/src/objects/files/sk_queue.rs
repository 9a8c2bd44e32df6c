//! Data queued in a socket's receive queue (`sk-queues.img`): read without
//! consuming it (MSG_PEEK stepped with SO_PEEK_OFF), and sent back into the
//! new socket from its peer on restore.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags, SockType};

use crate::image::{self, magic, pb};
use crate::sys::sock;

use super::super::{Error, Result};

/// Most messages criu will peek from one queue (a guard against a queue
/// that grows while it is read).
const MAX_MESSAGES: usize = 1 << 20;

/// Reads the receive queue of `fd` without consuming it: one chunk per
/// message for datagram and seqpacket sockets, chunks of the stream
/// otherwise. The socket's SO_PEEK_OFF is put back as it was.
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
) -> Result<Vec<Vec<u8>>> {
    let err = |op: &str, errno| Error::Sys {
        pid,
        what: format!("{op} of {what}"),
        errno,
    };
    let old = sock::get_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .map_err(|e| err("reading SO_PEEK_OFF", e))?;
    sock::set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .map_err(|e| err("setting SO_PEEK_OFF", e))?;
    let got = peek_all(fd, ty == SockType::Stream || rcv_shutdown, what, pid);
    let back = sock::set_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)
        .map_err(|e| err("putting SO_PEEK_OFF back", e));
    let got = got?;
    back?;
    Ok(got)
}

fn peek_all(fd: BorrowedFd<'_>, eof_on_zero: bool, what: &str, pid: i32) -> Result<Vec<Vec<u8>>> {
    let rcvbuf = sock::get_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0);
    let size = (rcvbuf.max(0) as usize * 2).max(256 * 1024);
    let mut buf = vec![0u8; size];
    let mut out = Vec::new();
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
    for _ in 0..MAX_MESSAGES {
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 16]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags);
        let msg = match r {
            Ok(m) => m,
            Err(Errno::EAGAIN) => return Ok(out),
            Err(errno) => {
                return Err(Error::Sys {
                    pid,
                    what: format!("peeking the queue of {what}"),
                    errno,
                })
            }
        };
        let n = msg.bytes;
        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
        let mut passed_fds = false;
        if let Ok(cms) = msg.cmsgs() {
            for c in cms {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    passed_fds = true;
                    for f in fds {
                        let _ = nix::unistd::close(f);
                    }
                }
            }
        }
        if passed_fds {
            return Err(Error::Unsupported {
                pid,
                what: format!("{what} has file descriptors (SCM_RIGHTS) in its queue"),
            });
        }
        if truncated {
            return Err(Error::Unsupported {
                pid,
                what: format!("{what} has a queued message larger than {size} bytes"),
            });
        }
        if n == 0 && eof_on_zero {
            return Ok(out);
        }
        out.push(buf[..n].to_vec());
    }
    Err(Error::Unsupported {
        pid,
        what: format!("{what} has more than {MAX_MESSAGES} queued messages"),
    })
}

/// Sends `msgs` from `from`, each as one send (one datagram each for
/// message-oriented sockets). Never blocks: a full queue is an error.
pub fn requeue(from: BorrowedFd<'_>, msgs: &[Vec<u8>], what: &str) -> Result<()> {
    for m in msgs {
        let mut off = 0;
        // A stream send may go in parts; bound the loop by the length.
        for _ in 0..=m.len() {
            let n = send(
                from.as_raw_fd(),
                &m[off..],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            )
            .map_err(|errno| Error::Mismatch {
                what: format!("putting {} queued bytes back into {what}: {errno}", m.len()),
            })?;
            off += n;
            if off >= m.len() {
                break;
            }
        }
        if off < m.len() {
            return Err(Error::Mismatch {
                what: format!("putting queued data back into {what}: short send"),
            });
        }
    }
    Ok(())
}

/// The queued data of a dump, written to `sk-queues.img` at the end.
#[derive(Debug, Default)]
pub struct Queues {
    entries: Vec<(pb::SkPacketEntry, Vec<u8>)>,
}

impl Queues {
    pub fn add(&mut self, id_for: u32, msgs: Vec<Vec<u8>>) {
        for m in msgs {
            self.entries.push((
                pb::SkPacketEntry {
                    id_for,
                    length: m.len() as u32,
                    scm: Vec::new(),
                },
                m,
            ));
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
    pub fn load(dir: &Path) -> Result<HashMap<u32, Vec<Vec<u8>>>> {
        let mut out: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
        if !dir.join("sk-queues.img").exists() {
            return Ok(out);
        }
        let mut r = image::ImageReader::open(dir, "sk-queues.img", magic::SK_QUEUES)?;
        while let Some(e) = r.next::<pb::SkPacketEntry>()? {
            if !e.scm.is_empty() {
                return Err(Error::Mismatch {
                    what: format!(
                        "sk-queues.img: a message for socket id {} carries control messages, which criu-rs cannot restore",
                        e.id_for
                    ),
                });
            }
            let data = r.read_raw(u64::from(e.length))?;
            out.entry(e.id_for).or_default().push(data);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    #[test]
    fn peek_leaves_the_stream_queue_alone() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"hello ").unwrap();
        a.write_all(b"world").unwrap();
        let got = peek(b.as_fd(), SockType::Stream, false, 0, "test").unwrap();
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
        let got = peek(b.as_fd(), SockType::Datagram, false, 0, "test").unwrap();
        assert_eq!(got, vec![b"x".to_vec(), vec![], b"yyy".to_vec()]);
        let (c, d) = UnixDatagram::pair().unwrap();
        requeue(c.as_fd(), &got, "test").unwrap();
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
        let open = peek(b.as_fd(), SockType::SeqPacket, false, 0, "test").unwrap();
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
        let shut = peek(d.as_fd(), SockType::SeqPacket, true, 0, "test").unwrap();
        assert_eq!(shut, vec![b"last".to_vec()]);
    }

    #[test]
    fn queues_image_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queues::default();
        q.add(8, vec![b"b->a".to_vec()]);
        q.add(9, vec![b"a->b".to_vec(), b"more".to_vec()]);
        q.write(dir.path()).unwrap();
        let back = Queues::load(dir.path()).unwrap();
        assert_eq!(back[&8], vec![b"b->a".to_vec()]);
        assert_eq!(back[&9], vec![b"a->b".to_vec(), b"more".to_vec()]);
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
        assert_eq!(q[&8], vec![b"b->a".to_vec()]);
        assert_eq!(q[&9], vec![b"a->b".to_vec()]);
    }
}
