use crate::prelude::*;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "events/signalfd00",
    family: "events",
    description: "a signalfd keeps its mask and delivers a signal pending across the dump",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR1);
    mask.add(Signal::SIGUSR2);
    mask.thread_block().context("block")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK).context("signalfd")?;
    nix::sys::signal::raise(Signal::SIGUSR1).context("raise")?;
    let info0 = fdinfo(sfd.as_raw_fd())?;
    let sigmask = |s: &str| s.lines().find(|l| l.starts_with("sigmask:")).map(str::to_string);
    t.daemon()?;
    t.wait_sig();
    let info1 = fdinfo(sfd.as_raw_fd())?;
    ensure!(sigmask(&info1).is_some() && sigmask(&info1) == sigmask(&info0), "signalfd mask {:?} was {:?}", sigmask(&info1), sigmask(&info0));
    let got = sfd.read_signal().context("read signalfd")?;
    let sig = got.map(|s| s.ssi_signo as i32);
    ensure!(sig == Some(libc::SIGUSR1), "signalfd gave {sig:?}, expected SIGUSR1");
    ensure!(sfd.read_signal().context("read again")?.is_none(), "more signals than queued");
    nix::sys::signal::raise(Signal::SIGUSR2).context("raise USR2")?;
    let sig = sfd.read_signal().context("read USR2")?.map(|s| s.ssi_signo as i32);
    ensure!(sig == Some(libc::SIGUSR2), "new SIGUSR2 not seen: {sig:?}");
    Ok(())
}
