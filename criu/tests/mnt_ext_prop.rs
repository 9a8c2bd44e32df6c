//! External mounts that keep propagation with the outside:
//! `--ext-sharing` (an external mount in a peer group shared with criu's
//! mount namespace) and `--ext-masters` (an external mount that is a slave
//! of a peer group outside the tree).
//!
//! Two host directories are made shared mounts. A shell in a mount
//! namespace of its own (copied with the host's propagation) binds one of
//! them (a peer of the host's group) and binds the other then makes it a
//! slave (of the host's group). It is dumped with both as external mounts:
//! refused without the options, naming the option; accepted with them.
//! Restored without the options, both are private; with them, one is a
//! peer of the host's group and the other its slave, and a mount made on
//! the host afterwards shows up in both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod support;
use support::{assert_criu_ok, criu, finish, read, subreaper, wait_for};

/// Undoes the host mounts and kills what the test started, by PID.
struct Guard {
    shell: Option<Child>,
    restored: Vec<i32>,
    mounts: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for &p in &self.restored {
            finish(p);
        }
        if let Some(c) = self.shell.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for m in self.mounts.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The optional fields of the mountinfo line of `pid` for mount point
/// `mp` (`shared:N`, `master:N` …).
fn tags(pid: &str, mp: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let mp = mp.to_str()?;
    text.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&mp)).then(|| {
            f[6..]
                .iter()
                .take_while(|&&x| x != "-")
                .map(|s| s.to_string())
                .collect()
        })
    })
}

/// The peer group of the host mount at `mp`.
fn host_group(mp: &Path) -> String {
    let t = tags("self", mp).unwrap_or_else(|| panic!("no mount at {}", mp.display()));
    t.iter()
        .find_map(|x| x.strip_prefix("shared:"))
        .unwrap_or_else(|| panic!("{} is not shared: {t:?}", mp.display()))
        .to_string()
}

fn sh(script: &str) {
    let ok = Command::new("sh")
        .args(["-ec", script])
        .stdin(Stdio::null())
        .status()
        .expect("sh")
        .success();
    assert!(ok, "{script}");
}

#[test]
fn external_mounts_keep_sharing_and_masters_with_the_options() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b, img) = (t.join("a"), t.join("b"), t.join("img"));
    let (ea, eb) = (t.join("c/ea"), t.join("c/eb"));
    for d in [&a, &b, &img, &ea, &eb] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut g = Guard {
        shell: None,
        restored: Vec::new(),
        mounts: Vec::new(),
    };
    for d in [&a, &b] {
        sh(&format!(
            "mount --bind {0} {0}; mount --make-shared {0}",
            d.display()
        ));
        g.mounts.push(d.clone());
    }
    let (ga, gb) = (host_group(&a), host_group(&b));
    // The tree: a shell in a copy of the host's mount namespace (its
    // copies of a and b peers of the host's), which binds a (a peer of
    // the host's group) and b (then made a slave of it), and drops its
    // copies of a and b themselves.
    let script = format!(
        "mount --bind {a} {ea}; mount --bind {b} {eb}; mount --make-slave {eb}; umount {a}; umount {b}; \
         echo up > {t}/up; exec sleep 3600",
        a = a.display(),
        b = b.display(),
        ea = ea.display(),
        eb = eb.display(),
        t = t.display()
    );
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "unchanged",
        "setsid",
        "sh",
        "-ec",
        &script,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    criu::sys::testing::exact_fds(&mut c, Vec::new());
    g.shell = Some(c.spawn().unwrap());
    let pid = g.shell.as_ref().unwrap().id().to_string();
    wait_for("the tree's mounts", || read(&t.join("up")) == "up\n");
    assert!(tags(&pid, &ea).unwrap().contains(&format!("shared:{ga}")));
    assert!(tags(&pid, &eb).unwrap().contains(&format!("master:{gb}")));

    let ext = [
        format!("mnt[{}]:ka", ea.display()),
        format!("mnt[{}]:kb", eb.display()),
    ];
    let dump = |extra: &[&str]| {
        let mut args = vec![
            "dump",
            "-t",
            &pid,
            "-D",
            img.to_str().unwrap(),
            "-o",
            "dump.log",
            "-v4",
        ];
        for e in &ext {
            args.extend(["--external", e]);
        }
        args.extend(extra);
        criu(&args)
    };
    // Refused, naming the option, with the tree left running.
    let o = dump(&[]);
    assert!(!o.status.success());
    let log = read(&img.join("dump.log"));
    assert!(
        log.contains("--ext-sharing") && log.contains(&ea.display().to_string()),
        "{log}"
    );
    let o = dump(&["--ext-sharing"]);
    assert!(!o.status.success());
    let log = read(&img.join("dump.log"));
    assert!(
        log.contains("--ext-masters") && log.contains(&eb.display().to_string()),
        "{log}"
    );
    assert!(support::alive(pid.parse().unwrap()));

    let o = dump(&["--ext-sharing", "--ext-masters"]);
    assert_criu_ok(&o, &img, "dump", "dump.log");
    let _ = g.shell.take().unwrap().wait();

    let restore = |extra: &[&str]| -> String {
        let ka = format!("mnt[ka]:{}", a.display());
        let kb = format!("mnt[kb]:{}", b.display());
        let mut args = vec!["--external", &ka, "--external", &kb];
        args.extend(extra);
        let (o, pid) = support::restore_detached(&img, &args);
        assert_criu_ok(&o, &img, "restore", "restore.log");
        pid.expect("restored pid").to_string()
    };
    // Without the options the external mounts keep nothing with the
    // outside: a is shared only within a group of its own, b is no slave.
    let r = restore(&[]);
    g.restored.push(r.parse().unwrap());
    let (ta, tb) = (tags(&r, &ea).unwrap(), tags(&r, &eb).unwrap());
    assert!(!ta.contains(&format!("shared:{ga}")), "{ta:?}");
    assert!(tb.is_empty(), "{tb:?}");
    finish(g.restored.pop().unwrap());

    let r = restore(&["--ext-sharing", "--ext-masters"]);
    g.restored.push(r.parse().unwrap());
    assert_eq!(tags(&r, &ea).unwrap(), vec![format!("shared:{ga}")]);
    assert_eq!(tags(&r, &eb).unwrap(), vec![format!("master:{gb}")]);
    // What the host mounts now reaches the restored tree, both ways in.
    for d in [&a, &b] {
        sh(&format!(
            "mkdir -p {0}/sub; mount -t tmpfs -o size=64k late {0}/sub",
            d.display()
        ));
        g.mounts.push(d.join("sub"));
    }
    for mp in [ea.join("sub"), eb.join("sub")] {
        assert!(
            tags(&r, &mp).is_some(),
            "{} did not propagate into the restored tree",
            mp.display()
        );
    }
}
