use super::pidfd00::{pid_and_flags, pidfd_open};
use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "files/pidfd_outside",
    family: "files",
    description: "a pidfd of a process outside the dumped tree fails the dump, and the tree runs on with it",
    flags: &[Flag::Crfail],
    flavors: &[Flavor::Host],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    // Host flavor only: PID 1 is never part of the test's tree.
    let outside = 1;
    ensure!(std::process::id() != 1, "the test runs as PID 1");
    let f = pidfd_open(outside, 0)?;
    t.daemon()?;
    t.wait_sig();
    let (p, _) = pid_and_flags(&f)?;
    ensure!(p == outside, "the pidfd of PID 1 refers to pid {p}");
    Ok(())
}
