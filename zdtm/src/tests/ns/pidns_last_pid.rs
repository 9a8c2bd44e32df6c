use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/pidns_last_pid",
    family: "ns",
    flags: &[Flag::Suid],
    description: "ns_last_pid is what it was at dump after the restore, and the next child gets the PID it would have got: in a pid namespace the test makes, and in the test's own when the runner made one for it (ns, uns)",
    ..Desc::DEFAULT
};

const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// ns_last_pid of the caller's pid namespace.
fn last_pid() -> Result<i32> {
    let s = std::fs::read_to_string(LAST_PID).with_context(|| format!("read {LAST_PID}"))?;
    s.trim().parse().with_context(|| format!("{LAST_PID}: {s:?}"))
}

/// In a pid namespace where only the caller makes tasks: moves its PIDs
/// on past those in use, then returns what ns_last_pid then is.
fn advance() -> Result<i32> {
    for _ in 0..5 {
        fork_child(|| Ok(()))?.wait_ok()?;
    }
    last_pid()
}

/// After the restore: ns_last_pid is still `before`, and the next child
/// gets `before + 1` (`whose`: which namespace, for the messages).
fn check(before: i32, whose: &str) -> Result<()> {
    let after = last_pid()?;
    ensure!(after == before, "{whose}: ns_last_pid was {before} at dump, is {after} after restore");
    let next = fork_child(|| Ok(()))?;
    next.wait_ok()?;
    ensure!(
        next.pid.as_raw() == before + 1,
        "{whose}: the first child after restore got PID {}, not {} (ns_last_pid {before} + 1)",
        next.pid,
        before + 1
    );
    Ok(())
}

/// Is the test in a pid namespace the runner made for it (its init is the
/// runner's), where nothing else makes tasks?
fn own_namespace() -> bool {
    std::fs::read("/proc/1/cmdline").is_ok_and(|c| c.windows(9).any(|w| w == b"__ns-init"))
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    // The init of a pid namespace of the test's own making.
    let init = {
        let page = &page;
        fork_child(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
            let init = fork_child(move || {
                let before = advance()?;
                sync::set_and_wake(page.word(0), 1)?;
                sync::wait_until(page.word(1), |v| v != 0)?;
                check(before, "the test's nested pid namespace")
            })?;
            init.wait_ok()
        })?
    };
    let own = own_namespace();
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "the nested init did not start");
        if own {
            advance()?;
        }
        t.daemon()?;
        // (after the daemon's fork)
        let before = if own { Some(last_pid()?) } else { None };
        t.wait_sig();
        // Before the nested namespace goes on: the tasks it makes take
        // PIDs in the test's namespace too.
        if let Some(b) = before {
            check(b, "the test's pid namespace")?;
        }
        sync::set_and_wake(page.word(1), 1)?;
        init.wait_ok()
    })();
    if res.is_err() {
        let _ = sync::set_and_wake(page.word(1), 1);
        init.kill();
    }
    res
}
