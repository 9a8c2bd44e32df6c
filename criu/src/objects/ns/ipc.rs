//! IPC namespaces: the namespace's sysctls (`ipcns-var-ID.img`) and its
//! SysV shared memory segments (`ipcns-shm-ID.img`: each entry followed by
//! the segment's bytes, rounded up to 4). Message queues and semaphores
//! are refused at dump for now.

use std::path::Path;

use super::{in_ns, in_ns_as, Kind, Result};
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::sys;

/// What the images say of an ipc namespace.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub var: pb::IpcVarEntry,
    /// Each segment and its content.
    pub shm: Vec<(pb::IpcShmEntry, Vec<u8>)>,
}

fn shm_file(id: u32) -> String {
    format!("ipcns-shm-{id}.img")
}

/// One line of /proc/sysvipc/shm: `key shmid perms size cpid lpid nattch
/// uid gid cuid cgid …` (perms in octal).
pub fn parse_shm_line(line: &str) -> Option<pb::IpcShmEntry> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| w.get(i)?.parse::<i64>().ok();
    Some(pb::IpcShmEntry {
        desc: pb::IpcDescEntry {
            key: n(0)? as u32,
            id: n(1)? as u32,
            mode: u32::from_str_radix(w.get(2)?, 8).ok()?,
            uid: n(7)? as u32,
            gid: n(8)? as u32,
            cuid: n(9)? as u32,
            cgid: n(10)? as u32,
        },
        size: n(3)? as u64,
        ..Default::default()
    })
}

fn padded(len: u64) -> u64 {
    (len + 3) & !3
}

fn var_file(id: u32) -> String {
    format!("ipcns-var-{id}.img")
}

fn get(pid: i32, path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        pid,
        what: format!("reading {path} in the ipc namespace"),
        source,
    })
}

fn num<T: std::str::FromStr>(pid: i32, path: &str) -> Result<T> {
    let t = get(pid, path)?;
    t.trim().parse().map_err(|_| Error::Mismatch {
        what: format!("{path} of pid {pid}'s ipc namespace: not a number: {t:?}"),
    })
}

fn opt_num<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The sysctls that belong to the ipc namespace, and whether they are
/// optional (absent on some kernels).
const K: &str = "/proc/sys/kernel";
const MQ: &str = "/proc/sys/fs/mqueue";

fn read_var(pid: i32) -> Result<pb::IpcVarEntry> {
    let sem = get(pid, &format!("{K}/sem"))?;
    let sem_ctls: Vec<u32> = sem
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Ok(pb::IpcVarEntry {
        sem_ctls,
        msg_ctlmax: num(pid, &format!("{K}/msgmax"))?,
        msg_ctlmnb: num(pid, &format!("{K}/msgmnb"))?,
        msg_ctlmni: num(pid, &format!("{K}/msgmni"))?,
        auto_msgmni: opt_num(&format!("{K}/auto_msgmni")).unwrap_or(0),
        shm_ctlmax: num(pid, &format!("{K}/shmmax"))?,
        shm_ctlall: num(pid, &format!("{K}/shmall"))?,
        shm_ctlmni: num(pid, &format!("{K}/shmmni"))?,
        shm_rmid_forced: num(pid, &format!("{K}/shm_rmid_forced"))?,
        mq_queues_max: num(pid, &format!("{MQ}/queues_max"))?,
        mq_msg_max: num(pid, &format!("{MQ}/msg_max"))?,
        mq_msgsize_max: num(pid, &format!("{MQ}/msgsize_max"))?,
        mq_msg_default: opt_num(&format!("{MQ}/msg_default")),
        mq_msgsize_default: opt_num(&format!("{MQ}/msgsize_default")),
        msg_next_id: next_id(&format!("{K}/msg_next_id")),
        sem_next_id: next_id(&format!("{K}/sem_next_id")),
        shm_next_id: next_id(&format!("{K}/shm_next_id")),
    })
}

