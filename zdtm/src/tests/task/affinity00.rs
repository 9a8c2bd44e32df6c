use crate::prelude::*;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

pub const DESC: Desc = Desc {
    name: "task/affinity00",
    family: "task",
    description: "each thread keeps its CPU affinity and its I/O priority",
    ..Desc::DEFAULT
};

const IOPRIO_WHO_PROCESS: libc::c_long = 1;
const IOPRIO_CLASS_SHIFT: i32 = 13;
const IOPRIO_CLASS_BE: i32 = 2;
const IOPRIO_CLASS_IDLE: i32 = 3;

fn ioprio_get() -> Result<i32> {
    // SAFETY: integer arguments only; 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
    ensure!(r >= 0, "ioprio_get: {}", std::io::Error::last_os_error());
    Ok(r as i32)
}

fn ioprio_set(prio: i32) -> Result<()> {
    // SAFETY: integer arguments only; 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    ensure!(r == 0, "ioprio_set({prio:#x}): {}", std::io::Error::last_os_error());
    Ok(())
}

/// The CPUs of the calling thread, as a list.
fn cpus() -> Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    Ok((0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect())
}

fn pin(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).context("CpuSet::set")?;
    sched_setaffinity(Pid::from_raw(0), &set).context("sched_setaffinity")
}

pub fn run(t: &mut Test) -> Result<()> {
    let online = cpus()?;
    let (first, last) = (online[0], online[online.len() - 1]);
    pin(last)?;
    let be6 = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 6;
    let idle = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT;
    ioprio_set(be6)?;
    let page = std::sync::Arc::new(SharedPage::new()?);
    let p2 = page.clone();
    // word 0: 1 = checked before the dump, 2 = check again; word 1: verdicts
    let h = std::thread::spawn(move || -> Result<()> {
        pin(first)?;
        ioprio_set(idle)?;
        for gen in 1..=2 {
            sync::wait_until(p2.word(0), |v| v >= gen)?;
            let ok = cpus()? == vec![first] && ioprio_get()? == idle;
            sync::add_and_wake(p2.word(1), if ok { 1 } else { 100 })?;
        }
        Ok(())
    });
    sync::set_and_wake(page.word(0), 1)?;
    ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) >= 1), "thread did not answer");
    ensure!(page.word(1).load(Ordering::SeqCst) == 1, "the thread's affinity or I/O priority was not set");
    t.daemon()?;
    t.wait_sig();
    sync::set_and_wake(page.word(0), 2)?;
    let answered = wait_for(5000, || page.word(1).load(Ordering::SeqCst) >= 2);
    h.join().map_err(|_| anyhow!("thread panicked"))??;
    ensure!(answered, "thread did not answer after restore");
    ensure!(page.word(1).load(Ordering::SeqCst) == 2, "the thread lost its CPU affinity or I/O priority");
    ensure!(cpus()? == vec![last], "main thread runs on {:?}, was pinned to {last}", cpus()?);
    let p = ioprio_get()?;
    ensure!(p == be6, "main thread I/O priority {p:#x}, was {be6:#x}");
    Ok(())
}
