//! Notify callbacks over RPC, as CRIU sends them: a client that records
//! each `criu_notify` with the state of the tree at that moment.
//!
//! The test process is a child subreaper so that restored tasks end up
//! here and are reaped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use criu::rpc::pb::{CriuOpts, CriuReq, CriuReqType};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::swrk::Swrk;
use support::*;

/// The one-letter state of `pid`, or "-" when there is no such task.
fn state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, r)| r.split(' ').next().map(str::to_string))
        })
        .unwrap_or_else(|| "-".into())
}

fn uts_ns(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/uts")).ok()
}

fn reap(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_for("the restored task to be reaped", || {
        matches!(
            waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
            Err(_) | Ok(nix::sys::wait::WaitStatus::Signaled(..))
        )
    });
}

struct Note {
    script: String,
    pid: Option<i32>,
    state: String,
}

/// Dumps and restores a victim started by `launcher` (a command prefix,
/// e.g. `unshare -u`), recording every notification.
fn run(launcher: &[&str]) -> (i32, Vec<Note>, Vec<Note>, PathBuf) {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap().keep();
    let out = tmp.join("count");
    let images = tmp.join("img");
    std::fs::create_dir(&images).unwrap();
    let mut argv: Vec<&str> = launcher.to_vec();
    argv.extend([VICTIM, "loop", out.to_str().unwrap()]);
    let mut victim = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let pid = victim.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    let images_fd = File::open(&images).unwrap();
    let opts = |log: &str| CriuOpts {
        images_dir_fd: images_fd.as_raw_fd(),
        log_level: Some(4),
        log_file: Some(log.into()),
        notify_scripts: Some(true),
        ..Default::default()
    };
    let log = |name: &str| std::fs::read_to_string(images.join(name)).unwrap_or_default();

    let s = Swrk::start(&tmp);
    let mut dump_notes = Vec::new();
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                pid: Some(pid),
                ..opts("dump.log")
            }),
            ..Default::default()
        },
        |script, p| {
            dump_notes.push(Note {
                script: script.into(),
                pid: p,
                state: state(pid),
            });
            true
        },
    );
    assert!(r.success, "dump failed: {r:?}\n{}", log("dump.log"));
    s.finish();
    victim.wait().unwrap();

    let s = Swrk::start(&tmp);
    let mut rst_notes = Vec::new();
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Restore as i32,
            opts: Some(opts("restore.log")),
            ..Default::default()
        },
        |script, p| {
            rst_notes.push(Note {
                script: script.into(),
                pid: p,
                state: state(pid),
            });
            if script == "setup-namespaces" {
                // The root exists, in its own namespaces.
                assert_ne!(uts_ns(pid), uts_ns(std::process::id() as i32));
            }
            true
        },
    );
    assert!(r.success, "restore failed: {r:?}\n{}", log("restore.log"));
    assert_eq!(r.restore.map(|x| x.pid), Some(pid));
    s.finish();
    (pid, dump_notes, rst_notes, tmp)
}

fn scripts(n: &[Note]) -> Vec<&str> {
    n.iter().map(|n| n.script.as_str()).collect()
}

#[test]
#[serial]
fn dump_and_restore_notify_in_criu_order_while_the_tree_is_stopped() {
    let (pid, d, r, tmp) = run(&[]);
    assert_eq!(scripts(&d), ["pre-dump", "post-dump"]);
    assert_eq!(d[0].pid, None);
    assert!(
        matches!(d[0].state.as_str(), "S" | "R"),
        "pre-dump: {}",
        d[0].state
    );
    assert_eq!(
        d[1].state, "t",
        "post-dump must come while the tree is frozen"
    );
    assert_eq!(
        scripts(&r),
        ["pre-restore", "post-restore", "pre-resume", "post-resume"]
    );
    let pids: Vec<_> = r.iter().map(|n| n.pid).collect();
    assert_eq!(pids, [None, Some(pid), None, None]);
    let states: Vec<_> = r.iter().map(|n| n.state.as_str()).collect();
    assert_eq!(states[..3], ["-", "t", "t"]);
    assert_ne!(states[3], "t", "post-resume: the tree runs");
    reap(pid);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
#[serial]
fn namespaces_bring_setup_namespaces_and_the_network_lock() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/usr/bin/unshare").exists() {
        eprintln!("skipped: needs root and /usr/bin/unshare");
        return;
    }
    let (pid, d, r, tmp) = run(&["/usr/bin/unshare", "-u", "-n"]);
    assert_eq!(scripts(&d), ["pre-dump", "network-lock", "post-dump"]);
    assert_eq!(d[1].state, "t");
    assert_eq!(
        scripts(&r),
        [
            "pre-restore",
            "setup-namespaces",
            "post-setup-namespaces",
            "post-restore",
            "network-unlock",
            "pre-resume",
            "post-resume"
        ]
    );
    let pids: Vec<_> = r.iter().map(|n| n.pid).collect();
    assert_eq!(pids, [None, Some(pid), None, Some(pid), None, None, None]);
    reap(pid);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
#[serial]
fn a_refused_post_dump_lets_the_tree_run_on() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let images = tmp.path().join("img");
    std::fs::create_dir(&images).unwrap();
    let mut victim = Command::new(VICTIM)
        .args(["loop", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let pid = victim.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    let images_fd = File::open(&images).unwrap();
    let s = Swrk::start(tmp.path());
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                pid: Some(pid),
                notify_scripts: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        |script, _| script != "post-dump",
    );
    assert!(!r.success);
    assert!(r.cr_errmsg.unwrap_or_default().contains("post-dump"));
    s.finish();
    let at = counter(&out);
    wait_for("the victim to count on", || counter(&out) > at + 3);
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// runc's `config_file`: read last, over the request; absent is fine; an
/// option it cannot honour is refused with the file and line.
#[test]
#[serial]
fn the_request_config_file_overrides_the_request() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("img");
    std::fs::create_dir(&images).unwrap();
    let images_fd = File::open(&images).unwrap();
    let conf = tmp.path().join("runc.conf");
    std::fs::write(&conf, "log-file from-conf.log\nverbosity 4\n").unwrap();
    let req = |config: &Path| CriuReq {
        r#type: CriuReqType::Dump as i32,
        opts: Some(CriuOpts {
            images_dir_fd: images_fd.as_raw_fd(),
            log_file: Some("from-req.log".into()),
            config_file: Some(config.display().to_string()),
            // no pid: the request fails after the log is set up
            ..Default::default()
        }),
        ..Default::default()
    };
    let s = Swrk::start(tmp.path());
    let r = s.call(&req(&conf), |_, _| true);
    assert!(!r.success);
    assert!(images.join("from-conf.log").exists());
    assert!(!images.join("from-req.log").exists());
    let r = s.call(&req(Path::new("/nonexistent/criu-rs/runc.conf")), |_, _| {
        true
    });
    assert!(!r.success);
    assert!(images.join("from-req.log").exists());
    std::fs::write(&conf, "# runc\n\nlazy-pages\n").unwrap();
    let r = s.call(&req(&conf), |_, _| true);
    assert!(!r.success);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(msg.contains("lazy_pages"), "{msg}");
    std::fs::write(&conf, "page-server\n").unwrap();
    let r = s.call(&req(&conf), |_, _| true);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(
        msg.contains("runc.conf, line 1") && msg.contains("page-server"),
        "{msg}"
    );
    s.finish();
}
