//! Established TCP connections in repair mode (`--tcp-established`).
//!
//! Dump: the socket is put in repair mode (which also keeps the kernel from
//! sending anything when it is closed), and its sequence numbers, negotiated
//! options, window and both queues are read out into `tcp-stream-<ino>.img`.
//! Restore: a new socket in repair mode gets the sequence numbers, is bound
//! and "connected" without a handshake, gets its queues, options and window
//! back, and leaves repair mode only once every socket of the restore exists
//! (so that what it sends finds its peer).

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{recv, send, MsgFlags};

use crate::image::{self, magic, pb};
use crate::sys::sock;

use super::super::{Error, Result};
use super::socket::SkRestore;

const REPAIR_ON: i32 = 1;
const REPAIR_OFF: i32 = 0;
const NO_QUEUE: i32 = 0;
const RECV_QUEUE: i32 = 1;
const SEND_QUEUE: i32 = 2;

/// `tcpi_options` bits (also the image's `opt_mask`).
const OPT_TIMESTAMPS: u32 = 1;
const OPT_SACK: u32 = 2;
const OPT_WSCALE: u32 = 4;

/// TCP option kinds for TCP_REPAIR_OPTIONS.
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

/// Bytes of the send queue not sent yet.
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

const TCP_ESTABLISHED: u8 = 1;
const TCP_SYN_SENT: u8 = 2;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_LAST_ACK: u8 = 9;
const TCP_CLOSING: u8 = 11;

/// Whether TCP state `s` is a connection criu dumps in repair mode:
/// established, half closed on one side or both, or still connecting
/// (SYN_SENT: restored by connecting again with the same first sequence
/// number, as upstream does).
pub fn connected(s: u8) -> bool {
    matches!(
        s,
        TCP_ESTABLISHED
            | TCP_SYN_SENT
            | TCP_FIN_WAIT1
            | TCP_FIN_WAIT2
            | TCP_CLOSE_WAIT
            | TCP_LAST_ACK
            | TCP_CLOSING
    )
}

/// The socket has sent its FIN (its write sequence counts it).
fn sent_fin(s: u8) -> bool {
    matches!(
        s,
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_LAST_ACK | TCP_CLOSING
    )
}

/// The socket has received its peer's FIN (its receive sequence counts it).
fn got_fin(s: u8) -> bool {
    matches!(s, TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING)
}

/// The sockets criu put in repair mode, with (restore only) the part of the
/// send queue that was never sent, to be sent once repair mode is left.
///
/// Dropped without [`Repaired::keep_locked`], it takes every socket out of
/// repair mode again (a failed dump, or `--leave-running`).
#[derive(Debug, Default)]
pub struct Repaired {
    socks: Vec<Held>,
    keep: bool,
}

#[derive(Debug)]
struct Held {
    fd: OwnedFd,
    unsent: Vec<u8>,
    /// `sk_shutdown` bits to apply once out of repair mode (a FIN to send
    /// again, a FIN received).
    shutdown: u8,
    what: String,
}

