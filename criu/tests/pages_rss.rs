//! criu's memory stays bounded whatever the size of what it dumps: the
//! pages go through a fixed-size buffer, not through criu's heap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu::sys::rusage::wait4;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const CRIU: &str = env!("CARGO_BIN_EXE_criu");
const VICTIM: &str = env!("CARGO_BIN_EXE_criu-test-victim");

/// criu's peak RSS may not pass this, whatever it dumps. (wait4 counts
/// the RSS this test process had when spawning criu too: an upper bound.)
const LIMIT_KB: i64 = 32 * 1024;

fn wait_ready(p: &Path) {
    let start = Instant::now();
    while !std::fs::read_to_string(p)
        .unwrap_or_default()
        .starts_with("ready")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "victim not ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dumping_256_mib_keeps_criu_under_32_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    // Both children are reaped with wait4 below, which also gives criu's
    // resource usage.
    #[allow(clippy::zombie_processes)]
    let victim = Command::new(VICTIM)
        .args(["pattern", "256"])
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn victim");
    let vpid = victim.id() as i32;
    wait_ready(&report);

    let img = tmp.path().join("img");
    std::fs::create_dir(&img).unwrap();
    #[allow(clippy::zombie_processes)]
    let criu = Command::new(CRIU)
        .args(["dump", "-t", &vpid.to_string(), "-D"])
        .arg(&img)
        .args(["-o", "dump.log"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run criu");
    let r = wait4(criu.id() as i32).expect("reap criu");
    let _ = kill(Pid::from_raw(vpid), Signal::SIGKILL);
    let _ = wait4(vpid);
    assert_eq!(
        r.exit_code(),
        Some(0),
        "dump failed:\n{}",
        std::fs::read_to_string(img.join("dump.log")).unwrap_or_default()
    );
    let pages: u64 = std::fs::read_dir(&img)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages-"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(pages >= 256 << 20, "only {pages} bytes of pages dumped");
    assert!(
        r.maxrss_kb <= LIMIT_KB,
        "criu peaked at {} KiB dumping {} MiB",
        r.maxrss_kb,
        pages >> 20
    );
    eprintln!("criu peak RSS {} KiB for {} MiB", r.maxrss_kb, pages >> 20);
}
