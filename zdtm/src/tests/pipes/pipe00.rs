use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "pipes/pipe00",
    family: "pipes",
    description: "both ends of pipes, their flags and the data queued in them are kept",
    ..Desc::DEFAULT
};

fn drain(fd: &OwnedFd) -> Result<Vec<u8>> {
    let mut f = std::fs::File::from(fd.try_clone().context("dup")?);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e).context("read pipe"),
        }
    }
    Ok(out)
}

fn flags(fd: &OwnedFd) -> Result<OFlag> {
    Ok(OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL).context("F_GETFL")?))
}

pub fn run(t: &mut Test) -> Result<()> {
    let (r1, w1) = nix::unistd::pipe2(OFlag::O_NONBLOCK).context("pipe 1")?;
    let (r2, w2) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe 2")?;
    fcntl(r2.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).context("F_SETFL")?;
    let mut d1 = vec![0u8; 4000];
    pattern::fill(61, &mut d1);
    std::fs::File::from(w1.try_clone()?).write_all(&d1).context("write pipe 1")?;
    let mut d2 = vec![0u8; 12345];
    pattern::fill(62, &mut d2);
    std::fs::File::from(w2.try_clone()?).write_all(&d2).context("write pipe 2")?;
    let ids: Vec<String> = [&r1, &w1, &r2, &w2].iter().map(|f| fd_link(f.as_raw_fd())).collect::<Result<_>>()?;
    t.daemon()?;
    t.wait_sig();
    let ids2: Vec<String> = [&r1, &w1, &r2, &w2].iter().map(|f| fd_link(f.as_raw_fd())).collect::<Result<_>>()?;
    ensure!(ids[0] == ids[1] && ids[2] == ids[3] && ids[0] != ids[2], "pipe identities wrong: {ids2:?}");
    ensure!(ids2[0] == ids2[1] && ids2[2] == ids2[3] && ids2[0] != ids2[2], "pipe ends no longer paired: {ids2:?}");
    ensure!(flags(&r1)?.contains(OFlag::O_NONBLOCK) && flags(&w1)?.contains(OFlag::O_NONBLOCK), "pipe 1 lost O_NONBLOCK");
    ensure!(!flags(&w2)?.contains(OFlag::O_NONBLOCK), "pipe 2 write end became non-blocking");
    let fdfl = fcntl(r2.as_fd(), FcntlArg::F_GETFD).context("F_GETFD")?;
    ensure!(fdfl & libc::FD_CLOEXEC != 0, "pipe 2 read end lost FD_CLOEXEC");
    let got1 = drain(&r1)?;
    ensure!(got1.len() == d1.len(), "pipe 1 holds {} bytes, expected {}", got1.len(), d1.len());
    check_pattern("pipe 1", 61, &got1)?;
    let got2 = drain(&r2)?;
    ensure!(got2.len() == d2.len(), "pipe 2 holds {} bytes, expected {}", got2.len(), d2.len());
    check_pattern("pipe 2", 62, &got2)?;
    std::fs::File::from(w2.try_clone()?).write_all(b"again").context("write after restore")?;
    ensure!(drain(&r2)? == b"again", "pipe 2 does not carry new data");
    Ok(())
}
