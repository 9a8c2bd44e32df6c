use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/pidns_nested",
    family: "ns",
    flags: &[Flag::Suid],
    description: "a pid namespace nested in the tree's, made by unshare + fork: its init (PID 1 there), a two-thread grandchild leading a process group, its child in that group, a zombie and a second child of the unsharer born inside keep their PIDs, TIDs, parents and groups; the init still reaps, and the unsharer's next child is still born inside",
    ..Desc::DEFAULT
};

// Words of the shared page.
const INIT_UP: usize = 0;
const GRANDCHILD_UP: usize = 1;
const GO: usize = 2;
const GRANDCHILD_PID: usize = 3;
const THREAD_TID: usize = 4;
const THREAD_GO: usize = 5;
const THREAD_TID_AFTER: usize = 6;
const MEMBER_UP: usize = 7;
const SIBLING_UP: usize = 8;
/// The unsharer's other children in the namespace are done: its init may
/// go (all of the namespace dies with it).
const OTHERS_DONE: usize = 9;
const MEMBER_PID: usize = 10;
const ZOMBIE_PID: usize = 11;
const SIBLING_PID: usize = 12;
/// The PIDs given out in the nested namespace before the dump.
const NESTED_PIDS: [usize; 5] = [GRANDCHILD_PID, MEMBER_PID, THREAD_TID, ZOMBIE_PID, SIBLING_PID];

/// The `NSpid` levels of a task, as /proc/PID/status shows them.
fn ns_pids(pid: nix::unistd::Pid) -> Result<Vec<i32>> {
    let p = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&p).with_context(|| format!("read {p}"))?;
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .with_context(|| format!("no NSpid in {p}"))?;
    line.split_whitespace()
        .map(|v| v.parse().with_context(|| format!("NSpid {line:?} of {p}")))
        .collect()
}

fn pid_ns(path: &str) -> Result<std::path::PathBuf> {
    std::fs::read_link(path).with_context(|| format!("readlink {path}"))
}

/// The grandchild, PID 2 of the nested namespace: a second thread that
/// must keep its TID; both check themselves after the restore.
fn grandchild(page: &SharedPage) -> Result<()> {
    let me = nix::unistd::getpid().as_raw();
    ensure!(nix::unistd::getppid().as_raw() == 1, "the grandchild's parent is not the nested init");
    nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0)).context("setpgid(0, 0)")?;
    // A member of its group, born before the group was remade.
    let member = fork_child(|| {
        sync::set_and_wake(page.word(MEMBER_UP), 1)?;
        sync::wait_until(page.word(GO), |v| v != 0)?;
        let pgid = nix::unistd::getpgid(None).context("getpgid")?.as_raw();
        ensure!(pgid == me, "the member's process group is {pgid}, not its parent's {me}");
        ensure!(nix::unistd::getppid().as_raw() == me, "the member's parent is no longer {me}");
        Ok(())
    })?;
    page.word(MEMBER_PID).store(member.pid.as_raw() as u32, Ordering::SeqCst);
    std::thread::scope(|s| -> Result<()> {
        let th = s.spawn(|| -> Result<()> {
            sync::set_and_wake(page.word(THREAD_TID), nix::unistd::gettid().as_raw() as u32)?;
            sync::wait_until(page.word(THREAD_GO), |v| v != 0)?;
            sync::set_and_wake(page.word(THREAD_TID_AFTER), nix::unistd::gettid().as_raw() as u32)?;
            Ok(())
        });
        sync::set_and_wake(page.word(GRANDCHILD_UP), 1)?;
        sync::wait_until(page.word(GO), |v| v != 0)?;
        let after = nix::unistd::getpid().as_raw();
        ensure!(after == me, "the grandchild was PID {me} of the nested namespace, is {after} after restore");
        ensure!(nix::unistd::getppid().as_raw() == 1, "the grandchild's parent is no longer the nested init");
        sync::set_and_wake(page.word(THREAD_GO), 1)?;
        th.join().map_err(|_| anyhow!("the grandchild's thread panicked"))?
    })?;
    let (tid, after) = (page.word(THREAD_TID).load(Ordering::SeqCst), page.word(THREAD_TID_AFTER).load(Ordering::SeqCst));
    ensure!(tid == after, "the grandchild's thread was TID {tid}, is {after} after restore");
    member.wait_ok().context("the member of the grandchild's group")
}

