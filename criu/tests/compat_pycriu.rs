//! Upstream's python crit can read every image we write: a small tree is
//! dumped by our `criu` (the golden `fds` and `tree` programs when gcc is
//! there, and the test victim), then each image (raw pages aside) is loaded
//! with upstream's `pycriu.images.load`, which is what `crit decode` runs.
//!
//! Runs when `$CRIU_PYCRIU_PATH` names a folder from which
//! `python3 -c 'import pycriu'` works (upstream's `lib/` with the generated
//! `_pb2` modules, e.g. `/tmp/criu-src/lib` after `make lib`; python needs
//! the `protobuf` package); `$CRIU_PYTHON` picks the interpreter (default
//! `python3`). Skips with a printed reason otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRIU: &str = env!("CARGO_BIN_EXE_criu");
const VICTIM: &str = env!("CARGO_BIN_EXE_criu-test-victim");

fn python() -> String {
    std::env::var("CRIU_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The pycriu folder, or why the test is skipped.
fn pycriu() -> Result<PathBuf, String> {
    let p = std::env::var_os("CRIU_PYCRIU_PATH")
        .map(PathBuf::from)
        .ok_or("CRIU_PYCRIU_PATH is not set")?;
    let ok = Command::new(python())
        .args(["-c", "import pycriu.images"])
        .env("PYTHONPATH", &p)
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", python()))?
        .success();
    if ok {
        Ok(p)
    } else {
        Err(format!(
            "`import pycriu` fails with PYTHONPATH={}",
            p.display()
        ))
    }
}

const LOAD_ALL: &str = r#"
import os, sys, pycriu
bad = 0
d = sys.argv[1]
for n in sorted(os.listdir(d)):
    if not (n.endswith('.img') or n == 'stats-dump') or n.startswith('pages-'):
        continue
    try:
        with open(os.path.join(d, n), 'rb') as f:
            img = pycriu.images.load(f, True)
        print('ok', n, len(img['entries']))
    except Exception as e:
        bad += 1
        print('FAIL', n, type(e).__name__, e)
sys.exit(1 if bad else 0)
"#;

fn wait_pidfile(p: &Path, f: impl Fn(&str) -> Option<i32>) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(p).ok().as_deref().and_then(&f) {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no pid in {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Dumps the session `cmd` starts (setsid: it leads its own session), whose
/// pid `pid_of` finds in `pidfile`.
fn dump(cmd: &mut Command, pidfile: &Path, pid_of: impl Fn(&str) -> Option<i32>, dir: &Path) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = wait_pidfile(pidfile, pid_of);
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = Command::new(CRIU)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(["-o", "dump.log", "-v4"])
        .output()
        .expect("criu");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "criu dump: {}",
        std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default()
    );
}

fn check(dir: &Path, lib: &Path) {
    let out = Command::new(python())
        .args(["-c", LOAD_ALL])
        .arg(dir)
        .env("PYTHONPATH", lib)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}:\n{text}", dir.display());
    assert!(
        out.status.success(),
        "upstream crit cannot read our images in {}:\n{text}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok inventory.img"), "no images checked");
}

#[test]
fn upstream_crit_decodes_every_image_we_write() {
    let lib = match pycriu() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: criu dump needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();

    let cnt = t.join("victim.cnt");
    let mut cmd = Command::new("setsid");
    cmd.arg(VICTIM).arg("loop").arg(&cnt);
    // `COUNT PID`
    dump(
        &mut cmd,
        &cnt,
        |s| s.split_whitespace().nth(1)?.parse().ok(),
        &t.join("victim"),
    );
    check(&t.join("victim"), &lib);

    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden-images");
    let golden = std::env::var_os("CRIU_GOLDEN_IMAGES")
        .map(PathBuf::from)
        .unwrap_or(golden);
    for case in ["fds", "tree", "threads"] {
        let src = golden.join(case).join("source.c");
        let bin = t.join(case);
        let built = src.is_file()
            && Command::new("gcc")
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .arg("-lpthread")
                .status()
                .is_ok_and(|s| s.success());
        if !built {
            eprintln!("{case}: skipped: no gcc or no {}", src.display());
            continue;
        }
        let pidfile = t.join(format!("{case}.pid"));
        let mut cmd = Command::new("setsid");
        cmd.arg(&bin).arg(&pidfile).current_dir("/");
        let dir = t.join(format!("img-{case}"));
        dump(&mut cmd, &pidfile, |s| s.trim().parse().ok(), &dir);
        check(&dir, &lib);
    }
}
