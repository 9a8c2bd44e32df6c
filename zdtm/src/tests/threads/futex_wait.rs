use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "threads/futex_wait",
    family: "threads",
    description: "a thread blocked in FUTEX_WAIT keeps waiting through restore and wakes on FUTEX_WAKE",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = Arc::new(SharedPage::new()?);
    let p2 = page.clone();
    let h = std::thread::spawn(move || -> Result<()> {
        p2.word(2).store(nix::unistd::gettid().as_raw() as u32, Ordering::SeqCst);
        // count the wakeups that did not find the word changed
        loop {
            let v = p2.word(0).load(Ordering::SeqCst);
            if v != 0 {
                break;
            }
            sys::futex_wait(p2.word(0), 0).context("FUTEX_WAIT")?;
            if p2.word(0).load(Ordering::SeqCst) == 0 {
                p2.word(3).fetch_add(1, Ordering::SeqCst);
            }
        }
        p2.word(1).store(1, Ordering::SeqCst);
        Ok(())
    });
    ensure!(
        wait_for(5000, || {
            let tid = page.word(2).load(Ordering::SeqCst);
            tid != 0 && proc_state(nix::unistd::Pid::from_raw(tid as i32)).ok() == Some('S')
        }),
        "the thread did not block"
    );
    t.daemon()?;
    t.wait_sig();
    ensure!(page.word(1).load(Ordering::SeqCst) == 0, "the waiter finished before it was woken");
    sync::set_and_wake(page.word(0), 1)?;
    ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) == 1), "the waiter was not woken by FUTEX_WAKE");
    h.join().map_err(|_| anyhow!("waiter panicked"))??;
    Ok(())
}
