use crate::cgroup;
use crate::prelude::*;

/// The restore's pre-restore action script (written by the test): it
/// removes the test's cgroups, so that the restore must make them again.
const SCRIPT: &str = "/tmp/zdtm-cgroup-props.sh";
/// Left by the script once the cgroups are gone.
const MARK: &str = "/tmp/zdtm-cgroup-props.removed";

pub const DESC: Desc = Desc {
    name: "ns/cgroup_props",
    family: "ns",
    // Making cgroups needs root over the host's hierarchies (not uns); the
    // script and its mark have fixed names.
    flavors: &[Flavor::Host, Flavor::Ns],
    // Cronly: without a restore no script removes the cgroups.
    flags: &[Flag::Suid, Flag::Excl, Flag::Cronly],
    restore_opts: &["--manage-cgroups=full", "--action-script", SCRIPT],
    description: "a child in fresh cgroups with limits set (cgroup v2 cgroup.max.descendants/max.depth on a cgroup and its sub-cgroup, v1 pids.max where a pids hierarchy is mounted); the cgroups are removed before restore, which with --manage-cgroups=full makes them again with those limits",
    ..Desc::DEFAULT
};

/// The path of `who` in the hierarchy whose /proc/PID/cgroup line has
/// controllers `ctl` (`""` for v2).
fn path_in(who: &str, ctl: &str) -> Result<Option<String>> {
    let text = cgroup::of(who)?;
    Ok(text.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (c, p) = rest.split_once(':')?;
        (c == ctl).then(|| p.to_owned())
    }))
}

/// Where the whole hierarchy of `fstype` (with `opt` among its super
/// options, for v1) is mounted.
fn mount_of(fstype: &str, opt: Option<&str>) -> Result<Option<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
    for l in text.lines() {
        let (left, right) = l.split_once(" - ").context("mountinfo line")?;
        let mut r = right.split_whitespace();
        if r.next() != Some(fstype) || left.split_whitespace().nth(3) != Some("/") {
            continue;
        }
        let sopts = r.nth(1).unwrap_or_default();
        if opt.is_none_or(|o| sopts.split(',').any(|s| s == o)) {
            return Ok(left.split_whitespace().nth(4).map(str::to_owned));
        }
    }
    Ok(None)
}

fn set(dir: &str, file: &str, v: &str) -> Result<()> {
    std::fs::write(format!("{dir}/{file}"), v).with_context(|| format!("writing {v} to {dir}/{file}"))
}

fn get(dir: &str, file: &str) -> Result<String> {
    Ok(std::fs::read_to_string(format!("{dir}/{file}"))
        .with_context(|| format!("reading {dir}/{file}"))?
        .trim_end()
        .to_owned())
}

pub fn run(t: &mut Test) -> Result<()> {
    let v2 = mount_of("cgroup2", None)?.context("no cgroup2 mount")?;
    let name = format!("zdtm-cgprops-{}", std::process::id());
    let mine = path_in("self", "")?.context("no cgroup v2 line")?;
    let top = format!("{v2}{}/{name}", mine.trim_end_matches('/'));
    let sub = format!("{top}/sub");
    // v1 pids, where mounted
    let pids = match (mount_of("cgroup", Some("pids"))?, path_in("self", "pids")?) {
        (Some(m), Some(p)) => Some(format!("{m}{}/{name}", p.trim_end_matches('/'))),
        _ => None,
    };
    let mut made: Vec<String> = Vec::new();
    let res = (|| {
        for d in [Some(&top), Some(&sub), pids.as_ref()].into_iter().flatten() {
            std::fs::create_dir(d).with_context(|| format!("mkdir {d}"))?;
            made.push(d.clone());
        }
        set(&top, "cgroup.max.descendants", "5")?;
        set(&top, "cgroup.max.depth", "3")?;
        set(&sub, "cgroup.max.depth", "1")?;
        if let Some(p) = &pids {
            set(p, "pids.max", "77")?;
        }
        let rm: Vec<String> = made.iter().rev().map(|d| format!("rmdir {d} || exit 1\n")).collect();
        let script = format!(
            "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = pre-restore ] || exit 0\n{}touch {MARK}\n",
            rm.concat()
        );
        let _ = std::fs::remove_file(MARK);
        std::fs::write(SCRIPT, script).context("writing the action script")?;
        std::fs::set_permissions(SCRIPT, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .context("chmod the action script")?;
        let page = SharedPage::new()?;
        let kid = {
            let (page, sub, pids) = (&page, sub.clone(), pids.clone());
            fork_child(move || {
                set(&sub, "cgroup.procs", "0")?;
                if let Some(p) = &pids {
                    set(p, "cgroup.procs", "0")?;
                }
                sync::set_and_wake(page.word(0), 1)?;
                sync::wait_until(page.word(1), |v| v != 0)?;
                Ok(())
            })?
        };
        let res = (|| {
            ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "the child did not join its cgroups");
            let kid_pid = kid.pid.to_string();
            let before = cgroup::of(&kid_pid)?;
            t.daemon()?;
            t.wait_sig();
            ensure!(std::path::Path::new(MARK).exists(), "the pre-restore script did not remove the cgroups");
            let now = cgroup::of(&kid_pid)?;
            ensure!(now == before, "the child was in {before:?}, is in {now:?}");
            for (dir, file, want) in [
                (&top, "cgroup.max.descendants", "5"),
                (&top, "cgroup.max.depth", "3"),
                (&sub, "cgroup.max.depth", "1"),
            ] {
                let got = get(dir, file)?;
                ensure!(got == want, "{dir}/{file} is {got:?}, was {want:?}");
            }
            if let Some(p) = &pids {
                let got = get(p, "pids.max")?;
                ensure!(got == "77", "{p}/pids.max is {got:?}, was 77");
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
    for d in made.iter().rev() {
        if let Err(e) = std::fs::remove_dir(d) {
            eprintln!("cleanup of {d}: {e}");
        }
    }
    let _ = std::fs::remove_file(SCRIPT);
    let _ = std::fs::remove_file(MARK);
    res
}