impl Repaired {
    fn add(&mut self, fd: OwnedFd, unsent: Vec<u8>, shutdown: u8, what: &str) {
        self.socks.push(Held {
            fd,
            unsent,
            shutdown,
            what: what.to_string(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The dumped tree is killed: leave its connections in repair mode so
    /// that they go away without a FIN or RST.
    pub fn keep_locked(&mut self) {
        self.keep = true;
    }

    /// Takes every socket out of repair mode, then sends the data that was
    /// queued but never sent and shuts down what was shut down: a FIN sent
    /// before the dump is sent again at its place in the stream (the peer
    /// restored with it takes it as new, another peer as a retransmission),
    /// and a FIN received makes reads end.
    pub fn release(&mut self) -> Result<()> {
        let socks = std::mem::take(&mut self.socks);
        for h in &socks {
            set(
                h.fd.as_fd(),
                libc::TCP_REPAIR,
                REPAIR_OFF,
                "TCP_REPAIR off",
                &h.what,
            )?;
        }
        for h in &socks {
            send_all(
                h.fd.as_fd(),
                &h.unsent,
                &h.what,
                "the unsent part of the send queue",
            )?;
            super::socket::apply_shutdown(h.fd.as_fd(), Some(i32::from(h.shutdown)), &h.what)?;
        }
        Ok(())
    }
}

impl Drop for Repaired {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for h in &self.socks {
            if let Err(errno) =
                sock::set_int(h.fd.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, REPAIR_OFF)
            {
                tracing::warn!("could not take {} out of TCP repair mode: {errno}", h.what);
            }
        }
    }
}

fn set(fd: BorrowedFd<'_>, opt: i32, v: i32, name: &str, what: &str) -> Result<()> {
    sock::set_int(fd, libc::SOL_TCP, opt, v).map_err(|errno| Error::Mismatch {
        what: format!("setsockopt {name} = {v} on {what}: {errno}"),
    })
}

/// Sets the sequence number of queue `q` (a socket in repair mode).
fn set_seq(fd: BorrowedFd<'_>, q: i32, v: u32, what: &str) -> Result<()> {
    set(fd, libc::TCP_REPAIR_QUEUE, q, "TCP_REPAIR_QUEUE", what)?;
    set(fd, libc::TCP_QUEUE_SEQ, v as i32, "TCP_QUEUE_SEQ", what)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    b.get(i * 4..i * 4 + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// Reads `len` bytes of the queue selected with TCP_REPAIR_QUEUE.
fn peek(fd: BorrowedFd<'_>, len: usize, pid: i32, what: &str, q: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    use std::os::fd::AsRawFd;
    let n = recv(
        fd.as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(|errno| Error::Sys {
        pid,
        what: format!("reading the {q} queue of {what}"),
        errno,
    })?;
    if n != len {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what}: the {q} queue gave {n} bytes of {len}"),
        });
    }
    Ok(buf)
}

fn send_all(fd: BorrowedFd<'_>, mut data: &[u8], what: &str, q: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    while !data.is_empty() {
        let n = send(fd.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT).map_err(|errno| {
            Error::Mismatch {
                what: format!(
                    "restoring {q} of {what} ({} bytes left): {errno}",
                    data.len()
                ),
            }
        })?;
        if n == 0 {
            return Err(Error::Mismatch {
                what: format!("restoring {q} of {what}: the kernel took no byte"),
            });
        }
        data = &data[n..];
    }
    Ok(())
}

/// Dump half: sequence numbers, window, options and both queues. The
/// socket stays in repair mode, held in `repaired`.
pub fn dump(
    file: BorrowedFd<'_>,
    pid: i32,
    what: &str,
    repaired: &mut Repaired,
) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>)> {
    let sys = |name: &str| {
        let what = format!("{name} of {what}");
        move |errno| Error::Sys { pid, what, errno }
    };
    let fd = file.try_clone_to_owned().map_err(|e| Error::Io {
        pid,
        what: format!("duplicating {what}"),
        source: e,
    })?;
    sock::set_int(fd.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, REPAIR_ON).map_err(|errno| {
        Error::Sys {
            pid,
            what: format!(
                "putting {what} in TCP repair mode (needs CAP_NET_ADMIN in its network namespace)"
            ),
            errno,
        }
    })?;
    repaired.add(fd, Vec::new(), 0, what);
    let fd = file;
    let info = sock::get_bytes(fd, libc::SOL_TCP, libc::TCP_INFO, 8)
        .map_err(sys("getsockopt TCP_INFO"))?;
    let state = info.first().copied().unwrap_or(0);
    if !connected(state) {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what} went to TCP state {state} while being dumped"),
        });
    }
    let opt_mask = u32::from(info.get(5).copied().unwrap_or(0));
    let wscales = info.get(6).copied().unwrap_or(0);
    let (snd_wscale, rcv_wscale) = if opt_mask & OPT_WSCALE != 0 {
        (u32::from(wscales & 0xf), u32::from(wscales >> 4))
    } else {
        (0, 0)
    };
    let mut outq_len =
        sock::ioctl_int(fd, libc::TIOCOUTQ as libc::c_ulong).map_err(sys("SIOCOUTQ"))? as u32;
    let mut unsq_len = sock::ioctl_int(fd, SIOCOUTQNSD).map_err(sys("SIOCOUTQNSD"))? as u32;
    if sent_fin(state) {
        // The FIN counts in the queue lengths but is no data (as upstream
        // does, the lengths leave it out; the sequence keeps it).
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    let inq_len =
        sock::ioctl_int(fd, libc::FIONREAD as libc::c_ulong).map_err(sys("SIOCINQ"))? as u32;
    let mss_clamp = sock::get_int(fd, libc::SOL_TCP, libc::TCP_MAXSEG)
        .map_err(sys("getsockopt TCP_MAXSEG"))? as u32;
    let timestamp = if opt_mask & OPT_TIMESTAMPS != 0 {
        Some(
            sock::get_int(fd, libc::SOL_TCP, libc::TCP_TIMESTAMP)
                .map_err(sys("getsockopt TCP_TIMESTAMP"))? as u32,
        )
    } else {
        None
    };
    let window = match sock::get_bytes(fd, libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, 20) {
        Ok(w) => Some(w),
        Err(nix::errno::Errno::ENOPROTOOPT) => None,
        Err(errno) => return Err(sys("getsockopt TCP_REPAIR_WINDOW")(errno)),
    };
    let queue = |q: i32, len: u32, name: &str| -> Result<(u32, Vec<u8>)> {
        sock::set_int(fd, libc::SOL_TCP, libc::TCP_REPAIR_QUEUE, q)
            .map_err(sys("setsockopt TCP_REPAIR_QUEUE"))?;
        let seq = sock::get_int(fd, libc::SOL_TCP, libc::TCP_QUEUE_SEQ)
            .map_err(sys("getsockopt TCP_QUEUE_SEQ"))? as u32;
        Ok((seq, peek(fd, len as usize, pid, what, name)?))
    };
    let (inq_seq, inq) = queue(RECV_QUEUE, inq_len, "receive")?;
    let (outq_seq, outq) = queue(SEND_QUEUE, outq_len, "send")?;
    sock::set_int(fd, libc::SOL_TCP, libc::TCP_REPAIR_QUEUE, NO_QUEUE)
        .map_err(sys("setsockopt TCP_REPAIR_QUEUE"))?;
    let flag = |o: i32, name: &str| -> Result<Option<bool>> {
        let v = sock::get_int(fd, libc::SOL_TCP, o).map_err(sys(name))?;
        Ok((v != 0).then_some(true))
    };
    let e = pb::TcpStreamEntry {
        inq_len,
        inq_seq,
        outq_len,
        outq_seq,
        opt_mask,
        snd_wscale,
        mss_clamp,
        rcv_wscale: Some(rcv_wscale),
        timestamp,
        cork: flag(libc::TCP_CORK, "getsockopt TCP_CORK")?,
        nodelay: flag(libc::TCP_NODELAY, "getsockopt TCP_NODELAY")?,
        unsq_len: Some(unsq_len),
        snd_wl1: window.as_ref().map(|w| u32_at(w, 0)),
        snd_wnd: window.as_ref().map(|w| u32_at(w, 1)),
        max_window: window.as_ref().map(|w| u32_at(w, 2)),
        rcv_wnd: window.as_ref().map(|w| u32_at(w, 3)),
        rcv_wup: window.as_ref().map(|w| u32_at(w, 4)),
    };
    Ok((e, inq, outq))
}

