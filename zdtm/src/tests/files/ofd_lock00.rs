use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg};
use std::os::fd::AsFd;

pub const DESC: Desc = Desc {
    name: "files/ofd_lock00",
    family: "files",
    description: "open file description locks (F_OFD_SETLK) are still held after restore, seen from a second open file description",
    dump_opts: &["--file-locks"],
    restore_opts: &["--file-locks"],
    ..Desc::DEFAULT
};

fn flock(ty: i32, start: i64, len: i64) -> libc::flock {
    libc::flock { l_type: ty as i16, l_whence: libc::SEEK_SET as i16, l_start: start, l_len: len, l_pid: 0 }
}

fn probe(f: &std::fs::File, start: i64, len: i64) -> Result<libc::flock> {
    let mut l = flock(libc::F_WRLCK, start, len);
    fcntl(f.as_fd(), FcntlArg::F_OFD_GETLK(&mut l)).context("F_OFD_GETLK")?;
    Ok(l)
}

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("ofd_lock");
    let open = || std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).context("open");
    let f = open()?;
    f.set_len(4096).context("truncate")?;
    fcntl(f.as_fd(), FcntlArg::F_OFD_SETLK(&flock(libc::F_WRLCK, 0, 100))).context("F_OFD_SETLK write 0+100")?;
    fcntl(f.as_fd(), FcntlArg::F_OFD_SETLK(&flock(libc::F_RDLCK, 1000, 0))).context("F_OFD_SETLK read 1000..EOF")?;
    t.daemon()?;
    t.wait_sig();
    let other = open()?;
    let l = probe(&other, 50, 10)?;
    ensure!(l.l_type == libc::F_WRLCK as i16, "no OFD write lock on 0..100 (type {})", l.l_type);
    ensure!((l.l_start, l.l_len, l.l_pid) == (0, 100, -1), "write lock is {}+{} pid {}, expected 0+100 pid -1", l.l_start, l.l_len, l.l_pid);
    let l = probe(&other, 5000, 1)?;
    ensure!(l.l_type == libc::F_RDLCK as i16, "no OFD read lock from 1000 to EOF (type {})", l.l_type);
    ensure!((l.l_start, l.l_len) == (1000, 0), "read lock is {}+{}, expected 1000+0", l.l_start, l.l_len);
    let l = probe(&other, 200, 100)?;
    ensure!(l.l_type == libc::F_UNLCK as i16, "200..300 is locked (type {})", l.l_type);
    // The lock stays with its own open file description: there it does not conflict.
    let l = probe(&f, 50, 10)?;
    ensure!(l.l_type == libc::F_UNLCK as i16, "the owner's own description conflicts with its lock");
    Ok(())
}
