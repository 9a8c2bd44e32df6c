use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/timens",
    family: "ns",
    // The test makes the time namespace itself, so it must be the root of
    // the dumped tree: in the ns/uns flavors it would be nested.
    flavors: &[Flavor::Host],
    flags: &[Flag::Suid],
    feature: Some("timens"),
    description: "a time namespace with monotonic and boottime offsets of +1000 days: both clocks go on from where they were",
    ..Desc::DEFAULT
};

const OFFSET: i64 = 1000 * 86400;
/// How far the clocks may move while the test is frozen and restored.
const SLACK: i64 = 600;

fn now(clock: nix::time::ClockId) -> Result<i64> {
    let t = nix::time::clock_gettime(clock).context("clock_gettime")?;
    Ok(t.tv_sec())
}

pub fn run(t: &mut Test) -> Result<()> {
    use nix::sched::{setns, unshare, CloneFlags};
    let newtime = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    unshare(newtime).context("unshare(CLONE_NEWTIME)")?;
    std::fs::write(
        "/proc/self/timens_offsets",
        format!("monotonic {OFFSET} 0\nboottime {OFFSET} 0\n"),
    )
    .context("writing /proc/self/timens_offsets")?;
    let ns = std::fs::File::open("/proc/self/ns/time_for_children").context("open time_for_children")?;
    setns(&ns, newtime).context("setns into the new time namespace")?;
    drop(ns);
    let m0 = now(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let b0 = now(nix::time::ClockId::CLOCK_BOOTTIME)?;
    ensure!(m0 >= OFFSET && b0 >= OFFSET, "offsets not in effect: monotonic {m0}, boottime {b0}");
    t.daemon()?;
    t.wait_sig();
    let m1 = now(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let b1 = now(nix::time::ClockId::CLOCK_BOOTTIME)?;
    ensure!(m1 >= m0 && m1 - m0 < SLACK, "CLOCK_MONOTONIC was {m0}s, is {m1}s after restore");
    ensure!(b1 >= b0 && b1 - b0 < SLACK, "CLOCK_BOOTTIME was {b0}s, is {b1}s after restore");
    Ok(())
}
