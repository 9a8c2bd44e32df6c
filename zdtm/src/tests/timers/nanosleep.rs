use crate::prelude::*;
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
use std::sync::Arc;
use std::time::Duration;

pub const DESC: Desc = Desc {
    name: "timers/nanosleep",
    family: "timers",
    description: "threads sleeping in relative and absolute clock_nanosleep wake up correctly, never early",
    ..Desc::DEFAULT
};

fn now() -> Result<TimeSpec> {
    clock_gettime(ClockId::CLOCK_MONOTONIC).context("clock_gettime")
}

fn sleeper(abs: bool, stop: Arc<AtomicBool>, count: Arc<AtomicU32>) -> Result<()> {
    // No handler runs in this thread: the runner's SIGTERM is for the whole
    // process, and the kernel gives such a signal to any thread that does
    // not block it when the main thread cannot take it at that instant.
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    )
    .context("blocking signals in the sleeper")?;
    let step = TimeSpec::from(Duration::from_millis(300));
    while !stop.load(Ordering::SeqCst) {
        let t0 = now()?;
        let target = t0 + step;
        let r = if abs {
            clock_nanosleep(ClockId::CLOCK_MONOTONIC, ClockNanosleepFlags::TIMER_ABSTIME, &target)
        } else {
            clock_nanosleep(ClockId::CLOCK_MONOTONIC, ClockNanosleepFlags::empty(), &step)
        };
        // no handler runs in this thread (all blocked), so the sleep must
        // not be cut short
        r.map_err(|e| anyhow!("clock_nanosleep (abs={abs}) failed: {e}"))?;
        let t1 = now()?;
        ensure!(t1 >= target, "woke early: at {t1:?}, target {target:?} (abs={abs})");
        count.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = [Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0))];
    let hs: Vec<_> = [false, true]
        .into_iter()
        .zip(counts.iter().cloned())
        .map(|(abs, c)| {
            let stop = stop.clone();
            std::thread::spawn(move || sleeper(abs, stop, c))
        })
        .collect();
    // Ready once every sleeper has been round once: a thread's first steps
    // (its malloc arena…) must not happen between the dump and the checks.
    ensure!(
        wait_for(5000, || counts.iter().all(|c| c.load(Ordering::SeqCst) > 0)),
        "the sleepers did not start"
    );
    t.daemon()?;
    t.wait_sig();
    let c0: Vec<u32> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let moved = wait_for(5000, || counts.iter().zip(&c0).all(|(c, &b)| c.load(Ordering::SeqCst) > b));
    stop.store(true, Ordering::SeqCst);
    for h in hs {
        h.join().map_err(|_| anyhow!("sleeper panicked"))??;
    }
    ensure!(moved, "a sleeper did not wake up after restore");
    Ok(())
}
