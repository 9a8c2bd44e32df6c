//! Unlinked open files ("ghost files"): the content of a regular file whose
//! last name is gone is saved in `ghost-file-N.img` (`ghost_file_entry`,
//! then the content: raw for small files, else `ghost_chunk_entry` + bytes
//! per run of data, holes left out), and `remap-fpath.img` ties the file's
//! `reg_file_entry` to it. At restore the file is made again at its old
//! path (or beside it if that name is taken again), opened, and unlinked.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::Whence;

use crate::image::{self, magic, pb};

use super::super::{Error, Result};
use super::reopen;

/// CRIU's default `--ghost-limit`: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;
/// Files this small are saved in one piece, bigger ones in chunks.
pub const CHUNKS_THRESHOLD: u64 = 3 * 4096;
/// The `remap_type` of a ghost.
pub const REMAP_GHOST: i32 = 1;

/// A ghost file's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ghost {
    pub id: u32,
    pub entry: pb::GhostFileEntry,
    /// (offset, bytes) runs of data; one run at 0 when not chunked.
    pub runs: Vec<(u64, Vec<u8>)>,
}

/// The name an unlinked file had: its /proc link without " (deleted)".
pub fn strip_deleted(link: &str) -> &str {
    link.strip_suffix(" (deleted)").unwrap_or(link)
}

/// Dump half: saves the content of unlinked file `file` (ghost `id`), if it
/// is within `limit` bytes of disk.
pub fn dump(
    pid: i32,
    fd: i32,
    id: u32,
    path: &str,
    file: BorrowedFd<'_>,
    st: &FileStat,
    limit: u64,
) -> Result<Ghost> {
    // fd < 0: seen through a mapping only.
    let by = if fd < 0 {
        "a mapping".to_string()
    } else {
        format!("fd {fd}")
    };
    let used = (st.st_blocks as u64).saturating_mul(512);
    if used > limit {
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "{by} holds the unlinked file {path} of {used} bytes, over the ghost limit of \
                 {limit} (raise --ghost-limit)"
            ),
        });
    }
    let size = st.st_size as u64;
    let chunks = size >= CHUNKS_THRESHOLD;
    let tv = |sec: i64, nsec: i64| pb::Timeval {
        tv_sec: sec as u64,
        tv_usec: (nsec / 1000) as u64,
    };
    let entry = pb::GhostFileEntry {
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode,
        dev: Some(st.st_dev as u32),
        ino: Some(st.st_ino),
        rdev: None,
        atim: Some(tv(st.st_atime, st.st_atime_nsec)),
        mtim: Some(tv(st.st_mtime, st.st_mtime_nsec)),
        chunks: chunks.then_some(true),
        size: chunks.then_some(size),
        symlnk_target: None,
    };
    let io = |what: &str, source| Error::Io {
        pid,
        what: format!("{what} unlinked file {path} ({by})"),
        source,
    };
    // Reopened, since the task's own fd may be write-only.
    let rd = std::fs::File::from(reopen(file, OFlag::O_RDONLY).map_err(|errno| Error::Sys {
        pid,
        what: format!("reopening unlinked file {path} ({by}) to read it"),
        errno,
    })?);
    let mut runs = Vec::new();
    if chunks {
        for (off, len) in data_runs(rd.as_fd(), size) {
            let mut buf = vec![0u8; len as usize];
            rd.read_exact_at(&mut buf, off)
                .map_err(|e| io("reading", e))?;
            runs.push((off, buf));
        }
    } else {
        let mut buf = Vec::with_capacity(size as usize);
        (&rd)
            .take(size)
            .read_to_end(&mut buf)
            .map_err(|e| io("reading", e))?;
        runs.push((0, buf));
    }
    Ok(Ghost { id, entry, runs })
}

/// The (offset, length) runs of data in the first `size` bytes of `f`,
/// found with SEEK_DATA/SEEK_HOLE (all of it where these are unknown).
fn data_runs(f: BorrowedFd<'_>, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < size {
        let data = match nix::unistd::lseek(f, at as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(_) => {
                out.push((at, size - at));
                break;
            }
        };
        let hole = nix::unistd::lseek(f, data as i64, Whence::SeekHole)
            .map(|h| h as u64)
            .unwrap_or(size)
            .min(size);
        if hole <= data {
            break;
        }
        out.push((data, hole - data));
        at = hole;
    }
    out
}

/// Name of ghost `id`'s image.
pub fn image_name(id: u32) -> String {
    format!("ghost-file-{id}.img")
}

/// Writes `ghost-file-<id>.img`.
pub fn write(dir: &Path, g: &Ghost) -> Result<()> {
    let mut w = image::ImageWriter::create(dir, &image_name(g.id), magic::GHOST_FILE)?;
    w.write(&g.entry)?;
    if g.entry.chunks == Some(true) {
        for (off, data) in &g.runs {
            w.write(&pb::GhostChunkEntry {
                len: data.len() as u64,
                off: *off,
            })?;
            w.write_raw(data)?;
        }
    } else {
        for (_, data) in &g.runs {
            w.write_raw(data)?;
        }
    }
    w.finish()?;
    Ok(())
}

/// Reads `ghost-file-<id>.img`.
pub fn read(dir: &Path, id: u32) -> Result<Ghost> {
    let mut r = image::ImageReader::open(dir, &image_name(id), magic::GHOST_FILE)?;
    let entry: pb::GhostFileEntry = r.next()?.ok_or_else(|| Error::Mismatch {
        what: format!("{} has no ghost_file_entry", image_name(id)),
    })?;
    let mut runs = Vec::new();
    if entry.chunks == Some(true) {
        while let Some(c) = r.next::<pb::GhostChunkEntry>()? {
            runs.push((c.off, r.read_raw(c.len)?));
        }
    } else {
        runs.push((0, r.read_rest()?));
    }
    Ok(Ghost { id, entry, runs })
}

