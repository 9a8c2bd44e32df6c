//! RPC options runc sends: each is honoured, or refused with a precise
//! error. A fake RPC client drives `criu swrk`.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criu::rpc::pb::{CriuOpts, CriuReq, CriuReqType, CriuResp};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use prost::Message;
use serial_test::serial;

const CRIU: &str = env!("CARGO_BIN_EXE_criu");
const VICTIM: &str = env!("CARGO_BIN_EXE_criu-test-victim");

struct Swrk {
    child: Child,
    sk: Option<OwnedFd>,
}

impl Swrk {
    fn start(home: &Path) -> Swrk {
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

    fn fd(&self) -> i32 {
        self.sk.as_ref().expect("socket open").as_raw_fd()
    }

    fn send(&self, req: &CriuReq) {
        let buf = req.encode_to_vec();
        assert_eq!(
            send(self.fd(), &buf, MsgFlags::empty()).expect("send"),
            buf.len()
        );
    }

    fn recv(&self) -> CriuResp {
        let mut buf = vec![0u8; 64 * 1024];
        let n = recv(self.fd(), &mut buf, MsgFlags::empty()).expect("recv");
        assert!(n > 0, "criu closed the socket");
        CriuResp::decode(&buf[..n]).expect("decode criu_resp")
    }

    /// Sends `req`; `on_notify(script, pid)` answers each notification.
    fn call(
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

    fn finish(mut self) {
        self.sk = None;
        let start = Instant::now();
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "swrk did not exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn counter(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split(' ').next() != Some("cgroup2") {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

fn start_victim(out: &Path) -> (Child, i32) {
    let victim = Command::new(VICTIM)
        .args(["loop", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let pid = victim.id() as i32;
    wait_for("the counter to start", || counter(out) > 3);
    (victim, pid)
}

fn frozen(cg: &Path) -> bool {
    std::fs::read_to_string(cg.join("cgroup.events"))
        .unwrap_or_default()
        .lines()
        .any(|l| l == "frozen 1")
}

/// runc's `freeze_cgroup`: the cgroup is frozen after pre-dump (while the
/// tree is seized) and thawed after the dump.
#[test]
#[serial]
fn freeze_cgroup_freezes_around_the_seize_and_thaws() {
    let Some(mnt) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let cg = mnt.join(format!("criu-rs-test-{}", std::process::id()));
    if std::fs::create_dir(&cg).is_err() {
        eprintln!("skipped: cannot make a cgroup under {}", mnt.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let (mut victim, pid) = start_victim(&out);
    std::fs::write(cg.join("cgroup.procs"), pid.to_string()).unwrap();
    let images_fd = File::open(tmp.path()).unwrap();
    let s = Swrk::start(tmp.path());
    let mut seen = Vec::new();
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                pid: Some(pid),
                leave_running: Some(true),
                notify_scripts: Some(true),
                freeze_cgroup: Some(cg.display().to_string()),
                log_file: Some("dump.log".into()),
                log_level: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        },
        |script, _| {
            seen.push((script.to_string(), frozen(&cg)));
            true
        },
    );
    let log = std::fs::read_to_string(tmp.path().join("dump.log")).unwrap_or_default();
    let after = frozen(&cg);
    let at = counter(&out);
    if r.success {
        wait_for("the victim to count on", || counter(&out) > at + 3);
    }
    s.finish();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let _ = std::fs::remove_dir(&cg);
    assert!(r.success, "dump failed: {r:?}\n{log}");
    // Frozen only between pre-dump and the end of the seize: thawed for
    // the dump's remote syscalls, the tasks held by ptrace.
    assert_eq!(
        seen,
        [
            ("pre-dump".to_string(), false),
            ("post-dump".to_string(), false)
        ]
    );
    assert!(!after, "the cgroup stayed frozen");
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("{what:?} not in the log:\n{log}"))
    };
    assert!(at("script=\"pre-dump\"") < at("cgroup frozen"), "{log}");
    assert!(at("cgroup frozen") < at("cgroup thawed"), "{log}");
    assert!(at("cgroup thawed") < at("tree frozen"), "{log}");
}

#[test]
#[serial]
fn freeze_cgroup_that_cannot_be_frozen_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let images_fd = File::open(tmp.path()).unwrap();
    let s = Swrk::start(tmp.path());
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                pid: Some(std::process::id() as i32),
                freeze_cgroup: Some("/nonexistent/criu-rs/cg".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        |_, _| true,
    );
    assert!(!r.success);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(
        msg.contains("freeze_cgroup /nonexistent/criu-rs/cg"),
        "{msg}"
    );
    s.finish();
}
