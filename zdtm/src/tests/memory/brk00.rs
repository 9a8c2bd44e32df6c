use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/brk00",
    family: "memory",
    description: "heap grown with sbrk keeps its end and its data",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let len = 16 * 4096;
    let start = sys::sbrk(len as isize).context("sbrk")?;
    let end = sys::sbrk(0).context("sbrk(0)")?;
    ensure!(end == start + len, "break moved to {end:#x}, expected {:#x}", start + len);
    let mut data = vec![0u8; len];
    pattern::fill(11, &mut data);
    sys::write_mem(start, &data);
    t.daemon()?;
    t.wait_sig();
    let now = sys::sbrk(0).context("sbrk(0)")?;
    ensure!(now == end, "program break is {now:#x}, was {end:#x}");
    check_pattern("brk area", 11, &sys::read_mem(start, len))?;
    Ok(())
}
