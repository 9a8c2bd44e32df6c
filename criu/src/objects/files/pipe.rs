//! Pipes: `pipe_entry` per open end, and the bytes queued in each pipe in
//! `pipes-data.img` (`pipe_data_entry` followed by the raw bytes). Named
//! fifos (fifo.rs) keep their data the same way, in `fifo-data.img`.
//!
//! The queued bytes are copied with tee(2) into a scratch pipe, so that the
//! dumped task still finds them in place whatever happens next.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::Mode;

use crate::image::{self, pb};
use crate::sys;

use super::super::{Error, Result};
use super::{no_owner, reopen};

/// What a pipe held at dump time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// F_GETPIPE_SZ.
    pub size: u32,
    pub data: Vec<u8>,
}

/// The pipe id criu uses: the pipe's inode number (as upstream, 32 bits).
pub fn pipe_id(ino: u64) -> u32 {
    ino as u32
}

/// Dump half: the entry of one open end.
pub fn entry(id: u32, pipe_id: u32, flags: u32) -> pb::PipeEntry {
    pb::PipeEntry {
        id,
        pipe_id,
        flags: flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
    }
}

/// Reads the bytes queued in the pipe (or fifo) behind `file` without
/// taking them out. `flags` are the open flags of `file`; a write end is
/// reopened for reading through /proc to be able to look.
pub fn peek(pid: i32, fd: i32, file: BorrowedFd<'_>, flags: u32) -> Result<Queued> {
    let sys_err = |what: &str, errno| Error::Sys {
        pid,
        what: format!("{what} of pipe fd {fd}"),
        errno,
    };
    let reader;
    let rd: BorrowedFd<'_> = if flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32 {
        reader = reopen(file, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
            .map_err(|e| sys_err("reopening for reading", e))?;
        reader.as_fd()
    } else {
        file
    };
    let size = fcntl(rd, FcntlArg::F_GETPIPE_SZ).map_err(|e| sys_err("F_GETPIPE_SZ", e))?;
    let queued = sys::splice::fionread(&rd).map_err(|e| sys_err("FIONREAD", e))?;
    if queued == 0 {
        return Ok(Queued {
            size: size as u32,
            data: Vec::new(),
        });
    }
    let (scratch_r, scratch_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| sys_err("pipe2", e))?;
    fcntl(&scratch_w, FcntlArg::F_SETPIPE_SZ(size))
        .map_err(|e| sys_err("sizing the scratch pipe for", e))?;
    let got =
        sys::splice::tee_nonblock(&rd, &scratch_w, size as usize).map_err(|e| sys_err("tee", e))?;
    if got != queued {
        return Err(Error::Unsupported {
            pid,
            what: format!("pipe fd {fd}: tee copied {got} of the {queued} queued bytes"),
        });
    }
    drop(scratch_w);
    let mut data = Vec::with_capacity(got);
    std::fs::File::from(scratch_r)
        .read_to_end(&mut data)
        .map_err(|source| Error::Io {
            pid,
            what: format!("reading the copy of pipe fd {fd}"),
            source,
        })?;
    Ok(Queued {
        size: size as u32,
        data,
    })
}

/// Writes `pipes-data.img` (or `fifo-data.img`): one entry per pipe, its
/// bytes right after it.
pub fn write_data(dir: &Path, file: &str, magic: u32, pipes: &[(u32, Queued)]) -> Result<()> {
    let mut w = image::ImageWriter::create(dir, file, magic)?;
    for (pipe_id, q) in pipes {
        w.write(&pb::PipeDataEntry {
            pipe_id: *pipe_id,
            bytes: q.data.len() as u32,
            size: Some(q.size),
        })?;
        w.write_raw(&q.data)?;
    }
    w.finish()?;
    Ok(())
}

/// Reads `pipes-data.img` (or `fifo-data.img`); a missing file means no
/// pipe had data.
pub fn read_data(dir: &Path, file: &str, magic: u32) -> Result<HashMap<u32, Queued>> {
    let mut out = HashMap::new();
    if !dir.join(file).exists() {
        return Ok(out);
    }
    let mut r = image::ImageReader::open(dir, file, magic)?;
    while let Some(e) = r.next::<pb::PipeDataEntry>()? {
        let data = r.read_raw(u64::from(e.bytes))?;
        out.insert(
            e.pipe_id,
            Queued {
                size: e.size.unwrap_or(0),
                data,
            },
        );
    }
    Ok(out)
}

/// Sizes a pipe and puts its dumped bytes back, through `w` (any fd that
/// can write to it).
pub fn refill(w: BorrowedFd<'_>, pipe_id: u32, q: &Queued) -> Result<()> {
    let err = |what: &str, errno| Error::Mismatch {
        what: format!("pipe {pipe_id:#x}: {what}: {errno}"),
    };
    if q.size != 0 {
        fcntl(w, FcntlArg::F_SETPIPE_SZ(q.size as i32))
            .map_err(|e| err(&format!("F_SETPIPE_SZ {}", q.size), e))?;
    }
    let mut off = 0;
    while off < q.data.len() {
        let n = nix::unistd::write(w, &q.data[off..])
            .map_err(|e| err(&format!("writing back {} bytes", q.data.len()), e))?;
        if n == 0 {
            return Err(Error::Mismatch {
                what: format!("pipe {pipe_id:#x} takes no more data at byte {off}"),
            });
        }
        off += n;
    }
    Ok(())
}