/// The init of the nested namespace: PID 1 there, parent of the grandchild.
fn nested_init(page: &SharedPage) -> Result<()> {
    let me = nix::unistd::getpid().as_raw();
    ensure!(me == 1, "the first child of a new pid namespace is {me}, not 1");
    let gc = fork_child(|| grandchild(page))?;
    page.word(GRANDCHILD_PID).store(gc.pid.as_raw() as u32, Ordering::SeqCst);
    // A zombie of the nested namespace, reaped only after the restore.
    let zombie = fork_child(|| sys::exit_now(7))?;
    page.word(ZOMBIE_PID).store(zombie.pid.as_raw() as u32, Ordering::SeqCst);
    // /proc is the outer namespace's: wait for the death without reaping.
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(zombie.pid),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    )
    .context("waitid of the nested zombie")?;
    sync::set_and_wake(page.word(INIT_UP), 1)?;
    sync::wait_until(page.word(GO), |v| v != 0)?;
    let me = nix::unistd::getpid().as_raw();
    ensure!(me == 1, "the nested init became {me}");
    match zombie.wait()? {
        nix::sys::wait::WaitStatus::Exited(_, 7) => {}
        other => bail!("the nested zombie {} was reaped as {other:?}, not as exited with 7", zombie.pid),
    }
    // Only the real parent can reap it, by its PID in this namespace.
    gc.wait_ok().context("the nested init reaping its child")?;
    sync::wait_until(page.word(OTHERS_DONE), |v| v != 0)?;
    Ok(())
}

/// The unsharer: it made the nested namespace by unshare + fork, so the
/// children it makes are born there too, also after the restore.
fn unsharer(page: &SharedPage) -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
    let init = fork_child(|| nested_init(page))?;
    let before = ns_pids(init.pid)?;
    sync::wait_until(page.word(INIT_UP), |v| v != 0)?;
    // Born into the nested namespace, not as its init: its parent is
    // outside, so it sees none.
    let sibling = fork_child(|| {
        let me = nix::unistd::getpid().as_raw();
        ensure!(me > 1, "the unsharer's second child is PID {me} of the nested namespace");
        page.word(SIBLING_PID).store(me as u32, Ordering::SeqCst);
        sync::set_and_wake(page.word(SIBLING_UP), 1)?;
        sync::wait_until(page.word(GO), |v| v != 0)?;
        let after = nix::unistd::getpid().as_raw();
        ensure!(after == me, "the unsharer's second child was PID {me} of the nested namespace, is {after}");
        let ppid = nix::unistd::getppid().as_raw();
        ensure!(ppid == 0, "the unsharer's second child sees its parent as {ppid}, not as 0 (outside its namespace)");
        Ok(())
    })?;
    let sibling_before = ns_pids(sibling.pid)?;
    sync::wait_until(page.word(GRANDCHILD_UP), |v| v != 0)?;
    sync::wait_until(page.word(GO), |v| v != 0)?;
    // The checks in one go: whatever comes of them, the init may then go.
    let res = (|| -> Result<()> {
        let sibling_after = ns_pids(sibling.pid)?;
        ensure!(sibling_before == sibling_after, "the second child's NSpid was {sibling_before:?}, is {sibling_after:?}");
        sibling.wait_ok().context("the unsharer's second child")?;
        let after = ns_pids(init.pid)?;
        ensure!(before == after, "the nested init's NSpid was {before:?}, is {after:?}");
        // A restored namespace is another one: compare after the restore.
        let inside = pid_ns(&format!("/proc/{}/ns/pid", init.pid))?;
        let children = pid_ns("/proc/self/ns/pid_for_children")?;
        ensure!(children == inside, "the unsharer's children are now born in {children:?}, not in the nested {inside:?}");
        let own = pid_ns("/proc/self/ns/pid")?;
        ensure!(own != inside, "the unsharer itself moved into the nested pid namespace");
        let late = fork_child(|| Ok(()))?;
        let levels = ns_pids(late.pid)?;
        ensure!(levels.len() == before.len(), "a child made after restore has NSpid {levels:?}, not as deep as the nested init's {before:?}");
        // The nested namespace's ns_last_pid is what it was.
        let last = NESTED_PIDS.iter().map(|&w| page.word(w).load(Ordering::SeqCst) as i32).max().unwrap_or(0);
        let got = levels.last().copied().unwrap_or(0);
        ensure!(got == last + 1, "the first child born in the nested namespace after restore is PID {got} there, not {} (the last given out before the dump + 1)", last + 1);
        late.wait_ok().context("the child born after restore")
    })();
    sync::set_and_wake(page.word(OTHERS_DONE), 1)?;
    res?;
    init.wait_ok().context("the nested init")
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let kid = fork_child(|| unsharer(&page))?;
    let res = (|| {
        ensure!(
            wait_for(5000, || [GRANDCHILD_UP, THREAD_TID, MEMBER_UP, SIBLING_UP].iter().all(|&w| page.word(w).load(Ordering::SeqCst) != 0)),
            "the nested namespace did not come up"
        );
        t.daemon()?;
        t.wait_sig();
        sync::set_and_wake(page.word(GO), 1)?;
        kid.wait_ok()
    })();
    if res.is_err() {
        let _ = sync::set_and_wake(page.word(GO), 1);
        let _ = sync::set_and_wake(page.word(THREAD_GO), 1);
        kid.kill();
    }
    res
}
