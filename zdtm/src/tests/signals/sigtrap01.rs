use crate::prelude::*;
use nix::sys::signal::{raise, SigSet, Signal};

pub const DESC: Desc = Desc {
    name: "signals/sigtrap01",
    family: "signals",
    description: "an ignored, unblocked SIGTRAP stays ignored (criu's restore traps inside the task)",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let sa = sys::make_sigaction(libc::SIG_IGN, 0, &[]);
    sys::sigaction(libc::SIGTRAP, &sa).context("ignore SIGTRAP")?;
    let mut trap = SigSet::empty();
    trap.add(Signal::SIGTRAP);
    trap.thread_unblock().context("unblock SIGTRAP")?;
    t.daemon()?;
    t.wait_sig();
    let got = sys::get_sigaction(libc::SIGTRAP).context("read sigaction SIGTRAP")?;
    ensure!(got.sa_sigaction == libc::SIG_IGN, "SIGTRAP disposition {:#x}, expected SIG_IGN", got.sa_sigaction);
    let mask = SigSet::thread_get_mask().context("read the signal mask")?;
    ensure!(!mask.contains(Signal::SIGTRAP), "SIGTRAP became blocked");
    // Ignored: this must not kill the test.
    raise(Signal::SIGTRAP).context("raise SIGTRAP")?;
    Ok(())
}
