use crate::prelude::*;
use nix::sys::stat::{fstat, Mode, SFlag};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

pub const DESC: Desc = Desc {
    name: "pipes/fifo00",
    family: "pipes",
    description: "a named fifo in --dirname, open at both ends with data queued",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let path = t.dir()?.join("fifo00.fifo");
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).with_context(|| format!("mkfifo {}", path.display()))?;
    let mut rd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .context("open fifo for reading")?;
    let mut wr = std::fs::OpenOptions::new().write(true).open(&path).context("open fifo for writing")?;
    let mut data = vec![0u8; 3000];
    pattern::fill(81, &mut data);
    wr.write_all(&data).context("write fifo")?;
    t.daemon()?;
    t.wait_sig();
    for (f, what) in [(rd.as_raw_fd(), "read end"), (wr.as_raw_fd(), "write end")] {
        let l = fd_link(f)?;
        ensure!(l == path.to_string_lossy(), "fifo {what} points to {l}");
    }
    let st = fstat(&rd).context("fstat")?;
    ensure!(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO, "not a fifo any more");
    let mut got = vec![0u8; 3000];
    rd.read_exact(&mut got).context("read fifo")?;
    check_pattern("fifo data", 81, &got)?;
    let mut more = [0u8; 1];
    match rd.read(&mut more) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => bail!("fifo should be empty now, read gave {other:?}"),
    }
    wr.write_all(b"x").context("write after restore")?;
    rd.read_exact(&mut more).context("read after restore")?;
    ensure!(&more == b"x", "fifo carried {more:?}");
    Ok(())
}
