use crate::prelude::*;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;

pub const DESC: Desc = Desc {
    name: "memory/guard_region",
    family: "memory",
    description: "MADV_GUARD_INSTALL guard pages still fault after restore (EFAULT, pagemap bit 58) and the pages around them keep their data",
    feature: Some("guard_regions"),
    ..Desc::DEFAULT
};

const MADV_GUARD_INSTALL: i32 = 102;
const PM_GUARD_REGION: u64 = 1 << 58;
const PAGE: usize = 4096;
const PAGES: usize = 16;
/// Guarded pages: a single one inside written data, a pair, one at the
/// edge and one over never-touched memory.
const GUARDS: &[usize] = &[0, 3, 8, 9, 13];
const UNTOUCHED: usize = 13;

/// Whether reading the page at `addr` through process_vm_readv on
/// ourselves fails with EFAULT (a guard page does; no signal is taken).
fn faults(addr: usize) -> Result<bool> {
    let mut b = [0u8; 16];
    let remote = [RemoteIoVec { base: addr, len: b.len() }];
    match process_vm_readv(nix::unistd::getpid(), &mut [IoSliceMut::new(&mut b)], &remote) {
        Ok(_) => Ok(false),
        Err(nix::errno::Errno::EFAULT) => Ok(true),
        Err(e) => bail!("process_vm_readv of {addr:#x}: {e}"),
    }
}

fn pagemap_guard(addr: usize) -> Result<bool> {
    let f = std::fs::File::open("/proc/self/pagemap").context("open /proc/self/pagemap")?;
    let mut e = [0u8; 8];
    f.read_exact_at(&mut e, (addr / PAGE * 8) as u64).context("read pagemap")?;
    Ok(u64::from_le_bytes(e) & PM_GUARD_REGION != 0)
}

fn check(m: &Mapping, when: &str) -> Result<()> {
    for p in 0..PAGES {
        let addr = m.addr() + p * PAGE;
        let guard = GUARDS.contains(&p);
        ensure!(faults(addr)? == guard, "{when}: page {p} faults={} but guard={guard}", !guard);
        ensure!(pagemap_guard(addr)? == guard, "{when}: page {p} pagemap guard bit is {}", !guard);
        if !guard && p != UNTOUCHED {
            check_pattern(&format!("{when}: page {p}"), 70 + p as u64, m.range(p * PAGE, PAGE))?;
        }
    }
    Ok(())
}

fn check_locked(l: &Mapping, when: &str) -> Result<()> {
    let fl = smaps_vmflags(l.addr())?;
    ensure!(fl.iter().any(|f| f == "lo"), "{when}: locked area has no lo: {fl:?}");
    for p in 0..4 {
        let guard = p == 1;
        ensure!(faults(l.addr() + p * PAGE)? == guard, "{when}: locked area page {p} faults={}", !guard);
        if !guard {
            pattern::check_at(69, p * PAGE, l.range(p * PAGE, PAGE))
                .map_err(|off| anyhow!("{when}: locked page {p} differs at {off:#x}"))?;
        }
    }
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut m = Mapping::anon(PAGES * PAGE, rw, libc::MAP_PRIVATE).context("mmap")?;
    for p in 0..PAGES {
        if p != UNTOUCHED {
            pattern::fill(70 + p as u64, &mut m.bytes_mut()[p * PAGE..(p + 1) * PAGE]);
        }
    }
    for &g in GUARDS {
        m.madvise(g * PAGE, PAGE, MADV_GUARD_INSTALL)
            .with_context(|| format!("MADV_GUARD_INSTALL on page {g}"))?;
    }
    // A guard page in an area locked afterwards: mlock cannot populate it
    // and says so (ENOMEM), but locks the area all the same.
    let mut l = Mapping::anon(4 * PAGE, rw, libc::MAP_PRIVATE).context("mmap locked")?;
    pattern::fill(69, l.bytes_mut());
    l.madvise(PAGE, PAGE, MADV_GUARD_INSTALL).context("MADV_GUARD_INSTALL in the locked area")?;
    let _ = l.mlock();
    check(&m, "before dump")?;
    check_locked(&l, "before dump")?;
    t.daemon()?;
    t.wait_sig();
    check(&m, "after restore")?;
    check_locked(&l, "after restore")?;
    ensure!(maps_perms(m.addr())? == "rw-p", "mapping changed: {}", maps_perms(m.addr())?);
    Ok(())
}
