//! End to end: real processes dumped and restored by the `criu` binary.
//!
//! The test process is made a child subreaper so that restored tasks (whose
//! parent, criu, exits) become its children and are reaped here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::*;

fn dump(pid: i32, dir: &Path, extra: &[&str]) -> Output {
    let d = dir.to_str().unwrap();
    let mut args = vec![
        "dump",
        "-t",
        &*Box::leak(pid.to_string().into_boxed_str()),
        "-D",
        d,
        "-o",
        "dump.log",
        "-v4",
    ];
    args.extend_from_slice(extra);
    criu(&args)
}

fn restore(dir: &Path) -> (Output, Option<i32>) {
    restore_with(dir, &[])
}

fn restore_with(dir: &Path, extra: &[&str]) -> (Output, Option<i32>) {
    support::restore_detached(dir, extra)
}

/// A victim counting in `mode` (`loop` or `unsupported`) under `dir`, once
/// it has counted a little: the child, its pid and its counter file.
fn start_counting(dir: &Path, mode: &str) -> (Child, i32, PathBuf) {
    let out = dir.join("count");
    let child = spawn(&[mode, out.to_str().unwrap()]);
    let pid = child.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    (child, pid, out)
}

/// Fails the test unless criu's `what` (dump or restore) succeeded,
/// showing its stderr and log.
fn assert_ok(o: &Output, images: &Path, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        log(images, &format!("{what}.log"))
    );
}

fn log(dir: &Path, name: &str) -> String {
    read(&dir.join(name))
}

#[test]
#[serial]
fn counter_loop_survives_dump_and_restore() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, out) = start_counting(tmp.path(), "loop");

    let images = tmp.path().join("img");
    let o = dump(pid, &images, &[]);
    assert_ok(&o, &images, "dump");
    child.wait().unwrap();
    let at_dump = counter(&out);

    let (o, restored) = restore(&images);
    assert_ok(&o, &images, "restore");
    assert_eq!(restored, Some(pid), "restored with another PID");
    wait_for("the counter to go on", || counter(&out) > at_dump + 5);
    assert!(alive(pid));
    let seen: Option<i32> = read(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok());
    assert_eq!(seen, Some(pid), "getpid() changed: {}", read(&out));
    finish(pid);
}

#[test]
#[serial]
fn a_64mib_pattern_is_intact_after_restore() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("state");
    let mut child = spawn(&["pattern", "64", out.to_str().unwrap()]);
    let pid = child.id() as i32;
    wait_for("the pattern", || read(&out).starts_with("ready"));
    kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
    wait_for("a first check", || read(&out) == "ok 1\n");

    let images = tmp.path().join("img");
    let o = dump(pid, &images, &[]);
    assert_ok(&o, &images, "dump");
    child.wait().unwrap();
    let (o, restored) = restore(&images);
    assert_ok(&o, &images, "restore");
    assert_eq!(restored, Some(pid));
    kill(Pid::from_raw(pid), Signal::SIGUSR1).unwrap();
    wait_for("the check after restore", || read(&out) != "ok 1\n");
    assert_eq!(read(&out), "ok 2\n", "pattern damaged by dump/restore");
    finish(pid);
}

#[test]
#[serial]
fn leave_running_keeps_the_task_and_its_images_restore_later() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, out) = start_counting(tmp.path(), "loop");
    let images = tmp.path().join("img");
    let o = dump(pid, &images, &["--leave-running"]);
    assert_ok(&o, &images, "dump");
    let n = counter(&out);
    wait_for("the counter to go on after --leave-running", || {
        counter(&out) > n + 5
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let (o, restored) = restore(&images);
    assert_ok(&o, &images, "restore");
    assert_eq!(restored, Some(pid));
    finish(pid);
}

#[test]
#[serial]
fn dump_of_a_missing_pid_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    // PIDs above pid_max cannot exist.
    let o = dump(i32::MAX - 1, tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {}", i32::MAX - 1)) && err.contains("no such process"),
        "{err}"
    );
}

