//! Raw `getsockopt`/`setsockopt` for the socket options (and TCP repair
//! options) criu saves and sets again: one generic pair over a plain-data
//! value, plus the shapes criu needs (int, timeval, linger, byte buffer).

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{Errno, SysResult};

fn check_int(ret: libc::c_int) -> SysResult<()> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `getsockopt` of an `int` option.
pub fn get_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes; the kernel writes at most
    // `len` bytes into `v`.
    check_int(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// `setsockopt` of an `int` option.
pub fn set_int(fd: BorrowedFd<'_>, level: i32, opt: i32, v: i32) -> SysResult<()> {
    // SAFETY: `v` lives across the call and its size is passed.
    check_int(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// `getsockopt` of an option as bytes (at most `max` of them).
pub fn get_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, max: usize) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: `buf` has `len` writable bytes; the kernel updates `len`.
    check_int(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    buf.truncate(len as usize);
    Ok(buf)
}

/// `setsockopt` of an option given as bytes.
pub fn set_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, val: &[u8]) -> SysResult<()> {
    // SAFETY: `val` is readable for its whole length, which is passed.
    check_int(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    })
}

/// A `struct timeval` option (SO_SNDTIMEO, SO_RCVTIMEO) as (sec, usec).
pub fn get_timeval(fd: BorrowedFd<'_>, level: i32, opt: i32) -> SysResult<(i64, i64)> {
    let b = get_bytes(fd, level, opt, 16)?;
    let sec = b
        .get(0..8)
        .map_or(0, |s| i64::from_ne_bytes(s.try_into().unwrap_or([0; 8])));
    let usec = b
        .get(8..16)
        .map_or(0, |s| i64::from_ne_bytes(s.try_into().unwrap_or([0; 8])));
    Ok((sec, usec))
}

pub fn set_timeval(fd: BorrowedFd<'_>, level: i32, opt: i32, sec: i64, usec: i64) -> SysResult<()> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_ne_bytes());
    b[8..].copy_from_slice(&usec.to_ne_bytes());
    set_bytes(fd, level, opt, &b)
}

/// SO_LINGER as (onoff, linger).
pub fn get_linger(fd: BorrowedFd<'_>) -> SysResult<(i32, i32)> {
    let b = get_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, 8)?;
    let on = b
        .get(0..4)
        .map_or(0, |s| i32::from_ne_bytes(s.try_into().unwrap_or([0; 4])));
    let l = b
        .get(4..8)
        .map_or(0, |s| i32::from_ne_bytes(s.try_into().unwrap_or([0; 4])));
    Ok((on, l))
}

pub fn set_linger(fd: BorrowedFd<'_>, on: i32, linger: i32) -> SysResult<()> {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&on.to_ne_bytes());
    b[4..].copy_from_slice(&linger.to_ne_bytes());
    set_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &b)
}

/// `ioctl(fd, req, &int)` for the queue-size requests (SIOCINQ, SIOCOUTQ,
/// SIOCOUTQNSD).
pub fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these requests write one int through the pointer.
    check_int(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) })?;
    Ok(v)
}