/// A `*_next_id` sysctl: None when unset (-1, the kernel's default).
fn next_id(path: &str) -> Option<u32> {
    opt_num::<i64>(path).filter(|&v| v >= 0).map(|v| v as u32)
}

/// The number of objects listed in a /proc/sysvipc file (after its header).
fn count_objects(text: &str) -> usize {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let (var, shm) = in_ns(pid, &[Kind::Ipc], || {
        for kind in ["msg", "sem"] {
            let t = get(pid, &format!("/proc/sysvipc/{kind}"))?;
            let n = count_objects(&t);
            if n > 0 {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "its ipc namespace holds {n} SysV {kind} object(s); dumping SysV objects is not supported yet"
                    ),
                });
            }
        }
        let text = get(pid, "/proc/sysvipc/shm")?;
        let mut shm = Vec::new();
        for l in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let e = parse_shm_line(l).ok_or_else(|| Error::Mismatch {
                what: format!("/proc/sysvipc/shm of pid {pid}'s ipc namespace: cannot parse {l:?}"),
            })?;
            let len = usize::try_from(e.size).unwrap_or(usize::MAX);
            let data = sys::sysv::with_segment(e.desc.id as i32, len, false, |b| b.to_vec())
                .map_err(|errno| Error::Sys {
                    pid,
                    what: format!("reading SysV segment {}", e.desc.id),
                    errno,
                })?;
            shm.push((e, data));
        }
        Ok((read_var(pid)?, shm))
    })?;
    image::write_image(dir, &var_file(id), magic::IPC_VAR, [&var])?;
    let mut w = image::ImageWriter::create(dir, &shm_file(id), magic::IPCNS_SHM)?;
    for (e, data) in &shm {
        w.write(e)?;
        let mut d = data.clone();
        d.resize(padded(e.size) as usize, 0);
        w.write_raw(&d)?;
    }
    w.finish()?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Images>> {
    if id == 0 || !dir.join(var_file(id)).exists() {
        return Ok(None);
    }
    let mut shm = Vec::new();
    if dir.join(shm_file(id)).exists() {
        let mut r = image::ImageReader::open(dir, &shm_file(id), magic::IPCNS_SHM)?;
        while let Some(e) = r.next::<pb::IpcShmEntry>()? {
            if e.in_pagemaps == Some(true) {
                return Err(Error::Unsupported {
                    pid: 0,
                    what: format!(
                        "{}: segment {} keeps its pages in a pagemap; not read yet",
                        shm_file(id),
                        e.desc.id
                    ),
                });
            }
            let mut data = r.read_raw(padded(e.size))?;
            data.truncate(e.size as usize);
            shm.push((e, data));
        }
    }
    Ok(Some(Images {
        var: image::read_one(dir, &var_file(id), magic::IPC_VAR)?,
        shm,
    }))
}

fn set(pid: i32, path: &str, v: impl std::fmt::Display) -> Result<()> {
    std::fs::write(path, v.to_string()).map_err(|source| Error::Io {
        pid,
        what: format!("writing {path} in the ipc namespace"),
        source,
    })
}

/// Makes segment `e` again with its id (through shm_next_id), owner, mode
/// and content.
fn make_segment(pid: i32, e: &pb::IpcShmEntry, data: &[u8]) -> Result<()> {
    let d = &e.desc;
    let sys_err = |what: String| move |errno| Error::Sys { pid, what, errno };
    set(pid, &format!("{K}/shm_next_id"), d.id as i32)?;
    let size = usize::try_from(e.size).unwrap_or(usize::MAX);
    let got = sys::sysv::shmget(d.key as i32, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600)
        .map_err(sys_err(format!("shmget of SysV segment {}", d.id)))?;
    if got as u32 != d.id {
        return Err(Error::Mismatch {
            what: format!("SysV segment {} came back with id {got}", d.id),
        });
    }
    sys::sysv::with_segment(got, data.len(), true, |b| b.copy_from_slice(data))
        .map_err(sys_err(format!("filling SysV segment {}", d.id)))?;
    sys::sysv::shm_set_owner(got, d.uid, d.gid, d.mode)
        .map_err(sys_err(format!("IPC_SET of SysV segment {}", d.id)))?;
    Ok(())
}

