//! A small netlink client (rtnetlink, sock_diag): requests with their
//! acknowledgement, dumps, and the message and attribute (`rtattr`)
//! encoding, in the network namespace of the calling thread.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

use super::{Errno, SysResult};

/// Size of `struct nlmsghdr`.
pub const HDR: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

/// Netlink (and rtattr) payloads are padded to 4 bytes.
pub fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A native-endian `u16` at `off` of a netlink payload.
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

/// A native-endian `u32` at `off` of a netlink payload.
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// One netlink message as it travels: header and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub ty: u16,
    pub flags: u16,
    /// The payload (after the header, without the trailing padding).
    pub payload: &'a [u8],
    /// The whole message, header included.
    pub raw: &'a [u8],
}

/// Splits a buffer of netlink messages; stops at the first malformed one.
pub fn messages(mut b: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    while b.len() >= HDR {
        let (Some(len), Some(ty), Some(flags)) = (u32_at(b, 0), u16_at(b, 4), u16_at(b, 6)) else {
            break;
        };
        let len = len as usize;
        if len < HDR || len > b.len() {
            break;
        }
        out.push(Message {
            ty,
            flags,
            payload: &b[HDR..len],
            raw: &b[..len],
        });
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// Splits netlink attributes into (type, payload), the NLA_F_NESTED and
/// NLA_F_NET_BYTEORDER bits cleared; stops at the first malformed one.
pub fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let (Some(len), Some(ty)) = (u16_at(b, 0), u16_at(b, 2)) else {
            break;
        };
        let len = len as usize;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty & 0x3fff, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// The payload of attribute `ty` among `attrs`, if there.
pub fn attr<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(t, _)| *t == ty).map(|(_, p)| *p)
}

/// A `u32` attribute payload.
pub fn attr_u32(p: &[u8]) -> Option<u32> {
    u32_at(p, 0)
}

/// A NUL-terminated string attribute payload.
pub fn attr_str(p: &[u8]) -> String {
    let end = p.iter().position(|&c| c == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

/// Builds a message payload: a fixed header, then attributes, possibly
/// nested.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// Starts with the fixed part of the message (`ifinfomsg`, …).
    pub fn new(fixed: &[u8]) -> Builder {
        let mut buf = fixed.to_vec();
        buf.resize(align4(buf.len()), 0);
        Builder { buf }
    }

    /// Appends attribute `ty` with payload `p`.
    pub fn attr(&mut self, ty: u16, p: &[u8]) -> &mut Builder {
        let len = 4 + p.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(p);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends a NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Builder {
        let mut p = s.as_bytes().to_vec();
        p.push(0);
        self.attr(ty, &p)
    }

    /// Appends attribute `ty` holding what `f` builds (itself a payload
    /// with a fixed part of `fixed`).
    pub fn nest(&mut self, ty: u16, fixed: &[u8], f: impl FnOnce(&mut Builder)) -> &mut Builder {
        let mut inner = Builder::new(fixed);
        f(&mut inner);
        self.attr(ty | 0x8000, &inner.buf)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A netlink socket of the caller's network namespace (NETLINK_ROUTE
/// unless opened with `open_protocol`).
pub struct Route {
    sk: OwnedFd,
    seq: u32,
}

impl Route {
    pub fn open() -> SysResult<Route> {
        Self::open_protocol(SockProtocol::NetlinkRoute)
    }

    /// A socket of another netlink family (NETLINK_SOCK_DIAG, …).
    pub fn open_protocol(protocol: SockProtocol) -> SysResult<Route> {
        let sk = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )?;
        Ok(Route { sk, seq: 0 })
    }

    fn send(&mut self, ty: u16, flags: u16, payload: &[u8]) -> SysResult<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = Vec::with_capacity(HDR + payload.len());
        m.extend_from_slice(&((HDR + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        sendto(
            self.sk.as_raw_fd(),
            &m,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        Ok(self.seq)
    }

    /// Receives until `done` says the exchange is over; hands every
    /// message of sequence `seq` to `each`.
    fn receive(
        &mut self,
        seq: u32,
        mut each: impl FnMut(&Message<'_>) -> SysResult<bool>,
    ) -> SysResult<()> {
        let mut buf = vec![0u8; 64 * 1024];
        // An exchange ends with NLMSG_DONE or an error message; bound the
        // loop anyway.
        for _ in 0..1_000_000 {
            let n = recv(self.sk.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            if n == 0 {
                return Err(Errno::ECONNRESET);
            }
            for m in messages(&buf[..n]) {
                if u32_at(m.raw, 8) != Some(seq) {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = u32_at(m.payload, 0).map_or(0, |c| c as i32);
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(Errno::from_raw(-code))
                        };
                    }
                    _ => {
                        if !each(&m)? {
                            return Ok(());
                        }
                    }
                }
            }
        }
        Err(Errno::EOVERFLOW)
    }

    /// Sends a request of type `ty` and waits for its acknowledgement.
    pub fn request(&mut self, ty: u16, flags: u16, payload: &[u8]) -> SysResult<()> {
        let seq = self.send(ty, flags | NLM_F_REQUEST | NLM_F_ACK, payload)?;
        self.receive(seq, |_| Ok(true))
    }

    /// Sends a whole message as it was recorded (header included), with
    /// the request and acknowledgement flags plus `flags`, and waits for its
    /// acknowledgement.
    pub fn replay(&mut self, raw: &[u8], flags: u16) -> SysResult<()> {
        let Some(m) = messages(raw).into_iter().next() else {
            return Err(Errno::EINVAL);
        };
        self.request(m.ty, flags, m.payload)
    }

    /// A dump request of type `ty`: every message of the answer, whole
    /// (header included).
    pub fn dump(&mut self, ty: u16, payload: &[u8]) -> SysResult<Vec<Vec<u8>>> {
        let seq = self.send(ty, NLM_F_REQUEST | NLM_F_DUMP, payload)?;
        let mut out = Vec::new();
        self.receive(seq, |m| {
            out.push(m.raw.to_vec());
            Ok(true)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builder_and_parsers_agree() {
        let mut b = Builder::new(&[1, 2, 3]);
        b.attr_str(3, "lo").nest(18, &[], |n| {
            n.attr_str(1, "veth");
        });
        let a = attrs(&b.bytes()[4..]);
        assert_eq!(a.len(), 2);
        assert_eq!(attr_str(attr(&a, 3).unwrap()), "lo");
        let inner = attrs(attr(&a, 18).unwrap());
        assert_eq!(attr_str(attr(&inner, 1).unwrap()), "veth");
    }

    #[test]
    fn dump_of_links_has_the_loopback() {
        let mut r = Route::open().unwrap();
        // struct ifinfomsg, all zeroes: every link
        let links = r.dump(libc::RTM_GETLINK, &[0u8; 16]).unwrap();
        let names: Vec<String> = links
            .iter()
            .flat_map(|raw| messages(raw))
            .filter_map(|m| {
                let a = attrs(m.payload.get(16..)?);
                Some(attr_str(attr(&a, libc::IFLA_IFNAME)?))
            })
            .collect();
        assert!(names.iter().any(|n| n == "lo"), "{names:?}");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            for m in messages(&b) {
                let _ = attrs(m.payload);
            }
            let _ = attrs(&b);
        }
    }
}
