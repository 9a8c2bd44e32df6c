use crate::prelude::*;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

pub const DESC: Desc = Desc {
    name: "tree/zombie00",
    family: "tree",
    description: "zombies keep their pid and exit status (an exit code and a killing signal)",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let a = fork_child(|| -> Result<()> { sys::exit_now(42) })?;
    let b = fork_child(|| loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    })?;
    b.signal(Signal::SIGUSR2)?;
    for c in [a, b] {
        ensure!(wait_for(5000, || proc_state(c.pid).ok() == Some('Z')), "child {} did not become a zombie", c.pid);
    }
    t.daemon()?;
    t.wait_sig();
    for c in [a, b] {
        let s = proc_state(c.pid)?;
        ensure!(s == 'Z', "child {} is in state {s}, expected Z", c.pid);
    }
    let sa = a.wait()?;
    ensure!(sa == WaitStatus::Exited(a.pid, 42), "zombie a: {sa:?}");
    let sb = b.wait()?;
    ensure!(sb == WaitStatus::Signaled(b.pid, Signal::SIGUSR2, false), "zombie b: {sb:?}");
    Ok(())
}
