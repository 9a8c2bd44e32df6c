use crate::prelude::*;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

pub const DESC: Desc = Desc {
    name: "signals/sigstop",
    family: "signals",
    description: "a child stopped with SIGSTOP stays stopped, and runs again on SIGCONT",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let child = fork_child(|| loop {
        page.word(0).fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
    })?;
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) > 0), "child did not start");
        child.signal(Signal::SIGSTOP)?;
        let st = waitpid(child.pid, Some(WaitPidFlag::WUNTRACED)).context("waitpid WUNTRACED")?;
        ensure!(matches!(st, WaitStatus::Stopped(_, Signal::SIGSTOP)), "child status {st:?}");
        t.daemon()?;
        t.wait_sig();
        let s = proc_state(child.pid)?;
        ensure!(s == 'T', "child state {s}, expected T (stopped)");
        let c0 = page.word(0).load(Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(100));
        ensure!(page.word(0).load(Ordering::SeqCst) == c0, "stopped child kept running");
        child.signal(Signal::SIGCONT)?;
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) > c0), "child did not run after SIGCONT");
        Ok(())
    })();
    child.kill();
    res
}
