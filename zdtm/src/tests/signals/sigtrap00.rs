use crate::prelude::*;
use nix::sys::signal::{raise, SigSet, Signal};

pub const DESC: Desc = Desc {
    name: "signals/sigtrap00",
    family: "signals",
    description: "a SIGTRAP handler and a blocked SIGTRAP are kept (criu's restore traps inside the task)",
    ..Desc::DEFAULT
};

/// glibc adds this flag behind our back (x86 value).
const SA_RESTORER: i32 = 0x0400_0000;

static HITS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_trap(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HITS.fetch_add(1, Ordering::SeqCst);
}

pub fn run(t: &mut Test) -> Result<()> {
    handler_kept(t, false)
}

/// A SIGTRAP handler (with flags and a mask) and a blocked SIGTRAP, with
/// one SIGTRAP `pending` across C/R or raised after it: the handler runs
/// once, when SIGTRAP is unblocked.
pub(super) fn handler_kept(t: &mut Test, pending: bool) -> Result<()> {
    let want = sys::info_handler(on_trap);
    let flags = libc::SA_SIGINFO | libc::SA_RESTART;
    let sa = sys::make_sigaction(want, flags, &[libc::SIGUSR1]);
    sys::sigaction(libc::SIGTRAP, &sa).context("sigaction SIGTRAP")?;
    let mut trap = SigSet::empty();
    trap.add(Signal::SIGTRAP);
    trap.thread_block().context("block SIGTRAP")?;
    if pending {
        // Pending across the dump: restore must queue it again, not eat it.
        raise(Signal::SIGTRAP).context("raise SIGTRAP")?;
    }
    t.daemon()?;
    t.wait_sig();
    let got = sys::get_sigaction(libc::SIGTRAP).context("read sigaction SIGTRAP")?;
    ensure!(got.sa_sigaction == want, "SIGTRAP handler {:#x}, expected {want:#x}", got.sa_sigaction);
    let f = got.sa_flags & !SA_RESTORER;
    ensure!(f == flags, "SIGTRAP flags {f:#x}, expected {flags:#x}");
    ensure!(sys::sigismember(&got.sa_mask, libc::SIGUSR1), "SIGTRAP's handler mask lost SIGUSR1");
    let mask = SigSet::thread_get_mask().context("read the signal mask")?;
    ensure!(mask.contains(Signal::SIGTRAP), "SIGTRAP is no longer blocked");
    if !pending {
        raise(Signal::SIGTRAP).context("raise SIGTRAP")?;
    }
    ensure!(HITS.load(Ordering::SeqCst) == 0, "the handler ran while SIGTRAP was blocked");
    trap.thread_unblock().context("unblock SIGTRAP")?;
    let hits = HITS.load(Ordering::SeqCst);
    ensure!(hits == 1, "the handler ran {hits} times for one SIGTRAP");
    Ok(())
}
