//! Images cross between criu-rs and upstream CRIU: a process dumped by one
//! is restored by the other and runs on. Needs root and an upstream `criu`
//! binary named by `$CRIU_REFERENCE` (built outside this repository, e.g.
//! from CRIU 4.2's sources); skips with the reason otherwise.

use std::path::Path;
use std::process::Command;

use serial_test::serial;

mod support;
use support::*;

fn reference() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    match std::env::var("CRIU_REFERENCE") {
        Ok(p) if Path::new(&p).is_file() => Some(p),
        _ => {
            eprintln!("skipped: set CRIU_REFERENCE to an upstream criu binary");
            None
        }
    }
}

/// Dumps a counting victim with `dumper`, restores it with `restorer`
/// (detached), and checks the counter goes on in the same process.
fn cross(dumper: &str, restorer: &str) {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let count = tmp.path().join("count");
    let img = tmp.path().join("img");
    std::fs::create_dir(&img).unwrap();
    let mut victim = Command::new("setsid");
    victim
        .arg(VICTIM)
        .args(["loop", count.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = victim.spawn().expect("spawn victim");
    let pid = child.id() as i32;
    wait_for("the counter to start", || counter(&count) > 3);
    let run = |bin: &str, args: &[&str]| {
        let out = Command::new(bin).args(args).output().expect("run criu");
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            read(&img.join(format!("{}.log", args[0])))
        );
    };
    let dir = img.to_str().unwrap();
    run(
        dumper,
        &[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            dir,
            "-o",
            "dump.log",
            "-v4",
        ],
    );
    child.wait().unwrap();
    wait_for("the dumped pid to be free", || gone(pid));
    let at_dump = counter(&count);
    run(
        restorer,
        &["restore", "-D", dir, "-o", "restore.log", "-v4", "-d"],
    );
    wait_for("the restored counter to go on", || {
        counter(&count) > at_dump + 20
    });
    let line = read(&count);
    assert!(
        line.split_whitespace().nth(1) == Some(&format!("{pid:010}")),
        "the counter is written by another process: {line:?}"
    );
    finish(pid);
}

#[test]
#[serial]
fn upstream_restores_our_images() {
    if let Some(up) = reference() {
        cross(CRIU, &up);
    }
}

#[test]
#[serial]
fn we_restore_upstream_images() {
    if let Some(up) = reference() {
        cross(&up, CRIU);
    }
}
