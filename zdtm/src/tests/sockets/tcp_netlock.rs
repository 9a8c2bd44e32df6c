use crate::prelude::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_netlock",
    family: "sockets",
    description: "a TCP connection to a peer outside the tree that keeps sending survives dump and restore with --network-lock nftables: the peer never sees a reset",
    // The peer is an orphaned process: only on the host does it leave the
    // tree (in a pid namespace the test is its reaper).
    flavors: &[Flavor::Host],
    dump_opts: &["--tcp-established", "--network-lock", "nftables"],
    restore_opts: &["--tcp-established", "--network-lock", "nftables"],
    ..Desc::DEFAULT
};

/// Runs `body` in a process outside the test's tree (a grandchild whose
/// parent exits) with only the standard fds, exiting with its verdict.
fn outside(body: impl FnOnce() -> Result<()>) -> Result<()> {
    // SAFETY: fork in a single-threaded test; the children only run `body`
    // and exit without returning into the test.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).context("waitpid")?;
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            // SAFETY: as above.
            if let Ok(nix::unistd::ForkResult::Child) = unsafe { nix::unistd::fork() } {
                let _ = nix::unistd::setsid();
                let code = i32::from(body().is_err());
                // SAFETY: leaving the forked process without the test's
                // destructors.
                unsafe { libc::_exit(code) }
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) }
        }
    }
}

/// The peer: sends a byte every 50 ms until it reads "stop", then writes
/// "ok" (or what went wrong) to `log`.
fn peer(at: std::net::SocketAddr, log: &Path) -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
    let r = (|| -> std::io::Result<()> {
        let mut s = TcpStream::connect(at)?;
        s.set_nonblocking(true)?;
        let end = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while Instant::now() < end {
            s.write_all(b"x")?;
            let mut b = [0u8; 16];
            match s.read(&mut b) {
                Ok(0) => return Err(std::io::Error::other("end of stream")),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if got.ends_with(b"stop") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other("no stop"))
    })();
    let verdict = match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("peer: {e}"),
    };
    std::fs::write(log, verdict)?;
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let log = t.dir()?.join("peer.log");
    let l = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let at = l.local_addr().context("local_addr")?;
    let log2 = log.clone();
    outside(move || peer(at, &log2))?;
    let (mut s, _) = l.accept().context("accept")?;
    s.set_read_timeout(Some(Duration::from_secs(5))).context("timeout")?;
    let mut b = [0u8; 3];
    s.read_exact(&mut b).context("first bytes from the peer")?;

    t.daemon()?;
    t.wait_sig();

    // The peer went on sending while the tree was away: what it sent comes
    // now, and it saw no reset.
    let mut after = 0;
    let end = Instant::now() + Duration::from_secs(20);
    while after < 10 && Instant::now() < end {
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => bail!("the peer closed the connection"),
            Ok(n) => after += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => bail!("reading from the peer after restore: {e}"),
        }
    }
    ensure!(after >= 10, "only {after} bytes from the peer after restore");
    s.write_all(b"stop").context("stop")?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let v = std::fs::read_to_string(&log).unwrap_or_default();
        if !v.is_empty() {
            ensure!(v == "ok", "{v}");
            return Ok(());
        }
        ensure!(Instant::now() < end, "the peer said nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
}
