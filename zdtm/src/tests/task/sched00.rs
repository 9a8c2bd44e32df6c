use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "task/sched00",
    family: "task",
    description: "nice, scheduling policy (OTHER, BATCH, IDLE) and timer slack of each thread survive",
    ..Desc::DEFAULT
};

/// (policy, nice, timer slack ns) of the calling thread.
fn sched_here() -> Result<(i32, i32, u64)> {
    // SAFETY: integer arguments only.
    let (pol, nice, slack) = unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        ensure!(*libc::__errno_location() == 0, "getpriority");
        (libc::sched_getscheduler(0), nice, libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0))
    };
    ensure!(pol >= 0 && slack >= 0, "sched_getscheduler/PR_GET_TIMERSLACK: {}", std::io::Error::last_os_error());
    Ok((pol, nice, slack as u64))
}

fn set_here(policy: i32, nice: i32, slack: u64) -> Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a live sched_param; other calls take integers.
    unsafe {
        ensure!(libc::sched_setscheduler(0, policy, &param) == 0, "sched_setscheduler({policy}): {}", std::io::Error::last_os_error());
        ensure!(libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0, "setpriority({nice}): {}", std::io::Error::last_os_error());
        ensure!(libc::prctl(libc::PR_SET_TIMERSLACK, slack, 0, 0, 0) == 0, "PR_SET_TIMERSLACK");
    }
    Ok(())
}

type Seen = Arc<std::sync::Mutex<Vec<Option<(i32, i32, u64)>>>>;

pub fn run(t: &mut Test) -> Result<()> {
    let want = [
        (libc::SCHED_OTHER, 3, 70_000u64),
        (libc::SCHED_BATCH, 7, 123_456),
        (libc::SCHED_IDLE, 11, 50_000),
        (libc::SCHED_OTHER, 19, 1_000_000),
    ];
    set_here(want[0].0, want[0].1, want[0].2)?;
    let page = Arc::new(SharedPage::new()?);
    let seen: Seen = Arc::new(std::sync::Mutex::new(vec![None; want.len()]));
    let mut hs = Vec::new();
    // word 0: generation asked (1 before dump, 2 after); word 1: answers
    for (i, &(pol, nice, slack)) in want.iter().enumerate().skip(1) {
        let (p2, seen) = (page.clone(), seen.clone());
        hs.push(std::thread::spawn(move || -> Result<()> {
            set_here(pol, nice, slack)?;
            for gen in 1..=2 {
                sync::wait_until(p2.word(0), |v| v >= gen)?;
                let s = sched_here()?;
                seen.lock().map_err(|_| anyhow!("lock"))?[i] = Some(s);
                sync::add_and_wake(p2.word(1), 1)?;
            }
            Ok(())
        }));
    }
    let ask = |gen: u32| -> Result<Vec<Option<(i32, i32, u64)>>> {
        sync::set_and_wake(page.word(0), gen)?;
        let n = (want.len() as u32 - 1) * gen;
        ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) >= n), "threads did not answer");
        let mut v = seen.lock().map_err(|_| anyhow!("lock"))?.clone();
        v[0] = Some(sched_here()?);
        Ok(v)
    };
    let before = ask(1)?;
    for (i, w) in want.iter().enumerate() {
        ensure!(before[i] == Some(*w), "thread {i} before dump: {:?}, set {w:?}", before[i]);
    }
    t.daemon()?;
    t.wait_sig();
    let after = ask(2);
    for h in hs {
        h.join().map_err(|_| anyhow!("thread panicked"))??;
    }
    let after = after?;
    for (i, w) in want.iter().enumerate() {
        ensure!(after[i] == Some(*w), "thread {i} after restore: (policy, nice, slack) {:?}, expected {w:?}", after[i]);
    }
    Ok(())
}