/// `tcp-stream-<ino>.img`: the entry and both queues' bytes.
pub fn read_stream(dir: &Path, ino: u32) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>)> {
    let name = format!("tcp-stream-{ino:x}.img");
    let mut r = image::ImageReader::open(dir, &name, magic::TCP_STREAM)?;
    let e: pb::TcpStreamEntry = r.next()?.ok_or_else(|| Error::Mismatch {
        what: format!("{name} holds no entry"),
    })?;
    let inq = r.read_raw(u64::from(e.inq_len))?;
    let outq = r.read_raw(u64::from(e.outq_len))?;
    Ok((e, inq, outq))
}

/// TCP_REPAIR_OPTIONS for the options negotiated on the dumped connection.
fn repair_options(e: &pb::TcpStreamEntry) -> Vec<u8> {
    let mut opts: Vec<(u32, u32)> = vec![(TCPOPT_MSS, e.mss_clamp)];
    if e.opt_mask & OPT_WSCALE != 0 {
        opts.push((
            TCPOPT_WINDOW,
            e.snd_wscale | (e.rcv_wscale.unwrap_or(0) << 16),
        ));
    }
    if e.opt_mask & OPT_SACK != 0 {
        opts.push((TCPOPT_SACK_PERM, 0));
    }
    if e.opt_mask & OPT_TIMESTAMPS != 0 {
        opts.push((TCPOPT_TIMESTAMP, 0));
    }
    opts.iter()
        .flat_map(|(c, v)| c.to_ne_bytes().into_iter().chain(v.to_ne_bytes()))
        .collect()
}

