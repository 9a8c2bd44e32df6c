use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "tree/tree500",
    family: "tree",
    timeout: 600,
    description: "a tree of 500 processes (a chain 100 deep, 4 more children on each link): every one keeps its pid and parent",
    ..Desc::DEFAULT
};

const N: usize = 500;
const CHAIN: usize = 100;
/// Words of the shared page: 0 counts the started processes, 1 says
/// "check now", 2.. hold each node's pid.
const PIDS: usize = 2;

/// The node that forks node `i` (> 0).
fn parent(i: usize) -> usize {
    if i < CHAIN {
        i - 1
    } else {
        (i - CHAIN) % CHAIN
    }
}

/// Node `i`: records its pid, forks its own children, waits for the word
/// that says "check", checks its pid and parent, and reaps its children.
/// Its exit status is 0 only when all went well below it too.
fn node(page: &SharedPage, i: usize) -> Result<()> {
    let me = nix::unistd::getpid().as_raw();
    page.word(PIDS + i).store(me as u32, Ordering::SeqCst);
    let mut kids = Vec::new();
    for j in (1..N).filter(|&j| parent(j) == i) {
        kids.push(fork_child(move || node(page, j)).with_context(|| format!("node {i}: forking node {j}"))?);
    }
    sync::add_and_wake(page.word(0), 1)?;
    sync::wait_until(page.word(1), |v| v != 0)?;
    let mut errs = Vec::new();
    let now = nix::unistd::getpid().as_raw();
    if now != me {
        errs.push(format!("node {i}: pid {now}, was {me}"));
    }
    if i > 0 {
        let want = page.word(PIDS + parent(i)).load(Ordering::SeqCst) as i32;
        let pp = nix::unistd::getppid().as_raw();
        if pp != want {
            errs.push(format!("node {i} (pid {me}): parent {pp}, expected {want}"));
        }
    }
    for k in &kids {
        if let Err(e) = k.wait_ok() {
            errs.push(format!("node {i}: {e:#}"));
        }
    }
    ensure!(errs.is_empty(), "{}", errs.join("; "));
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let me = nix::unistd::getpid().as_raw();
    page.word(PIDS).store(me as u32, Ordering::SeqCst);
    let mut kids = Vec::new();
    for j in (1..N).filter(|&j| parent(j) == 0) {
        let page = &page;
        kids.push(fork_child(move || node(page, j))?);
    }
    let res = (|| {
        let started = wait_for(60_000, || page.word(0).load(Ordering::SeqCst) as usize == N - 1);
        ensure!(started, "only {} of {} processes started", page.word(0).load(Ordering::SeqCst), N - 1);
        t.daemon()?;
        t.wait_sig();
        sync::set_and_wake(page.word(1), 1)?;
        for k in &kids {
            k.wait_ok()?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = sync::set_and_wake(page.word(1), 1);
        kids.iter().for_each(|k| k.kill());
    }
    res
}
