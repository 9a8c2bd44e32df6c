use crate::cgroup;
use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/cgroupns",
    family: "ns",
    // Making a cgroup needs root over the host's cgroup2 (not uns). In the
    // ns flavor the namespace is nested below the runner's init.
    flavors: &[Flavor::Host, Flavor::Ns],
    flags: &[Flag::Suid],
    description: "the root moves into a fresh cgroup (v2), unshares a cgroup namespace and forks a child into a sub-cgroup: after restore both see the same /proc/self/cgroup and share that namespace",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mnt = cgroup::v2_mount()?;
    let mine = cgroup::v2_path("self")?;
    let outer_ns = cgroup::ns("self")?;
    let rel = format!("{}/zdtm-cgroupns-{}", mine.trim_end_matches('/'), std::process::id());
    let dir = format!("{mnt}{rel}");
    let sub = format!("{dir}/sub");
    std::fs::create_dir(&dir).with_context(|| format!("mkdir {dir} (is the cgroup v2 hierarchy writable?)"))?;
    let res = (|| {
        std::fs::create_dir(&sub).with_context(|| format!("mkdir {sub}"))?;
        std::fs::write(format!("{dir}/cgroup.procs"), "0").with_context(|| format!("joining {dir}"))?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).context("unshare(CLONE_NEWCGROUP)")?;
        let inner_ns = cgroup::ns("self")?;
        ensure!(inner_ns != outer_ns, "unshare did not make a new cgroup namespace");
        ensure!(cgroup::v2_path("self")? == "/", "the root of the new cgroup namespace is not \"/\"");
        let before = cgroup::own()?;
        let page = SharedPage::new()?;
        let kid = {
            let (page, sub) = (&page, sub.clone());
            fork_child(move || {
                std::fs::write(format!("{sub}/cgroup.procs"), "0").with_context(|| format!("joining {sub}"))?;
                sync::set_and_wake(page.word(0), 1)?;
                sync::wait_until(page.word(1), |v| v != 0)?;
                ensure!(cgroup::v2_path("self")? == "/sub", "the child sees itself in {:?}, not /sub", cgroup::v2_path("self")?);
                Ok(())
            })?
        };
        let res = (|| {
            ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "the child did not join {sub}");
            let kid_pid = kid.pid.to_string();
            let kid_before = cgroup::of(&kid_pid)?;
            t.daemon()?;
            t.wait_sig();
            let now = cgroup::own()?;
            ensure!(now == before, "/proc/self/cgroup was {before:?}, is {now:?}");
            let kid_now = cgroup::of(&kid_pid)?;
            ensure!(kid_now == kid_before, "the child's cgroup file was {kid_before:?}, is {kid_now:?}");
            let (me, kid_ns) = (cgroup::ns("self")?, cgroup::ns(&kid_pid)?);
            ensure!(me == kid_ns, "the test is in {me:?}, the child in {kid_ns:?}");
            ensure!(me != outer_ns, "the test is back in the outer cgroup namespace {me:?}");
            let ppid = nix::unistd::getppid().to_string();
            if let Ok(p) = cgroup::ns(&ppid) {
                ensure!(me != p, "the test shares its cgroup namespace {me:?} with its parent");
            }
            sync::set_and_wake(page.word(1), 1)?;
            kid.wait_ok()
        })();
        if res.is_err() {
            kid.kill();
        }
        let _ = kid.wait();
        res
    })();
    // Leave the cgroups: only from a namespace that sees their parent
    // (the parent's, here), so that they can be removed.
    let back = (|| {
        let ppid = nix::unistd::getppid();
        let f = std::fs::File::open(format!("/proc/{ppid}/ns/cgroup")).context("open the parent's cgroup ns")?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWCGROUP).context("setns into the parent's cgroup ns")?;
        std::fs::write(format!("{mnt}{mine}/cgroup.procs"), "0").context("moving back")?;
        let _ = std::fs::remove_dir(&sub);
        std::fs::remove_dir(&dir).with_context(|| format!("rmdir {dir}"))
    })();
    if let Err(e) = back {
        eprintln!("cleanup of {dir}: {e:#}");
    }
    res
}
