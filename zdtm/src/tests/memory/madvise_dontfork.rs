use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/madvise_dontfork",
    family: "memory",
    description: "MADV_DONTFORK and MADV_DONTDUMP flags of a mapping are kept (VmFlags dc/dd)",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let len = 4 * 4096;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut a = Mapping::anon(len, rw, libc::MAP_PRIVATE).context("mmap a")?;
    pattern::fill(41, a.bytes_mut());
    a.madvise(0, len, libc::MADV_DONTFORK).context("MADV_DONTFORK")?;
    let mut b = Mapping::anon(len, rw, libc::MAP_PRIVATE).context("mmap b")?;
    pattern::fill(42, b.bytes_mut());
    b.madvise(0, len, libc::MADV_DONTDUMP).context("MADV_DONTDUMP")?;
    for (m, flag) in [(&a, "dc"), (&b, "dd")] {
        ensure!(smaps_vmflags(m.addr())?.iter().any(|f| f == flag), "{flag} not set before dump");
    }
    t.daemon()?;
    t.wait_sig();
    for (m, flag) in [(&a, "dc"), (&b, "dd")] {
        let fl = smaps_vmflags(m.addr())?;
        ensure!(fl.iter().any(|f| f == flag), "mapping at {:#x} lost {flag}: {fl:?}", m.addr());
    }
    check_pattern("dontfork area", 41, a.bytes())?;
    check_pattern("dontdump area", 42, b.bytes())?;
    Ok(())
}
