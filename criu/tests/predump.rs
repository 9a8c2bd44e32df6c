//! End to end: `criu pre-dump` of a running victim, memory changed, then
//! `criu dump --prev-images-dir --track-mem` writes only the changed pages
//! and the restore reads the rest from the pre-dump.
//!
//! The test process is made a child subreaper so that restored tasks (whose
//! parent, criu, exits) become its children and are reaped here.

use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::*;

/// The victim's memory: 64 MiB, of which every 256th page is rewritten
/// (a page of the victim's buffer, which the allocator's header shifts off
/// page boundaries: two pages of memory each).
const MIB: u64 = 64;
const TOUCHED: u64 = (MIB << 20) / 4096 / 256;

/// The dump counters of `stats-dump`: (pages written, pages left to the
/// parent).
fn stats(dir: &Path) -> (u64, u64) {
    let d = dump_stats(dir);
    (d.pages_written, d.pages_skipped_parent)
}

fn pages_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn uffd_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.as_os_str() == "anon_inode:[userfaultfd]")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A `touch` victim of `mib` MiB, ready, in a fresh temp dir (the test
/// made a child subreaper, for the restored victim): the dir, the child,
/// its PID and its state file.
fn start(
    mib: u64,
) -> (
    tempfile::TempDir,
    std::process::Child,
    i32,
    std::path::PathBuf,
) {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("state");
    let child = spawn(&["touch", &mib.to_string(), out.to_str().unwrap()]);
    let pid = child.id() as i32;
    wait_for("the pattern", || read(&out).starts_with("ready"));
    (tmp, child, pid, out)
}

/// Restores `img`: the victim is back as `pid`, without the tracking fd.
fn restore_ok(img: &Path, pid: i32) {
    let (o, restored) = restore_detached(img, &[]);
    assert_criu_ok(&o, img, "restore", "restore.log");
    assert_eq!(restored, Some(pid));
    assert_eq!(uffd_fds(pid), 0, "the tracking fd came back");
}

fn signal_and_wait(pid: i32, sig: Signal, out: &Path, want: &str) {
    kill(Pid::from_raw(pid), sig).unwrap();
    wait_for(want, || {
        read(out).starts_with(want) || read(out).starts_with("bad")
    });
    assert_eq!(read(out).trim_end(), want);
}

#[test]
#[serial]
fn pre_dump_then_dump_writes_only_changed_pages_and_restores_every_byte() {
    let (tmp, mut child, pid, out) = start(MIB);

    // Pre-dump: the victim runs on, with the tracking fd left in it.
    let pre = tmp.path().join("pre");
    criu_on_ok("pre-dump", pid, &pre, &[]);
    assert!(pre.join(format!("uffd-track-{pid}.img")).exists());
    let full = pages_bytes(&pre);
    assert!(
        full >= MIB << 20,
        "the pre-dump wrote {full} bytes of pages"
    );
    signal_and_wait(pid, Signal::SIGUSR1, &out, "ok 1");
    let tracked = uffd_fds(pid) == 1;

    // Change some memory, then the dump proper.
    signal_and_wait(pid, Signal::SIGUSR2, &out, "touched 1");
    let img = tmp.path().join("img");
    criu_on_ok(
        "dump",
        pid,
        &img,
        &["--prev-images-dir", "../pre", "--track-mem"],
    );
    child.wait().unwrap();
    assert_eq!(
        std::fs::read_link(img.join("parent")).unwrap(),
        Path::new("../pre")
    );
    let (written, parent) = stats(&img);
    eprintln!("dump with parent: {written} pages written, {parent} left to the parent");
    if tracked {
        // The rewritten pages and a little of the rest (stack, the
        // signal's frame, libc's state): not the 64 MiB again.
        assert!(
            (TOUCHED..2 * TOUCHED + 256).contains(&written),
            "{written} pages written, {TOUCHED} buffer pages were changed"
        );
        assert!(
            parent >= (MIB << 20) / 4096 - 2 * TOUCHED,
            "only {parent} pages left to the parent"
        );
        assert!(pages_bytes(&img) < 4 << 20, "{} bytes", pages_bytes(&img));
    } else {
        // No userfaultfd here: a correct full dump.
        eprintln!("write tracking could not be armed: full dump checked only");
        assert!(written >= (MIB << 20) / 4096);
    }

    // Every byte comes back, from both image sets.
    restore_ok(&img, pid);
    signal_and_wait(pid, Signal::SIGUSR1, &out, "ok 2");
    finish(pid);
}

#[test]
#[serial]
fn dump_without_track_mem_writes_everything_and_drops_the_tracking_fd() {
    let (tmp, mut child, pid, out) = start(8);
    let pre = tmp.path().join("pre");
    criu_on_ok("pre-dump", pid, &pre, &[]);
    signal_and_wait(pid, Signal::SIGUSR2, &out, "touched 1");
    let img = tmp.path().join("img");
    criu_on_ok("dump", pid, &img, &["--prev-images-dir", "../pre"]);
    child.wait().unwrap();
    let (written, parent) = stats(&img);
    assert_eq!(parent, 0);
    assert!(written >= (8 << 20) / 4096);
    restore_ok(&img, pid);
    signal_and_wait(pid, Signal::SIGUSR1, &out, "ok 1");
    finish(pid);
}

/// A plain dump (no parent images) of a task a pre-dump left its tracking
/// userfaultfd in: criu knows that fd for its own by what it is, closes it
/// in the task and dumps the rest as usual.
#[test]
#[serial]
fn plain_dump_after_a_pre_dump_drops_the_tracking_fd() {
    let (tmp, mut child, pid, out) = start(8);
    let pre = tmp.path().join("pre");
    criu_on_ok("pre-dump", pid, &pre, &[]);
    let tracked = uffd_fds(pid);
    eprintln!("tracking fds left in the victim: {tracked}");
    signal_and_wait(pid, Signal::SIGUSR2, &out, "touched 1");
    // Another directory, no --prev-images-dir: criu cannot read the
    // pre-dump's record of the fd.
    let img = tmp.path().join("img");
    criu_on_ok("dump", pid, &img, &[]);
    child.wait().unwrap();
    assert!(!img.join("parent").exists());
    let (written, parent) = stats(&img);
    assert_eq!(parent, 0);
    assert!(written >= (8 << 20) / 4096, "{written} pages written");
    restore_ok(&img, pid);
    // Memory as the victim last wrote it (the pattern after one touch).
    signal_and_wait(pid, Signal::SIGUSR1, &out, "ok 1");
    finish(pid);
}

/// One request to a fresh `criu swrk`, its response.
fn swrk(req: &criu::rpc::pb::CriuReq) -> criu::rpc::pb::CriuResp {
    use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
    use prost::Message;
    use std::os::fd::AsRawFd;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    // The child's end must survive exec: clear its close-on-exec flag.
    nix::fcntl::fcntl(
        &theirs,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("fcntl");
    let mut child = Command::new(CRIU)
        .arg("swrk")
        .arg(theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn criu swrk");
    drop(theirs);
    let buf = req.encode_to_vec();
    send(ours.as_raw_fd(), &buf, MsgFlags::empty()).expect("send");
    let mut buf = vec![0u8; 64 * 1024];
    let n = recv(ours.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv");
    let resp = criu::rpc::pb::CriuResp::decode(&buf[..n]).expect("criu_resp");
    drop(ours);
    child.wait().expect("criu swrk exits");
    resp
}

#[test]
#[serial]
fn pre_dump_and_dump_over_rpc() {
    use criu::rpc::pb::{CriuOpts, CriuReq, CriuReqType};
    use std::os::fd::AsRawFd;
    let (tmp, mut child, pid, out) = start(8);
    let (pre, img) = (tmp.path().join("pre"), tmp.path().join("img"));
    std::fs::create_dir(&pre).unwrap();
    std::fs::create_dir(&img).unwrap();
    let (pre_fd, img_fd) = (
        std::fs::File::open(&pre).unwrap(),
        std::fs::File::open(&img).unwrap(),
    );
    let r = swrk(&CriuReq {
        r#type: CriuReqType::PreDump as i32,
        opts: Some(CriuOpts {
            images_dir_fd: pre_fd.as_raw_fd(),
            pid: Some(pid),
            log_file: Some("pre-dump.log".into()),
            log_level: Some(4),
            track_mem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(r.success, "{r:?}\n{}", read(&pre.join("pre-dump.log")));
    assert_eq!(r.r#type, CriuReqType::PreDump as i32);
    let tracked = uffd_fds(pid) == 1;
    signal_and_wait(pid, Signal::SIGUSR2, &out, "touched 1");
    let r = swrk(&CriuReq {
        r#type: CriuReqType::Dump as i32,
        opts: Some(CriuOpts {
            images_dir_fd: img_fd.as_raw_fd(),
            pid: Some(pid),
            log_file: Some("dump.log".into()),
            log_level: Some(4),
            track_mem: Some(true),
            parent_img: Some("../pre".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(r.success, "{r:?}\n{}", read(&img.join("dump.log")));
    child.wait().unwrap();
    let (written, parent) = stats(&img);
    if tracked {
        assert!(parent > 0, "nothing left to the parent");
        assert!(written < (8 << 20) / 4096 / 4, "{written} pages written");
    }
    let (o, restored) = restore_detached(&img, &[]);
    assert_criu_ok(&o, &img, "restore", "restore.log");
    assert_eq!(restored, Some(pid));
    signal_and_wait(pid, Signal::SIGUSR1, &out, "ok 1");
    finish(pid);
}
