//! runc drives criu-rs as it drives CRIU: `runc checkpoint` and `runc
//! restore` of a busybox container, with `runc --criu` naming our binary.
//!
//! Needs runc and a static busybox (Debian's `runc` and `busybox-static`,
//! which `.ci/run` installs); without them the tests say so and skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serial_test::serial;

mod support;
use support::*;

const BUSYBOX: &str = "/bin/busybox";

fn runc_path() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
}

/// Whether `BUSYBOX` is a static binary (a dynamic one cannot run in a
/// rootfs without its libraries): a 64-bit ELF without a PT_INTERP
/// program header.
fn busybox_is_static() -> bool {
    let Ok(elf) = std::fs::read(BUSYBOX) else {
        return false;
    };
    let num = |off: usize, len: usize| -> Option<usize> {
        let b = elf.get(off..off + len)?;
        Some(b.iter().rev().fold(0usize, |a, &x| (a << 8) | x as usize))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (num(32, 8), num(54, 2), num(56, 2)) else {
        return false;
    };
    const PT_INTERP: usize = 3;
    elf.starts_with(b"\x7fELF\x02")
        && (0..phnum).all(|i| num(phoff + i * phentsize, 4).is_some_and(|t| t != PT_INTERP))
}

/// A container of ours: deleted (with its cgroups and state) when the
/// test ends, passed or failed.
struct Container {
    runc: PathBuf,
    id: String,
    bundle: tempfile::TempDir,
}

impl Container {
    /// A busybox bundle whose init counts into `/count` in its writable
    /// rootfs, started detached.
    fn start(runc: &Path, name: &str) -> Container {
        let bundle = tempfile::tempdir().unwrap();
        let rootfs = bundle.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "mv", "cat"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let out = Command::new(runc)
            .arg("spec")
            .current_dir(bundle.path())
            .output()
            .expect("runc spec");
        assert!(out.status.success(), "runc spec: {out:?}");
        let cfg_path = bundle.path().join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = serde_json::json!([
            "/bin/sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /count.new; mv /count.new /count; sleep 0.05; done"
        ]);
        cfg["root"]["readonly"] = false.into();
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let id = format!("criu-rs-{name}-{}", std::process::id());
        let c = Container {
            runc: runc.to_owned(),
            id,
            bundle,
        };
        // Its stdio must be /dev/null: not a file of the host, and no pipe
        // of ours that would stay open as long as the container runs.
        let log = c.bundle.path().join("run.log");
        let st = Command::new(&c.runc)
            .arg("--log")
            .arg(&log)
            .args(["run", "-d", &c.id])
            .current_dir(c.bundle.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run runc");
        assert!(st.success(), "runc run: {st}\n{}", read(&log));
        let count = c.count_file();
        wait_for("the container to count", || counter(&count) > 3);
        c
    }

    fn runc(&self, args: &[&str]) -> Output {
        Command::new(&self.runc)
            .args(args)
            .current_dir(self.bundle.path())
            .stdin(Stdio::null())
            .output()
            .expect("run runc")
    }

    fn count_file(&self) -> PathBuf {
        self.bundle.path().join("rootfs/count")
    }

    fn state(&self) -> serde_json::Value {
        let out = self.runc(&["state", &self.id]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or("absent")
            .to_owned()
    }

    /// The host PID of the container's init.
    fn pid(&self) -> i64 {
        self.state()["pid"].as_i64().unwrap_or(0)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "-f", &self.id]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ready() -> Option<PathBuf> {
    let Some(runc) = runc_path() else {
        eprintln!("skipped: runc is not installed (Debian package runc)");
        return None;
    };
    if !busybox_is_static() {
        eprintln!("skipped: {BUSYBOX} is missing or not static (Debian package busybox-static)");
        return None;
    }
    Some(runc)
}

/// `runc checkpoint` stops the container and writes CRIU images; `runc
/// restore` brings it back from them, and it counts on from where it was.
#[test]
#[serial]
fn runc_checkpoint_and_restore_a_busybox_container() {
    let Some(runc) = ready() else { return };
    let c = Container::start(&runc, "cr");
    let images = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let img = images.path().to_str().unwrap();
    let wrk = work.path().to_str().unwrap();
    let log = |name: &str| read(&work.path().join(name));

    // `runc --criu OURS ACTION [-d] --image-path I --work-path W ID`,
    // which must succeed; criu's log is shown when it does not.
    let cr = |action: &str, detach: bool, log_name: &str| {
        let mut args = vec!["--criu", CRIU, action];
        if detach {
            args.push("-d");
        }
        args.extend(["--image-path", img, "--work-path", wrk, &c.id]);
        let out = c.runc(&args);
        assert!(
            out.status.success(),
            "runc {action}: {}\n{log_name}:\n{}",
            text(&out),
            log(log_name)
        );
    };

    cr("checkpoint", false, "dump.log");
    assert_eq!(
        c.status(),
        "absent",
        "the container is gone after its checkpoint"
    );
    let at = counter(&c.count_file());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        counter(&c.count_file()),
        at,
        "nothing counts while it is checkpointed"
    );

    cr("restore", true, "restore.log");
    assert_eq!(c.status(), "running");
    assert!(c.pid() > 0, "no init PID in runc state: {}", c.state());
    // The count lives in the shell's memory only: a container started
    // afresh would count from 1 again.
    let mut seen = Vec::new();
    wait_for("the restored container to count on", || {
        let n = counter(&c.count_file());
        seen.push(n);
        n > at + 3
    });
    assert!(
        seen.iter().all(|&n| n >= at),
        "the count started again instead of going on from {at}: {seen:?}"
    );
}
