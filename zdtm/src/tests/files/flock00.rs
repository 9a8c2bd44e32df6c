use crate::prelude::*;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub const DESC: Desc = Desc {
    name: "files/flock00",
    family: "files",
    description: "an exclusive flock() on one file and a shared one on another are still held after restore",
    dump_opts: &["--file-locks"],
    restore_opts: &["--file-locks"],
    ..Desc::DEFAULT
};

fn open(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).with_context(|| format!("open {}", path.display()))
}

/// Tries `arg` (non-blocking) on a new open file description of `path`:
/// Ok(true) if it was granted (and dropped again), Ok(false) on EWOULDBLOCK.
fn try_lock(path: &std::path::Path, arg: FlockArg) -> Result<bool> {
    match Flock::lock(open(path)?, arg) {
        Ok(_held) => Ok(true),
        Err((_, Errno::EWOULDBLOCK)) => Ok(false),
        Err((_, e)) => bail!("flock {}: {e}", path.display()),
    }
}

pub fn run(t: &mut Test) -> Result<()> {
    let ex_path = t.dir()?.join("flock_ex");
    let sh_path = t.dir()?.join("flock_sh");
    let ex = Flock::lock(open(&ex_path)?, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| anyhow!("flock LOCK_EX: {e}"))?;
    let sh = Flock::lock(open(&sh_path)?, FlockArg::LockSharedNonblock).map_err(|(_, e)| anyhow!("flock LOCK_SH: {e}"))?;
    t.daemon()?;
    t.wait_sig();
    ensure!(!try_lock(&ex_path, FlockArg::LockSharedNonblock)?, "the exclusive flock is gone: a shared lock was granted");
    ensure!(!try_lock(&sh_path, FlockArg::LockExclusiveNonblock)?, "the shared flock is gone: an exclusive lock was granted");
    ensure!(try_lock(&sh_path, FlockArg::LockSharedNonblock)?, "the shared flock became exclusive");
    drop((ex, sh));
    Ok(())
}
