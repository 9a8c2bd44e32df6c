use crate::prelude::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};

pub const DESC: Desc = Desc {
    name: "sockets/unix_socketpair",
    family: "sockets",
    description: "stream and datagram unix socketpairs keep data queued both ways, with message boundaries",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let (mut a, mut b) = UnixStream::pair().context("stream pair")?;
    let (mut ab, mut ba) = (vec![0u8; 5000], vec![0u8; 3000]);
    pattern::fill(131, &mut ab);
    pattern::fill(132, &mut ba);
    a.write_all(&ab).context("write a->b")?;
    b.write_all(&ba).context("write b->a")?;
    let (da, db) = UnixDatagram::pair().context("dgram pair")?;
    for m in [&b"one"[..], b"two two", b"three three three"] {
        da.send(m).context("send dgram")?;
    }
    t.daemon()?;
    t.wait_sig();
    let mut got = vec![0u8; ab.len()];
    b.read_exact(&mut got).context("read at b")?;
    check_pattern("a->b", 131, &got)?;
    let mut got = vec![0u8; ba.len()];
    a.read_exact(&mut got).context("read at a")?;
    check_pattern("b->a", 132, &got)?;
    let mut buf = [0u8; 64];
    for want in [&b"one"[..], b"two two", b"three three three"] {
        let n = db.recv(&mut buf).context("recv dgram")?;
        ensure!(&buf[..n] == want, "datagram {:?}, expected {:?}", &buf[..n], want);
    }
    a.write_all(b"ping").context("write after restore")?;
    let mut p = [0u8; 4];
    b.read_exact(&mut p).context("read after restore")?;
    ensure!(&p == b"ping", "got {p:?}");
    Ok(())
}
