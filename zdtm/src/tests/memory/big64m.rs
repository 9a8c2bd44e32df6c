use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/big64m",
    family: "memory",
    timeout: 120,
    description: "64 MiB of anonymous memory with a pseudo-random pattern",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mib: usize = t.opt("mib").unwrap_or("64").parse().context("--mib")?;
    let mut m = Mapping::anon(mib << 20, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).context("mmap")?;
    pattern::fill(64, m.bytes_mut());
    t.daemon()?;
    t.wait_sig();
    check_pattern("64m area", 64, m.bytes())
}
