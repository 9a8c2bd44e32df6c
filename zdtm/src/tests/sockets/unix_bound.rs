use crate::prelude::*;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};

pub const DESC: Desc = Desc {
    name: "sockets/unix_bound",
    family: "sockets",
    description: "unix sockets bound to a path (with its file mode) and to an abstract name keep their names, peers and queued datagrams",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?;
    let path = dir.join("srv.sock");
    let _ = std::fs::remove_file(&path);
    let srv = UnixDatagram::bind(&path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).context("chmod")?;
    let cli = UnixDatagram::unbound().context("client")?;
    cli.connect(&path).context("connect client")?;
    for m in [&b"first"[..], b"second datagram"] {
        cli.send(m).context("send")?;
    }
    let name = format!("criu-rs-zdtm-{}", std::process::id());
    let abs = SocketAddr::from_abstract_name(name.as_bytes()).context("abstract name")?;
    let l = UnixListener::bind_addr(&abs).context("bind abstract")?;
    t.daemon()?;
    t.wait_sig();

    let a = srv.local_addr().context("server name")?;
    ensure!(a.as_pathname() == Some(path.as_path()), "server bound to {a:?}");
    let mode = std::fs::metadata(&path).context("stat socket file")?.permissions().mode();
    ensure!(mode & 0o7777 == 0o640, "socket file mode {:o}", mode & 0o7777);
    let p = cli.peer_addr().context("client peer")?;
    ensure!(p.as_pathname() == Some(path.as_path()), "client connected to {p:?}");
    srv.set_read_timeout(Some(std::time::Duration::from_secs(5))).context("timeout")?;
    let mut buf = [0u8; 64];
    for want in [&b"first"[..], b"second datagram"] {
        let n = srv.recv(&mut buf).context("recv queued")?;
        ensure!(&buf[..n] == want, "queued {:?}, expected {:?}", &buf[..n], want);
    }
    cli.send(b"after").context("send after restore")?;
    let n = srv.recv(&mut buf).context("recv after restore")?;
    ensure!(&buf[..n] == b"after", "got {:?}", &buf[..n]);

    let la = l.local_addr().context("listener name")?;
    ensure!(la.as_abstract_name() == Some(name.as_bytes()), "listener bound to {la:?}");
    let mut c = UnixStream::connect_addr(&abs).context("connect abstract")?;
    let (mut s, _) = l.accept().context("accept")?;
    c.write_all(b"hi").context("write")?;
    let mut b2 = [0u8; 2];
    s.read_exact(&mut b2).context("read")?;
    ensure!(&b2 == b"hi", "got {b2:?}");
    Ok(())
}
