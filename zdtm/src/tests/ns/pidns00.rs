use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/pidns00",
    family: "ns",
    flavors: NS_FLAVORS,
    description: "in its own pid namespace the test keeps its pid, its parent (the namespace's init) and a /proc of that namespace; the loopback keeps its state",
    ..Desc::DEFAULT
};

fn state() -> Result<(i32, i32, String, String)> {
    let pid = nix::unistd::getpid().as_raw();
    let ppid = nix::unistd::getppid().as_raw();
    let init = std::fs::read_to_string("/proc/1/cmdline").context("read /proc/1/cmdline")?;
    let lo = std::fs::read_to_string("/sys/class/net/lo/operstate").unwrap_or_default();
    let lo_flags = std::fs::read_to_string("/proc/self/net/dev").context("read /proc/self/net/dev")?;
    let devs: Vec<&str> = lo_flags.lines().skip(2).filter_map(|l| Some(l.split_once(':')?.0.trim())).collect();
    Ok((pid, ppid, init.replace('\0', " "), format!("{lo}{devs:?}")))
}

pub fn run(t: &mut Test) -> Result<()> {
    t.daemon()?;
    // The daemon's first parent exits once it is ready: compare the rest.
    let mut before = state()?;
    t.wait_sig();
    let after = state()?;
    ensure!(after.1 == 1, "the test's parent is {}, not the namespace's init", after.1);
    before.1 = after.1;
    ensure!(after == before, "pid, init's command line and devices were {before:?}, now {after:?}");
    Ok(())
}
