use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "tree/vfork00",
    family: "tree",
    flags: &[Flag::Crfail],
    description: "a child waiting in vfork for its own child: the dump is refused and the tree goes on untouched",
    ..Desc::DEFAULT
};

const STACK: usize = 64 * 1024;

/// The vfork child: shares its parent's memory and stack-less state, so
/// it does nothing but wait to be killed.
extern "C" fn vforked(_arg: *mut libc::c_void) -> libc::c_int {
    loop {
        // SAFETY: pause takes no arguments and touches no memory.
        unsafe { libc::pause() };
    }
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = SharedPage::new()?;
    let kid = fork_child(|| {
        let mut stack = vec![0u8; STACK];
        // SAFETY: CLONE_VM|CLONE_VFORK: the child runs `vforked` on the
        // top of `stack`, which lives (untouched by us: we are suspended
        // until the child is gone) for the whole call.
        let g = unsafe {
            libc::clone(
                vforked,
                stack.as_mut_ptr().add(STACK) as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                std::ptr::null_mut(),
            )
        };
        ensure!(g > 0, "clone(CLONE_VM|CLONE_VFORK): {}", std::io::Error::last_os_error());
        // Back only once the vfork child died: tell the parent how.
        let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(g), None)?;
        ensure!(
            st == nix::sys::wait::WaitStatus::Signaled(nix::unistd::Pid::from_raw(g), nix::sys::signal::Signal::SIGKILL, false),
            "vfork child {g} ended with {st:?}"
        );
        drop(stack);
        page.word(0).store(1, Ordering::SeqCst);
        Ok(())
    })?;
    let res = (|| {
        // the grandchild, once the child is in vfork
        let grand = || -> Option<i32> {
            let t = std::fs::read_to_string(format!("/proc/{}/task/{}/children", kid.pid, kid.pid)).ok()?;
            t.split_whitespace().next()?.parse().ok()
        };
        ensure!(wait_for(5000, || grand().is_some()), "the child made no vfork child");
        let g = grand().context("vfork child")?;
        t.daemon()?;
        t.wait_sig();
        ensure!(page.word(0).load(Ordering::SeqCst) == 0, "the child left vfork before it was told to");
        let st = proc_state(kid.pid)?;
        ensure!(st == 'D', "the child is in state {st}, not waiting in vfork (D)");
        ensure!(grand() == Some(g), "the vfork child {g} is gone");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(g), nix::sys::signal::Signal::SIGKILL)?;
        kid.wait_ok()?;
        ensure!(page.word(0).load(Ordering::SeqCst) == 1, "the child did not see its vfork child die");
        Ok(())
    })();
    if res.is_err() {
        kid.kill();
    }
    res
}
