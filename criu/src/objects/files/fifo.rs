//! Named fifos: a `fifo_entry` (the pipe id and the id of a `reg_file_entry`
//! naming the fifo's path) per open file, and the queued bytes in
//! `fifo-data.img`, as for pipes.
//!
//! At restore the fifo is first opened read-write (which never waits for a
//! peer) and kept open while its real users are opened by path with their
//! own flags: with both a reader and a writer present, no open blocks.

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::image::pb;

use super::super::{Error, Result};
use super::pipe;

/// Dump half: the fifo entry of file `id` whose path is file `regf_id`.
pub fn entry(id: u32, pipe_id: u32, regf_id: u32) -> pb::FifoEntry {
    pb::FifoEntry {
        id,
        pipe_id,
        regf_id: Some(regf_id),
    }
}

/// One fifo held open in criu during restore.
#[derive(Debug)]
pub struct Held {
    _holder: OwnedFd,
}

/// Restore half, first user of a fifo: holds it open and puts back its
/// data.
pub fn hold(path: &str, pipe_id: u32, data: Option<&pipe::Queued>) -> Result<Held> {
    let holder = pipe::hold_fifo(path)?;
    if let Some(q) = data {
        pipe::refill(holder.as_fd(), pipe_id, q)?;
    }
    Ok(Held { _holder: holder })
}

/// Restore half: opens the fifo at `reg.name` with the flags of `reg` (the
/// fifo must be held, see [`hold`]).
pub fn open(e: &pb::FifoEntry, reg: &pb::RegFileEntry) -> Result<OwnedFd> {
    let keep = libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_APPEND;
    let flags = OFlag::from_bits_retain(reg.flags as i32 & keep);
    // Opened non-blocking so that it cannot wait, then given its flags.
    let fd = nix::fcntl::open(
        reg.name.as_str(),
        flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| Error::Mismatch {
        what: format!("opening fifo {} (id {}): {errno}", reg.name, e.id),
    })?;
    pipe::set_flags(
        fd.as_fd(),
        reg.flags,
        &format!("fifo {} (id {})", reg.name, e.id),
    )?;
    Ok(fd)
}