/// A `sockaddr_in`/`sockaddr_in6` for `a`, as bytes.
fn inet_sockaddr(a: &std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // suitably aligned for it.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// `bind(fd, a)` for an IPv4 or IPv6 address.
pub fn bind_inet(fd: BorrowedFd<'_>, a: &std::net::SocketAddr) -> SysResult<()> {
    let (ss, len) = inet_sockaddr(a);
    // SAFETY: `ss` holds a valid sockaddr of `len` bytes.
    check_int(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

/// `connect(fd, a)` for an IPv4 or IPv6 address.
pub fn connect_inet(fd: BorrowedFd<'_>, a: &std::net::SocketAddr) -> SysResult<()> {
    let (ss, len) = inet_sockaddr(a);
    // SAFETY: `ss` holds a valid sockaddr of `len` bytes.
    check_int(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn int_and_timeval_round_trip() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        set_int(a.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).unwrap();
        assert_eq!(
            get_int(a.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED).unwrap(),
            1
        );
        set_timeval(a.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, 3, 500_000).unwrap();
        assert_eq!(
            get_timeval(a.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO).unwrap(),
            (3, 500_000)
        );
        set_linger(a.as_fd(), 1, 7).unwrap();
        assert_eq!(get_linger(a.as_fd()).unwrap(), (1, 7));
        assert_eq!(
            get_int(a.as_fd(), libc::SOL_SOCKET, 9999),
            Err(Errno::ENOPROTOOPT)
        );
    }
}

/// The classic BPF filter attached to a socket (SO_GET_FILTER), one
/// instruction a `sock_filter`; empty when there is none.
pub fn get_filter(fd: BorrowedFd<'_>) -> SysResult<Vec<libc::sock_filter>> {
    // SO_GET_FILTER counts in instructions, not bytes: a first call with
    // no buffer gives the count.
    let mut n: libc::socklen_t = 0;
    // SAFETY: a null buffer with a length of 0 makes the kernel only write
    // the instruction count to `n`.
    check_int(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::null_mut(),
            &mut n,
        )
    })?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let zero = libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let mut v = vec![zero; n as usize];
    let mut len = n;
    // SAFETY: `v` holds `len` sock_filter entries, the unit the kernel
    // counts in for this option; it writes at most that many.
    check_int(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            v.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    v.truncate(len as usize);
    Ok(v)
}

/// Attaches the classic BPF filter `prog` to a socket (SO_ATTACH_FILTER).
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[libc::sock_filter]) -> SysResult<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| Errno::EINVAL)?,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel
    // copies the instructions and does not write through the pointer.
    check_int(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
}

/// SO_PASSPIDFD: the receiver gets a pidfd of each message's sender.
pub const SO_PASSPIDFD: i32 = 76;
/// The control message that carries that pidfd.
pub const SCM_PIDFD: i32 = 4;

/// Most fds one message can carry (the kernel's SCM_MAX_FD).
pub const MAX_FDS_PER_MSG: usize = 253;

/// The credentials a unix socket message carries (SCM_CREDENTIALS), as
/// the kernel shows them to the process that asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// What one `recvmsg` got: its length, whether the data or the control
/// messages were cut short, the fds it carried (SCM_RIGHTS), now owned by
/// the caller, and its sender's credentials (SCM_CREDENTIALS, only when
/// the socket has SO_PASSCRED).
#[derive(Debug)]
pub struct Received {
    pub bytes: usize,
    pub truncated: bool,
    pub ctrunc: bool,
    pub fds: Vec<std::os::fd::OwnedFd>,
    pub creds: Option<Ucred>,
}

