use crate::prelude::*;
use nix::sys::mman::{mlockall, MlockAllFlags};

pub const DESC: Desc = Desc {
    name: "memory/mlockall00",
    family: "memory",
    description: "mlockall(MCL_CURRENT|MCL_FUTURE) survives: every mapping stays locked with its data and one made after restore is locked and in memory",
    // Locking the whole test is more than RLIMIT_MEMLOCK allows without
    // CAP_IPC_LOCK: root, and not in a user namespace.
    flavors: &[Flavor::Host, Flavor::Ns],
    flags: &[Flag::Suid],
    ..Desc::DEFAULT
};

const SPECIAL: &[&str] = &["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"];

/// Start addresses of the mappings without VmFlags lo.
fn unlocked() -> Result<Vec<String>> {
    let s = std::fs::read_to_string("/proc/self/smaps").context("read /proc/self/smaps")?;
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in s.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            cur = l.to_string();
            continue;
        }
        if let Some(f) = l.strip_prefix("VmFlags:") {
            let special = SPECIAL.iter().any(|s| cur.ends_with(s));
            if !special && !f.split_whitespace().any(|x| x == "lo") {
                out.push(cur.clone());
            }
        }
    }
    Ok(out)
}

fn vmlck_kb() -> Result<u64> {
    let v = proc_status(None, "VmLck")?;
    v.trim_end_matches("kB").trim().parse().with_context(|| format!("VmLck {v:?}"))
}

pub fn run(t: &mut Test) -> Result<()> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut m = Mapping::anon(8 * 4096, rw, libc::MAP_PRIVATE).context("mmap")?;
    pattern::fill(93, m.bytes_mut());
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        .context("mlockall(MCL_CURRENT|MCL_FUTURE)")?;
    let u = unlocked()?;
    ensure!(u.is_empty(), "before dump, not locked: {u:?}");
    t.daemon()?;
    t.wait_sig();
    let u = unlocked()?;
    ensure!(u.is_empty(), "after restore, not locked: {u:?}");
    check_pattern("locked area", 93, m.bytes())?;
    let before = vmlck_kb()?;
    let n = Mapping::anon(64 * 4096, rw, libc::MAP_PRIVATE).context("mmap after restore")?;
    ensure!(
        smaps_vmflags(n.addr())?.iter().any(|f| f == "lo"),
        "a mapping made after restore is not locked (MCL_FUTURE lost)"
    );
    let grown = vmlck_kb()?.saturating_sub(before);
    ensure!(grown >= 256, "VmLck grew by {grown} kB for a new 256 kB mapping");
    Ok(())
}
