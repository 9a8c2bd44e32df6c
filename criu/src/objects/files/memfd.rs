//! memfd files: `memfd_file_entry` per open file, one `memfd_inode_entry`
//! per memfd in `memfd.img`, and each memfd's content as shmem pages
//! (`pagemap-shmem-<shmid>.img`, offsets in the file as addresses, plus a
//! `pages-<id>.img`), as upstream CRIU writes them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::Whence;

use crate::image::{self, magic, pages, pb};

use super::super::{Error, Result};
use super::{no_owner, reopen};

const PAGE: u64 = pages::PAGE_SIZE;

/// Name of a memfd from its /proc link (`/memfd:NAME (deleted)`).
pub fn name_of(link: &str) -> Option<&str> {
    let l = link.strip_suffix(" (deleted)").unwrap_or(link);
    l.strip_prefix("/memfd:")
}

/// The device memfds live on here (a memfd made in criu tells).
pub fn memfd_dev() -> Option<u64> {
    let fd = memfd_create("criu-probe", MFdFlags::MFD_CLOEXEC).ok()?;
    nix::sys::stat::fstat(&fd).ok().map(|st| st.st_dev)
}

/// One memfd inode of a dump: its entry and its content (page runs at
/// their offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub entry: pb::MemfdInodeEntry,
    pub pages_id: u32,
    pub runs: Vec<(u64, Vec<u8>)>,
}

/// Dump half, per open file.
pub fn entry(id: u32, flags: u32, pos: u64, inode_id: u32) -> pb::MemfdFileEntry {
    pb::MemfdFileEntry {
        id,
        flags: flags & !(libc::O_CLOEXEC as u32),
        pos,
        fown: no_owner(),
        inode_id,
    }
}

/// Dump half, per inode: name, owner, size, seals and content.
pub fn dump_inode(
    pid: i32,
    fd: i32,
    name: &str,
    file: BorrowedFd<'_>,
    st: &FileStat,
    inode_id: u32,
    pages_id: u32,
) -> Result<Inode> {
    // fd < 0: seen through a mapping only.
    let by = if fd < 0 {
        "a mapping".to_string()
    } else {
        format!("fd {fd}")
    };
    let sys_err = |what: &str, errno| Error::Sys {
        pid,
        what: format!("{what} of memfd {name} ({by})"),
        errno,
    };
    let seals = fcntl(file, FcntlArg::F_GET_SEALS).map_err(|e| sys_err("F_GET_SEALS", e))?;
    let rd = std::fs::File::from(
        reopen(file, OFlag::O_RDONLY).map_err(|e| sys_err("reopening for reading", e))?,
    );
    let size = st.st_size as u64;
    let mut runs = Vec::new();
    let mut at = 0u64;
    while at < size {
        let data = match nix::unistd::lseek(&rd, at as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(sys_err("SEEK_DATA", e)),
        };
        let hole = (nix::unistd::lseek(&rd, data as i64, Whence::SeekHole)
            .map_err(|e| sys_err("SEEK_HOLE", e))? as u64)
            .min(size);
        let start = data / PAGE * PAGE;
        let end = hole.div_ceil(PAGE) * PAGE;
        let mut buf = vec![0u8; (end - start) as usize];
        let valid = (size.min(end) - start) as usize;
        rd.read_exact_at(&mut buf[..valid], start)
            .map_err(|source| Error::Io {
                pid,
                what: format!("reading memfd {name} ({by}) at {start}"),
                source,
            })?;
        runs.push((start, buf));
        if end <= at {
            break;
        }
        at = end;
    }
    Ok(Inode {
        entry: pb::MemfdInodeEntry {
            name: name.to_string(),
            uid: st.st_uid,
            gid: st.st_gid,
            size,
            shmid: st.st_ino as u32,
            seals: seals as u32,
            inode_id: u64::from(inode_id),
            hugetlb_flag: None,
            mode: Some(st.st_mode),
        },
        pages_id,
        runs,
    })
}

/// Name of the pagemap of shmem `shmid`.
pub fn pagemap_name(shmid: u32) -> String {
    format!("pagemap-shmem-{shmid}.img")
}

/// Writes `memfd.img` and the content of every inode.
pub fn write(dir: &Path, inodes: &[Inode]) -> Result<()> {
    image::write_image(
        dir,
        "memfd.img",
        magic::MEMFD_INODE,
        inodes.iter().map(|i| &i.entry),
    )?;
    for i in inodes.iter().filter(|i| i.entry.size > 0) {
        let mut map =
            image::ImageWriter::create(dir, &pagemap_name(i.entry.shmid), magic::SHMEM_PAGEMAP)?;
        map.write(&pb::PagemapHead {
            pages_id: i.pages_id,
        })?;
        let mut body = Vec::new();
        for (off, data) in &i.runs {
            map.write(&pb::PagemapEntry {
                vaddr: *off,
                compat_nr_pages: 0,
                in_parent: None,
                flags: Some(pages::PE_PRESENT),
                nr_pages: Some(data.len() as u64 / PAGE),
            })?;
            body.extend_from_slice(data);
        }
        map.finish()?;
        let p = dir.join(pages::pages_file(i.pages_id));
        std::fs::write(&p, &body).map_err(|source| Error::File {
            path: p,
            what: "writing memfd pages",
            source,
        })?;
    }
    Ok(())
}

