use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/sparse",
    family: "memory",
    description: "a huge PROT_NONE reservation with a few pages made writable and touched",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mut m = None;
    for shift in [40, 36, 32, 30] {
        if let Ok(x) = Mapping::anon(1 << shift, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_NORESERVE) {
            m = Some(x);
            break;
        }
    }
    let m = m.ok_or_else(|| anyhow!("cannot reserve even 1 GiB"))?;
    let len = m.len();
    let offs: Vec<usize> = (0..8).map(|i| (len / 8) * i + (i + 1) * 4096 * 3).collect();
    for (i, &o) in offs.iter().enumerate() {
        m.protect(o, 4096, libc::PROT_READ | libc::PROT_WRITE).with_context(|| format!("mprotect {o:#x}"))?;
        let mut page = vec![0u8; 4096];
        pattern::fill(500 + i as u64, &mut page);
        sys::write_mem(m.addr() + o, &page);
    }
    t.daemon()?;
    t.wait_sig();
    ensure!(maps_perms(m.addr())? == "---p", "the reservation start lost PROT_NONE");
    for (i, &o) in offs.iter().enumerate() {
        let a = m.addr() + o;
        ensure!(maps_perms(a)? == "rw-p", "touched page {i} at {a:#x} is not rw-p");
        check_pattern(&format!("touched page {i}"), 500 + i as u64, m.range(o, 4096))?;
    }
    Ok(())
}
