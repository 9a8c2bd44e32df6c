use crate::prelude::*;
use nix::unistd::{getpgid, getsid, Pid};

pub const DESC: Desc = Desc {
    name: "tree/pgrp_session",
    family: "tree",
    description: "a child leading its own process group and a child leading its own session keep those ids",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let me = nix::unistd::getpid();
    let check_self = |want_pgid_self: bool, want_sid_self: bool| -> Result<()> {
        let p = nix::unistd::getpid();
        let pg = getpgid(None)?;
        let sid = getsid(None)?;
        ensure!((pg == p) == want_pgid_self, "pid {p}: pgid {pg}");
        ensure!((sid == p) == want_sid_self, "pid {p}: sid {sid}");
        if !want_sid_self {
            ensure!(sid == me, "pid {p}: sid {sid}, expected {me}");
        }
        Ok(())
    };
    let group = fork_child(|| {
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
        sync::add_and_wake(page.word(0), 1)?;
        sync::wait_until(page.word(1), |v| v != 0)?;
        check_self(true, false)
    })?;
    let sess = fork_child(|| {
        nix::unistd::setsid()?;
        sync::add_and_wake(page.word(0), 1)?;
        sync::wait_until(page.word(1), |v| v != 0)?;
        check_self(true, true)
    })?;
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 2), "children did not start");
        t.daemon()?;
        t.wait_sig();
        ensure!(getpgid(Some(group.pid))? == group.pid, "group leader lost its group");
        ensure!(getsid(Some(group.pid))? == me, "group leader left our session");
        ensure!(getsid(Some(sess.pid))? == sess.pid, "session leader lost its session");
        ensure!(getpgid(None)? == me && getsid(None)? == me, "the test itself changed group or session");
        sync::set_and_wake(page.word(1), 1)?;
        group.wait_ok()?;
        sess.wait_ok()
    })();
    if res.is_err() {
        group.kill();
        sess.kill();
    }
    res
}
