//! podman drives criu-rs through runc: `podman container checkpoint` and
//! `podman container restore`, in place and through an exported archive
//! (`-e` / `-i`). podman finds `criu` in its PATH, so the tests put ours
//! first there.
//!
//! Needs podman, runc and a static busybox (Debian's `podman`, `runc`,
//! `busybox-static`, which `.ci/run` installs); without them the tests say
//! so and skip. podman here: vfs storage, cgroupfs, no network, and rlimits
//! no higher than ours (raising a hard rlimit fails without
//! CAP_SYS_RESOURCE).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serial_test::serial;

mod support;
use support::*;

const BUSYBOX: &str = "/bin/busybox";

/// The counting loop of the containers: `/count` in their rootfs.
const COUNT: &str =
    "i=0; while :; do i=$((i+1)); echo $i > /count.new; mv /count.new /count; sleep 0.05; done";

fn find(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A directory holding only a `criu` link to ours, for podman's PATH.
struct Env {
    podman: PathBuf,
    bin: tempfile::TempDir,
}

impl Env {
    fn new() -> Option<Env> {
        let Some(podman) = find("podman") else {
            eprintln!("skipped: podman is not installed (Debian package podman)");
            return None;
        };
        if find("runc").is_none() {
            eprintln!("skipped: runc is not installed (Debian package runc)");
            return None;
        }
        if !Path::new(BUSYBOX).is_file() {
            eprintln!("skipped: no {BUSYBOX} (Debian package busybox-static)");
            return None;
        }
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(CRIU, bin.path().join("criu")).unwrap();
        Some(Env { podman, bin })
    }

    fn podman(&self, args: &[&str]) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.bin.path().to_owned()];
        dirs.extend(std::env::split_paths(&path));
        Command::new(&self.podman)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--runtime",
                "runc",
            ])
            .args(args)
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The host PID of the container's init (0 when it is not running).
    fn pid(&self, name: &str) -> i64 {
        self.ok(&["inspect", "--format", "{{.State.Pid}}", name])
            .parse()
            .unwrap_or(0)
    }
}

/// A busybox rootfs of our own.
fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for sub in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(d.path().join(sub)).unwrap();
    }
    std::fs::copy(BUSYBOX, d.path().join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "mv", "cat"] {
        std::os::unix::fs::symlink("busybox", d.path().join("bin").join(applet)).unwrap();
    }
    d
}

/// A container of ours, removed when the test ends, passed or failed.
struct Container<'a> {
    env: &'a Env,
    name: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.env.podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

const RUN: [&str; 7] = [
    "run",
    "-d",
    "--network",
    "none",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit=nproc=32768:32768",
];

/// criu's logs of the container, for a failure's message.
fn dump_log_hint(env: &Env, name: &str) -> String {
    let out = env.podman(&["inspect", "--format", "{{.StaticDir}}", name]);
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ["dump.log", "restore.log"]
        .iter()
        .map(|l| format!("{l}:\n{}", read(&Path::new(&dir).join(l))))
        .collect()
}

/// `podman container checkpoint` stops the container, `podman container
/// restore` brings it back with the same PID, and it counts on.
#[test]
#[serial]
fn podman_checkpoint_and_restore_in_place() {
    let Some(env) = Env::new() else { return };
    let root = rootfs();
    let name = format!("criu-rs-pm-{}", std::process::id());
    let c = Container {
        env: &env,
        name: name.clone(),
    };
    let rootfs = root.path().to_str().unwrap();
    let mut args = RUN.to_vec();
    args.extend(["--name", &name, "--rootfs", rootfs, "/bin/sh", "-c", COUNT]);
    env.ok(&args);
    let count = root.path().join("count");
    wait_for("the container to count", || counter(&count) > 3);

    let out = env.podman(&["container", "checkpoint", &name]);
    assert!(
        out.status.success(),
        "checkpoint: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dump_log_hint(&env, &name)
    );
    let at = counter(&count);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        counter(&count),
        at,
        "nothing counts while it is checkpointed"
    );

    let out = env.podman(&["container", "restore", &name]);
    assert!(
        out.status.success(),
        "restore: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dump_log_hint(&env, &name)
    );
    assert!(env.pid(&name) > 0, "not running after its restore");
    // The count lives in the shell's memory only: a container started
    // afresh would count from 1 again.
    let mut seen = Vec::new();
    wait_for("the restored container to count on", || {
        let n = counter(&count);
        seen.push(n);
        n > at + 3
    });
    assert!(
        seen.iter().all(|&n| n >= at),
        "the count started again instead of going on from {at}: {seen:?}"
    );
    drop(c);
}

/// `checkpoint -e ARCHIVE` exports the checkpoint of a container made from
/// an image; the container is removed, and `restore -i ARCHIVE` makes it
/// again from the archive, running on from where it was.
#[test]
#[serial]
fn podman_checkpoint_export_and_restore_import() {
    let Some(env) = Env::new() else { return };
    let root = rootfs();
    let tag = format!("localhost/criu-rs-busybox-{}", std::process::id());
    let tar = root.path().with_extension("tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    env.ok(&["import", tar.to_str().unwrap(), &tag]);
    let _ = std::fs::remove_file(&tar);
    struct Image<'a>(&'a Env, String);
    impl Drop for Image<'_> {
        fn drop(&mut self) {
            let _ = self.0.podman(&["rmi", "-f", &self.1]);
        }
    }
    let _image = Image(&env, tag.clone());

    let name = format!("criu-rs-pmx-{}", std::process::id());
    let c = Container {
        env: &env,
        name: name.clone(),
    };
    let mut args = RUN.to_vec();
    args.extend(["--name", &name, &tag, "/bin/sh", "-c", COUNT]);
    env.ok(&args);
    let cat = || -> u64 {
        let out = env.podman(&["exec", &name, "/bin/cat", "/count"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    wait_for("the container to count", || cat() > 3);

    let archive = tempfile::tempdir().unwrap();
    let file = archive.path().join("checkpoint.tar.gz");
    let file = file.to_str().unwrap();
    let out = env.podman(&["container", "checkpoint", "-e", file, &name]);
    assert!(
        out.status.success(),
        "checkpoint -e: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dump_log_hint(&env, &name)
    );
    env.ok(&["rm", "-f", "-t", "0", &name]);
    let out = env.podman(&["container", "restore", "-i", file]);
    assert!(
        out.status.success(),
        "restore -i: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dump_log_hint(&env, &name)
    );
    let at = cat();
    assert!(at > 3, "the restored container lost its count ({at})");
    wait_for("the restored container to count on", || cat() > at + 3);
    drop(c);
}
