use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/hugetlb00",
    family: "memory",
    description: "MAP_HUGETLB private and shared anonymous mappings keep their huge pages (VmFlags ht) and data",
    // Reserves huge pages for itself through /proc/sys/vm/nr_hugepages
    // when none are free: root outside a user namespace.
    flavors: &[Flavor::Host, Flavor::Ns],
    // Alone: hugetlb tests share the host's pool of huge pages (nr_hugepages).
    flags: &[Flag::Suid, Flag::Excl],
    feature: Some("hugetlb"),
    ..Desc::DEFAULT
};

const HUGE: usize = 2 << 20;
const NR: &str = "/proc/sys/vm/nr_hugepages";

pub fn meminfo(key: &str) -> Result<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").context("read /proc/meminfo")?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/meminfo"))
}

/// Huge pages this test added to the pool, given back on drop.
pub struct Reserved {
    old: Option<u64>,
}

impl Reserved {
    pub fn make(want: u64) -> Result<Reserved> {
        let free = meminfo("HugePages_Free:")?;
        if free >= want {
            return Ok(Reserved { old: None });
        }
        let nr: u64 = std::fs::read_to_string(NR)
            .with_context(|| format!("read {NR}"))?
            .trim()
            .parse()
            .with_context(|| format!("parse {NR}"))?;
        let r = Reserved { old: Some(nr) };
        std::fs::write(NR, format!("{}", nr + want - free)).with_context(|| format!("write {NR}"))?;
        let now = meminfo("HugePages_Free:")?;
        ensure!(now >= want, "only {now} huge pages free after raising {NR} (memory too fragmented?)");
        Ok(r)
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some(old) = self.old {
            let _ = std::fs::write(NR, format!("{old}"));
        }
    }
}

fn check(m: &Mapping, perms: &str, seed: u64, when: &str) -> Result<()> {
    let fl = smaps_vmflags(m.addr())?;
    ensure!(fl.iter().any(|f| f == "ht"), "{when}: {perms} area has no ht: {fl:?}");
    let p = maps_perms(m.addr())?;
    ensure!(p == perms, "{when}: area at {:#x} is {p}, was {perms}", m.addr());
    check_pattern(&format!("{when}: {perms} huge page"), seed, m.bytes())
}

pub fn run(t: &mut Test) -> Result<()> {
    ensure!(meminfo("Hugepagesize:")? * 1024 == HUGE as u64, "the default huge page is not 2 MiB");
    let _pool = Reserved::make(2)?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let huge = libc::MAP_HUGETLB;
    let mut private = Mapping::anon(HUGE, rw, libc::MAP_PRIVATE | huge).context("mmap private")?;
    let mut shared = Mapping::anon(HUGE, rw, libc::MAP_SHARED | huge).context("mmap shared")?;
    pattern::fill(101, private.bytes_mut());
    pattern::fill(102, shared.bytes_mut());
    check(&private, "rw-p", 101, "before dump")?;
    check(&shared, "rw-s", 102, "before dump")?;
    t.daemon()?;
    t.wait_sig();
    check(&private, "rw-p", 101, "after restore")?;
    check(&shared, "rw-s", 102, "after restore")?;
    Ok(())
}
