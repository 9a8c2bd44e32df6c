//! A client of `criu swrk` for the RPC tests: CRIU's rpc.proto over a
//! SOCK_SEQPACKET socketpair, as runc drives it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criu::rpc::pb::{CriuReq, CriuReqType, CriuResp};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use prost::Message;

use super::CRIU;

/// A HOME without configuration files (`$HOME/.criu/default.conf`).
pub const NO_HOME: &str = "/nonexistent/criu-rs-test-home";

/// A notification handler that acks every notification and records its
/// script name and pid in `notes`.
pub fn record(
    notes: &mut Vec<(String, Option<i32>)>,
) -> impl FnMut(&str, Option<i32>) -> bool + '_ {
    |script, pid| {
        notes.push((script.to_string(), pid));
        true
    }
}

/// A `criu swrk` and our end of its socket.
pub struct Swrk {
    pub child: Child,
    sk: Option<OwnedFd>,
}

impl Swrk {
    pub fn start(home: &Path) -> Swrk {
        Swrk::start_keeping(home, &[])
    }

    /// [`Swrk::start`], with `keep` inherited by criu under their numbers
    /// (as runc passes its `inherit_fd`s).
    pub fn start_keeping(home: &Path, keep: &[&OwnedFd]) -> Swrk {
        for fd in keep {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear cloexec");
        }
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )
        .expect("socketpair");
        fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("cloexec");
        let child = Command::new(CRIU)
            .arg("swrk")
            .arg(theirs.as_raw_fd().to_string())
            .env("HOME", home)
            .env_remove("CRIU_CONFIG_FILE")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn criu swrk");
        drop(theirs);
        for fd in keep {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("set cloexec");
        }
        // A hung criu fails the test instead of hanging it.
        nix::sys::socket::setsockopt(
            &ours,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(60, 0),
        )
        .expect("SO_RCVTIMEO");
        Swrk {
            child,
            sk: Some(ours),
        }
    }

    pub fn fd(&self) -> i32 {
        self.sk.as_ref().expect("socket open").as_raw_fd()
    }

    pub fn send(&self, req: &CriuReq) {
        let buf = req.encode_to_vec();
        assert_eq!(
            send(self.fd(), &buf, MsgFlags::empty()).expect("send"),
            buf.len()
        );
    }

    pub fn recv(&self) -> CriuResp {
        let mut buf = vec![0u8; 64 * 1024];
        let n = recv(self.fd(), &mut buf, MsgFlags::empty()).expect("recv");
        assert!(n > 0, "criu closed the socket");
        CriuResp::decode(&buf[..n]).expect("decode criu_resp")
    }

    /// Sends `req`; `on_notify(script, pid)` answers each notification.
    pub fn call(
        &self,
        req: &CriuReq,
        mut on_notify: impl FnMut(&str, Option<i32>) -> bool,
    ) -> CriuResp {
        self.send(req);
        loop {
            let r = self.recv();
            if r.r#type != CriuReqType::Notify as i32 {
                return r;
            }
            let n = r.notify.expect("notify without criu_notify");
            let ok = on_notify(n.script.as_deref().unwrap_or_default(), n.pid);
            self.send(&CriuReq {
                r#type: CriuReqType::Notify as i32,
                notify_success: Some(ok),
                ..Default::default()
            });
        }
    }

    /// A request of type `ty` without options, notifications acked.
    pub fn simple(&self, ty: CriuReqType) -> CriuResp {
        self.call(
            &CriuReq {
                r#type: ty as i32,
                ..Default::default()
            },
            |_, _| true,
        )
    }

    /// Closes our end and waits for criu to exit; its exit status.
    pub fn finish(mut self) -> std::process::ExitStatus {
        self.sk = None;
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "swrk did not exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
