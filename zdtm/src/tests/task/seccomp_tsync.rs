use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "task/seccomp_tsync",
    family: "task",
    description: "a seccomp filter synced to all threads (TSYNC) is shared again after restore: a new TSYNC filter still installs",
    ..Desc::DEFAULT
};

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const FLAG_TSYNC: libc::c_ulong = 1;

fn deny(nr: i64, errno: u32) -> Vec<libc::sock_filter> {
    let st = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    vec![
        st((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0, 0, 0),
        st((libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, 0, 1, nr as u32),
        st((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, RET_ERRNO | errno),
        st((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, RET_ALLOW),
    ]
}

fn install_tsync(prog: &mut [libc::sock_filter]) -> Result<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_mut_ptr() };
    // SAFETY: fprog points at a live filter array for the call; the kernel copies it.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, 1, FLAG_TSYNC, &fprog as *const libc::sock_fprog) };
    ensure!(r == 0, "seccomp(SET_MODE_FILTER, TSYNC) = {r}: {}", std::io::Error::last_os_error());
    Ok(())
}

fn errno_of(nr: i64) -> i32 {
    // SAFETY: getppid/getpgid(0) take no pointers.
    let r = unsafe { libc::syscall(nr, 0) };
    if r < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) } else { 0 }
}

pub fn run(t: &mut Test) -> Result<()> {
    // SAFETY: plain prctl with integer arguments.
    ensure!(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0, "PR_SET_NO_NEW_PRIVS");
    let page = Arc::new(SharedPage::new()?);
    let p2 = page.clone();
    let h = std::thread::spawn(move || -> Result<(i32, i32)> {
        p2.word(1).store(1, Ordering::SeqCst);
        sync::wait_until(p2.word(0), |v| v != 0)?;
        Ok((errno_of(libc::SYS_getppid), errno_of(libc::SYS_getpgid)))
    });
    ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) != 0), "thread did not start");
    install_tsync(&mut deny(libc::SYS_getppid, 21))?;
    t.daemon()?;
    t.wait_sig();
    // fails (returns the tid of a thread out of step) unless all threads
    // share the main thread's filters
    let second = install_tsync(&mut deny(libc::SYS_getpgid, 23));
    sync::set_and_wake(page.word(0), 1)?;
    let got = h.join().map_err(|_| anyhow!("thread panicked"))??;
    second.context("after restore")?;
    ensure!(got == (21, 23), "thread: getppid/getpgid errnos {got:?}, expected (21, 23)");
    Ok(())
}
