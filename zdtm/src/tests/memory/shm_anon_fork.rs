use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "memory/shm_anon_fork",
    family: "memory",
    description: "MAP_SHARED anonymous memory stays shared with a child: writes after restore are seen by both",
    ..Desc::DEFAULT
};

const LEN: usize = 16 * 4096;

pub fn run(t: &mut Test) -> Result<()> {
    let mut m = Mapping::anon(LEN, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED).context("mmap")?;
    let w = TaskWaiter::new()?;
    let base = m.addr();
    let child = fork_child(|| {
        let mut page = vec![0u8; LEN];
        pattern::fill(21, &mut page);
        sys::write_mem(base, &page);
        w.complete(1)?;
        w.wait(2)?;
        check_pattern("child: shared area after restore", 21, &sys::read_mem(base, LEN))?;
        pattern::fill(22, &mut page);
        sys::write_mem(base, &page);
        w.complete(3)?;
        Ok(())
    })?;
    w.wait(1)?;
    check_pattern("parent: data the child wrote", 21, m.bytes())?;
    t.daemon()?;
    t.wait_sig();
    let res = (|| {
        check_pattern("parent: shared area after restore", 21, m.bytes())?;
        w.complete(2)?;
        ensure!(wait_for(10_000, || w.step() >= 3 || child.is_zombie_or_gone()), "child did not answer");
        child.wait_ok()?;
        check_pattern("parent: what the child wrote after restore", 22, m.bytes())?;
        pattern::fill(23, m.bytes_mut());
        Ok(())
    })();
    if res.is_err() {
        child.kill();
    }
    res
}
