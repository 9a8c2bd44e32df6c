use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "task/prctl00",
    family: "task",
    description: "prctl state: per-thread names, pdeath signal and timer slack; dumpable 0, child subreaper, THP disable, no_new_privs, keepcaps, speculation controls",
    ..Desc::DEFAULT
};

fn prctl_get(op: i32, arg: u64) -> i64 {
    // SAFETY: the GET operations used here take integer arguments.
    unsafe { libc::prctl(op, arg, 0, 0, 0) as i64 }
}

fn prctl_ptr(op: i32) -> Result<i32> {
    let mut v: libc::c_int = -1;
    // SAFETY: v is a live int the kernel writes to.
    let r = unsafe { libc::prctl(op, &mut v as *mut libc::c_int, 0, 0, 0) };
    ensure!(r == 0, "prctl({op}): {}", std::io::Error::last_os_error());
    Ok(v)
}

fn set(op: i32, arg: u64) -> Result<()> {
    // SAFETY: integer arguments only.
    let r = unsafe { libc::prctl(op, arg, 0, 0, 0) };
    ensure!(r == 0, "prctl({op}, {arg}): {}", std::io::Error::last_os_error());
    Ok(())
}

const PR_GET_SPECULATION_CTRL: i32 = 52;

/// Everything a thread can say about itself with prctl.
fn thread_state() -> Result<String> {
    let mut name = [0u8; 16];
    // SAFETY: name is a 16-byte buffer, what PR_GET_NAME writes.
    ensure!(unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr(), 0, 0, 0) } == 0, "PR_GET_NAME");
    let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
    let spec: Vec<i64> = (0..3).map(|w| prctl_get(PR_GET_SPECULATION_CTRL, w)).collect();
    Ok(format!(
        "name={name} pdeath={} slack={} nnp={} keepcaps={} spec={spec:?}",
        prctl_ptr(libc::PR_GET_PDEATHSIG)?,
        prctl_get(libc::PR_GET_TIMERSLACK, 0),
        prctl_get(libc::PR_GET_NO_NEW_PRIVS, 0),
        prctl_get(libc::PR_GET_KEEPCAPS, 0),
    ))
}

fn process_state() -> Result<String> {
    Ok(format!(
        "dumpable={} subreaper={} thp_disable={}",
        prctl_get(libc::PR_GET_DUMPABLE, 0),
        prctl_ptr(libc::PR_GET_CHILD_SUBREAPER)?,
        prctl_get(libc::PR_GET_THP_DISABLE, 0),
    ))
}

pub fn run(t: &mut Test) -> Result<()> {
    // The starter exits once we are ready: the death signals must not kill us.
    for sig in [libc::SIGUSR1, libc::SIGUSR2] {
        sys::sigaction(sig, &sys::make_sigaction(libc::SIG_IGN, 0, &[]))?;
    }
    set(libc::PR_SET_CHILD_SUBREAPER, 1)?;
    set(libc::PR_SET_THP_DISABLE, 1)?;
    set(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    set(libc::PR_SET_KEEPCAPS, 1)?;
    set(libc::PR_SET_PDEATHSIG, libc::SIGUSR1 as u64)?;
    set(libc::PR_SET_TIMERSLACK, 77_777)?;
    set(libc::PR_SET_NAME, c"prctl-main".as_ptr() as u64)?;

    let page = Arc::new(SharedPage::new()?);
    let p2 = page.clone();
    let h = std::thread::spawn(move || -> Result<(String, String)> {
        set(libc::PR_SET_NAME, c"prctl-thr".as_ptr() as u64)?;
        set(libc::PR_SET_PDEATHSIG, libc::SIGUSR2 as u64)?;
        set(libc::PR_SET_TIMERSLACK, 333_333)?;
        set(libc::PR_SET_KEEPCAPS, 0)?;
        let before = thread_state()?;
        p2.word(1).store(1, Ordering::SeqCst);
        sync::wait_until(p2.word(0), |v| v != 0)?;
        Ok((before, thread_state()?))
    });
    ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) != 0), "thread did not start");
    // last: with dumpable 0 the thread's /proc files go to root
    set(libc::PR_SET_DUMPABLE, 0)?;
    let before = (thread_state()?, process_state()?);
    ensure!(before.1 == "dumpable=0 subreaper=1 thp_disable=1", "set: {}", before.1);

    t.daemon()?;
    t.wait_sig();

    let after = (thread_state()?, process_state()?);
    sync::set_and_wake(page.word(0), 1)?;
    let (tb, ta) = h.join().map_err(|_| anyhow!("thread panicked"))??;
    ensure!(after.1 == before.1, "process: {} after restore, was {}", after.1, before.1);
    ensure!(after.0 == before.0, "main thread: {} after restore, was {}", after.0, before.0);
    ensure!(ta == tb, "second thread: {ta} after restore, was {tb}");
    Ok(())
}
