//! File locks held by the dumped tree (`--file-locks`): flock(), POSIX
//! (fcntl F_SETLK) and open file description locks, as the kernel shows
//! them in each fd's fdinfo `lock:` lines. Written to `file-locks.img`;
//! taken again by the owning task itself, on its own fd, once its files
//! are installed.

use std::path::Path;

use crate::image::{self, magic, pb};
use crate::proc::{self, FileLock, FileLockClass, FileLockType};
use crate::remote::Tracee;

use super::super::{Error, Result};

/// `file_lock_entry.flag` values (upstream's FL_* kinds).
pub const FL_POSIX: u32 = 1;
pub const FL_FLOCK: u32 = 2;
pub const FL_OFD: u32 = 4;
pub const FL_LEASE: u32 = 8;

/// `file_lock_entry.type` values (the fcntl lock types, for every kind).
pub const F_RDLCK: u32 = libc::F_RDLCK as u32;
pub const F_WRLCK: u32 = libc::F_WRLCK as u32;

pub const IMAGE: &str = "file-locks.img";

fn class_name(c: &FileLockClass) -> String {
    match c {
        FileLockClass::Posix => "a POSIX lock".into(),
        FileLockClass::Flock => "a flock() lock".into(),
        FileLockClass::Ofd => "an OFD lock".into(),
        FileLockClass::Lease => "a lease".into(),
        FileLockClass::Deleg => "a delegation".into(),
        FileLockClass::Access => "an access lock".into(),
        FileLockClass::Other(s) => format!("a lock of kind {s}"),
    }
}

/// The image entry of one held lock found on `fd` of the task `vpid`
/// (`pid` as criu sees it, for errors). Blocked waiters are not locks yet:
/// `Ok(None)`.
pub fn entry(pid: i32, vpid: i32, fd: i32, l: &FileLock) -> Result<Option<pb::FileLockEntry>> {
    if l.blocked {
        return Ok(None);
    }
    let refuse = |why: &str| Error::Unsupported {
        pid,
        what: format!("fd {fd} holds {}: {why}", class_name(&l.class)),
    };
    let flag = match l.class {
        FileLockClass::Posix => FL_POSIX,
        FileLockClass::Flock => FL_FLOCK,
        FileLockClass::Ofd => FL_OFD,
        FileLockClass::Lease => FL_LEASE,
        _ => return Err(refuse("criu-rs cannot dump it")),
    };
    let mode_ok = if flag == FL_LEASE {
        // A lease being broken (BREAKING, or BREAKER for the opener
        // waiting) would need the conflicting open made again.
        l.mode == "ACTIVE"
    } else {
        l.mode == "ADVISORY"
    };
    if !mode_ok {
        return Err(refuse(&format!("mode {} is not supported", l.mode)));
    }
    let ty = match l.lock_type {
        FileLockType::Read => F_RDLCK,
        FileLockType::Write => F_WRLCK,
        _ => return Err(refuse("its type is neither READ nor WRITE")),
    };
    let len = match l.end {
        None => 0,
        Some(end) if end >= l.start => end - l.start + 1,
        Some(end) => {
            return Err(refuse(&format!(
                "it ends ({end}) before it starts ({})",
                l.start
            )))
        }
    };
    let as_i64 = |v: u64, what: &str| {
        i64::try_from(v).map_err(|_| refuse(&format!("its {what} {v} is out of range")))
    };
    Ok(Some(pb::FileLockEntry {
        flag,
        r#type: ty,
        pid: vpid,
        fd,
        start: as_i64(l.start, "start")?,
        len: as_i64(len, "length")?,
    }))
}

/// The locks of a dump, gathered fd by fd.
#[derive(Debug, Default)]
pub struct LockDump {
    /// `--file-locks`: without it a held lock fails the dump.
    pub enabled: bool,
    pub entries: Vec<pb::FileLockEntry>,
    /// What each entry is held on: the open file description (files.img
    /// id) and, for POSIX locks, the owning process — the same lock shows
    /// on every fd of that description.
    keys: Vec<(u32, Option<i32>)>,
    /// The task being dumped: (pid as criu sees it, pid in the images).
    current: Option<(i32, i32)>,
}

