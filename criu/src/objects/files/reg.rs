//! Regular files (and directories, character and block devices, symlinks
//! opened with O_PATH|O_NOFOLLOW, all opened by path): `reg_file_entry`.
//!
//! Restore refuses a file that is no longer the one dumped
//! (`--file-validation`): its size must be the same and, when the dump
//! recorded the ELF build-id of the file, so must be that.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use nix::fcntl::OFlag;
use nix::sys::stat::FileStat;

use crate::image::pb;
use crate::proc;

use super::super::{Error, Result};
use super::{no_owner, reopen};

/// How restore tells a file is still the one that was dumped
/// (`--file-validation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// The size must match (the default).
    #[default]
    FileSize,
    /// The size, and the ELF build-id of files that have one.
    BuildId,
}

impl Validation {
    /// The method by its CRIU name (`filesize`, `buildid`).
    pub fn parse(s: &str) -> Option<Validation> {
        match s {
            "filesize" => Some(Validation::FileSize),
            "buildid" => Some(Validation::BuildId),
            _ => None,
        }
    }
}

/// Who a file is opened for, to name in errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<i32>,
    pub fd: Option<u32>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.fd, self.pid) {
            (Some(fd), Some(pid)) => write!(f, "fd {fd} of pid {pid}"),
            (None, Some(pid)) => write!(f, "a file of pid {pid}"),
            (Some(fd), None) => write!(f, "fd {fd}"),
            (None, None) => write!(f, "a file"),
        }
    }
}

/// How much of a file the build-id is looked for in (it sits in the
/// first program headers' notes).
const BUILD_ID_SCAN: usize = 1 << 20;
const NT_GNU_BUILD_ID: u32 = 3;
const PT_NOTE: u32 = 4;

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// The GNU build-id of the ELF file whose first bytes are `head` (at most
/// [`BUILD_ID_SCAN`] of them), from the notes of its PT_NOTE program
/// headers; None when it is no ELF file or has none. Never panics on bad
/// input.
pub fn elf_build_id(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() < 5 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match head.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u64> {
        let b: [u8; 2] = head.get(o..o.checked_add(2)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b: [u8; 4] = head.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = head.get(o..o.checked_add(8)?)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let word = |o: usize| if wide { u64_at(o) } else { u32_at(o) };
    // e_phoff, e_phentsize, e_phnum
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(32)?, u16_at(54)?, u16_at(56)?)
    } else {
        (u32_at(28)?, u16_at(42)?, u16_at(44)?)
    };
    let phoff = usize::try_from(phoff).ok()?;
    let phentsize = usize::try_from(phentsize).ok()?;
    for i in 0..usize::try_from(phnum).ok()? {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != u64::from(PT_NOTE) {
            continue;
        }
        let (off, size) = if wide {
            (u64_at(ph + 8)?, u64_at(ph + 32)?)
        } else {
            (word(ph + 4)?, word(ph + 16)?)
        };
        let start = usize::try_from(off).ok()?;
        let end = start
            .checked_add(usize::try_from(size).ok()?)?
            .min(head.len());
        let mut n = start;
        while n.checked_add(12)? <= end {
            let namesz = usize::try_from(u32_at(n)?).ok()?;
            let descsz = usize::try_from(u32_at(n + 4)?).ok()?;
            let ty = u32_at(n + 8)?;
            let desc = n.checked_add(12)?.checked_add(align4(namesz)?)?;
            let next = desc.checked_add(align4(descsz)?)?;
            if ty == u64::from(NT_GNU_BUILD_ID) {
                if descsz == 0 || descsz > 512 {
                    return None;
                }
                return head
                    .get(desc..desc.checked_add(descsz)?)
                    .map(<[u8]>::to_vec);
            }
            n = next;
        }
    }
    None
}

/// The build-id as `reg_file_entry.build_id` holds it: native-endian
/// 32-bit words, the last one padded with zeros.
pub fn build_id_words(id: &[u8]) -> Vec<u32> {
    id.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_ne_bytes(w)
        })
        .collect()
}

