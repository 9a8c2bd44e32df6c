use crate::prelude::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DESC: Desc = Desc {
    name: "sockets/unix_ext_dgram",
    family: "sockets",
    description: "a datagram unix socket connected to a bound socket outside the dumped tree is dumped as external (--ext-unix-sk) and connected to the same path again",
    // The outside socket lives in an orphaned process: only on the host
    // does it leave the tree (in a pid namespace the test is its reaper).
    flavors: &[Flavor::Host],
    dump_opts: &["--ext-unix-sk"],
    restore_opts: &["--ext-unix-sk"],
    ..Desc::DEFAULT
};

/// Starts a process outside the test's tree (a grandchild whose parent
/// exits) that owns a datagram socket bound at `path` and appends each
/// message it gets to `log`, until "quit" or a minute passes.
pub fn outside_receiver(path: &Path, log: &Path) -> Result<()> {
    // SAFETY: fork in a single-threaded test; both sides only use
    // async-signal-safe calls and plain std I/O before exiting.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).context("waitpid")?;
            let end = Instant::now() + Duration::from_secs(5);
            while !path.exists() {
                ensure!(Instant::now() < end, "the outside receiver did not bind {}", path.display());
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            // SAFETY: as above.
            if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
                let _ = nix::unistd::setsid();
                let code = i32::from(receive(path, log).is_err());
                // SAFETY: leaving the forked process without running the
                // test's destructors.
                unsafe { libc::_exit(code) }
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

fn receive(path: &Path, log: &Path) -> Result<()> {
    // Keep nothing of the test's fds but the standard ones.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
    let s = UnixDatagram::bind(path)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut buf = [0u8; 256];
    loop {
        let n = s.recv(&mut buf)?;
        if &buf[..n] == b"quit" {
            return Ok(());
        }
        let mut l = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        std::io::Write::write_all(&mut l, &buf[..n])?;
        std::io::Write::write_all(&mut l, b"\n")?;
    }
}

pub fn paths(t: &Test) -> Result<(PathBuf, PathBuf)> {
    let d = t.dir()?;
    Ok((d.join("ext.sock"), d.join("ext.log")))
}

pub fn run(t: &mut Test) -> Result<()> {
    let (path, log) = paths(t)?;
    outside_receiver(&path, &log)?;
    let s = UnixDatagram::unbound().context("socket")?;
    s.connect(&path).context("connect to the outside socket")?;
    s.send(b"before").context("send before")?;

    t.daemon()?;
    t.wait_sig();

    let r = s.send(b"after").context("send after restore");
    let _ = s.send(b"quit");
    r?;
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let got = std::fs::read_to_string(&log).unwrap_or_default();
        if got == "before\nafter\n" {
            return Ok(());
        }
        ensure!(Instant::now() < end, "the outside socket got {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