/// Reads `memfd.img` (absent: no memfds).
pub fn read_inodes(dir: &Path) -> Result<Vec<pb::MemfdInodeEntry>> {
    if !dir.join("memfd.img").exists() {
        return Ok(Vec::new());
    }
    Ok(image::read_image(dir, "memfd.img", magic::MEMFD_INODE)?)
}

/// Reads the content runs of shmem `shmid`.
fn read_content(dir: &Path, shmid: u32) -> Result<Vec<(u64, Vec<u8>)>> {
    let name = pagemap_name(shmid);
    let mut r = image::ImageReader::open(dir, &name, magic::SHMEM_PAGEMAP)?;
    let head: pb::PagemapHead = r.next()?.ok_or_else(|| Error::Mismatch {
        what: format!("{name} has no head"),
    })?;
    let pages_path = dir.join(pages::pages_file(head.pages_id));
    let pf = std::fs::File::open(&pages_path).map_err(|source| Error::File {
        path: pages_path.clone(),
        what: "opening memfd pages",
        source,
    })?;
    let mut off = 0u64;
    let mut out = Vec::new();
    while let Some(e) = r.next::<pb::PagemapEntry>()? {
        let n = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        if e.flags.unwrap_or(pages::PE_PRESENT) & pages::PE_PRESENT == 0 {
            continue;
        }
        let len = n
            .checked_mul(PAGE)
            .filter(|l| *l <= 1 << 40)
            .ok_or_else(|| Error::Mismatch {
                what: format!("{name}: run at {:#x} of {n} pages is too big", e.vaddr),
            })?;
        let mut buf = vec![0u8; len as usize];
        pf.read_exact_at(&mut buf, off)
            .map_err(|source| Error::File {
                path: pages_path.clone(),
                what: "reading memfd pages",
                source,
            })?;
        off += len;
        out.push((e.vaddr, buf));
    }
    Ok(out)
}

/// Restore half, per inode: a memfd with the name, content, size and owner
/// of `e`; its seals come later ([`seal`]).
pub fn make_inode(dir: &Path, e: &pb::MemfdInodeEntry) -> Result<OwnedFd> {
    let what = |w: &str, errno| Error::Mismatch {
        what: format!("memfd {} (inode {}): {w}: {errno}", e.name, e.inode_id),
    };
    let only_seal_seal = e.seals == libc::F_SEAL_SEAL as u32;
    let mut fl = MFdFlags::MFD_CLOEXEC;
    if !only_seal_seal {
        fl |= MFdFlags::MFD_ALLOW_SEALING;
    }
    if let Some(h) = e.hugetlb_flag {
        fl |= MFdFlags::from_bits_retain(h);
    }
    let fd = memfd_create(e.name.as_str(), fl).map_err(|er| what("memfd_create", er))?;
    nix::unistd::ftruncate(&fd, e.size as i64).map_err(|er| what("ftruncate", er))?;
    if e.size > 0 {
        let f = std::fs::File::from(fd.try_clone().map_err(|er| Error::Mismatch {
            what: format!("memfd {}: dup: {er}", e.name),
        })?);
        for (off, data) in read_content(dir, e.shmid)? {
            let keep = e.size.saturating_sub(off).min(data.len() as u64) as usize;
            f.write_all_at(&data[..keep], off)
                .map_err(|er| Error::Mismatch {
                    what: format!("memfd {}: writing content at {off}: {er}", e.name),
                })?;
        }
    }
    nix::unistd::fchown(
        &fd,
        Some(nix::unistd::Uid::from_raw(e.uid)),
        Some(nix::unistd::Gid::from_raw(e.gid)),
    )
    .map_err(|er| what("fchown", er))?;
    if let Some(mode) = e.mode {
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode & 0o7777))
            .map_err(|er| what("fchmod", er))?;
    }
    Ok(fd)
}

