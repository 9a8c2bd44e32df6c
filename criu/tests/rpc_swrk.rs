//! `criu swrk`: a small RPC client drives criu over a SOCK_SEQPACKET
//! socketpair, one prost-encoded criu_req per packet, as runc does.
//!
//! The test process is a child subreaper so that restored tasks (children of
//! criu until it exits) end up here and are reaped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use criu::rpc::pb::{CriuOpts, CriuReq, CriuReqType};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::swrk::{record, Swrk, NO_HOME};
use support::*;

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
#[serial]
fn version_names_criu_4_2_and_criu_rs() {
    let s = Swrk::start(Path::new(NO_HOME));
    let r = s.simple(CriuReqType::Version);
    assert!(r.success, "{r:?}");
    assert_eq!(r.r#type, CriuReqType::Version as i32);
    let v = r.version.expect("version");
    let want: Vec<i32> = criu::cli::CRIU_VERSION
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!([v.major_number, v.minor_number], want[..2]);
    assert!(v.gitid.unwrap_or_default().starts_with("criu-rs-"));
    assert!(s.finish().success());
}

#[test]
#[serial]
fn check_agrees_with_criu_check() {
    let cli = Command::new(CRIU)
        .arg("check")
        .output()
        .expect("criu check");
    let s = Swrk::start(Path::new(NO_HOME));
    let r = s.simple(CriuReqType::Check);
    assert_eq!(r.r#type, CriuReqType::Check as i32);
    assert_eq!(r.success, cli.status.success(), "{r:?}");
    assert!(s.finish().success());
}

#[test]
#[serial]
fn feature_check_answers_every_feature_and_claims_none() {
    let s = Swrk::start(Path::new(NO_HOME));
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::FeatureCheck as i32,
            features: Some(criu::rpc::pb::CriuFeatures {
                mem_track: Some(true),
                lazy_pages: Some(true),
                pidfd_store: Some(true),
            }),
            ..Default::default()
        },
        |_, _| true,
    );
    assert!(r.success, "{r:?}");
    let f = r.features.expect("features");
    assert_eq!(
        (f.mem_track, f.lazy_pages, f.pidfd_store),
        (Some(false), Some(false), Some(false))
    );
    assert!(s.finish().success());
}

#[test]
#[serial]
fn unsupported_options_are_refused_by_name_and_serving_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = File::open(tmp.path()).unwrap();
    let s = Swrk::start(Path::new(NO_HOME));
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: dir.as_raw_fd(),
                pid: Some(std::process::id() as i32),
                auto_dedup: Some(true),
                lazy_pages: Some(true),
                ext_unix_sk: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        },
        |_, _| true,
    );
    assert!(!r.success);
    assert_eq!(r.r#type, CriuReqType::Dump as i32);
    let msg = r.cr_errmsg.unwrap_or_default();
    assert!(msg.contains("auto_dedup"), "{msg}");
    assert!(msg.contains("lazy_pages"), "{msg}");
    assert!(
        !msg.contains("ext_unix_sk"),
        "a false option was refused: {msg}"
    );
    // Nothing was written but the log, which says why, and the same
    // worker still answers.
    assert_eq!(images_but_logs(tmp.path()), Vec::<String>::new());
    assert!(s
        .simple(CriuReqType::PreDump)
        .cr_errmsg
        .unwrap_or_default()
        .contains("PRE_DUMP"));
    assert!(s.simple(CriuReqType::Version).success);
    assert!(s.finish().success());
}

#[test]
#[serial]
fn dump_and_restore_over_rpc_with_notifications_and_wait_pid() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let images = tmp.path().join("img");
    let work = tmp.path().join("work");
    std::fs::create_dir(&images).unwrap();
    std::fs::create_dir(&work).unwrap();
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
    let work_fd = File::open(&work).unwrap();
    let opts = |log: &str| CriuOpts {
        images_dir_fd: images_fd.as_raw_fd(),
        work_dir_fd: Some(work_fd.as_raw_fd()),
        log_level: Some(4),
        log_file: Some(log.into()),
        notify_scripts: Some(true),
        // What runc sends and criu-rs must take as "nothing special".
        ext_unix_sk: Some(false),
        tcp_established: Some(false),
        shell_job: Some(false),
        file_locks: Some(false),
        auto_dedup: Some(false),
        lazy_pages: Some(false),
        orphan_pts_master: Some(true),
        config_file: Some("/nonexistent/criu-rs/runc.conf".into()),
        ..Default::default()
    };

    let s = Swrk::start(Path::new(NO_HOME));
    let mut notes = Vec::new();
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                pid: Some(pid),
                empty_ns: Some(libc::CLONE_NEWNET as u32),
                ..opts("dump.log")
            }),
            ..Default::default()
        },
        record(&mut notes),
    );
    assert!(r.success, "dump failed: {r:?}\n{}", log(&work, "dump.log"));
    assert_eq!(r.dump.and_then(|d| d.restored), Some(false));
    assert_eq!(
        notes,
        [
            ("pre-dump".to_string(), None),
            ("post-dump".to_string(), None)
        ]
    );
    // The killed tree goes back to its parent while criu still serves.
    wait_for("the dumped victim to be reaped by its parent", || {
        victim.try_wait().expect("try_wait").is_some()
    });
    assert!(s.finish().success());
    assert!(images.join("pstree.img").exists(), "no images written");
    assert!(
        !log(&work, "dump.log").is_empty(),
        "no dump.log in the work dir"
    );
    let at_dump = counter(&out);

    let s = Swrk::start(Path::new(NO_HOME));
    let mut notes = Vec::new();
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Restore as i32,
            // Not rst_sibling (see rpc_options): the root stays criu's
            // child, for WAIT_PID.
            opts: Some(CriuOpts {
                ..opts("restore.log")
            }),
            ..Default::default()
        },
        record(&mut notes),
    );
    assert!(
        r.success,
        "restore failed: {r:?}\n{}",
        log(&work, "restore.log")
    );
    assert_eq!(r.restore.map(|x| x.pid), Some(pid));
    assert_eq!(
        notes,
        [
            ("pre-restore".to_string(), None),
            ("post-restore".to_string(), Some(pid)),
            ("pre-resume".to_string(), None),
            ("post-resume".to_string(), None)
        ]
    );
    wait_for("the counter to go on", || counter(&out) > at_dump + 5);
    // criu's end of the RPC socket did not leak into the restored task.
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert!(
            !target.to_string_lossy().starts_with("socket:"),
            "restored task holds {}",
            target.display()
        );
    }

    // While criu lives the restored root is its child: WAIT_PID reaps it.
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::WaitPid as i32,
            pid: Some(pid as u32),
            ..Default::default()
        },
        |_, _| true,
    );
    assert!(r.success, "{r:?}");
    assert_eq!(r.status, Some(libc::SIGKILL));
    assert!(s.finish().success());
    // Reaped by criu, so nothing is left for us.
    assert!(waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_err());
}