#[test]
#[serial]
fn a_failed_dump_leaves_the_task_running_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, out) = start_counting(tmp.path(), "unsupported");
    let o = dump(pid, &tmp.path().join("img"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("socket"),
        "{err}"
    );
    let n = counter(&out);
    wait_for("the counter to go on", || counter(&out) > n + 5);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "still traced:\n{status}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
#[serial]
fn dump_of_a_task_traced_by_someone_else_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, out) = start_counting(tmp.path(), "loop");
    let t = criu::remote::Tracee::seize(pid, false).unwrap();
    let regs = *t.regs();
    let mask = t.sigmask().unwrap();
    let o = dump(pid, &tmp.path().join("img"), &[]);
    t.release(&regs, mask).unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("cannot be traced"),
        "{err}"
    );
    let n = counter(&out);
    wait_for("the counter to go on", || counter(&out) > n + 5);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn dumped_images(tmp: &Path) -> (PathBuf, i32) {
    subreaper();
    let (mut child, pid, _out) = start_counting(tmp, "loop");
    let images = tmp.join("img");
    let o = dump(pid, &images, &[]);
    assert_ok(&o, &images, "dump");
    child.wait().unwrap();
    (images, pid)
}

fn assert_restore_fails(images: &Path, pid: i32, needle: &str) {
    assert_restore_with_fails(images, &[], pid, needle);
}

/// [`assert_restore_fails`] with `extra` options for the restore.
fn assert_restore_with_fails(images: &Path, extra: &[&str], pid: i32, needle: &str) {
    let (o, _) = restore_with(images, extra);
    assert_eq!(o.status.code(), Some(1), "restore should fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "error does not say {needle:?}: {err}");
    // Nothing left behind: the PID is free (no task, not even a zombie).
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "task {pid} left behind"
    );
}

#[test]
#[serial]
fn restore_from_an_empty_directory_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (o, _) = restore(tmp.path());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("inventory.img"), "{err}");
}

#[test]
#[serial]
fn restore_from_a_truncated_image_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, pid) = dumped_images(tmp.path());
    let core = images.join(format!("core-{pid}.img"));
    let len = std::fs::metadata(&core).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&core)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_restore_fails(&images, pid, &format!("core-{pid}.img"));
}

#[test]
#[serial]
fn restore_from_a_corrupted_image_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, pid) = dumped_images(tmp.path());
    let mm = images.join(format!("mm-{pid}.img"));
    let mut bytes = std::fs::read(&mm).unwrap();
    for b in bytes.iter_mut().skip(12) {
        *b ^= 0x5a;
    }
    std::fs::write(&mm, bytes).unwrap();
    assert_restore_fails(&images, pid, &format!("mm-{pid}.img"));
}

#[test]
#[serial]
fn restore_with_missing_pages_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, pid) = dumped_images(tmp.path());
    let pages = images.join("pages-1.img");
    let len = std::fs::metadata(&pages).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    assert_restore_fails(&images, pid, "pages-1.img");
}

#[test]
#[serial]
fn restore_onto_a_taken_pid_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, pid) = dumped_images(tmp.path());
    let (o, _) = restore(&images);
    assert_ok(&o, &images, "restore");
    let (o, _) = restore(&images);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("already in use"),
        "{err}"
    );
    finish(pid);
}

#[test]
#[serial]
fn a_shell_job_needs_shell_job_both_ways() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let mut child = spawn_env(
        &["loop", out.to_str().unwrap()],
        &[("VICTIM_SHELL_JOB", "1")],
    );
    let pid = child.id() as i32;
    wait_for("the counter", || counter(&out) > 3);
    let images = tmp.path().join("img");

    let o = dump(pid, &images, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a job of our session was dumped without -j"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("--shell-job"),
        "{err}"
    );
    let n = counter(&out);
    wait_for("the counter to go on", || counter(&out) > n + 3);

    let o = dump(pid, &images, &["--shell-job"]);
    assert_ok(&o, &images, "dump");
    child.wait().unwrap();
    let (o, _) = restore(&images);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a shell job was restored without -j"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shell-job"));
    let (o, restored) = restore_with(&images, &["-j"]);
    assert_ok(&o, &images, "restore");
    assert_eq!(restored, Some(pid));
    wait_for("the counter to go on after restore", || {
        counter(&out) > n + 10
    });
    finish(pid);
}

