use crate::prelude::*;
use nix::sys::signal::Signal;

pub const DESC: Desc = Desc {
    name: "signals/sigpending00",
    family: "signals",
    description: "blocked pending standard signals and queued real-time signals with values survive, in order",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let rt = libc::SIGRTMIN() + 2;
    let rt2 = libc::SIGRTMIN() + 7;
    let sigs = [libc::SIGUSR1, libc::SIGUSR2, libc::SIGCHLD, rt, rt2];
    sys::sigprocmask(libc::SIG_BLOCK, &sys::sigset_of(&sigs)).context("block signals")?;
    let me = std::process::id() as i32;
    nix::sys::signal::raise(Signal::SIGUSR1).context("raise USR1")?;
    nix::sys::signal::raise(Signal::SIGUSR2).context("raise USR2")?;
    for v in [11usize, 22, 33] {
        sys::sigqueue(me, rt, v).context("sigqueue rt")?;
    }
    sys::sigqueue(me, rt2, 77).context("sigqueue rt2")?;
    t.daemon()?;
    t.wait_sig();
    let mut got = Vec::new();
    while let Some(x) = sys::sigtimedwait(&sigs, 0).context("sigtimedwait")? {
        got.push(x);
        ensure!(got.len() < 20, "too many signals: {got:?}");
    }
    let brief: Vec<(i32, usize)> =
        got.iter().map(|&(s, code, v)| (s, if code == libc::SI_QUEUE { v } else { 0 })).collect();
    // standard signals first (lowest number first), then RT in number and queue order
    let want = vec![(libc::SIGUSR1, 0), (libc::SIGUSR2, 0), (rt, 11), (rt, 22), (rt, 33), (rt2, 77)];
    ensure!(brief == want, "signals received {brief:?}, expected {want:?}");
    Ok(())
}
