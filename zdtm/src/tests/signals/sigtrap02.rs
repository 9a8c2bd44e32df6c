use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "signals/sigtrap02",
    family: "signals",
    description: "a SIGTRAP handler, a blocked SIGTRAP and a pending one are kept (criu's restore traps inside the task)",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    super::sigtrap00::handler_kept(t, true)
}
