use crate::prelude::*;
use nix::fcntl::{Flock, FlockArg};

pub const DESC: Desc = Desc {
    name: "files/flock_nolocks",
    family: "files",
    description: "without --file-locks a held flock() fails the dump, and the tree runs on with its lock",
    flags: &[Flag::Crfail],
    flavors: &[Flavor::Host],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("flock_nolocks");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).context("open")?;
    let held = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| anyhow!("flock: {e}"))?;
    t.daemon()?;
    t.wait_sig();
    let other = std::fs::OpenOptions::new().read(true).open(&path).context("open again")?;
    ensure!(Flock::lock(other, FlockArg::LockSharedNonblock).is_err(), "the lock was lost");
    drop(held);
    Ok(())
}
