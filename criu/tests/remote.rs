//! The remote layer against real tasks: seize, run syscalls inside, release.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu::remote::Tracee;

fn vdso_range(pid: i32) -> (u64, u64) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let line = maps.lines().find(|l| l.ends_with("[vdso]")).unwrap();
    let range = line.split_whitespace().next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    (
        u64::from_str_radix(a, 16).unwrap(),
        u64::from_str_radix(b, 16).unwrap(),
    )
}

#[test]
fn remote_syscalls_leave_a_sleeping_task_as_found() {
    // `sleep 1` is inside nanosleep when seized; after release it must still
    // finish on time and with success (the kernel's restart rules applied).
    let mut child = Command::new("sleep")
        .arg("1")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();

    let mut t = Tracee::seize(pid, false).unwrap();
    let regs = *t.regs();
    let mask = t.sigmask().unwrap();
    let (lo, hi) = vdso_range(pid);
    t.find_syscall_ip(lo, hi).unwrap();
    assert_eq!(t.syscall(libc::SYS_getpid, &[]).unwrap(), pid as u64);
    let page = t.mmap_scratch(4096).unwrap();
    criu::remote::mem::write(pid, page, b"hello").unwrap();
    let mut back = [0u8; 5];
    criu::remote::mem::read(pid, page, &mut back).unwrap();
    assert_eq!(&back, b"hello");
    t.syscall(libc::SYS_munmap, &[page, 4096]).unwrap();
    // A failing call reports its errno.
    let err = t.syscall(libc::SYS_close, &[12345]).unwrap_err();
    assert!(err.to_string().contains("close"), "{err}");
    t.release(&regs, mask).unwrap();

    let status = child.wait().unwrap();
    assert!(status.success(), "sleep failed after release: {status:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}
