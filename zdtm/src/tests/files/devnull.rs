use crate::prelude::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

pub const DESC: Desc = Desc {
    name: "files/devnull",
    family: "files",
    description: "open /dev/null and /dev/zero stay the same character devices and behave",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mut null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("open /dev/null")?;
    let mut zero = std::fs::File::open("/dev/zero").context("open /dev/zero")?;
    let want = (null.metadata().context("stat null")?.rdev(), zero.metadata().context("stat zero")?.rdev());
    t.daemon()?;
    t.wait_sig();
    let got = (null.metadata().context("stat null")?.rdev(), zero.metadata().context("stat zero")?.rdev());
    ensure!(got == want, "rdev (null, zero) is {got:?}, expected {want:?}");
    ensure!(fd_link(null.as_raw_fd())? == "/dev/null", "null fd points elsewhere");
    ensure!(fd_link(zero.as_raw_fd())? == "/dev/zero", "zero fd points elsewhere");
    null.write_all(b"discard").context("write /dev/null")?;
    let mut b = [0u8; 4];
    ensure!(null.read(&mut b).context("read /dev/null")? == 0, "/dev/null returned data");
    let mut z = [1u8; 64];
    zero.read_exact(&mut z).context("read /dev/zero")?;
    ensure!(z.iter().all(|&x| x == 0), "/dev/zero gave non-zero bytes");
    Ok(())
}
