use crate::prelude::*;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

pub const DESC: Desc = Desc {
    name: "sockets/unix_scm_pidfd",
    family: "sockets",
    description: "messages queued on a unix socket with SO_PASSPIDFD (and no SO_PASSCRED) still hand out a pidfd of their sender (the test's child) after restore",
    ..Desc::DEFAULT
};

const SO_PASSPIDFD: i32 = 76;
const SCM_PIDFD: i32 = 4;

fn set_passpidfd(s: BorrowedFd<'_>) -> Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: an int option, alive across the call.
    let r = unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, SO_PASSPIDFD, (&one as *const libc::c_int).cast(), 4)
    };
    ensure!(r == 0, "SO_PASSPIDFD: {}", nix::errno::Errno::last());
    Ok(())
}

/// Receives one message: its bytes and the pid its pidfd names.
fn recv_pidfd(s: BorrowedFd<'_>) -> Result<(Vec<u8>, Option<i32>)> {
    let mut buf = vec![0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::ucred);
    let m = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).context("recvmsg")?;
    let n = m.bytes;
    let mut pid = None;
    for c in m.cmsgs().context("cmsgs")? {
        if let ControlMessageOwned::Unknown(u) = c {
            if u.cmsg_header.cmsg_level == libc::SOL_SOCKET && u.cmsg_header.cmsg_type == SCM_PIDFD {
                let b = u.data_bytes.get(0..4).context("short SCM_PIDFD")?;
                // SAFETY: the kernel just installed this pidfd for us.
                let fd = unsafe { OwnedFd::from_raw_fd(i32::from_ne_bytes([b[0], b[1], b[2], b[3]])) };
                let info = fdinfo(fd.as_raw_fd())?;
                pid = info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok());
            }
        }
    }
    Ok((buf[..n].to_vec(), pid))
}

pub fn run(t: &mut Test) -> Result<()> {
    let (da, db) = UnixDatagram::pair().context("dgram pair")?;
    set_passpidfd(db.as_fd())?;
    let page = SharedPage::new()?;
    let kid = {
        let page = &page;
        let da = da.try_clone().context("dup")?;
        fork_child(move || {
            da.send(b"from the child").context("child send")?;
            sync::add_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            Ok(())
        })?
    };
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "child did not send");
        let kpid = kid.pid.as_raw();
        t.daemon()?;
        t.wait_sig();
        let (got, pid) = recv_pidfd(db.as_fd())?;
        ensure!(got == b"from the child", "got {got:?}");
        ensure!(pid == Some(kpid), "the message's pidfd names pid {pid:?}, not the child {kpid}");
        sync::set_and_wake(page.word(1), 1)?;
        kid.wait_ok()
    })();
    if res.is_err() {
        kid.kill();
    }
    res
}