/// The build-id words of the regular file `file` (any open mode, O_PATH
/// too), when it is an ELF file that has one.
fn build_id_of(file: BorrowedFd<'_>, st: &FileStat) -> Option<Vec<u32>> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size < 5 {
        return None;
    }
    let f = std::fs::File::from(reopen(file, OFlag::O_RDONLY).ok()?);
    let len = usize::try_from(st.st_size).ok()?.min(BUILD_ID_SCAN);
    let mut head = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    head.truncate(got);
    elf_build_id(&head).map(|id| build_id_words(&id))
}

/// Whether a file opened with `flags` gets its size checked: not a log
/// file (write-only and appending), whose size is expected to move.
fn size_checked(flags: u32) -> bool {
    let wronly = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
    !(wronly && flags & libc::O_APPEND as u32 != 0)
}

fn stat_entry(st: &FileStat, flags: u32) -> (Option<u64>, Option<u32>) {
    let size = (st.st_mode & libc::S_IFMT == libc::S_IFREG && size_checked(flags))
        .then_some(st.st_size as u64);
    (size, Some(st.st_mode))
}

/// Dump half for an fd (`file`, fetched into criu): the file, its offset,
/// its open flags and what restore validates it with.
#[allow(clippy::too_many_arguments)]
pub fn dump(
    _pid: i32,
    _fd: i32,
    id: u32,
    path: &str,
    info: &proc::Fdinfo,
    st: &FileStat,
    file: Option<BorrowedFd<'_>>,
    validation: Validation,
) -> Result<pb::RegFileEntry> {
    let flags = info.flags & !(libc::O_CLOEXEC as u32);
    let (size, mode) = stat_entry(st, flags);
    let build_id = match (validation, file) {
        (Validation::BuildId, Some(f)) if size.is_some() => build_id_of(f, st).unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(pb::RegFileEntry {
        id,
        flags,
        // O_PATH files have no offset.
        pos: if flags & libc::O_PATH as u32 != 0 {
            0
        } else {
            info.pos
        },
        fown: no_owner(),
        name: path.to_string(),
        size,
        mode,
        build_id,
        ..Default::default()
    })
}

/// Dump half for a file known only by path (exe, mapping, cwd, root).
pub fn for_path(pid: i32, id: u32, path: &str, validation: Validation) -> Result<pb::RegFileEntry> {
    let st = crate::objects::ns::mnt::stat_in_ns_of(pid, path)?;
    let (size, mode) = stat_entry(&st, 0);
    let build_id = if validation == Validation::BuildId && size.is_some() {
        crate::objects::ns::mnt::open_in_ns_of(pid, path, OFlag::O_PATH | OFlag::O_CLOEXEC)
            .ok()
            .and_then(|f| build_id_of(f.as_fd(), &st))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(pb::RegFileEntry {
        id,
        flags: 0,
        pos: 0,
        fown: no_owner(),
        name: path.to_string(),
        size,
        mode,
        build_id,
        ..Default::default()
    })
}

/// Refuses `file` (opened for `who`, now `st`) when it is no longer what
/// entry `e` recorded: another size, or (with `build_ids`) another
/// build-id.
pub fn validate(
    e: &pb::RegFileEntry,
    file: BorrowedFd<'_>,
    st: &FileStat,
    who: Holder,
    build_ids: bool,
) -> Result<()> {
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    if let Some(size) = e.size {
        if regular && st.st_size as u64 != size {
            return Err(Error::Mismatch {
                what: format!(
                    "file {} ({who}, file id {}) changed size since the dump: {size} bytes at dump, {} bytes now",
                    e.name, e.id, st.st_size
                ),
            });
        }
    }
    if build_ids && regular && !e.build_id.is_empty() {
        // A file whose build-id cannot be read now is judged by its size
        // only, as CRIU does.
        if let Some(now) = build_id_of(file, st) {
            if now != e.build_id {
                return Err(Error::Mismatch {
                    what: format!(
                        "file {} ({who}, file id {}) has another build-id than at dump: {} then, {} now",
                        e.name,
                        e.id,
                        hex_words(&e.build_id),
                        hex_words(&now)
                    ),
                });
            }
        }
    }
    Ok(())
}

fn hex_words(w: &[u32]) -> String {
    w.iter()
        .flat_map(|x| x.to_ne_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `--file-validation filesize` at restore: the build-ids a dump recorded
/// are not compared (nor anywhere else: mappings, executables).
pub fn forget_build_ids(files: &mut [pb::FileEntry]) {
    for r in files.iter_mut().filter_map(|f| f.reg.as_mut()) {
        r.build_id.clear();
    }
}

/// Refuses a file known by path (a mapping, the exe) that is no longer
/// what was dumped: its size, and its build-id when the dump recorded one.
pub fn check_unchanged(e: &pb::RegFileEntry) -> Result<()> {
    let f =
        crate::objects::ns::mnt::open_in_tree(e.name.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC)
            .map_err(|errno| Error::Mismatch {
                what: format!("file {} (id {}) cannot be found: {errno}", e.name, e.id),
            })?;
    let st = nix::sys::stat::fstat(&f).map_err(|errno| Error::Mismatch {
        what: format!("fstat of {} (id {}): {errno}", e.name, e.id),
    })?;
    validate(e, f.as_fd(), &st, Holder::default(), true)
}

/// The flags a file is opened again with: those of the entry without the
/// ones that only mean something at creation.
pub fn open_flags(flags: u32) -> OFlag {
    let creation = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY;
    // O_TMPFILE holds O_DIRECTORY: only its own bit goes.
    let tmpfile = libc::O_TMPFILE & !libc::O_DIRECTORY;
    OFlag::from_bits_retain(flags as i32 & !creation & !tmpfile) | OFlag::O_CLOEXEC
}

/// Restore half: opens the file at `path` (the entry's name, or another
/// name of the same inode; below the tree's root when it has one) with the
/// entry's flags, checks it is the file dumped, and puts it at its offset.
pub fn open_at_path(
    e: &pb::RegFileEntry,
    path: &str,
    who: Holder,
    build_ids: bool,
) -> Result<OwnedFd> {
    let fd = crate::objects::ns::mnt::open_in_tree(path, open_flags(e.flags)).map_err(|errno| {
        Error::Mismatch {
            what: format!("cannot open {path} ({who}, file id {}): {errno}", e.id),
        }
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(|errno| Error::Mismatch {
        what: format!("fstat of {path} ({who}, file id {}): {errno}", e.id),
    })?;
    validate(e, fd.as_fd(), &st, who, build_ids)?;
    if e.pos != 0 && e.flags & libc::O_PATH as u32 == 0 {
        nix::unistd::lseek(&fd, e.pos as i64, nix::unistd::Whence::SeekSet).map_err(|errno| {
            Error::Mismatch {
                what: format!("cannot seek {} ({who}) to {}: {errno}", e.name, e.pos),
            }
        })?;
    }
    Ok(fd)
}

/// Restore half: opens the file again with its flags, at its offset.
pub fn open(e: &pb::RegFileEntry, who: Holder, build_ids: bool) -> Result<OwnedFd> {
    open_at_path(e, &e.name, who, build_ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A little-endian ELF64 with one PT_NOTE holding an unrelated note
    /// then a GNU build-id note.
    fn elf64(id: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let mut notes = Vec::new();
        for (name, ty, desc) in [(&b"XYZ\0"[..], 1u32, &b"abcdef"[..]), (b"GNU\0", 3, id)] {
            notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&ty.to_le_bytes());
            notes.extend_from_slice(name);
            notes.resize(align4(notes.len()).unwrap(), 0);
            notes.extend_from_slice(desc);
            notes.resize(align4(notes.len()).unwrap(), 0);
        }
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        let at = b.len() as u64;
        b[ph + 8..ph + 16].copy_from_slice(&at.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        b.extend_from_slice(&notes);
        b
    }

    #[test]
    fn finds_the_gnu_build_id_note() {
        let id: Vec<u8> = (1..=20).collect();
        assert_eq!(elf_build_id(&elf64(&id)), Some(id.clone()));
        // Cut short: not found rather than a panic.
        let whole = elf64(&id);
        assert_eq!(elf_build_id(&whole[..whole.len() - 4]), None);
        assert_eq!(elf_build_id(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn build_id_words_pad_the_last_word() {
        let w = build_id_words(&[1, 2, 3, 4, 5]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].to_ne_bytes(), [5, 0, 0, 0]);
        assert_eq!(hex_words(&w), "0102030405000000");
    }

    #[test]
    fn criu_own_binary_has_a_build_id_or_none_consistently() {
        // Whatever the linker did, reading twice gives the same answer,
        // and an id found is what the note says (bounded size).
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let head = &exe[..exe.len().min(BUILD_ID_SCAN)];
        let a = elf_build_id(head);
        assert_eq!(a, elf_build_id(head));
        if let Some(id) = a {
            assert!(!id.is_empty() && id.len() <= 512);
        }
    }

    #[test]
    fn log_files_are_not_size_checked() {
        let ap = (libc::O_WRONLY | libc::O_APPEND) as u32;
        assert!(!size_checked(ap));
        assert!(size_checked(libc::O_RDWR as u32 | libc::O_APPEND as u32));
        assert!(size_checked(libc::O_WRONLY as u32));
    }

    #[test]
    fn open_flags_drop_creation_bits_and_keep_o_path() {
        let f =
            open_flags((libc::O_PATH | libc::O_NOFOLLOW | libc::O_CREAT | libc::O_TRUNC) as u32);
        assert!(f.contains(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC));
        assert!(!f.intersects(OFlag::O_CREAT | OFlag::O_TRUNC));
        let d = open_flags((libc::O_RDONLY | libc::O_DIRECTORY) as u32);
        assert!(d.contains(OFlag::O_DIRECTORY));
    }

    #[test]
    fn a_changed_size_is_refused_naming_file_fd_pid_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let e = pb::RegFileEntry {
            id: 9,
            name: p.to_str().unwrap().into(),
            flags: libc::O_RDONLY as u32,
            pos: 3,
            size: Some(10),
            ..Default::default()
        };
        let who = Holder {
            pid: Some(4242),
            fd: Some(7),
        };
        let fd = open(&e, who, false).expect("same size opens");
        assert_eq!(
            nix::unistd::lseek(&fd, 0, nix::unistd::Whence::SeekCur),
            Ok(3)
        );
        std::fs::write(&p, b"0123").unwrap();
        let msg = open(&e, who, false).unwrap_err().to_string();
        for w in [e.name.as_str(), "fd 7", "pid 4242", "10 bytes", "4 bytes"] {
            assert!(msg.contains(w), "{w:?} missing from {msg}");
        }
    }

    #[test]
    fn another_build_id_is_refused_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("elf");
        std::fs::write(&p, elf64(&[0xaa; 20])).unwrap();
        let f = nix::fcntl::open(&p, OFlag::O_PATH, nix::sys::stat::Mode::empty()).unwrap();
        let st = nix::sys::stat::fstat(&f).unwrap();
        let e = dump(
            1,
            3,
            5,
            p.to_str().unwrap(),
            &proc::Fdinfo::default(),
            &st,
            Some(f.as_fd()),
            Validation::BuildId,
        )
        .unwrap();
        assert_eq!(e.build_id, build_id_words(&[0xaa; 20]));
        assert_eq!(e.pos, 0);
        // Same size, another id.
        std::fs::write(&p, elf64(&[0xbb; 20])).unwrap();
        let who = Holder::default();
        assert!(open(&e, who, false).is_ok());
        let msg = open(&e, who, true).unwrap_err().to_string();
        assert!(
            msg.contains("build-id") && msg.contains(&"aa".repeat(20)),
            "{msg}"
        );
        // Without a build-id at dump, nothing to compare.
        let no_id = dump(
            1,
            3,
            5,
            p.to_str().unwrap(),
            &proc::Fdinfo::default(),
            &st,
            Some(f.as_fd()),
            Validation::FileSize,
        )
        .unwrap();
        assert!(no_id.build_id.is_empty());
    }

    proptest! {
        #[test]
        fn build_id_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), wide in any::<bool>()) {
            let mut b = bytes;
            if b.len() >= 6 {
                b[..4].copy_from_slice(b"\x7fELF");
                b[4] = if wide { 2 } else { 1 };
                b[5] = 1;
            }
            let _ = elf_build_id(&b);
        }
    }
}
