//! The library's self-test: run every test of the catalogue without
//! checkpointing (start, wait for the pid file, SIGTERM, read the verdict).
//! Tests whose feature this kernel lacks are skipped with the reason;
//! tests that cannot run on the host flavor are run under `unshare`
//! (new uts + ipc namespaces) when we are root, else skipped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_zdtm-test");

fn catalogue() -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["list", "--json"])
        .output()
        .expect("run zdtm-test list");
    assert!(
        out.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("list --json is a JSON array")
}

fn features() -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("features")
        .output()
        .expect("run zdtm-test features");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("features is JSON")
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Run one test nocr-style; Ok(verdict line) or Err(why).
fn run_one(name: &str, in_ns: bool, dir: &Path) -> Result<String, String> {
    let pidfile = dir.join("pid");
    let outfile = dir.join("out");
    let mut cmd = if in_ns {
        // Namespace tests change their namespaces (host name, SysV
        // objects, devices, mounts): never the host's.
        let mut c = Command::new("unshare");
        c.args([
            "--uts",
            "--ipc",
            "--net",
            "--mount",
            "--propagation",
            "private",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("run").arg(name);
    cmd.arg(format!("--pidfile={}", pidfile.display()));
    cmd.arg(format!("--outfile={}", outfile.display()));
    cmd.arg(format!("--dirname={}", dir.join("dir").display()));
    let st = cmd.status().map_err(|e| format!("spawn: {e}"))?;
    let out = || std::fs::read_to_string(&outfile).unwrap_or_default();
    if !st.success() {
        return Err(format!("starter exited {st}; outfile: {}", out()));
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .map_err(|e| format!("pidfile: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("pidfile content: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    if !alive(pid) {
        return Err(format!(
            "test {pid} died before SIGTERM; outfile: {}",
            out()
        ));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| format!("kill {pid}: {e}"))?;
    let end = Instant::now() + Duration::from_secs(60);
    while alive(pid) {
        if Instant::now() > end {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(format!(
                "test {pid} did not exit after SIGTERM; outfile: {}",
                out()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = out();
    let last = o.lines().last().unwrap_or("").to_string();
    if last == "PASS" {
        Ok(last)
    } else {
        Err(format!("verdict {last:?}; outfile: {o}"))
    }
}

#[test]
fn whole_catalogue_passes_without_cr() {
    let cat = catalogue();
    let feats = features();
    let root = nix::unistd::geteuid().is_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut jobs = Vec::new();
    let mut alone = Vec::new();
    for (i, d) in cat.iter().enumerate() {
        let name = d["name"].as_str().expect("name").to_string();
        if let Some(f) = d["feature"].as_str() {
            if !feats[f]["present"].as_bool().unwrap_or(false) {
                eprintln!("SKIP {name}: feature {f} absent: {}", feats[f]["reason"]);
                continue;
            }
        }
        let flavors: Vec<&str> = d["flavors"]
            .as_array()
            .expect("flavors")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let flags: Vec<&str> = d["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let in_ns = !flavors.contains(&"h");
        if (in_ns || flags.contains(&"suid")) && !root {
            eprintln!("SKIP {name}: needs root");
            continue;
        }
        if flags.contains(&"crfail") || flags.contains(&"noauto") || flags.contains(&"cronly") {
            eprintln!("SKIP {name}: flags {flags:?}");
            continue;
        }
        let dir = tmp.path().join(format!("t{i}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        if flags.contains(&"excl") {
            // Run alone, as the runner runs it: after the others.
            alone.push((name, in_ns, dir));
            continue;
        }
        jobs.push((
            name.clone(),
            std::thread::spawn(move || run_one(&name, in_ns, &dir)),
        ));
    }
    let mut failed = Vec::new();
    let mut verdict = |name: String, r: Result<String, String>| match r {
        Ok(_) => eprintln!("PASS {name}"),
        Err(e) => {
            eprintln!("FAIL {name}: {e}");
            failed.push(name);
        }
    };
    for (name, j) in jobs {
        verdict(name, j.join().expect("runner thread"));
    }
    for (name, in_ns, dir) in alone {
        let r = run_one(&name, in_ns, &dir);
        verdict(name, r);
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn list_json_has_the_contract_keys() {
    let cat = catalogue();
    assert!(cat.len() >= 30, "only {} tests", cat.len());
    for d in &cat {
        let keys: Vec<&str> = d
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "family",
                "flavors",
                "flags",
                "dump_opts",
                "restore_opts",
                "feature",
                "timeout",
                "description"
            ]
        );
    }
}

#[test]
fn a_failing_check_reports_fail() {
    // the protocol must be able to fail: a test given a pattern seed that
    // cannot match reports FAIL (env00 with a variable we remove is not
    // possible from outside, so use the starter's own error path instead)
    let tmp = tempfile::tempdir().expect("tempdir");
    let st = Command::new(BIN)
        .args(["run", "memory/big64m", "--mib=notanumber"])
        .arg(format!("--pidfile={}", tmp.path().join("p").display()))
        .arg(format!("--outfile={}", tmp.path().join("o").display()))
        .status()
        .expect("spawn");
    assert!(
        !st.success(),
        "a test failing before daemon() must make the starter fail"
    );
    let o = std::fs::read_to_string(tmp.path().join("o")).expect("outfile");
    assert!(
        o.lines().last().unwrap_or("").starts_with("FAIL: "),
        "outfile: {o}"
    );
    assert!(
        !tmp.path().join("p").exists(),
        "no pid file for a test that never got ready"
    );
}

/// Start `name`, damage its state from outside with `damage(dir)`, then
/// SIGTERM it: the verdict must be FAIL.
fn expect_fail(name: &str, damage: impl FnOnce(&Path)) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let st = Command::new(BIN)
        .args(["run", name])
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .arg(format!("--outfile={}", dir.join("out").display()))
        .arg(format!("--dirname={}", dir.join("dir").display()))
        .status()
        .expect("spawn");
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    damage(&dir.join("dir"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let end = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(dir.join("out"))
        .expect("outfile")
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn damaged_state_is_reported() {
    let v = expect_fail("basic/cwd00", |d| {
        std::fs::remove_file(d.join("cwd00.sub/marker")).expect("rm marker")
    });
    assert!(
        v.starts_with("FAIL: ") && v.contains("marker"),
        "cwd00 verdict {v:?}"
    );
    let v = expect_fail("files/unlinked_file", |d| {
        std::fs::write(d.join("unlinked_file.data"), b"x").expect("recreate")
    });
    assert!(
        v.starts_with("FAIL: ") && v.contains("came back"),
        "unlinked_file verdict {v:?}"
    );
    let v = expect_fail("pipes/fifo00", |d| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("fifo00.fifo"))
            .expect("open fifo");
        f.write_all(b"intruder").expect("write fifo");
    });
    assert!(v.starts_with("FAIL: "), "fifo00 verdict {v:?}");
}
