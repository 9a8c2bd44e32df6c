//! What the end-to-end tests share: the binaries under test, the victim
//! program, and waiting for processes and counters. (`mod support;` in each
//! test crate; not every crate uses every item.)
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub mod swrk;

pub const CRIU: &str = env!("CARGO_BIN_EXE_criu");
pub const VICTIM: &str = env!("CARGO_BIN_EXE_criu-test-victim");

/// Restored tasks (whose parent, criu, exits) become our children.
pub fn subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// Starts the victim program with `args`, stdio on /dev/null.
pub fn spawn(args: &[&str]) -> Child {
    spawn_env(args, &[])
}

pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(VICTIM)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim")
}

/// Polls `f` until it holds; fails the test after 30 s, naming `what`.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The victim's counter file: its first number.
pub fn counter(p: &Path) -> u64 {
    read(p)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn criu(args: &[&str]) -> Output {
    Command::new(CRIU)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run criu")
}

/// `criu CMD -t PID -D DIR -o CMD.log -v4 EXTRA` (CMD `pre-dump` or
/// `dump`), which must succeed; DIR is made when missing.
pub fn criu_on_ok(cmd: &str, pid: i32, dir: &Path, extra: &[&str]) {
    std::fs::create_dir_all(dir).expect("images dir");
    let (pid, log) = (pid.to_string(), format!("{cmd}.log"));
    let mut args = vec![
        cmd,
        "-t",
        &pid,
        "-D",
        dir.to_str().expect("images dir is UTF-8"),
        "-o",
        &log,
        "-v4",
    ];
    args.extend_from_slice(extra);
    assert_criu_ok(&criu(&args), dir, cmd, &log);
}

/// `criu restore -d` of the images in `dir` (log `restore.log` there, at
/// -v4) with `extra` options; its output, and the restored root's PID
/// from the pidfile when it wrote one.
pub fn restore_detached(dir: &Path, extra: &[&str]) -> (Output, Option<i32>) {
    let pidfile = dir.join("restored.pid");
    let _ = std::fs::remove_file(&pidfile);
    let mut args = vec![
        "restore",
        "-D",
        dir.to_str().expect("images dir is UTF-8"),
        "-o",
        "restore.log",
        "-v4",
        "-d",
        "--pidfile",
        pidfile.to_str().expect("pidfile is UTF-8"),
    ];
    args.extend_from_slice(extra);
    let out = criu(&args);
    let pid = read(&pidfile).trim().parse().ok();
    (out, pid)
}

/// Fails the test unless criu's `what` succeeded, showing its stderr and
/// its log `log` in `images`.
pub fn assert_criu_ok(o: &Output, images: &Path, what: &str, log: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        read(&images.join(log))
    );
}

/// The dump counters of `stats-dump` in `dir`.
pub fn dump_stats(dir: &Path) -> criu::image::pb::DumpStatsEntry {
    let e: Vec<criu::image::pb::StatsEntry> =
        criu::image::read_image(dir, "stats-dump", criu::image::magic::STATS).expect("stats-dump");
    e.into_iter()
        .next()
        .and_then(|e| e.dump)
        .expect("dump stats")
}

/// Runs and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// The PID is free again (its zombie reaped, by us or by init).
pub fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills and reaps a restored task (our child through the subreaper).
pub fn finish(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_for("the restored task to be reaped", || {
        matches!(
            waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
            Err(_) | Ok(WaitStatus::Signaled(..))
        )
    });
}

/// The files in `dir` other than logs (`*.log`): what a refused request
/// must not have written.
pub fn images_but_logs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
