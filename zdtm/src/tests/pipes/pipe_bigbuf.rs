use crate::prelude::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::io::{Read, Write};
use std::os::fd::AsFd;

pub const DESC: Desc = Desc {
    name: "pipes/pipe_bigbuf",
    family: "pipes",
    description: "a pipe enlarged with F_SETPIPE_SZ keeps its size and the large amount of data in it",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20);
    let want = max.min(1 << 20);
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK).context("pipe")?;
    let size = fcntl(w.as_fd(), FcntlArg::F_SETPIPE_SZ(want as i32)).context("F_SETPIPE_SZ")? as usize;
    let len = size / 2 + 1000;
    let mut data = vec![0u8; len];
    pattern::fill(71, &mut data);
    std::fs::File::from(w.try_clone()?).write_all(&data).context("fill pipe")?;
    t.daemon()?;
    t.wait_sig();
    let got_size = fcntl(r.as_fd(), FcntlArg::F_GETPIPE_SZ).context("F_GETPIPE_SZ")? as usize;
    ensure!(got_size == size, "pipe size {got_size}, expected {size}");
    let mut got = Vec::new();
    let mut f = std::fs::File::from(r);
    let mut buf = vec![0u8; 65536];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e).context("read"),
        }
    }
    ensure!(got.len() == len, "pipe held {} bytes, expected {len}", got.len());
    check_pattern("pipe data", 71, &got)
}
