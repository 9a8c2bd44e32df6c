use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg};
use std::os::fd::AsFd;

pub const DESC: Desc = Desc {
    name: "files/posix_lock00",
    family: "files",
    description: "POSIX (fcntl F_SETLK) write and read locks on byte ranges are still held after restore, seen from a child",
    dump_opts: &["--file-locks"],
    restore_opts: &["--file-locks"],
    ..Desc::DEFAULT
};

fn flock(ty: i32, start: i64, len: i64) -> libc::flock {
    libc::flock { l_type: ty as i16, l_whence: libc::SEEK_SET as i16, l_start: start, l_len: len, l_pid: 0 }
}

/// What F_GETLK says of a write lock wanted on `start..start+len`.
fn probe(f: &std::fs::File, start: i64, len: i64) -> Result<libc::flock> {
    let mut l = flock(libc::F_WRLCK, start, len);
    fcntl(f.as_fd(), FcntlArg::F_GETLK(&mut l)).context("F_GETLK")?;
    Ok(l)
}

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("posix_lock");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).context("open")?;
    f.set_len(4096).context("truncate")?;
    fcntl(f.as_fd(), FcntlArg::F_SETLK(&flock(libc::F_WRLCK, 10, 20))).context("F_SETLK write 10+20")?;
    fcntl(f.as_fd(), FcntlArg::F_SETLK(&flock(libc::F_RDLCK, 100, 0))).context("F_SETLK read 100..EOF")?;
    let me = std::process::id() as i32;
    t.daemon()?;
    t.wait_sig();
    // POSIX locks never conflict with their owner: ask from a child.
    let child = fork_child(move || {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).context("child open")?;
        let l = probe(&f, 0, 50)?;
        ensure!(l.l_type == libc::F_WRLCK as i16, "no write lock on 10..30 (F_GETLK type {})", l.l_type);
        ensure!((l.l_start, l.l_len, l.l_pid) == (10, 20, me), "write lock is {}+{} of pid {}, expected 10+20 of {me}", l.l_start, l.l_len, l.l_pid);
        let l = probe(&f, 200, 10)?;
        ensure!(l.l_type == libc::F_RDLCK as i16, "no read lock from 100 to EOF (F_GETLK type {})", l.l_type);
        ensure!((l.l_start, l.l_len, l.l_pid) == (100, 0, me), "read lock is {}+{} of pid {}, expected 100+0 of {me}", l.l_start, l.l_len, l.l_pid);
        let l = probe(&f, 40, 50)?;
        ensure!(l.l_type == libc::F_UNLCK as i16, "40..90 is locked (type {})", l.l_type);
        Ok(())
    })?;
    child.wait_ok()?;
    drop(f);
    Ok(())
}