/// Sets the sysctls of the new ipc namespace of `pid`; `owner` is the
/// root of its user namespace (host ids), when it has its own.
pub fn restore(pid: i32, i: &Images, owner: Option<(u32, u32)>) -> Result<()> {
    let v = &i.var;
    in_ns_as(pid, &[Kind::Ipc], owner, || {
        if !v.sem_ctls.is_empty() {
            let s: Vec<String> = v.sem_ctls.iter().map(|x| x.to_string()).collect();
            set(pid, &format!("{K}/sem"), s.join(" "))?;
        }
        set(pid, &format!("{K}/msgmax"), v.msg_ctlmax)?;
        set(pid, &format!("{K}/msgmnb"), v.msg_ctlmnb)?;
        set(pid, &format!("{K}/msgmni"), v.msg_ctlmni)?;
        set(pid, &format!("{K}/shmmax"), v.shm_ctlmax)?;
        set(pid, &format!("{K}/shmall"), v.shm_ctlall)?;
        set(pid, &format!("{K}/shmmni"), v.shm_ctlmni)?;
        set(pid, &format!("{K}/shm_rmid_forced"), v.shm_rmid_forced)?;
        set(pid, &format!("{MQ}/queues_max"), v.mq_queues_max)?;
        set(pid, &format!("{MQ}/msg_max"), v.mq_msg_max)?;
        set(pid, &format!("{MQ}/msgsize_max"), v.mq_msgsize_max)?;
        if let Some(x) = v.mq_msg_default {
            set(pid, &format!("{MQ}/msg_default"), x)?;
        }
        if let Some(x) = v.mq_msgsize_default {
            set(pid, &format!("{MQ}/msgsize_default"), x)?;
        }
        Ok(())
    })?;
    // The *_next_id sysctls want CAP_CHECKPOINT_RESTORE over the
    // namespace (criu has it, its root has not): the segments and the ids
    // are made as criu.
    in_ns(pid, &[Kind::Ipc], || {
        for (e, data) in &i.shm {
            make_segment(pid, e, data)?;
        }
        for (name, x) in [
            ("msg_next_id", v.msg_next_id),
            ("sem_next_id", v.sem_next_id),
            ("shm_next_id", v.shm_next_id),
        ] {
            if let Some(x) = x {
                set(pid, &format!("{K}/{name}"), x as i32)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_counted() {
        let hdr = "       key      shmid perms                  size  cpid  lpid nattch\n";
        assert_eq!(count_objects(hdr), 0);
        let one = format!("{hdr}         0         3   600      65536   12   12   1\n");
        assert_eq!(count_objects(&one), 1);
    }

    #[test]
    fn shm_lines() {
        let l =
            "  1234     65539  1600     65536   12   12    1 18943 58467 18943 58467 0 0 0 16384 0";
        let e = parse_shm_line(l).unwrap();
        assert_eq!(
            (e.desc.key, e.desc.id, e.desc.mode, e.size),
            (1234, 65539, 0o1600, 65536)
        );
        assert_eq!(
            (e.desc.uid, e.desc.gid, e.desc.cuid, e.desc.cgid),
            (18943, 58467, 18943, 58467)
        );
        assert!(parse_shm_line("1 2 x").is_none());
        assert_eq!(padded(5), 8);
        assert_eq!(padded(8), 8);
    }

    #[test]
    fn own_sysctls() {
        let v = read_var(std::process::id() as i32).unwrap();
        assert_eq!(v.sem_ctls.len(), 4);
        assert!(v.shm_ctlmni > 0);
    }
}