/// A connect that was waiting for its SYN to be answered: in repair mode
/// the socket gets the dumped first sequence number (the send sequence
/// counts the SYN) and its address; out of repair mode it connects again
/// (without blocking: the SYN goes out now, and is sent again by the
/// kernel until answered); then back in repair mode until every socket
/// exists.
fn restore_syn_sent(
    fd: BorrowedFd<'_>,
    t: &pb::TcpStreamEntry,
    src: &SocketAddr,
    dst: &SocketAddr,
    what: &str,
) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let seq = |q: i32, v: u32| set_seq(fd, q, v, what);
    seq(RECV_QUEUE, t.inq_seq)?;
    seq(SEND_QUEUE, t.outq_seq.wrapping_sub(1))?;
    set(
        fd,
        libc::TCP_REPAIR_QUEUE,
        NO_QUEUE,
        "TCP_REPAIR_QUEUE",
        what,
    )?;
    sock::bind_inet(fd, src).map_err(|errno| Error::Mismatch {
        what: format!("binding {what} to {src}: {errno}"),
    })?;
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(|errno| Error::Mismatch {
        what: format!("F_GETFL of {what}: {errno}"),
    })?;
    let fl = OFlag::from_bits_truncate(fl);
    let setfl = |f: OFlag| {
        fcntl(fd, FcntlArg::F_SETFL(f)).map_err(|errno| Error::Mismatch {
            what: format!("F_SETFL of {what}: {errno}"),
        })
    };
    setfl(fl | OFlag::O_NONBLOCK)?;
    set(fd, libc::TCP_REPAIR, REPAIR_OFF, "TCP_REPAIR off", what)?;
    let connected = match sock::connect_inet(fd, dst) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(()),
        Err(errno) => Err(Error::Mismatch {
            what: format!("connecting {what} to {dst} again (it was in SYN_SENT): {errno}"),
        }),
    };
    let back = set(fd, libc::TCP_REPAIR, REPAIR_ON, "TCP_REPAIR", what);
    setfl(fl)?;
    connected?;
    back?;
    if let Some(ts) = t.timestamp {
        set(fd, libc::TCP_TIMESTAMP, ts as i32, "TCP_TIMESTAMP", what)?;
    }
    Ok(())
}