/// One pipe made at restore: both ends, and whether each one was handed out
/// already (the second user of an end gets a new open file description).
#[derive(Debug)]
pub struct Made {
    read: OwnedFd,
    write: OwnedFd,
    read_used: bool,
    write_used: bool,
}

/// Restore half: makes the pipe `pipe_id` with its dumped data.
pub fn make(pipe_id: u32, data: Option<&Queued>) -> Result<Made> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Mismatch {
        what: format!("making pipe {pipe_id:#x}: {e}"),
    })?;
    if let Some(q) = data {
        refill(write.as_fd(), pipe_id, q)?;
    }
    Ok(Made {
        read,
        write,
        read_used: false,
        write_used: false,
    })
}

/// Sets the status flags (O_NONBLOCK, O_DIRECT …) of an open file.
pub fn set_flags(fd: BorrowedFd<'_>, flags: u32, what: &str) -> Result<()> {
    let fl = OFlag::from_bits_retain(flags as i32 & !(libc::O_ACCMODE | libc::O_CLOEXEC));
    fcntl(fd, FcntlArg::F_SETFL(fl)).map_err(|e| Error::Mismatch {
        what: format!("setting flags {flags:#o} of {what}: {e}"),
    })?;
    Ok(())
}

impl Made {
    /// The end that file entry `e` stands for, with its flags.
    pub fn end_for(&mut self, e: &pb::PipeEntry) -> Result<OwnedFd> {
        let writer = e.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
        let (end, used) = if writer {
            (&self.write, &mut self.write_used)
        } else {
            (&self.read, &mut self.read_used)
        };
        let what = format!("pipe {:#x} (file id {})", e.pipe_id, e.id);
        let fd = if !*used {
            *used = true;
            end.try_clone().map_err(|source| Error::Mismatch {
                what: format!("dup of {what}: {source}"),
            })?
        } else {
            let acc = if writer {
                OFlag::O_WRONLY
            } else {
                OFlag::O_RDONLY
            };
            reopen(end.as_fd(), acc | OFlag::O_NONBLOCK).map_err(|errno| Error::Mismatch {
                what: format!("reopening {what}: {errno}"),
            })?
        };
        set_flags(fd.as_fd(), e.flags, &what)?;
        Ok(fd)
    }
}

/// Opens `path` (a fifo) read-write, which never blocks, to hold the fifo
/// open while its real users are opened.
pub fn hold_fifo(path: &str) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Mismatch {
        what: format!("opening fifo {path}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn peek_leaves_the_data_in_place_and_keeps_the_size() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        fcntl(&w, FcntlArg::F_SETPIPE_SZ(1 << 17)).unwrap();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(nix::unistd::write(&w, &data).unwrap(), data.len());
        let flags = fcntl(&r, FcntlArg::F_GETFL).unwrap() as u32;
        let q = peek(0, r.as_raw_fd(), r.as_fd(), flags).unwrap();
        assert_eq!(q.size, 1 << 17);
        assert_eq!(q.data, data);
        // Through the write end too.
        let wflags = fcntl(&w, FcntlArg::F_GETFL).unwrap() as u32;
        let q2 = peek(0, w.as_raw_fd(), w.as_fd(), wflags).unwrap();
        assert_eq!(q2, q);
        // Still all there.
        let mut back = Vec::new();
        let _ = std::fs::File::from(r).read_to_end(&mut back);
        assert_eq!(back, data);
    }

    #[test]
    fn empty_pipe_peeks_empty() {
        let (r, _w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let q = peek(0, r.as_raw_fd(), r.as_fd(), 0).unwrap();
        assert!(q.data.is_empty());
        assert!(q.size >= 4096);
    }

    #[test]
    fn data_image_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let pipes = vec![
            (
                7,
                Queued {
                    size: 65536,
                    data: b"pipe-data".to_vec(),
                },
            ),
            (
                9,
                Queued {
                    size: 4096,
                    data: vec![],
                },
            ),
        ];
        write_data(
            dir.path(),
            "pipes-data.img",
            crate::image::magic::PIPES_DATA,
            &pipes,
        )
        .unwrap();
        let back = read_data(
            dir.path(),
            "pipes-data.img",
            crate::image::magic::PIPES_DATA,
        )
        .unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[&7], pipes[0].1);
        assert_eq!(back[&9], pipes[1].1);
    }

    #[test]
    fn made_pipe_hands_out_ends_with_flags_and_data() {
        let q = Queued {
            size: 1 << 16,
            data: b"hello".to_vec(),
        };
        let mut m = make(5, Some(&q)).unwrap();
        let r = m
            .end_for(&entry(
                1,
                5,
                libc::O_RDONLY as u32 | libc::O_NONBLOCK as u32,
            ))
            .unwrap();
        let w = m.end_for(&entry(2, 5, libc::O_WRONLY as u32)).unwrap();
        let fl = fcntl(&r, FcntlArg::F_GETFL).unwrap();
        assert!(fl & libc::O_NONBLOCK != 0);
        assert_eq!(fcntl(&w, FcntlArg::F_GETPIPE_SZ).unwrap(), 1 << 16);
        let mut buf = [0u8; 16];
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // A second reader is a new open file description of the same pipe.
        let r2 = m.end_for(&entry(3, 5, libc::O_RDONLY as u32)).unwrap();
        nix::unistd::write(&w, b"x").unwrap();
        assert_eq!(nix::unistd::read(&r2, &mut buf).unwrap(), 1);
    }
}
