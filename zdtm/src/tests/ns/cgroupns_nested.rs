use crate::cgroup;
use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/cgroupns_nested",
    family: "ns",
    flavors: ALL_FLAVORS,
    // unshare(CLONE_NEWCGROUP) needs CAP_SYS_ADMIN (in the test's user
    // namespace for uns).
    flags: &[Flag::Suid],
    description: "two children below the root unshare a cgroup namespace each (one after moving into a fresh cgroup v2 where it may make one, with a grandchild in a sub-cgroup), a third joins the second's; after restore every task sees the same /proc/self/cgroup and the namespaces are shared and apart as before",
    ..Desc::DEFAULT
};

/// A name apart from other runs (the test is PID 3 in every ns flavor).
fn unique() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}-{}", std::process::id(), t.as_nanos())
}

/// A fresh cgroup v2 `dir` with `dir/sub`, when the test may make one
/// (not as the root of a user namespace over the host's hierarchy).
fn make_cgroups(dir: &str) -> Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS)) => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("mkdir {dir}")),
    }
    std::fs::create_dir(format!("{dir}/sub")).with_context(|| format!("mkdir {dir}/sub"))?;
    Ok(true)
}

// Shared words: 0 A ready, 1 B ready, 2 C ready, 3 checks done (children may
// verify and leave), 4 B verified, 5 B's pid (once it is in its cgroup), 6 D ready.
pub fn run(t: &mut Test) -> Result<()> {
    let me_before = cgroup::own()?;
    let outer_ns = cgroup::ns("self")?;
    let mnt = cgroup::v2_mount().ok();
    let mine = cgroup::v2_path("self")?;
    let dir = mnt
        .as_ref()
        .map(|m| format!("{m}{}/zdtm-cgns-nested-{}", mine.trim_end_matches('/'), unique()));
    let made = match &dir {
        Some(d) => make_cgroups(d)?,
        None => false,
    };
    let page = SharedPage::new()?;
    let res = (|| {
        // A: into the fresh cgroup (when made), a namespace of its own,
        // and B below it in the same namespace.
        let a = {
            let (page, dir) = (&page, dir.clone());
            fork_child(move || {
                if let (true, Some(d)) = (made, &dir) {
                    std::fs::write(format!("{d}/cgroup.procs"), "0").with_context(|| format!("joining {d}"))?;
                }
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).context("unshare(CLONE_NEWCGROUP)")?;
                ensure!(cgroup::v2_path("self")? == "/", "the root of the new cgroup namespace is not \"/\"");
                let b = fork_child(|| {
                    sync::wait_until(page.word(5), |v| v != 0)?;
                    let before = cgroup::own()?;
                    sync::set_and_wake(page.word(1), 1)?;
                    sync::wait_until(page.word(3), |v| v != 0)?;
                    let now = cgroup::own()?;
                    ensure!(now == before, "B: /proc/self/cgroup was {before:?}, is {now:?}");
                    sync::set_and_wake(page.word(4), 1)?;
                    Ok(())
                })?;
                let res = (|| {
                    if let (true, Some(d)) = (made, &dir) {
                        std::fs::write(format!("{d}/sub/cgroup.procs"), b.pid.to_string())
                            .with_context(|| format!("moving B into {d}/sub"))?;
                    }
                    sync::set_and_wake(page.word(5), b.pid.as_raw() as u32)?;
                    ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) == 1), "B did not start");
                    if made {
                        let got = cgroup::v2_path(&b.pid.to_string())?;
                        ensure!(got == "/sub", "A sees B in {got:?}, not /sub");
                    }
                    let before = cgroup::own()?;
                    let b_before = std::fs::read_to_string(format!("/proc/{}/cgroup", b.pid)).context("B's cgroup")?;
                    sync::set_and_wake(page.word(0), 1)?;
                    sync::wait_until(page.word(3), |v| v != 0)?;
                    let now = cgroup::own()?;
                    ensure!(now == before, "A: /proc/self/cgroup was {before:?}, is {now:?}");
                    let b_now = std::fs::read_to_string(format!("/proc/{}/cgroup", b.pid)).context("B's cgroup")?;
                    ensure!(b_now == b_before, "A sees B's cgroups as {b_now:?}, was {b_before:?}");
                    b.wait_ok()
                })();
                if res.is_err() {
                    b.kill();
                    let _ = b.wait();
                }
                res
            })?
        };
        // C: a namespace of its own where it stands.
        let c = {
            let page = &page;
            fork_child(move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).context("unshare(CLONE_NEWCGROUP)")?;
                let before = cgroup::own()?;
                sync::set_and_wake(page.word(2), 1)?;
                sync::wait_until(page.word(3), |v| v != 0)?;
                let now = cgroup::own()?;
                ensure!(now == before, "C: /proc/self/cgroup was {before:?}, is {now:?}");
                Ok(())
            })?
        };
        // D: a sibling of C that joins C's namespace.
        let c_ready = wait_for(5000, || page.word(2).load(Ordering::SeqCst) == 1);
        let d = {
            let (page, c_pid) = (&page, c.pid);
            fork_child(move || {
                let f = std::fs::File::open(format!("/proc/{c_pid}/ns/cgroup")).context("open C's cgroup ns")?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWCGROUP).context("setns into C's cgroup ns")?;
                drop(f);
                let before = cgroup::own()?;
                sync::set_and_wake(page.word(6), 1)?;
                sync::wait_until(page.word(3), |v| v != 0)?;
                let now = cgroup::own()?;
                ensure!(now == before, "D: /proc/self/cgroup was {before:?}, is {now:?}");
                Ok(())
            })?
        };
        let res = (|| {
            ensure!(
                c_ready
                    && wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1
                        && page.word(6).load(Ordering::SeqCst) == 1),
                "the children did not get ready"
            );
            let d_pid = d.pid.to_string();
            ensure!(cgroup::ns(&d_pid)? == cgroup::ns(&c.pid.to_string())?, "D did not join C's cgroup namespace");
            let (a_pid, c_pid) = (a.pid.to_string(), c.pid.to_string());
            let a_ns = cgroup::ns(&a_pid)?;
            let c_ns = cgroup::ns(&c_pid)?;
            ensure!(a_ns != outer_ns && c_ns != outer_ns && a_ns != c_ns, "the namespaces were not made apart");
            let b_pid = page.word(5).load(Ordering::SeqCst).to_string();
            ensure!(cgroup::ns(&b_pid)? == a_ns, "B is not in A's cgroup namespace");
            let a_cg = cgroup::of(&a_pid)?;
            t.daemon()?;
            t.wait_sig();
            let me_now = cgroup::own()?;
            ensure!(me_now == me_before, "the test's /proc/self/cgroup was {me_before:?}, is {me_now:?}");
            let outer_now = cgroup::ns("self")?;
            let (a_now, c_now) = (cgroup::ns(&a_pid)?, cgroup::ns(&c_pid)?);
            ensure!(a_now != outer_now, "A is in the test's cgroup namespace {a_now:?}");
            ensure!(c_now != outer_now, "C is in the test's cgroup namespace {c_now:?}");
            ensure!(a_now != c_now, "A and C share the cgroup namespace {a_now:?}");
            let d_now = cgroup::ns(&d_pid)?;
            ensure!(d_now == c_now, "D is in {d_now:?}, C in {c_now:?}");
            let b_now = cgroup::ns(&b_pid)?;
            ensure!(b_now == a_now, "B is in {b_now:?}, A in {a_now:?}");
            let a_cg_now = cgroup::of(&a_pid)?;
            ensure!(a_cg_now == a_cg, "the test sees A's cgroups as {a_cg_now:?}, was {a_cg:?}");
            // B's namespace is A's: asked before B may go.
            sync::set_and_wake(page.word(3), 1)?;
            a.wait_ok().context("A")?;
            c.wait_ok().context("C")?;
            d.wait_ok().context("D")?;
            ensure!(page.word(4).load(Ordering::SeqCst) == 1, "B did not verify");
            Ok(())
        })();
        if res.is_err() {
            for k in [&a, &c, &d] {
                k.kill();
                let _ = k.wait();
            }
        }
        res
    })();
    if let (true, Some(d)) = (made, &dir) {
        let _ = std::fs::remove_dir(format!("{d}/sub"));
        if let Err(e) = std::fs::remove_dir(d) {
            eprintln!("cleanup of {d}: {e}");
        }
    }
    res
}
