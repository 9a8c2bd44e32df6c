use crate::prelude::*;

use super::ghost_limit::{check, unlinked};

pub const DESC: Desc = Desc {
    name: "files/ghost_limit_raised",
    family: "files",
    description: "an unlinked file over the default ghost limit (1M) is saved when --ghost-limit allows it",
    dump_opts: &["--ghost-limit", "4M"],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let (f, data) = unlinked(t, "ghost_limit_raised.data", 2 << 20, 104)?;
    t.daemon()?;
    t.wait_sig();
    check(&f, &data, 104)
}
