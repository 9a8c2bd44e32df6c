//! A container-shaped mount namespace, made without runc: a tree that
//! unshared its mount and pid namespaces, built a rootfs in a temporary
//! directory (a bind mount of it, with busybox), mounted proc, a tmpfs
//! /dev with device nodes, a devpts, a file bind of dev/null on
//! proc/keys, a read-only bind of proc/sys, a read-only tmpfs with a file,
//! a tmpfs and a file bind whose mount points are gone at restore, and an
//! external bind of a host directory, made its root read-only,
//! then pivot_root'ed into it; it counts into the external directory. It
//! is dumped with `--external mnt[/ext]:KEY` and restored with `--root`
//! and `--external mnt[KEY]:OTHER`: it carries on, counting into OTHER,
//! with the same mounts. Once through the command line, once through RPC
//! (`ext_mnt`, `root`) as runc asks.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use criu::rpc::pb::{CriuOpts, CriuReq, CriuReqType, CriuResp, ExtMountMap};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::swrk::{self, Swrk};
use support::CRIU;
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

/// How criu is asked: its command line, or RPC as runc does (`criu
/// swrk`, `ext_mnt` and `root`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Cli,
    Rpc,
}

#[test]
#[serial]
fn container_tree_is_restored_under_its_root_with_external_mounts() {
    container_tree(Via::Cli);
}

#[test]
#[serial]
fn container_tree_over_rpc_with_ext_mnt_and_root() {
    container_tree(Via::Rpc);
}

/// Dump of `pid` into `img` with the external mount /ext as "outside".
fn dump(via: Via, pid: i32, img: &Path) -> Result<(), String> {
    let fail = |why: String| Err(format!("{why}\n{}", log_tail(&img.join("dump.log"))));
    match via {
        Via::Cli => {
            let out = Command::new(CRIU)
                .args(["dump", "-t", &pid.to_string(), "-D"])
                .arg(img)
                .args(["-o", "dump.log", "-v4", "--external", "mnt[/ext]:outside"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                Ok(())
            } else {
                fail(format!("{out:?}"))
            }
        }
        Via::Rpc => {
            let r = rpc(CriuReqType::Dump, img, "dump.log", |o| {
                o.pid = Some(pid);
                o.ext_mnt.push(ExtMountMap {
                    key: "/ext".into(),
                    val: "outside".into(),
                });
                // runc's extra keys, for devices that are no mounts
                o.ext_mnt.push(ExtMountMap {
                    key: "/dev/null".into(),
                    val: "/dev/null".into(),
                });
                o.root = Some("/ignored/at/dump".into());
            });
            if r.success {
                Ok(())
            } else {
                fail(format!("{r:?}"))
            }
        }
    }
}

/// Restore of `img` with `root` and the key "outside" at `ext` (each when
/// given); the restored root's PID, or the error text (response or log).
fn restore(via: Via, img: &Path, root: Option<&Path>, ext: Option<&Path>) -> Result<i32, String> {
    let log = |name: &str| log_tail(&img.join(name));
    match via {
        Via::Cli => {
            let pidfile = img.join("restored.pid");
            let _ = std::fs::remove_file(&pidfile);
            let mut c = Command::new(CRIU);
            c.args(["restore", "-D"])
                .arg(img)
                .args(["-o", "restore.log", "-v4", "-d", "--pidfile"])
                .arg(&pidfile);
            if let Some(r) = root {
                c.arg("--root").arg(r);
            }
            if let Some(e) = ext {
                c.arg("--external")
                    .arg(format!("mnt[outside]:{}", e.display()));
            }
            let out = c.stdin(Stdio::null()).output().unwrap();
            if !out.status.success() {
                return Err(log("restore.log"));
            }
            Ok(std::fs::read_to_string(&pidfile)
                .unwrap()
                .trim()
                .parse()
                .unwrap())
        }
        Via::Rpc => {
            let r = rpc(CriuReqType::Restore, img, "restore.log", |o| {
                o.root = root.map(|r| r.display().to_string());
                if let Some(e) = ext {
                    o.ext_mnt.push(ExtMountMap {
                        key: "outside".into(),
                        val: e.display().to_string(),
                    });
                }
            });
            match r.restore {
                Some(rr) if r.success => Ok(rr.pid),
                _ => Err(format!(
                    "{}\n{}",
                    r.cr_errmsg.unwrap_or_default(),
                    log("restore.log")
                )),
            }
        }
    }
}

/// One request to a `criu swrk` of our own.
fn rpc(ty: CriuReqType, img: &Path, log: &str, set: impl FnOnce(&mut CriuOpts)) -> CriuResp {
    let dir = std::fs::File::open(img).unwrap();
    let mut o = CriuOpts {
        images_dir_fd: dir.as_raw_fd(),
        log_file: Some(log.into()),
        log_level: Some(4),
        ..Default::default()
    };
    set(&mut o);
    let s = Swrk::start(Path::new(swrk::NO_HOME));
    let r = s.call(
        &CriuReq {
            r#type: ty as i32,
            opts: Some(o),
            ..Default::default()
        },
        |_, _| true,
    );
    s.finish();
    r
}

fn container_tree(via: Via) {
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
mount -t tmpfs -o size=64k tmpfs {r}/tmp
mkdir {r}/made
mount -t tmpfs -o size=64k tmpfs {r}/made
touch {r}/zero-here
mount --bind {r}/dev/zero {r}/zero-here
echo kept > {r}/tmp/f
mount -o remount,ro {r}/tmp
mount -o remount,bind,ro {r}
cd {r}
exec {r}/bin/busybox sh -c 'busybox pivot_root . .old && busybox umount -l /.old && exec busybox sh -c "i=0; while :; do i=\$((i+1)); echo \$i > /ext/cnt; busybox sleep 0.1; done"'
"#,
        ext = ext.display()
    );
    let mut starter = Command::new("unshare");
    starter
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
        // Nothing of the host's: files outside the container's root could
        // not be opened again under it.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    criu::sys::testing::exact_fds(&mut starter, Vec::new());
    let starter = starter.spawn().unwrap();
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

    dump(via, pid, &img).unwrap_or_else(|e| panic!("dump: {e}"));
    let _ = g.starter.as_mut().unwrap().wait();
    g.starter = None;
    let dumped = count(&ext).unwrap();
    // mount points the root lacks at restore are made
    std::fs::remove_dir(root.join("made")).unwrap();
    std::fs::remove_file(root.join("zero-here")).unwrap();

    // Without the root, or without the external mount's key, the restore
    // says what it needs.
    let needs_root = restore(via, &img, None, Some(Path::new("/nonexistent"))).unwrap_err();
    assert!(needs_root.contains("--root"), "{needs_root}");
    let needs_key = restore(via, &img, Some(&root), None).unwrap_err();
    assert!(needs_key.contains("mnt[outside]"), "{needs_key}");

    let restored =
        restore(via, &img, Some(&root), Some(&ext2)).unwrap_or_else(|e| panic!("restore: {e}"));
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
    let zero = std::fs::metadata(format!("/proc/{restored}/root/zero-here")).unwrap();
    assert_eq!(zero.rdev(), nix::sys::stat::makedev(1, 5));
    // a read-only tmpfs keeps its files
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{restored}/root/tmp/f")).unwrap(),
        "kept\n"
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
