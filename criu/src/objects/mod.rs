//! Layer 4: one module per kind of kernel object, each holding both its dump
//! half (read the object off a seized task into image entries) and its
//! restore half (make it again inside a puppet task).

pub mod creds;
pub mod files;
pub mod fs;
pub mod mm;
pub mod mm_pages;
pub mod mm_track;
pub mod ns;
pub mod rlimit;
pub mod rseq;
pub mod sched;
pub mod seccomp;
pub mod shmem;
pub mod signal;
pub mod sigqueue;
pub mod thread;
pub mod timer;

use std::path::PathBuf;

use crate::{image, proc, remote};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Proc(#[from] proc::Error),
    #[error("pid {pid}: {what}: {source}")]
    Io {
        pid: i32,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pid {pid}: {what}: {errno}")]
    Sys {
        pid: i32,
        what: String,
        errno: nix::errno::Errno,
    },
    /// Something criu-rs does not know how to dump or restore (yet).
    #[error("pid {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    /// The images and the world disagree (a file changed, an id is missing…).
    #[error("{what}")]
    Mismatch { what: String },
    #[error("file {path}: {what}: {source}")]
    File {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Hands out the small integer ids that tie image entries together
/// (`files.img` ids, `ids-*.img` object ids …), from 1 up.
#[derive(Debug, Default)]
pub struct IdGen {
    last: u32,
}

impl IdGen {
    pub fn next_id(&mut self) -> u32 {
        self.last += 1;
        self.last
    }
}

/// Reads a /proc file of `pid` with an error naming it.
pub fn read_proc(pid: i32, name: &str) -> Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{name}")).map_err(|source| Error::Io {
        pid,
        what: format!("reading /proc/{pid}/{name}"),
        source,
    })
}

/// Reads a /proc symlink of `pid` (`exe`, `cwd`, `fd/3` …).
pub fn read_proc_link(pid: i32, name: &str) -> Result<String> {
    std::fs::read_link(format!("/proc/{pid}/{name}"))
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|source| Error::Io {
            pid,
            what: format!("reading the link /proc/{pid}/{name}"),
            source,
        })
}
