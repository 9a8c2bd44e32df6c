use crate::prelude::*;
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

pub const DESC: Desc = Desc {
    name: "tty/pty_data",
    family: "tty",
    // pty indexes are the machine's: a restore needs its index free
    flags: &[Flag::Excl],
    description: "bytes queued unread in a raw pty, in both directions, are read back byte for byte after restore",
    ..Desc::DEFAULT
};


pub fn run(t: &mut Test) -> Result<()> {
    let pty = openpty(None, None).context("openpty")?;
    let mut tio = tcgetattr(&pty.slave).context("tcgetattr")?;
    cfmakeraw(&mut tio);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &tio).context("tcsetattr")?;
    // Every byte value, both ways, different in each direction.
    let to_slave: Vec<u8> = (0..=255u8).chain(b"to the slave\r\n".iter().copied()).collect();
    let to_master: Vec<u8> = (0..=255u8).rev().chain(b"to the master\n\r".iter().copied()).collect();
    let mut master = std::fs::File::from(pty.master.try_clone().context("dup master")?);
    let mut slave = std::fs::File::from(pty.slave.try_clone().context("dup slave")?);
    master.write_all(&to_slave).context("write master")?;
    slave.write_all(&to_master).context("write slave")?;
    ensure!(wait_for(2000, || sys::queued(pty.slave.as_raw_fd()).is_ok_and(|n| n as usize == to_slave.len())), "slave side did not queue {} bytes", to_slave.len());
    ensure!(wait_for(2000, || sys::queued(pty.master.as_raw_fd()).is_ok_and(|n| n as usize == to_master.len())), "master side did not queue {} bytes", to_master.len());
    t.daemon()?;
    t.wait_sig();
    let (qs, qm) = (sys::queued(pty.slave.as_raw_fd())?, sys::queued(pty.master.as_raw_fd())?);
    ensure!(qs as usize == to_slave.len(), "{qs} bytes queued for the slave, expected {}", to_slave.len());
    ensure!(qm as usize == to_master.len(), "{qm} bytes queued for the master, expected {}", to_master.len());
    let mut got = vec![0u8; to_slave.len()];
    slave.read_exact(&mut got).context("read slave")?;
    ensure!(got == to_slave, "the slave read other bytes than were queued");
    let mut got = vec![0u8; to_master.len()];
    master.read_exact(&mut got).context("read master")?;
    ensure!(got == to_master, "the master read other bytes than were queued");
    // Still a working pair.
    master.write_all(b"ok").context("write master after")?;
    let mut b = [0u8; 2];
    slave.read_exact(&mut b).context("read slave after")?;
    ensure!(&b == b"ok", "slave read {b:?} after restore");
    Ok(())
}
