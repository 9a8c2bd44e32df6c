use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "tree/children",
    family: "tree",
    description: "a parent with 3 children: pids and parent links are kept, children check themselves",
    ..Desc::DEFAULT
};

fn ppid_of(pid: i32) -> Result<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("stat of {pid}"))?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace().nth(1).unwrap_or("").parse().with_context(|| format!("ppid of {pid}"))
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let me = std::process::id() as i32;
    let mut kids = Vec::new();
    for i in 0..3 {
        let page = &page;
        kids.push(fork_child(move || {
            let pid = nix::unistd::getpid().as_raw();
            page.word(10 + i).store(pid as u32, Ordering::SeqCst);
            sync::add_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            ensure!(nix::unistd::getpid().as_raw() == pid, "child {i}: pid changed from {pid}");
            let pp = nix::unistd::getppid().as_raw();
            ensure!(pp == me, "child {i}: parent is {pp}, expected {me}");
            Ok(())
        })?);
    }
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 3), "children did not start");
        t.daemon()?;
        t.wait_sig();
        for (i, k) in kids.iter().enumerate() {
            ensure!(page.word(10 + i).load(Ordering::SeqCst) as i32 == k.pid.as_raw(), "child {i} pid mismatch");
            let pp = ppid_of(k.pid.as_raw())?;
            ensure!(pp == me, "child {} has parent {pp}, expected {me}", k.pid);
        }
        sync::set_and_wake(page.word(1), 1)?;
        for k in &kids {
            k.wait_ok()?;
        }
        Ok(())
    })();
    if res.is_err() {
        kids.iter().for_each(|k| k.kill());
    }
    res
}
