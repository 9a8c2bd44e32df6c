use super::unix_ext_dgram::{outside_receiver, paths};
use crate::prelude::*;
use std::os::unix::net::UnixDatagram;

pub const DESC: Desc = Desc {
    name: "sockets/unix_ext_refused",
    family: "sockets",
    description: "without --ext-unix-sk, a unix socket connected to a socket outside the tree fails the dump, and the tree runs on",
    flags: &[Flag::Crfail],
    flavors: &[Flavor::Host],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let (path, log) = paths(t)?;
    outside_receiver(&path, &log)?;
    let s = UnixDatagram::unbound().context("socket")?;
    s.connect(&path).context("connect to the outside socket")?;

    t.daemon()?;
    t.wait_sig();

    let r = s.send(b"still").context("send after the failed dump");
    let _ = s.send(b"quit");
    r?;
    Ok(())
}
