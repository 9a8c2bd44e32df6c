use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/mlock00",
    family: "memory",
    description: "an mlock'ed region stays locked (VmLck, VmFlags lo) with its data",
    ..Desc::DEFAULT
};

fn vmlck_kb() -> Result<u64> {
    let v = proc_status(None, "VmLck")?;
    v.trim_end_matches("kB").trim().parse().with_context(|| format!("VmLck {v:?}"))
}

pub fn run(t: &mut Test) -> Result<()> {
    let len = 4 * 4096;
    let mut m = Mapping::anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).context("mmap")?;
    pattern::fill(51, m.bytes_mut());
    m.mlock().context("mlock")?;
    let before = vmlck_kb()?;
    ensure!(before >= 16, "VmLck only {before} kB after mlock");
    t.daemon()?;
    t.wait_sig();
    let after = vmlck_kb()?;
    ensure!(after >= 16, "VmLck is {after} kB after restore, was {before} kB");
    let fl = smaps_vmflags(m.addr())?;
    ensure!(fl.iter().any(|f| f == "lo"), "VmFlags lost lo: {fl:?}");
    check_pattern("locked area", 51, m.bytes())
}