/// One `recvmsg(fd, buf, flags)` that keeps the fds passed with the message.
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: nix::sys::socket::MsgFlags,
) -> SysResult<Received> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_MSG], libc::ucred, libc::c_int);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    let mut creds = None;
    if let Ok(cms) = msg.cmsgs() {
        for c in cms {
            match c {
                ControlMessageOwned::ScmRights(raw) => {
                    // SAFETY: the kernel installed these fds in this process
                    // for this message; nothing else owns them.
                    fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                }
                ControlMessageOwned::ScmCredentials(u) => {
                    creds = Some(Ucred {
                        pid: u.pid(),
                        uid: u.uid(),
                        gid: u.gid(),
                    });
                }
                ControlMessageOwned::Unknown(u)
                    if u.cmsg_header.cmsg_level == libc::SOL_SOCKET
                        && u.cmsg_header.cmsg_type == SCM_PIDFD =>
                {
                    // A pidfd of the sender (SO_PASSPIDFD): its pid is in
                    // the credentials; the fd the kernel made is closed.
                    if let Some(b) = u.data_bytes.get(0..4) {
                        let raw = RawFd::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                        // SAFETY: the kernel installed this pidfd in this
                        // process for this message; nothing else owns it.
                        drop(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Received {
        bytes: msg.bytes,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        ctrunc: msg.flags.contains(MsgFlags::MSG_CTRUNC),
        fds,
        creds,
    })
}

/// One `sendmsg(fd, data, flags)` carrying `fds` with SCM_RIGHTS (none: a
/// plain send).
pub fn send_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: nix::sys::socket::MsgFlags,
) -> SysResult<usize> {
    send_msg(fd, data, fds, None, flags)
}

/// One `sendmsg(fd, data, flags)` carrying `fds` (SCM_RIGHTS, when any)
/// and the sender credentials `creds` (SCM_CREDENTIALS, when given; the
/// kernel lets only a privileged sender name another pid, uid or gid).
pub fn send_msg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    creds: Option<Ucred>,
    flags: nix::sys::socket::MsgFlags,
) -> SysResult<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, UnixCredentials};
    let raw: Vec<std::os::fd::RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [std::io::IoSlice::new(data)];
    let ucred = creds.map(|c| {
        UnixCredentials::from(libc::ucred {
            pid: c.pid,
            uid: c.uid,
            gid: c.gid,
        })
    });
    let mut cmsgs: Vec<ControlMessage<'_>> = Vec::with_capacity(2);
    if !raw.is_empty() {
        cmsgs.push(ControlMessage::ScmRights(&raw));
    }
    if let Some(u) = &ucred {
        cmsgs.push(ControlMessage::ScmCredentials(u));
    }
    sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsgs, flags, None)
}

/// `socket(domain, ty | SOCK_CLOEXEC, proto)` for protocols the typed
/// wrappers do not name (netlink families, packet ethertypes, raw IP).
pub fn socket_raw(domain: i32, ty: i32, proto: i32) -> SysResult<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: integers only.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by no one else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `bind(fd, sockaddr_ll{protocol, ifindex})` for a packet socket;
/// `protocol` in host order.
pub fn bind_packet(fd: BorrowedFd<'_>, protocol: u16, ifindex: i32) -> SysResult<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
    check_int(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
}

/// `PACKET_ADD_MEMBERSHIP` of a `packet_mreq` (ifindex, type, address).
pub fn packet_add_membership(
    fd: BorrowedFd<'_>,
    ifindex: i32,
    ty: u16,
    addr: &[u8],
) -> SysResult<()> {
    // SAFETY: all-zero is a valid packet_mreq.
    let mut m: libc::packet_mreq = unsafe { std::mem::zeroed() };
    m.mr_ifindex = ifindex;
    m.mr_type = ty;
    let n = addr.len().min(m.mr_address.len());
    m.mr_alen = n as u16;
    m.mr_address[..n].copy_from_slice(&addr[..n]);
    // SAFETY: `m` lives across the call and its size is passed.
    check_int(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&m as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })
}

/// The local and peer addresses of an IPv4/IPv6 socket (`getsockname`,
/// `getpeername`; None when not connected).
pub fn inet_names(
    fd: BorrowedFd<'_>,
) -> SysResult<(std::net::SocketAddr, Option<std::net::SocketAddr>)> {
    let local = name_of(fd, false)?.ok_or(Errno::EAFNOSUPPORT)?;
    let peer = match name_of(fd, true) {
        Ok(a) => a,
        Err(Errno::ENOTCONN) => None,
        Err(e) => return Err(e),
    };
    Ok((local, peer))
}

fn name_of(fd: BorrowedFd<'_>, peer: bool) -> SysResult<Option<std::net::SocketAddr>> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast();
    // SAFETY: `ss` and `len` are valid for writes of `len` bytes.
    check_int(unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    })?;
    Ok(match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel filled a sockaddr_in (family AF_INET),
            // which fits in sockaddr_storage.
            let a: libc::sockaddr_in =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let a: libc::sockaddr_in6 =
                unsafe { std::ptr::read((&ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    })
}
