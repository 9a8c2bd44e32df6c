//! RPC options runc sends: each is honoured, or refused with a precise
//! error. A fake RPC client drives `criu swrk`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criu::rpc::pb::{CriuCgMode, CriuOpts, CriuReq, CriuReqType};
use nix::fcntl::FcntlArg;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::swrk::Swrk;
use support::*;

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
    let victim = spawn(&["loop", out.to_str().unwrap()]);
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

/// A fresh cgroup for this test under `mnt`; None (the test then skips,
/// saying why: `missing` when there is no hierarchy) when none can be made.
fn test_cgroup(mnt: Option<PathBuf>, missing: &str) -> Option<PathBuf> {
    let Some(mnt) = mnt else {
        eprintln!("skipped: {missing}");
        return None;
    };
    let cg = mnt.join(format!("criu-rs-test-{}", std::process::id()));
    if std::fs::create_dir(&cg).is_err() {
        eprintln!("skipped: cannot make a cgroup under {}", mnt.display());
        return None;
    }
    Some(cg)
}

/// runc's `freeze_cgroup`: the cgroup is frozen after pre-dump (while the
/// tree is seized) and thawed after the dump.
#[test]
#[serial]
fn freeze_cgroup_freezes_around_the_seize_and_thaws() {
    let Some(cg) = test_cgroup(cgroup2_mount(), "no cgroup2 mount") else {
        return;
    };
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

/// The mount point of the cgroup v1 freezer hierarchy, if there is one.
fn freezer_v1_mount() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") || !post.nth(1)?.split(',').any(|o| o == "freezer") {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

fn tracer(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

/// runc's `freeze_cgroup` on a cgroup v1 host: the tasks of a frozen v1
/// cgroup enter no ptrace stop, so criu seizes them while frozen and thaws
/// the cgroup before it waits for them. A parent and its child are both
/// dumped, keep running, and are no longer traced afterwards.
#[test]
#[serial]
fn freeze_cgroup_v1_seizes_the_frozen_tasks_and_thaws() {
    let Some(cg) = test_cgroup(freezer_v1_mount(), "no cgroup v1 freezer mounted") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    // The parent is put into the cgroup before it forks the counter.
    let mut parent = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs; {VICTIM} loop {} & wait",
                cg.display(),
                out.display()
            ),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let pid = parent.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    let tasks = std::fs::read_to_string(cg.join("tasks")).unwrap();
    let images_fd = File::open(tmp.path()).unwrap();
    let s = Swrk::start(tmp.path());
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::Dump as i32,
            opts: Some(CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                pid: Some(pid),
                leave_running: Some(true),
                freeze_cgroup: Some(cg.display().to_string()),
                // sh stays in the test's session.
                shell_job: Some(true),
                log_file: Some("dump.log".into()),
                log_level: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        },
        |_, _| true,
    );
    let log = std::fs::read_to_string(tmp.path().join("dump.log")).unwrap_or_default();
    let state = std::fs::read_to_string(cg.join("freezer.state")).unwrap_or_default();
    s.finish();
    let at = counter(&out);
    let counted_on = r.success && {
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter(&out) <= at + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        counter(&out) > at + 3
    };
    let traced: Vec<(i32, Option<i32>)> = tasks
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .map(|t| (t, tracer(t)))
        .filter(|(_, tr)| *tr != Some(0))
        .collect();
    for t in tasks
        .split_whitespace()
        .filter_map(|t| t.parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(t), Signal::SIGKILL);
    }
    parent.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(&cg).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(r.success, "dump failed: {r:?}\n{log}");
    assert_eq!(tasks.split_whitespace().count(), 2, "{tasks}");
    assert!(
        log.contains("cgroup frozen") && log.contains("cgroup thawed"),
        "{log}"
    );
    assert_eq!(state.trim(), "THAWED");
    assert!(counted_on, "the counter stopped after the dump");
    assert!(traced.is_empty(), "tasks still traced: {traced:?}");
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

/// Whether `lo` is up in the network namespace of `pid`.
fn lo_up(pid: i32) -> bool {
    let out = Command::new("/usr/bin/nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "/usr/sbin/ip",
            "-o",
            "link",
            "show",
            "lo",
        ])
        .output()
        .expect("nsenter");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lo"), "ip link show lo: {out:?}");
    text.contains(",UP") || text.contains("<UP")
}

/// Kills a restored root and has criu, its parent, reap it (WAIT_PID).
fn reap(s: &Swrk, pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let r = s.call(
        &CriuReq {
            r#type: CriuReqType::WaitPid as i32,
            pid: Some(pid as u32),
            ..Default::default()
        },
        |_, _| true,
    );
    assert!(r.success, "WAIT_PID: {r:?}");
}

