use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "membarrier/membarrier00",
    family: "membarrier",
    feature: Some("membarrier"),
    description: "a process registered for private expedited membarrier stays registered",
    ..Desc::DEFAULT
};

const CMD_PRIVATE_EXPEDITED: i32 = 1 << 3;
const CMD_REGISTER_PRIVATE_EXPEDITED: i32 = 1 << 4;

pub fn run(t: &mut Test) -> Result<()> {
    sys::membarrier(CMD_REGISTER_PRIVATE_EXPEDITED, 0).context("register private expedited")?;
    sys::membarrier(CMD_PRIVATE_EXPEDITED, 0).context("private expedited before dump")?;
    t.daemon()?;
    t.wait_sig();
    sys::membarrier(CMD_PRIVATE_EXPEDITED, 0)
        .context("MEMBARRIER_CMD_PRIVATE_EXPEDITED after restore (registration lost?)")?;
    Ok(())
}
