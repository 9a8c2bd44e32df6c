use crate::prelude::*;
use std::io::Write;
use std::os::fd::AsFd;

pub const DESC: Desc = Desc {
    name: "memory/maps00",
    family: "memory",
    description: "anon private, anon shared, file private (COW) and shared, read-only and PROT_NONE mappings keep data and protections",
    ..Desc::DEFAULT
};

const PAGES: usize = 8;
const LEN: usize = PAGES * 4096;
const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("maps00.file");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let mut content = vec![0u8; LEN];
    pattern::fill(100, &mut content);
    file.write_all(&content).context("write the mapped file")?;

    let mut anon = Mapping::anon(LEN, RW, libc::MAP_PRIVATE).context("mmap anon private")?;
    pattern::fill(1, anon.bytes_mut());
    let mut shared = Mapping::anon(LEN, RW, libc::MAP_SHARED).context("mmap anon shared")?;
    pattern::fill(2, shared.bytes_mut());
    let mut ro = Mapping::anon(LEN, RW, libc::MAP_PRIVATE).context("mmap anon ro")?;
    pattern::fill(3, ro.bytes_mut());
    ro.protect(0, LEN, libc::PROT_READ).context("mprotect ro")?;
    let none = Mapping::anon(LEN, libc::PROT_NONE, libc::MAP_PRIVATE).context("mmap PROT_NONE")?;
    let mut fpriv = Mapping::file(file.as_fd(), LEN, RW, libc::MAP_PRIVATE, 0).context("mmap file private")?;
    // dirty every other page: those are COW copies, the rest still the file's
    for p in (0..PAGES).step_by(2) {
        pattern::fill_at(4, p * 4096, &mut fpriv.bytes_mut()[p * 4096..(p + 1) * 4096]);
    }
    let fshared = Mapping::file(file.as_fd(), LEN, libc::PROT_READ, libc::MAP_SHARED, 0).context("mmap file shared")?;

    let want = [
        (anon.addr(), "rw-p"),
        (shared.addr(), "rw-s"),
        (ro.addr(), "r--p"),
        (none.addr(), "---p"),
        (fpriv.addr(), "rw-p"),
        (fshared.addr(), "r--s"),
    ];
    t.daemon()?;
    t.wait_sig();

    for (addr, perms) in want {
        let got = maps_perms(addr)?;
        ensure!(got == perms, "mapping at {addr:#x} has perms {got}, expected {perms}");
    }
    check_pattern("anon private", 1, anon.bytes())?;
    check_pattern("anon shared", 2, shared.bytes())?;
    check_pattern("read-only anon", 3, ro.bytes())?;
    for p in 0..PAGES {
        let page = fpriv.range(p * 4096, 4096);
        let seed = if p % 2 == 0 { 4 } else { 100 };
        pattern::check_at(seed, p * 4096, page)
            .map_err(|o| anyhow!("file private page {p}: differs at {:#x}", p * 4096 + o))?;
    }
    check_pattern("file shared", 100, fshared.bytes())?;
    Ok(())
}