/// `criu restore -d --restore-sibling`: the root is born a child of
/// criu's parent (the test), as seen at post-restore while criu still
/// runs; without -d it is refused.
#[test]
#[serial]
fn restore_sibling_makes_the_root_our_child_while_criu_runs() {
    use std::os::unix::fs::PermissionsExt;
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, out) = start_counting(tmp.path(), "loop");
    let images = tmp.path().join("img");
    assert_ok(&dump(pid, &images, &[]), &images, "dump");
    child.wait().unwrap();
    let seen = tmp.path().join("ppid");
    let script = tmp.path().join("ppid.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-restore ] || exit 0\n\
             grep PPid /proc/$CRTOOLS_INIT_PID/status > {}\necho $PPID >> {}\n",
            seen.display(),
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = images.to_str().unwrap();
    let o = criu(&["restore", "-D", d, "-o", "refused.log", "--restore-sibling"]);
    assert!(!o.status.success());
    assert!(
        log(&images, "refused.log").contains("--restore-detached"),
        "{}",
        log(&images, "refused.log")
    );
    assert!(!alive(pid));
    let at_dump = counter(&out);
    let (o, restored) = restore_with(
        &images,
        &["-S", "--action-script", script.to_str().unwrap()],
    );
    assert_ok(&o, &images, "restore");
    assert_eq!(restored, Some(pid));
    wait_for("the counter to go on", || counter(&out) > at_dump + 5);
    finish(pid);
    let text = read(&seen);
    let mut lines = text.lines();
    let ppid = lines.next().and_then(|l| l.split_whitespace().nth(1));
    let criu_pid = lines.next();
    assert_eq!(ppid, Some(&*std::process::id().to_string()), "{text}");
    assert_ne!(ppid, criu_pid, "{text}");
}

/// `criu restore --inherit-fd fd[N]:PATH`: the victim's counter file (a
/// regular file, keyed by its path without the leading `/`) is criu's fd
/// N, another file, after the restore.
#[test]
#[serial]
fn inherit_fd_replaces_a_regular_file_by_its_path() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::{AsRawFd, OwnedFd};
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, pid, out) = start_counting(tmp.path(), "loop");
    let images = tmp.path().join("img");
    assert_ok(&dump(pid, &images, &[]), &images, "dump");
    child.wait().unwrap();
    let at_dump = counter(&out);
    let other = tmp.path().join("other");
    let f = OwnedFd::from(std::fs::File::create(&other).unwrap());
    let key = out.to_str().unwrap().trim_start_matches('/').to_string();
    let arg = format!("fd[{}]:{key}", f.as_raw_fd());
    let d = images.to_str().unwrap();
    let pidfile = images.join("restored.pid");
    fcntl(&f, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let o = Command::new(CRIU)
        .args(["restore", "-D", d, "-o", "restore.log", "-v4", "-d"])
        .args(["--pidfile", pidfile.to_str().unwrap(), "--inherit-fd", &arg])
        .output()
        .expect("run criu");
    drop(f);
    assert_ok(&o, &images, "restore");
    assert_eq!(read(&pidfile).trim().parse().ok(), Some(pid));
    wait_for("the counter to go on in the other file", || {
        counter(&other) > 5
    });
    finish(pid);
    assert_eq!(counter(&out), at_dump, "the old file was written to");
    assert!(
        log(&images, "restore.log").contains("inherited"),
        "{}",
        log(&images, "restore.log")
    );
}

