//! Established TCP connections in repair mode (`--tcp-established`).

use std::os::fd::BorrowedFd;

use std::net::SocketAddr;

use crate::image::pb;

use super::super::{Error, Result};
use super::socket::SkRestore;

/// Dump half: sequence numbers, window, options and both queues.
pub fn dump(
    _fd: BorrowedFd<'_>,
    pid: i32,
    what: &str,
) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>)> {
    Err(Error::Unsupported {
        pid,
        what: format!("{what}: established TCP connections cannot be dumped yet"),
    })
}

/// Restore half: the connection put back in repair mode.
pub fn restore(
    _rs: &mut SkRestore,
    _fd: BorrowedFd<'_>,
    _e: &pb::InetSkEntry,
    _src: &SocketAddr,
    what: &str,
) -> Result<()> {
    Err(Error::Mismatch {
        what: format!("{what}: established TCP connections cannot be restored yet"),
    })
}
