//! A container-shaped mount namespace, made without runc: a tree that
//! unshared its mount and pid namespaces, built a rootfs in a temporary
//! directory (a bind mount of it, with busybox), mounted proc, a tmpfs
//! /dev with device nodes, a devpts, a file bind of dev/null on
//! proc/keys, a read-only bind of proc/sys and an external bind of a host
//! directory, made its root read-only, then pivot_root'ed into it and counts into that external
//! directory. It is dumped with `--external mnt[/ext]:KEY` and restored
//! with `--root` and `--external mnt[KEY]:OTHER`: it carries on, counting
//! into OTHER, with the same mounts.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serial_test::serial;

const CRIU: &str = env!("CARGO_BIN_EXE_criu");
const BUSYBOX: &str = "/usr/bin/busybox";

/// Kills what the test started, by PID, however the test ends.
struct Guard {
    starter: Option<Child>,
    pids: Vec<i32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for &p in &self.pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        if let Some(c) = self.starter.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("cnt"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The mounts of `pid` without what differs from one boot of them to the
/// next (ids, anonymous devices), sorted.
fn mounts(pid: i32, ext_root: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let root = if f[4] == "/ext" {
                // the external mount comes from another host directory
                assert_eq!(Path::new(f[3]), ext_root, "{l}");
                "EXT"
            } else {
                f[3]
            };
            let sep = f.iter().position(|&x| x == "-").unwrap();
            // mount point, root, mount options, fs type, source, sb options
            format!(
                "{} {root} {} {} {} {}",
                f[4],
                f[5],
                f[sep + 1],
                f[sep + 2],
                f[sep + 3]
            )
        })
        .collect();
    v.sort();
    v
}

fn log_tail(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        })
        .unwrap_or_default()
}

#[test]
#[serial]
fn container_tree_is_restored_under_its_root_with_external_mounts() {
    if !nix::unistd::geteuid().is_root() || !Path::new(BUSYBOX).exists() {
        eprintln!("skipped: needs root and {BUSYBOX}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("root");
    let ext = t.join("ext-before");
    let ext2 = t.join("ext-after");
    let img = t.join("img");
    for d in [&root, &ext, &ext2, &img] {
        std::fs::create_dir_all(d).unwrap();
    }
    for d in ["bin", "proc", "dev", "ext", "tmp", ".old"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let r = root.display();
    // Everything below runs in new mount and pid namespaces (private
    // propagation: nothing shows on the host; all goes with them).
    let script = format!(
        r#"set -e
mount --bind {r} {r}
mount -t proc proc {r}/proc
mount -t tmpfs -o mode=755,size=1m tmpfs {r}/dev
mknod -m 666 {r}/dev/null c 1 3
mknod -m 666 {r}/dev/zero c 1 5
ln -s /proc/self/fd {r}/dev/fd
mkdir {r}/dev/pts
mount -t devpts -o newinstance,ptmxmode=666,mode=620 devpts {r}/dev/pts
mount --bind {r}/dev/null {r}/proc/keys
mount --bind {r}/proc/sys {r}/proc/sys
mount -o remount,bind,ro {r}/proc/sys
mount --bind {ext} {r}/ext
mount -o remount,bind,ro {r}
cd {r}
exec {r}/bin/busybox sh -c 'busybox pivot_root . .old && busybox umount -l /.old && exec busybox sh -c "i=0; while :; do i=\$((i+1)); echo \$i > /ext/cnt; busybox sleep 0.1; done"'
"#,
        ext = ext.display()
    );
    let starter = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--propagation",
            "private",
            // its own session, as a container's init has
            "setsid",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut g = Guard {
        starter: Some(starter),
        pids: Vec::new(),
    };
    let starter_pid = g.starter.as_ref().unwrap().id();
    wait_for("the counter", || count(&ext).is_some_and(|n| n > 3));
    let children =
        std::fs::read_to_string(format!("/proc/{starter_pid}/task/{starter_pid}/children"))
            .unwrap();
    let pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    g.pids.push(pid);
    let before = mounts(pid, &ext);
    assert!(
        before.iter().any(|m| m.starts_with("/proc/keys /null ")),
        "{before:#?}"
    );

    let pid_s = pid.to_string();
    let (img_s, root_s) = (img.to_str().unwrap(), root.to_str().unwrap());
    let dump_log = img.join("dump.log");
    let out = Command::new(CRIU)
        .args([
            "dump",
            "-t",
            &pid_s,
            "-D",
            img_s,
            "-o",
            "dump.log",
            "-v4",
            "--external",
            "mnt[/ext]:outside",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "dump: {}", log_tail(&dump_log));
    let _ = g.starter.as_mut().unwrap().wait();
    g.starter = None;
    let dumped = count(&ext).unwrap();

    // Without --root, or without the external mount's key, the restore
    // says what it needs.
    for (args, needs) in [
        (vec!["--external", "mnt[outside]:/nonexistent"], "--root"),
        (vec!["--root", root_s], "mnt[outside]"),
    ] {
        let mut a = vec!["restore", "-D", img_s, "-o", "refused.log", "-d"];
        a.extend(args);
        let out = Command::new(CRIU)
            .args(&a)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{a:?} restored");
        let log = log_tail(&img.join("refused.log"));
        assert!(log.contains(needs), "{a:?}: {log}");
    }

    let ext2_map = format!("mnt[outside]:{}", ext2.display());
    let pidfile = t.join("pid");
    let restore_log = img.join("restore.log");
    let out = Command::new(CRIU)
        .args([
            "restore",
            "-D",
            img_s,
            "-o",
            "restore.log",
            "-v4",
            "-d",
            "--root",
            root_s,
            "--external",
            &ext2_map,
            "--pidfile",
            pidfile.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "restore: {}", log_tail(&restore_log));
    let restored: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    g.pids.push(restored);
    // it counts on, from where it was, into the other directory
    wait_for("the restored counter", || {
        count(&ext2).is_some_and(|n| n > dumped + 3)
    });
    assert_eq!(count(&ext), Some(dumped));
    assert_eq!(mounts(restored, &ext2), before);
    let null = std::fs::metadata(format!("/proc/{restored}/root/dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(
        std::fs::read_link(format!("/proc/{restored}/root/dev/fd")).unwrap(),
        PathBuf::from("/proc/self/fd")
    );
    // a read-only bind stays read-only
    let ro = mounts(restored, &ext2)
        .into_iter()
        .find(|m| m.starts_with("/proc/sys /sys "))
        .unwrap();
    assert!(ro.contains(" ro,"), "{ro}");
    assert!(
        before[0].starts_with("/ ") && before[0].contains(" ro,"),
        "{before:?}"
    );
}
