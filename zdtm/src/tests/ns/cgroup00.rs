use crate::cgroup;
use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/cgroup00",
    family: "ns",
    // Making a cgroup needs root over the host's cgroup filesystem.
    flavors: &[Flavor::Host, Flavor::Ns],
    flags: &[Flag::Suid],
    description: "a child moved into a cgroup made under the test's own one (cgroup v2) is back in it after restore",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mnt = cgroup::v2_mount()?;
    let mine = cgroup::v2_path("self")?;
    let rel = format!("{}/zdtm-cgroup00-{}", mine.trim_end_matches('/'), std::process::id());
    let dir = format!("{mnt}{rel}");
    std::fs::create_dir(&dir).with_context(|| format!("mkdir {dir}"))?;
    let page = SharedPage::new()?;
    let kid = {
        let (page, dir) = (&page, dir.clone());
        fork_child(move || {
            std::fs::write(format!("{dir}/cgroup.procs"), "0").with_context(|| format!("joining {dir}"))?;
            sync::set_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            Ok(())
        })?
    };
    let res = (|| {
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "the child did not join {dir}");
        t.daemon()?;
        t.wait_sig();
        let got = cgroup::v2_path(&kid.pid.to_string())?;
        ensure!(got == rel, "the child is in cgroup {got:?}, expected {rel:?}");
        let me = cgroup::v2_path("self")?;
        ensure!(me == mine, "the test is in cgroup {me:?}, expected {mine:?}");
        sync::set_and_wake(page.word(1), 1)?;
        kid.wait_ok()
    })();
    if res.is_err() {
        kid.kill();
    }
    let _ = kid.wait();
    std::fs::remove_dir(&dir).with_context(|| format!("rmdir {dir}"))?;
    res
}
