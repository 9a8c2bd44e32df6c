use crate::prelude::*;
use nix::unistd::{getpgid, getpid, getsid, gettid};

pub const DESC: Desc = Desc {
    name: "basic/pid00",
    family: "basic",
    description: "pid, tid, session and process group ids are kept",
    ..Desc::DEFAULT
};

fn ids() -> Result<[i32; 4]> {
    Ok([
        getpid().as_raw(),
        gettid().as_raw(),
        getsid(None).context("getsid")?.as_raw(),
        getpgid(None).context("getpgid")?.as_raw(),
    ])
}

pub fn run(t: &mut Test) -> Result<()> {
    let before = ids()?;
    ensure!(before[2] == before[0], "the test should lead its session: {before:?}");
    t.daemon()?;
    t.wait_sig();
    let after = ids()?;
    ensure!(after == before, "[pid, tid, sid, pgid] were {before:?}, now {after:?}");
    let stat = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
    let first: i32 = stat.split_whitespace().next().unwrap_or("").parse().context("pid in /proc/self/stat")?;
    ensure!(first == before[0], "/proc/self/stat says pid {first}, expected {}", before[0]);
    Ok(())
}