/// runc's `empty_ns = CLONE_NEWNET`: the tree gets a new network
/// namespace with nothing restored in it (lo stays down); without it the
/// namespace comes back as dumped (lo up). Other namespaces cannot be left
/// empty and are refused by name.
#[test]
#[serial]
fn empty_ns_net_restores_an_empty_network_namespace() {
    let tools = [
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
        "/usr/sbin/ip",
        "/bin/sh",
    ];
    if !nix::unistd::geteuid().is_root() || !tools.iter().all(|t| Path::new(t).exists()) {
        eprintln!("skipped: needs root and {tools:?}");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let mut victim = Command::new("/usr/bin/unshare")
        .args([
            "-n",
            "/bin/sh",
            "-c",
            &format!(
                "/usr/sbin/ip link set lo up && exec {VICTIM} loop {}",
                out.display()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let pid = victim.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    assert!(lo_up(pid));
    let images_fd = File::open(tmp.path()).unwrap();
    let opts = |log: &str, empty_ns: u32| CriuOpts {
        images_dir_fd: images_fd.as_raw_fd(),
        log_file: Some(log.into()),
        log_level: Some(4),
        empty_ns: Some(empty_ns),
        ..Default::default()
    };
    let req = |ty: CriuReqType, o: CriuOpts| CriuReq {
        r#type: ty as i32,
        opts: Some(o),
        ..Default::default()
    };
    let log = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap_or_default();
    let net = libc::CLONE_NEWNET as u32;
    let s = Swrk::start(tmp.path());
    let r = s.call(
        &req(
            CriuReqType::Dump,
            CriuOpts {
                pid: Some(pid),
                ..opts("dump.log", net)
            },
        ),
        |_, _| true,
    );
    assert!(r.success, "dump failed: {r:?}\n{}", log("dump.log"));
    // criu keeps the killed tree traced until it exits (dump::freeze does
    // not reap its tracees): only then can the victim be waited for.
    s.finish();
    victim.wait().unwrap();
    let s = Swrk::start(tmp.path());

    let r = s.call(
        &req(
            CriuReqType::Restore,
            opts("rst1.log", net | libc::CLONE_NEWUTS as u32),
        ),
        |_, _| true,
    );
    assert!(!r.success);
    assert!(r.cr_errmsg.unwrap_or_default().contains("empty_ns"));

    let r = s.call(&req(CriuReqType::Restore, opts("rst2.log", net)), |_, _| {
        true
    });
    assert!(r.success, "restore failed: {r:?}\n{}", log("rst2.log"));
    let empty = lo_up(pid);
    reap(&s, pid);
    let r = s.call(&req(CriuReqType::Restore, opts("rst3.log", 0)), |_, _| true);
    assert!(r.success, "restore failed: {r:?}\n{}", log("rst3.log"));
    let full = lo_up(pid);
    reap(&s, pid);
    s.finish();
    assert!(!empty, "empty_ns=net: lo came back up");
    assert!(full, "without empty_ns: lo did not come back up");
}

/// The options runc sends that criu-rs cannot honour yet are each refused
/// with the option's name and why, before anything is done.
#[test]
#[serial]
fn runc_options_not_honoured_are_refused_with_a_reason() {
    use criu::rpc::pb::ExtMountMap;
    let tmp = tempfile::tempdir().unwrap();
    let images_fd = File::open(tmp.path()).unwrap();
    let base = CriuOpts {
        images_dir_fd: images_fd.as_raw_fd(),
        pid: Some(std::process::id() as i32),
        ..Default::default()
    };
    type Case = (CriuReqType, fn(&mut CriuOpts), &'static str, &'static str);
    let cases: [Case; 5] = [
        (
            CriuReqType::Dump,
            |o| {
                o.ext_mnt.push(ExtMountMap {
                    key: "/etc/hosts".into(),
                    val: "/etc/hosts".into(),
                });
                o.auto_ext_mnt = Some(true);
            },
            "auto_ext_mnt",
            "must be named",
        ),
        (
            CriuReqType::Dump,
            |o| {
                o.manage_cgroups = Some(true);
                o.cgroup_props = Some("\"cpu\":\n - \"strategy\": \"merge\"\n".into());
            },
            "cgroup_props",
            "built-in list",
        ),
        (
            CriuReqType::Dump,
            |o| o.evasive_devices = Some(true),
            "evasive_devices",
            "device file",
        ),
        (
            CriuReqType::Restore,
            |o| o.manage_cgroups_mode = Some(77),
            "manage_cgroups_mode 77",
            "unknown mode",
        ),
        (
            CriuReqType::Restore,
            |o| o.freeze_cgroup = Some("/sys/fs/cgroup/x".into()),
            "freeze_cgroup",
            "on restore",
        ),
    ];
    let s = Swrk::start(tmp.path());
    for (ty, set, name, why) in cases {
        let mut o = base.clone();
        set(&mut o);
        let r = s.call(
            &CriuReq {
                r#type: ty as i32,
                opts: Some(o),
                ..Default::default()
            },
            |_, _| true,
        );
        assert!(!r.success, "{name} was accepted");
        let msg = r.cr_errmsg.unwrap_or_default();
        assert!(msg.contains(name) && msg.contains(why), "{name}: {msg}");
    }
    // Nothing but the log, which says why.
    assert_eq!(images_but_logs(tmp.path()), Vec::<String>::new());
    s.finish();
}

fn req(ty: CriuReqType, o: CriuOpts) -> CriuReq {
    CriuReq {
        r#type: ty as i32,
        opts: Some(o),
        ..Default::default()
    }
}

/// A field of /proc/PID/status.
fn status_field(pid: i32, name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The cgroup v2 path of `pid` (the `0::PATH` line).
fn cgroup2_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Dumps `pid` (killing it) with a fresh swrk; the victim is reaped.
fn dump_and_reap(dir: &Path, images_fd: &File, pid: i32, mut victim: Child) {
    let s = Swrk::start(dir);
    let r = s.call(
        &req(
            CriuReqType::Dump,
            CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                pid: Some(pid),
                log_file: Some("dump.log".into()),
                log_level: Some(4),
                ..Default::default()
            },
        ),
        |_, _| true,
    );
    let log = std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default();
    s.finish();
    let _ = victim.kill();
    victim.wait().unwrap();
    assert!(r.success, "dump failed: {r:?}\n{log}");
}

/// runc's `manage_cgroups` / `manage_cgroups_mode`: soft (runc's default)
/// puts the restored task back into its cgroup; ignore leaves it in
/// criu's.
#[test]
#[serial]
fn manage_cgroups_mode_reaches_the_restore() {
    let Some(mnt) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let cg = mnt.join(format!("criu-rs-cgmode-{}", std::process::id()));
    if std::fs::create_dir(&cg).is_err() {
        eprintln!("skipped: cannot make a cgroup under {}", mnt.display());
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let (victim, pid) = start_victim(&out);
    std::fs::write(cg.join("cgroup.procs"), pid.to_string()).unwrap();
    let theirs = cgroup2_of(pid).expect("the victim's cgroup");
    let ours = cgroup2_of(std::process::id() as i32).expect("our cgroup");
    assert_ne!(theirs, ours);
    let images_fd = File::open(tmp.path()).unwrap();
    dump_and_reap(tmp.path(), &images_fd, pid, victim);
    let log = |n: &str| std::fs::read_to_string(tmp.path().join(n)).unwrap_or_default();
    let s = Swrk::start(tmp.path());
    let mut got = Vec::new();
    for (i, (flag, mode)) in [
        (Some(true), Some(CriuCgMode::Ignore)),
        (Some(true), None),
        (Some(false), None),
        (None, Some(CriuCgMode::Soft)),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("rst{i}.log");
        let r = s.call(
            &req(
                CriuReqType::Restore,
                CriuOpts {
                    images_dir_fd: images_fd.as_raw_fd(),
                    log_file: Some(name.clone()),
                    log_level: Some(4),
                    manage_cgroups: flag,
                    manage_cgroups_mode: mode.map(|m| m as i32),
                    ..Default::default()
                },
            ),
            |_, _| true,
        );
        assert!(r.success, "restore {i} failed: {r:?}\n{}", log(&name));
        got.push(cgroup2_of(pid));
        reap(&s, pid);
    }
    s.finish();
    let _ = std::fs::remove_dir(&cg);
    assert_eq!(
        got,
        [
            Some(ours.clone()),
            Some(theirs.clone()),
            Some(ours),
            Some(theirs)
        ]
    );
}

/// runc's `rst_sibling`: the restored root is a child of criu's parent
/// (here the test) from the start, not of criu, and the test reaps it.
#[test]
#[serial]
fn rst_sibling_makes_the_root_a_child_of_the_client() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let (victim, pid) = start_victim(&out);
    let images_fd = File::open(tmp.path()).unwrap();
    dump_and_reap(tmp.path(), &images_fd, pid, victim);
    let s = Swrk::start(tmp.path());
    let criu = s.child.id().to_string();
    let r = s.call(
        &req(
            CriuReqType::Restore,
            CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                log_file: Some("rst.log".into()),
                log_level: Some(4),
                rst_sibling: Some(true),
                ..Default::default()
            },
        ),
        |_, _| true,
    );
    let log = std::fs::read_to_string(tmp.path().join("rst.log")).unwrap_or_default();
    assert!(r.success, "restore failed: {r:?}\n{log}");
    assert_eq!(r.restore.map(|x| x.pid), Some(pid));
    // Read while criu still runs: a child of criu would be re-parented to
    // us only once it exits.
    let ppid = status_field(pid, "PPid");
    let at = counter(&out);
    wait_for("the restored victim to count on", || counter(&out) > at + 3);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let waited = waitpid(Pid::from_raw(pid), None);
    s.finish();
    assert_eq!(ppid, Some(std::process::id().to_string()), "criu is {criu}");
    assert!(
        matches!(waited, Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _))),
        "{waited:?}"
    );
}

/// podman's `inherit_fd`: a victim whose stdout is a pipe is restored
/// with `pipe:[INODE]` mapped to a new pipe's write end; what it writes
/// comes out of the new pipe.
#[test]
#[serial]
fn inherit_fd_replaces_a_pipe_of_the_images() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let setsid = "/usr/bin/setsid";
    if !Path::new(setsid).exists() {
        eprintln!("skipped: no {setsid}");
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let (old_r, old_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let ino = File::from(old_r.try_clone().unwrap())
        .metadata()
        .unwrap()
        .ino();
    let victim = Command::new(setsid)
        .args(["/bin/sh", "-c", "while :; do echo tick; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(old_w))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let pid = victim.id() as i32;
    let mut old = File::from(old_r);
    let mut buf = [0u8; 5];
    old.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"tick\n");
    let images_fd = File::open(tmp.path()).unwrap();
    dump_and_reap(tmp.path(), &images_fd, pid, victim);
    drop(old);

    let (new_r, new_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let s = Swrk::start_keeping(tmp.path(), &[&new_w]);
    let r = s.call(
        &req(
            CriuReqType::Restore,
            CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                log_file: Some("rst.log".into()),
                log_level: Some(4),
                inherit_fd: vec![criu::rpc::pb::InheritFd {
                    key: format!("pipe:[{ino}]"),
                    fd: new_w.as_raw_fd(),
                }],
                ..Default::default()
            },
        ),
        |_, _| true,
    );
    drop(new_w);
    let log = std::fs::read_to_string(tmp.path().join("rst.log")).unwrap_or_default();
    assert!(r.success, "restore failed: {r:?}\n{log}");
    // What the restored victim writes, read without blocking for ever.
    nix::fcntl::fcntl(&new_r, FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut new = File::from(new_r);
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 20 && start.elapsed() < Duration::from_secs(20) {
        let mut b = [0u8; 64];
        match new.read(&mut b) {
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("reading the new pipe: {e}"),
        }
    }
    reap(&s, pid);
    s.finish();
    assert!(
        String::from_utf8_lossy(&got).starts_with("tick\ntick\ntick\ntick\n"),
        "{got:?}\n{log}"
    );
}

/// A restore with `rst_sibling` that fails after the root is born kills
/// it (criu cannot wait for it: the client, its parent, reaps it) and
/// answers at once.
#[test]
#[serial]
fn rst_sibling_failure_kills_the_root_the_client_reaps_it() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let (victim, pid) = start_victim(&out);
    let images_fd = File::open(tmp.path()).unwrap();
    dump_and_reap(tmp.path(), &images_fd, pid, victim);
    let s = Swrk::start(tmp.path());
    let mut ppid_then = None;
    let started = Instant::now();
    let r = s.call(
        &req(
            CriuReqType::Restore,
            CriuOpts {
                images_dir_fd: images_fd.as_raw_fd(),
                log_file: Some("rst.log".into()),
                log_level: Some(4),
                rst_sibling: Some(true),
                notify_scripts: Some(true),
                ..Default::default()
            },
        ),
        |script, _| {
            if script == "post-restore" {
                ppid_then = status_field(pid, "PPid");
                return false;
            }
            true
        },
    );
    let took = started.elapsed();
    assert!(!r.success, "the restore went on: {r:?}");
    assert!(
        r.cr_errmsg.unwrap_or_default().contains("post-restore"),
        "{:?}",
        std::fs::read_to_string(tmp.path().join("rst.log"))
    );
    let waited = waitpid(Pid::from_raw(pid), None);
    s.finish();
    assert_eq!(ppid_then, Some(std::process::id().to_string()));
    assert!(
        matches!(waited, Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _))),
        "{waited:?}"
    );
    assert!(took < Duration::from_secs(5), "destroy waited {took:?}");
}