impl LockDump {
    /// Notes the locks shown in the fdinfo of `fd` of `pid`, whose open
    /// file description has files.img id `file_id`.
    pub fn note(&mut self, pid: i32, fd: i32, file_id: u32, locks: &[FileLock]) -> Result<()> {
        let Some(first) = locks.iter().find(|l| !l.blocked) else {
            return Ok(());
        };
        if !self.enabled {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "fd {fd} holds {}; dump with --file-locks to keep file locks",
                    class_name(&first.class)
                ),
            });
        }
        let vpid = self.vpid(pid)?;
        for l in locks {
            let Some(e) = entry(pid, vpid, fd, l)? else {
                continue;
            };
            let key = (file_id, (e.flag == FL_POSIX).then_some(vpid));
            let same = |(k, x): (&(u32, Option<i32>), &pb::FileLockEntry)| {
                *k == key
                    && x.flag == e.flag
                    && x.start == e.start
                    && x.len == e.len
                    && x.r#type == e.r#type
            };
            if !self.keys.iter().zip(&self.entries).any(same) {
                self.keys.push(key);
                self.entries.push(e);
            }
        }
        Ok(())
    }

    /// The pid of `pid` in its own pid namespace (the last of `NSpid:`).
    fn vpid(&mut self, pid: i32) -> Result<i32> {
        if let Some((p, v)) = self.current {
            if p == pid {
                return Ok(v);
            }
        }
        let st = proc::read_status(pid)?;
        let v = st.ns_pid.last().copied().unwrap_or(pid);
        self.current = Some((pid, v));
        Ok(v)
    }

    /// Writes `file-locks.img` when there is any lock to keep.
    pub fn write(&self, dir: &Path) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        image::write_image(dir, IMAGE, magic::FILE_LOCKS, &self.entries)?;
        Ok(())
    }
}

/// Reads `file-locks.img` (none: no locks).
pub fn read(dir: &Path) -> Result<Vec<pb::FileLockEntry>> {
    if !dir.join(IMAGE).exists() {
        return Ok(Vec::new());
    }
    Ok(image::read_image(dir, IMAGE, magic::FILE_LOCKS)?)
}

/// The syscall (number and arguments) that takes lock `e` on the task's
/// fd, with a `struct flock` (if any) at `flock_addr`.
fn lock_call(
    e: &pb::FileLockEntry,
    flock_addr: u64,
) -> std::result::Result<(i64, [u64; 3]), String> {
    let fd = u64::try_from(e.fd).map_err(|_| format!("bad fd {}", e.fd))?;
    match e.flag {
        FL_FLOCK => {
            let op = match e.r#type {
                F_RDLCK => libc::LOCK_SH,
                F_WRLCK => libc::LOCK_EX,
                t => return Err(format!("flock type {t} is unknown")),
            };
            Ok((libc::SYS_flock, [fd, (op | libc::LOCK_NB) as u64, 0]))
        }
        FL_POSIX => Ok((libc::SYS_fcntl, [fd, libc::F_SETLK as u64, flock_addr])),
        FL_OFD => Ok((libc::SYS_fcntl, [fd, libc::F_OFD_SETLK as u64, flock_addr])),
        FL_LEASE => match e.r#type {
            F_RDLCK | F_WRLCK => Ok((
                libc::SYS_fcntl,
                [fd, libc::F_SETLEASE as u64, u64::from(e.r#type)],
            )),
            t => Err(format!("lease type {t:#x} is not supported")),
        },
        f => Err(format!("lock kind {f:#x} is unknown")),
    }
}

