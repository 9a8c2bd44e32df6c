use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/pidns_nested",
    family: "ns",
    flags: &[Flag::Suid, Flag::Crfail],
    description: "a grandchild that is init of a pid namespace nested in the tree's: the dump is refused (upstream's images keep one pid per task) and the tree goes on",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let kid = {
        let page = &page;
        fork_child(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).context("unshare(CLONE_NEWPID)")?;
            let init = fork_child(move || {
                let me = nix::unistd::getpid().as_raw();
                ensure!(me == 1, "the first child of a new pid namespace is {me}, not 1");
                sync::set_and_wake(page.word(0), 1)?;
                sync::wait_until(page.word(1), |v| v != 0)?;
                let me = nix::unistd::getpid().as_raw();
                ensure!(me == 1, "the nested init became {me}");
                Ok(())
            })?;
            init.wait_ok()
        })?
    };
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "the nested init did not start");
        t.daemon()?;
        t.wait_sig();
        sync::set_and_wake(page.word(1), 1)?;
        kid.wait_ok()
    })();
    if res.is_err() {
        let _ = sync::set_and_wake(page.word(1), 1);
        kid.kill();
    }
    res
}
