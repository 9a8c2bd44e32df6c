use crate::prelude::*;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

pub const DESC: Desc = Desc {
    name: "signals/stopped_tree",
    family: "signals",
    description: "a stopped two-thread child and its stopped grandchild stay stopped and resume on SIGCONT",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = std::sync::Arc::new(SharedPage::new()?);
    let pg = page.clone();
    let child = fork_child(move || {
        let page = pg;
        let gc = fork_child(|| loop {
            page.word(1).fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
        })?;
        page.word(3).store(gc.pid.as_raw() as u32, Ordering::SeqCst);
        let p2 = page.clone();
        std::thread::spawn(move || loop {
            p2.word(2).fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
        });
        loop {
            page.word(0).fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    })?;
    let counts = |p: &SharedPage| [0, 1, 2].map(|i| p.word(i).load(Ordering::SeqCst));
    let mut gc = None;
    let res = (|| {
        ensure!(wait_for(5000, || counts(&page).iter().all(|&c| c > 0)), "tasks did not start");
        let g = Child { pid: nix::unistd::Pid::from_raw(page.word(3).load(Ordering::SeqCst) as i32) };
        gc = Some(g);
        g.signal(Signal::SIGSTOP)?;
        child.signal(Signal::SIGSTOP)?;
        let st = waitpid(child.pid, Some(WaitPidFlag::WUNTRACED)).context("waitpid WUNTRACED")?;
        ensure!(matches!(st, WaitStatus::Stopped(_, Signal::SIGSTOP)), "child status {st:?}");
        ensure!(wait_for(5000, || proc_state(g.pid).ok() == Some('T')), "grandchild did not stop");
        t.daemon()?;
        t.wait_sig();
        for (who, pid) in [("child", child.pid), ("grandchild", g.pid)] {
            let s = proc_state(pid)?;
            ensure!(s == 'T', "{who} state {s}, expected T (stopped)");
        }
        let c0 = counts(&page);
        std::thread::sleep(std::time::Duration::from_millis(150));
        ensure!(counts(&page) == c0, "stopped tasks kept running: {c0:?} -> {:?}", counts(&page));
        child.signal(Signal::SIGCONT)?;
        ensure!(
            wait_for(5000, || { let c = counts(&page); c[0] > c0[0] && c[2] > c0[2] }),
            "child's threads did not run after SIGCONT"
        );
        ensure!(page.word(1).load(Ordering::SeqCst) == c0[1], "grandchild ran with the child's SIGCONT");
        g.signal(Signal::SIGCONT)?;
        ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) > c0[1]), "grandchild did not run after SIGCONT");
        Ok(())
    })();
    if let Some(g) = gc {
        let _ = g.signal(Signal::SIGKILL);
    }
    child.kill();
    res
}
