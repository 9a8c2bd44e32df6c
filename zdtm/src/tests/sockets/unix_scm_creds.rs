use crate::prelude::*;
use nix::sys::socket::{recvmsg, setsockopt, sockopt::PassCred, ControlMessageOwned, MsgFlags};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};

pub const DESC: Desc = Desc {
    name: "sockets/unix_scm_creds",
    family: "sockets",
    description: "messages queued on unix sockets whose receiver has SO_PASSCRED keep their sender's pid/uid/gid (the test and its child) across restore",
    ..Desc::DEFAULT
};

/// A sender's (pid, uid, gid).
type Creds = (i32, u32, u32);

/// Receives one message without blocking: its bytes and the credentials
/// it came with (pid, uid, gid).
fn recv_creds(s: BorrowedFd<'_>, max: usize) -> Result<(Vec<u8>, Option<Creds>)> {
    let mut buf = vec![0u8; max];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::ucred);
    let m = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
        .context("recvmsg")?;
    let n = m.bytes;
    let mut creds = None;
    for c in m.cmsgs().context("cmsgs")? {
        if let ControlMessageOwned::ScmCredentials(u) = c {
            creds = Some((u.pid(), u.uid(), u.gid()));
        }
    }
    Ok((buf[..n].to_vec(), creds))
}

pub fn run(t: &mut Test) -> Result<()> {
    let (da, db) = UnixDatagram::pair().context("dgram pair")?;
    let (mut sa, sb) = UnixStream::pair().context("stream pair")?;
    setsockopt(&db, PassCred, &true).context("SO_PASSCRED on the datagram receiver")?;
    setsockopt(&sb, PassCred, &true).context("SO_PASSCRED on the stream receiver")?;
    let me = nix::unistd::getpid().as_raw();
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());

    da.send(b"from the test").context("send from the test")?;
    sa.write_all(b"test1").context("stream write from the test")?;
    let page = SharedPage::new()?;
    let kid = {
        let page = &page;
        let da = da.try_clone().context("dup dgram")?;
        let mut sa = sa.try_clone().context("dup stream")?;
        fork_child(move || {
            da.send(b"from the child").context("child send")?;
            sa.write_all(b"child").context("child stream write")?;
            sync::add_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            Ok(())
        })?
    };
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "child did not send");
        da.send(b"again from the test").context("second send from the test")?;
        sa.write_all(b"test2").context("second stream write from the test")?;
        let kpid = kid.pid.as_raw();
        t.daemon()?;
        t.wait_sig();
        let want: [(&[u8], i32); 3] = [(b"from the test", me), (b"from the child", kpid), (b"again from the test", me)];
        for (data, pid) in want {
            let (got, creds) = recv_creds(db.as_fd(), 64)?;
            ensure!(got == data, "datagram {got:?}, wanted {data:?}");
            ensure!(creds == Some((pid, uid, gid)), "datagram {data:?} came with {creds:?}, wanted {:?}", (pid, uid, gid));
        }
        ensure!(recv_creds(db.as_fd(), 64).is_err(), "an extra datagram is queued");
        // Stream data from different senders is never read as one.
        let want: [(&[u8], i32); 3] = [(b"test1", me), (b"child", kpid), (b"test2", me)];
        for (data, pid) in want {
            let (got, creds) = recv_creds(sb.as_fd(), 64)?;
            ensure!(got == data, "stream read {got:?}, wanted {data:?}");
            ensure!(creds == Some((pid, uid, gid)), "stream data {data:?} came with {creds:?}, wanted {:?}", (pid, uid, gid));
        }
        ensure!(recv_creds(sb.as_fd(), 64).is_err(), "extra stream data is queued");
        sync::set_and_wake(page.word(1), 1)?;
        kid.wait_ok()
    })();
    if res.is_err() {
        kid.kill();
    }
    res
}
