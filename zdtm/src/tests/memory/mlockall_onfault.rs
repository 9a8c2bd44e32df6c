use crate::prelude::*;
use nix::sys::mman::{mlockall, MlockAllFlags};
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memory/mlockall_onfault",
    family: "memory",
    description: "mlockall(MCL_FUTURE|MCL_ONFAULT) survives: mappings made after restore are locked on fault (lo lf), a mapping made before keeps lo lf, its untouched pages stay out of memory and the written ones keep their data",
    ..Desc::DEFAULT
};

const PAGE: usize = 4096;
const PAGES: usize = 16;
const WRITTEN: usize = 5;
const MCL_ONFAULT: i32 = 4;

/// Which pages of `m` are in memory (pagemap's present bit needs no
/// privilege).
fn resident(m: &Mapping) -> Result<Vec<bool>> {
    let f = std::fs::File::open("/proc/self/pagemap").context("open /proc/self/pagemap")?;
    let mut b = vec![0u8; 8 * PAGES];
    f.read_exact_at(&mut b, (m.addr() / PAGE * 8) as u64).context("read pagemap")?;
    Ok(b.chunks_exact(8)
        .map(|e| u64::from_le_bytes(e.try_into().unwrap_or_default()) & (1 << 63) != 0)
        .collect())
}

fn check_flags(m: &Mapping, what: &str) -> Result<()> {
    let fl = smaps_vmflags(m.addr())?;
    for want in ["lo", "lf"] {
        ensure!(fl.iter().any(|f| f == want), "{what} has no {want}: {fl:?}");
    }
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let flags = MlockAllFlags::MCL_FUTURE | MlockAllFlags::from_bits_retain(MCL_ONFAULT);
    mlockall(flags).context("mlockall(MCL_FUTURE|MCL_ONFAULT)")?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut m = Mapping::anon(PAGES * PAGE, rw, libc::MAP_PRIVATE).context("mmap")?;
    check_flags(&m, "a mapping made after mlockall")?;
    pattern::fill(91, &mut m.bytes_mut()[..WRITTEN * PAGE]);
    let before = resident(&m)?;
    ensure!(
        before.iter().enumerate().all(|(i, &r)| r == (i < WRITTEN)),
        "before dump: resident pages {before:?}, want only the first {WRITTEN}"
    );
    t.daemon()?;
    t.wait_sig();
    check_flags(&m, "the mapping made before dump")?;
    let after = resident(&m)?;
    ensure!(after == before, "resident pages changed: {before:?} -> {after:?}");
    check_pattern("written pages", 91, m.range(0, WRITTEN * PAGE))?;
    let n = Mapping::anon(PAGES * PAGE, rw, libc::MAP_PRIVATE).context("mmap after restore")?;
    check_flags(&n, "a mapping made after restore (MCL_FUTURE lost)")?;
    ensure!(resident(&n)?.iter().all(|r| !r), "a new on-fault mapping was populated");
    Ok(())
}