/// `--join-ns`: a tree dumped in criu's namespaces is restored into the
/// net, uts and ipc namespaces of another process (given by PID and by
/// file), and counts on there; the namespaces' content is left as it is.
#[test]
#[serial]
fn join_ns_restores_into_existing_namespaces() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    // The namespaces to join: held by a sleeping process of ours.
    let mut holder = Command::new("unshare")
        .args([
            "--net",
            "--uts",
            "--ipc",
            "sh",
            "-c",
            "hostname criu-rs-joined && exec sleep 1000",
        ])
        .spawn()
        .expect("unshare");
    let hpid = holder.id() as i32;
    let ns = |pid: i32, k: &str| std::fs::read_link(format!("/proc/{pid}/ns/{k}")).ok();
    wait_for("the holder's namespaces", || {
        ns(hpid, "uts") != ns(std::process::id() as i32, "uts")
            && read(Path::new(&format!("/proc/{hpid}/comm"))).trim() == "sleep"
    });
    let (mut child, pid, out) = start_counting(tmp.path(), "loop");
    let images = tmp.path().join("img");
    let o = dump(pid, &images, &[]);
    assert_ok(&o, &images, "dump");
    child.wait().unwrap();
    let at_dump = counter(&out);

    let net = format!("net:{hpid}");
    let uts = format!("uts:/proc/{hpid}/ns/uts");
    let ipc = format!("ipc:{hpid}");
    let (o, restored) = restore_with(
        &images,
        &["--join-ns", &net, "--join-ns", &uts, "--join-ns", &ipc],
    );
    let same: Vec<bool> = ["net", "uts", "ipc"]
        .iter()
        .map(|k| restored.is_some_and(|p| ns(p, k).is_some() && ns(p, k) == ns(hpid, k)))
        .collect();
    let counted_on = o.status.success() && {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counter(&out) <= at_dump + 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        counter(&out) > at_dump + 3
    };
    if let Some(p) = restored {
        finish(p);
    }
    let _ = holder.kill();
    let _ = holder.wait();
    assert_ok(&o, &images, "restore");
    assert_eq!(restored, Some(pid));
    assert_eq!(same, [true, true, true], "not in the joined namespaces");
    assert!(counted_on, "the restored task does not count");
}

/// A namespace file of the wrong kind is refused before anything is made.
#[test]
#[serial]
fn join_ns_of_the_wrong_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, pid) = dumped_images(tmp.path());
    assert_restore_with_fails(
        &images,
        &["--join-ns", "net:/proc/self/ns/uts"],
        pid,
        "is not a net namespace",
    );
}

/// A dump with `--network-lock nftables` that will never be restored
/// leaves its connections locked; `criu network-unlock -D DIR` releases the
/// lock the inventory names (once: a second call finds none).
#[test]
#[serial]
fn network_unlock_releases_the_lock_of_a_dump_never_restored() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Command::new("setsid")
        .args([
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && exec sleep 1000"),
        ])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("bash");
    let pid = child.id() as i32;
    let (_peer, _) = listener.accept().unwrap();
    wait_for("the sleeper", || {
        read(Path::new(&format!("/proc/{pid}/comm"))).trim() == "sleep"
    });
    let images = tmp.path().join("img");
    let img = images.to_str().unwrap();
    struct Unlock<'a>(&'a str);
    impl Drop for Unlock<'_> {
        fn drop(&mut self) {
            let _ = criu(&["network-unlock", "-D", self.0]);
        }
    }
    let _guard = Unlock(img);
    let o = dump(
        pid,
        &images,
        &["--tcp-established", "--network-lock", "nftables"],
    );
    assert_ok(&o, &images, "dump");
    child.wait().unwrap();

    let first = criu(&["network-unlock", "-D", img]);
    let second = criu(&["network-unlock", "-D", img]);
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(first.status.success(), "{first:?}");
    assert!(text(&first).contains("is released"), "{}", text(&first));
    assert!(second.status.success(), "{second:?}");
    assert!(
        text(&second).contains("holds no network lock"),
        "{}",
        text(&second)
    );
}

/// A dump without the nftables lock has nothing to release: said so.
#[test]
#[serial]
fn network_unlock_of_a_dump_without_a_lock_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = dumped_images(tmp.path());
    let o = criu(&["network-unlock", "-D", images.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("did not lock the network with nftables"),
        "{err}"
    );
}
