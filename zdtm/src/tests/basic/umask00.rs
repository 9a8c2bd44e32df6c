use crate::prelude::*;
use nix::sys::stat::{umask, Mode};

pub const DESC: Desc = Desc {
    name: "basic/umask00",
    family: "basic",
    description: "the umask is kept",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let want = Mode::from_bits_truncate(0o027);
    umask(want);
    t.daemon()?;
    t.wait_sig();
    let got = umask(want);
    ensure!(got == want, "umask is {:o}, expected {:o}", got.bits(), want.bits());
    Ok(())
}
