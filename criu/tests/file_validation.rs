//! End to end: restore refuses a file that changed since the dump
//! (`--file-validation filesize`, the default), naming the file, the fd,
//! the pid and both sizes, and leaves no task behind; the same images
//! restore once the file has its old size again.

use std::path::Path;
use std::process::Output;

use serial_test::serial;

mod support;
use support::*;

fn run(args: &[&str]) -> Output {
    criu(args)
}

fn said(o: &Output, images: &Path, log: &str) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        read(&images.join(log))
    )
}

#[test]
#[serial]
fn a_file_of_another_size_fails_the_restore_until_it_is_put_back() {
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("count");
    let mut child = spawn(&["loop", out.to_str().unwrap()]);
    let pid = child.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);

    let images = tmp.path().join("img");
    let d = images.to_str().unwrap();
    let ps = pid.to_string();
    let o = run(&["dump", "-t", &ps, "-D", d, "-o", "dump.log", "-v4"]);
    assert!(
        o.status.success(),
        "dump failed: {}",
        said(&o, &images, "dump.log")
    );
    child.wait().unwrap();
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(size > 10, "the counter file is {size} bytes");

    // Shorter than at dump: refused.
    let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    f.set_len(10).unwrap();
    let pidfile = images.join("restored.pid");
    let restore = |log: &str, extra: &[&str]| {
        let mut args = vec!["restore", "-D", d, "-o", log, "-v4", "-d"];
        args.extend_from_slice(&["--pidfile", pidfile.to_str().unwrap()]);
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = restore("restore-short.log", &[]);
    assert!(
        !o.status.success(),
        "a restore with a shorter file succeeded"
    );
    let msg = said(&o, &images, "restore-short.log");
    for w in [
        out.to_str().unwrap().to_string(),
        "fd 3".to_string(),
        format!("pid {pid}"),
        format!("{size} bytes"),
        "10 bytes".to_string(),
    ] {
        assert!(
            msg.contains(&w),
            "{w:?} not named by the failed restore:\n{msg}"
        );
    }
    wait_for("no task left with the dumped pid", || gone(pid));
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        10,
        "the restore changed the file"
    );

    // Longer: refused too, with --file-validation filesize said out loud.
    f.set_len(size + 5).unwrap();
    let o = restore("restore-long.log", &["--file-validation", "filesize"]);
    assert!(
        !o.status.success(),
        "a restore with a longer file succeeded"
    );
    let msg = said(&o, &images, "restore-long.log");
    assert!(msg.contains(&format!("{} bytes", size + 5)), "{msg}");
    wait_for("no task left with the dumped pid", || gone(pid));

    // Back to its size: the same images restore.
    f.set_len(size).unwrap();
    let o = restore("restore.log", &[]);
    assert!(
        o.status.success(),
        "restore failed: {}",
        said(&o, &images, "restore.log")
    );
    assert_eq!(read(&pidfile).trim().parse::<i32>().ok(), Some(pid));
    let before = counter(&out);
    wait_for("the counter to go on", || counter(&out) > before + 3);
    finish(pid);
}

#[test]
#[serial]
fn an_unknown_validation_method_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&[
        "restore",
        "-D",
        tmp.path().to_str().unwrap(),
        "--file-validation",
        "crc32",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("crc32"), "{err}");
}

/// `--file-validation buildid`: the dump records the build-id of the
/// victim's executable (a copy of it), and a restore with the copy's
/// build-id changed (same size) fails naming it; put back, it restores.
#[test]
#[serial]
fn a_changed_build_id_fails_the_restore() {
    use criu::image::{self, magic, pb};
    use criu::objects::files::reg;
    subreaper();
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("victim-copy");
    std::fs::copy(VICTIM, &exe).unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    let head = &bytes[..bytes.len().min(1 << 20)];
    let id = reg::elf_build_id(head);
    let out = tmp.path().join("count");
    let mut child = std::process::Command::new(&exe)
        .args(["loop", out.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_for("the counter to start", || counter(&out) > 3);
    let images = tmp.path().join("img");
    let d = images.to_str().unwrap();
    let ps = pid.to_string();
    let o = run(&[
        "dump",
        "-t",
        &ps,
        "-D",
        d,
        "-o",
        "dump.log",
        "-v4",
        "--file-validation",
        "buildid",
    ]);
    assert!(
        o.status.success(),
        "dump failed: {}",
        said(&o, &images, "dump.log")
    );
    child.wait().unwrap();
    let files: Vec<pb::FileEntry> = image::read_image(&images, "files.img", magic::FILES).unwrap();
    let entry = files
        .iter()
        .filter_map(|f| f.reg.as_ref())
        .find(|r| r.name == exe.to_str().unwrap())
        .expect("the executable in files.img");
    let Some(id) = id else {
        // A linker that writes no build-id: nothing recorded.
        assert!(entry.build_id.is_empty(), "{:?}", entry.build_id);
        finish_dumped(pid);
        return;
    };
    assert_eq!(entry.build_id, reg::build_id_words(&id));

    // Another build-id, same size.
    let at = bytes
        .windows(id.len())
        .position(|w| w == id.as_slice())
        .expect("the build-id in the file");
    let mut changed = bytes.clone();
    changed[at] ^= 0xff;
    std::fs::write(&exe, &changed).unwrap();
    let pidfile = images.join("restored.pid");
    let restore = |log: &str, method: &str| {
        run(&[
            "restore",
            "-D",
            d,
            "-o",
            log,
            "-v4",
            "-d",
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--file-validation",
            method,
        ])
    };
    let o = restore("restore-changed.log", "buildid");
    assert!(
        !o.status.success(),
        "a restore with another build-id succeeded"
    );
    let msg = said(&o, &images, "restore-changed.log");
    assert!(
        msg.contains("build-id") && msg.contains(exe.to_str().unwrap()),
        "{msg}"
    );
    wait_for("no task left with the dumped pid", || gone(pid));

    // Sizes only: the same images restore.
    let o = restore("restore-filesize.log", "filesize");
    assert!(
        o.status.success(),
        "restore with --file-validation filesize failed: {}",
        said(&o, &images, "restore-filesize.log")
    );
    let before = counter(&out);
    wait_for("the counter to go on", || counter(&out) > before + 3);
    finish(pid);

    std::fs::write(&exe, &bytes).unwrap();
    let o = restore("restore.log", "buildid");
    assert!(
        o.status.success(),
        "restore failed: {}",
        said(&o, &images, "restore.log")
    );
    let before = counter(&out);
    wait_for("the counter to go on", || counter(&out) > before + 3);
    finish(pid);
}

/// Nothing to clean after a dump that killed the tree.
fn finish_dumped(pid: i32) {
    wait_for("the dumped task to be gone", || gone(pid));
}
