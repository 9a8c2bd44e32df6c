use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "task/seccomp_filter",
    family: "task",
    description: "two stacked seccomp filters (getppid -> EPERM-like errnos, newest wins) and a thread with a third of its own stay in force",
    ..Desc::DEFAULT
};

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// A BPF program: syscall `nr` fails with `errno`, everything else runs.
fn deny(nr: i64, errno: u32) -> Vec<libc::sock_filter> {
    let st = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        st((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0, 0, 0),
        st((libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, 0, 1, nr as u32),
        st((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, RET_ERRNO | errno),
        st((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, RET_ALLOW),
    ]
}

pub(crate) fn install(prog: &mut [libc::sock_filter]) -> Result<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: fprog points at a live filter array of `len` instructions for
    // the duration of the call; the kernel copies it.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, 1 /* SET_MODE_FILTER */, 0, &fprog as *const libc::sock_fprog) };
    ensure!(r == 0, "seccomp(SET_MODE_FILTER): {}", std::io::Error::last_os_error());
    Ok(())
}

/// The errno a raw syscall without arguments fails with (0 if it works).
fn errno_of(nr: i64) -> i32 {
    // SAFETY: getppid/getpgid(0)/getsid(0) take no pointers.
    let r = unsafe { libc::syscall(nr, 0) };
    if r < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) } else { 0 }
}

fn filters(tid: Option<i32>) -> Result<String> {
    let path = match tid {
        Some(t) => format!("/proc/self/task/{t}/status"),
        None => "/proc/thread-self/status".into(),
    };
    let s = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap_or_default();
    Ok(format!("mode {} filters {}", get("Seccomp:"), get("Seccomp_filters:")))
}

pub fn run(t: &mut Test) -> Result<()> {
    // SAFETY: plain prctl with integer arguments.
    ensure!(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0, "PR_SET_NO_NEW_PRIVS");
    install(&mut deny(libc::SYS_getppid, 11))?;
    install(&mut deny(libc::SYS_getppid, 22))?;
    ensure!(errno_of(libc::SYS_getppid) == 22, "before: getppid errno {}", errno_of(libc::SYS_getppid));

    let page = Arc::new(SharedPage::new()?);
    let p2 = page.clone();
    let h = std::thread::spawn(move || -> Result<()> {
        install(&mut deny(libc::SYS_getpgid, 33))?;
        p2.word(2).store(nix::unistd::gettid().as_raw() as u32, Ordering::SeqCst);
        sync::wait_until(p2.word(0), |v| v != 0)?;
        let e = errno_of(libc::SYS_getpgid);
        ensure!(e == 33, "thread: getpgid errno {e}, expected 33 from its own filter");
        let e = errno_of(libc::SYS_getppid);
        ensure!(e == 22, "thread: getppid errno {e}, expected 22 from the newest shared filter");
        ensure!(filters(None)? == "mode 2 filters 3", "thread: {}", filters(None)?);
        Ok(())
    });
    ensure!(wait_for(5000, || page.word(2).load(Ordering::SeqCst) != 0), "thread did not start");
    let tid = page.word(2).load(Ordering::SeqCst) as i32;
    ensure!(filters(Some(tid))? == "mode 2 filters 3", "thread before: {}", filters(Some(tid))?);

    t.daemon()?;
    t.wait_sig();

    let main = filters(None)?;
    let thr = filters(Some(tid))?;
    sync::set_and_wake(page.word(0), 1)?;
    let res = h.join().map_err(|_| anyhow!("thread panicked"))?;
    ensure!(main == "mode 2 filters 2", "main thread after restore: {main}");
    ensure!(thr == "mode 2 filters 3", "thread after restore: {thr}");
    let e = errno_of(libc::SYS_getppid);
    ensure!(e == 22, "getppid errno {e} after restore, expected 22 (newest filter first)");
    let e = errno_of(libc::SYS_getpgid);
    ensure!(e == 0, "getpgid failed with {e} in the main thread: the thread's filter leaked");
    res
}