/// The `struct flock` of a POSIX or OFD lock, as bytes.
fn flock_bytes(e: &pb::FileLockEntry) -> Vec<u8> {
    // struct flock on x86_64: l_type (i16), l_whence (i16), pad (4),
    // l_start (i64), l_len (i64), l_pid (i32), pad (4).
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&(e.r#type as i16).to_ne_bytes());
    b.extend_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&e.start.to_ne_bytes());
    b.extend_from_slice(&e.len.to_ne_bytes());
    b.extend_from_slice(&0i32.to_ne_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

/// Takes again, inside the puppet `t` of task `pid` (its pid in the
/// images), every lock of `locks` that task held. Its fds must be in
/// place; `data_off` is free scratch space for a `struct flock`.
pub fn restore(t: &mut Tracee, pid: i32, locks: &[pb::FileLockEntry], data_off: u64) -> Result<()> {
    for e in locks.iter().filter(|e| e.pid == pid) {
        let mismatch = |why: String| Error::Mismatch {
            what: format!(
                "pid {pid}: file lock (kind {}, type {}) on fd {} at {}+{}: {why}",
                e.flag, e.r#type, e.fd, e.start, e.len
            ),
        };
        let addr = if e.flag == FL_FLOCK || e.flag == FL_LEASE {
            0
        } else {
            if e.r#type != F_RDLCK && e.r#type != F_WRLCK {
                return Err(mismatch(format!("lock type {} is unknown", e.r#type)));
            }
            t.scratch_put(data_off, &flock_bytes(e))?
        };
        let (nr, args) = lock_call(e, addr).map_err(mismatch)?;
        if e.flag == FL_LEASE {
            // Only the file's owner (by fsuid) may take a lease without
            // CAP_LEASE in the first user namespace: become it meanwhile.
            let mut stat = [0u8; std::mem::size_of::<libc::stat>()];
            let at = t.scratch_put(data_off, &stat)?;
            t.syscall(libc::SYS_fstat, &[args[0], at])?;
            t.scratch_get(data_off, &mut stat)?;
            let off = std::mem::offset_of!(libc::stat, st_uid);
            let uid = stat
                .get(off..off + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
                .ok_or_else(|| mismatch("fstat gave no uid".into()))?;
            let old = t.syscall(libc::SYS_setfsuid, &[u64::from(uid)])?;
            let r = t.syscall(nr, &args);
            t.syscall(libc::SYS_setfsuid, &[old])?;
            r?;
            continue;
        }
        t.syscall(nr, &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(class: FileLockClass, ty: FileLockType, start: u64, end: Option<u64>) -> FileLock {
        FileLock {
            id: 1,
            blocked: false,
            class,
            mode: "ADVISORY".into(),
            lock_type: ty,
            pid: 42,
            dev_ino: None,
            start,
            end,
        }
    }

    #[test]
    fn entries_carry_kind_type_and_length() {
        let e = entry(
            7,
            1,
            3,
            &lock(FileLockClass::Posix, FileLockType::Write, 10, Some(29)),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (e.flag, e.r#type, e.pid, e.fd, e.start, e.len),
            (FL_POSIX, F_WRLCK, 1, 3, 10, 20)
        );
        let e = entry(
            7,
            1,
            4,
            &lock(FileLockClass::Flock, FileLockType::Read, 0, None),
        )
        .unwrap()
        .unwrap();
        assert_eq!((e.flag, e.r#type, e.len), (FL_FLOCK, F_RDLCK, 0));
        let e = entry(
            7,
            1,
            5,
            &lock(FileLockClass::Ofd, FileLockType::Write, 100, None),
        )
        .unwrap()
        .unwrap();
        assert_eq!((e.flag, e.start, e.len), (FL_OFD, 100, 0));
    }

    #[test]
    fn waiters_are_skipped_and_breaking_leases_refused() {
        let mut l = lock(FileLockClass::Posix, FileLockType::Write, 0, None);
        l.blocked = true;
        assert!(entry(7, 7, 3, &l).unwrap().is_none());
        let mut l = lock(FileLockClass::Lease, FileLockType::Read, 0, None);
        l.mode = "BREAKING".into();
        let err = entry(7, 7, 3, &l).unwrap_err().to_string();
        assert!(
            err.contains("fd 3") && err.contains("lease") && err.contains("BREAKING"),
            "{err}"
        );
        let d = lock(FileLockClass::Deleg, FileLockType::Read, 0, None);
        assert!(entry(7, 7, 3, &d).is_err());
    }

    #[test]
    fn active_leases_are_kept_and_taken_with_setlease() {
        let mut l = lock(FileLockClass::Lease, FileLockType::Write, 0, None);
        l.mode = "ACTIVE".into();
        let e = entry(7, 1, 3, &l).unwrap().unwrap();
        assert_eq!(
            (e.flag, e.r#type, e.pid, e.fd, e.start, e.len),
            (FL_LEASE, F_WRLCK, 1, 3, 0, 0)
        );
        let (nr, args) = lock_call(&e, 0).unwrap();
        assert_eq!(nr, libc::SYS_fcntl);
        assert_eq!(args, [3, libc::F_SETLEASE as u64, libc::F_WRLCK as u64]);
    }

    #[test]
    fn without_the_option_a_lock_fails_the_dump_naming_pid_fd_and_kind() {
        let mut d = LockDump::default();
        let l = lock(FileLockClass::Ofd, FileLockType::Read, 0, None);
        let err = d.note(1234, 9, 1, &[l]).unwrap_err().to_string();
        assert!(err.contains("pid 1234") && err.contains("fd 9"), "{err}");
        assert!(err.contains("OFD") && err.contains("--file-locks"), "{err}");
        assert!(d.note(1234, 9, 1, &[]).is_ok());
    }

    #[test]
    fn one_entry_per_description_and_owner() {
        let mut d = LockDump {
            enabled: true,
            current: Some((50, 5)),
            ..Default::default()
        };
        let f = lock(FileLockClass::Flock, FileLockType::Write, 0, None);
        let p = lock(FileLockClass::Posix, FileLockType::Write, 0, Some(9));
        d.note(50, 3, 1, &[f.clone(), p.clone()]).unwrap();
        // fd 4 is a dup of fd 3: the same locks again.
        d.note(50, 4, 1, &[f.clone(), p.clone()]).unwrap();
        assert_eq!(d.entries.len(), 2);
        assert!(d.entries.iter().all(|e| e.fd == 3 && e.pid == 5));
        // Another description of the same file has its own locks.
        d.note(50, 5, 2, &[f]).unwrap();
        assert_eq!(d.entries.len(), 3);
    }

    #[test]
    fn calls_and_flock_layout() {
        let mut e = pb::FileLockEntry {
            flag: FL_FLOCK,
            r#type: F_WRLCK,
            pid: 1,
            fd: 6,
            start: 0,
            len: 0,
        };
        assert_eq!(
            lock_call(&e, 0).unwrap(),
            (
                libc::SYS_flock,
                [6, (libc::LOCK_EX | libc::LOCK_NB) as u64, 0]
            )
        );
        e.flag = FL_OFD;
        assert_eq!(
            lock_call(&e, 0x1000).unwrap(),
            (libc::SYS_fcntl, [6, libc::F_OFD_SETLK as u64, 0x1000])
        );
        e.flag = 16;
        assert!(lock_call(&e, 0).is_err());
        e.start = 10;
        e.len = 20;
        e.r#type = F_RDLCK;
        let b = flock_bytes(&e);
        assert_eq!(b.len(), std::mem::size_of::<libc::flock>());
        assert_eq!(&b[0..2], &(libc::F_RDLCK as i16).to_ne_bytes());
        assert_eq!(&b[8..16], &10i64.to_ne_bytes());
        assert_eq!(&b[16..24], &20i64.to_ne_bytes());
    }
}
