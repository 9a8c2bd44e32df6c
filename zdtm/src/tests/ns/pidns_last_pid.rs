use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/pidns_last_pid",
    family: "ns",
    flavors: NS_FLAVORS,
    description: "in its own pid namespace, ns_last_pid is what it was at dump after the restore, and the next child gets the PID it would have got",
    ..Desc::DEFAULT
};

const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

fn last_pid() -> Result<i32> {
    let s = std::fs::read_to_string(LAST_PID).with_context(|| format!("read {LAST_PID}"))?;
    s.trim().parse().with_context(|| format!("{LAST_PID}: {s:?}"))
}

pub fn run(t: &mut Test) -> Result<()> {
    // Move the namespace's PIDs on a bit past those of its tasks.
    for _ in 0..5 {
        fork_child(|| Ok(()))?.wait_ok()?;
    }
    t.daemon()?;
    let before = last_pid()?;
    t.wait_sig();
    let after = last_pid()?;
    ensure!(after == before, "ns_last_pid was {before} at dump, is {after} after restore");
    let next = fork_child(|| Ok(()))?;
    next.wait_ok()?;
    ensure!(
        next.pid.as_raw() == before + 1,
        "the first child after restore got PID {}, not {} (ns_last_pid {before} + 1)",
        next.pid,
        before + 1
    );
    Ok(())
}
