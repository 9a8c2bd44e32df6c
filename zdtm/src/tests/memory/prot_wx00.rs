use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/prot_wx00",
    family: "memory",
    description: "write-only and exec-only pages keep their protection and their data (which criu can only read by force)",
    ..Desc::DEFAULT
};

const PROTS: &[(i32, &str)] = &[
    (libc::PROT_WRITE, "-w-p"),
    (libc::PROT_EXEC, "--xp"),
    (libc::PROT_WRITE | libc::PROT_EXEC, "-wxp"),
];

pub fn run(t: &mut Test) -> Result<()> {
    let len = PROTS.len() * 4096;
    let mut m = Mapping::anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).context("mmap")?;
    pattern::fill(11, m.bytes_mut());
    for (i, &(prot, _)) in PROTS.iter().enumerate() {
        m.protect(i * 4096, 4096, prot).with_context(|| format!("mprotect page {i}"))?;
    }
    t.daemon()?;
    t.wait_sig();
    for (i, &(_, perms)) in PROTS.iter().enumerate() {
        let a = m.addr() + i * 4096;
        let got = maps_perms(a)?;
        ensure!(got == perms, "page {i} at {a:#x} is {got}, expected {perms}");
    }
    // Only now make them readable, to compare the data.
    m.protect(0, len, libc::PROT_READ).context("mprotect for the check")?;
    pattern::check_at(11, 0, m.range(0, len)).map_err(|o| anyhow!("data differs at {o:#x}"))?;
    Ok(())
}
