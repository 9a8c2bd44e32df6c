//! The command line with configuration files and action scripts: the
//! `criu` binary, in an environment the test sets up itself (its own
//! `HOME`, no `CRIU_CONFIG_FILE` unless the test sets one).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serial_test::serial;

const CRIU: &str = env!("CARGO_BIN_EXE_criu");
const VICTIM: &str = env!("CARGO_BIN_EXE_criu-test-victim");

/// `criu ARGS` with `HOME=home` and `CRIU_CONFIG_FILE` as given.
fn criu(home: &Path, env_file: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(CRIU);
    c.args(args)
        .env("HOME", home)
        .env_remove("CRIU_CONFIG_FILE")
        .stdin(Stdio::null());
    if let Some(f) = env_file {
        c.env("CRIU_CONFIG_FILE", f);
    }
    c.output().expect("run criu")
}

struct Setup {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    images: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let images = tmp.path().join("img");
    std::fs::create_dir_all(home.join(".criu")).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    Setup {
        _tmp: tmp,
        home,
        images,
    }
}

fn write(p: &Path, text: &str) -> PathBuf {
    std::fs::write(p, text).unwrap();
    p.to_path_buf()
}

fn logs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

#[test]
fn config_file_options_apply_and_the_command_line_overrides_them() {
    let s = setup();
    let conf = write(
        &s.home.join("my.conf"),
        &format!(
            "# where things go\nimages-dir {}\nlog-file from-conf.log # the log\nverbosity 4\n",
            s.images.display()
        ),
    );
    let conf = conf.to_str().unwrap();
    criu(&s.home, None, &["--config", conf, "check"]);
    assert_eq!(logs(&s.images), ["from-conf.log"]);
    std::fs::remove_file(s.images.join("from-conf.log")).unwrap();
    criu(&s.home, None, &["check", "--config", conf, "-o", "cmd.log"]);
    assert_eq!(logs(&s.images), ["cmd.log"]);
}

#[test]
fn home_default_file_env_file_and_no_default_config() {
    let s = setup();
    write(
        &s.home.join(".criu/default.conf"),
        &format!("images-dir {}\nlog-file home.log\n", s.images.display()),
    );
    criu(&s.home, None, &["check"]);
    assert_eq!(logs(&s.images), ["home.log"]);
    std::fs::remove_file(s.images.join("home.log")).unwrap();

    // CRIU_CONFIG_FILE comes after the default files and wins.
    let env = write(&s.home.join("env.conf"), "log-file env.log\n");
    criu(&s.home, Some(&env), &["check"]);
    assert_eq!(logs(&s.images), ["env.log"]);
    std::fs::remove_file(s.images.join("env.log")).unwrap();

    // Without the default files nothing names the images dir.
    criu(&s.home, None, &["--no-default-config", "check"]);
    criu(&s.home, None, &["check", "--config", env.to_str().unwrap()]);
    assert_eq!(logs(&s.images), Vec::<String>::new());
}

