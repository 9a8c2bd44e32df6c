use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/mprotect00",
    family: "memory",
    description: "one mapping split by mprotect into pieces with different protections keeps each piece",
    ..Desc::DEFAULT
};

const PROTS: &[(i32, &str)] = &[
    (libc::PROT_READ | libc::PROT_WRITE, "rw-p"),
    (libc::PROT_READ, "r--p"),
    (libc::PROT_NONE, "---p"),
    (libc::PROT_READ | libc::PROT_EXEC, "r-xp"),
    (libc::PROT_READ | libc::PROT_WRITE, "rw-p"),
    (libc::PROT_NONE, "---p"),
    (libc::PROT_READ, "r--p"),
];

pub fn run(t: &mut Test) -> Result<()> {
    let len = PROTS.len() * 4096;
    let mut m = Mapping::anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).context("mmap")?;
    pattern::fill(7, m.bytes_mut());
    for (i, &(prot, _)) in PROTS.iter().enumerate() {
        m.protect(i * 4096, 4096, prot).with_context(|| format!("mprotect page {i}"))?;
    }
    t.daemon()?;
    t.wait_sig();
    for (i, &(prot, perms)) in PROTS.iter().enumerate() {
        let a = m.addr() + i * 4096;
        let got = maps_perms(a)?;
        ensure!(got == perms, "page {i} at {a:#x} is {got}, expected {perms}");
        if prot & libc::PROT_READ != 0 {
            pattern::check_at(7, i * 4096, m.range(i * 4096, 4096))
                .map_err(|o| anyhow!("page {i}: data differs at {o:#x}"))?;
        }
    }
    Ok(())
}
