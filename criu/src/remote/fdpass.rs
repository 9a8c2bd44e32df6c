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
/// Bytes of scratch a transfer of one fd needs: CMSG_SPACE(sizeof(int))
/// after the control header.
pub const SCRATCH_NEEDED: u64 = CONTROL + 24;

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
    pass_fds(t, sock, remote_sock, &[fd], base)?
        .first()
        .copied()
        .ok_or_else(|| Error::Unexpected {
            pid,
            what: "the puppet received no file descriptor".into(),
        })
}

/// Most fds [`pass_fds`] moves in one message.
pub const MAX_FDS: usize = 64;
/// Bytes of scratch [`pass_fds`] needs at `base`.
pub const SCRATCH_NEEDED_MANY: u64 = CONTROL + 16 + 4 * MAX_FDS as u64;

/// Sends up to [`MAX_FDS`] of `fds` over `sock` in one message and
/// receives them all in the tracee with one remote `recvmsg` on its end
/// `remote_sock`; returns the numbers they got there, in order (close on
/// exec). `base` is a free offset of the scratch area with
/// [`SCRATCH_NEEDED_MANY`] bytes.
pub fn pass_fds(
    t: &mut Tracee,
    sock: BorrowedFd<'_>,
    remote_sock: i32,
    fds: &[BorrowedFd<'_>],
    base: u64,
) -> Result<Vec<i32>> {
    let pid = t.pid();
    if fds.is_empty() {
        return Ok(Vec::new());
    }
    if fds.len() > MAX_FDS {
        return Err(Error::Unexpected {
            pid,
            what: format!("{} fds to pass at once, at most {MAX_FDS}", fds.len()),
        });
    }
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|errno| Error::Sys {
        pid,
        what: "sending fds to the puppet",
        errno,
    })?;
    let (addr, _) = t.scratch().ok_or_else(|| Error::Unexpected {
        pid,
        what: "no scratch area to receive fds".into(),
    })?;
    let at = |off: u64| addr + base + off;
    // CMSG_SPACE(4 n): the header and the fds rounded up to 8 bytes.
    let control_len = 16 + ((4 * raw.len() as u64 + 7) & !7);
    let mut args = Vec::with_capacity(CONTROL as usize + control_len as usize);
    // struct msghdr at 0
    for v in [0, 0, at(IOVEC), 1, at(CONTROL), control_len, 0] {
        args.extend_from_slice(&v.to_le_bytes());
    }
    args.resize(IOVEC as usize, 0);
    // struct iovec at IOVEC: one byte at DATA
    args.extend_from_slice(&at(DATA).to_le_bytes());
    args.extend_from_slice(&1u64.to_le_bytes());
    args.resize(CONTROL as usize + control_len as usize, 0);
    t.scratch_put(base, &args)?;
    t.syscall(
        libc::SYS_recvmsg,
        &[
            remote_sock as u64,
            at(MSGHDR),
            libc::MSG_CMSG_CLOEXEC as u64,
        ],
    )?;
    let mut cmsg = vec![0u8; control_len as usize];
    t.scratch_get(base + CONTROL, &mut cmsg)?;
    let word = |i: usize| i32::from_le_bytes([cmsg[i], cmsg[i + 1], cmsg[i + 2], cmsg[i + 3]]);
    let len = u64::from_le_bytes(cmsg[0..8].try_into().unwrap_or_default());
    if word(8) != libc::SOL_SOCKET
        || word(12) != libc::SCM_RIGHTS
        || len != 16 + 4 * raw.len() as u64
    {
        return Err(Error::Unexpected {
            pid,
            what: format!(
                "the puppet received {} of {} file descriptors",
                len.saturating_sub(16) / 4,
                raw.len()
            ),
        });
    }
    Ok((0..raw.len()).map(|i| word(16 + 4 * i)).collect())
}