#[test]
fn a_broken_file_is_an_error_naming_file_and_line_but_help_works() {
    let s = setup();
    let conf = write(
        &s.home.join("bad.conf"),
        "verbosity 4\n\ntcp-close now please\n",
    );
    let out = criu(
        &s.home,
        None,
        &["--config", conf.to_str().unwrap(), "check"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.conf") && err.contains("line 3"), "{err}");
    let out = criu(
        &s.home,
        None,
        &["--config", conf.to_str().unwrap(), "--help"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = criu(
        &s.home,
        None,
        &["--config", "/nonexistent/criu-rs.conf", "check"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/criu-rs.conf"));
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

/// Action scripts run at each point with the action and the root's pid,
/// post-dump while the tree is still frozen, post-restore and pre-resume
/// before it runs; a dump at -v2 ends with a summary; a restore writes
/// stats-restore.
#[test]
#[serial]
fn action_scripts_see_each_point_in_order() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let s = setup();
    let out = s.home.join("count");
    let record = s.home.join("actions");
    let script = write(
        &s.home.join("script.sh"),
        &format!(
            "#!/bin/sh\nstate=$(cut -d' ' -f3 /proc/$CRTOOLS_INIT_PID/stat 2>/dev/null || echo -)\n\
             echo \"$CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID $state\" >> {}\n",
            record.display()
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The script comes from a configuration file, so both paths are used.
    let conf = write(
        &s.home.join("c.conf"),
        &format!("action-script {}\n", script.display()),
    );
    let mut victim = Command::new(VICTIM)
        .args(["loop", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let pid = victim.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    let img = s.images.to_str().unwrap();
    let conf = conf.to_str().unwrap();
    let pids = pid.to_string();
    let d = criu(
        &s.home,
        None,
        &[
            "dump", "--config", conf, "-t", &pids, "-D", img, "-o", "dump.log", "-v2",
        ],
    );
    let dump_log = std::fs::read_to_string(s.images.join("dump.log")).unwrap_or_default();
    assert!(d.status.success(), "dump failed: {d:?}\n{dump_log}");
    victim.wait().unwrap();
    assert!(dump_log.contains("dump summary: frozen for"), "{dump_log}");
    assert!(dump_log.contains("pages written"), "{dump_log}");

    let pidfile = s.home.join("pid");
    let r = criu(
        &s.home,
        None,
        &[
            "restore",
            "--config",
            conf,
            "-D",
            img,
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
    );
    assert!(
        r.status.success(),
        "restore failed: {r:?}\n{}",
        std::fs::read_to_string(s.images.join("restore.log")).unwrap_or_default()
    );
    let got = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<(String, String, String)> = got
        .lines()
        .map(|l| {
            let mut w = l.split(' ').map(str::to_string);
            (
                w.next().unwrap_or_default(),
                w.next().unwrap_or_default(),
                w.next().unwrap_or_default(),
            )
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "pre-dump",
            "post-dump",
            "pre-restore",
            "post-restore",
            "pre-resume",
            "post-resume"
        ],
        "{got}"
    );
    assert!(lines.iter().all(|l| l.1 == pids), "{got}");
    let state = |i: usize| lines[i].2.as_str();
    assert!(matches!(state(0), "S" | "R"), "pre-dump: running\n{got}");
    assert_eq!(state(1), "t", "post-dump: still frozen\n{got}");
    assert_eq!(state(2), "-", "pre-restore: nothing yet\n{got}");
    assert_eq!(state(3), "t", "post-restore: not running yet\n{got}");
    assert_eq!(state(4), "t", "pre-resume: not running yet\n{got}");
    assert_ne!(state(5), "t", "post-resume: running\n{got}");

    // stats-restore, as crit shows it.
    let crit = Command::new(env!("CARGO_BIN_EXE_crit"))
        .args(["show", s.images.join("stats-restore").to_str().unwrap()])
        .output()
        .expect("crit");
    let text = String::from_utf8_lossy(&crit.stdout);
    assert!(text.contains("\"pages_restored\""), "{crit:?}");
    assert!(text.contains("\"restore_time\""), "{crit:?}");

    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_for("the restored task to be reaped", || {
        matches!(
            waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
            Err(_) | Ok(nix::sys::wait::WaitStatus::Signaled(..))
        )
    });
}

#[test]
fn freeze_cgroup_that_is_no_cgroup_is_refused_before_anything_is_done() {
    let s = setup();
    let out = criu(
        &s.home,
        None,
        &[
            "dump",
            "-t",
            &std::process::id().to_string(),
            "-D",
            s.images.to_str().unwrap(),
            "--freeze-cgroup",
            "/nonexistent/criu-rs-cg",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("freeze_cgroup /nonexistent/criu-rs-cg"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&s.images).unwrap().count(), 0);
}