/// Restore half, once every mapping of the memfd is made: its seals (a
/// shared writable mapping cannot be made after F_SEAL_FUTURE_WRITE).
pub fn seal(fd: &OwnedFd, e: &pb::MemfdInodeEntry) -> Result<()> {
    let only_seal_seal = e.seals == libc::F_SEAL_SEAL as u32;
    if !only_seal_seal && e.seals != 0 {
        fcntl(
            fd,
            FcntlArg::F_ADD_SEALS(SealFlag::from_bits_retain(e.seals as i32)),
        )
        .map_err(|er| Error::Mismatch {
            what: format!(
                "memfd {} (inode {}): F_ADD_SEALS {:#x}: {er}",
                e.name, e.inode_id, e.seals
            ),
        })?;
    }
    Ok(())
}

/// Restore half, per open file: an open file of memfd `inode` with the
/// flags and offset of `e`. `first_rw` says the memfd's own fd is still
/// free to hand out (once, to a read-write user).
pub fn open(inode: &OwnedFd, e: &pb::MemfdFileEntry, first_rw: &mut bool) -> Result<OwnedFd> {
    let what = |w: &str, errno| Error::Mismatch {
        what: format!("memfd file id {}: {w}: {errno}", e.id),
    };
    let rw = e.flags & libc::O_ACCMODE as u32 == libc::O_RDWR as u32;
    let fd = if rw && *first_rw {
        *first_rw = false;
        let fd = inode.try_clone().map_err(|er| Error::Mismatch {
            what: format!("memfd file id {}: dup: {er}", e.id),
        })?;
        let st = OFlag::from_bits_retain(e.flags as i32 & !(libc::O_ACCMODE | libc::O_CLOEXEC));
        fcntl(&fd, FcntlArg::F_SETFL(st)).map_err(|er| what("F_SETFL", er))?;
        fd
    } else {
        let creation = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
        reopen(
            inode.as_fd(),
            OFlag::from_bits_retain(e.flags as i32 & !creation),
        )
        .map_err(|er| what("reopen", er))?
    };
    nix::unistd::lseek(&fd, e.pos as i64, Whence::SeekSet).map_err(|er| what("lseek", er))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_link() {
        assert_eq!(name_of("/memfd:golden (deleted)"), Some("golden"));
        assert_eq!(name_of("/memfd:a b"), Some("a b"));
        assert_eq!(name_of("/tmp/memfd:x"), None);
    }

    #[test]
    fn inode_round_trips_through_images() {
        let fd = memfd_create(
            "t-memfd",
            MFdFlags::MFD_ALLOW_SEALING | MFdFlags::MFD_CLOEXEC,
        )
        .unwrap();
        let f = std::fs::File::from(fd.try_clone().unwrap());
        f.write_all_at(b"front", 0).unwrap();
        f.write_all_at(b"back", 5 * PAGE + 10).unwrap();
        nix::unistd::ftruncate(&fd, (8 * PAGE) as i64).unwrap();
        fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_GROW)).unwrap();
        let st = nix::sys::stat::fstat(&fd).unwrap();
        let ino = dump_inode(0, 3, "t-memfd", fd.as_fd(), &st, 1, 77).unwrap();
        assert_eq!(ino.entry.seals, libc::F_SEAL_GROW as u32);
        assert_eq!(ino.entry.size, 8 * PAGE);
        let saved: usize = ino.runs.iter().map(|(_, d)| d.len()).sum();
        assert_eq!(saved as u64, 2 * PAGE, "only the pages with data");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), std::slice::from_ref(&ino)).unwrap();
        let back = read_inodes(dir.path()).unwrap();
        assert_eq!(back, vec![ino.entry.clone()]);
        let m = make_inode(dir.path(), &back[0]).unwrap();
        assert_eq!(
            fcntl(&m, FcntlArg::F_GET_SEALS).unwrap(),
            0,
            "not sealed yet"
        );
        seal(&m, &back[0]).unwrap();
        let e = entry(5, libc::O_RDWR as u32, 3, 1);
        let mut first = true;
        let o = open(&m, &e, &mut first).unwrap();
        assert!(!first);
        let g = std::fs::File::from(o);
        let mut buf = [0u8; 4];
        g.read_exact_at(&mut buf, 5 * PAGE + 10).unwrap();
        assert_eq!(&buf, b"back");
        assert_eq!(g.metadata().unwrap().len(), 8 * PAGE);
        let seals = fcntl(&g, FcntlArg::F_GET_SEALS).unwrap();
        assert_eq!(seals, libc::F_SEAL_GROW);
        assert!(g.write_all_at(b"x", 8 * PAGE).is_err());
        assert_eq!(
            nix::unistd::lseek(&g, 0, Whence::SeekCur).unwrap(),
            3,
            "position kept"
        );
        // A second user gets its own open file description.
        let e2 = entry(6, libc::O_RDONLY as u32, 0, 1);
        let o2 = open(&m, &e2, &mut first).unwrap();
        assert_eq!(nix::unistd::lseek(&o2, 0, Whence::SeekCur).unwrap(), 0);
    }
}
