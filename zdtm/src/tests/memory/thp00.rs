use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/thp00",
    family: "memory",
    description: "MADV_HUGEPAGE and MADV_NOHUGEPAGE areas keep VmFlags hg/nh and a 2 MiB aligned transparent huge page area keeps its data",
    ..Desc::DEFAULT
};

const HUGE: usize = 2 << 20;

/// AnonHugePages of the smaps entry that starts at `addr`, in kB.
fn anon_huge_kb(addr: usize) -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/smaps").context("read /proc/self/smaps")?;
    let mut inside = false;
    for l in s.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if let Some((a, _)) = first.split_once('-') {
            if let Ok(a) = usize::from_str_radix(a, 16) {
                inside = a == addr;
                continue;
            }
        }
        if let Some(v) = l.strip_prefix("AnonHugePages:").filter(|_| inside) {
            return v.trim().trim_end_matches("kB").trim().parse().context("AnonHugePages");
        }
    }
    bail!("no smaps entry starts at {addr:#x}")
}

fn flags_ok(addr: usize, want: &str, not: &str) -> Result<()> {
    let fl = smaps_vmflags(addr)?;
    ensure!(fl.iter().any(|f| f == want), "area at {addr:#x} has no {want}: {fl:?}");
    ensure!(!fl.iter().any(|f| f == not), "area at {addr:#x} has {not}: {fl:?}");
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // Room for two aligned huge pages with a plain page around each.
    let mut m = Mapping::anon(4 * HUGE, rw, libc::MAP_PRIVATE).context("mmap")?;
    let off = (m.addr() + HUGE).next_multiple_of(HUGE) - m.addr();
    let (hg, nh) = (off, off + HUGE + 4096);
    m.madvise(hg, HUGE, libc::MADV_HUGEPAGE).context("MADV_HUGEPAGE")?;
    m.madvise(nh, HUGE, libc::MADV_NOHUGEPAGE).context("MADV_NOHUGEPAGE")?;
    pattern::fill(97, &mut m.bytes_mut()[hg..hg + HUGE]);
    pattern::fill(98, &mut m.bytes_mut()[nh..nh + HUGE]);
    flags_ok(m.addr() + hg, "hg", "nh")?;
    flags_ok(m.addr() + nh, "nh", "hg")?;
    let thp_before = anon_huge_kb(m.addr() + hg)?;
    t.daemon()?;
    t.wait_sig();
    flags_ok(m.addr() + hg, "hg", "nh")?;
    flags_ok(m.addr() + nh, "nh", "hg")?;
    check_pattern("MADV_HUGEPAGE area", 97, m.range(hg, HUGE))?;
    check_pattern("MADV_NOHUGEPAGE area", 98, m.range(nh, HUGE))?;
    // Information only: whether the kernel backs it with a huge page is
    // its own choice (memory pressure, khugepaged).
    let thp_after = anon_huge_kb(m.addr() + hg)?;
    eprintln!("thp00: AnonHugePages of the hg area {thp_before} kB before, {thp_after} kB after");
    Ok(())
}
