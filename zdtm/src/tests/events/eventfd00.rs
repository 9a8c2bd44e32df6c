use crate::prelude::*;
use nix::sys::eventfd::{EfdFlags, EventFd};

pub const DESC: Desc = Desc {
    name: "events/eventfd00",
    family: "events",
    description: "eventfd counters (plain and semaphore) keep their value and flags",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let a = EventFd::from_value_and_flags(40, EfdFlags::EFD_NONBLOCK).context("eventfd a")?;
    a.write(2).context("write a")?;
    let s = EventFd::from_value_and_flags(3, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_SEMAPHORE).context("eventfd s")?;
    t.daemon()?;
    t.wait_sig();
    let v = a.read().context("read a")?;
    ensure!(v == 42, "eventfd a holds {v}, expected 42");
    ensure!(a.read().is_err(), "eventfd a not empty after read (or became blocking)");
    for i in 0..3 {
        let v = s.read().with_context(|| format!("semaphore read {i}"))?;
        ensure!(v == 1, "semaphore eventfd read {v}, expected 1 (flag lost?)");
    }
    ensure!(s.read().is_err(), "semaphore eventfd had more than 3");
    Ok(())
}