/// Restore half: makes the ghost again near `path`, fills it, unlinks it,
/// and returns an fd that holds it (read-write) for its users to reopen.
pub fn make(path: &str, g: &Ghost) -> Result<OwnedFd> {
    let alt = format!("{path}.cr.{:x}.ghost", g.id);
    let at = if Path::new(path).symlink_metadata().is_err() {
        path
    } else {
        alt.as_str()
    };
    let err = |what: &str, e: nix::errno::Errno| Error::Mismatch {
        what: format!("ghost file {at} (ghost {}): {what}: {e}", g.id),
    };
    if g.entry.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::Mismatch {
            what: format!(
                "ghost {} of {path} has mode {:o}; only regular files can be made again",
                g.id, g.entry.mode
            ),
        });
    }
    let fd = nix::fcntl::open(
        at,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| err("create", e))?;
    let unlink_on_err = |e: Error| {
        let _ = nix::unistd::unlink(at);
        e
    };
    (|| {
        let f = std::fs::File::from(fd.try_clone().map_err(|e| Error::Mismatch {
            what: format!("ghost file {at}: dup: {e}"),
        })?);
        for (off, data) in &g.runs {
            f.write_all_at(data, *off).map_err(|e| Error::Mismatch {
                what: format!(
                    "ghost file {at}: writing {} bytes at {off}: {e}",
                    data.len()
                ),
            })?;
        }
        let size = g.entry.size.unwrap_or_else(|| {
            g.runs
                .iter()
                .map(|(o, d)| o + d.len() as u64)
                .max()
                .unwrap_or(0)
        });
        nix::unistd::ftruncate(&fd, size as i64).map_err(|e| err("ftruncate", e))?;
        nix::unistd::fchown(
            &fd,
            Some(nix::unistd::Uid::from_raw(g.entry.uid)),
            Some(nix::unistd::Gid::from_raw(g.entry.gid)),
        )
        .map_err(|e| err("fchown", e))?;
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(g.entry.mode & 0o7777))
            .map_err(|e| err("fchmod", e))?;
        Ok(())
    })()
    .map_err(unlink_on_err)?;
    nix::unistd::unlink(at).map_err(|e| err("unlink", e))?;
    Ok(fd)
}

/// Restore half: an fd of the ghost held by `holder`, for file entry `reg`.
pub fn open(holder: &OwnedFd, reg: &pb::RegFileEntry) -> Result<OwnedFd> {
    let creation = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
    let flags = OFlag::from_bits_retain(reg.flags as i32 & !creation);
    let fd = reopen(holder.as_fd(), flags).map_err(|errno| Error::Mismatch {
        what: format!("reopening ghost of {} (id {}): {errno}", reg.name, reg.id),
    })?;
    if reg.pos != 0 {
        nix::unistd::lseek(&fd, reg.pos as i64, Whence::SeekSet).map_err(|errno| {
            Error::Mismatch {
                what: format!("cannot seek ghost of {} to {}: {errno}", reg.name, reg.pos),
            }
        })?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ghost_of(content: &[u8], holes_at: Option<u64>) -> (tempfile::TempDir, String, Ghost) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.data").to_string_lossy().into_owned();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all_at(content, 0).unwrap();
        if let Some(at) = holes_at {
            f.write_all_at(b"tail", at).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
        let st = nix::sys::stat::fstat(&f).unwrap();
        let g = dump(0, 3, 1, &path, f.as_fd(), &st, DEFAULT_GHOST_LIMIT).unwrap();
        (dir, path, g)
    }

    #[test]
    fn small_file_is_one_piece_and_comes_back() {
        let (dir, path, g) = ghost_of(b"hello ghost", None);
        assert_eq!(g.entry.chunks, None);
        write(dir.path(), &g).unwrap();
        let back = read(dir.path(), 1).unwrap();
        assert_eq!(back, g);
        let holder = make(&path, &back).unwrap();
        assert!(!Path::new(&path).exists());
        let reg = pb::RegFileEntry {
            id: 4,
            flags: libc::O_RDONLY as u32,
            pos: 6,
            name: path.clone(),
            ..Default::default()
        };
        let fd = open(&holder, &reg).unwrap();
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "ghost");
    }

    #[test]
    fn big_sparse_file_is_saved_in_chunks_without_its_hole() {
        let content = vec![7u8; 20000];
        let (dir, path, g) = ghost_of(&content, Some(1 << 20));
        assert_eq!(g.entry.chunks, Some(true));
        assert_eq!(g.entry.size, Some((1 << 20) + 4));
        let saved: usize = g.runs.iter().map(|(_, d)| d.len()).sum();
        assert!(saved < 100_000, "hole was saved: {saved} bytes");
        write(dir.path(), &g).unwrap();
        let back = read(dir.path(), 1).unwrap();
        assert_eq!(back, g);
        let holder = make(&path, &back).unwrap();
        let f = std::fs::File::from(holder);
        assert_eq!(f.metadata().unwrap().len(), (1 << 20) + 4);
        assert_eq!(f.metadata().unwrap().nlink(), 0);
        let mut buf = vec![0u8; 20000];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, content);
        let mut t = [0u8; 4];
        f.read_exact_at(&mut t, 1 << 20).unwrap();
        assert_eq!(&t, b"tail");
    }

    #[test]
    fn over_the_limit_is_refused_with_the_fd_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(&vec![1u8; 64 << 10], 0).unwrap();
        let st = nix::sys::stat::fstat(&f).unwrap();
        let e = dump(1, 9, 1, "/x/big", f.as_fd(), &st, 4096).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fd 9") && msg.contains("ghost limit"), "{msg}");
    }
}
