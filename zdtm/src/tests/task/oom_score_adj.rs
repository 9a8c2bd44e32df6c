use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "task/oom_score_adj",
    family: "task",
    description: "a raised /proc/PID/oom_score_adj survives",
    ..Desc::DEFAULT
};

fn get() -> Result<i32> {
    let s = std::fs::read_to_string("/proc/self/oom_score_adj").context("read oom_score_adj")?;
    s.trim().parse().with_context(|| format!("oom_score_adj {s:?}"))
}

pub fn run(t: &mut Test) -> Result<()> {
    // Raising needs no privilege; lowering below what the task was given
    // does (CAP_SYS_RESOURCE), so pick a value above the current one.
    let want = (get()? + 567).min(1000);
    std::fs::write("/proc/self/oom_score_adj", want.to_string()).context("write oom_score_adj")?;
    ensure!(get()? == want, "oom_score_adj did not take {want}");
    t.daemon()?;
    t.wait_sig();
    let got = get()?;
    ensure!(got == want, "oom_score_adj {got} after restore, expected {want}");
    Ok(())
}
