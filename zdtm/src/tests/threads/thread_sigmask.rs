use crate::prelude::*;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "threads/thread_sigmask",
    family: "threads",
    description: "each thread keeps its own blocked-signal mask",
    ..Desc::DEFAULT
};

fn mask_for(i: usize) -> Result<SigSet> {
    let mut s = SigSet::empty();
    let all = [Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGHUP, Signal::SIGALRM, Signal::SIGWINCH];
    for (k, sig) in all.iter().enumerate() {
        if (i >> k) & 1 == 1 || k == i % all.len() {
            s.add(*sig);
        }
    }
    Ok(s)
}

fn sigblk(tid: i32) -> Result<u64> {
    let v = proc_status(Some(nix::unistd::Pid::from_raw(tid)), "SigBlk")?;
    u64::from_str_radix(&v, 16).with_context(|| format!("SigBlk {v:?}"))
}

pub fn run(t: &mut Test) -> Result<()> {
    let go = Arc::new(SharedPage::new()?);
    let ready = Arc::new(AtomicU32::new(0));
    let mut hs = Vec::new();
    for i in 0..6usize {
        let (go, ready) = (go.clone(), ready.clone());
        hs.push(std::thread::spawn(move || -> Result<()> {
            let want = mask_for(i)?;
            want.thread_set_mask().context("pthread_sigmask")?;
            let tid = nix::unistd::gettid().as_raw();
            let blk0 = sigblk(tid)?;
            ready.fetch_add(1, Ordering::SeqCst);
            sync::wait_until(go.word(0), |v| v != 0)?;
            let mut got = SigSet::empty();
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut got)).context("read mask")?;
            ensure!(got == want, "thread {i}: mask {got:?}, expected {want:?}");
            let blk = sigblk(tid)?;
            ensure!(blk == blk0, "thread {i}: SigBlk {blk:x}, was {blk0:x}");
            Ok(())
        }));
    }
    ensure!(wait_for(5000, || ready.load(Ordering::SeqCst) == 6), "threads did not start");
    let main_mask = {
        let mut s = SigSet::empty();
        s.add(Signal::SIGPIPE);
        s.add(Signal::SIGURG);
        s
    };
    main_mask.thread_set_mask().context("main pthread_sigmask")?;
    t.daemon()?;
    t.wait_sig();
    sync::set_and_wake(go.word(0), 1)?;
    for (i, h) in hs.into_iter().enumerate() {
        h.join().map_err(|_| anyhow!("thread {i} panicked"))??;
    }
    let got = SigSet::thread_get_mask().context("main mask")?;
    ensure!(got == main_mask, "main thread mask {got:?}, expected {main_mask:?}");
    Ok(())
}
