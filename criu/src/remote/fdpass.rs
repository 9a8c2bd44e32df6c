//! Handing file descriptors made in criu to a puppet task: criu sends them
//! over a unix socket the puppet inherited, and the puppet receives them with
//! a remote `recvmsg`.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::{Error, Result, Tracee};

/// Layout of the recvmsg arguments in the scratch area, from `base`.
const MSGHDR: u64 = 0;
const IOVEC: u64 = 64;
const DATA: u64 = 96;
const CONTROL: u64 = 128;
const CONTROL_LEN: u64 = 24; // CMSG_SPACE(sizeof(int))
/// Bytes of scratch a transfer needs.
pub const SCRATCH_NEEDED: u64 = CONTROL + CONTROL_LEN;

/// Sends `fd` over `sock` (criu's end) and receives it in the tracee on its
/// end `remote_sock`; returns the fd number it got there. `base` is a free
/// offset in the tracee's scratch area with [`SCRATCH_NEEDED`] bytes.
pub fn pass_fd(
    t: &mut Tracee,
    sock: BorrowedFd<'_>,
    remote_sock: i32,
    fd: BorrowedFd<'_>,
    base: u64,
) -> Result<i32> {
    let pid = t.pid();
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|errno| Error::Sys {
        pid,
        what: "sending an fd to the puppet",
        errno,
    })?;

    let (addr, _) = t.scratch().ok_or_else(|| Error::Unexpected {
        pid,
        what: "no scratch area to receive an fd".into(),
    })?;
    let at = |off: u64| addr + base + off;
    // struct iovec { base, len }
    let mut iov = Vec::new();
    iov.extend_from_slice(&at(DATA).to_le_bytes());
    iov.extend_from_slice(&1u64.to_le_bytes());
    // struct msghdr { name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad) }
    let mut hdr = Vec::new();
    hdr.extend_from_slice(&0u64.to_le_bytes());
    hdr.extend_from_slice(&0u64.to_le_bytes());
    hdr.extend_from_slice(&at(IOVEC).to_le_bytes());
    hdr.extend_from_slice(&1u64.to_le_bytes());
    hdr.extend_from_slice(&at(CONTROL).to_le_bytes());
    hdr.extend_from_slice(&CONTROL_LEN.to_le_bytes());
    hdr.extend_from_slice(&0u64.to_le_bytes());
    t.scratch_put(base + MSGHDR, &hdr)?;
    t.scratch_put(base + IOVEC, &iov)?;
    t.scratch_put(base + CONTROL, &[0u8; CONTROL_LEN as usize])?;
    t.syscall(
        libc::SYS_recvmsg,
        &[
            remote_sock as u64,
            at(MSGHDR),
            libc::MSG_CMSG_CLOEXEC as u64,
        ],
    )?;
    // struct cmsghdr { len: u64, level: i32, type: i32 } then the fd.
    let mut cmsg = [0u8; CONTROL_LEN as usize];
    t.scratch_get(base + CONTROL, &mut cmsg)?;
    let level = i32::from_le_bytes([cmsg[8], cmsg[9], cmsg[10], cmsg[11]]);
    let kind = i32::from_le_bytes([cmsg[12], cmsg[13], cmsg[14], cmsg[15]]);
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
        return Err(Error::Unexpected {
            pid,
            what: "the puppet received no file descriptor".into(),
        });
    }
    Ok(i32::from_le_bytes([cmsg[16], cmsg[17], cmsg[18], cmsg[19]]))
}