/// Restore half: the connection of `e`, put back in repair mode on `fd`
/// (a new TCP socket of the right family); it leaves repair mode when
/// `rs.tcp_repaired` is released.
pub fn restore(
    rs: &mut SkRestore,
    fd: BorrowedFd<'_>,
    e: &pb::InetSkEntry,
    src: &SocketAddr,
    dst: &SocketAddr,
    what: &str,
) -> Result<()> {
    let dir = rs.dir.clone().ok_or_else(|| Error::Mismatch {
        what: format!("{what}: restoring a TCP connection needs the image directory"),
    })?;
    let (t, inq, outq) = read_stream(&dir, e.ino)?;
    rs.tcp_inos.push(e.ino);
    let unsq = t.unsq_len.unwrap_or(0).min(t.outq_len) as usize;
    let sent = outq.len().saturating_sub(unsq);
    set(fd, libc::TCP_REPAIR, REPAIR_ON, "TCP_REPAIR", what)?;
    let held = fd.try_clone_to_owned().map_err(|e| Error::Mismatch {
        what: format!("duplicating {what}: {e}"),
    })?;
    let state = u8::try_from(e.state).unwrap_or(0);
    if !connected(state) {
        return Err(Error::Mismatch {
            what: format!("{what} is in TCP state {}, which is no connection", e.state),
        });
    }
    if state == TCP_SYN_SENT {
        rs.tcp_repaired.add(held, Vec::new(), 0, what);
        return restore_syn_sent(fd, &t, src, dst, what);
    }
    // The connection comes back established; the FINs are replayed when
    // it leaves repair mode, so the sequences go back before them.
    let mut shut = e.shutdown.unwrap_or(0) as u8 & 3;
    if sent_fin(state) {
        shut |= 2;
    }
    if got_fin(state) {
        shut |= 1;
    }
    let inq_seq = t.inq_seq.wrapping_sub(u32::from(got_fin(state)));
    let outq_seq = t.outq_seq.wrapping_sub(u32::from(sent_fin(state)));
    rs.tcp_repaired.add(
        held,
        outq.get(sent..).unwrap_or_default().to_vec(),
        shut,
        what,
    );
    let seq = |q: i32, v: u32| set_seq(fd, q, v, what);
    seq(RECV_QUEUE, inq_seq.wrapping_sub(t.inq_len))?;
    seq(SEND_QUEUE, outq_seq.wrapping_sub(t.outq_len))?;
    // In repair mode the port may be shared with the listener (and with the
    // dumped socket's remains): the kernel lets it be bound.
    sock::bind_inet(fd, src).map_err(|errno| Error::Mismatch {
        what: format!("binding {what} to {src}: {errno}"),
    })?;
    sock::connect_inet(fd, dst).map_err(|errno| Error::Mismatch {
        what: format!("connecting {what} to {dst} in repair mode: {errno}"),
    })?;
    sock::set_bytes(
        fd,
        libc::SOL_TCP,
        libc::TCP_REPAIR_OPTIONS,
        &repair_options(&t),
    )
    .map_err(|errno| Error::Mismatch {
        what: format!("setsockopt TCP_REPAIR_OPTIONS on {what}: {errno}"),
    })?;
    if let Some(ts) = t.timestamp {
        set(fd, libc::TCP_TIMESTAMP, ts as i32, "TCP_TIMESTAMP", what)?;
    }
    if !inq.is_empty() {
        set(
            fd,
            libc::TCP_REPAIR_QUEUE,
            RECV_QUEUE,
            "TCP_REPAIR_QUEUE",
            what,
        )?;
        send_all(fd, &inq, what, "the receive queue")?;
    }
    if sent > 0 {
        set(
            fd,
            libc::TCP_REPAIR_QUEUE,
            SEND_QUEUE,
            "TCP_REPAIR_QUEUE",
            what,
        )?;
        send_all(fd, &outq[..sent], what, "the send queue")?;
    }
    set(
        fd,
        libc::TCP_REPAIR_QUEUE,
        NO_QUEUE,
        "TCP_REPAIR_QUEUE",
        what,
    )?;
    if let (Some(a), Some(b), Some(c), Some(d), Some(mut f)) =
        (t.snd_wl1, t.snd_wnd, t.max_window, t.rcv_wnd, t.rcv_wup)
    {
        // The kernel refuses a window edge past what was received: with the
        // peer's FIN taken back, the edge goes back with it.
        if (f.wrapping_sub(inq_seq) as i32) > 0 {
            f = inq_seq;
        }
        let w: Vec<u8> = [a, b, c, d, f]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        sock::set_bytes(fd, libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, &w).map_err(|errno| {
            Error::Mismatch {
                what: format!("setsockopt TCP_REPAIR_WINDOW on {what}: {errno}"),
            }
        })?;
    }
    if t.nodelay == Some(true) {
        set(fd, libc::TCP_NODELAY, 1, "TCP_NODELAY", what)?;
    }
    if t.cork == Some(true) {
        set(fd, libc::TCP_CORK, 1, "TCP_CORK", what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_stream_image_reads_back() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/objects/files/fixtures/tcp");
        let (e, inq, outq) = read_stream(&dir, 0x180ed4).unwrap();
        assert_eq!(e.inq_len, 9);
        assert_eq!(inq, b"to-client");
        assert!(outq.is_empty());
        assert_eq!(e.opt_mask, OPT_TIMESTAMPS | OPT_SACK | OPT_WSCALE);
        assert_eq!(e.rcv_wup, Some(e.inq_seq));
    }

    /// Dumps both ends of a loopback connection, closes them in repair mode
    /// (silently), restores them from the images and talks over them.
    #[test]
    fn a_loopback_connection_survives_dump_and_restore() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"to-server").unwrap();
        s.write_all(b"to-client").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut rep = Repaired::default();
        let dc = match dump(c.as_fd(), 0, "client", &mut rep) {
            Err(Error::Sys {
                errno: nix::errno::Errno::EPERM,
                ..
            }) => {
                eprintln!("no CAP_NET_ADMIN: TCP repair cannot be tried here");
                return;
            }
            r => r.unwrap(),
        };
        let ds = dump(s.as_fd(), 0, "server", &mut rep).unwrap();
        assert_eq!(dc.1, b"to-client");
        assert_eq!(ds.1, b"to-server");
        assert_eq!(dc.0.outq_seq, ds.0.inq_seq);
        let ends = |t: &TcpStream| (t.local_addr().unwrap(), t.peer_addr().unwrap());
        let (ce, se) = (ends(&c), ends(&s));
        rep.keep_locked();
        drop(rep);
        drop((c, s));
        let dir = tempfile::tempdir().unwrap();
        for (ino, d) in [(1u32, &dc), (2, &ds)] {
            let mut w = image::ImageWriter::create(
                dir.path(),
                &format!("tcp-stream-{ino:x}.img"),
                magic::TCP_STREAM,
            )
            .unwrap();
            w.write(&d.0).unwrap();
            w.write_raw(&d.1).unwrap();
            w.write_raw(&d.2).unwrap();
            w.finish().unwrap();
        }
        let mut rs = SkRestore::new(dir.path());
        let mut make = |ino: u32, (src, dst): (SocketAddr, SocketAddr)| {
            let t = std::net::TcpStream::from(
                nix::sys::socket::socket(
                    nix::sys::socket::AddressFamily::Inet,
                    nix::sys::socket::SockType::Stream,
                    nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .unwrap(),
            );
            let e = pb::InetSkEntry {
                ino,
                state: u32::from(TCP_ESTABLISHED),
                ..Default::default()
            };
            restore(&mut rs, t.as_fd(), &e, &src, &dst, "test socket").unwrap();
            t
        };
        let mut c = make(1, ce);
        let mut s = make(2, se);
        rs.release_tcp().unwrap();
        assert_eq!(ends(&c), ce);
        let mut b = [0u8; 9];
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"to-server");
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"to-client");
        c.write_all(b"again").unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"again");
    }

    #[test]
    fn repair_options_follow_the_mask() {
        let mut e = pb::TcpStreamEntry {
            mss_clamp: 1460,
            snd_wscale: 7,
            rcv_wscale: Some(10),
            opt_mask: OPT_WSCALE,
            ..Default::default()
        };
        let b = repair_options(&e);
        let words: Vec<u32> = (0..b.len() / 4).map(|i| u32_at(&b, i)).collect();
        assert_eq!(words, [TCPOPT_MSS, 1460, TCPOPT_WINDOW, 7 | (10 << 16)]);
        e.opt_mask = OPT_SACK | OPT_TIMESTAMPS;
        let b = repair_options(&e);
        let words: Vec<u32> = (0..b.len() / 4).map(|i| u32_at(&b, i)).collect();
        assert_eq!(
            words,
            [TCPOPT_MSS, 1460, TCPOPT_SACK_PERM, 0, TCPOPT_TIMESTAMP, 0]
        );
    }
}
